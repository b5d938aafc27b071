defmodule MemProbe.TestPeer do
  @moduledoc """
  A peer VM (over standard I/O, no distribution) with this VM's code path and
  the test support modules, where a test can run a function of its own
  module: a walker fault that kills that VM is a test failure here, not the
  end of the run.
  """

  @doc """
  Starts a peer and loads the support modules and `modules` (`{name,
  bytecode}` pairs, e.g. a test module's own, see `@after_compile`) into it.
  """
  def start(modules \\ []) do
    paths = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
    {:ok, peer, _node} = :peer.start(%{connection: :standard_io, args: paths})

    for {module, bytecode} <- :persistent_term.get({__MODULE__, :modules}) ++ modules do
      {:module, ^module} = :peer.call(peer, :code, :load_binary, [module, ~c"#{module}", bytecode])
    end

    peer
  end

  @doc """
  Runs `fun` (a function of a module loaded into the peer) there and returns
  its result; exceptions are raised here. `{:peer_died, reason}` if the peer
  VM did not survive it.
  """
  def run(peer, fun, timeout \\ 300_000) do
    {:ok, :peer.call(peer, :erlang, :apply, [fun, []], timeout)}
  catch
    :exit, reason -> {:peer_died, reason}
  end

  @doc "Stops the peer, if it still runs."
  def stop(peer) do
    :peer.stop(peer)
  catch
    :exit, _ -> :ok
  end
end
