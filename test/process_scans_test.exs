defmodule MemProbe.ProcessScansTest do
  # Not async: the scans see every process of the node, and each test plants
  # a culprit that must rank first.
  use ExUnit.Case, async: false

  @word :erlang.system_info(:wordsize)

  defmodule Grower do
    @moduledoc false
    use GenServer

    def init(state), do: {:ok, state}
    def handle_call({:grow, n}, _from, state), do: {:reply, :ok, [Enum.to_list(1..n) | state]}
    def handle_call({:set, state}, _from, _state), do: {:reply, :ok, state}
    def handle_call(:get, _from, state), do: {:reply, state, state}

    # Built here: a message would arrive as a flat copy, without the sharing.
    def handle_call({:build, n, big}, _from, _state) do
      list = Enum.to_list(1..n)
      # Over 64 bytes: a smaller slice is copied out at the next collection.
      <<slice::binary-size(100), _::binary>> = big
      {:reply, :ok, {list, list, MemProbe.ProcessScansTest.literal(), slice}}
    end

    # Stuck in a call until told: tells `test` it is, then waits.
    def handle_call({:block, test}, _from, state) do
      send(test, :blocked)

      receive do
        :unblock -> {:reply, :ok, state}
      end
    end
  end

  defmodule App do
    @moduledoc false
    use Application
    def start(_type, _args), do: Supervisor.start_link([], strategy: :one_for_one)
  end

  # A module literal, to see that state_size counts literals apart.
  @literal Enum.to_list(1..1000)
  def literal, do: @literal

  def idle do
    receive do
      :stop -> :ok
    end
  end

  def wait_here do
    receive do
      :stop -> :ok
    end
  end

  def hold(term) do
    receive do
      :stop -> term
    end
  end

  defp answer_pings do
    receive do
      {:ping, from} -> send(from, :pong)
    end

    answer_pings()
  end

  defp spawn_many(n, fun), do: for(_ <- 1..n, do: spawn(fun))

  defp cleanup(pids) do
    on_exit(fn -> Enum.each(List.wrap(pids), &Process.exit(&1, :kill)) end)
    pids
  end

  defp memory(pid), do: elem(Process.info(pid, :memory), 1)

  # Waits until `pid` has handled every signal sent to it so far.
  defp sync(pid), do: :sys.get_state(pid) || :ok

  describe "top_processes/3" do
    test "a GenServer whose state grew ranks first by memory, with its GenServer module" do
      {:ok, pid} = GenServer.start(Grower, [], name: :mem_probe_test_grower)
      cleanup(pid)
      :ok = GenServer.call(pid, {:grow, 1_000_000})

      [top] = MemProbe.top_processes(:memory, 1)
      assert top.pid == pid
      assert top.value == memory(pid)
      assert top.value > 1_000_000 * 2 * @word
      assert top.name == :mem_probe_test_grower
      assert top.initial_call == {Grower, :init, 1}
      # The gen_server loop's arity changed (7 up to OTP 27, 5 on 29).
      assert {:gen_server, :loop, _} = top.current_function
      assert top.attr == :memory

      [top] = MemProbe.top_processes(:total_heap_size, 1)
      assert top.pid == pid
      assert top.value == elem(Process.info(pid, :total_heap_size), 1) * @word
    end

    test "ranking by change over a window: growth, birth and death" do
      {:ok, grower} = GenServer.start(Grower, [])
      doomed = spawn(fn -> hold(Enum.to_list(1..300_000)) end)
      cleanup([grower, doomed])
      sync(grower)
      sync_process(doomed)
      grower_before = memory(grower)
      doomed_before = memory(doomed)
      test = self()

      # Acts inside the window: the first scan of a test node takes a few ms.
      spawn(fn ->
        Process.sleep(250)
        :ok = GenServer.call(grower, {:grow, 400_000})
        send(doomed, :stop)
        born = spawn(fn -> hold(Enum.to_list(1..150_000)) end)
        send(test, {:born, born})
      end)

      top = MemProbe.top_processes(:memory, 100_000, window: 1_000)
      born = receive(do: ({:born, pid} -> pid))
      cleanup(born)

      [first, second | _] = top
      assert first.pid == grower
      assert first.value == memory(grower) - grower_before
      assert {first.born, first.died} == {false, false}
      assert second.pid == born
      assert second.value == memory(born)
      assert {second.born, second.died} == {true, false}

      # The process that exited inside the window: its memory fell to zero.
      dead = Enum.find(top, &(&1.pid == doomed))
      assert dead.value == -doomed_before
      assert {dead.born, dead.died, dead.name} == {false, true, :undefined}
    end

    test "a process that exits inside a reductions window is left out" do
      test = self()

      burner =
        spawn(fn ->
          sum = Enum.reduce(1..3_000_000, 0, &(&1 + &2))
          send(test, :burnt)
          hold(sum)
        end)

      cleanup(burner)
      assert_receive :burnt, 10_000
      {:reductions, lifetime} = Process.info(burner, :reductions)
      assert lifetime > 1_000_000

      spawn(fn ->
        Process.sleep(200)
        send(burner, :stop)
      end)

      top = MemProbe.top_processes(:reductions, 100_000, window: 600)
      refute Enum.any?(top, &(&1.pid == burner))
      assert Enum.all?(top, &(&1.died == false))
      assert Enum.all?(top, &(&1.value < lifetime))
    end

    test "a mailbox backlog ranks first with its exact length" do
      pid = spawn(&idle/0)
      cleanup(pid)
      for i <- 1..30_000, do: send(pid, {:msg, i})

      [top] = MemProbe.top_processes(:message_queue_len, 1)
      assert {top.pid, top.value} == {pid, 30_000}
      assert top.current_function == {__MODULE__, :idle, 0}
    end

    test "1,000 monitors rank by count, not by the term order of the lists" do
      targets = cleanup(spawn_many(1_000, &idle/0))
      test = self()

      culprit =
        spawn(fn ->
          Enum.each(targets, &Process.monitor/1)
          send(test, :monitoring)
          idle()
        end)

      # The decoy monitors one process whose pid is larger than all of the
      # culprit's: compared as lists (recon), the decoy's list is "larger".
      late = spawn(&idle/0)

      decoy =
        spawn(fn ->
          Process.monitor(late)
          send(test, :monitoring)
          idle()
        end)

      cleanup([culprit, late, decoy])
      for _ <- 1..2, do: assert_receive(:monitoring)

      [top] = MemProbe.top_processes(:monitors, 1)
      assert {top.pid, top.value} == {culprit, 1_000}
      assert [{:monitors, [_]}] = Process.info(decoy, [:monitors])
    end

    test "monitored_by and links rank by count" do
      # A monitor reaches the hub as a signal, handled when the hub gets to
      # it: a watcher's ping, answered, comes after its monitor (signals
      # between two processes keep their order), so the hub has taken it.
      hub = spawn(&answer_pings/0)
      cleanup(hub)
      test = self()

      watchers =
        for _ <- 1..1_000 do
          spawn(fn ->
            Process.monitor(hub)
            send(hub, {:ping, self()})
            receive do: (:pong -> :ok)
            send(test, :watching)
            idle()
          end)
        end

      cleanup(watchers)
      for _ <- 1..1_000, do: assert_receive(:watching)

      [top] = MemProbe.top_processes(:monitored_by, 1)
      assert {top.pid, top.value} == {hub, 1_000}

      linked = spawn_many(700, &idle/0)

      linker =
        spawn(fn ->
          Enum.each(linked, &Process.link/1)
          send(test, :linked)
          idle()
        end)

      assert_receive :linked
      # Unlinking by killing the linker kills the linked ones: kill them first.
      on_exit(fn ->
        Enum.each(linked, &Process.exit(&1, :kill))
        Process.exit(linker, :kill)
      end)

      [top] = MemProbe.top_processes(:links, 1)
      assert {top.pid, top.value} == {linker, 700}
    end

    test "heap and stack sizes are in bytes" do
      deep = spawn(fn -> recurse(20_000) end)
      cleanup(deep)
      Process.sleep(50)

      [top] = MemProbe.top_processes(:stack_size, 1)
      assert top.pid == deep
      assert top.value == elem(Process.info(deep, :stack_size), 1) * @word
      assert top.value > 20_000 * @word
    end

    test "the calling process is ranked too" do
      big = Enum.to_list(1..2_000_000)
      [top] = MemProbe.top_processes(:memory, 1)
      assert top.pid == self()
      # Read while this process waited for the answer: it has moved a little.
      assert_in_delta top.value, memory(self()), 4_096
      assert length(big) == 2_000_000
    end

    test "n = 0 gives an empty list" do
      assert MemProbe.top_processes(:memory, 0) == []
      assert MemProbe.top_processes(:memory, 0, window: 10) == []
    end
  end

  # A failure message naming the process that outranked the planted one.
  defp who(entry) do
    info = Process.info(entry.pid, [:initial_call, :current_function, :dictionary, :links])
    "ranked first instead: #{inspect(entry)} #{inspect(info, limit: 12)}"
  end

  def recurse(0), do: idle()
  def recurse(n), do: 1 + recurse(n - 1)

  describe "binaries" do
    test "a binary shared by 50 processes counts once; an exclusive one ranks first" do
      test = self()

      # The creator is one of the 50 holders, so that the binary has exactly
      # 50 references.
      creator =
        spawn(fn ->
          shared = :binary.copy("s", 10_000_000)
          others = for _ <- 1..49, do: spawn(fn -> hold(shared) end)
          send(test, {:holders, [self() | others]})
          hold(shared)
        end)

      holders = receive(do: ({:holders, pids} -> pids))
      culprit = spawn(fn -> hold(:binary.copy("c", 20_000_000)) end)
      cleanup([culprit, creator | holders])
      for pid <- [culprit | holders], do: sync_process(pid)

      [top | _] = leaks = MemProbe.binary_leaks(60)
      assert top.pid == culprit, who(top)
      assert {top.bytes, top.raw_bytes, top.exclusive_bytes} == {20_000_000, 20_000_000, 20_000_000}
      assert {top.binaries, top.holders, top.largest_binary_bytes} == {1, 1, 20_000_000}

      sharers = Enum.filter(leaks, &(&1.pid in holders))
      assert length(sharers) == 50

      for entry <- sharers do
        assert {entry.bytes, entry.raw_bytes, entry.exclusive_bytes, entry.holders} ==
                 {200_000, 10_000_000, 0, 50}
      end

      assert Enum.sum(Enum.map(sharers, & &1.bytes)) == 10_000_000

      # The per-process view (top_processes(:binary_memory)) counts the shared
      # binary once in each holder: 500 MB in all, for 10 MB of memory.
      [first | rest] = MemProbe.top_processes(:binary_memory, 51)
      assert {first.pid, first.value} == {culprit, 20_000_000}
      per_holder = Enum.filter(rest, &(&1.pid in holders))
      assert length(per_holder) == 50
      assert Enum.all?(per_holder, &(&1.value == 10_000_000))
    end

    test "a small sub-binary pins its whole parent" do
      pinner =
        spawn(fn ->
          big = :binary.copy("p", 30_000_000)
          <<slice::binary-size(100), _::binary>> = big
          :erlang.garbage_collect()
          hold(slice)
        end)

      cleanup(pinner)
      sync_process(pinner)

      [top] = MemProbe.binary_leaks(1)
      assert top.pid == pinner, who(top)
      assert {top.bytes, top.exclusive_bytes, top.binaries} == {30_000_000, 30_000_000, 1}

      [top] = MemProbe.top_processes(:binary_memory, 1)
      assert {top.pid, top.value} == {pinner, 30_000_000}

      # process_info(pid, :memory) does not see it at all.
      {:ok, mem} = MemProbe.process_memory(pinner)
      assert {mem.off_heap_bytes, mem.off_heap_binaries} == {30_000_000, 1}
      assert mem.memory < 100_000
    end

    test "gc: true collects the winners only and reports what it freed" do
      litter = fn count ->
        spawn(fn ->
          Process.flag(:min_heap_size, 100_000)
          Process.flag(:min_bin_vheap_size, 1_000_000_000)
          for _ <- 1..count, do: :binary.copy("g", 1_000_000)
          idle()
        end)
      end

      culprit = litter.(25)
      bystander = litter.(5)
      cleanup([culprit, bystander])
      sync_process(culprit)
      sync_process(bystander)
      assert {:binary, bins} = Process.info(culprit, :binary)
      assert length(bins) == 25

      [top] = MemProbe.binary_leaks(1, gc: true)
      assert top.pid == culprit, who(top)

      assert {top.bytes, top.exclusive_bytes, top.freed_bytes} ==
               {25_000_000, 25_000_000, 25_000_000}

      assert Process.info(culprit, :binary) == {:binary, []}
      # Not the whole node: the bystander still holds its garbage.
      assert {:binary, bystander_bins} = Process.info(bystander, :binary)
      assert length(bystander_bins) == 5
    end
  end

  # Waits until a plain process has run its setup and is waiting.
  defp sync_process(pid) do
    Enum.reduce_while(1..500, nil, fn _, _ ->
      case Process.info(pid, :status) do
        {:status, :waiting} -> {:halt, :ok}
        _ -> Process.sleep(2) && {:cont, nil}
      end
    end)
  end

  describe "count_processes/2" do
    test "a burst of GenServers from one module is the largest group" do
      servers =
        for _ <- 1..2_000 do
          {:ok, pid} = GenServer.start(Grower, [])
          pid
        end

      cleanup(servers)
      result = MemProbe.count_processes(:initial_call, 5)
      assert [%{key: {Grower, :init, 1}, count: 2_000} | _] = result.groups
      assert length(result.groups) <= 5
      assert result.process_count >= 2_000
      assert result.process_limit == :erlang.system_info(:process_limit)
    end

    test "by current function" do
      pids = cleanup(spawn_many(1_500, &wait_here/0))
      Enum.each(pids, &sync_process/1)
      %{groups: [first | _]} = MemProbe.count_processes(:current_function)
      assert first == %{key: {__MODULE__, :wait_here, 0}, count: 1_500}
    end

    @tag :capture_log
    test "by application, from the group leader" do
      spec = [
        description: ~c"test",
        vsn: ~c"1",
        modules: [App],
        registered: [],
        applications: [:kernel, :stdlib],
        mod: {App, []}
      ]

      :ok = :application.load({:application, :mem_probe_scan_test, spec})
      :ok = :application.start(:mem_probe_scan_test)

      on_exit(fn ->
        :application.stop(:mem_probe_scan_test)
        :application.unload(:mem_probe_scan_test)
      end)

      master = :application_controller.get_master(:mem_probe_scan_test)
      assert is_pid(master)
      pids = cleanup(spawn_many(3_000, &idle/0))
      Enum.each(pids, &Process.group_leader(&1, master))
      # The application's own processes: its master (two) and supervisor.
      %{groups: groups} = MemProbe.count_processes(:application, 100)
      own = Enum.find(groups, &(&1.key == :mem_probe_scan_test)).count - 3_000
      assert own in 1..3

      %{groups: [first | _]} = MemProbe.count_processes(:application, 3)
      assert first == %{key: :mem_probe_scan_test, count: 3_000 + own}
      assert Enum.any?(groups, &(&1.key == :kernel))
    end
  end

  describe "churn" do
    test "processes dying during the scans are skipped, never a crash" do
      {:ok, culprit} = GenServer.start(Grower, [])
      {:ok, grower} = GenServer.start(Grower, [])
      cleanup([culprit, grower])
      :ok = GenServer.call(culprit, {:grow, 800_000})
      # A process that certainly references an off-heap binary throughout (the
      # binary_leaks(gc: true) below may free everyone else's).
      holder =
        spawn(fn ->
          bin = :binary.copy(<<1>>, 100_000)

          receive do
            :stop -> byte_size(bin)
          end
        end)

      cleanup(holder)
      stop = :atomics.new(1, [])

      churner =
        spawn(fn ->
          churn(stop)
        end)

      cleanup(churner)
      Process.sleep(20)

      for _ <- 1..5 do
        [top | _] = MemProbe.top_processes(:memory, 3)
        assert top.pid == culprit
        assert top.value == memory(culprit)
        assert [_ | _] = MemProbe.top_processes(:binary_memory, 3)
        assert [_ | _] = MemProbe.top_processes(:monitors, 3)
        assert %{groups: [_ | _]} = MemProbe.count_processes(:initial_call)
        assert %{groups: [_ | _]} = MemProbe.count_processes(:current_function)
        assert %{groups: [_ | _]} = MemProbe.count_processes(:application)
        assert is_list(MemProbe.binary_leaks(3, gc: true))
      end

      # A state that grows from empty: its heap block grows with it (a state
      # that grows inside a heap block already large enough changes nothing
      # in :memory).
      before = memory(grower)

      spawn(fn ->
        Process.sleep(150)
        :ok = GenServer.call(grower, {:grow, 300_000})
      end)

      [top | _] = MemProbe.top_processes(:memory, 3, window: 700)
      assert {top.pid, top.value, top.born} == {grower, memory(grower) - before, false}
      :atomics.put(stop, 1, 1)
    end
  end

  defp churn(stop) do
    if :atomics.get(stop, 1) == 0 do
      pids = for _ <- 1..200, do: spawn(fn -> hold(:binary.copy("x", 100)) end)
      Enum.each(pids, &Process.exit(&1, :kill))
      churn(stop)
    end
  end

  describe "process_memory/1" do
    test "the parts add up, and a backlog shows in the mailbox" do
      pid =
        spawn(fn ->
          Process.flag(:message_queue_data, :off_heap)
          idle()
        end)

      cleanup(pid)
      sync_process(pid)
      message = Enum.to_list(1..20)
      for _ <- 1..10_000, do: send(pid, message)

      {:ok, mem} = MemProbe.process_memory(pid)
      assert mem.memory == memory(pid)
      assert mem.heap + mem.stack + mem.mailbox + mem.overhead_bytes == mem.memory
      assert mem.message_queue_len == 10_000
      assert mem.message_queue_data == :off_heap
      assert mem.mailbox >= 10_000 * :erts_debug.flat_size(message) * @word
      assert mem.mailbox < mem.memory
    end

    test "a dead process is {:error, :noproc}" do
      pid = spawn(fn -> :ok end)
      ref = Process.monitor(pid)
      assert_receive {:DOWN, ^ref, _, _, _}
      assert MemProbe.process_memory(pid) == {:error, :noproc}
    end
  end

  describe "state_size/2" do
    test "measures the state inside the process: sharing, literals, pinned binaries" do
      {:ok, pid} = GenServer.start(Grower, [])
      cleanup(pid)
      big = :binary.copy("b", 10_000_000)
      <<slice::binary-size(100), _::binary>> = big
      :ok = GenServer.call(pid, {:build, 10_000, big})

      {:ok, sizes} = MemProbe.state_size(pid)
      copy = :sys.get_state(pid)
      # A copy expands the shared list and copies the literal.
      assert sizes.flat_words == :erts_debug.flat_size(copy)
      assert sizes.flat_words == 5 + 2 * 2 * 10_000 + 2 * 1_000 + MemProbe.flat_size(slice)

      if MemProbe.info().mode == :native do
        # In place: the list once, the literal apart, the 10 MB parent whole.
        assert sizes.shared_words == 5 + 2 * 10_000 + MemProbe.term_size(slice).shared_words
        assert sizes.literal_words == 2 * 1_000
        assert {sizes.off_heap_binaries, sizes.off_heap_bytes} == {1, 10_000_000}
        assert MemProbe.term_size(copy).shared_words > sizes.shared_words + 10_000
      else
        assert sizes.shared_words < sizes.flat_words
      end

      # The state grows: so does its size.
      :ok = GenServer.call(pid, {:set, Enum.to_list(1..100_000)})
      assert {:ok, %{flat_words: 200_000, shared_words: 200_000}} = MemProbe.state_size(pid)
    end

    test "errors are tuples, and a late answer never reaches the caller" do
      assert MemProbe.state_size(spawn(&idle/0) |> tap(&cleanup/1)) ==
               {:error, :not_a_sys_process}

      assert MemProbe.state_size(self()) == {:error, :calling_process}

      dead = spawn(fn -> :ok end)
      ref = Process.monitor(dead)
      assert_receive {:DOWN, ^ref, _, _, _}
      assert MemProbe.state_size(dead) == {:error, :noproc}

      # A stuck GenServer: timeout, and the answer it sends later is dropped.
      {:ok, stuck} = GenServer.start(Grower, [:kept])
      cleanup(stuck)
      test = self()
      task = Task.async(fn -> GenServer.call(stuck, {:block, test}, :infinity) end)
      assert_receive :blocked
      assert MemProbe.state_size(stuck, timeout: 50) == {:error, :timeout}
      send(stuck, :unblock)
      assert Task.await(task) == :ok
      # The system message is handled after the call: the state is unchanged
      # and the process alive.
      assert GenServer.call(stuck, :get) == [:kept]
      refute_received _

      # A GenServer that dies while we wait.
      {:ok, dying} = GenServer.start(Grower, [])
      spawn(fn -> GenServer.call(dying, {:block, test}, :infinity) end)
      assert_receive :blocked
      spawn(fn -> Process.sleep(50) && Process.exit(dying, :kill) end)
      assert MemProbe.state_size(dying, timeout: 2_000) == {:error, :noproc}
      refute_received _

      # A Task is not a sys process: an error within the timeout, never a hang.
      # Tasks started through proc_lib (Elixir 1.14) time out; later Elixir
      # releases start them without proc_lib's initial call, so they are
      # refused at once.
      {:ok, t} = Task.start(fn -> Process.sleep(1_000) end)
      cleanup(t)

      assert MemProbe.state_size(t, timeout: 50) in [
               {:error, :timeout},
               {:error, :not_a_sys_process}
             ]
    end
  end

  describe "bad arguments" do
    test "raise ArgumentError listing what is accepted, and create no atom" do
      assert_raise ArgumentError,
                   "top_processes/3: unknown attribute <<\"not_an_attr_c6f1\">>; accepted: memory, message_queue_len, reductions, total_heap_size, heap_size, stack_size, binary_memory, monitors, monitored_by, links",
                   fn -> MemProbe.top_processes("not_an_attr_c6f1", 3) end

      assert_raise ArgumentError, fn -> String.to_existing_atom("not_an_attr_c6f1") end

      assert_raise ArgumentError,
                   "top_processes/3: n must be a non-negative integer, got -1; accepted: 0, 1, 2, ...",
                   fn -> MemProbe.top_processes(:memory, -1) end

      assert_raise ArgumentError, ~r/n must be a non-negative integer, got 1.5/, fn ->
        MemProbe.top_processes(:memory, 1.5)
      end

      assert_raise ArgumentError, ~r/top_processes\/3: bad value -5 for option window/, fn ->
        MemProbe.top_processes(:memory, 1, window: -5)
      end

      assert_raise ArgumentError, ~r/unknown option windows; accepted: window/, fn ->
        MemProbe.top_processes(:memory, 1, windows: 5)
      end

      assert_raise ArgumentError,
                   "count_processes/2: unknown grouping module; accepted: initial_call, current_function, application",
                   fn -> MemProbe.count_processes(:module) end

      assert_raise ArgumentError, ~r/count_processes\/2: n must be a non-negative integer/, fn ->
        MemProbe.count_processes(:initial_call, :all)
      end

      assert_raise ArgumentError, ~r/binary_leaks\/2: n must be a non-negative integer/, fn ->
        MemProbe.binary_leaks(-3)
      end

      assert_raise ArgumentError,
                   ~r/binary_leaks\/2: bad value yes for option gc; accepted: gc/,
                   fn ->
                     MemProbe.binary_leaks(3, gc: :yes)
                   end

      assert_raise ArgumentError,
                   "process_memory/1: expected a pid, got <<\"<0.1.0>\">>; accepted: a pid",
                   fn -> MemProbe.process_memory("<0.1.0>") end

      assert_raise ArgumentError, ~r/state_size\/2: expected a pid, got nil; accepted: a pid/, fn ->
        MemProbe.state_size(nil)
      end

      assert_raise ArgumentError, ~r/state_size\/2: bad value -1 for option timeout/, fn ->
        MemProbe.state_size(self(), timeout: -1)
      end
    end

    test "Erlang callers get badarg with EEP 54 error information; the shell prints the message" do
      {kind, reason, stacktrace} =
        try do
          :mem_probe.top_processes(:bogus, 1)
        catch
          kind, reason -> {kind, reason, __STACKTRACE__}
        end

      assert {kind, reason} == {:error, :badarg}
      assert [{:mem_probe_args, :bad, 3, info} | _] = stacktrace
      assert %{module: :mem_probe_args, cause: {"top_processes/3", _}} = info[:error_info]

      shell = IO.chardata_to_string(:erl_error.format_exception(kind, reason, stacktrace))
      assert shell =~ ~r/^exception error: top_processes\/3\n/
      assert shell =~ "*** unknown attribute bogus; accepted: memory, message_queue_len"

      # Elixir builds the ArgumentError from the same information by itself.
      assert %ArgumentError{message: "top_processes/3: unknown attribute bogus; accepted: " <> _} =
               Exception.normalize(:error, reason, stacktrace)
    end
  end
end
