# `make demo`: the term-size tour, then a small system with six planted
# leaks, two snapshots a few seconds apart, the report and the diff, a check
# that each planted leak is at the top of its list, and what the leak
# watcher, started before the leaks, found by itself meanwhile.

Code.require_file("tour.exs", __DIR__)
Code.require_file("leaky_system.exs", __DIR__)

defmodule Demo do
  alias MemProbe.Demo.Leaks

  def run(seconds \\ 3) do
    IO.puts(String.duplicate("=", 100))
    IO.puts("Six planted leaks: a growing GenServer state, a mailbox backlog, an ETS table of 1 KB")
    IO.puts("binaries, 100-byte slices of 1 MB binaries, a monitor leak, a process leak.\n")
    # The watcher's defaults sample every 10 s and judge 10 minutes; the demo
    # has 4 seconds, so it samples every 50 ms and judges sub-windows of 250 ms.
    {:ok, watcher} = MemProbe.Watcher.start_link(Leaks.watcher_options())
    leaks = Leaks.start()
    Process.sleep(500)
    older = MemProbe.snapshot()
    IO.puts("snapshot taken; waiting #{seconds} s ...\n")
    Process.sleep(seconds * 1000)
    newer = MemProbe.snapshot()

    MemProbe.report(previous: older)
    diff = MemProbe.diff(older, newer, 5)

    IO.puts("\n" <> String.duplicate("=", 100))
    IO.puts("MemProbe.diff(older, newer, 5) — what grew in #{diff.interval_ms} ms\n")
    MemProbe.print(Map.take(diff, [:processes, :tables]))
    MemProbe.print(%{born: Map.take(diff.born, [:process_count, :table_count])})

    IO.puts("\n" <> String.duplicate("=", 100))
    IO.puts("Where each planted leak ranks:\n")

    for {leak, found?, where} <- Leaks.findings(leaks, diff) do
      mark = if found?, do: "FOUND ", else: "MISSED"
      IO.puts("  #{mark}  #{String.pad_trailing(leak, 44)} #{where}")
    end

    IO.puts("\n" <> String.duplicate("=", 100))

    IO.puts(
      "What MemProbe.Watcher, started before the leaks and sampling every 50 ms, found by " <>
        "itself\n(the report above lists all its findings):\n"
    )

    expected = [
      {"growing GenServer state (:demo_state_hog)", [leaks.state_hog]},
      {"mailbox backlog (:demo_event_sink)", [leaks.mailbox]},
      {"ETS table (:demo_upload_cache)", [leaks.table]},
      {"slices of 1 MB binaries (:demo_header_cache)", [leaks.slice_keeper, :binary]},
      {"monitor leak (:demo_watchdog)", [leaks.monitor_leak]},
      {"process leak (sessions)", [:processes]}
    ]

    # On a loaded machine the watcher's 50 ms ticks lag and a series may not
    # have its 2 s yet: give it up to 10 s more before calling a leak missed.
    findings = await_findings(watcher, Enum.map(expected, &elem(&1, 1)), 100)

    for {leak, ids} <- expected do
      case Enum.find(findings, &(&1.id in ids)) do
        nil ->
          IO.puts("  MISSED  #{leak}")

        f ->
          IO.puts("  FOUND   #{String.pad_trailing(leak, 46)} #{MemProbe.Watcher.describe(f)}")
      end
    end

    MemProbe.Watcher.stop(watcher)
    Leaks.stop(leaks)
  end

  defp await_findings(watcher, id_sets, tries_left) do
    findings = MemProbe.Watcher.findings(watcher)
    found = Enum.all?(id_sets, fn ids -> Enum.any?(findings, &(&1.id in ids)) end)

    if found or tries_left == 0 do
      findings
    else
      Process.sleep(100)
      await_findings(watcher, id_sets, tries_left - 1)
    end
  end
end

Demo.run()
