# What one frame of the live top costs, against one top_processes scan, in
# one run.
#
#   mix run bench/top.exs                                   (100,000 processes)
#   MEMPROBE_BENCH_PROCS=1000000 ELIXIR_ERL_OPTIONS="+P 2000000" mix run bench/top.exs
#
# Spawns the processes (each holding a list of 0..99 elements), starts a
# collector (the one bin/mem_probe loads onto a target) and prints the
# median time of a frame of each process view — one pass over the
# processes, rows for the winners, the header, the allocators, the findings
# inputs — as a ratio to `MemProbe.top_processes(:memory, 20)` (the bar the
# issue sets: a frame costs at most one such scan) and to the
# straightforward `process_info(P, memory)` of every process, sorted.
# Timings are medians on a shared machine: read the ratios.

Code.require_file("support.exs", __DIR__)

defmodule Bench.Top do
  import Bench.Support
  @runs 7

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

    scan = median_us(fn -> MemProbe.top_processes(:memory, 20) end, @runs)

    naive =
      median_us(
        fn ->
          :erlang.processes()
          |> Enum.flat_map(fn p ->
            case Process.info(p, :memory) do
              {:memory, m} -> [{m, p}]
              nil -> []
            end
          end)
          |> Enum.sort(:desc)
          |> Enum.take(20)
        end,
        @runs
      )

    IO.puts(
      "#{length(:erlang.processes())} processes, #{System.schedulers_online()} schedulers, OTP #{System.otp_release()}\n"
    )

    rows =
      for view <- [:growth, :reductions, :binaries, :mailbox, :memory] do
        t = median_us(fn -> frame.(view) end, @runs)
        [to_string(view), fmt_ms(t), ratio(t, scan), ratio(t, naive)]
      end

    print_table(
      [["frame (view)", "ms", "vs top_processes(:memory, 20)", "vs process_info + sort"]] ++
        rows ++
        [
          ["top_processes(:memory, 20)", fmt_ms(scan), "1.00x", ratio(scan, naive)],
          ["process_info(P, memory) + sort", fmt_ms(naive), ratio(naive, scan), "1.00x"]
        ]
    )

    for p <- pids, do: send(p, :stop)
    :ok
  end
end

Bench.Top.run()
