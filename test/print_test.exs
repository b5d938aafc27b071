defmodule MemProbe.PrintTest do
  use ExUnit.Case, async: true

  import ExUnit.CaptureIO

  defp lines(result, opts \\ []), do: result |> MemProbe.format(opts) |> String.split("\n")

  # The start column of `word` in `line`.
  defp column(line, word) do
    {start, _} = :binary.match(line, word)
    start
  end

  describe "a list of maps" do
    test "is a table: header, rule, one aligned row per map, no trailing spaces" do
      rows = [
        %{name: :sessions, memory_bytes: 13_107_200, size: 1_200},
        %{name: :cache, memory_bytes: 512, size: 3},
        %{name: :a_much_longer_name, memory_bytes: 100_000_000, size: 1_234_567}
      ]

      assert lines(rows) == [
               "name                memory_bytes       size",
               "------------------  ------------  ---------",
               "sessions                12.5 MiB      1,200",
               "cache                      512 B          3",
               "a_much_longer_name      95.4 MiB  1,234,567"
             ]
    end

    test "renders the shapes of the process scans: pids, mfas, nil, counts" do
      pid = self()

      rows = [
        %{
          pid: pid,
          value: 1_234_567,
          name: nil,
          initial_call: {MyApp.Worker, :init, 1},
          current_function: {:gen_server, :loop, 7}
        },
        %{
          pid: pid,
          value: 12,
          name: :logger,
          initial_call: {:proc_lib, :init_p, 5},
          current_function: {:erlang, :hibernate, 3}
        }
      ]

      [header, rule, first, second] = lines(rows)
      assert header =~ ~r/^pid\s+name\s+value\s+initial_call\s+current_function$/
      assert rule =~ ~r/^-+  -+  -+  -+  -+$/
      assert first =~ to_string(:erlang.pid_to_list(pid))
      assert first =~ "MyApp.Worker.init/1"
      assert first =~ ":gen_server.loop/7"
      assert first =~ "1,234,567"
      assert second =~ ":erlang.hibernate/3"
      # nil is "-", in the name column; counts are right-aligned.
      assert String.slice(first, column(header, "name"), 2) == "- "
      value_end = column(header, "value") + 5
      assert String.slice(first, value_end - 9, 9) == "1,234,567"
      assert String.slice(second, value_end - 3, 3) == " 12"

      # The same rows in Erlang style.
      erl = rows |> :mem_probe.format() |> IO.chardata_to_string()
      assert erl =~ "'Elixir.MyApp.Worker':init/1"
      assert erl =~ "gen_server:loop/7"
      assert erl =~ "-"
    end

    test "value is a size when asked, or when the row says its attribute is one" do
      rows = [%{pid: self(), value: 2 * 1024 * 1024}]
      assert Enum.at(lines(rows), 2) =~ "2,097,152"
      assert Enum.at(lines(rows, bytes: [:value]), 2) =~ "2.0 MiB"

      with_attr = [%{pid: self(), value: 2 * 1024 * 1024, attr: :memory}]
      assert Enum.at(lines(with_attr), 2) =~ "2.0 MiB"
      counted = [%{pid: self(), value: 2 * 1024 * 1024, attr: :message_queue_len}]
      assert Enum.at(lines(counted), 2) =~ "2,097,152"
      assert Enum.at(lines(rows, raw: true), 2) =~ "2097152"
    end

    test "rows with different keys share the union of the columns" do
      [header, _, a, b] = lines([%{pid: self(), value: 1}, %{pid: self(), count: 2}])
      assert header =~ ~r/^pid\s+value\s+count$/
      assert String.trim_trailing(a) == a
      assert b =~ ~r/2$/
    end
  end

  describe "maps and tuples" do
    test "a map is key/value lines followed by a sub-table per list of maps" do
      # The shape of count_processes/2.
      result = %{
        process_count: 12_345,
        process_limit: 262_144,
        groups: [
          %{key: {MyApp.Conn, :init, 1}, count: 10_000},
          %{key: {:proc_lib, :init_p, 5}, count: 12}
        ]
      }

      assert lines(result) == [
               "process_count  12,345",
               "process_limit  262,144",
               "",
               "groups:",
               "   count  key",
               "  ------  ------------------",
               "  10,000  MyApp.Conn.init/1",
               "      12  :proc_lib.init_p/5"
             ]

      assert lines({:ok, result}) == lines(result)
    end

    test "the shape of process_memory/1: sizes without a bytes suffix still get units" do
      result =
        {:ok,
         %{
           memory: 10_240,
           heap: 6_144,
           stack: 1_024,
           mailbox: 2_048,
           other: 1_024,
           binaries: 2,
           message_queue_len: 3,
           message_queue_data: :on_heap
         }}

      text = MemProbe.format(result)
      assert text =~ ~r/^memory\s+10\.0 KiB$/m
      assert text =~ ~r/^heap\s+6\.0 KiB$/m
      assert text =~ ~r/^stack\s+1\.0 KiB$/m
      assert text =~ ~r/^mailbox\s+2\.0 KiB$/m
      assert text =~ ~r/^message_queue_len\s+3$/m
      assert text =~ ~r/^message_queue_data\s+on_heap$/m
    end

    test "errors, empty lists, nested maps and other terms" do
      assert lines({:error, :noproc}) == ["error: noproc"]
      assert lines([]) == ["(none)"]
      assert lines(%{}) == ["(empty)"]

      nested = lines(%{pid: self(), memory: %{heap_bytes: 4096, stack_bytes: 100}})

      assert Enum.at(nested, 0) =~
               ~r/^pid\s+#{Regex.escape(to_string(:erlang.pid_to_list(self())))}$/

      assert Enum.slice(nested, 1..4) == [
               "",
               "memory:",
               "  heap_bytes   4.0 KiB",
               "  stack_bytes  100 B"
             ]

      assert lines(42) == ["42"]
      assert lines([1, 2, 3]) == ["[1,2,3]"]
    end

    test "human units, percentages and long cells" do
      sizes = [0, 1023, 1024, 12_800, 1_048_575, 100_000_000, 1_073_741_824, -2048]

      assert Enum.map(sizes, &(lines(%{bytes: &1}) |> hd())) == [
               "bytes  0 B",
               "bytes  1023 B",
               "bytes  1.0 KiB",
               "bytes  12.5 KiB",
               "bytes  1.0 MiB",
               "bytes  95.4 MiB",
               "bytes  1.0 GiB",
               "bytes  -2.0 KiB"
             ]

      assert lines(%{share: 0.1234, usage: 1.0, hit_rate: 0.5, other: 0.25}) == [
               "share     12.3%",
               "usage     100.0%",
               "hit_rate  50.0%",
               "other     0.25"
             ]

      [line] = lines(%{note: String.duplicate("é", 200)})
      assert String.length(line) == String.length("note  ") + 60
      assert String.ends_with?(line, "...")
    end
  end

  describe "real results" do
    test "every ETS, memory and allocator result prints and print/1 returns :ok" do
      t = :ets.new(:mem_probe_print_test, [:public])
      for i <- 1..10, do: :ets.insert(t, {i, :binary.copy("p", 200_000)})

      out =
        capture_io(fn -> assert MemProbe.print(MemProbe.top_tables(5, binaries: true)) == :ok end)

      assert out =~ ~r/^table\s+name\s+owner\s+owner_name\s+memory_bytes\s+off_heap_bytes/
      assert String.ends_with?(out, "\n")

      out = capture_io(fn -> MemProbe.print(MemProbe.table_size(t)) end)
      assert out =~ ~r/off_heap_bytes\s+1\.9 MiB/
      assert out =~ ~r/off_heap_binaries\s+10\n/

      out = capture_io(fn -> MemProbe.print(MemProbe.memory()) end)

      assert out =~
               ~r/^total_bytes\s+[\d.]+ MiB\n\ncategories:\n  category\s+part_of\s+bytes\s+share\n/

      assert out =~ ~r/  binary\s+system\s+[\d.]+ [KMG]iB\s+[\d.]+%/

      out = capture_io(fn -> MemProbe.print(MemProbe.allocators()) end)
      assert out =~ "allocators:\n  allocator "
      assert out =~ ~r/binary_alloc\s+\d+\s+[\d,]+\s+[\d.]+ [KMG]?i?B/
      assert out =~ "mseg_cache:"

      # Erlang users get the same from mem_probe:print/1.
      out = capture_io(fn -> assert :mem_probe.print(:mem_probe.memory()) == :ok end)
      assert out =~ "categories:"
    end

    test "bad options raise ArgumentError listing the accepted ones" do
      assert_raise ArgumentError,
                   ~r/format\/2: unknown option colour; accepted: style, bytes, raw/,
                   fn ->
                     MemProbe.format([], colour: true)
                   end

      assert_raise ArgumentError, ~r/print\/2: bad value fancy for option style/, fn ->
        MemProbe.print([], style: :fancy)
      end

      assert_raise ArgumentError, ~r/bad value <<"value">> for option bytes/, fn ->
        MemProbe.format([], bytes: "value")
      end
    end
  end
end
