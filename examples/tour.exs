# A short tour of MemProbe's term sizes: `make demo` runs it.
#
# Typical terms, MemProbe's numbers beside erts_debug's, then a small
# sub-binary pinning a large parent — the binary leak no VM function shows.

defmodule Tour do
  def row(cells, widths) do
    cells
    |> Enum.zip(widths)
    |> Enum.with_index()
    |> Enum.map(fn
      {{cell, w}, 0} -> String.pad_trailing(to_string(cell), w)
      {{cell, w}, _} -> String.pad_leading(to_string(cell), w)
    end)
    |> Enum.join("  ")
    |> IO.puts()
  end

  def dash(:undefined), do: "-"
  def dash(n), do: n

  def run do
    info = MemProbe.info()

    IO.puts(
      "MemProbe #{info.mode} mode on OTP #{info.otp_release}" <>
        if(info[:layout], do: " (#{info.layout})", else: "")
    )

    if info.mode == :fallback, do: IO.puts("  fallback reason: #{inspect(info.reason)}")
    IO.puts("")

    bin = :binary.copy("x", 1_000_000)
    <<_::binary-size(10), slice::binary-size(100), _::binary>> = bin
    list = Enum.to_list(1..1000)
    big_map = Map.new(1..1000, &{&1, &1})

    terms = [
      {"[1, 2, 3] (module constant)", [1, 2, 3]},
      {"Enum.to_list(1..1000)", list},
      {"{list, list} (shared)", {list, list}},
      {"%{a: 1, b: 2} built at run time", %{a: System.unique_integer(), b: 2}},
      {"1000-key map", big_map},
      {"\"hello\" (heap binary)", String.duplicate("hello", 1)},
      {"1 MB binary", bin},
      {"fn -> list end (closure)", fn -> list end},
      {"{self(), make_ref(), 1.5}", {self(), make_ref(), 1.5}},
      {"40-level doubling DAG", Enum.reduce(1..40, :leaf, fn _, t -> {t, t} end)}
    ]

    widths = [32, 14, 14, 10, 12, 12, 14]

    row(
      ["term", "flat_words", "erts flat", "shared", "erts shared", "literal", "off-heap B"],
      widths
    )

    row(Enum.map(widths, &String.duplicate("-", &1)), widths)

    for {label, term} <- terms do
      size = MemProbe.term_size(term)

      erts_flat = if label =~ "DAG", do: "(2^40 paths)", else: :erts_debug.flat_size(term)

      row(
        [
          label,
          size.flat_words,
          erts_flat,
          size.shared_words,
          :erts_debug.size_shared(term),
          dash(size.literal_words),
          dash(size.off_heap_bytes)
        ],
        widths
      )
    end

    IO.puts("""

    shared vs erts shared: the 1000-key map is a hashmap; :erts_debug.size_shared/1
    counts its nodes twice, MemProbe once (so shared_words + literal_words equals
    :erts_debug.size/1).

    A 100-byte slice of a 1 MB binary:
    """)

    size = MemProbe.term_size(slice)
    IO.puts("  MemProbe.term_size(slice)      #{inspect(size)}")

    IO.puts(
      "  :erts_debug.flat_size(slice)   #{:erts_debug.flat_size(slice)} words — nothing about the megabyte"
    )

    IO.puts("  byte_size(slice)               #{byte_size(slice)} bytes")

    IO.puts("""

    The slice keeps the whole #{size.off_heap_bytes} bytes alive: that is what a process holding
    it costs the node until it lets go (or copies it with :binary.copy/1).
    """)
  end
end

Tour.run()
