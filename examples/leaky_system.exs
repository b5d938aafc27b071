# A small system with six planted leaks, for `make demo` and for the test
# that asserts MemProbe finds each of them (test/demo_test.exs).

defmodule MemProbe.Demo.StateHog do
  @moduledoc false
  # A GenServer whose list of orders grows on every tick: leak 1.
  use GenServer

  def init(orders),
    do: {:ok, tick(%{orders: orders, ticks: 0, config: %{interval_ms: 20, batch: 2000}})}

  def handle_info(:tick, state), do: {:noreply, tick(state)}

  defp tick(%{orders: orders, ticks: ticks, config: config} = state) do
    Process.send_after(self(), :tick, config.interval_ms)
    new = Enum.map(1..config.batch, &{:order, &1, "pending"})
    %{state | orders: new ++ orders, ticks: ticks + 1}
  end
end

defmodule MemProbe.Demo.Leaks do
  @moduledoc false

  @doc "Starts the six leaks; returns what each one is, for checking the findings."
  def start do
    {:ok, hog} = GenServer.start(MemProbe.Demo.StateHog, [], name: :demo_state_hog)

    # 2: a mailbox backlog — a consumer stuck in a selective receive.
    backlog = spawn(fn -> stuck_consumer() end)
    Process.register(backlog, :demo_event_sink)
    spawn(fn -> produce(backlog) end)

    # 3: an ETS table filling with 1 KB binaries (off-heap: ets:info/2 misses them).
    cache_owner = spawn(fn -> fill_cache() end)

    # 4: small sub-binaries of large binaries kept alive by one process.
    slicer = spawn(fn -> keep_slices([]) end)
    Process.register(slicer, :demo_header_cache)

    # 5: a process leaking monitors on one target.
    target = spawn(fn -> Process.sleep(:infinity) end)
    monitorer = spawn(fn -> leak_monitors(target) end)
    Process.register(monitorer, :demo_watchdog)

    # 6: a process leak: sessions started from one initial call, never ended.
    spawner = spawn(fn -> spawn_sessions() end)

    %{
      state_hog: hog,
      mailbox: backlog,
      table: :demo_upload_cache,
      table_owner: cache_owner,
      slice_keeper: slicer,
      monitor_leak: monitorer,
      session_spawner: spawner,
      session_initial_call: {__MODULE__, :session, 0}
    }
  end

  @doc """
  Leak-watcher options for a system this fast and a run this short: a sample
  every 50 ms, floors over 250 ms, growth over at least 2 s (the defaults
  are 10 s, 60 s and 5 min). No alarms or warnings: the demo prints the
  findings itself.
  """
  def watcher_options do
    [
      interval: 50,
      window: 80,
      floor_ms: 250,
      min_span: 2_000,
      significance: 0.001,
      min_bytes_per_s: 50_000,
      alarms: false,
      log: false
    ]
  end

  def stop(leaks) do
    for key <- [:state_hog, :mailbox, :table_owner, :slice_keeper, :monitor_leak, :session_spawner],
        do: Process.exit(leaks[key], :kill)

    for pid <- Process.list(),
        Process.info(pid, :initial_call) == {:initial_call, leaks.session_initial_call},
        do: Process.exit(pid, :kill)

    :ok
  end

  @doc """
  Where each planted leak ranks in the list that should find it:
  `[{leak, found_first?, detail}]`.
  """
  def findings(leaks, diff) do
    mailbox = MemProbe.top_processes(:message_queue_len, 5)
    tables = MemProbe.top_tables(5, binaries: true)
    binary_leaks = MemProbe.binary_leaks(5)
    monitors = MemProbe.top_processes(:monitors, 5)
    groups = MemProbe.count_processes(:initial_call, 5).groups

    [
      rank(
        "growing GenServer state (:demo_state_hog)",
        diff.processes,
        &(&1.pid == leaks.state_hog),
        "MemProbe.diff/3 processes",
        &"+#{mib(&1.change)} at #{mib(&1.rate)}/s"
      ),
      rank(
        "mailbox backlog (:demo_event_sink)",
        mailbox,
        &(&1.pid == leaks.mailbox),
        "top_processes(:message_queue_len)",
        &"#{&1.value} messages"
      ),
      rank(
        "ETS table of 1 KB binaries (:demo_upload_cache)",
        tables,
        &(&1.name == leaks.table),
        "top_tables(binaries: true)",
        &"#{mib(&1.off_heap_bytes)} off-heap, #{&1.size} objects"
      ),
      rank(
        "100-byte slices of 1 MB binaries (:demo_header_cache)",
        binary_leaks,
        &(&1.pid == leaks.slice_keeper),
        "binary_leaks",
        &"#{mib(&1.bytes)} kept alive"
      ),
      rank(
        "monitor leak (:demo_watchdog)",
        monitors,
        &(&1.pid == leaks.monitor_leak),
        "top_processes(:monitors)",
        &"#{&1.value} monitors"
      ),
      rank(
        "process leak from #{inspect(leaks.session_initial_call)}",
        groups,
        &(&1.key == leaks.session_initial_call),
        "count_processes(:initial_call)",
        &"#{&1.count} processes"
      )
    ]
  end

  defp rank(leak, list, planted?, where, describe) do
    case Enum.find_index(list, planted?) do
      0 -> {leak, true, "#1 in #{where}: #{describe.(hd(list))}"}
      nil -> {leak, false, "not in the top #{length(list)} of #{where}"}
      i -> {leak, false, "##{i + 1} in #{where}: #{describe.(Enum.at(list, i))}"}
    end
  end

  defp mib(bytes), do: "#{Float.round(bytes / 1_048_576, 1)} MiB"

  defp stuck_consumer do
    receive do
      {:shutdown, _} -> :ok
    end
  end

  defp produce(sink) do
    for i <- 1..200, do: send(sink, {:event, i})
    Process.sleep(10)
    produce(sink)
  end

  defp fill_cache do
    table = :ets.new(:demo_upload_cache, [:named_table, :public])
    fill_cache(table, 0)
  end

  defp fill_cache(table, n) do
    :ets.insert(table, for(i <- n..(n + 199), do: {i, :crypto.strong_rand_bytes(1024)}))
    Process.sleep(50)
    fill_cache(table, n + 200)
  end

  defp keep_slices(slices) do
    big = :crypto.strong_rand_bytes(1_000_000)
    # A 100-byte header is all the process needs, but the slice pins the megabyte.
    header = binary_part(big, 0, 100)
    Process.sleep(50)
    keep_slices([header | slices])
  end

  defp leak_monitors(target) do
    for _ <- 1..200, do: Process.monitor(target)
    Process.sleep(50)
    leak_monitors(target)
  end

  defp spawn_sessions do
    for _ <- 1..200, do: spawn(__MODULE__, :session, [])
    Process.sleep(100)
    spawn_sessions()
  end

  @doc false
  def session do
    receive do
      :logout -> :ok
    end
  end
end
