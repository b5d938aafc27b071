defmodule MemProbe.SnapshotCheckTest do
  use ExUnit.Case, async: false
  import Bitwise

  defp grow_state(pid, items), do: send(pid, {:grow, items})

  defp hog do
    spawn(fn -> hog_loop([]) end)
  end

  defp hog_loop(state) do
    receive do
      {:grow, n} -> hog_loop(Enum.to_list(1..n) ++ state)
      :stop -> :ok
    end
  end

  describe "snapshot and diff" do
    test "the process whose state grew ranks first with its exact change" do
      pid = hog()
      grow_state(pid, 10)
      Process.sleep(20)
      older = MemProbe.snapshot()
      grow_state(pid, 200_000)
      Process.sleep(50)
      newer = MemProbe.snapshot()
      diff = MemProbe.diff(older, newer, 5)

      [top | _] = diff.processes
      assert top.pid == pid
      before = elem(older.processes[pid], 0)
      now = elem(newer.processes[pid], 0)
      assert top.change == now - before
      assert top.memory == now
      assert top.change > 200_000 * 2 * 8
      assert top.rate > 0
      assert diff.interval_ms >= 50
      send(pid, :stop)
    end

    test "born and gone processes and tables are reported apart, never as growth" do
      doomed = spawn(fn -> receive do: (:stop -> :ok) end)
      older = MemProbe.snapshot()
      send(doomed, :stop)

      newborn =
        spawn(fn -> Enum.to_list(1..50_000) |> then(fn l -> receive do: (:stop -> l) end) end)

      table = :ets.new(:snapshot_born, [:public])
      :ets.insert(table, for(i <- 1..1000, do: {i, i}))
      Process.sleep(50)
      newer = MemProbe.snapshot()
      diff = MemProbe.diff(older, newer, 50)

      refute Enum.any?(diff.processes, &(&1.pid in [doomed, newborn]))
      assert Enum.any?(diff.born.processes, &(&1.pid == newborn))
      assert Enum.any?(diff.gone.processes, &(&1.pid == doomed))
      assert diff.born.process_count >= 1 and diff.gone.process_count >= 1
      assert Enum.any?(diff.born.tables, &(&1.table == table and &1.size == 1000))
      refute Enum.any?(diff.tables, &(&1.table == table))
      send(newborn, :stop)
      :ets.delete(table)
    end

    test "a growing table ranks first among tables" do
      table = :ets.new(:snapshot_growing, [:public])
      older = MemProbe.snapshot(binaries: false)
      :ets.insert(table, for(i <- 1..20_000, do: {i, "some value #{i}"}))
      newer = MemProbe.snapshot(binaries: false)
      [top | _] = MemProbe.diff(older, newer).tables
      assert top.table == table
      assert top.size_change == 20_000
      assert top.change == :ets.info(table, :memory) * 8 - elem(older.tables[table], 0)
      :ets.delete(table)
    end

    test "memory categories and counts are compared" do
      older = MemProbe.snapshot()
      newer = MemProbe.snapshot()
      diff = MemProbe.diff(older, newer)

      assert Enum.map(diff.memory, & &1.category) |> Enum.sort() ==
               Enum.sort(Keyword.keys(:erlang.memory()))

      assert diff.counts.process_limit.value == :erlang.system_info(:process_limit)
    end

    test "bad input is an ArgumentError naming what is accepted" do
      s = MemProbe.snapshot()
      assert_raise ArgumentError, ~r/not a snapshot/, fn -> MemProbe.diff(%{}, s) end

      assert_raise ArgumentError, ~r/different nodes/, fn ->
        MemProbe.diff(%{s | node: :other@host}, s)
      end

      assert_raise ArgumentError, ~r/older first/, fn ->
        MemProbe.diff(s, %{s | taken_at: s.taken_at - 10})
      end

      assert_raise ArgumentError, ~r/accepted: binaries/, fn -> MemProbe.snapshot(bogus: 1) end
      assert_raise ArgumentError, ~r/non-negative/, fn -> MemProbe.diff(s, s, -1) end
    end
  end

  describe "check" do
    test "ok when every limit holds" do
      assert {:ok, report} = MemProbe.check(max_total_bytes: 1 <<< 50, max_process_ratio: 0.99)
      assert report.complete
      assert report.memory.total > 0
    end

    test "each violation names the limit, the measured value and the culprit" do
      backlog = spawn(fn -> receive do: (:never -> :ok) end)
      for i <- 1..5000, do: send(backlog, {:msg, i})
      table = :ets.new(:check_big_table, [:public])
      :ets.insert(table, for(i <- 1..50_000, do: {i, i}))
      table_bytes = :ets.info(table, :memory) * 8
      atoms_before = :erlang.system_info(:atom_count)

      assert {:error, violations} =
               MemProbe.check(%{
                 max_message_queue_len: 1000,
                 max_table_bytes: table_bytes - 1,
                 max_atom_ratio: 0.0,
                 max_category_bytes: %{ets: 1}
               })

      by_limit = Map.new(violations, &{&1.limit, &1})
      assert by_limit.max_message_queue_len.culprit.pid == backlog
      assert by_limit.max_message_queue_len.value == 5000
      assert by_limit.max_table_bytes.culprit.table == table
      assert by_limit.max_table_bytes.value == table_bytes

      # Atoms are only ever added (code loading may add some meanwhile): the
      # ratio measured by the check lies between the counts before and after.
      atom_limit = :erlang.system_info(:atom_limit)
      assert atoms_before / atom_limit <= by_limit.max_atom_ratio.value
      assert by_limit.max_atom_ratio.value <= :erlang.system_info(:atom_count) / atom_limit

      assert by_limit.max_category_bytes.culprit == %{category: :ets}
      Process.exit(backlog, :kill)
      :ets.delete(table)
    end

    test "processes and tables vanishing during a check are not errors" do
      churn =
        spawn(fn ->
          Stream.repeatedly(fn ->
            t = :ets.new(:churn, [])
            p = spawn(fn -> :ok end)
            :ets.delete(t)
            p
          end)
          |> Stream.run()
        end)

      for _ <- 1..20 do
        assert {:ok, _} =
                 MemProbe.check(
                   max_process_bytes: 1 <<< 40,
                   max_table_bytes: 1 <<< 40,
                   max_message_queue_len: 1 <<< 40
                 )
      end

      Process.exit(churn, :kill)
    end

    test "a spent time budget gives an incomplete report, not a late one" do
      pids = for _ <- 1..20_000, do: spawn(fn -> receive do: (:stop -> :ok) end)
      {:ok, report} = MemProbe.check(max_process_bytes: 1 <<< 40, budget_ms: 1)
      # 20,000 process_info calls do not fit in 1 ms on this machine class;
      # if they ever do, the report must say complete.
      assert report.complete == report.processes_checked >= length(pids)
      Enum.each(pids, &send(&1, :stop))
    end

    test "unknown limits and wrong value types are ArgumentErrors naming the accepted keys" do
      assert_raise ArgumentError, ~r/accepted: max_total_bytes, max_category_bytes/, fn ->
        MemProbe.check(max_memory: 1)
      end

      assert_raise ArgumentError, ~r/bad value .*"1".* for option max_total_bytes/, fn ->
        MemProbe.check(max_total_bytes: "1")
      end

      assert_raise ArgumentError, ~r/max_category_bytes/, fn ->
        MemProbe.check(max_category_bytes: %{nonsense: 1})
      end
    end
  end
end
