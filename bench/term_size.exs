# Term-size benchmark: MemProbe against the VM's own functions, in one run.
#
#   mix run bench/term_size.exs            (or: make bench)
#
# Prints, per workload, the median time of MemProbe.flat_size/1,
# shared_size/1 and term_size/1 as a ratio of :erts_debug.flat_size/1,
# size_shared/1 and size/1, the work a budgeted first attempt threw away,
# the geometric means, then the scheduler stall of sizing a 20M-element list
# with one normal scheduler online. Timings are medians of several runs on a
# shared machine: read the ratios, not the absolute numbers.
#
# With MEMPROBE_BENCH_CPU=1 (best with ERL_FLAGS="+sbwt none +sbwtdcpu none
# +sbwtdio none", so idle schedulers do not spin) each time is the least
# emulator CPU time per call of 3 batches of about 0.1 s instead of a median
# of wall times: on a machine shared with other work the ratios then move
# much less. MEMPROBE_BENCH_ONLY=list,hashmap runs only the workloads whose
# names contain one of these words; MEMPROBE_BENCH_QUICK=1 skips size/1, the
# thrown-away work and the stall (the flat and shared ratios only).

Code.require_file("support.exs", __DIR__)

defmodule Bench.TermSize do
  import Bench.Support

  @runs 7

  def median_us(fun), do: Bench.Support.median_us(fun, @runs)
  # erts_debug:size/1 is plain Erlang and very slow; it runs once, with a cap.
  @size_cap_ms 20_000

  # size/1 once, in its own process, given up after @size_cap_ms.
  def size1_us(term) do
    task = Task.async(fn -> :timer.tc(fn -> :erts_debug.size(term) end) end)

    case Task.yield(task, @size_cap_ms) || Task.shutdown(task, :brutal_kill) do
      {:ok, {us, _}} -> {:ok, us}
      _ -> {:capped, @size_cap_ms * 1000}
    end
  end

  # Median time per call in microseconds; fast calls are timed in batches
  # of about a millisecond (a lone call can be below the clock's resolution).
  defp per_call_us(fun, term) do
    if System.get_env("MEMPROBE_BENCH_CPU") == "1",
      do: cpu_per_call_us(fun),
      else: wall_per_call_us(fun, term)
  end

  defp wall_per_call_us(fun, _term) do
    {once, _} = :timer.tc(fun)
    batch = min(max(div(1_000, max(once, 1)), 1), 20_000)
    median_us(fn -> repeat(fun, batch) end) / batch
  end

  # The least emulator CPU time per call (µs) of 3 batches of about 0.1 s
  # (sized on the wall clock; statistics(runtime) counts milliseconds).
  defp cpu_per_call_us(fun) do
    batch = Bench.Support.calls_for_us(fun, 100_000)

    per_call = fn ->
      :erlang.statistics(:runtime)
      repeat(fun, batch)
      {_, ms} = :erlang.statistics(:runtime)
      ms * 1000 / batch
    end

    Enum.min(for _ <- 1..3, do: per_call.())
  end

  defp quick?, do: System.get_env("MEMPROBE_BENCH_QUICK") == "1"

  defp only?(name) do
    case System.get_env("MEMPROBE_BENCH_ONLY") do
      nil -> true
      words -> Enum.any?(String.split(words, ","), &String.contains?(name, &1))
    end
  end

  # The share of a walk's total time that its budgeted first attempt threw
  # away: the attempt (which gave up) against the dirty walk that followed.
  defp thrown_away(term, mode) do
    attempt = per_call_us(fn -> :mem_probe_nif.walk(term, mode, 0) end, term)

    case :mem_probe_nif.walk(term, mode, 0) do
      :budget_exceeded ->
        {:total_heap_size, heap} = Process.info(self(), :total_heap_size)
        dirty = per_call_us(fn -> :mem_probe_nif.walk_dirty(term, mode, heap) end, term)
        attempt / (attempt + dirty)

      _ ->
        0.0
    end
  end

  # Times here can be well below a microsecond (batched small terms).
  defp times(a, b), do: a / max(b, 1.0e-3)
  defp fmt_times(a, b), do: :io_lib.format("~.2fx", [times(a, b)]) |> to_string()

  defp geomean(xs), do: :math.exp(Enum.sum(Enum.map(xs, &:math.log(max(&1, 1.0e-9)))) / length(xs))

  def run do
    clock =
      if System.get_env("MEMPROBE_BENCH_CPU") == "1",
        do: "least CPU time of 3 batches",
        else: "median wall time of #{@runs}"

    IO.puts(
      "MemProbe term-size benchmark — #{MemProbe.info().mode} mode, OTP #{:erlang.system_info(:otp_release)}, " <>
        "#{:erlang.system_info(:schedulers_online)} schedulers, #{clock}\n"
    )

    header = [
      "workload",
      "flat µs",
      "vs flat_size",
      "shared µs",
      "vs size_shared",
      "term_size µs",
      "vs flat+shared",
      "size/1 ÷ term_size",
      "thrown away"
    ]

    results =
      for {name, build} <- term_size_workloads(), only?(name) do
        term = build.()
        # Same answers first; then time.
        true = MemProbe.flat_size(term) == :erts_debug.flat_size(term)
        mp_flat = per_call_us(fn -> MemProbe.flat_size(term) end, term)
        vm_flat = per_call_us(fn -> :erts_debug.flat_size(term) end, term)
        mp_shared = per_call_us(fn -> MemProbe.shared_size(term) end, term)
        vm_shared = per_call_us(fn -> :erts_debug.size_shared(term) end, term)
        mp_full = per_call_us(fn -> MemProbe.term_size(term) end, term)

        {size1, capped} =
          case if(quick?(), do: {:capped, 0}, else: size1_us(term)) do
            {:ok, us} -> {us, false}
            {:capped, us} -> {us, true}
          end

        speedup = size1 / max(mp_full, 0.001)

        thrown =
          if quick?(),
            do: 0.0,
            else: Enum.max(for mode <- [:flat, :shared, :full], do: thrown_away(term, mode))

        %{
          row: [
            name,
            :io_lib.format("~.1f", [mp_flat]) |> to_string(),
            fmt_times(mp_flat, vm_flat),
            :io_lib.format("~.1f", [mp_shared]) |> to_string(),
            fmt_times(mp_shared, vm_shared),
            :io_lib.format("~.1f", [mp_full]) |> to_string(),
            fmt_times(mp_full, vm_flat + vm_shared),
            cond do
              quick?() -> "-"
              capped -> "> #{round(speedup)}x"
              true -> "#{round(speedup)}x"
            end,
            if(quick?(), do: "-", else: "#{round(thrown * 100)}%")
          ],
          flat: times(mp_flat, vm_flat),
          shared: times(mp_shared, vm_shared),
          speedup: speedup
        }
      end

    print_table([header | Enum.map(results, & &1.row)])

    IO.puts(
      "\ngeometric means: flat #{:io_lib.format("~.2f", [geomean(Enum.map(results, & &1.flat))])}x flat_size, " <>
        "shared #{:io_lib.format("~.2f", [geomean(Enum.map(results, & &1.shared))])}x size_shared; " <>
        "worst single workload: flat #{:io_lib.format("~.2f", [Enum.max(Enum.map(results, & &1.flat))])}x, " <>
        "shared #{:io_lib.format("~.2f", [Enum.max(Enum.map(results, & &1.shared))])}x; " <>
        if(quick?(),
          do: "size/1 not timed (MEMPROBE_BENCH_QUICK)",
          else:
            "term_size at least #{round(Enum.min(Enum.map(results, & &1.speedup)))}x faster than size/1"
        )
    )

    IO.puts(
      "Targets (issue 10): flat ≤ 1.0x and shared ≤ 1.2x as geometric means, no workload above 1.5x; " <>
        "term_size ≥ 100x size/1 and ≤ 1.0x flat+shared; thrown-away work ≤ 10% on mid-size terms."
    )

    IO.puts(
      "(A 40-level DAG: MemProbe.flat_size answers in #{fmt_ms(median_us(fn -> MemProbe.flat_size(Enum.reduce(1..40, :leaf, fn _, t -> {t, t} end)) end))} ms; flat_size would walk 2^40 paths.)\n"
    )

    unless quick?() do
      elixir_overhead()
      stall()
    end
  end

  # MemProbe.term_size/1 (Elixir) against :mem_probe.term_size/1 (Erlang).
  defp elixir_overhead do
    term = :erlang.binary_to_term(:erlang.term_to_binary({:ok, [1, 2, 3], %{a: 1}, "abc"}))
    ex = per_call_us(fn -> MemProbe.term_size(term) end, term)
    erl = per_call_us(fn -> :mem_probe.term_size(term) end, term)

    IO.puts(
      "MemProbe.term_size/1 from Elixir: #{fmt_times(ex, erl)} the Erlang call on a 20-word term (target ≤ 1.2x)\n"
    )
  end

  # The longest gap a 1 ms ticker sees while another process sizes a 20M
  # list or a 2M-key map, with one normal scheduler online.
  def stall do
    terms = [
      {"20M list", Enum.to_list(1..20_000_000)},
      {"2M-key map", Map.new(1..2_000_000, &{&1, &1})}
    ]

    before = :erlang.system_flag(:schedulers_online, 1)

    try do
      for {term_name, term} <- terms,
          {name, fun} <- [
            {"MemProbe.flat_size/1", &MemProbe.flat_size/1},
            {"MemProbe.term_size/1", &MemProbe.term_size/1},
            {":erts_debug.flat_size/1", &:erts_debug.flat_size/1}
          ] do
        gaps = for _ <- 1..3, do: max_gap_ms(fn -> fun.(term) end)

        IO.puts(
          "stall with +S 1:1, #{String.pad_trailing(term_name, 10)} #{String.pad_trailing(name, 24)} max gap #{Enum.max(gaps)} ms (runs: #{inspect(gaps, charlists: :as_lists)})"
        )
      end
    after
      :erlang.system_flag(:schedulers_online, before)
    end

    IO.puts("Target: ≤ 2 ms for MemProbe (the gap includes the ticker's own 1 ms sleep).")
  end

  defp max_gap_ms(work) do
    parent = self()
    ticker = spawn(fn -> tick(System.monotonic_time(:millisecond), 0, parent) end)
    Process.sleep(20)
    work.()
    Process.sleep(20)
    send(ticker, :stop)

    receive do
      {:max_gap, gap} -> gap
    end
  end

  defp tick(last, max_gap, parent) do
    receive do
      :stop -> send(parent, {:max_gap, max_gap})
    after
      1 ->
        now = System.monotonic_time(:millisecond)
        tick(now, max(max_gap, now - last), parent)
    end
  end
end

Bench.TermSize.run()
