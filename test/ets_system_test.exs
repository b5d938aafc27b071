defmodule MemProbe.EtsSystemTest do
  # Not async: the rankings below assert which table of the whole node comes
  # first, so no other test module may plant tables at the same time.
  use ExUnit.Case, async: false

  @moduletag timeout: 120_000

  @mb 1_000_000
  @word :erlang.system_info(:wordsize)

  # 100 distinct binaries of exactly 1 MB each (:binary.copy makes a fresh
  # refc binary of exactly that size).
  defp binaries_table(name \\ :mem_probe_big_binaries, opts \\ [:public]) do
    t = :ets.new(name, opts)
    for i <- 1..100, do: :ets.insert(t, {i, :binary.copy("b", @mb)})
    t
  end

  # Much more ETS memory than the table above, and no off-heap binaries.
  defp bulky_table do
    t = :ets.new(:mem_probe_bulky, [:public])
    :ets.insert(t, for(i <- 1..100_000, do: {i, {i, i, i}}))
    t
  end

  defp position(entries, table), do: Enum.find_index(entries, &(&1.table == table))

  defp ets_bytes(t), do: :ets.info(t, :memory) * @word

  describe "top_tables/2" do
    test "a table of 100 x 1 MB binaries is invisible to ets:info, first with binaries: true" do
      bins = binaries_table()
      bulky = bulky_table()

      plain = MemProbe.top_tables(10_000)
      in_plain = Enum.find(plain, &(&1.table == bins))
      # What ets:info (and tools ranking by it) see: a few KB, ranked below
      # the bulky table, no off-heap figure.
      assert in_plain.memory_bytes == ets_bytes(bins)
      assert in_plain.memory_bytes < 50_000
      assert in_plain.off_heap_bytes == :undefined
      assert position(plain, bulky) < position(plain, bins)

      [first | rest] = MemProbe.top_tables(5, binaries: true)
      assert first.table == bins
      assert first.off_heap_bytes == 100 * @mb
      assert first.memory_bytes == ets_bytes(bins)
      assert %{name: :mem_probe_big_binaries, size: 100, type: :set, protection: :public} = first
      assert first.owner == self()
      assert first.owner_name == :undefined
      assert length(rest) == 4
      bulky_entry = Enum.find(MemProbe.top_tables(10_000, binaries: true), &(&1.table == bulky))
      assert bulky_entry.off_heap_bytes == 0
    end

    test "results are ranked, sized in bytes, and n is honoured" do
      bulky = bulky_table()
      entries = MemProbe.top_tables(3)
      assert length(entries) == 3
      bytes = Enum.map(entries, & &1.memory_bytes)
      assert bytes == Enum.sort(bytes, :desc)

      # Tables of earlier tests may be deleted (their owners exited) between
      # the scan and this check; the ones still alive must match exactly.
      assert Enum.any?(entries, &(&1.table == bulky))

      for e <- entries do
        if :ets.info(e.table, :memory) != :undefined,
          do: assert(e.memory_bytes == ets_bytes(e.table))

        assert is_pid(e.owner)
        assert e.type in [:set, :ordered_set, :bag, :duplicate_bag]
        assert e.protection in [:public, :protected, :private]
      end

      walked = MemProbe.top_tables(20, binaries: true)
      # A private table's off_heap_bytes is :undefined: ranked by its memory alone.
      keys =
        Enum.map(walked, fn
          %{memory_bytes: m, off_heap_bytes: b} when is_integer(b) -> m + b
          %{memory_bytes: m} -> m
        end)

      assert keys == Enum.sort(keys, :desc)
      assert MemProbe.top_tables(0) == []
      assert MemProbe.top_tables(0, binaries: true) == []
    end

    test "one binary referenced from thousands of objects (and slices of it) counts once" do
      shared = :binary.copy("s", @mb)
      other = :binary.copy("o", @mb)
      t = :ets.new(:mem_probe_shared, [:public])
      # 5,000 objects: several chunks of the walk, each referencing the same
      # two binaries; the 100-byte slices pin the whole of `shared`.
      for i <- 1..5_000 do
        :ets.insert(t, {i, shared, binary_part(shared, rem(i, 500), 100), other})
      end

      entry = Enum.find(MemProbe.top_tables(10_000, binaries: true), &(&1.table == t))
      assert entry.off_heap_bytes == 2 * @mb
      {:ok, s} = MemProbe.table_size(t)
      assert s.off_heap_binaries == 2
      assert s.off_heap_bytes == 2 * @mb
    end

    test "a thousand tables each get exactly their own binaries, none of their neighbours'" do
      # Table i holds div(i, 10) binaries of 100 + i bytes among i objects.
      tables =
        for i <- 1..1_000 do
          t = :ets.new(:mem_probe_many, [:public])

          :ets.insert(
            t,
            for(j <- 1..i, do: {j, if(rem(j, 10) == 0, do: :binary.copy("m", 100 + i), else: j)})
          )

          {t, div(i, 10) * (100 + i)}
        end

      by_table = Map.new(MemProbe.top_tables(100_000, binaries: true), &{&1.table, &1})

      wrong =
        for {t, expected} <- tables,
            by_table[t].off_heap_bytes != expected,
            do: {t, by_table[t].off_heap_bytes, expected}

      assert wrong == []
    end

    test "private tables show what ets:info shows; protected tables of others are walked" do
      secret = :ets.new(:mem_probe_secret, [:private])
      for i <- 1..10, do: :ets.insert(secret, {i, :binary.copy("p", 100_000)})

      parent = self()

      owner =
        spawn_link(fn ->
          t = :ets.new(:mem_probe_protected, [:protected])
          for i <- 1..20, do: :ets.insert(t, {i, :binary.copy("q", 100_000)})
          Process.register(self(), :mem_probe_test_table_owner)
          send(parent, {:table, t})
          receive do: (:stop -> :ok)
        end)

      protected =
        receive do
          {:table, t} -> t
        end

      entries = MemProbe.top_tables(10_000, binaries: true)
      s = Enum.find(entries, &(&1.table == secret))
      assert s.protection == :private
      assert s.off_heap_bytes == :undefined
      assert s.memory_bytes == ets_bytes(secret)

      p = Enum.find(entries, &(&1.table == protected))
      assert p.off_heap_bytes == 2 * @mb
      assert p.owner == owner
      assert p.owner_name == :mem_probe_test_table_owner

      assert {:ok, info} = MemProbe.table_size(secret)

      assert %{readable: false, off_heap_bytes: :undefined, total_bytes: :undefined, size: 10} =
               info

      assert info.memory_bytes == ets_bytes(secret)
      send(owner, :stop)
    end

    test "bad arguments raise ArgumentError listing what is accepted" do
      for n <- [-1, 1.5, :ten, "10", nil] do
        e = assert_raise ArgumentError, fn -> MemProbe.top_tables(n) end
        assert e.message =~ "top_tables/2: n must be a non-negative integer"
        assert e.message =~ "accepted: 0, 1, 2"
      end

      e = assert_raise ArgumentError, fn -> MemProbe.top_tables(5, walk: true) end
      assert e.message =~ "unknown option walk; accepted: binaries"
      e = assert_raise ArgumentError, fn -> MemProbe.top_tables(5, binaries: :yes) end
      assert e.message =~ "unknown value for option binaries: yes; accepted: true, false"

      assert_raise ArgumentError, ~r/options must be a list or a map/, fn ->
        MemProbe.top_tables(5, :binaries)
      end
    end
  end

  describe "table_size/1" do
    test "exact numbers for a table of large binaries" do
      t = binaries_table()
      {:ok, s} = MemProbe.table_size(t)
      flat = :ets.tab2list(t) |> Enum.map(&:erts_debug.flat_size/1) |> Enum.sum()

      assert s.table == t
      assert s.size == 100
      assert s.objects_bytes == flat * @word
      assert s.off_heap_binaries == 100
      assert s.off_heap_bytes == 100 * @mb
      assert s.memory_bytes == ets_bytes(t)
      assert s.total_bytes == s.memory_bytes + 100 * @mb
      assert s.readable == true
      assert s.compressed == false
    end

    test "a named table by name, a compressed table, an empty table" do
      named = :ets.new(:mem_probe_named_table, [:named_table, :public, :ordered_set])
      for i <- 1..3_000, do: :ets.insert(named, {i, :binary.copy("n", 1_000)})
      {:ok, s} = MemProbe.table_size(:mem_probe_named_table)
      assert s.table == :mem_probe_named_table
      assert s.type == :ordered_set
      assert s.off_heap_binaries == 3_000
      assert s.off_heap_bytes == 3_000 * 1_000

      packed = :ets.new(:mem_probe_compressed, [:public, :compressed])
      big = :binary.copy("c", @mb)
      for i <- 1..50, do: :ets.insert(packed, {i, big})
      {:ok, c} = MemProbe.table_size(packed)
      assert c.compressed == true
      assert c.off_heap_bytes == @mb

      empty = :ets.new(:mem_probe_empty, [:public, :bag])
      assert {:ok, %{size: 0, objects_bytes: 0, off_heap_bytes: 0}} = MemProbe.table_size(empty)
    end

    test "unknown tables and non-tables raise ArgumentError listing the accepted forms" do
      for bad <- [:mem_probe_no_such_table, make_ref()] do
        e = assert_raise ArgumentError, fn -> MemProbe.table_size(bad) end
        assert e.message =~ "table_size/1: unknown table"
        assert e.message =~ "accepted: a table name"
      end

      for bad <- [42, "mem_probe_named_table", {:table, 1}, self()] do
        e = assert_raise ArgumentError, fn -> MemProbe.table_size(bad) end
        assert e.message =~ "table_size/1: not a table"
      end
    end
  end

  describe "tables dying during scans" do
    # Creates tables of binaries and deletes them, as fast as it can, until
    # told to stop; reports how many it deleted.
    defp churn(parent, n) do
      receive do
        :stop -> send(parent, {:churned, n})
      after
        0 ->
          t = :ets.new(:mem_probe_churn, [:public])
          :ets.insert(t, for(i <- 1..2_000, do: {i, :binary.copy("c", 200)}))
          :ets.delete(t)
          churn(parent, n + 1)
      end
    end

    test "scans running while tables are created and deleted neither crash nor lose the culprit" do
      bins = binaries_table()
      parent = self()
      churner = spawn_link(fn -> churn(parent, 0) end)

      results =
        for _ <- 1..30 do
          {MemProbe.top_tables(50), MemProbe.top_tables(50, binaries: true)}
        end

      send(churner, :stop)
      assert_receive {:churned, churned}, 10_000
      assert churned > 0

      for {plain, walked} <- results do
        assert hd(walked).table == bins
        assert hd(walked).off_heap_bytes == 100 * @mb

        for e <- plain ++ walked do
          assert is_integer(e.memory_bytes) and is_integer(e.size) and is_pid(e.owner)
        end

        tables = Enum.map(walked, & &1.table)
        assert tables == Enum.uniq(tables)
      end
    end

    test "table_size of a deleted table's identifier is a result, not an error" do
      gone = :ets.new(:mem_probe_gone, [:public])
      :ets.delete(gone)
      assert MemProbe.table_size(gone) == {:error, :deleted}
      assert :mem_probe.table_size(gone) == {:error, :deleted}
    end

    test "table_size of a table deleted while it is walked returns an error, not a crash" do
      parent = self()

      for _ <- 1..5 do
        owner =
          spawn(fn ->
            t = :ets.new(:mem_probe_doomed, [:public])
            :ets.insert(t, for(i <- 1..200_000, do: {i, :binary.copy("d", 100)}))
            send(parent, {:doomed, t})

            receive do
              :delete -> :ets.delete(t)
            end

            receive do: (:stop -> :ok)
          end)

        t = receive(do: ({:doomed, t} -> t))
        send(owner, :delete)

        # Deleted before, during or after the walk: never a raise.
        case MemProbe.table_size(t) do
          {:ok, s} -> assert s.size >= 0
          {:error, :deleted} -> :ok
        end

        send(owner, :stop)
      end
    end
  end

  describe "memory/0" do
    test "is erlang:memory/0 in bytes, with parts that add up and shares of the total" do
      planted = for _ <- 1..50, do: :binary.copy("m", @mb)
      {m, raw} = settled_reading()

      by = Map.new(m.categories, &{&1.category, &1.bytes})

      assert Enum.sort(Map.keys(by) -- [:other_system]) ==
               Enum.sort(Keyword.keys(raw) -- [:total])

      assert by.processes + by.system == m.total_bytes
      assert by.atom + by.binary + by.code + by.ets + by.other_system == by.system
      assert by.processes_used <= by.processes
      assert by.atom_used <= by.atom
      assert by.binary >= 50 * @mb

      for c <- m.categories do
        assert c.share == c.bytes / m.total_bytes
        assert c.part_of in [:total, :processes, :system, :atom]
      end

      # Read between two erlang:memory/0 that agree, it agrees with them up
      # to what changed in between.
      assert abs(m.total_bytes - raw[:total]) <= raw[:total] * 0.05
      assert abs(by.binary - raw[:binary]) <= raw[:binary] * 0.05
      assert length(planted) == 50
    end
  end

  describe "allocators/0" do
    test "usage within [0, 1], sums consistent, planted binaries in binary_alloc" do
      planted = for _ <- 1..50, do: :binary.copy("a", @mb)
      a = MemProbe.allocators()

      types = :erlang.system_info(:alloc_util_allocators)
      assert Enum.sort(Enum.map(a.allocators, & &1.allocator)) == Enum.sort(types)

      for r <- a.allocators do
        assert r.usage == :undefined or (r.usage >= 0 and r.usage <= 1)
        assert r.mbcs_usage == :undefined or (r.mbcs_usage >= 0 and r.mbcs_usage <= 1)
        assert r.blocks_bytes <= r.carriers_bytes
        assert r.sbcs_carriers_bytes + r.pool_carriers_bytes <= r.carriers_bytes
        assert r.instances >= 1
      end

      carriers = Enum.map(a.allocators, & &1.carriers_bytes)
      assert carriers == Enum.sort(carriers, :desc)
      assert a.blocks_bytes == Enum.sum(Enum.map(a.allocators, & &1.blocks_bytes))
      assert a.carriers_bytes == Enum.sum(carriers)
      assert a.usage == a.blocks_bytes / a.carriers_bytes

      binary = Enum.find(a.allocators, &(&1.allocator == :binary_alloc))
      # 1 MB binaries are above the single-block carrier threshold (512 KB).
      assert binary.blocks_bytes >= 50 * @mb
      assert binary.sbcs_carriers_bytes >= 50 * @mb

      for c <- a.mseg_cache do
        assert c.hits <= c.calls
        assert c.hit_rate == :undefined or (c.hit_rate >= 0 and c.hit_rate <= 1)
      end

      assert length(planted) == 50
    end

    test "usage never exceeds 1 while other processes allocate and free" do
      worker = spawn_link(fn -> allocate_and_free() end)

      for _ <- 1..30 do
        a = MemProbe.allocators()
        assert a.usage <= 1

        for r <- a.allocators do
          assert r.usage == :undefined or r.usage <= 1, "#{r.allocator}: usage #{r.usage}"
        end
      end

      send(worker, :stop)
    end
  end

  # MemProbe.memory/0 read between two erlang:memory/0 readings within 1% of
  # each other (an earlier test's processes may still be freeing their
  # binaries): up to 20 tries, then the last one, whatever it is.
  defp settled_reading(tries \\ 20) do
    before = :erlang.memory()
    m = MemProbe.memory()
    later = :erlang.memory()

    settled? = Enum.all?([:total, :binary], &(abs(before[&1] - later[&1]) <= later[&1] * 0.01))

    if settled? or tries == 1 do
      {m, later}
    else
      Process.sleep(50)
      settled_reading(tries - 1)
    end
  end

  defp allocate_and_free do
    receive do
      :stop -> :ok
    after
      0 ->
        bins = for i <- 1..200, do: :binary.copy("z", 100 + i * 5_000)
        _ = Enum.map(1..2_000, &{&1, &1})
        :erlang.garbage_collect()
        true = length(bins) == 200
        allocate_and_free()
    end
  end
end
