# Breakdown benchmark: MemProbe.breakdown/2 against MemProbe.term_size/1 on
# the term-size benchmark's terms, in one run.
#
#   MIX_ENV=prod mix run bench/breakdown.exs
#
# With MEMPROBE_BENCH_CPU=1 (best with ERL_FLAGS="+sbwt none +sbwtdcpu none
# +sbwtdio none", so idle schedulers do not spin) it reads the emulator's CPU
# time over batches of calls instead of the wall clock, the least of 3
# alternating batches per side: on a machine shared with other work the ratio
# then moves much less.
#
# Prints, per workload, the time (µs) of term_size/1 and breakdown/2 (the
# tree pass, or for a term with sharing the object graph and its dominators,
# then the rows) and their ratio (target: ≤ 2x), and the bytes per object or
# off-heap binary that the walk's arrays held at their largest (target: ≤ 32).
# Medians of several runs on a shared machine: read the ratios, not the
# absolute numbers.

Code.require_file("support.exs", __DIR__)

defmodule Bench.Breakdown do
  import Bench.Support

  @runs 7

  # Median time per call in microseconds; small terms are timed in batches.
  defp per_call_us(fun, term) do
    batch = if :erts_debug.flat_size(term) < 10_000, do: 2_000, else: 1
    median_us(fn -> repeat(fun, batch) end, @runs) / batch
  end

  # Least CPU time per call (µs) of 3 batches, the two functions alternating.
  defp cpu_us(size_fun, breakdown_fun, term) do
    {once, _} = :timer.tc(size_fun)

    # statistics(runtime) counts milliseconds: a small term's batch takes
    # some hundreds of them.
    batch =
      if :erts_debug.flat_size(term) < 10_000, do: 300_000, else: max(div(300_000, max(once, 1)), 1)

    per_call = fn fun ->
      :erlang.statistics(:runtime)
      repeat(fun, batch)
      {_, ms} = :erlang.statistics(:runtime)
      ms * 1000 / batch
    end

    {sizes, breakdowns} =
      Enum.reduce(1..3, {[], []}, fn _, {a, b} ->
        {[per_call.(size_fun) | a], [per_call.(breakdown_fun) | b]}
      end)

    {Enum.min(sizes), Enum.min(breakdowns)}
  end

  def run do
    cpu? = System.get_env("MEMPROBE_BENCH_CPU") == "1"
    clock = if cpu?, do: "least CPU time of 3 batches", else: "median wall time of #{@runs}"

    IO.puts(
      "MemProbe breakdown benchmark — #{MemProbe.info().mode} mode, OTP #{:erlang.system_info(:otp_release)}, #{clock}\n"
    )

    header = [
      "workload",
      "objects",
      "term_size µs",
      "breakdown µs",
      "÷ term_size",
      "bytes/node",
      "rows"
    ]

    # MEMPROBE_BENCH_ONLY=small,mid: only the workloads whose names contain
    # one of these words.
    only =
      case System.get_env("MEMPROBE_BENCH_ONLY") do
        nil -> nil
        words -> String.split(words, ",")
      end

    rows =
      for {name, build} <- term_size_workloads(),
          only == nil or Enum.any?(only, &String.contains?(name, &1)) do
        term = build.()
        {:ok, b} = MemProbe.breakdown(term)
        # Same total as term_size/1 first; then time.
        true = b.total.bytes == MemProbe.term_size(term).bytes
        size_fun = fn -> MemProbe.term_size(term) end
        breakdown_fun = fn -> MemProbe.breakdown(term) end

        {size_us, breakdown_us} =
          if cpu?,
            do: cpu_us(size_fun, breakdown_fun, term),
            else: {per_call_us(size_fun, term), per_call_us(breakdown_fun, term)}

        nodes = max(b.total.graph_nodes, 1)

        [
          name,
          Integer.to_string(b.total.objects),
          :io_lib.format("~.2f", [size_us]) |> to_string(),
          :io_lib.format("~.2f", [breakdown_us]) |> to_string(),
          times(breakdown_us, size_us),
          :io_lib.format("~.1f", [b.total.graph_bytes / nodes])
          |> to_string(),
          Integer.to_string(length(b.rows))
        ]
      end

    print_table([header | rows])
  end

  # The ratio of two times in µs. (Bench.Support.ratio/2 divides by at least
  # 1, meant for milliseconds: a small term's term_size/1 takes well under
  # 1 µs, and that would understate the ratio.)
  defp times(_a, b) when b <= 0, do: "n/a"
  defp times(a, b), do: :io_lib.format("~.2fx", [a / b]) |> to_string()
end

Bench.Breakdown.run()
