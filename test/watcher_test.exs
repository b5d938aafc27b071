defmodule :telemetry do
  # A stand-in for the telemetry package (not on hex here): the watcher calls
  # :telemetry.execute/3 only when a module of that name is loaded.
  @moduledoc false
  def execute(event, measurements, metadata) do
    case Process.whereis(:mem_probe_watcher_test_sink) do
      nil -> :ok
      pid -> send(pid, {:telemetry, event, measurements, metadata})
    end

    :ok
  end
end

defmodule MemProbe.WatcherTest.Planted do
  @moduledoc false
  # The planted system: three leaks and three look-alikes that are not.

  # About 100 KB of heap terms (a list of 6,000 small integers is 96 KB).
  def chunk, do: Enum.to_list(1..6_000)

  # 1. Grows by a chunk every 100 ms (~1 MB/s) until told to stop.
  def grower(state \\ []) do
    receive do
      :stop_growing -> idle()
    after
      100 -> grower([chunk() | state])
    end
  end

  defp idle do
    receive do
      :never -> :ok
    end
  end

  # 2. A named public table filled with ~1 MB/s of rows.
  def table_filler(table, n \\ 0) do
    :ets.insert(table, for(i <- n..(n + 99), do: {i, :binary.copy(<<i>>, 40), chunk_tuple()}))
    Process.sleep(100)
    table_filler(table, n + 100)
  end

  defp chunk_tuple, do: List.to_tuple(Enum.to_list(1..100))

  # 3. Grows ~1 MB/s and restarts every second under the same registered
  # name, handing its state to its successor (a crash-and-reload loop).
  def phoenix(name, state, ticks \\ 0)

  def phoenix(name, state, 10) do
    Process.unregister(name)
    next = spawn(fn -> Process.register(self(), name) && phoenix(name, state, 0) end)
    # Wait until the successor holds the name before this one exits.
    wait_registered(name, next)
  end

  def phoenix(name, state, ticks) do
    Process.sleep(100)
    phoenix(name, [chunk() | state], ticks + 1)
  end

  defp wait_registered(name, pid) do
    unless Process.whereis(name) == pid do
      Process.sleep(5)
      wait_registered(name, pid)
    end
  end

  # 4. Large and steady: 20 MB of heap, never changes.
  def steady do
    big = Enum.to_list(1..1_300_000)

    receive do
      :never -> length(big)
    end
  end

  # 5. A sawtooth: grows ~1 MB/s and drops back (collected) every second.
  # Like the bursty sink below, it sits on a ballast of ~5 MB that keeps it
  # among the processes the watcher follows from its first tick, whatever
  # else the suite left running ("never found" must mean "followed, and
  # never found").
  def sawtooth, do: sawtooth(ballast(), [], 0)

  def sawtooth(ballast, _state, 10) do
    :erlang.garbage_collect()
    sawtooth(ballast, [], 0)
  end

  def sawtooth(ballast, state, ticks) do
    Process.sleep(100)
    sawtooth(ballast, [chunk() | state], ticks + 1)
  end

  defp ballast, do: Enum.to_list(1..300_000)

  # Holds `data` until killed (spawned with spawn/3, so that its initial
  # call names this function).
  def hold(data) do
    receive do
      :never -> data
    end
  end

  # 6. A bursty mailbox: 20,000 messages every 700 ms, drained at once.
  def bursty_sink, do: bursty_sink(ballast())

  def bursty_sink(ballast) do
    receive do
      {:event, _} -> bursty_sink(ballast)
    end
  end

  def burster(sink) do
    for i <- 1..20_000, do: send(sink, {:event, i})
    Process.sleep(700)
    burster(sink)
  end
end

defmodule MemProbe.WatcherTest do
  # The watcher on a planted system (short intervals) and its Elixir face.
  # Runs alone (async: false): it registers the default watcher name, sets
  # alarms and watches the whole node.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog
  alias MemProbe.{TestWait, Watcher}
  alias MemProbe.WatcherTest.Planted

  @moduletag timeout: 120_000

  doctest MemProbe.Watcher

  # Short sub-windows, longer than the sawtooth's and the bursts' periods;
  # ten floors in the window, tested at 0.001.
  @opts [
    significance: 0.001,
    interval: 100,
    window: 120,
    floor_ms: 1_200,
    min_span: 6_000,
    top: 30,
    min_bytes_per_s: 20_000
  ]

  defp alarm_ids do
    for {{:mem_probe_leak, id}, _} <- :alarm_handler.get_alarms(), do: id
  end

  defp collected do
    receive do
      {:found, %{} = f} -> [f | collected()]
    after
      0 -> []
    end
  end

  test "finds the three planted leaks with forecasts and alarms, never the look-alikes, and clears a stopped leak" do
    Process.register(self(), :mem_probe_watcher_test_sink)
    test = self()
    grower = spawn(fn -> Planted.grower() end)
    table = :ets.new(:watcher_test_growing, [:named_table, :public])
    filler = spawn(fn -> Planted.table_filler(table) end)
    :ets.give_away(table, filler, nil)
    first_phoenix = spawn(fn -> Planted.phoenix(:watcher_test_phoenix, []) end)
    Process.register(first_phoenix, :watcher_test_phoenix)
    steady = spawn(fn -> Planted.steady() end)
    sawtooth = spawn(fn -> Planted.sawtooth() end)
    sink = spawn(fn -> Planted.bursty_sink() end)
    burster = spawn(fn -> Planted.burster(sink) end)
    planted = [grower, filler, steady, sawtooth, sink, burster]

    on_exit(fn ->
      for pid <- planted, do: Process.exit(pid, :kill)
      # Twice: a phoenix killed while handing over leaves a successor.
      for _ <- 1..2, pid = Process.whereis(:watcher_test_phoenix), pid != nil do
        Process.exit(pid, :kill)
        Process.sleep(50)
      end
    end)

    # The look-alikes warm up first (a new process's first heap growth is
    # growth); the watcher judges them in their steady state, as it would on a
    # node that has been up for a while.
    Process.sleep(1_500)

    log =
      capture_log(fn ->
        {:ok, w} = Watcher.start_link([on_finding: &send(test, {:found, &1})] ++ @opts)
        # A second watcher whose callback fails: counted, never fatal.
        {:ok, w2} =
          Watcher.start_link(
            [name: nil, alarms: false, log: false, on_finding: fn _ -> raise "boom" end] ++
              @opts
          )

        try do
          findings =
            TestWait.until("the three leaks", 40_000, fn ->
              fs = Watcher.findings()
              phoenix = Process.whereis(:watcher_test_phoenix)

              found =
                for id <- [grower, :watcher_test_growing, phoenix],
                    f = Enum.find(fs, &(&1.id == id)),
                    do: f

              length(found) == 3 and {fs, found}
            end)

          {all, [grow, tab, phx]} = findings
          assert phx.id != first_phoenix, "the phoenix restarted and kept its series"
          assert phx.name == :watcher_test_phoenix
          assert {grow.kind, tab.kind, phx.kind} == {:process, :table, :process}
          assert tab.name == :watcher_test_growing

          for f <- [grow, tab, phx] do
            assert is_integer(f.forecast_ms) and f.forecast_ms > 0, inspect(f)
            assert f.rate > 100_000 and f.rate < 10_000_000, inspect(f)
            assert f.confidence > 0.99 and f.confidence <= 1.0
            assert f.since <= System.system_time(:millisecond)
            assert f.bytes > 1_000_000
          end

          # Most urgent first.
          forecasts = for %{forecast_ms: ms} <- all, is_integer(ms), do: ms
          assert forecasts == Enum.sort(forecasts)

          alarms = alarm_ids()
          assert grower in alarms and :watcher_test_growing in alarms and phx.id in alarms

          # The telemetry stand-in heard the same findings.
          assert_received {:telemetry, [:mem_probe, :watcher, :finding], %{bytes: _, rate: _},
                           %{id: ^grower}}

          # The report shows them when a watcher runs.
          report = :mem_probe.report(binaries: false)
          assert Enum.any?(report.watcher, &(&1.id == grower))
          text = IO.chardata_to_string(:mem_probe.format(report))
          assert text =~ "Leak watcher"
          if System.get_env("SHOW"), do: IO.puts(text)
          assert text =~ List.to_string(:erlang.pid_to_list(grower))

          info = Watcher.info()
          assert info.limit_source in [:cgroup, :machine]
          assert info.limit_bytes > 0
          assert info.series.process <= info.options.max_processes
          assert info.samples <= info.options.window * Enum.sum(Map.values(info.series))
          assert info.memory_bytes > 0 and info.alarms == :on

          # Stop the leaks: the grower stays alive but flat, the table goes,
          # the phoenix dies.
          send(grower, :stop_growing)
          Process.exit(filler, :kill)
          Process.exit(Process.whereis(:watcher_test_phoenix), :kill)

          TestWait.until("the stopped leaks to clear", 30_000, fn ->
            ids = Enum.map(Watcher.findings(), & &1.id)
            alarms = alarm_ids()

            Enum.all?(
              [grower, :watcher_test_growing, phx.id],
              &(&1 not in ids and &1 not in alarms)
            )
          end)

          assert Process.alive?(grower)
          assert Watcher.info().cleared >= 3
          send(test, {:found_count, Watcher.info().found})
          assert Watcher.info(w2).callback_errors >= 3

          # Never the look-alikes, in any finding raised during the run.
          raised = collected()
          assert Enum.any?(raised, &(&1.id == grower))

          for pid <- [steady, sawtooth, sink] do
            # Followed all along (so "never found" means something) and not growing now.
            series = Watcher.series(pid)
            assert length(series.samples) >= div(info.options.window, 2), inspect(pid)
            refute series.assessment.growing

            refute Enum.any?(raised, &(&1.id == pid)),
                   "#{inspect(pid)} was found: #{inspect(Enum.find(raised, &(&1.id == pid)))}"
          end
        after
          Watcher.stop(w2)
          Watcher.stop(w)
        end
      end)

    # One warning per new finding, at most 5 a minute; the alarms go with
    # the watcher.
    assert_received {:found_count, found}
    warnings = length(String.split(log, "[warning] mem_probe_watcher: ")) - 1
    assert found > 5 and warnings == 5
    assert log =~ ~r/mem_probe_watcher: .*holds .*, growing .*\/s for \d+ s; at this rate/
    assert alarm_ids() == []
    Process.unregister(:mem_probe_watcher_test_sink)
  end

  test "a restarted unregistered process keeps its series by its initial call" do
    data = Enum.to_list(1..1_000_000)
    first = spawn(Planted, :hold, [data])
    # Sampled at start and by one tick.
    {:ok, w} = Watcher.start_link(name: nil, interval: 3_600_000, alarms: false, top: 30)
    Watcher.tick(w)
    assert [_, _] = Watcher.series(w, first).samples
    Process.exit(first, :kill)
    Watcher.tick(w)
    second = spawn(Planted, :hold, [data])
    Watcher.tick(w)
    # The successor has taken over the series: the predecessor's samples, then its own.
    assert %{kind: :process, name: :undefined, samples: [_, _, _]} = Watcher.series(w, second)
    assert Watcher.series(w, first) == :undefined
    Process.exit(second, :kill)
    Watcher.stop(w)
  end

  test "misuse raises ArgumentError naming what is accepted" do
    assert_raise ArgumentError, ~r/unknown option windows; accepted: name, interval/, fn ->
      Watcher.start_link(windows: 3)
    end

    assert_raise ArgumentError, ~r/bad value 2 for option window/, fn ->
      Watcher.start_link(window: 2)
    end

    assert_raise ArgumentError, ~r/bad value 0.7 for option significance/, fn ->
      Watcher.start_link(significance: 0.7)
    end
  end

  test "limit_bytes overrides the detected limit, and a vanished table or process is no crash" do
    {:ok, w} =
      Watcher.start_link(name: nil, interval: 60_000, limit_bytes: 1_099_511_627_776, alarms: false)

    t = :ets.new(:watcher_test_short_lived, [])
    p = spawn(fn -> Process.sleep(:infinity) end)
    Watcher.tick(w)
    :ets.delete(t)
    Process.exit(p, :kill)
    assert Watcher.tick(w) == []
    info = Watcher.info(w)
    assert {info.limit_bytes, info.limit_source, info.ticks} == {1_099_511_627_776, :limit_bytes, 3}
    # The report shows a watcher it is given; none runs under the default name.
    assert :mem_probe.report(binaries: false, watcher: w).watcher == []
    refute Map.has_key?(:mem_probe.report(binaries: false), :watcher)
    assert MemProbe.format(:mem_probe.report(binaries: false, watcher: w)) =~ "no sustained growth"
    Watcher.stop(w)
  end
end
