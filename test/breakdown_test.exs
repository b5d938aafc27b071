defmodule MemProbe.BreakdownTest do
  # Retained sizes checked against sizes computed independently with
  # term_size/1 on the parts, on the running VM. Not async: the tests start
  # processes with sizeable states, which would show up in the process
  # scans other tests take meanwhile (the diff/3 doctest's born processes).
  use ExUnit.Case, async: false

  Code.require_file("../examples/leaky_system.exs", __DIR__)

  defp every_row(term, opts \\ []) do
    {:ok, b} = MemProbe.breakdown(term, Keyword.merge([min_share: 0.0, n: 10_000], opts))
    b
  end

  defp row(b, path), do: Enum.find(b.rows, &(&1.path == path))

  defp contains?(outer, inner) do
    outer != inner and length(outer) <= length(inner) and
      Enum.zip(outer, inner)
      |> Enum.all?(fn
        {{:list, a..b//_}, {:list, c..d//_}} -> a <= c and d <= b
        {x, y} -> x == y
      end)
  end

  # Rows that no other row contains.
  defp outermost(rows),
    do: Enum.reject(rows, fn r -> Enum.any?(rows, &contains?(&1.path, r.path)) end)

  test "an unshared child retains exactly its term_size" do
    binary = :binary.copy("x", 5000)
    tuple = List.to_tuple(Enum.to_list(1..100))
    list = Enum.map(1..300, &{&1, :erlang.unique_integer()})
    term = %{binary: binary, tuple: tuple, list: list, small: 1}
    b = every_row(term)
    assert row(b, key: :binary).bytes == MemProbe.term_size(binary).bytes
    assert row(b, key: :binary).off_heap_bytes == 5000
    assert row(b, key: :binary).kind == :binary
    assert row(b, key: :tuple).bytes == MemProbe.term_size(tuple).bytes
    # The list is a wrapper around its one run: the run is the row.
    assert row(b, key: :list) == nil
    run = row(b, key: :list, list: 0..299)
    assert run.bytes == MemProbe.term_size(list).bytes
    assert run.label == "term.list[0..299]"
    assert row(b, key: :list, list: 7..7).bytes == MemProbe.term_size(Enum.at(list, 7)).bytes + 16
    assert b.total.bytes == MemProbe.term_size(term).bytes
    assert b.total.off_heap_binaries == 1
  end

  test "the root retains term_size(term).bytes; outermost rows sum to at most that" do
    shared = Enum.to_list(1..50)

    terms = [
      {Enum.to_list(1..1000), %{a: "text", b: {1.5, self(), make_ref()}}},
      Map.new(1..200, &{&1, {&1, shared}}),
      [:binary.copy("y", 300) | Enum.map(1..100, &Integer.to_string/1)],
      {shared, shared, fn -> shared end},
      <<1, 2, 3>>,
      :atom
    ]

    for term <- terms do
      {:ok, b} = MemProbe.breakdown(term, min_share: 0.0, n: 1000)
      size = MemProbe.term_size(term)
      assert b.total.bytes == size.bytes
      assert b.total.shared_words == size.shared_words
      assert b.total.literal_words == size.literal_words
      assert b.total.off_heap_bytes == size.off_heap_bytes
      assert Enum.sum(Enum.map(outermost(b.rows), & &1.bytes)) <= b.total.bytes
      assert Enum.all?(b.rows, &(&1.bytes <= b.total.bytes and &1.share <= 1.0))
    end
  end

  test "a shared subterm lands on the common parent, never on one field" do
    shared = Enum.map(1..1000, &{:item, &1})
    left = %{x: shared, tag: make_ref()}
    right = %{y: shared, tag: make_ref()}
    term = {left, right, :filler}
    b = every_row(term)
    # Each field keeps only its own map (and its ref): the list is the root's.
    assert row(b, elem: 0).bytes ==
             MemProbe.term_size(left).bytes - MemProbe.term_size(shared).bytes

    assert row(b, elem: 1).bytes ==
             MemProbe.term_size(right).bytes - MemProbe.term_size(shared).bytes

    refute Enum.any?(b.rows, &match?([{:elem, _}, {:key, k} | _] when k in [:x, :y], &1.path))
    assert b.total.bytes == MemProbe.term_size(term).bytes

    # Shared by two elements of one list: the list keeps it, not a run.
    pair = [shared, shared]
    b = every_row({{pair, :other}, Enum.to_list(1..10)})
    assert row(b, elem: 0, elem: 0).bytes == MemProbe.term_size(pair).bytes
    assert row(b, elem: 0, elem: 0, list: 0..1).bytes == 4 * 8
  end

  test "a sub-binary charges its whole parent binary where it is pinned" do
    big = :binary.copy("z", 100_000)
    # Over 64 bytes: a sub-binary (a smaller slice would be copied).
    <<slice::binary-size(100), _::binary>> = big
    b = every_row({[slice], Enum.to_list(1..10)})
    pinned = row(b, elem: 0, list: 0..0)
    assert pinned.kind == :binary
    assert pinned.off_heap_bytes == 100_000
    assert pinned.label == "term{0}[0]"

    # Pinned from two places, the Binary belongs to their common parent.
    b = every_row({[slice], big})
    assert Enum.all?(b.rows, &(&1.off_heap_bytes == 0))
    assert b.total.off_heap_bytes == 100_000
  end

  test "literals are reported apart and charged to nobody" do
    term = {:persistent_term.get({__MODULE__, :missing}, {:lit, [1, 2, 3]}), Enum.to_list(1..10)}
    b = every_row(term)
    assert b.total.literal_words == MemProbe.term_size(term).literal_words
    assert b.total.literal_words > 0
    assert row(b, elem: 0) == nil
  end

  test "records and structs are labelled by field, other keys printed, never made atoms" do
    state = {:state, Enum.to_list(1..500), %{"user-1" => :binary.copy("q", 200)}, 0}

    {:ok, b} =
      MemProbe.breakdown(state, records: [state: [:sessions, :cache, :count]], min_share: 0.0)

    labels = Enum.map(b.rows, & &1.label)
    assert "term.sessions[0..499]" in labels
    assert ~s(term.cache["user-1"]) in labels

    {:ok, b} = MemProbe.breakdown(state, min_share: 0.0)
    assert "term{1}[0..499]" in Enum.map(b.rows, & &1.label)

    struct = %URI{path: String.duplicate("p", 2000), host: "h"}
    {:ok, b} = MemProbe.breakdown(struct, name: "uri")
    assert hd(b.rows).label == "uri.path"
  end

  test "list runs are ranges in Elixir and {list, First, Last} for Erlang callers" do
    term = %{events: Enum.to_list(1..100)}
    {:ok, elixir} = MemProbe.breakdown(term)
    {:ok, erlang} = :mem_probe.breakdown(term, [])
    assert [%{path: [key: :events, list: 0..99]}] = elixir.rows
    assert [%{path: [key: :events, list: %Range{first: 0, last: 99, step: 1}]}] = elixir.rows
    assert [%{path: [{:key, :events}, {:list, 0, 99}]}] = erlang.rows
    assert Enum.map(elixir.rows, & &1.bytes) == Enum.map(erlang.rows, & &1.bytes)
    # Either form diffs and prints the same.
    {:ok, longer} = MemProbe.breakdown(%{events: Enum.to_list(1..300)})
    assert [%{older_bytes: 1600, growth_bytes: 3200}] = MemProbe.diff_breakdown(elixir, longer).rows
    assert MemProbe.format(elixir) == MemProbe.format(erlang)
  end

  test "a hot part of a long list is its own row, inside the run" do
    list = Enum.map(0..999, fn i -> if i in 500..509, do: Enum.to_list(1..1000), else: i end)
    {:ok, b} = MemProbe.breakdown(%{events: list})
    assert hd(b.rows).path == [key: :events, list: 500..509]
  end

  test "print indents rows under the row that contains them" do
    t = %{a: {Enum.to_list(1..4000), Enum.to_list(1..3000), Enum.to_list(1..3000)}}
    lines = MemProbe.breakdown(t) |> MemProbe.format() |> String.split("\n")
    assert Enum.at(lines, 1) =~ ~r/^path +bytes +share +off-heap +objects +kind$/
    assert Enum.at(lines, 2) =~ ~r/^term\.a +[\d.]+ KiB +\d+\.\d% +0 B +10001 +tuple$/
    assert Enum.at(lines, 3) =~ ~r/^  term\.a\{0\}\[0\.\.3999\] +62\.5 KiB +/
    assert List.last(lines) =~ ~r/in no row: term's own objects/
  end

  test "print/1 prints the table format/1 renders, with human units and shares" do
    import ExUnit.CaptureIO
    {:ok, b} = MemProbe.breakdown(%{log: Enum.to_list(1..4000), n: 1})
    printed = capture_io(fn -> assert MemProbe.print(b) == :ok end)
    assert String.trim_trailing(printed) == MemProbe.format(b)
    assert printed =~ ~r/^term retains 62\.\d+ KiB/
    assert printed =~ ~r/\nterm\.log\[0\.\.3999\] +62\.5 KiB +\d+\.\d% +0 B +4000 +list\n/
  end

  test "report/1 shows the heaviest paths in the state of the largest process" do
    import ExUnit.CaptureIO
    # Far larger than anything else the suite keeps alive.
    {:ok, hog} = Agent.start(fn -> %{ballast: Enum.to_list(1..1_500_000), n: 1} end)

    try do
      report = :mem_probe.report(n: 3, binaries: false)
      assert %{pid: ^hog, breakdown: {:ok, b}} = report.top_paths
      assert [%{label: "state.ballast[0..1499999]"} = first | _] = b.rows
      assert first.bytes == 1_500_000 * 16
      text = capture_io(fn -> MemProbe.report(n: 3, binaries: false) end)
      assert text =~ "Heaviest paths in the state of"
      assert text =~ ~r/state\.ballast\[0\.\.1499999\] +22\.9 MiB/
    after
      Process.exit(hog, :kill)
    end
  end

  test "depth limits how deep rows are looked for" do
    term = %{a: %{b: %{c: Enum.to_list(1..1000)}}, d: Enum.to_list(1..900)}
    {:ok, deep} = MemProbe.breakdown(term)
    assert Enum.any?(deep.rows, &(length(&1.path) == 4))
    {:ok, shallow} = MemProbe.breakdown(term, depth: 1)
    assert Enum.all?(shallow.rows, &(length(&1.path) <= 1))
  end

  test "state_breakdown names the demo's growing field first, and the diff says it grew" do
    {:ok, hog} = GenServer.start(MemProbe.Demo.StateHog, [])

    try do
      Process.sleep(100)
      {:ok, older} = MemProbe.state_breakdown(hog)
      assert [first | _] = older.rows
      assert first.label =~ ~r/^state\.orders\[0\.\.\d+\]$/
      Process.sleep(200)
      {:ok, newer} = MemProbe.state_breakdown(hog)
      assert newer.total.bytes > older.total.bytes
      diff = MemProbe.diff_breakdown(older, newer)
      assert [grew | _] = diff.rows
      assert grew.label =~ ~r/^state\.orders\[0\.\.\d+\]$/
      assert grew.growth_bytes > 0 and grew.growth_bytes <= diff.total.growth_bytes
      text = MemProbe.format(newer)
      assert text =~ "state retains"
      assert text =~ ~r/state\.orders\[0\.\.\d+\]\s+[\d.]+ (KiB|MiB)\s+\d+\.\d%/
      assert MemProbe.format(diff) =~ "grew"
    after
      Process.exit(hog, :kill)
    end
  end

  test "state_breakdown errors: dead, not a sys process, stuck, bad options" do
    dead = spawn(fn -> :ok end)
    ref = Process.monitor(dead)
    assert_receive {:DOWN, ^ref, _, _, _}
    assert MemProbe.state_breakdown(dead) == {:error, :noproc}
    plain = spawn(fn -> Process.sleep(5000) end)
    assert MemProbe.state_breakdown(plain) == {:error, :not_a_sys_process}
    {:ok, agent} = Agent.start(fn -> [1, 2, 3] end)
    Agent.cast(agent, fn s -> Process.sleep(1000) && s end)
    assert MemProbe.state_breakdown(agent, timeout: 50) == {:error, :timeout}
    assert MemProbe.state_breakdown(self()) == {:error, :calling_process}

    assert_raise ArgumentError, ~r/state_breakdown\/2: unknown option colour/, fn ->
      MemProbe.state_breakdown(agent, colour: :red)
    end

    assert_raise ArgumentError, ~r/min_share/, fn -> MemProbe.breakdown(1, min_share: 2) end
    Process.exit(agent, :kill)
    Process.exit(plain, :kill)
  end

  test "a large key stays behind in the process; its text travels" do
    key = Enum.to_list(1..500)
    {:ok, agent} = Agent.start(fn -> %{key => Enum.to_list(1..5000)} end)
    {:ok, b} = MemProbe.state_breakdown(agent)
    assert [{:key_text, text} | _] = hd(b.rows).path
    assert is_binary(text) and byte_size(text) <= 60
    Process.exit(agent, :kill)
  end

  test "a term with more objects than allowed is refused, not walked" do
    term = Enum.to_list(1..1000)
    assert MemProbe.breakdown(term, max_objects: 999) == {:error, :too_many_objects}
    assert {:ok, _} = MemProbe.breakdown(term, max_objects: 1000)
  end

  test "a huge term goes to a dirty scheduler and still answers exactly" do
    term = Enum.map(1..200_000, &{&1})
    {:ok, b} = MemProbe.breakdown(term)
    assert b.total.bytes == MemProbe.term_size(term).bytes
    assert hd(b.rows).path == [list: 0..199_999]
  end

  test "without the native walker the answer is an error, not a guess" do
    ebin = :code.which(:mem_probe) |> Path.dirname() |> to_charlist()

    {:ok, peer, _node} =
      :peer.start(%{
        connection: :standard_io,
        args: [~c"-pa", ebin, ~c"-mem_probe", ~c"mode", ~c"fallback"]
      })

    try do
      :ok = :peer.call(peer, :application, :load, [:mem_probe], 30_000)
      result = :peer.call(peer, :mem_probe, :breakdown, [{1, [2]}, []], 30_000)
      assert result == {:error, :native_walker_unavailable}
    after
      :peer.stop(peer)
    end
  end
end
