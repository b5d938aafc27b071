# Process scans against the straightforward approach, in one run.
#
#   mix run bench/scans.exs                                   (100,000 processes)
#   MEMPROBE_BENCH_PROCS=1000000 ELIXIR_ERL_OPTIONS="+P 2000000" mix run bench/scans.exs
#
# Spawns the processes (from several spawners, so they are spread over the
# schedulers as on a real node; each holds a list of 0..99 elements, so
# their sizes differ), then prints for each scan its median time and the
# garbage it leaves in the calling process, as ratios against the
# straightforward way of getting the same answer:
#
#   top_processes(:memory, 10)        process_info(P, memory) of every process,
#                                     sort, take 10
#   top_processes(:binary_memory, 10) process_info(P, binary) of every process,
#                                     sum per process, sort, take 10
#   binary_leaks(10)                  the same straightforward sum (it cannot
#                                     count a shared binary once)
#   top_processes(:memory, 10,        two snapshots into maps, diff, sort, take
#     window: ms)                     10; timed from the end of the window
#
# Garbage: the call runs in a fresh process traced for garbage collections;
# the words each collection reclaims are summed, plus what a last collection
# after the call reclaims (what the call left on the heap). The result itself
# is live, not garbage. MemProbe's scans run in short-lived processes of
# their own, whose heaps are freed whole when they exit: that memory is not
# garbage in the caller, and it is reported apart (peak of
# erlang:memory(processes) above the idle level, sampled every 2 ms).
# Timings are medians on a shared machine: read the ratios.

Code.require_file("support.exs", __DIR__)

defmodule Bench.Scans do
  @runs 5

  def procs, do: Bench.Support.procs()

  # Setup: Bench.Support.spawn_idle/1.

  # ------------------------------------------------------ straightforward

  def straight_top(item, n) do
    list =
      for p <- :erlang.processes(), {_, v} <- [:erlang.process_info(p, item)] do
        {p, v}
      end

    :lists.keysort(2, list) |> :lists.reverse() |> Enum.take(n)
  end

  def straight_binary(n) do
    list =
      for p <- :erlang.processes(), {:binary, bins} <- [:erlang.process_info(p, :binary)] do
        {p, :lists.sum(for {_, size, _} <- :lists.ukeysort(1, bins), do: size)}
      end

    :lists.keysort(2, list) |> :lists.reverse() |> Enum.take(n)
  end

  def snapshot(item) do
    for p <- :erlang.processes(), {_, v} <- [:erlang.process_info(p, item)], into: %{}, do: {p, v}
  end

  def straight_window(item, n, ms) do
    t0 = System.monotonic_time(:millisecond)
    before = snapshot(item)
    left = t0 + ms - System.monotonic_time(:millisecond)
    if left > 0, do: Process.sleep(left)
    later = snapshot(item)

    diffs = for {p, v} <- later, do: {p, v - Map.get(before, p, 0)}
    :lists.keysort(2, diffs) |> :lists.reverse() |> Enum.take(n)
  end

  # ---------------------------------------------------------- measuring

  def median(list), do: Enum.at(Enum.sort(list), div(length(list), 2))

  # {microseconds, garbage words in the caller}
  def measure(fun) do
    parent = self()
    tracer = spawn(fn -> tracer_loop(0, nil) end)

    {pid, ref} =
      spawn_monitor(fn ->
        receive do
          :go -> :ok
        end

        {us, result} = :timer.tc(fun)
        :erlang.garbage_collect()
        send(parent, {:done, self(), us, result})
      end)

    :erlang.trace(pid, true, [:garbage_collection, {:tracer, tracer}])
    send(pid, :go)

    us =
      receive do
        {:done, ^pid, us, _result} -> us
        {:DOWN, ^ref, _, _, reason} -> raise "benchmark call failed: #{inspect(reason)}"
      end

    receive do
      {:DOWN, ^ref, _, _, _} -> :ok
    end

    # Trace messages are delivered before the tracer sees our request.
    :erlang.trace_delivered(pid)
    receive(do: ({:trace_delivered, ^pid, _} -> :ok))
    send(tracer, {:total, self()})
    words = receive(do: ({:words, w} -> w))
    {us, words}
  end

  # Peak of erlang:memory(processes) above its level before the call, sampled
  # every 2 ms (a separate run: the sampling costs time).
  def peak(fun) do
    base = :erlang.memory(:processes)
    sampler = spawn(fn -> sampler_loop(base, 0) end)
    fun.()
    send(sampler, {:stop, self()})
    receive(do: ({:peak, p} -> p))
  end

  defp tracer_loop(total, start) do
    receive do
      {:trace, _, event, info} when event in [:gc_minor_start, :gc_major_start] ->
        tracer_loop(total, info)

      {:trace, _, event, info} when event in [:gc_minor_end, :gc_major_end] ->
        before = info_words(start)
        later = info[:heap_size] + info[:old_heap_size]
        tracer_loop(total + max(before - later, 0), nil)

      {:total, from} ->
        send(from, {:words, total})
    end
  end

  defp info_words(info), do: info[:heap_size] + info[:old_heap_size] + info[:mbuf_size]

  defp sampler_loop(base, peak) do
    receive do
      {:stop, from} -> send(from, {:peak, peak})
    after
      2 -> sampler_loop(base, max(peak, :erlang.memory(:processes) - base))
    end
  end

  # MemProbe's scan and the straightforward one, alternately (the machine's
  # speed drifts; alternating keeps the ratio fair): {median us, median
  # caller garbage words, worker peak bytes} for each.
  def pair(fun, base, runs) do
    results = for _ <- 1..runs, do: {measure(fun), measure(base)}
    mine = for {m, _} <- results, do: m
    theirs = for {_, b} <- results, do: b

    {{median(for {us, _} <- mine, do: us), median(for {_, w} <- mine, do: w), peak(fun)},
     {median(for {us, _} <- theirs, do: us), median(for {_, w} <- theirs, do: w), 0}}
  end

  # ------------------------------------------------------------- output

  def mb(bytes) when bytes < 1_048_576, do: :io_lib.format("~.1f KB", [bytes / 1024]) |> to_string()
  def mb(bytes), do: :io_lib.format("~.1f MB", [bytes / 1_048_576]) |> to_string()
  def ms(us), do: :io_lib.format("~.1f ms", [us / 1000]) |> to_string()
  def ratio(a, b), do: :io_lib.format("~.3f", [a / max(b, 1)]) |> to_string()

  def row(name, {us, words, peak}, {bus, bwords, _}) do
    w = :erlang.system_info(:wordsize)

    [
      name,
      ms(us),
      ms(bus),
      ratio(us, bus),
      mb(words * w),
      mb(bwords * w),
      ratio(words, bwords),
      mb(peak)
    ]
  end

  def table(rows) do
    header = [
      "scan",
      "time",
      "straight",
      "time ratio",
      "caller garbage",
      "straight",
      "garbage ratio",
      "scan workers peak"
    ]

    all = [header | rows]

    widths =
      for i <- 0..(length(header) - 1), do: Enum.max(for r <- all, do: String.length(Enum.at(r, i)))

    for r <- all do
      r
      |> Enum.zip(widths)
      |> Enum.map_join("  ", fn {cell, width} -> String.pad_trailing(cell, width) end)
      |> IO.puts()
    end
  end

  def run do
    count = procs()

    if :erlang.system_info(:process_limit) < count + 10_000 do
      IO.puts(
        "process limit #{:erlang.system_info(:process_limit)} is too low for #{count} processes; " <>
          "run with ELIXIR_ERL_OPTIONS=\"+P #{2 * count}\""
      )

      System.halt(1)
    end

    runs = if count > 200_000, do: 3, else: @runs
    window = if count > 200_000, do: 5_000, else: 1_000

    Bench.Support.spawn_idle(count)
    # A few processes that share one 10 MB binary, for the binary scans.
    big = :binary.copy("x", 10_000_000)
    for _ <- 1..50, do: spawn(fn -> Bench.Support.idle(big) end)
    :erlang.garbage_collect()

    IO.puts(
      "MemProbe process-scan benchmark — #{:erlang.system_info(:process_count)} processes, " <>
        "OTP #{:erlang.system_info(:otp_release)}, #{:erlang.system_info(:schedulers_online)} schedulers, " <>
        "median of #{runs} runs\n"
    )

    {top, top_b} =
      pair(
        fn -> :mem_probe.top_processes(:memory, 10) end,
        fn -> straight_top(:memory, 10) end,
        runs
      )

    {red, red_b} =
      pair(
        fn -> :mem_probe.top_processes(:reductions, 10) end,
        fn -> straight_top(:reductions, 10) end,
        runs
      )

    {bin, bin_b} =
      pair(
        fn -> :mem_probe.top_processes(:binary_memory, 10) end,
        fn -> straight_binary(10) end,
        runs
      )

    {leaks, leaks_b} =
      pair(fn -> :mem_probe.binary_leaks(10) end, fn -> straight_binary(10) end, runs)

    # Windowed: time from the end of the window to the result.
    {wus, wwords} = measure(fn -> :mem_probe.top_processes(:memory, 10, window: window) end)
    {wbus, wbwords} = measure(fn -> straight_window(:memory, 10, window) end)
    wpeak = peak(fn -> :mem_probe.top_processes(:memory, 10, window: window) end)
    win = {wus - window * 1000, wwords, wpeak}
    win_b = {wbus - window * 1000, wbwords, 0}

    table([
      row("top_processes(:memory, 10)", top, top_b),
      row("top_processes(:reductions, 10)", red, red_b),
      row("top_processes(:binary_memory, 10)", bin, bin_b),
      row("binary_leaks(10)", leaks, leaks_b),
      row("top_processes(:memory, 10, window: #{window}) after window", win, win_b)
    ])

    {tus, twords, _} = top
    {bus, bwords, _} = top_b

    IO.puts("""

    targets: top_processes(:memory, 10) time ratio #{ratio(tus, bus)} (target <= 0.70), \
    garbage ratio #{ratio(twords, bwords)} (target <= 0.20); \
    windowed top finished #{ms(elem(win, 0))} after its window (target at 1M processes: <= 2000 ms)\
    """)
  end
end

Bench.Scans.run()
