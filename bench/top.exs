# What one frame of the live top costs, against one top_processes scan, in
# one run.
#
#   mix run bench/top.exs                                   (100,000 processes)
#   MEMPROBE_BENCH_PROCS=1000000 ELIXIR_ERL_OPTIONS="+P 2000000" mix run bench/top.exs
#
# Spawns the processes (each holding a list of 0..99 elements), starts a
# collector (the one bin/mem_probe loads onto a target) and prints the
# time of a frame of each view — one pass over the processes, rows for the
# winners, the header, the allocators, the findings inputs — as a ratio to `MemProbe.top_processes(:memory, 20)` (the bar the
# issue sets: a frame costs at most one such scan) and to the
# straightforward `process_info(P, memory)` of every process, sorted; and
# the VM's CPU time of a frame against that of the scan.
# Measured in rounds (each round times the scan and every view back to
# back); timings and per-round ratios are medians: read the ratios.

Code.require_file("support.exs", __DIR__)

defmodule Bench.Top do
  import Bench.Support
  @runs 9

  defp fmt_x(r), do: :io_lib.format("~.2fx", [r]) |> to_string()

  # Wall time (us) and the CPU time of the whole VM, all its threads (ms:
  # :erlang.statistics(:runtime)), of one call: what the call costs the
  # node, less swayed by other load on a shared machine than the wall time.
  defp measure(fun) do
    {_, _} = :erlang.statistics(:runtime)
    {us, _} = :timer.tc(fun)
    {_, cpu_ms} = :erlang.statistics(:runtime)
    {us, cpu_ms}
  end

  def run do
    n = String.to_integer(System.get_env("MEMPROBE_BENCH_PROCS") || "100000")
    spawners = 8

    pids =
      for s <- 1..spawners, i <- 1..div(n, spawners) do
        _ = s

        spawn(fn ->
          _list = Enum.to_list(1..rem(i, 100))
          receive do: (:stop -> :ok)
        end)
      end

    {:ok, server} = :mem_probe_top_collector.start(self(), %{})

    frame = fn view ->
      {:ok, _} = :mem_probe_top_collector.frame(server, %{view: view, rows: 20}, 60_000)
    end

    # The rate views compare with the previous frame: warm it up.
    frame.(:memory)

    scan = fn -> MemProbe.top_processes(:memory, 20) end

    naive = fn ->
      :erlang.processes()
      |> Enum.flat_map(fn p ->
        case Process.info(p, :memory) do
          {:memory, m} -> [{m, p}]
          nil -> []
        end
      end)
      |> Enum.sort(:desc)
      |> Enum.take(20)
    end

    views = [:memory, :mailbox, :reductions, :binaries, :growth, :ets, :allocators]

    # Rounds: in each, the scan, the naive sort and one frame of every view,
    # back to back, so that a load that comes and goes on a shared machine
    # weighs on all of them alike; the ratios are per round, then the median.
    rounds =
      for _ <- 1..@runs do
        s = measure(scan)
        n = measure(naive)

        frames =
          for v <- views, into: %{} do
            # A rate view keeps its readings while shown: time its
            # steady frames, not the first after a switch.
            if v in [:reductions, :growth], do: frame.(v)
            {v, measure(fn -> frame.(v) end)}
          end

        %{scan: s, naive: n, frames: frames}
      end

    med = fn xs -> Enum.at(Enum.sort(xs), div(length(xs), 2)) end
    scan_t = med.(Enum.map(rounds, &elem(&1.scan, 0)))
    naive_t = med.(Enum.map(rounds, &elem(&1.naive, 0)))
    scan_cpu = med.(Enum.map(rounds, &elem(&1.scan, 1)))

    IO.puts(
      "#{length(:erlang.processes())} processes, #{System.schedulers_online()} schedulers, OTP #{System.otp_release()}, #{@runs} rounds (medians)\n"
    )

    rows =
      for view <- views do
        t = med.(Enum.map(rounds, &elem(&1.frames[view], 0)))
        r = med.(Enum.map(rounds, &(elem(&1.frames[view], 0) / elem(&1.scan, 0))))
        rc = med.(Enum.map(rounds, &(elem(&1.frames[view], 1) / max(elem(&1.scan, 1), 1))))
        rn = med.(Enum.map(rounds, &(elem(&1.frames[view], 0) / elem(&1.naive, 0))))
        [to_string(view), fmt_ms(t), fmt_x(r), fmt_x(rc), fmt_x(rn)]
      end

    print_table(
      [
        [
          "frame (view)",
          "ms",
          "vs top_processes(:memory, 20)",
          "CPU vs top_processes",
          "vs process_info + sort"
        ]
      ] ++
        rows ++
        [
          [
            "top_processes(:memory, 20)",
            fmt_ms(scan_t),
            "1.00x",
            "1.00x (#{scan_cpu} ms CPU)",
            ratio(scan_t, naive_t)
          ],
          ["process_info(P, memory) + sort", fmt_ms(naive_t), ratio(naive_t, scan_t), "", "1.00x"]
        ]
    )

    for p <- pids, do: send(p, :stop)
    :ok
  end
end

Bench.Top.run()
