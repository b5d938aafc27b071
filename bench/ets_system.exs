# ETS, system and allocator scans against the straightforward approach, in one run.
#
#   MIX_ENV=prod mix run bench/ets_system.exs [--tables 10000]
#
# Builds a node with many ETS tables (default 10,000 small ones, owned by
# another process), one table of 100 x 1 MB binaries and one of 200,000
# objects, then prints for each scan its median time and the words it
# allocates in the calling process, next to the straightforward way of
# getting the same answer:
#
#   top_tables(10)                 ets:info/1 of every table, sort, take 10
#   top_tables(10, binaries: true) ets:tab2list/1 + term_size/1 of every readable
#                                  table, sort by memory + off-heap bytes, take 10
#   table_size(200k-object table)  term_size(ets:tab2list(t))
#   memory()                       erlang:memory()
#   allocators()                   erlang:system_info({allocator, t}) for every
#                                  type (the bare snapshot MemProbe reads)
#
# "caller words" is measured in a fresh process whose heap (and binary
# virtual heap) is large enough that no garbage collection runs during the call: the growth of its heap
# (read from outside, while it waits) is what the scan allocated there. The binaries walk runs in a helper process;
# its chunks (about 64k words each) are not counted as caller words, and
# that is the point: the caller's heap never holds the table. Timings are
# medians on a shared machine: read the ratios, not the absolute numbers.

Code.require_file("support.exs", __DIR__)

defmodule Bench.EtsSystem do
  import Bench.Support

  @runs 7
  @min_heap 40_000_000

  # Words allocated on the caller's heap by `fun`, in a fresh process. The
  # process is measured from outside while it waits (a process reading its
  # own heap top sees a stale value).
  def caller_words(fun) do
    parent = self()

    pid =
      :erlang.spawn_opt(
        fn ->
          receive do: (:go -> :ok)
          result = fun.()
          send(parent, {:done, self()})
          receive do: (:stop -> result)
        end,
        min_heap_size: @min_heap,
        min_bin_vheap_size: @min_heap
      )

    before = gc_state(pid)
    send(pid, :go)
    receive do: ({:done, ^pid} -> :ok)
    later = gc_state(pid)
    send(pid, :stop)
    words(before, later)
  end

  defp gc_state(pid) do
    {:garbage_collection_info, info} = Process.info(pid, :garbage_collection_info)
    {:garbage_collection, gc} = Process.info(pid, :garbage_collection)
    {info[:heap_size] + info[:mbuf_size], gc[:minor_gcs]}
  end

  defp words({h0, gc0}, {h1, gc1}) when gc0 == gc1, do: {:exact, h1 - h0}
  defp words({h0, _}, {h1, _}), do: {:gc, h1 - h0}

  # ----- the straightforward approaches -----

  def plain_top(n) do
    :ets.all()
    |> Enum.map(&:ets.info/1)
    |> Enum.reject(&(&1 == :undefined))
    |> Enum.sort_by(& &1[:memory], :desc)
    |> Enum.take(n)
  end

  def tab2list_top(n) do
    ws = :erlang.system_info(:wordsize)

    :ets.all()
    |> Enum.flat_map(fn t ->
      case :ets.info(t) do
        :undefined ->
          []

        info ->
          off =
            if info[:protection] == :private and info[:owner] != self(),
              do: 0,
              else: MemProbe.term_size(:ets.tab2list(t)).off_heap_bytes

          [{info[:memory] * ws + off, t, off}]
      end
    end)
    |> Enum.sort(:desc)
    |> Enum.take(n)
  end

  # ----- the node under test -----

  def build(tables) do
    parent = self()

    owner =
      spawn(fn ->
        small =
          for i <- 1..tables do
            t = :ets.new(:bench_small, [:public])
            objects = rem(i, 200) + 1

            :ets.insert(
              t,
              for(
                j <- 1..objects,
                do: {j, i, if(rem(j, 10) == 0, do: :binary.copy("s", 100), else: j)}
              )
            )

            t
          end

        bins = :ets.new(:bench_binaries, [:public])
        for i <- 1..100, do: :ets.insert(bins, {i, :binary.copy("b", 1_000_000)})
        big = :ets.new(:bench_big, [:public])
        shared = :binary.copy("x", 1_000_000)

        :ets.insert(
          big,
          for(
            i <- 1..200_000,
            do: {i, "k#{i}", binary_part(shared, rem(i, 1000), 100), :binary.copy("y", 100)}
          )
        )

        send(parent, {:built, small, bins, big})
        receive do: (:stop -> :ok)
      end)

    receive do
      {:built, small, bins, big} -> {owner, small, bins, big}
    end
  end

  def fmt_words({:exact, w}), do: Integer.to_string(w)
  def fmt_words({:gc, w}), do: ">= #{w} (gc ran)"

  def words_ratio({_, a}, {_, b}) when b > 0, do: ratio(a, b)
  def words_ratio(_, _), do: "-"

  def run(args) do
    {opts, _, _} = OptionParser.parse(args, strict: [tables: :integer])
    tables = Keyword.get(opts, :tables, 10_000)
    {owner, _small, bins, big} = build(tables)

    IO.puts(
      "MemProbe ETS/system benchmark — #{MemProbe.info().mode} mode, OTP #{:erlang.system_info(:otp_release)}, " <>
        "#{:erlang.system_info(:schedulers_online)} schedulers, #{length(:ets.all())} tables\n"
    )

    # Same answers first.
    [%{table: ^bins} | _] = MemProbe.top_tables(10, binaries: true)
    [{_, ^bins, 100_000_000} | _] = tab2list_top(10)
    mine = Enum.map(MemProbe.top_tables(10), & &1.table)
    theirs = Enum.map(plain_top(10), & &1[:id])
    true = length(mine) == 10 and length(theirs) == 10
    {:ok, size} = MemProbe.table_size(big)
    true = size.off_heap_bytes == MemProbe.term_size(:ets.tab2list(big)).off_heap_bytes

    cases = [
      {"top_tables(10)", fn -> MemProbe.top_tables(10) end, "ets:info/1 all, sort",
       fn -> plain_top(10) end, @runs},
      {"top_tables(10, binaries: true)", fn -> MemProbe.top_tables(10, binaries: true) end,
       "tab2list + term_size all", fn -> tab2list_top(10) end, 3},
      {"table_size(200k objects)", fn -> MemProbe.table_size(big) end, "term_size(tab2list)",
       fn -> MemProbe.term_size(:ets.tab2list(big)) end, 5},
      {"memory()", fn -> MemProbe.memory() end, "erlang:memory()", fn -> :erlang.memory() end, 101},
      {"allocators()", fn -> MemProbe.allocators() end, "system_info({allocator, T}) all",
       fn ->
         for t <- [:mseg_alloc | :erlang.system_info(:alloc_util_allocators)],
             do: :erlang.system_info({:allocator, t})
       end, 21}
    ]

    header = [
      "scan",
      "ms",
      "baseline",
      "baseline ms",
      "time ratio",
      "caller words",
      "baseline words",
      "words ratio"
    ]

    rows =
      for {name, fun, base_name, base, runs} <- cases do
        t_mine = median_us(fun, runs)
        t_base = median_us(base, runs)
        w_mine = caller_words(fun)
        w_base = caller_words(base)

        [
          name,
          fmt_ms(t_mine),
          base_name,
          fmt_ms(t_base),
          ratio(t_mine, t_base),
          fmt_words(w_mine),
          fmt_words(w_base),
          words_ratio(w_mine, w_base)
        ]
      end

    print_table([header | rows], [0, 2])

    IO.puts(
      "\nThe binaries walk copies every object once, like tab2list, but in chunks in a helper " <>
        "process:\nits time is of the same order as the baseline; its caller words are not."
    )

    send(owner, :stop)
  end
end

Bench.EtsSystem.run(System.argv())
