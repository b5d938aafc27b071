# Helpers shared by the benchmark scripts: medians, number formats, tables.

defmodule Bench.Support do
  @doc "Median wall time of `runs` calls of `fun`, in microseconds."
  def median_us(fun, runs) do
    times = for _ <- 1..runs, do: elem(:timer.tc(fun), 0)
    Enum.at(Enum.sort(times), div(runs, 2))
  end

  @doc """
  Spawns `count` idle processes from 8 spawners (so they spread over the
  schedulers as on a real node); each holds a list of 0..99 elements, so
  their sizes differ. Returns when all are spawned.
  """
  def spawn_idle(count) do
    spawners = 8
    parent = self()

    for s <- 1..spawners do
      spawn(fn ->
        for i <- 1..div(count, spawners) do
          len = rem(i * 7919 + s, 100)
          spawn(fn -> idle(Enum.to_list(1..len//1)) end)
        end

        send(parent, :spawned)
      end)
    end

    for _ <- 1..spawners, do: receive(do: (:spawned -> :ok))
  end

  @doc "Waits for `:stop`, keeping `data` alive."
  def idle(data) do
    receive do
      :stop -> data
    end
  end

  def fmt_ms(us), do: :io_lib.format("~.2f", [us / 1000]) |> to_string()
  def ratio(a, b), do: :io_lib.format("~.2fx", [a / max(b, 1)]) |> to_string()

  @doc "Prints rows of strings as columns; `left` are the left-aligned column indexes."
  def print_table(rows, left \\ [0]) do
    widths =
      rows
      |> Enum.zip()
      |> Enum.map(fn col -> col |> Tuple.to_list() |> Enum.map(&String.length/1) |> Enum.max() end)

    for row <- rows do
      row
      |> Enum.zip(widths)
      |> Enum.with_index()
      |> Enum.map(fn {{cell, w}, i} ->
        if i in left, do: String.pad_trailing(cell, w), else: String.pad_leading(cell, w)
      end)
      |> Enum.join("  ")
      |> IO.puts()
    end
  end
end
