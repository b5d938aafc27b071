defmodule MemProbe.FaultsTest do
  # Each fault is made to happen in a VM of its own (a peer over standard
  # I/O), then what the user sees there is asserted; this VM is never touched.
  use ExUnit.Case, async: true

  @moduletag timeout: 180_000

  defp ebin, do: :code.which(:mem_probe) |> Path.dirname()

  # Runs `fun.(call)` against a peer VM with `code_path` on its code path and
  # these `-mem_probe Key Value` settings; `call.(m, f, a)` calls into it.
  defp with_peer(code_path, settings, fun) do
    args =
      Enum.flat_map(settings, fn {key, value} ->
        [~c"-mem_probe", to_charlist(key), to_charlist(value)]
      end)

    {:ok, peer, _node} =
      :peer.start(%{connection: :standard_io, args: [~c"-pa", to_charlist(code_path) | args]})

    try do
      call = fn m, f, a -> :peer.call(peer, m, f, a, 60_000) end
      :ok = call.(:application, :load, [:mem_probe])
      fun.(call)
    after
      :peer.stop(peer)
    end
  end

  # Evaluates Erlang expressions in the peer: terms sent to it are copies, so
  # whatever must be shared or sliced is built there.
  defp eval(call, source) do
    {:ok, tokens, _} = :erl_scan.string(to_charlist(source))
    {:ok, exprs} = :erl_parse.parse_exprs(tokens)
    {:value, value, _} = call.(:erl_eval, :exprs, [exprs, :erl_eval.new_bindings()])
    value
  end

  # term_size of a 100-byte slice of a 1 MB binary, built in the peer: the
  # native walker sees the megabyte it pins, the fallback does not.
  defp slice_bytes(call) do
    eval(call, """
    Big = binary:copy(<<1>>, 1000000),
    <<_:10/binary, Slice:100/binary, _/binary>> = Big,
    maps:get(off_heap_bytes, mem_probe:term_size(Slice)).
    """)
  end

  describe "reload and upgrade of mem_probe_nif" do
    test "reloaded twice, purged, reloaded: native after each, sizes right in between" do
      with_peer(ebin(), [], fn call ->
        assert call.(:mem_probe, :info, []).mode == :native
        assert call.(:mem_probe, :info, []).library.loads == 1
        assert slice_bytes(call) == 1_000_000

        for step <- [:reload, :reload_after_purge, :purge_then_reload] do
          case step do
            :reload ->
              assert {:module, :mem_probe_nif} = call.(:code, :load_file, [:mem_probe_nif])

            :reload_after_purge ->
              call.(:code, :purge, [:mem_probe_nif])
              assert {:module, :mem_probe_nif} = call.(:code, :load_file, [:mem_probe_nif])

            :purge_then_reload ->
              call.(:code, :purge, [:mem_probe_nif])
              assert {:module, :mem_probe_nif} = call.(:code, :load_file, [:mem_probe_nif])
              call.(:code, :purge, [:mem_probe_nif])
          end

          info = call.(:mem_probe, :info, [])
          assert {step, info.mode} == {step, :native}
          # info() says the library was loaded again, and when.
          assert info.library.loads > 1
          assert {:ok, _, 0} = DateTime.from_iso8601(info.library.loaded_at)
          assert slice_bytes(call) == 1_000_000
          assert call.(:mem_probe, :flat_size, [[1, 2, 3]]) == 6
        end
      end)
    end

    test "a reload that cannot load the library falls back and says why" do
      # A copy of the application whose library is then taken away.
      dir = Path.join(System.tmp_dir!(), "mem_probe_reload_#{System.unique_integer([:positive])}")
      app = Path.join(dir, "mem_probe")
      File.mkdir_p!(app)
      {_, 0} = System.cmd("cp", ["-rL", ebin(), Path.join(app, "ebin")])
      {_, 0} = System.cmd("cp", ["-rL", Path.join(Path.dirname(ebin()), "priv"), app])

      try do
        with_peer(Path.join(app, "ebin"), [], fn call ->
          assert call.(:mem_probe, :info, []).mode == :native
          # An upgrade to a build without the library: the old code is
          # removed (which unloads the library), then the new one loads.
          assert call.(:code, :delete, [:mem_probe_nif])
          call.(:code, :purge, [:mem_probe_nif])
          File.rm!(Path.join([app, "priv", "mem_probe_nif.so"]))
          assert {:module, :mem_probe_nif} = call.(:code, :load_file, [:mem_probe_nif])
          info = call.(:mem_probe, :info, [])
          assert info.mode == :fallback
          assert {:nif_not_loaded, _} = info.reason
          # Sizes still answer, from the BIFs: no nif_not_loaded error.
          assert call.(:mem_probe, :flat_size, [[1, 2, 3]]) == 6
          assert slice_bytes(call) == :undefined
        end)
      after
        File.rm_rf!(dir)
      end
    end
  end

  describe "a layout error met by a walk" do
    test "switches the node to fallback, says what and when, and recalibrate/0 turns it back" do
      with_peer(ebin(), [inject_layout_error: true], fn call ->
        # The calibration is not affected by the switch: the node starts native.
        assert call.(:mem_probe, :info, []).mode == :native
        term = call.(:lists, :seq, [1, 10])

        error = catch_error(call.(:mem_probe, :term_size, [term]))
        assert {:layout_error, message} = error
        assert message =~ "term_size/1: the native walker met an unexpected layout"
        assert message =~ "now in fallback mode"

        info = call.(:mem_probe, :info, [])
        assert info.mode == :fallback
        assert {:layout_error, fault} = info.reason
        assert fault.what =~ "inject_layout_error"
        assert fault.walk == :full
        assert is_integer(fault.address) and is_integer(fault.word)
        assert {:ok, _, 0} = DateTime.from_iso8601(fault.at)
        assert info.walk_errors == 1

        # From now on the BIFs answer; no walk runs natively, raw or not.
        assert call.(:mem_probe, :flat_size, [term]) == 20
        assert call.(:mem_probe, :term_size, [term]).literal_words == :undefined
        assert call.(:mem_probe_nif, :walk, [term, :full, 0]) == {:error, :not_calibrated}

        # A breakdown's walk meets the same policy (after recalibrating).
        assert call.(:mem_probe, :recalibrate, []).mode == :native

        assert {:error, {:layout_error, text}} = call.(:mem_probe, :breakdown, [[term, term], []])

        assert text =~ "breakdown/2: the native walker met an unexpected layout"
        assert call.(:mem_probe, :info, []).reason |> elem(1) |> Map.get(:walk) == :breakdown

        # The calibration agrees again, so the walker is back on (and the
        # switch makes the next walk fail again, the same way).
        assert call.(:mem_probe, :recalibrate, []).mode == :native
        assert {:layout_error, _} = catch_error(call.(:mem_probe, :flat_size, [term]))
        assert call.(:mem_probe, :info, []).mode == :fallback
      end)
    end
  end

  describe "the walker's own memory" do
    test "a walk past walk_memory_limit ends with a clear error, not an abort" do
      with_peer(ebin(), [walk_memory_limit: 4096], fn call ->
        assert call.(:mem_probe, :info, []).mode == :native
        # A scan of 200k distinct cells needs more than 4 KB of visited set.
        assert {:error, {:walk_out_of_memory, message}} =
                 eval(call, """
                 List = lists:seq(1, 200000),
                 try mem_probe:term_size(lists:duplicate(20, List))
                 catch error:Reason -> {error, Reason}
                 end.
                 """)

        assert message =~ "term_size/1"
        assert message =~ "walk_memory_limit: 4096"
        # The node stays native, and walks that fit still answer.
        assert call.(:mem_probe, :info, []).mode == :native
        assert eval(call, "mem_probe:flat_size(lists:seq(1, 200000)).") == 400_000
      end)
    end

    test "the walker allocates from the VM, so erlang:memory(system) sees it" do
      # 300k distinct tuples reached 10 times each: the DAG walk keeps a
      # graph of every object (~150 bytes each, ~45 MB) while it runs, and
      # that memory is enif_alloc's (the NIF's allocator). Sampled from this
      # process while another one sizes the term.
      base = :erlang.memory(:system)
      parent = self()

      # Built by the walking process itself: a term sent to a process is
      # copied, and the copy shares nothing.
      walker =
        spawn(fn ->
          tuples = for i <- 1..300_000, do: {i}
          send(parent, {:sized, MemProbe.flat_size(List.duplicate(tuples, 10))})
        end)

      peak = sample(walker, base)
      # 10 cons cells, then 10 times 300k cons cells and 300k 2-word tuples.
      flat = 10 * 2 + 10 * 300_000 * (2 + 2)
      assert_receive {:sized, ^flat}, 60_000
      assert peak - base > 20_000_000, "erlang:memory(system) grew by only #{peak - base} bytes"
    end
  end

  defp sample(walker, peak) do
    peak = max(peak, :erlang.memory(:system))
    if Process.alive?(walker), do: sample(walker, peak), else: peak
  end
end
