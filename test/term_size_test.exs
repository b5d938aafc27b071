defmodule MemProbe.TermSizeTest do
  # Not async: sizes of process-wide things (literal areas, persistent terms).
  use ExUnit.Case, async: false

  import MemProbe.TermGenerator
  import MemProbe.WalkerAssertions

  @moduletag timeout: 300_000

  @bif_flat_limit MemProbe.WalkerAssertions.bif_flat_limit()

  # {flat_size, size_shared, size/1, off-heap bytes} per calibration case,
  # measured on OTP 25.2.3 (docs/LAYOUT.md §3). The cases added with OTP 27
  # support (fun_heap_copy, funs_of_one_lambda, export_fun_ets_copy,
  # bignum_max_digits, heap_bits_512, bitstring_513, sub_of_literal_binary)
  # were measured the same way on the system's OTP 25.2.3.
  @otp25_table %{
    nil: {0, 0, 0, 0},
    atom: {0, 0, 0, 0},
    small: {0, 0, 0, 0},
    cons: {2, 2, 2, 0},
    improper_list: {2, 2, 2, 0},
    list: {6, 6, 6, 0},
    literal_list: {6, 0, 6, 0},
    empty_tuple: {0, 0, 0, 0},
    tuple: {3, 3, 3, 0},
    float: {2, 2, 2, 0},
    bignum: {3, 3, 3, 0},
    negative_bignum: {3, 3, 3, 0},
    bignum_128: {4, 4, 4, 0},
    ordinary_ref: {3, 3, 3, 0},
    magic_ref: {3, 3, 3, 0},
    pid_ref: {4, 4, 4, 0},
    heap_binary_0: {2, 2, 2, 0},
    heap_binary_1: {3, 3, 3, 0},
    heap_binary_64: {10, 10, 10, 0},
    refc_binary_65: {6, 6, 6, 65},
    refc_binary: {6, 6, 6, 1000},
    sub_refc_aligned: {6, 6, 6, 1000},
    sub_refc_unaligned: {11, 11, 11, 1000},
    sub_refc_trailing: {11, 11, 11, 1000},
    sub_heap_aligned: {4, 4, 4, 0},
    sub_heap_unaligned: {8, 8, 8, 0},
    bitstring_7: {8, 8, 8, 0},
    shared_cons: {12, 8, 8, 0},
    shared_tuple: {13, 7, 7, 0},
    shared_refc_binary: {15, 9, 9, 1000},
    refc_binary_and_subs: {27, 27, 27, 1000},
    shared_float: {8, 6, 6, 0},
    shared_bignum: {10, 7, 7, 0},
    shared_flatmap: {20, 12, 12, 0},
    shared_keys_tuple: {20, 17, 17, 0},
    empty_map_literal: {3, 0, 3, 0},
    empty_map_heap: {3, 3, 3, 0},
    literal_keys_tuple: {8, 5, 8, 0},
    flatmap_32: {68, 68, 68, 0},
    hashmap_33: {127, 188, 127, 0},
    hashmap_40: {152, 224, 152, 0},
    shared_hashmap: {308, 228, 156, 0},
    hashmap_update: {308, 272, 179, 0},
    hashmap_1000: {3710, 5420, 3710, 0},
    fun_no_env: {5, 5, 5, 0},
    fun_env: {9, 9, 9, 0},
    shared_fun: {22, 13, 13, 0},
    fun_heap_copy: {5, 5, 5, 0},
    funs_of_one_lambda: {18, 18, 18, 0},
    export_fun_literal: {5, 0, 5, 0},
    export_fun_heap: {5, 5, 5, 0},
    export_fun_ets_copy: {5, 5, 5, 0},
    bignum_max_digits: {65536, 65536, 65536, 0},
    heap_bits_512: {10, 10, 10, 0},
    bitstring_513: {11, 11, 11, 65},
    external_pid: {4, 4, 4, 0},
    external_port: {4, 4, 4, 0},
    external_ref_3: {5, 5, 5, 0},
    external_ref_5: {6, 6, 6, 0},
    literal_mix: {25, 0, 25, 70},
    heap_tuple_of_literals: {53, 3, 28, 70},
    sub_of_literal_binary: {6, 6, 6, 70},
    writable_binary: {6, 6, 6, 402},
    appended_binary: {6, 6, 6, 402},
    persistent_term: {9, 0, 9, 0}
  }

  # The same cases on OTP 27.3.4.1 (erts-15.2.7, x86-64), measured on a build
  # of Debian trixie's source and again on trixie's binaries (scripts/otp.sh
  # 27) with the walker and the three erts_debug functions (which agreed),
  # and cross-checked against the OTP 27 formulas of docs/LAYOUT.md: an off-heap binary or
  # slice is 8 (SubBits 5 + BinRef 3), sharing one BinRef between SubBits
  # counts it once in size_shared but per SubBits in size/1
  # (refc_binary_and_subs: 28 / 22 / 28); slices of at most 512 bits are
  # HeapBits copies (sub_refc_unaligned: 3, no off-heap binary); <<1:7>> is 3;
  # a fun without free variables is a literal (6 / 0 / 6); a local fun with n
  # free variables is n + 6 flat / n + 3 shared plus its environment, its
  # literal FunRef counted once by size_shared and per fun by size/1
  # (funs_of_one_lambda); export funs are 2 words, literal unless copied
  # through ETS. Hashmaps differ from OTP 25 because the internal hash
  # changed (node words = flat - 2 per key, counted twice by size_shared:
  # 33 keys 123 = 57 + 66, 180 = 123 + 57). A writable binary's Binary
  # grows by a different policy (241 bytes for 200 against 402).
  @otp27_table %{
    nil: {0, 0, 0, 0},
    atom: {0, 0, 0, 0},
    small: {0, 0, 0, 0},
    cons: {2, 2, 2, 0},
    improper_list: {2, 2, 2, 0},
    list: {6, 6, 6, 0},
    literal_list: {6, 0, 6, 0},
    empty_tuple: {0, 0, 0, 0},
    tuple: {3, 3, 3, 0},
    float: {2, 2, 2, 0},
    bignum: {3, 3, 3, 0},
    negative_bignum: {3, 3, 3, 0},
    bignum_128: {4, 4, 4, 0},
    ordinary_ref: {3, 3, 3, 0},
    magic_ref: {3, 3, 3, 0},
    pid_ref: {4, 4, 4, 0},
    heap_binary_0: {2, 2, 2, 0},
    heap_binary_1: {3, 3, 3, 0},
    heap_binary_64: {10, 10, 10, 0},
    refc_binary_65: {8, 8, 8, 65},
    refc_binary: {8, 8, 8, 1000},
    sub_refc_aligned: {8, 8, 8, 1000},
    sub_refc_unaligned: {3, 3, 3, 0},
    sub_refc_trailing: {8, 8, 8, 1000},
    sub_heap_aligned: {4, 4, 4, 0},
    sub_heap_unaligned: {3, 3, 3, 0},
    bitstring_7: {3, 3, 3, 0},
    shared_cons: {12, 8, 8, 0},
    shared_tuple: {13, 7, 7, 0},
    shared_refc_binary: {19, 11, 11, 1000},
    refc_binary_and_subs: {28, 22, 28, 1000},
    shared_float: {8, 6, 6, 0},
    shared_bignum: {10, 7, 7, 0},
    shared_flatmap: {20, 12, 12, 0},
    shared_keys_tuple: {20, 17, 17, 0},
    empty_map_literal: {3, 0, 3, 0},
    empty_map_heap: {3, 3, 3, 0},
    literal_keys_tuple: {8, 5, 8, 0},
    flatmap_32: {68, 68, 68, 0},
    hashmap_33: {123, 180, 123, 0},
    hashmap_40: {148, 216, 148, 0},
    shared_hashmap: {300, 220, 152, 0},
    hashmap_update: {300, 264, 175, 0},
    hashmap_1000: {3712, 5424, 3712, 0},
    fun_no_env: {6, 0, 6, 0},
    fun_env: {10, 7, 10, 0},
    shared_fun: {24, 11, 14, 0},
    fun_heap_copy: {6, 6, 6, 0},
    funs_of_one_lambda: {20, 14, 20, 0},
    export_fun_literal: {2, 0, 2, 0},
    export_fun_heap: {2, 0, 2, 0},
    export_fun_ets_copy: {2, 2, 2, 0},
    bignum_max_digits: {65536, 65536, 65536, 0},
    heap_bits_512: {10, 10, 10, 0},
    bitstring_513: {8, 8, 8, 65},
    external_pid: {4, 4, 4, 0},
    external_port: {4, 4, 4, 0},
    external_ref_3: {5, 5, 5, 0},
    external_ref_5: {6, 6, 6, 0},
    literal_mix: {27, 0, 27, 70},
    heap_tuple_of_literals: {57, 3, 30, 70},
    sub_of_literal_binary: {8, 5, 8, 70},
    writable_binary: {8, 8, 8, 241},
    appended_binary: {8, 8, 8, 241},
    persistent_term: {9, 0, 9, 0}
  }

  # OTP 29.1.2 (erts-17.1.1, Debian sid's build), measured with the walker and
  # the three erts_debug functions (which agreed), and cross-checked against
  # the formulas of docs/LAYOUT.md: funs lost their FunRef, so a local fun
  # with n free variables is 2 + n (fun_env: 2 + 1 + its 3-word tuple), a
  # fun without free variables a 2-word literal, and size/1 no longer counts
  # a FunRef per fun (funs_of_one_lambda: 12 / 12 / 12). Native records are
  # n + 2 words plus their definition tuple (arity 5 + n, here 8 words plus
  # the 3-word defaults tuple): a record of a module without that record
  # gets a heap definition (15 / 15 / 15); shared, 4 words more (34 / 19).
  # Everything else is as on OTP 27.
  @otp29_table Map.merge(@otp27_table, %{
                 fun_no_env: {2, 0, 2, 0},
                 fun_env: {6, 6, 6, 0},
                 shared_fun: {16, 10, 10, 0},
                 fun_heap_copy: {2, 2, 2, 0},
                 funs_of_one_lambda: {12, 12, 12, 0},
                 record_heap_definition: {15, 15, 15, 0},
                 shared_record: {34, 19, 19, 0},
                 record_in_tuple: {18, 18, 18, 0}
               })

  @tables %{~c"25" => @otp25_table, ~c"27" => @otp27_table, ~c"29" => @otp29_table}

  # Calibration cases only releases with native records have.
  @record_cases [:record_heap_definition, :shared_record, :record_in_tuple]

  defp table, do: Map.fetch!(@tables, release())

  # Words of an off-heap binary or a slice of one: a ProcBin (6) on OTP 25,
  # SubBits + BinRef (8) on OTP 27.
  defp refc_words, do: elem(table()[:refc_binary], 0)

  setup_all do
    assert MemProbe.info().mode == :native,
           "tests need the native walker: #{inspect(MemProbe.info())}"

    :ok
  end

  describe "calibration set" do
    test "every case matches the release's table and the three erts_debug functions" do
      cases = :mem_probe_calibration.cases()
      expected = table()

      assert Enum.sort(Keyword.keys(cases) -- [:doubling_dag, :mixed]) ==
               Enum.sort(Map.keys(expected))

      for {name, term} <- cases do
        m = measure(term)
        assert m.flat == :erts_debug.flat_size(term), "#{name}: flat"
        assert m.shared + m.hashmap_nodes == :erts_debug.size_shared(term), "#{name}: size_shared"
        assert_size_1(m, term, name)

        case expected[name] do
          {flat, size_shared, size, off_heap} ->
            assert {m.flat, m.shared + m.hashmap_nodes, m.size, m.bytes} ==
                     {flat, size_shared, size, off_heap},
                   "#{name} differs from the OTP #{release()} table"

          nil ->
            :ok
        end
      end
    end

    test "the tables of every release cover the same cases" do
      assert Enum.sort(Map.keys(@otp25_table)) == Enum.sort(Map.keys(@otp27_table))

      assert Enum.sort(Map.keys(@otp29_table)) ==
               Enum.sort(Map.keys(@otp27_table) ++ @record_cases)
    end

    test "native records are calibration cases exactly where the release has them" do
      names = Keyword.keys(:mem_probe_calibration.cases())
      assert Enum.all?(@record_cases, &(&1 in names)) == release() >= ~c"29"
      refute Enum.any?(@record_cases, &(&1 in names)) and release() < ~c"29"
    end

    test "the load-time check passes and names the layout and the literal range" do
      info = MemProbe.info()
      assert :mem_probe_calibration.check() == :ok
      assert is_binary(info.layout)
      assert info.layout =~ "OTP #{release()} "
      assert info.verified == true
      assert info.literal_size > 0
      assert info.walk_errors == 0
      assert info.calibration_reads == :guarded
      # NIF 2.18 (OTP 29) adds enif_term_size, a second flat count the
      # calibration compares with.
      assert :mem_probe_nif.native_info().term_size_check == release() >= ~c"29"

      # Where the emulator exports the literal area's bounds (25, 27), the
      # /proc/self/maps method found the very same range; where it does not
      # (29), that method is the one in use.
      case release() do
        r when r in [~c"25", ~c"27"] ->
          assert {info.literal_method, info.literal_cross_check} == {:symbols, :agrees}

        _ ->
          assert {info.literal_method, info.literal_cross_check} == {:proc_maps, :not_checked}
      end
    end

    test "known literals fall inside the literal range and heap terms outside" do
      lit = :mem_probe_calibration.cases()[:literal_list]
      heap = :erlang.binary_to_term(:erlang.term_to_binary(lit))
      assert MemProbe.term_size(lit).literal_words == 6
      assert MemProbe.term_size(lit).shared_words == 0
      assert MemProbe.term_size(heap).literal_words == 0
      assert MemProbe.term_size(heap).shared_words == 6
    end
  end

  describe "properties against erts_debug on generated terms" do
    test "flat, shared and literal words agree on 3000 generated terms" do
      seed = :erlang.unique_integer([:positive])
      :rand.seed(:exsss, {seed, 7, 13})

      for i <- 1..3000 do
        term = term(Enum.random(1..5))
        m = measure(term)
        context = "term #{i} (seed #{seed}): #{inspect(term, limit: 8)}"

        if m.flat <= @bif_flat_limit do
          assert m.flat == :erts_debug.flat_size(term), context
        else
          # Past this the BIF walks every path of a heavily shared term, for
          # minutes or more. The plain path-counting walk (another code path
          # than the DAG count) must agree that the term is that large.
          assert :mem_probe_nif.walk_flat_raw(term, @bif_flat_limit) == :limit, context
        end

        assert m.shared + m.hashmap_nodes == :erts_debug.size_shared(term), context
        assert MemProbe.flat_size(term) == m.flat, context
        assert MemProbe.shared_size(term) == m.shared, context

        if m.flat < 20_000 do
          assert_size_1(m, term, context)
        end
      end
    end

    test "the budgeted walk and the dirty walk give the same answer" do
      :rand.seed(:exsss, {1, 2, 3})
      big = for _ <- 1..200, do: term(4)
      small = term(2)

      for term <- [big, small], mode <- [:flat, :shared, :full] do
        {:total_heap_size, heap} = Process.info(self(), :total_heap_size)
        dirty = :mem_probe_nif.walk_dirty(term, mode, heap)

        case :mem_probe_nif.walk(term, mode, heap) do
          :budget_exceeded -> assert :erts_debug.flat_size(term) > 10_000
          normal -> assert normal == dirty
        end
      end
    end
  end

  describe "beyond the VM" do
    test "a 40-level doubling DAG is sized without walking its 2^40 paths" do
      dag = Enum.reduce(1..40, :leaf, fn _, t -> {t, t} end)
      assert MemProbe.flat_size(dag) == 3 * (2 ** 40 - 1)
      size = MemProbe.term_size(dag)
      assert size.flat_words == 3 * (2 ** 40 - 1)
      assert size.shared_words == 120
      # The plain path-counting walk gives up at its limit instead.
      assert :mem_probe_nif.walk_flat_raw(dag, 1_000_000) == :limit
    end

    test "a flat size beyond 128 bits is a clear error, never a walk of its paths" do
      dag = Enum.reduce(1..130, :leaf, fn _, t -> {t, t} end)
      assert MemProbe.shared_size(dag) == 390

      for size <- [&MemProbe.flat_size/1, &MemProbe.term_size/1] do
        error = assert_raise ErlangError, fn -> size.(dag) end
        assert {:flat_size_overflow, message} = error.original
        assert message =~ "above 2^128 words"
      end
    end

    test "flat sizes beyond 64 bits are exact integers" do
      dag = Enum.reduce(1..70, :leaf, fn _, t -> {t, t} end)
      assert MemProbe.flat_size(dag) == 3 * (2 ** 70 - 1)
    end

    test "a small sub-binary reports the whole parent it keeps alive" do
      parent = :binary.copy(<<1>>, 1_000_000)
      <<_::binary-size(10), slice::binary-size(100), _::binary>> = parent
      size = MemProbe.term_size(slice)
      assert size.off_heap_binaries == 1
      assert size.off_heap_bytes == 1_000_000
      assert size.bytes == refc_words() * 8 + 1_000_000
    end

    test "each off-heap binary is counted once, however many references" do
      bin = :binary.copy(<<2>>, 1000)
      <<a::binary-size(300), b::binary-size(300), _::binary>> = bin
      size = MemProbe.term_size({List.duplicate(bin, 1000), a, b})
      assert {size.off_heap_binaries, size.off_heap_bytes} == {1, 1000}

      other = :binary.copy(<<3>>, 2000)
      size = MemProbe.term_size([bin, other, bin, other])
      assert {size.off_heap_binaries, size.off_heap_bytes} == {2, 3000}
    end

    test "a Binary held twice in one term (a copy sent back) is counted once" do
      bin = :binary.copy(<<5>>, 3000)
      parent = self()
      spawn(fn -> receive(do: (b -> send(parent, {:copy, b}))) end) |> send(bin)
      copy = receive do: ({:copy, c} -> c)
      # Two handles (ProcBins, or BinRefs on OTP 27+) over one Binary: it
      # has two references, so the walk looks it up.
      assert :erts_debug.size_shared({bin, copy}) == 3 + 2 * refc_words()
      <<_::binary-size(1), slice::binary-size(100), _::binary>> = copy
      # More than the walk reads ahead, each with one reference.
      own = for i <- 1..100, do: :binary.copy(<<i>>, 100)

      for {term, binaries, bytes} <- [
            {{bin, copy}, 1, 3000},
            {{slice, bin}, 1, 3000},
            {{copy, slice, bin, slice}, 1, 3000},
            {[slice | own] ++ [bin, copy | own], 101, 13_000},
            {own ++ [copy], 101, 13_000}
          ] do
        size = MemProbe.term_size(term)
        assert {size.off_heap_binaries, size.off_heap_bytes} == {binaries, bytes}
      end
    end

    test "a binary sent to another process is the same Binary there" do
      bin = :binary.copy(<<4>>, 5000)
      parent = self()

      pid =
        spawn(fn ->
          receive do
            {:size, copy} -> send(parent, {:sized, MemProbe.term_size({copy, copy})})
          end
        end)

      send(pid, {:size, bin})
      assert_receive {:sized, size}

      assert {size.off_heap_binaries, size.off_heap_bytes, size.flat_words} ==
               {1, 5000, 3 + 2 * refc_words()}
    end

    test "literals count in flat and literal words, not in shared words" do
      :persistent_term.put({__MODULE__, :lit}, {:a, [1, 2, 3], "persistent"})
      lit = :persistent_term.get({__MODULE__, :lit})
      size = MemProbe.term_size(lit)
      assert size.shared_words == 0
      assert size.literal_words == :erts_debug.flat_size(lit)
      assert size.flat_words == :erts_debug.flat_size(lit)
      pair = {lit, lit}
      assert MemProbe.term_size(pair).shared_words == 3
      assert MemProbe.term_size(pair).literal_words == :erts_debug.flat_size(lit)
      :persistent_term.erase({__MODULE__, :lit})
    end
  end

  describe "safety" do
    test "a list nested 1,000,000 levels deep" do
      deep = Enum.reduce(1..1_000_000, [], fn _, acc -> [acc] end)
      assert MemProbe.flat_size(deep) == 2_000_000
      assert MemProbe.shared_size(deep) == 2_000_000
      assert MemProbe.term_size(deep).flat_words == 2_000_000
    end

    test "a tuple chain 1,000,000 levels deep" do
      deep = Enum.reduce(1..1_000_000, :end, fn _, acc -> {acc} end)
      assert MemProbe.flat_size(deep) == 2_000_000
      assert MemProbe.term_size(deep).shared_words == 2_000_000
    end

    test "immediates and the empty containers" do
      for term <- [:atom, 1, -5, [], {}, self(), hd(:erlang.ports() ++ [:none])] do
        assert MemProbe.flat_size(term) == :erts_debug.flat_size(term)
        assert MemProbe.shared_size(term) == :erts_debug.size_shared(term)
      end
    end

    test "a term larger than the normal-scheduler budget is finished on a dirty scheduler" do
      list = Enum.to_list(1..500_000)
      {:total_heap_size, heap} = Process.info(self(), :total_heap_size)
      assert :mem_probe_nif.walk(list, :flat, heap) == :budget_exceeded
      assert MemProbe.flat_size(list) == 1_000_000
    end
  end

  if :erlang.system_info(:otp_release) >= ~c"29" do
    describe "native records (OTP 29)" do
      setup do
        assert MemProbe.TermGenerator.records?()
        :ok
      end

      # Compiled at run time (the syntax exists only here), so called by name.
      defp point(x, y), do: apply(:mem_probe_test_records, :point, [x, y])
      defp record(fields), do: apply(:mem_probe_test_records, :make, [fields])

      test "a record is n + 2 words, its literal definition literal words" do
        list = :erlang.binary_to_term(:erlang.term_to_binary([1, 2]))
        point = point(list, 5)
        size = MemProbe.term_size(point)
        # The record (header, definition pointer, 2 values) and the list.
        assert size.shared_words == 4 + 4
        assert size.flat_words == :erts_debug.flat_size(point)
        assert size.shared_words == :erts_debug.size_shared(point)
        assert size.shared_words + size.literal_words == :erts_debug.size(point)
        # The definition: a tuple of arity 5 + 2 and its 3-word defaults.
        assert size.literal_words == 8 + 3
        assert size.flat_words == 8 + 11
        assert size.bytes == 8 * 8
      end

      test "the issue's 2-field record: flat 15, size_shared 4, size/1 15" do
        point = point(1, 2)
        assert MemProbe.flat_size(point) == 15
        assert MemProbe.shared_size(point) == 4
        size = MemProbe.term_size(point)
        assert size.shared_words + size.literal_words == 15
      end

      test "records of every field count, shared and inside other terms" do
        for fields <- [[], [:a], [1, 2], [[1], "x", 3.5]] do
          record = record(fields)
          pair = {record, record}

          for term <- [record, pair, [record | record], %{k: record}] do
            m = measure(term)
            assert m.flat == :erts_debug.flat_size(term), inspect(term)
            assert m.shared + m.hashmap_nodes == :erts_debug.size_shared(term), inspect(term)
            assert_size_1(m, term, inspect(term))
          end
        end
      end

      test "a record on an off-heap binary slice reports the binary it pins" do
        parent = :binary.copy(<<1>>, 1_000_000)
        <<_::binary-size(10), slice::binary-size(100), _::binary>> = parent
        size = MemProbe.term_size(record([slice]))
        assert {size.off_heap_binaries, size.off_heap_bytes} == {1, 1_000_000}
      end
    end
  end

  describe "the calibration's verdict" do
    # In a VM of its own: taking the verdict back here would send every
    # concurrently running test through the fallback path.
    test "the raw walks refuse to run until the calibration has said native" do
      with_peer([], fn call ->
        assert call.(:mem_probe, :info, []).mode == :native
        heap = call.(:erlang, :binary_to_term, [:erlang.term_to_binary([1, 2])])
        # The NIF keeps a no until a yes.
        assert call.(:mem_probe_nif, :set_native, [false]) == false

        for walk <- [:walk, :walk_dirty], mode <- [:flat, :shared, :full] do
          assert call.(:mem_probe_nif, walk, [heap, mode, 0]) == {:error, :not_calibrated}
        end

        # The calibration itself still runs (guarded reads).
        assert {:ok, 4, 4, 0, 0, 0, 0, 4, _} = call.(:mem_probe_nif, :walk, [heap, :calibrate, 0])

        assert call.(:mem_probe_nif, :set_native, [true]) == true

        assert {:ok, 4, 4, 0, 0, 0, 32} = call.(:mem_probe_nif, :walk, [heap, :full, 0])
      end)
    end
  end

  describe "an unverified or wrong layout table" do
    # A table forced by `layout_release` is treated as unverified: the
    # calibration reads through guarded reads, so the wrong one ends in a
    # refusal (fallback), never a fault, and the right one still passes.
    test "a wrong table is refused by the guarded calibration; the VM lives on" do
      wrong = if release() == ~c"27", do: ~c"29", else: ~c"27"

      with_peer([~c"-mem_probe", ~c"layout_release", wrong], fn call ->
        :ok = call.(:application, :load, [:mem_probe])
        info = call.(:mem_probe, :info, [])
        assert info.mode == :fallback
        assert {:calibration_mismatch, [_ | _]} = info.reason
        assert info.verified == false
        assert info.calibration_reads == :guarded
        assert info.layout =~ "OTP #{wrong} "
        # Sizes still answer, from the BIFs; the raw walks stay refused.
        assert call.(:mem_probe, :flat_size, [[1, 2, 3]]) == 6
        assert call.(:mem_probe_nif, :walk, [[1, 2, 3], :full, 0]) == {:error, :not_calibrated}
      end)
    end

    test "a release without a table (30 and later) stays in fallback" do
      with_peer([~c"-mem_probe", ~c"layout_release", ~c"30"], fn call ->
        :ok = call.(:application, :load, [:mem_probe])
        info = call.(:mem_probe, :info, [])
        assert {info.mode, info.reason} == {:fallback, {:unknown_release_layout, "30"}}

        assert call.(:mem_probe_nif, :walk, [[1], :calibrate, 0]) ==
                 {:error, :unknown_release_layout}
      end)
    end

    test "the release's own table, forced, passes as unverified" do
      with_peer([~c"-mem_probe", ~c"layout_release", release()], fn call ->
        :ok = call.(:application, :load, [:mem_probe])
        info = call.(:mem_probe, :info, [])
        assert {info.mode, info.verified, info.calibration_reads} == {:native, false, :guarded}
      end)
    end
  end

  # Runs `fun.(call)` against a peer VM with MemProbe on its code path and
  # these extra VM arguments; `call.(m, f, a)` calls into the peer.
  defp with_peer(args, fun) do
    ebin = :code.which(:mem_probe) |> Path.dirname() |> to_charlist()
    {:ok, peer, _node} = :peer.start(%{connection: :standard_io, args: [~c"-pa", ebin | args]})

    try do
      fun.(fn m, f, a -> :peer.call(peer, m, f, a, 30_000) end)
    after
      :peer.stop(peer)
    end
  end

  describe "fallback mode" do
    # In a VM of its own (a peer over standard I/O): switching this VM to
    # fallback would change what every concurrently running test sees.
    test "forced by configuration, sizes come from the BIFs and info says why" do
      with_peer([~c"-mem_probe", ~c"mode", ~c"fallback"], fn call ->
        :ok = call.(:application, :load, [:mem_probe])
        info = call.(:mem_probe, :info, [])
        assert info.mode == :fallback
        assert info.reason == :forced_by_configuration
        assert :literal_words in info.inexact

        # A hashmap: the BIF counts its nodes twice, and fallback says so.
        map = :maps.from_list(for i <- 1..40, do: {i, i})
        assert call.(:mem_probe, :flat_size, [map]) == call.(:erts_debug, :flat_size, [map])
        shared = call.(:mem_probe, :shared_size, [map])
        assert shared == call.(:erts_debug, :size_shared, [map])
        assert shared > call.(:erts_debug, :flat_size, [map])
        size = call.(:mem_probe, :term_size, [:binary.copy(<<1>>, 100)])
        assert size.flat_words == call.(:erts_debug, :flat_size, [:binary.copy(<<1>>, 100)])
        assert size.off_heap_bytes == :undefined
        assert size.literal_words == :undefined
        # The raw NIF entry points follow the mode: no native walk.
        assert call.(:mem_probe_nif, :walk, [map, :full, 0]) == {:error, :not_calibrated}
      end)

      # This VM was never touched.
      assert MemProbe.info().mode == :native
    end
  end
end
