# The leak watcher: what a tick costs, and what it says about a healthy day.
#
#   mix run bench/watcher.exs                                   (100,000 processes)
#   MEMPROBE_BENCH_PROCS=1000000 ELIXIR_ERL_OPTIONS="+P 2000000" mix run bench/watcher.exs
#
# 1. Cost per tick. Spawns the processes (each holds a list of 0..99
#    elements, so their sizes differ), starts a watcher with the default
#    options and no timer of its own (ticks are taken by MemProbe.Watcher.tick/1),
#    and compares the median time of a tick (sampling erlang:memory/0, every
#    ETS table, the top 20 by memory plus the processes already followed, and
#    judging every series) with the median time of one
#    MemProbe.top_processes(:memory, 20) scan. Target: a tick costs at most the
#    scan plus 10%.
#
# 2. A simulated day. Synthetic series, one sample every 10 s for 24 h (the
#    watcher's default interval), each a memory series of a healthy process or
#    category: a base level, a GC sawtooth (cycles of 0.5-1.5 times a period
#    of 10 s to 3 min, up to the base level high), a diurnal
#    load (10-50% of the base), bursts that rise at once and drain over 20 s
#    to 5 min (a few an hour), and noise. The watcher's own decision
#    (mem_probe_trend:verdict/3, with the watcher's default options, and with
#    significance: 0.001) runs on
#    each series tick by tick over a ring of 60 samples, beside a
#    predict_linear-style detector: least squares over the same 10 minutes,
#    alarming when the line reaches the node's headroom (4 GiB above the
#    series' start, less what the series has grown) within 4 hours, as
#    `predict_linear(mem[10m], 4*3600) > limit` does. Alarms on healthy
#    series are false alarms. The same series with a leak added (50-200 KB/s
#    from a random hour on) show what each detector catches and how soon.
#    Seeded: the same series every run.

Code.require_file("support.exs", __DIR__)

defmodule Bench.Watcher do
  import Bench.Support

  @k 20
  @runs 7

  def procs, do: Bench.Support.procs()

  # ------------------------------------------------------------ tick cost

  def tick_cost do
    n = procs()
    spawn_idle(n - :erlang.system_info(:process_count))
    IO.puts("#{:erlang.system_info(:process_count)} processes, OTP #{System.otp_release()}\n")

    {:ok, w} =
      MemProbe.Watcher.start_link(name: nil, interval: 86_400_000, alarms: false, log: false)

    # Fill the rings a little first: judging grows with the samples held.
    for _ <- 1..10, do: MemProbe.Watcher.tick(w)

    # Interleaved, so both see the same load on this shared machine.
    {ticks, scans} =
      Enum.unzip(
        for _ <- 1..@runs do
          {t, _} = :timer.tc(fn -> MemProbe.Watcher.tick(w) end)
          {s, _} = :timer.tc(fn -> MemProbe.top_processes(:memory, @k) end)
          {t, s}
        end
      )

    tick = Enum.at(Enum.sort(ticks), div(@runs, 2))
    scan = Enum.at(Enum.sort(scans), div(@runs, 2))
    info = MemProbe.Watcher.info(w)
    MemProbe.Watcher.stop(w)

    print_table([
      ["per tick", "median ms", "vs top_processes(:memory, #{@k})"],
      ["MemProbe.Watcher tick", fmt_ms(tick), ratio(tick, scan)],
      ["top_processes(:memory, #{@k})", fmt_ms(scan), "1.00x"]
    ])

    IO.puts(
      "\nwatcher after #{info.ticks} ticks: #{info.series.process} process, " <>
        "#{info.series.table} table and #{info.series.category + info.series.total} " <>
        "category series, #{info.samples} samples, " <>
        "#{Float.round(info.memory_bytes / 1024, 1)} KiB of its own memory\n"
    )
  end

  # --------------------------------------------------------- a healthy day

  @interval_s 10
  @day_s 86_400
  @window 60
  @headroom 4 * 1024 * 1024 * 1024
  @horizon_s 4 * 3600
  # predict_linear ranges, in samples: 10 min (the watcher's window) and 1 h.
  @lsq_windows [60, 360]

  # The watcher's defaults at a 10 s interval (see mem_probe_watcher:start_link/1),
  # at its default significance and at 0.001.
  def params(significance \\ 0.0001) do
    %{
      floor_ms: 6 * @interval_s * 1000,
      min_span: div(@window * @interval_s * 1000, 2),
      min_bytes_per_s: 1024,
      min_growth: 0.1,
      z: :mem_probe_trend.z_for(significance)
    }
  end

  @significances [0.0001, 0.001]

  def uniform(lo, hi), do: lo + :rand.uniform() * (hi - lo)

  # A healthy series as a function of the time in seconds, and its sawtooth's
  # period.
  def healthy do
    base = uniform(5.0e6, 5.0e8)
    saw_amp = base * uniform(0.1, 1.0)
    saw_period = uniform(10, 180)
    # Collections come when a heap fills, not on a clock: each cycle lasts
    # 0.5 to 1.5 periods (a strict clock would beat with the sampling).
    cycles =
      Stream.unfold(-uniform(0, saw_period), fn t ->
        if t < @day_s, do: {t, t + saw_period * uniform(0.5, 1.5)}
      end)
      |> Enum.to_list()
      |> List.to_tuple()

    diurnal = base * uniform(0.1, 0.5)
    day_phase = uniform(0, 2 * :math.pi())
    noise = base * 0.02

    bursts =
      Stream.unfold(0.0, fn t ->
        # A few an hour, at random.
        t = t - :math.log(:rand.uniform()) * uniform(300, 3600)
        if t < @day_s, do: {{t, base * uniform(0.5, 3.0), uniform(20, 300)}, t}
      end)
      |> Enum.to_list()

    # Noise from a hash of the time: the function is pure.
    seed = :rand.uniform(1_000_000)

    f = fn t ->
      {from, to} = cycle(cycles, t)
      saw = saw_amp * (t - from) / (to - from)
      day = diurnal * :math.sin(2 * :math.pi() * t / @day_s + day_phase)

      burst =
        Enum.reduce(bursts, 0.0, fn {start, height, drain}, acc ->
          if t >= start and t < start + drain,
            do: acc + height * (1 - (t - start) / drain),
            else: acc
        end)

      jitter = noise * (:erlang.phash2({seed, t}, 1_000_001) / 1_000_000 - 0.5)
      round(max(0.0, base + saw + day + burst + jitter))
    end

    {f, %{saw_period: saw_period, base: base, saw_amp: saw_amp, diurnal: diurnal, bursts: bursts}}
  end

  # The cycle {start, end} holding t: a binary search of the cycle starts.
  def cycle(starts, t), do: cycle(starts, t, 0, tuple_size(starts) - 1)

  defp cycle(starts, t, lo, hi) when hi - lo <= 1 do
    if t >= elem(starts, hi) and hi + 1 < tuple_size(starts),
      do: {elem(starts, hi), elem(starts, hi + 1)},
      else: {elem(starts, lo), elem(starts, hi)}
  end

  defp cycle(starts, t, lo, hi) do
    mid = div(lo + hi, 2)
    if t < elem(starts, mid), do: cycle(starts, t, lo, mid), else: cycle(starts, t, mid, hi)
  end

  def leaky({healthy, %{saw_period: saw_period}}) do
    rate = uniform(50_000, 200_000)
    from = uniform(3600, 12 * 3600)
    {fn t -> healthy.(t) + round(rate * max(0.0, t - from)) end, from, saw_period}
  end

  # Least squares over the last `len` samples, from running integer sums
  # (samples are evenly spaced, index i at i * interval): slope in units/s.
  def lsq_new(len), do: %{len: len, q: :queue.new(), n: 0, s0: 0, s1: 0}

  def lsq_push(%{len: len, q: q, n: n, s0: s0, s1: s1} = l, i, v) do
    l = %{l | q: :queue.in({i, v}, q), n: n + 1, s0: s0 + v, s1: s1 + i * v}

    if l.n > len do
      {{:value, {j, w}}, q} = :queue.out(l.q)
      %{l | q: q, n: l.n - 1, s0: l.s0 - w, s1: l.s1 - j * w}
    else
      l
    end
  end

  def lsq_slope(%{n: n, s0: s0, s1: s1, q: q}) do
    {:value, {first, _}} = :queue.peek(q)
    mean_i = first + (n - 1) / 2
    # sum((i - mean)^2) over n consecutive integers.
    sxx = n * (n * n - 1) / 12
    (s1 - mean_i * s0) / sxx / @interval_s
  end

  # Runs the detectors over one day of `f`: for each, the times (s) at which
  # an alarm episode began.
  def run_day(f) do
    ps = for sig <- @significances, do: params(sig)
    start = f.(0)
    lsq = for len <- @lsq_windows, do: {lsq_new(len), false, []}

    ws = for _ <- ps, do: {false, []}

    {_, ws, lsq} =
      Enum.reduce(0..div(@day_s, @interval_s), {[], ws, lsq}, fn i, {ring, ws, lsq} ->
        t = i * @interval_s
        v = f.(t)
        ring = Enum.take([{t * 1000, v} | ring], @window)
        samples = Enum.reverse(ring)

        ws =
          for {p, {found, starts} = w} <- Enum.zip(ps, ws) do
            case :mem_probe_trend.verdict(samples, Map.put(p, :now, t * 1000), found) do
              {:raise, _} -> {true, [t | starts]}
              :clear -> {false, starts}
              _ -> w
            end
          end

        # predict_linear(series[range], 4h) > limit, the limit being the
        # headroom left above the series' start.
        lsq =
          for {l, firing, starts} <- lsq do
            l = lsq_push(l, i, v)
            now_firing = l.n == l.len and lsq_slope(l) * @horizon_s > @headroom - (v - start)

            case {firing, now_firing} do
              {false, true} -> {l, true, [t | starts]}
              _ -> {l, now_firing, starts}
            end
          end

        {ring, ws, lsq}
      end)

    for({_, starts} <- ws, do: Enum.reverse(starts)) ++
      for({_, _, starts} <- lsq, do: Enum.reverse(starts))
  end

  def healthy_day do
    :rand.seed(:exsss, {2026, 12, 2})
    n = String.to_integer(System.get_env("MEMPROBE_BENCH_SERIES", "100"))
    healthy = for _ <- 1..n, do: healthy()
    leaky = for f <- Enum.take(healthy, div(n, 2)), do: leaky(f)

    {us, results} =
      :timer.tc(fn ->
        healthy = Task.async_stream(healthy, fn {f, _} -> run_day(f) end, timeout: :infinity)
        leaks = Task.async_stream(leaky, fn {f, _, _} -> run_day(f) end, timeout: :infinity)
        {Enum.map(healthy, fn {:ok, r} -> r end), Enum.map(leaks, fn {:ok, r} -> r end)}
      end)

    {healthy_results, leak_results} = results
    p = params()

    detectors = [
      "MemProbe.Watcher, defaults (significance 0.0001)",
      "MemProbe.Watcher, significance: 0.001",
      "predict_linear-style least squares, 10 min range",
      "predict_linear-style least squares, 1 h range"
    ]

    median = fn
      [] -> "-"
      xs -> :io_lib.format("~.1f min", [Enum.at(Enum.sort(xs), div(length(xs), 2))]) |> to_string()
    end

    IO.puts(
      "A simulated day: #{n} healthy series and #{length(leaky)} leaking ones " <>
        "(#{div(@day_s, @interval_s) + 1} samples each, simulated in #{Float.round(us / 1_000_000, 1)} s)\n"
    )

    rows =
      for {name, d} <- Enum.with_index(detectors) do
        alarms = for r <- healthy_results, do: length(Enum.at(r, d))

        # A leak is caught by the first alarm that begins after it started.
        caught =
          for {r, {_, from, period}} <- Enum.zip(leak_results, leaky),
              first = Enum.find(Enum.at(r, d), &(&1 >= from)),
              first != nil,
              do: {(first - from) / 60, period <= p.floor_ms / 1000}

        short = Enum.count(leaky, fn {_, _, period} -> period <= p.floor_ms / 1000 end)

        [
          name,
          "#{Enum.count(alarms, &(&1 > 0))} of #{n}",
          "#{Enum.sum(alarms)}",
          "#{Enum.count(caught, &elem(&1, 1))} of #{short}",
          "#{Enum.count(caught, &(not elem(&1, 1)))} of #{length(leaky) - short}",
          median.(for {delay, _} <- caught, do: delay)
        ]
      end

    print_table(
      [
        [
          "detector",
          "healthy series alarmed",
          "false alarms",
          "leaks caught: sawtooth <= floor_ms",
          "longer sawtooth",
          "median delay"
        ]
        | rows
      ],
      [0]
    )
  end
end

Bench.Watcher.tick_cost()
Bench.Watcher.healthy_day()
