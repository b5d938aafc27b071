# Breakdown benchmark: MemProbe.breakdown/2 against MemProbe.term_size/1 on
# the term-size benchmark's terms, in one run.
#
#   MIX_ENV=prod mix run bench/breakdown.exs
#
# Prints, per workload, the median time (µs) of term_size/1 and breakdown/2 (one
# walk building the object graph, dominators, retained sizes and the rows)
# and their ratio (target: ≤ 2x), and the bytes per graph node (an object or
# an off-heap binary) the walk's arrays held at their largest (target: ≤ 32).
# Medians of several runs on a shared machine: read the ratios, not the
# absolute numbers.

Code.require_file("support.exs", __DIR__)

defmodule Bench.Breakdown do
  import Bench.Support

  @runs 7

  # Median time per call in microseconds; small terms are timed in batches.
  defp per_call_us(fun, term) do
    batch = if :erts_debug.flat_size(term) < 10_000, do: 2_000, else: 1
    median_us(fn -> for _ <- 1..batch, do: fun.() end, @runs) / batch
  end

  def run do
    IO.puts(
      "MemProbe breakdown benchmark — #{MemProbe.info().mode} mode, OTP #{:erlang.system_info(:otp_release)}\n"
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

    rows =
      for {name, build} <- term_size_workloads() do
        term = build.()
        {:ok, b} = MemProbe.breakdown(term)
        # Same total as term_size/1 first; then time.
        true = b.total.bytes == MemProbe.term_size(term).bytes
        size_us = per_call_us(fn -> MemProbe.term_size(term) end, term)
        breakdown_us = per_call_us(fn -> MemProbe.breakdown(term) end, term)
        nodes = max(b.total.graph_nodes, 1)

        [
          name,
          Integer.to_string(b.total.objects),
          :io_lib.format("~.1f", [size_us]) |> to_string(),
          :io_lib.format("~.1f", [breakdown_us]) |> to_string(),
          ratio(breakdown_us, size_us),
          :io_lib.format("~.1f", [b.total.graph_bytes / nodes])
          |> to_string(),
          Integer.to_string(length(b.rows))
        ]
      end

    print_table([header | rows])
  end
end

Bench.Breakdown.run()
