defmodule MemProbe.WalkerAssertions do
  @moduledoc """
  How the walker's numbers are compared with erts_debug, shared by the test
  modules: the raw walker result (`measure/1`), the per-release rules for
  `erts_debug:size/1` (`assert_size_1/3`) and one call that checks a term
  against all three BIFs and the public API (`assert_agrees/3`).
  """
  import ExUnit.Assertions

  # Largest flat size the tests ask :erts_debug.flat_size/1 for (~50 ms).
  @bif_flat_limit 5_000_000

  # Releases whose layout has attached objects (OTP 27 BinRefs and FunRefs):
  # erts_debug:size/1 counts such an object once per owner (every SubBits
  # counts 8, every local fun its FunRef), while the walker's shared and
  # literal words count it once, as size_shared does (docs/LAYOUT.md §4).
  # There, shared + literal equals size/1 only when no BinRef or FunRef is
  # shared between two distinct owners, which the test cannot see from
  # outside; the walker's own size/1 count (shared + literal + the attached
  # words met again) is compared instead, and shared + literal must not
  # exceed it. On OTP 25 both are the same number and both are asserted.
  @attached_objects [~c"27", ~c"29"]

  def release, do: :erlang.system_info(:otp_release)

  def bif_flat_limit, do: @bif_flat_limit

  @doc """
  The walker's numbers (guarded reads, dirty scheduler), including the
  hashmap node words that size_shared counts a second time.
  """
  def measure(term) do
    {:ok, %{}} = result = :mem_probe_calibration.measure(term)
    to_map(result)
  end

  # The calibration's reading under the short names these assertions use.
  defp to_map(
         {:ok,
          %{
            flat_words: flat,
            shared_words: shared,
            literal_words: literal,
            hashmap_node_words: hashmap_nodes,
            off_heap_binaries: binaries,
            off_heap_bytes: bytes,
            size_words: size
          }}
       ) do
    %{
      flat: flat,
      shared: shared,
      literal: literal,
      hashmap_nodes: hashmap_nodes,
      binaries: binaries,
      bytes: bytes,
      size: size
    }
  end

  @doc "The walker's `m` against `:erts_debug.size/1` of `term`, by the release's rules."
  def assert_size_1(m, term, context) do
    size = :erts_debug.size(term)

    cond do
      contains_record?(term) ->
        # erts_debug:size/1 (OTP 29) has no clause for native records: it
        # counts each distinct record by its flat size, sharing inside it
        # expanded, so it can only be larger than the distinct words.
        assert m.shared + m.literal <= size, "#{context}: shared + literal above size/1"

      (creators = boxed_creator_words(term)) > 0 ->
        # erts_debug:size/1 (OTP 25) counts a local fun as its header and
        # environment, never its creator; a boxed one there (an external
        # pid: a fun decoded from another node, or with a serial the local
        # node cannot hold in an immediate) is words it leaves out, at most
        # the creators' words.
        assert m.shared + m.literal == m.size, "#{context}: shared + literal vs walker's size/1"
        assert m.size >= size, "#{context}: size/1 above the walker's"
        assert m.size - size <= creators, "#{context}: size/1 differs by more than creators"

      release() in @attached_objects ->
        assert m.size == size, "#{context}: size/1"
        assert m.shared + m.literal <= size, "#{context}: shared + literal above size/1"

      true ->
        assert m.size == size, "#{context}: size/1"
        assert m.shared + m.literal == size, "#{context}: shared + literal vs size/1"
    end
  end

  @doc "Whether a native record (OTP 29) is anywhere in `term`."
  def contains_record?(term) do
    release() >= ~c"29" and contains?(term, &apply(:erlang, :is_record, [&1]))
  end

  @doc """
  Words of the boxed creators (external pids, or any boxed term a decoded fun
  was given) of the funs anywhere in `term`, each time it is met (OTP 25 and
  26 keep a fun's creator in the fun); 0 on later releases.
  """
  def boxed_creator_words(term) do
    if release() < ~c"27", do: creator_words(term), else: 0
  end

  defp creator_words(term) do
    own =
      if is_function(term),
        do: :erts_debug.flat_size(elem(:erlang.fun_info(term, :pid), 1)),
        else: 0

    own + (term |> children() |> Enum.map(&creator_words/1) |> Enum.sum())
  end

  defp children(term) do
    cond do
      is_tuple(term) -> Tuple.to_list(term)
      is_map(term) -> Enum.flat_map(term, fn {k, v} -> [k, v] end)
      is_function(term) -> elem(:erlang.fun_info(term, :env), 1)
      is_list(term) -> improper_elements(term)
      true -> []
    end
  end

  defp improper_elements([head | tail]), do: [head | improper_elements(tail)]
  defp improper_elements([]), do: []
  defp improper_elements(tail), do: [tail]

  # Whether `pred` holds for `term` or anything inside it.
  defp contains?(term, pred), do: pred.(term) or Enum.any?(children(term), &contains?(&1, pred))

  @doc """
  Asserts that the walker sizes `term` exactly as erts_debug does: flat words
  against `flat_size/1` (up to `bif_flat_limit/0`; past it the plain
  path-counting walk must agree that it is that large; `:bif_flat_below`
  raises that for trees, whose flat size the BIF counts in linear time),
  shared plus hashmap
  node words against `size_shared/1`, `size/1` by `assert_size_1/3` when the
  flat size is below `:size_1_below` (default 20,000: size/1 is Erlang code,
  minutes on a 1M-key map), and the public API (`flat_size/1`,
  `shared_size/1`, `term_size/1`, direct reads) against the guarded walk.
  Returns the measure and whether size/1 was compared. `context` (a string or
  a function returning one) is only built when an assertion fails.
  """
  def assert_agrees(term, context, opts \\ []) do
    size_1_below = Keyword.get(opts, :size_1_below, 20_000)
    flat_below = Keyword.get(opts, :bif_flat_below, @bif_flat_limit + 1)

    try do
      check(term, "", size_1_below, flat_below)
    rescue
      ExUnit.AssertionError ->
        context = if is_function(context, 0), do: context.(), else: context
        check(term, context, size_1_below, flat_below)
    end
  end

  defp check(term, context, size_1_below, flat_below) do
    m =
      case :mem_probe_calibration.measure(term) do
        {:ok, %{}} = result -> to_map(result)
        other -> flunk("#{context}: the walker refused the term: #{inspect(other)}")
      end

    if m.flat < flat_below do
      assert m.flat == :erts_debug.flat_size(term), "#{context}: flat"
    else
      assert :mem_probe_nif.walk_flat_raw(term, @bif_flat_limit) == :limit, "#{context}: flat"
    end

    assert m.shared + m.hashmap_nodes == :erts_debug.size_shared(term),
           "#{context}: size_shared"

    assert MemProbe.flat_size(term) == m.flat, "#{context}: flat_size/1"
    assert MemProbe.shared_size(term) == m.shared, "#{context}: shared_size/1"
    size = MemProbe.term_size(term)

    assert {size.flat_words, size.shared_words, size.literal_words, size.off_heap_binaries,
            size.off_heap_bytes} == {m.flat, m.shared, m.literal, m.binaries, m.bytes},
           "#{context}: term_size/1"

    size_1? = m.flat < size_1_below
    if size_1?, do: assert_size_1(m, term, context)
    {m, size_1?}
  end
end
