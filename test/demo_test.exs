defmodule MemProbe.DemoTest do
  # The demo's claim, asserted: each planted leak is at the top of its list.
  use ExUnit.Case, async: false

  @moduletag timeout: 120_000

  Code.require_file("../examples/leaky_system.exs", __DIR__)
  alias MemProbe.Demo.Leaks

  test "every planted leak ranks first in the list that should find it" do
    {:ok, watcher} = MemProbe.Watcher.start_link([name: nil] ++ Leaks.watcher_options())
    leaks = Leaks.start()

    try do
      Process.sleep(500)
      older = MemProbe.snapshot()
      Process.sleep(2500)
      newer = MemProbe.snapshot()
      findings = Leaks.findings(leaks, MemProbe.diff(older, newer, 5))
      assert length(findings) == 6

      for {leak, found?, where} <- findings do
        assert found?, "#{leak}: #{where}"
      end

      report = :mem_probe.report(previous: older)
      kinds = Enum.map(report.findings, & &1.kind)
      assert :mailbox in kinds
      assert :process_group in kinds
      assert :pinned_binaries in kinds
      assert Enum.any?(report.findings, &(&1.kind == :mailbox and &1.subject.pid == leaks.mailbox))

      # The leak watcher, started before the leaks, finds the growing state
      # by itself, with a forecast. It needs min_span (2 s) of samples, and a
      # loaded machine delays its ticks: wait for it, within a deadline.
      hog = await_finding(watcher, leaks.state_hog, deadline(30_000))
      assert hog.name == :demo_state_hog and is_integer(hog.forecast_ms)
    after
      MemProbe.Watcher.stop(watcher)
      Leaks.stop(leaks)
    end
  end

  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms

  defp await_finding(watcher, id, deadline_ms) do
    findings = MemProbe.Watcher.findings(watcher)

    case Enum.find(findings, &(&1.id == id)) do
      nil ->
        if System.monotonic_time(:millisecond) > deadline_ms,
          do: flunk("the watcher never found #{inspect(id)}: #{inspect(findings)}")

        Process.sleep(100)
        await_finding(watcher, id, deadline_ms)

      finding ->
        finding
    end
  end
end
