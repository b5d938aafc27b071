# Term-size benchmark: MemProbe against the VM's own functions, in one run.
#
#   mix run bench/term_size.exs            (or: make bench)
#
# Prints, per workload, the median time of MemProbe.flat_size/1,
# shared_size/1 and term_size/1 as a ratio of :erts_debug.flat_size/1,
# size_shared/1 and size/1, then the scheduler stall of sizing a 20M-element
# list with one normal scheduler online. Timings are medians of several runs
# on a shared machine: read the ratios, not the absolute numbers.

Code.require_file("support.exs", __DIR__)

defmodule Bench.TermSize do
  import Bench.Support

  @runs 7

  def median_us(fun), do: Bench.Support.median_us(fun, @runs)
  # erts_debug:size/1 is plain Erlang and very slow; it runs once, with a cap.
  @size_cap_ms 60_000

  # size/1 once, in its own process, given up after @size_cap_ms.
  def size1_us(term) do
    task = Task.async(fn -> :timer.tc(fn -> :erts_debug.size(term) end) end)

    case Task.yield(task, @size_cap_ms) || Task.shutdown(task, :brutal_kill) do
      {:ok, {us, _}} -> {:ok, us}
      _ -> {:capped, @size_cap_ms * 1000}
    end
  end

  def run do
    IO.puts(
      "MemProbe term-size benchmark — #{MemProbe.info().mode} mode, OTP #{:erlang.system_info(:otp_release)}, " <>
        "#{:erlang.system_info(:schedulers_online)} schedulers\n"
    )

    header = [
      "workload",
      "flat ms",
      "vs flat_size",
      "shared ms",
      "vs size_shared",
      "term_size ms",
      "size/1 ms",
      "size/1 ÷ term_size"
    ]

    rows =
      for {name, build} <- term_size_workloads() do
        term = build.()
        # Same answers first; then time.
        true = MemProbe.flat_size(term) == :erts_debug.flat_size(term)
        mp_flat = median_us(fn -> MemProbe.flat_size(term) end)
        vm_flat = median_us(fn -> :erts_debug.flat_size(term) end)
        mp_shared = median_us(fn -> MemProbe.shared_size(term) end)
        vm_shared = median_us(fn -> :erts_debug.size_shared(term) end)
        mp_full = median_us(fn -> MemProbe.term_size(term) end)

        {size1, size1_note} =
          case size1_us(term) do
            {:ok, us} -> {us, fmt_ms(us)}
            {:capped, us} -> {us, "> #{div(us, 1000)}"}
          end

        speedup = "#{round(size1 / max(mp_full, 1))}x"
        speedup = if String.starts_with?(size1_note, ">"), do: "> " <> speedup, else: speedup

        [
          name,
          fmt_ms(mp_flat),
          ratio(mp_flat, vm_flat),
          fmt_ms(mp_shared),
          ratio(mp_shared, vm_shared),
          fmt_ms(mp_full),
          size1_note,
          speedup
        ]
      end

    print_table([header | rows])

    IO.puts(
      "\nTargets: flat ≤ 1.0x flat_size; shared ≤ 1.5x size_shared; term_size ≥ 100x faster than size/1."
    )

    IO.puts(
      "(A 40-level DAG: MemProbe.flat_size answers in #{fmt_ms(median_us(fn -> MemProbe.flat_size(Enum.reduce(1..40, :leaf, fn _, t -> {t, t} end)) end))} ms; flat_size would walk 2^40 paths.)\n"
    )

    stall()
  end

  # The longest gap a 1 ms ticker sees while another process sizes a 20M
  # list, with one normal scheduler online.
  def stall do
    list = Enum.to_list(1..20_000_000)
    before = :erlang.system_flag(:schedulers_online, 1)

    try do
      for {name, fun} <- [
            {"MemProbe.flat_size/1", &MemProbe.flat_size/1},
            {"MemProbe.term_size/1", &MemProbe.term_size/1},
            {":erts_debug.flat_size/1", &:erts_debug.flat_size/1}
          ] do
        gaps = for _ <- 1..3, do: max_gap_ms(fn -> fun.(list) end)

        IO.puts(
          "stall with +S 1:1, 20M list, #{String.pad_trailing(name, 24)} max gap #{Enum.max(gaps)} ms (runs: #{inspect(gaps, charlists: :as_lists)})"
        )
      end
    after
      :erlang.system_flag(:schedulers_online, before)
    end

    IO.puts("Target: ≤ 10 ms for MemProbe (the gap includes the ticker's own 1 ms sleep).")
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
