# Leak hunting at scale: snapshot size and time, diff time, health-check cost.
#
#   ERL_FLAGS="+P 2000000" mix run bench/leak_hunting.exs      (make bench does this)
#
# Spawns a million idle processes (fewer if the process limit is lower),
# takes two snapshots with some growth in between, and times the diff; then
# times MemProbe.check/1 at 100k processes against the straightforward
# check (process_info of every process, then the maxima). Medians of several
# runs; read the ratios, the machine is shared.

defmodule Bench.LeakHunting do
  import Bitwise

  def median_ms(fun, runs \\ 5) do
    times = for _ <- 1..runs, do: elem(:timer.tc(fun), 0)
    Enum.at(Enum.sort(times), div(runs, 2)) / 1000
  end

  def spawn_idle(n), do: for(_ <- 1..n, do: spawn(fn -> receive do: (:stop -> :ok) end))

  def stop(pids), do: Enum.each(pids, &send(&1, :stop))

  def fmt(x), do: :io_lib.format("~.1f", [x * 1.0]) |> to_string()

  def run do
    limit = :erlang.system_info(:process_limit)
    big = if limit > 1_050_000, do: 1_000_000, else: div(limit, 2)

    if big < 1_000_000,
      do: IO.puts("(process limit #{limit}: run with ERL_FLAGS=\"+P 2000000\" for a million)\n")

    pids = spawn_idle(big - :erlang.system_info(:process_count))
    count = :erlang.system_info(:process_count)
    {snap_us, older} = :timer.tc(fn -> MemProbe.snapshot() end)
    bytes = :mem_probe_snapshot.size_bytes(older)

    # Growth between the snapshots: 1,000 processes get a mailbox.
    pids |> Enum.take_every(div(length(pids), 1000)) |> Enum.each(&send(&1, {:hello, "x"}))
    newer = MemProbe.snapshot()
    diff_ms = median_ms(fn -> MemProbe.diff(older, newer, 10) end, 3)

    IO.puts(
      "snapshot of #{count} processes: #{fmt(snap_us / 1000)} ms, " <>
        "#{fmt(bytes / 1_048_576)} MiB (#{fmt(bytes / count)} bytes a process)"
    )

    IO.puts("diff of two such snapshots: #{fmt(diff_ms)} ms (target ≤ 2000 ms)")
    {no_bin_us, _} = :timer.tc(fn -> MemProbe.snapshot(binaries: false) end)
    IO.puts("snapshot without binary lists: #{fmt(no_bin_us / 1000)} ms\n")
    stop(pids)
    Process.sleep(500)

    small = spawn_idle(100_000 - :erlang.system_info(:process_count))

    limits = [
      max_process_bytes: 1 <<< 40,
      max_message_queue_len: 1 <<< 40,
      max_total_bytes: 1 <<< 50,
      max_table_bytes: 1 <<< 40,
      max_atom_ratio: 0.9,
      max_process_ratio: 0.9,
      budget_ms: 10_000
    ]

    check_ms = median_ms(fn -> {:ok, _} = MemProbe.check(limits) end)

    naive_ms =
      median_ms(fn ->
        infos =
          for p <- Process.list(),
              i = Process.info(p, [:memory, :message_queue_len]),
              i != nil,
              do: i

        {Enum.max_by(infos, & &1[:memory]), Enum.max_by(infos, & &1[:message_queue_len])}
      end)

    IO.puts(
      "check/1 at #{:erlang.system_info(:process_count)} processes: #{fmt(check_ms)} ms " <>
        "(target ≤ 100 ms); straightforward process_info + max: #{fmt(naive_ms)} ms " <>
        "(#{fmt(check_ms / naive_ms)}x)"
    )

    stop(small)
  end
end

Bench.LeakHunting.run()
