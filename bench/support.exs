# Helpers shared by the benchmark scripts: medians, number formats, tables.

defmodule Bench.Support do
  @doc "Median wall time of `runs` calls of `fun`, in microseconds."
  def median_us(fun, runs) do
    times = for _ <- 1..runs, do: elem(:timer.tc(fun), 0)
    Enum.at(Enum.sort(times), div(runs, 2))
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
end
