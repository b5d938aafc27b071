defmodule MemProbe.ClusterTest do
  use ExUnit.Case, async: false
  import Bitwise

  @moduletag timeout: 120_000

  setup_all do
    {_, 0} = System.cmd("epmd", ["-daemon"])

    # A name of its own: another test run on this machine may hold the last.
    if node() == :nonode@nohost do
      name = :"mem_probe_test_#{System.os_time()}_#{:os.getpid()}@127.0.0.1"
      {:ok, _} = :net_kernel.start([name, :longnames])
    end

    :ok
  end

  # A peer node on loopback; with_mem_probe: false leaves MemProbe off its path.
  defp start_peer(with_mem_probe \\ true) do
    ebin = :code.which(:mem_probe) |> Path.dirname() |> to_charlist()
    args = if with_mem_probe, do: [~c"-pa", ebin], else: []

    {:ok, peer, node} =
      :peer.start(%{
        name: :peer.random_name(~c"mem_probe_peer"),
        host: ~c"127.0.0.1",
        longnames: true,
        args: args
      })

    {peer, node}
  end

  defp stop_peer(peer) do
    try do
      :peer.stop(peer)
    catch
      :exit, _ -> :ok
    end
  end

  test "a snapshot of every node, each taken on its own node" do
    {peer, peer_node} = start_peer()
    snapshots = MemProbe.snapshot(nodes: :all)
    assert Map.keys(snapshots) |> Enum.sort() == Enum.sort([node(), peer_node])
    assert snapshots[peer_node].node == peer_node
    assert snapshots[node()].node == node()

    assert_raise ArgumentError, ~r/different nodes/, fn ->
      MemProbe.diff(snapshots[node()], snapshots[peer_node])
    end

    stop_peer(peer)
  end

  test "a node without MemProbe and a node that is down give error entries; the others answer" do
    {bare, bare_node} = start_peer(false)
    missing = :"nobody@127.0.0.1"
    result = MemProbe.check(max_total_bytes: 1 <<< 50, nodes: [node(), bare_node, missing])
    assert {:ok, %{complete: true}} = result[node()]
    assert result[bare_node] == {:error, :mem_probe_not_loaded}
    assert result[missing] == {:error, :nodedown}
    stop_peer(bare)
  end

  test "a node killed during a call is an error entry, not a crash" do
    {peer, peer_node} = start_peer()

    call =
      Task.async(fn ->
        MemProbe.top_processes(:reductions, 3, window: 1500, nodes: [node(), peer_node])
      end)

    Process.sleep(300)
    :erpc.cast(peer_node, :erlang, :halt, [])
    result = Task.await(call, 30_000)
    assert result[peer_node] == {:error, :nodedown}
    assert [%{pid: pid} | _] = result[node()]
    assert node(pid) == node()
    stop_peer(peer)
  end

  test "a node that does not answer in time is a timeout entry" do
    {peer, peer_node} = start_peer()
    result = MemProbe.top_processes(:memory, 3, window: 2000, nodes: [peer_node], rpc_timeout: 200)
    assert result == %{peer_node => {:error, :timeout}}
    stop_peer(peer)
  end

  test "scans on a peer see the peer's own processes and tables" do
    {peer, peer_node} = start_peer()

    # Test modules are not loaded on the peer: build its table with plain
    # calls. The erpc worker that creates it dies, so a sleeping heir keeps it.
    heir = Node.spawn(peer_node, :timer, :sleep, [:infinity])
    opts = [:public, :named_table, {:heir, heir, :kept}]
    :peer_table = :erpc.call(peer_node, :ets, :new, [:peer_table, opts])

    true =
      :erpc.call(peer_node, :ets, :insert, [
        :peer_table,
        for(i <- 1..1000, do: {i, :binary.copy(<<1>>, 1000)})
      ])

    result = MemProbe.top_tables(1, binaries: true, nodes: [peer_node])
    assert [%{name: :peer_table, off_heap_bytes: 1_000_000}] = result[peer_node]

    counts = MemProbe.count_processes(:initial_call, 3, nodes: :all)

    assert counts[peer_node].process_count ==
             :erpc.call(peer_node, :erlang, :system_info, [:process_count])

    stop_peer(peer)
  end

  test "bad nodes options are ArgumentErrors" do
    assert_raise ArgumentError, ~r/accepted: all, or a non-empty list of node names/, fn ->
      MemProbe.snapshot(nodes: "everything")
    end

    assert_raise ArgumentError, ~r/rpc_timeout/, fn ->
      MemProbe.snapshot(nodes: :all, rpc_timeout: -5)
    end
  end

  test "a bad argument checked on a node is that node's error, with its message" do
    assert %{} = result = MemProbe.top_processes(:size, 1, nodes: [node()])
    assert [{node, {:error, {:badarg, message}}}] = Map.to_list(result)
    assert node == node()
    assert message =~ "top_processes/3: unknown attribute size; accepted: memory,"
  end
end
