# `make demo`: the term-size tour, then a small system with six planted
# leaks, two snapshots a few seconds apart, the report and the diff, and a
# check that each planted leak is at the top of its list.

Code.require_file("tour.exs", __DIR__)
Code.require_file("leaky_system.exs", __DIR__)

defmodule Demo do
  alias MemProbe.Demo.Leaks

  def run(seconds \\ 3) do
    IO.puts(String.duplicate("=", 100))
    IO.puts("Six planted leaks: a growing GenServer state, a mailbox backlog, an ETS table of 1 KB")
    IO.puts("binaries, 100-byte slices of 1 MB binaries, a monitor leak, a process leak.\n")
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

    Leaks.stop(leaks)
  end
end

Demo.run()
