# The fixed cost of a small call: an empty NIF against the VM's BIFs, and
# every layer of MemProbe's path on small terms, in one run.
#
#   MIX_ENV=prod mix run bench/nif_floor.exs
#   MEMPROBE_BENCH_CPU=1 ... (the emulator's CPU time instead of the wall
#   clock; best with ERL_FLAGS="+sbwt none +sbwtdcpu none +sbwtdio none")
#
# Each call runs in a compiled loop (a direct remote call, no closure) for
# about 2 ms a round; the loop without a call is measured too and subtracted.
# The calls alternate round by round and each keeps its fastest round (the
# least disturbed on a shared machine), in nanoseconds per call.
# `:mem_probe_nif.echo/1` is the library's empty NIF: it returns its
# argument, so it costs what any NIF call costs on this VM.

Code.require_file("support.exs", __DIR__)

defmodule Bench.NifFloor.Answer do
  @moduledoc false
  # A NIF breakdown answer of three rows (the 20-word term's), made into the
  # maps `mem_probe_breakdown` returns, as it makes them.
  @raw {:ok, {160, 20, 0, 0, 0, 7, 7, 224},
        [
          {[elem: 1, list: 0..2], "term{1}[0..2]", 48, 6, 0, 0.3, 3, :list},
          {[elem: 2], "term{2}", 48, 6, 0, 0.3, 2, :map},
          {[elem: 3], "term{3}", 24, 3, 0, 0.15, 1, :binary}
        ]}

  def maps(_term) do
    {:ok, {total, words, off_heap, binaries, literal, objects, nodes, graph_bytes}, rows} =
      __MODULE__.raw()

    {:ok,
     %{
       name: "term",
       total: %{
         bytes: total,
         shared_words: words,
         off_heap_bytes: off_heap,
         off_heap_binaries: binaries,
         literal_words: literal,
         objects: objects,
         graph_nodes: nodes,
         graph_bytes: graph_bytes
       },
       rows: rows(rows)
     }}
  end

  # Called remotely: the compiler sees no literal answer to fold.
  def raw, do: @raw

  defp rows([{path, label, bytes, words, off_heap, share, count, kind} | rest]) do
    [
      %{
        path: path,
        label: label,
        bytes: bytes,
        shared_words: words,
        off_heap_bytes: off_heap,
        share: share,
        count: count,
        kind: kind
      }
      | rows(rest)
    ]
  end

  defp rows([]), do: []
end

defmodule Bench.NifFloor.Loops do
  @moduledoc false
  t = Macro.var(:t, nil)

  calls = [
    empty: t,
    echo: quote(do: :mem_probe_nif.echo(unquote(t))),
    echo_rustler: quote(do: :mem_probe_nif.echo_rustler(unquote(t))),
    bif_flat_size: quote(do: :erts_debug.flat_size(unquote(t))),
    bif_size_shared: quote(do: :erts_debug.size_shared(unquote(t))),
    bif_size: quote(do: :erts_debug.size(unquote(t))),
    nif_walk_flat: quote(do: :mem_probe_nif.walk(unquote(t), :flat, 0)),
    nif_walk_shared: quote(do: :mem_probe_nif.walk(unquote(t), :shared, 0)),
    nif_walk_full: quote(do: :mem_probe_nif.walk(unquote(t), :full, 0)),
    erl_flat_size: quote(do: :mem_probe.flat_size(unquote(t))),
    erl_shared_size: quote(do: :mem_probe.shared_size(unquote(t))),
    erl_term_size: quote(do: :mem_probe.term_size(unquote(t))),
    ex_flat_size: quote(do: MemProbe.flat_size(unquote(t))),
    ex_shared_size: quote(do: MemProbe.shared_size(unquote(t))),
    ex_term_size: quote(do: MemProbe.term_size(unquote(t))),
    # The breakdown's layers: the NIF with no row wanted (the walk, its
    # set-up and the root's children looked at), the NIF as the Elixir face
    # asks (rows, labels, list runs as ranges), the Erlang side's maps made
    # from a fixed NIF answer of three rows (what any answer of this shape
    # costs there), and the Elixir call.
    nif_breakdown_no_rows:
      quote(do: :mem_probe_nif.breakdown(unquote(t), 1.0, 20, 32, 10_000_000, {true, "term"})),
    nif_breakdown:
      quote(do: :mem_probe_nif.breakdown(unquote(t), 0.01, 20, 32, 10_000_000, {true, "term"})),
    breakdown_maps: quote(do: Bench.NifFloor.Answer.maps(unquote(t))),
    ex_breakdown: quote(do: MemProbe.breakdown(unquote(t)))
  ]

  def names, do: unquote(Keyword.keys(calls))

  for {name, call} <- calls do
    def unquote(name)(0, _), do: :ok

    def unquote(name)(n, unquote(t)) do
      _ = unquote(call)
      unquote(name)(n - 1, unquote(t))
    end
  end
end

defmodule Bench.NifFloor do
  import Bench.Support, only: [print_table: 1]
  alias Bench.NifFloor.Loops

  @rounds 21
  # Each round of a call runs for about this long.
  @round_ns 2_000_000

  defp cpu?, do: System.get_env("MEMPROBE_BENCH_CPU") == "1"

  # Nanoseconds for one loop of `calls` iterations.
  defp loop_ns(name, term, calls, cpu? \\ cpu?()) do
    if cpu? do
      :erlang.statistics(:runtime)
      apply(Loops, name, [calls * 10, term])
      {_, ms} = :erlang.statistics(:runtime)
      ms * 1_000_000 / 10
    else
      t0 = :erlang.monotonic_time(:nanosecond)
      apply(Loops, name, [calls, term])
      :erlang.monotonic_time(:nanosecond) - t0
    end
  end

  defp available(name) do
    case name do
      :echo -> function_exported?(:mem_probe_nif, :echo, 1)
      :echo_rustler -> function_exported?(:mem_probe_nif, :echo_rustler, 1)
      _ -> true
    end
  end

  # Calls per round: about @round_ns of work, judged from a first loop on
  # the wall clock (200 calls take well under the CPU clock's millisecond).
  defp calls_per_round(name, term) do
    probe = max(loop_ns(name, term, 200, false), 1)
    max(trunc(@round_ns * 200 / probe), 100)
  end

  # Nanoseconds per call of each name on `term`, the empty loop's own
  # cost (for the same number of iterations) taken off.
  defp ns_per_call(term, names) do
    sized = for name <- names, name != :empty, do: {name, calls_per_round(name, term)}

    best =
      Enum.reduce(1..@rounds, %{}, fn _, acc ->
        Enum.reduce(sized, acc, fn {name, calls}, acc ->
          ns = loop_ns(name, term, calls)
          empty = loop_ns(:empty, term, calls)

          Map.update(acc, name, {ns, empty, calls}, fn {b, e, c} ->
            {min(b, ns), min(e, empty), c}
          end)
        end)
      end)

    Map.new(best, fn {name, {ns, empty, calls}} -> {name, max(ns - empty, 0) / calls} end)
  end

  defp f1(x), do: :io_lib.format("~.1f", [x * 1.0]) |> to_string()
  defp fx(a, b), do: :io_lib.format("~.2fx", [a / max(b, 0.1)]) |> to_string()

  def run do
    :mem_probe.term_size(:warm_up)
    names = Enum.filter(Loops.names(), &available/1)
    clock = if cpu?(), do: "least CPU time", else: "least wall time"

    IO.puts(
      "NIF floor — #{MemProbe.info().mode} mode, OTP #{:erlang.system_info(:otp_release)}, " <>
        "#{clock} of #{@rounds} rounds of ~#{div(@round_ns, 1_000_000)} ms, ns per call (empty loop subtracted)\n"
    )

    terms = [
      {"20-word term",
       :erlang.binary_to_term(:erlang.term_to_binary({:ok, [1, 2, 3], %{a: 1}, "abc"}))},
      {"12-level DAG", Enum.reduce(1..12, :leaf, fn _, t -> {t, t} end)},
      {"3-word tuple", :erlang.binary_to_term(:erlang.term_to_binary({:a, 1}))}
    ]

    results = for {label, term} <- terms, do: {label, ns_per_call(term, names)}

    rows =
      for name <- names, name != :empty do
        [Atom.to_string(name) | for({_, r} <- results, do: f1(r[name]))]
      end

    print_table([["call" | for({label, _} <- results, do: label)] | rows])

    IO.puts("")

    for {label, r} <- results do
      echo =
        if Map.has_key?(r, :echo),
          do: "empty NIF #{fx(r[:echo], r[:bif_flat_size])} flat_size/1; ",
          else: ""

      IO.puts(
        "#{label}: " <>
          echo <>
          "breakdown #{fx(r[:ex_breakdown], r[:ex_term_size])} term_size, " <>
          "flat_size #{fx(r[:ex_flat_size], r[:bif_flat_size])} flat_size/1, " <>
          "shared_size #{fx(r[:ex_shared_size], r[:bif_size_shared])} size_shared/1, " <>
          "term_size #{fx(r[:ex_term_size], r[:bif_flat_size] + r[:bif_size_shared])} flat+shared, " <>
          "size/1 ÷ term_size #{round(r[:bif_size] / max(r[:ex_term_size], 0.1))}x, " <>
          "Elixir term_size #{fx(r[:ex_term_size], r[:erl_term_size])} the Erlang call"
      )
    end
  end
end

Bench.NifFloor.run()
