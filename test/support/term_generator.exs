defmodule MemProbe.TermGenerator do
  @moduledoc """
  Random terms of every type the walker reads, with sharing (subterms reused
  from a pool), literals (module constants, persistent terms), sub-binaries
  and deep nesting. Seed with `:rand.seed/2` for reproducible runs.
  """

  # Module constants live in the literal area.
  @literals [
    [1, 2, 3],
    %{a: 1, b: [2]},
    "a literal binary longer than sixty-four bytes, so it is a refc binary.",
    {:x, 1.5, [:y]},
    &Enum.map/2
  ]

  @atoms [:ok, :error, :foo, nil, true]

  def term(depth) when depth <= 0, do: leaf()

  def term(depth) do
    case :rand.uniform(15) do
      n when n <= 3 -> leaf()
      4 -> reuse(depth)
      5 -> list(depth)
      6 -> [term(depth - 1) | term(depth - 1)]
      7 -> tuple(depth)
      8 -> flatmap(depth)
      9 -> hashmap(depth)
      10 -> closure(depth)
      11 -> remember([term(depth - 1), term(depth - 1)])
      12 -> Enum.random(@literals)
      13 -> {Enum.random(@literals), term(depth - 1)}
      14 -> deep(depth)
      15 -> record(depth)
    end
  end

  @doc """
  Whether this release has native records (OTP 29+); there the generator
  also builds records of `:mem_probe_test_records`, compiled on first use.
  """
  def records? do
    :erlang.system_info(:otp_release) >= ~c"29" and load_records()
  end

  # OTP 29 native records of 0 to 3 fields, one with a default value. The
  # source is compiled here, at run time, because no other release can parse
  # it (so it is no .erl file a build tool would pick up).
  @records_source """
  -module(mem_probe_test_records).
  -export([make/1, point/2]).
  -record #empty{}.
  -record #one{a}.
  -record #point{x = 0, y = 0}.
  -record #three{a, b = default, c}.
  make([]) -> #empty{};
  make([A]) -> #one{a = A};
  make([X, Y]) -> #point{x = X, y = Y};
  make([A, B, C]) -> #three{a = A, b = B, c = C}.
  point(X, Y) -> #point{x = X, y = Y}.
  """

  defp load_records do
    case :code.ensure_loaded(:mem_probe_test_records) do
      {:module, _} ->
        true

      _ ->
        forms =
          @records_source
          |> String.split(~r/(?<=\.)\n/, trim: true)
          |> Enum.map(fn form ->
            {:ok, tokens, _} = :erl_scan.string(to_charlist(form))
            {:ok, parsed} = :erl_parse.parse_form(tokens)
            parsed
          end)

        {:ok, module, beam} = :compile.forms(forms, [:binary, :report])
        {:module, ^module} = :code.load_binary(module, ~c"mem_probe_test_records", beam)
        true
    end
  end

  defp record(depth) do
    if records?() do
      fields = for _ <- 1..Enum.random([0, 1, 2, 3])//1, do: term(depth - 1)
      remember(apply(:mem_probe_test_records, :make, [fields]))
    else
      leaf()
    end
  end

  defp list(depth), do: remember(for _ <- 1..:rand.uniform(6), do: term(depth - 1))

  defp tuple(depth) do
    remember(List.to_tuple(for _ <- 0..:rand.uniform(6)//1, do: term(depth - 1)))
  end

  defp flatmap(depth) do
    remember(Map.new(1..:rand.uniform(10), fn i -> {i, term(depth - 1)} end))
  end

  defp hashmap(depth) do
    size = 32 + :rand.uniform(60)

    remember(
      Map.new(1..size, fn i -> {{:k, i}, if(rem(i, 7) == 0, do: term(depth - 2), else: i)} end)
    )
  end

  defp closure(depth) do
    a = term(depth - 1)
    b = term(depth - 1)
    remember(fn -> {a, b} end)
  end

  defp deep(depth) do
    levels = :rand.uniform(50)

    Enum.reduce(1..levels, term(depth - 1), fn _, acc ->
      if rem(levels, 2) == 0, do: [acc], else: {acc}
    end)
  end

  # Sharing: a subterm seen before, referenced again.
  defp reuse(depth) do
    case Process.get(:term_pool, []) do
      [] -> term(depth - 1)
      pool -> Enum.random(pool)
    end
  end

  # Pooled subterms are reused by later terms, so sharing compounds across
  # the run; only modest terms are pooled, or flat sizes would grow without
  # bound (2^n paths after n rounds).
  defp remember(term) do
    if MemProbe.flat_size(term) < 200_000 do
      pool = Process.get(:term_pool, [])
      Process.put(:term_pool, Enum.take([term | pool], 30))
    end

    term
  end

  def leaf do
    case :rand.uniform(17) do
      1 -> :rand.uniform(1000)
      2 -> Enum.random([1, -1]) * 2 ** (59 + :rand.uniform(200))
      3 -> :rand.uniform() * 1.0e10
      4 -> Enum.random(@atoms)
      5 -> :crypto.strong_rand_bytes(:rand.uniform(65) - 1)
      6 -> :binary.copy(<<7>>, 64 + :rand.uniform(3000))
      7 -> sub_binary()
      8 -> <<:rand.uniform(127)::size(:rand.uniform(7))>>
      9 -> make_ref()
      10 -> self()
      11 -> external()
      12 -> &:lists.reverse/1
      13 -> persistent()
      14 -> []
      15 -> {}
      16 -> %{}
      17 -> :erlang.make_fun(Enum.random([:lists, :maps]), :map, 2)
    end
  end

  defp sub_binary do
    parent = Enum.random([:binary.copy(<<9>>, 70 + :rand.uniform(500)), :binary.copy(<<5>>, 60)])
    bits = bit_size(parent)
    offset = :rand.uniform(div(bits, 2)) - 1
    bits_at(parent, offset, :rand.uniform(bits - offset - 1))
  end

  @doc """
  The `size` bits of `parent` from bit `offset` on, matched out of it (so a
  sub-binary of `parent`, not a copy).
  """
  # Elixir 1.20 warns unless a variable bound outside a match is pinned in
  # size(...), and the pin is accepted there only from Elixir 1.16 on.
  if Version.match?(System.version(), ">= 1.16.0") do
    def bits_at(parent, offset, size) do
      <<_::size(^offset), slice::bitstring-size(^size), _::bitstring>> = parent
      slice
    end
  else
    def bits_at(parent, offset, size) do
      <<_::size(offset), slice::bitstring-size(size), _::bitstring>> = parent
      slice
    end
  end

  defp external do
    node = "other@host"

    Enum.random([
      <<131, 88, 100, 0, 10, node::binary, 1::32, 0::32, 1::32>>,
      <<131, 89, 100, 0, 10, node::binary, 5::32, 1::32>>,
      <<131, 90, 0, 3, 100, 0, 10, node::binary, 1::32, 1::32, 2::32, 3::32>>
    ])
    |> :erlang.binary_to_term()
  end

  defp persistent do
    key = {__MODULE__, :persistent}

    case :persistent_term.get(key, nil) do
      nil ->
        :persistent_term.put(key, {:persistent, [1.5, "abc"], %{k: :v}})
        :persistent_term.get(key)

      value ->
        value
    end
  end
end
