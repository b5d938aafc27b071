# Helpers shared by the benchmark scripts: medians, number formats, tables.

defmodule Bench.Support do
  @doc "Median wall time of `runs` calls of `fun`, in microseconds."
  def median_us(fun, runs) do
    times = for _ <- 1..runs, do: elem(:timer.tc(fun), 0)
    Enum.at(Enum.sort(times), div(runs, 2))
  end

  @doc """
  Calls `fun` `calls` times and drops what it returns. A comprehension
  (`for _ <- 1..n, do: fun.()`) keeps every result alive until the batch
  ends: 300,000 breakdowns of the small term held about 290 MB, and the
  batch paid for the collections that copied them: in three paired runs
  it took 1.1-1.7x the CPU time of this loop, charged to whichever side
  returns the larger term.
  """
  def repeat(_fun, 0), do: :ok

  def repeat(fun, calls) do
    _ = fun.()
    repeat(fun, calls - 1)
  end

  @doc """
  How many calls of `fun` take about `target_us` of wall time, found by
  timing growing batches: one cold call says little about a call of a
  fraction of a microsecond, and a CPU-time batch sized from it can read
  0 ms on a millisecond clock.
  """
  def calls_for_us(fun, target_us, calls \\ 1) do
    {us, _} = :timer.tc(fn -> repeat(fun, calls) end)

    cond do
      us >= div(target_us, 10) -> max(div(calls * target_us, max(us, 1)), 1)
      calls >= 100_000_000 -> calls
      true -> calls_for_us(fun, target_us, calls * 10)
    end
  end

  @doc "How many processes the scan benchmarks spawn (MEMPROBE_BENCH_PROCS, default 100k)."
  def procs do
    case System.get_env("MEMPROBE_BENCH_PROCS") do
      nil -> 100_000
      n -> String.to_integer(n)
    end
  end

  @doc """
  Spawns `count` idle processes from 8 spawners (so they spread over the
  schedulers as on a real node); each holds a list of 0..99 elements, so
  their sizes differ. Returns when all are spawned.
  """
  def spawn_idle(count) do
    spawners = 8
    parent = self()

    for s <- 1..spawners do
      spawn(fn ->
        for i <- 1..div(count, spawners) do
          len = rem(i * 7919 + s, 100)
          spawn(fn -> idle(Enum.to_list(1..len//1)) end)
        end

        send(parent, :spawned)
      end)
    end

    for _ <- 1..spawners, do: receive(do: (:spawned -> :ok))
  end

  @doc "Waits for `:stop`, keeping `data` alive."
  def idle(data) do
    receive do
      :stop -> data
    end
  end

  def fmt_ms(us), do: :io_lib.format("~.2f", [us / 1000]) |> to_string()
  def ratio(a, b), do: :io_lib.format("~.2fx", [a / max(b, 1)]) |> to_string()

  @doc "Prints rows of strings as columns; `left` are the left-aligned column indexes."
  def print_table(rows, left \\ [0]) do
    widths =
      rows
      |> Enum.zip()
      |> Enum.map(fn col -> col |> Tuple.to_list() |> Enum.map(&String.length/1) |> Enum.max() end)

    for row <- rows do
      row
      |> Enum.zip(widths)
      |> Enum.with_index()
      |> Enum.map(fn {{cell, w}, i} ->
        if i in left, do: String.pad_trailing(cell, w), else: String.pad_leading(cell, w)
      end)
      |> Enum.join("  ")
      |> IO.puts()
    end
  end

  @doc "The term-size benchmark's terms: `[{name, build_fun}]`."
  # Every shape the walker reads, small terms, and mid-size ones (100k–1M
  # words, where a budgeted first attempt could waste the most).
  def term_size_workloads do
    l1k = Enum.to_list(1..1000)
    record = fn i -> {:rec, "name #{i}", %{id: i, tag: "t#{rem(i, 10)}"}, i * 1.5} end

    [
      {"2M-element list", fn -> Enum.to_list(1..2_000_000) end},
      {"100k 3-tuples", fn -> for i <- 1..100_000, do: {i, i + 1, :a} end},
      {"100k records", fn -> for i <- 1..100_000, do: record.(i) end},
      {"10k records", fn -> for i <- 1..10_000, do: record.(i) end},
      {"10k flatmaps", fn -> for i <- 1..10_000, do: Map.new(1..10, &{&1, i}) end},
      {"200k-key hashmap", fn -> Map.new(1..200_000, &{&1, &1}) end},
      {"50k refc binaries", fn -> for i <- 1..50_000, do: :binary.copy(<<i::32>>, 100) end},
      {"1k list shared 2000x", fn -> List.duplicate(l1k, 2000) end},
      {"12-level doubling DAG", fn -> Enum.reduce(1..12, :leaf, fn _, t -> {t, t} end) end},
      {"small term (20 words)",
       fn -> :erlang.binary_to_term(:erlang.term_to_binary({:ok, [1, 2, 3], %{a: 1}, "abc"})) end},
      {"mid-size (300k words)", fn -> for i <- 1..50_000, do: {i, [i, i]} end}
    ]
  end
end
