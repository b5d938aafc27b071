defmodule MemProbe.DemoTest do
  # The demo's claim, asserted: each planted leak is at the top of its list.
  use ExUnit.Case, async: false

  @moduletag timeout: 120_000

  Code.require_file("../examples/leaky_system.exs", __DIR__)
  alias MemProbe.Demo.Leaks
  alias MemProbe.{TestWait, Watcher}

  test "every planted leak ranks first in the list that should find it" do
    {:ok, watcher} = Watcher.start_link([name: nil] ++ Leaks.watcher_options())
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
      hog =
        TestWait.until(
          fn -> "the watcher to find the growing state: #{inspect(Watcher.findings(watcher))}" end,
          30_000,
          fn -> Enum.find(Watcher.findings(watcher), &(&1.id == leaks.state_hog)) end
        )

      assert hog.name == :demo_state_hog and is_integer(hog.forecast_ms)
    after
      Watcher.stop(watcher)
      Leaks.stop(leaks)
    end
  end
end
