defmodule MemProbe.AdversarialTest do
  # Terms built to break the walker: decoded from mutated external-format
  # binaries, at every limit the VM has, changed by other processes while they
  # are sized, and 100k random ones. Each test runs in a peer VM of its own
  # (MemProbe.TestPeer): a walker fault that kills the VM fails that test with
  # what was being sized, instead of ending the run. Every term is compared
  # with erts_debug by MemProbe.WalkerAssertions.assert_agrees/3, and no walk
  # may end in a layout error (info().walk_errors stays 0: a fallback answer
  # would agree with erts_debug and hide it).
  use ExUnit.Case, async: false

  import Bitwise
  import MemProbe.TermGenerator, only: [term: 1, bits_at: 3]
  import MemProbe.WalkerAssertions

  alias MemProbe.TestPeer

  @moduletag timeout: 600_000

  # The peer loads this module's own bytecode, so the test bodies below
  # (closures of this module) run there.
  @after_compile __MODULE__
  def __after_compile__(_env, bytecode) do
    :persistent_term.put({__MODULE__, :bytecode}, bytecode)
  end

  # A fresh peer VM with this module loaded.
  defp start_peer do
    TestPeer.start([{__MODULE__, :persistent_term.get({__MODULE__, :bytecode})}])
  end

  # Runs `fun` in a fresh peer VM; its result is returned, its assertion
  # failures raised here, and the peer's death is a test failure.
  defp in_peer(what, fun) do
    peer = start_peer()

    try do
      case TestPeer.run(peer, fn -> checked(fun) end) do
        {:ok, result} -> result
        {:peer_died, reason} -> flunk("the VM died while #{what}: #{inspect(reason)}")
      end
    after
      TestPeer.stop(peer)
    end
  end

  # The walker is native in the peer, before and after, with no layout error.
  defp checked(fun) do
    assert MemProbe.info().mode == :native, inspect(MemProbe.info())
    result = fun.()
    assert MemProbe.info().walk_errors == 0, "a walk stopped on a layout error"
    result
  end

  defp report(line), do: IO.puts("\n  adversarial: " <> line)

  describe "terms decoded from mutated external-format binaries" do
    # 6 batches of 160 generated terms, each encoded and mutated 25 times:
    # 24,000 mutants. A batch is generated from its seed alone, so one that
    # kills the peer can be generated again and replayed binary by binary.
    @batches 6
    @bases 160
    @per_base 25

    test "every binary_to_term(b, [:safe]) that succeeds is sized exactly" do
      # From the run seed (mix test --seed N repeats it).
      seed = :rand.uniform(1_000_000_000)

      totals =
        for batch <- 1..@batches,
            reduce: %{mutants: 0, decoded: 0, checks: 0, size_1: 0} do
          acc ->
            counts =
              case run_batch(seed, batch) do
                {:ok, counts} -> counts
                {:peer_died, reason} -> flunk(crash_report(seed, batch, reason))
              end

            Map.merge(acc, counts, fn _, a, b -> a + b end)
        end

      report(
        "#{totals.mutants} mutated binaries (seed #{seed}), #{totals.decoded} decoded, " <>
          "#{totals.checks} terms checked (each, {t, t} and [t | t]), " <>
          "#{totals.size_1} of them also against size/1"
      )

      assert totals.mutants == @batches * @bases * @per_base
      # Mutations of length and tag bytes fail to decode; others (inside
      # binaries, numbers, lengths made shorter) decode to different terms.
      assert totals.decoded > div(totals.mutants, 10)
    end
  end

  defp run_batch(seed, batch) do
    peer = start_peer()

    try do
      TestPeer.run(peer, fn -> checked(fn -> check_mutants(seed, batch) end) end)
    after
      TestPeer.stop(peer)
    end
  end

  defp check_mutants(seed, batch) do
    mutants = mutants(seed, batch)
    # Every code path runs once first: then no atom may appear while decoding.
    {original, _} = hd(mutants)
    assert_agrees(:erlang.binary_to_term(original, [:safe]), "an unmutated term")
    atoms = :erlang.system_info(:atom_count)
    zero = %{mutants: 0, decoded: 0, checks: 0, size_1: 0}

    counts =
      for {{original, mutant}, i} <- Enum.with_index(mutants), reduce: zero do
        acc ->
          acc = %{acc | mutants: acc.mutants + 1}

          case safe_decode(mutant) do
            :error ->
              acc

            {:ok, term} ->
              context = fn ->
                "mutant #{i} of batch #{batch} (seed #{seed}): #{Base.encode64(mutant)} " <>
                  "from #{Base.encode64(original)}, decoded #{inspect(term, limit: 20)}"
              end

              size_1 =
                for t <- [term, {term, term}, [term | term]] do
                  {_, size_1?} = assert_agrees(t, context, size_1_below: 2_000)
                  if size_1?, do: 1, else: 0
                end

              %{
                acc
                | decoded: acc.decoded + 1,
                  checks: acc.checks + 3,
                  size_1: acc.size_1 + Enum.sum(size_1)
              }
          end
      end

    assert :erlang.system_info(:atom_count) == atoms, "decoding created atoms"
    counts
  end

  defp safe_decode(binary) do
    {:ok, :erlang.binary_to_term(binary, [:safe])}
  rescue
    ArgumentError -> :error
  end

  # {original, mutant} pairs of one batch, from its seed alone.
  @doc false
  def mutants(seed, batch) do
    :rand.seed(:exsss, {seed, batch, 91})
    Process.delete(:term_pool)

    for _ <- 1..@bases,
        original =
          :erlang.term_to_binary(term(Enum.random(1..3)), minor_version: Enum.random(0..2)),
        _ <- 1..@per_base,
        do: {original, mutate(original, :rand.uniform(3))}
  end

  # External-format tags, to write where a tag or a length was.
  @tags [70, 77, 88, 89, 90, 97, 98, 99, 100, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113] ++
          [114, 115, 116, 117, 118, 119]

  # `edits` random edits after the version byte and the first tag (so never
  # a compressed header, whose size field would make the VM allocate up to
  # 4 GB before it finds the data short).
  defp mutate(binary, 0), do: binary
  defp mutate(binary, _edits) when byte_size(binary) <= 2, do: binary

  defp mutate(binary, edits) do
    pos = 2 + :rand.uniform(byte_size(binary) - 2) - 1
    head = binary_part(binary, 0, pos)
    <<byte, tail::binary>> = rest = binary_part(binary, pos, byte_size(binary) - pos)
    # Up to 8 bytes deleted, up to 16 repeated.
    deleted = min(byte_size(rest), :rand.uniform(8))
    repeated = min(byte_size(rest), :rand.uniform(16))

    edited =
      case :rand.uniform(9) do
        1 -> head <> <<bxor(byte, 1 <<< (:rand.uniform(8) - 1))>> <> tail
        2 -> head <> <<:rand.uniform(256) - 1>> <> tail
        3 -> head <> <<Enum.random(@tags)>> <> tail
        4 -> head <> <<:rand.uniform(256) - 1>> <> rest
        5 -> head <> <<Enum.random(@tags)>> <> rest
        6 -> head <> binary_part(rest, deleted, byte_size(rest) - deleted)
        7 -> length_word(head, rest)
        8 -> head <> binary_part(rest, 0, repeated) <> rest
        9 -> head
      end

    mutate(edited, edits - 1)
  end

  # A 4-byte big-endian word (most lengths and arities) set to a small value.
  defp length_word(head, rest) when byte_size(rest) >= 4 do
    <<_::32, after_word::binary>> = rest
    head <> <<:rand.uniform(300) - 1::32>> <> after_word
  end

  defp length_word(head, rest), do: head <> rest

  # A batch killed the peer: generate it again and replay it binary by binary,
  # each in the same fresh peer until it dies, to name the binary.
  defp crash_report(seed, batch, reason) do
    mutants = in_peer("generating batch #{batch} again", fn -> mutants(seed, batch) end)
    peer = start_peer()

    culprit =
      try do
        Enum.find(mutants, fn {_original, mutant} ->
          check = fn ->
            with {:ok, term} <- safe_decode(mutant), do: MemProbe.term_size([term | {term, term}])
          end

          match?({:peer_died, _}, TestPeer.run(peer, check))
        end)
      after
        TestPeer.stop(peer)
      end

    case culprit do
      {original, mutant} ->
        "the VM died (#{inspect(reason)}) sizing binary_to_term(Base.decode64!(" <>
          "#{inspect(Base.encode64(mutant))}), [:safe]), a mutant of " <>
          "#{inspect(Base.encode64(original))} (seed #{seed}, batch #{batch})"

      nil ->
        "the VM died (#{inspect(reason)}) in batch #{batch} (seed #{seed}); " <>
          "no single binary of it kills a VM alone"
    end
  end

  # A mutant this test found (the walker refused it until main's b2743a5):
  # a fun of MemProbe.TermGenerator whose creator is the small integer
  # 28118164. OTP 25 decodes it and erts_debug sizes it 7 / 7 / 7; OTP 27
  # and later refuse to decode it.
  @fun_with_integer_creator "g3AAAAB2ADWhkp6Ag5JUekyqHP19FKUAAAAAAAAAAmQAHUVsaXhpci5NZW1Qcm9iZS5UZXJtR2VuZXJhdG9yYQBhAGIBrQyUWGQADW5vbm9kZUBub2hvc3QAAABUAAAAAAAAAABiAAABunFkAARtYXBzZAADbWFwYQI="

  test "a decoded fun whose creator is not a pid is sized, not refused (OTP 25)" do
    in_peer("sizing a fun whose creator is an integer", fn ->
      case safe_decode(Base.decode64!(@fun_with_integer_creator)) do
        {:ok, fun} ->
          assert :erlang.fun_info(fun, :pid) == {:pid, 28_118_164}
          {m, true} = assert_agrees(fun, "fun with creator 28118164")
          assert {m.flat, m.shared, m.size} == {7, 7, 7}
          assert_agrees({fun, fun}, "two of the fun with creator 28118164")

        :error ->
          assert release() >= ~c"27"
      end
    end)
  end

  describe "terms at every limit" do
    test "max-arity tuples and the largest bignums" do
      counts =
        in_peer("sizing max-arity tuples and bignums", fn ->
          # 16,777,215 elements: the largest tuple the VM makes (one more is
          # a badarg), 128 MB.
          max = 16_777_215
          assert_raise ArgumentError, fn -> :erlang.make_tuple(max + 1, 0) end
          tuple = :erlang.make_tuple(max, 0)
          {m, true} = assert_agrees(tuple, "max tuple", size_1_below: 20_000_000)
          assert {m.flat, m.shared} == {max + 1, max + 1}
          # Every element the same 2-element list: one path per element (1M
          # elements: the guarded walk of the max arity takes 5 s here).
          list = :erlang.binary_to_term(:erlang.term_to_binary([1, 2]))
          n = 1_000_000
          tuple = :erlang.make_tuple(n, list)
          {m, _} = assert_agrees(tuple, "tuple of one list", bif_flat_below: 100_000_000)
          assert {m.flat, m.shared} == {n + 1 + 4 * n, n + 1 + 4}

          # Bignums of the most digits the release allows: 2^16 - 1 from
          # OTP 27 on, 2^19 - 1 (4 MB) on 25 and 26.
          digits = if release() >= ~c"27", do: 2 ** 16 - 1, else: 2 ** 19 - 1
          half = 1 <<< (64 * digits - 1)
          largest = half - 1 + half
          assert_raise SystemLimitError, fn -> largest + 1 end

          for n <- [largest, -largest, half, 1 <<< 64, -(1 <<< 64), 1 <<< 63, -(1 <<< 63)] do
            {m, _} =
              assert_agrees(n, fn ->
                "bignum of #{bit_size(:binary.encode_unsigned(abs(n)))} bits"
              end)

            assert m.flat == :erts_debug.flat_size(n)
          end

          %{tuple_arity: max, bignum_digits: digits}
        end)

      report("max tuple arity #{counts.tuple_arity}, bignums of #{counts.bignum_digits} digits")
    end

    test "1,000,000-deep lists, tuples, maps, funs and their mixture" do
      in_peer("sizing 1M-deep nesting", fn ->
        depth = 1_000_000

        # Level i wraps the level below; the mixture cycles through all four.
        nest = %{
          list: fn _, acc -> [acc] end,
          tuple: fn _, acc -> {acc} end,
          map: fn _, acc -> %{k: acc} end,
          fun: fn _, acc -> fn -> acc end end,
          mixed: fn i, acc ->
            case rem(i, 4) do
              0 -> [acc]
              1 -> {acc}
              2 -> %{k: acc, i: i}
              3 -> fn -> acc end
            end
          end
        }

        for {kind, wrap} <- nest do
          # size/1 (Erlang code comparing whole subterms: quadratic in the
          # depth) on 1,000 levels; the BIFs on 1,000,000.
          shallow = Enum.reduce(1..1_000, :leaf, wrap)
          {_, true} = assert_agrees(shallow, "1,000-deep #{kind}")
          deep = Enum.reduce(1..depth, :leaf, wrap)
          assert_agrees(deep, "1M-deep #{kind}", bif_flat_below: 100_000_000)
        end

        # Deep sharing: each level twice, 2^1000000 paths.
        dag = Enum.reduce(1..depth, :leaf, fn _, acc -> [acc | acc] end)
        assert MemProbe.shared_size(dag) == 2 * depth

        assert_raise ErlangError, fn -> MemProbe.flat_size(dag) end
      end)
    end

    test "maps with 1,000,000 keys (and 100,000 boxed keys)" do
      in_peer("sizing 1M-key maps", fn ->
        keys = 1..1_000_000
        shared = :erlang.binary_to_term(:erlang.term_to_binary([1, 2, 3]))

        for {what, map} <- [
              immediates: Map.new(keys, &{&1, &1}),
              boxed_keys_shared_value: Map.new(1..100_000, &{{&1}, shared})
            ] do
          {m, _} = assert_agrees(map, "1M-key map of #{what}", bif_flat_below: 100_000_000)
          assert m.hashmap_nodes > 0
        end
      end)
    end

    test "sub-binaries of sub-binaries, every bit offset, sizes around 64 bytes and 512 bits" do
      count =
        in_peer("sizing sub-binaries and bitstrings", fn ->
          refc = :binary.copy(<<0xA5>>, 1_000_000)
          heap = :binary.copy(<<0x5A>>, 64)

          # Slices of slices: a byte off each end, then a bit, 200 levels.
          chain = fn parent, levels ->
            Enum.scan(1..levels, parent, fn i, acc ->
              if rem(i, 2) == 0,
                do: bits_at(acc, 8, bit_size(acc) - 16),
                else: bits_at(acc, 1, bit_size(acc) - 9)
            end)
          end

          refc_chain = chain.(refc, 200)
          # size/1 of the list would compare the ~1 MB slices byte by byte
          # (its gb_trees of subterms); each slice is compared with it alone.
          {m, _} = assert_agrees(refc_chain, "slices of slices of 1 MB", size_1_below: 0)
          assert {m.binaries, m.bytes} == {1, 1_000_000}
          for s <- refc_chain, do: assert_agrees(s, "a slice of a slice")
          parts = Enum.scan(1..100, refc, fn _, acc -> :binary.part(acc, 1, byte_size(acc) - 2) end)
          {m, _} = assert_agrees(parts, "binary:part of binary:part", size_1_below: 0)
          for p <- parts, do: assert_agrees(p, "binary:part of binary:part")
          assert {m.binaries, m.bytes} == {1, 1_000_000}
          heap_chain = chain.(heap, 10)
          assert_agrees(heap_chain, "slices of slices of a heap binary")

          # Every bit offset 0..7, sizes around 64 bytes (512 bits) and small.
          sizes = Enum.to_list(0..16) ++ Enum.to_list(496..530) ++ [1023, 1024, 1025, 4096]

          checked =
            for parent <- [heap, :binary.copy(<<3>>, 200), refc],
                offset <- 0..7,
                bits <- sizes,
                offset + bits <= bit_size(parent) do
              s = bits_at(parent, offset, bits)
              assert_agrees(s, fn -> "#{bits} bits at offset #{offset}" end)
              assert_agrees([s, s], fn -> "two of #{bits} bits at offset #{offset}" end)
              1
            end

          # Built, not matched: heap or off-heap by size alone; and appended
          # (writable) binaries across the 64-byte line.
          built =
            for bits <- 0..600 do
              b = <<-1::size(bits)>>
              assert_agrees(b, fn -> "a built bitstring of #{bits} bits" end)
              1
            end

          Enum.reduce(1..80, <<>>, fn i, acc ->
            acc = acc <> <<i>>
            assert_agrees(acc, fn -> "appended to #{i} bytes" end)
            acc
          end)

          length(checked) + length(built) + 80
        end)

      report("#{count} bitstrings at bit offsets 0..7 and sizes around 64 bytes / 512 bits")
    end

    test "empty and single-element everything, on the heap and as literals" do
      in_peer("sizing empty terms", fn ->
        big = :binary.copy(<<1>>, 1000)

        literals = [
          [],
          {},
          %{},
          "",
          <<1::1>>,
          [1],
          {1},
          %{1 => 1},
          [[]],
          {{}},
          %{%{} => %{}},
          [{}],
          "x",
          1.0,
          fn -> :ok end,
          &:lists.reverse/1
        ]

        for term <-
              literals ++ Enum.map(literals, &:erlang.binary_to_term(:erlang.term_to_binary(&1))) do
          assert_agrees(term, fn -> inspect(term) end)
          assert_agrees({term}, fn -> inspect({term}) end)
        end

        # A zero-length and a one-byte slice still pin the whole binary.
        for slice <- [
              :binary.part(big, 0, 0),
              :binary.part(big, 999, 1),
              :binary.part(big, 1000, 0)
            ] do
          {m, _} = assert_agrees(slice, fn -> "slice of #{byte_size(slice)}" end)
          assert {m.binaries, m.bytes} in [{1, 1000}, {0, 0}]
        end
      end)
    end
  end

  describe "sizing while other processes change things" do
    test "ETS objects and tab2list results while writers insert and delete" do
      counts =
        in_peer("sizing ETS contents under concurrent writes", fn ->
          :rand.seed(:exsss, {1, 2, 3})
          values = for _ <- 1..200, do: term(3)
          big = :binary.copy(<<7>>, 100_000)
          tables = for type <- [:set, :ordered_set, :bag], do: :ets.new(type, [type, :public])

          # Writers: inserts and deletes of generated values and slices of
          # one off-heap binary, until told to stop.
          writer = fn table, n ->
            spawn_link(fn ->
              :rand.seed(:exsss, {n, 5, 7})

              Stream.iterate(0, &(&1 + 1))
              |> Enum.reduce_while(0, fn i, _ ->
                # 10 writes a millisecond: the reader gets a core too.
                receive do
                  :stop -> {:halt, i}
                after
                  if(rem(i, 10) == 0, do: 1, else: 0) ->
                    key = :rand.uniform(300)

                    case :rand.uniform(4) do
                      1 -> :ets.delete(table, key)
                      2 -> :ets.insert(table, {key, :binary.part(big, key, 100 + key)})
                      _ -> :ets.insert(table, {key, Enum.random(values), i})
                    end

                    {:cont, i}
                end
              end)
            end)
          end

          writers =
            for {table, n} <- Enum.with_index(tables), k <- 1..2, do: writer.(table, 10 * n + k)

          current = :ets.new(:current, [:public])

          # A table created, filled and deleted over and over: table_size
          # answers {:ok, _} or {:error, :deleted}, never crashes.
          churn =
            spawn_link(fn ->
              Enum.each(1..100_000, fn i ->
                Process.sleep(1)
                t = :ets.new(:churn, [:public])
                :ets.insert(t, {i, big, Enum.random(values)})
                :ets.insert(current, {:churned, t})
                :ets.delete(t)
              end)
            end)

          checked =
            for round <- 1..60, table <- tables, reduce: 0 do
              acc ->
                list = :ets.tab2list(table)
                assert_agrees(list, fn -> "tab2list round #{round}" end, size_1_below: 2_000)
                objects = :ets.lookup(table, :rand.uniform(300))
                assert_agrees(objects, fn -> "lookup round #{round}" end, size_1_below: 2_000)
                assert {:ok, %{}} = MemProbe.table_size(table)

                case :ets.lookup(current, :churned) do
                  [] -> :ok
                  [{:churned, churned}] -> assert_vanishing_table(churned)
                end

                acc + 2 + length(list)
            end

          Process.unlink(churn)
          Process.exit(churn, :kill)

          writes =
            for w <- writers do
              ref = Process.monitor(w)
              send(w, :stop)
              assert_receive {:DOWN, ^ref, _, _, _}, 60_000
              1
            end

          assert length(writes) == 2 * length(tables)
          checked
        end)

      report("ETS under concurrent writes: #{counts} objects and results sized")
    end

    test "literals of a purged, reloaded module and of an erased persistent term move to the heap" do
      cycles =
        in_peer("purging and reloading a module whose literals are held", fn ->
          source = ~C"""
          -module(adversarial_literals).
          -export([lit/0]).
          lit() -> {<<"a literal binary longer than sixty-four bytes, so that it is off-heap">>,
                    [1, 2, 3], #{a => 1, b => [2.5]}, 1.5, {x, "small"}, 12345678901234567890123,
                    #{1 => a, 2 => b, 3 => c, 4 => d, 5 => e, 6 => f, 7 => g, 8 => h, 9 => i,
                      10 => j, 11 => k, 12 => l, 13 => m, 14 => n, 15 => o, 16 => p, 17 => q,
                      18 => r, 19 => s, 20 => t, 21 => u, 22 => v, 23 => w, 24 => x, 25 => y,
                      26 => z, 27 => a, 28 => b, 29 => c, 30 => d, 31 => e, 32 => f, 33 => g}}.
          """

          {:ok, tokens, _} = :erl_scan.string(source)

          forms =
            tokens
            |> Enum.chunk_while(
              [],
              fn
                {:dot, _} = dot, acc -> {:cont, Enum.reverse([dot | acc]), []}
                token, acc -> {:cont, [token | acc]}
              end,
              fn acc -> {:cont, acc} end
            )
            |> Enum.map(fn form ->
              {:ok, f} = :erl_parse.parse_form(form)
              f
            end)

          {:ok, mod, beam} = :compile.forms(forms, [:binary])

          load = fn ->
            {:module, ^mod} = :code.load_binary(mod, ~c"adversarial_literals.erl", beam)
          end

          load.()
          literal = mod.lit()
          {before, _} = assert_agrees(literal, "the module literal")
          assert before.shared == 0 and before.literal > 0
          assert before.binaries == 1

          # A holder that measures its own copy of the literal whenever asked:
          # every answer is the literal form or the heap form, exactly.
          holder =
            spawn_link(fn ->
              held = mod.lit()

              Stream.repeatedly(fn ->
                receive do
                  {:measure, from} -> send(from, {:measured, MemProbe.term_size(held)})
                end
              end)
              |> Stream.run()
            end)

          {:ok, agent} = Agent.start_link(fn -> mod.lit() end)
          assert {:ok, %{literal_words: lw, shared_words: 0}} = MemProbe.state_size(agent)
          assert lw == before.literal

          forms_seen =
            for _cycle <- 1..20 do
              # Reload: the version loaded before becomes old, its literals
              # stay where they are until it is purged.
              true = :code.delete(mod)
              send(holder, {:measure, self()})
              :code.purge(mod)
              load.()
              assert_receive {:measured, seen}, 60_000

              assert {seen.flat_words, seen.shared_words + seen.literal_words} ==
                       {before.flat, before.literal}

              assert seen.off_heap_binaries == 1
              if seen.literal_words == 0, do: :heap, else: :literal
            end

          # After the first purge the held copies are heap data: literal
          # words moved to shared words, nothing else changed.
          {after_purge, _} = assert_agrees(literal, "the purged literal")
          assert after_purge.literal == 0
          assert after_purge.shared == before.literal

          assert {after_purge.flat, after_purge.binaries, after_purge.bytes} ==
                   {before.flat, before.binaries, before.bytes}

          send(holder, {:measure, self()})
          assert_receive {:measured, %{literal_words: 0, shared_words: shared}}, 60_000
          assert shared == before.literal
          assert {:ok, %{literal_words: 0, shared_words: ^shared}} = MemProbe.state_size(agent)

          # The reloaded module's literal next to the purged copy.
          fresh = mod.lit()
          {pair, _} = assert_agrees({literal, fresh}, "a purged and a current literal")
          assert {pair.shared, pair.literal} == {3 + before.literal, before.literal}

          # persistent_term: erase moves the value into its holders' heaps.
          :persistent_term.put(:adversarial_pt, {literal, [1, 2, 3]})
          pt = :persistent_term.get(:adversarial_pt)
          {as_literal, _} = assert_agrees(pt, "a persistent term")
          assert as_literal.shared == 0
          :persistent_term.erase(:adversarial_pt)
          as_heap = await_heap_copy(pt, as_literal)

          assert {as_heap.shared, as_heap.literal, as_heap.flat} ==
                   {as_literal.literal, 0, as_literal.flat}

          assert :heap in forms_seen
          length(forms_seen)
        end)

      report("#{cycles} delete/purge/reload cycles with literals held, sized exactly")
    end

    test "large messages, sized by their senders and their receivers while they arrive" do
      counts =
        in_peer("sizing large messages in flight", fn ->
          parent = self()
          big = :binary.copy(<<1>>, 1_000_000)
          <<_::binary-size(10), slice::binary-size(200_000), _::binary>> = big
          list = Enum.to_list(1..100_000)

          messages = [
            list,
            {list, list},
            Map.new(1..50_000, &{&1, [&1]}),
            Enum.reduce(1..100_000, [], &[&1 | &2]) |> List.to_tuple(),
            [big, slice, slice],
            Enum.reduce(1..100_000, :end, fn _, acc -> {acc} end)
          ]

          # Receivers with on-heap and off-heap message queues: each sizes
          # what it got straight away (still in a heap fragment) and replies.
          receiver = fn queue ->
            spawn_link(fn ->
              Process.flag(:message_queue_data, queue)

              Stream.repeatedly(fn ->
                receive do
                  {:msg, i, term, flat} ->
                    {m, _} = assert_agrees(term, fn -> "message #{i} received" end, size_1_below: 0)
                    send(parent, {:sized, i, m.flat == flat})

                  :stop ->
                    send(parent, :stopped)
                    exit(:normal)
                end
              end)
              |> Stream.run()
            end)
          end

          receivers = for q <- [:on_heap, :off_heap, :off_heap], do: receiver.(q)

          # Two senders, each sending every message to every receiver, sizing
          # it between sends; the receivers' mailboxes are scanned meanwhile.
          senders =
            for s <- 1..2 do
              spawn_link(fn ->
                for round <- 1..2, {term, i} <- Enum.with_index(messages), r <- receivers do
                  {m, _} = assert_agrees(term, fn -> "message #{i} sent" end, size_1_below: 0)
                  send(r, {:msg, {s, round, i}, term, m.flat})
                end

                send(parent, {:sent, s})
              end)
            end

          scans =
            for r <- Stream.cycle(receivers) |> Enum.take(40) do
              assert {:ok, %{}} = MemProbe.process_memory(r)
              assert [_ | _] = MemProbe.top_processes(:message_queue_len, 3)
              1
            end

          for s <- 1..2, do: assert_receive({:sent, ^s}, 120_000)
          expected = 2 * 2 * length(messages) * length(receivers)

          sized =
            for _ <- 1..expected do
              assert_receive {:sized, i, true}, 120_000
              i
            end

          for r <- receivers, do: send(r, :stop)
          for _ <- receivers, do: assert_receive(:stopped, 60_000)
          Enum.each(senders, &Process.unlink/1)
          {length(sized), length(scans)}
        end)

      {messages, scans} = counts

      report(
        "#{messages} large messages sized on arrival (and by their senders), #{scans} mailbox scans"
      )
    end
  end

  # From OTP 27 on, persistent_term:erase/1 returns before the literal area
  # collector has copied the value into its holders: until this process
  # handles that signal the value is still literal. Every answer meanwhile
  # is one of the two exact forms; the copy arrives within 1,000 waits.
  defp await_heap_copy(term, as_literal, waits \\ 1_000) do
    {m, _} = assert_agrees(term, "an erased persistent term")
    assert {m.flat, m.shared + m.literal} == {as_literal.flat, as_literal.literal}

    cond do
      m.literal == 0 ->
        m

      waits > 0 ->
        receive do
        after
          10 -> await_heap_copy(term, as_literal, waits - 1)
        end

      true ->
        flunk("an erased persistent term is still literal after 1,000 waits")
    end
  end

  # A table that another process deletes at any moment: sized, or gone
  # during the scan ({:error, :deleted}), or gone before the call (then
  # table_size/1 cannot tell it from a table that never existed and raises
  # ArgumentError naming it).
  defp assert_vanishing_table(table) do
    case MemProbe.table_size(table) do
      {:ok, %{}} -> :ok
      {:error, :deleted} -> :ok
    end
  rescue
    e in ArgumentError -> assert e.message =~ "unknown table"
  end

  describe "random terms" do
    # The generator's terms (sharing, literals, sub-binaries, deep nesting,
    # records on 29) against the three BIFs; size/1 (Erlang code) where the
    # flat size is below 1,000 words.
    @random_terms 100_000

    test "100,000 generated terms agree with erts_debug" do
      # From the run seed (mix test --seed N repeats it).
      seed = :rand.uniform(1_000_000_000)

      {size_1, depth_counts} =
        in_peer("sizing generated terms", fn ->
          :rand.seed(:exsss, {seed, 3, 5})

          for i <- 1..@random_terms, reduce: {0, %{}} do
            {size_1, depths} ->
              depth = Enum.random(1..4)
              term = term(depth)
              context = fn -> "term #{i} (seed #{seed}): #{inspect(term, limit: 20)}" end
              {_, size_1?} = assert_agrees(term, context, size_1_below: 1_000)
              {size_1 + if(size_1?, do: 1, else: 0), Map.update(depths, depth, 1, &(&1 + 1))}
          end
        end)

      assert depth_counts |> Map.values() |> Enum.sum() == @random_terms
      report("#{@random_terms} generated terms (seed #{seed}), #{size_1} also against size/1")
    end
  end
end
