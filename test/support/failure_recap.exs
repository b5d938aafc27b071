defmodule MemProbe.FailureRecap do
  @moduledoc false
  # An ExUnit formatter that prints every failure again after the suite,
  # below the per-test progress lines: CI keeps only the tail of a run's
  # output, and a failure printed mid-run (before the long adversarial tests)
  # is otherwise cut off, leaving "1 failure" and no name.
  use GenServer

  @max_lines 60

  def init(_opts), do: {:ok, []}

  def handle_cast({:test_finished, %ExUnit.Test{state: {:failed, failures}} = test}, failed),
    do: {:noreply, [{test, failures} | failed]}

  def handle_cast({:suite_finished, _times}, failed), do: recap(failed)
  def handle_cast(_event, failed), do: {:noreply, failed}

  defp recap([]), do: {:noreply, []}

  defp recap(failed) do
    IO.puts("\nFailures again, for logs that keep only the tail (#{length(failed)}):")

    failed
    |> Enum.reverse()
    |> Enum.with_index(1)
    |> Enum.each(fn {{test, failures}, n} ->
      test
      |> ExUnit.Formatter.format_test_failure(failures, n, 100, fn _, text -> text end)
      |> String.split("\n")
      |> Enum.take(@max_lines)
      |> Enum.join("\n")
      |> IO.puts()
    end)

    {:noreply, []}
  end
end
