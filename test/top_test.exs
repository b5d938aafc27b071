defmodule MemProbe.TopTest do
  # The live top driven as a person would: in a terminal (tmux, fixed size),
  # keys typed with send-keys, the screen read with capture-pane. Every
  # check polls the screen until the expected text appears (generous
  # timeouts, no fixed sleeps), so a loaded machine only makes it slower.
  use ExUnit.Case, async: false
  alias MemProbe.TestWait

  @moduletag timeout: 180_000
  @prompt "TOPREADY$"
  @wait 30_000
  @script Path.expand("../bin/mem_probe", __DIR__)

  setup_all do
    {_, 0} = System.cmd("epmd", ["-daemon"])

    if node() == :nonode@nohost do
      name = :"mem_probe_top_test_#{System.unique_integer([:positive])}@127.0.0.1"
      {:ok, _} = :net_kernel.start([name, :longnames])
    end

    :ok
  end

  # A target node with MemProbe nowhere on its code path and planted load,
  # built with nothing but erl_eval (the peer has no test modules either).
  defp start_target do
    {:ok, peer, node} =
      :peer.start(%{
        name: :peer.random_name(~c"mem_probe_top_target"),
        host: ~c"127.0.0.1",
        longnames: true,
        args: [~c"-setcookie", Atom.to_charlist(Node.get_cookie()), ~c"-connect_all", ~c"false"]
      })

    refute :erpc.call(node, :code, :which, [:mem_probe]) |> is_list()

    peer_eval(node, """
    register(planted_mailbox, spawn(fun() -> receive stop -> ok end end)),
    [planted_mailbox ! {msg, I} || I <- lists:seq(1, 50000)],
    register(planted_hog, spawn(fun() -> L = lists:seq(1, 2000000),
                                         receive stop -> length(L) end end)),
    register(planted_binholder, spawn(fun() -> B = binary:copy(<<"z">>, 20000000),
                                               receive stop -> byte_size(B) end end)),
    register(planted_grower, spawn(fun() ->
        Grow = fun G(Acc) when length(Acc) >= 1000 -> receive stop -> ok end;
                   G(Acc) -> receive stop -> length(Acc)
                             after 50 -> G([lists:seq(1, 1000) | Acc]) end end,
        Grow([]) end)),
    register(planted_busy, spawn(fun() ->
        Busy = fun B() -> _ = lists:sum(lists:seq(1, 20000)),
                          receive stop -> ok after 5 -> B() end end,
        Busy() end)),
    Self = self(),
    spawn(fun() -> ets:new(planted_blobs, [named_table, public]),
                   [ets:insert(planted_blobs, {I, binary:copy(<<"b">>, 100000)})
                    || I <- lists:seq(1, 200)],
                   Self ! blobs_ready,
                   receive stop -> ok end end),
    receive blobs_ready -> ok end.
    """)

    {peer, node}
  end

  defp peer_eval(node, code) do
    {:ok, tokens, _} = :erl_scan.string(String.to_charlist(code))
    {:ok, exprs} = :erl_parse.parse_exprs(tokens)
    {:value, value, _} = :erpc.call(node, :erl_eval, :exprs, [exprs, []])
    value
  end

  defp stop_peer(peer) do
    :peer.stop(peer)
  catch
    :exit, _ -> :ok
  end

  defp mem_probe_modules(node) do
    for {m, _} <- :erpc.call(node, :code, :all_loaded, []),
        String.starts_with?(Atom.to_string(m), "mem_probe"),
        do: m
  end

  defp viewers(node) do
    for n <- :erpc.call(node, :erlang, :nodes, [:hidden]),
        String.starts_with?(Atom.to_string(n), "mem_probe_top_"),
        do: n
  end

  # --- the terminal ---------------------------------------------------

  defp terminal do
    socket = "mem_probe_top_#{System.unique_integer([:positive])}_#{System.pid()}"
    session = "top"

    {_, 0} =
      System.cmd("tmux", [
        "-L",
        socket,
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "150",
        "-y",
        "45",
        "env PS1='#{@prompt} ' sh"
      ])

    term = {socket, session}
    on_exit(fn -> System.cmd("tmux", ["-L", socket, "kill-server"], stderr_to_stdout: true) end)
    wait_for(term, "the shell prompt", &prompt?/1)
    term
  end

  defp keys({socket, session}, keys) do
    {_, 0} = System.cmd("tmux", ["-L", socket, "send-keys", "-t", session | keys])
    :ok
  end

  defp type(term, line) do
    :ok = keys(term, ["-l", line])
    keys(term, ["Enter"])
  end

  # The remote viewer reads single keys, except on OTP 26 and 27, where a
  # noshell VM gets its input a line at a time (key, then Enter).
  @line_only_viewer :erlang.system_info(:otp_release) in [~c"26", ~c"27"]

  defp press(term, key) do
    if @line_only_viewer, do: keys(term, [key, "Enter"]), else: keys(term, [key])
  end

  defp screen({socket, session}) do
    {text, 0} = System.cmd("tmux", ["-L", socket, "capture-pane", "-p", "-t", session])
    text
  end

  defp wait_for(term, what, check, timeout \\ @wait) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll(term, what, check, deadline)
  end

  defp poll(term, what, check, deadline) do
    text = screen(term)

    cond do
      check.(text) ->
        text

      System.monotonic_time(:millisecond) > deadline ->
        flunk("timed out waiting for #{what}; the screen:\n#{text}")

      true ->
        Process.sleep(100)
        poll(term, what, check, deadline)
    end
  end

  # The shell waits for a command: the last line is the bare prompt.
  defp prompt?(text) do
    text
    |> String.split("\n")
    |> Enum.reject(&(String.trim(&1) == ""))
    |> List.last("")
    |> String.trim() == @prompt
  end

  # The first data row under the table whose title starts with `title`.
  defp first_row(text, title) do
    lines = String.split(text, "\n")

    case Enum.drop_while(lines, &(not String.starts_with?(&1, title))) do
      [_title, _columns, row | _] -> row
      _ -> nil
    end
  end

  defp top_row?(title, culprit), do: fn text -> (first_row(text, title) || "") =~ culprit end

  defp frame_number(text) do
    case Regex.run(~r/ frame (\d+) /, text) do
      [_, n] -> String.to_integer(n)
      nil -> nil
    end
  end

  defp refreshed?(after_frame), do: fn text -> (frame_number(text) || 0) > after_frame end

  defp stty(term, file) do
    type(term, "stty -g > #{file}; echo saved-#{Path.basename(file)}")
    # The echoed line alone (not the typed command, which contains it too).
    marker = ~r/^saved-#{Path.basename(file)}$/m
    wait_for(term, "stty saved", &(&1 =~ marker))
    File.read!(file)
  end

  # --- the remote top ---------------------------------------------------

  test "bin/mem_probe top on a node without MemProbe: culprits on top, keys, refresh, q restores, nothing left behind" do
    {peer, node} = start_target()
    term = terminal()
    dir = Path.join(System.tmp_dir!(), "mem_probe_top_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    before = stty(term, Path.join(dir, "before"))

    type(term, "#{@script} top #{node} --cookie #{Node.get_cookie()} --interval 500")

    text =
      wait_for(term, "planted_hog on top by memory", top_row?("Processes by memory", "planted_hog"))

    assert text =~ "MemProbe top  #{node}"

    assert text =~
             if(@line_only_viewer, do: "(type the key, then Enter)", else: "(single keys)")

    assert text =~ ~r/frame cost on #{Regex.escape(Atom.to_string(node))}: [\d.]+ ms/
    assert text =~ "planted_mailbox"
    assert text =~ "message queue of 50000"

    # The screen refreshes by itself.
    wait_for(term, "a refresh", refreshed?(frame_number(text)))

    # The viewer is hidden: the target's nodes() does not list it.
    assert [viewer] = viewers(node)
    refute viewer in :erpc.call(node, :erlang, :nodes, [])
    assert :mem_probe_top_collector in mem_probe_modules(node)

    press(term, "u")

    wait_for(
      term,
      "planted_mailbox on top by mailbox",
      top_row?("Processes by mailbox", "planted_mailbox")
    )

    assert first_row(screen(term), "Processes by mailbox") =~ "50,000"

    press(term, "e")
    wait_for(term, "planted_blobs on top of the tables", top_row?("ETS tables", "planted_blobs"))

    press(term, "b")

    wait_for(
      term,
      "planted_binholder on top by binaries",
      top_row?("Processes by off-heap", "planted_binholder")
    )

    press(term, "g")

    wait_for(
      term,
      "planted_grower on top by growth",
      top_row?("Processes by memory growth", "planted_grower")
    )

    press(term, "r")

    wait_for(
      term,
      "planted_busy on top by reductions",
      top_row?("Processes by reductions in the last interval", "planted_busy")
    )

    press(term, "a")
    wait_for(term, "the allocators table", top_row?("Allocators", "_alloc"))

    press(term, "+")
    wait_for(term, "a longer interval", &(&1 =~ "every 1.0 s"))

    press(term, "m")
    wait_for(term, "planted_hog on top by memory", top_row?("Processes by memory", "planted_hog"))
    press(term, "1")
    text = wait_for(term, "the detail of row 1", &(&1 =~ "process_memory:" and &1 =~ "state_size:"))
    assert text =~ "not_a_sys_process"

    press(term, "q")
    text = wait_for(term, "the shell prompt after q", &prompt?/1)
    refute text =~ "Processes by"
    assert stty(term, Path.join(dir, "after")) == before

    # The collector is gone from the target, and so is the viewer.
    assert mem_probe_modules(node) == []
    refute viewer in :erpc.call(node, :erlang, :nodes, [:hidden])
    stop_peer(peer)
  end

  test "key then Enter works too; Ctrl-C quits like q; a killed viewer leaves nothing behind" do
    {peer, node} = start_target()
    term = terminal()
    cookie = Node.get_cookie()

    type(term, "MEMPROBE_TOP_INPUT=line #{@script} top #{node} --cookie #{cookie} --interval 500")
    text = wait_for(term, "the first frame", top_row?("Processes by memory", "planted_hog"))
    assert text =~ "(type the key, then Enter)"
    keys(term, ["u", "Enter"])

    wait_for(
      term,
      "planted_mailbox on top by mailbox",
      top_row?("Processes by mailbox", "planted_mailbox")
    )

    keys(term, ["q", "Enter"])
    wait_for(term, "the shell prompt after q", &prompt?/1)
    assert mem_probe_modules(node) == []

    type(term, "#{@script} top #{node} --cookie #{cookie} --interval 500")
    wait_for(term, "the first frame", top_row?("Processes by memory", "planted_hog"))
    assert :mem_probe_top_collector in mem_probe_modules(node)
    # Ctrl-C: a key that quits like q where the viewer reads single keys, a
    # signal that ends it at once (+Bd) where it reads lines.
    keys(term, ["C-c"])
    text = wait_for(term, "the shell prompt after Ctrl-C", &prompt?/1)
    refute text =~ "Processes by"
    assert mem_probe_modules(node) == []

    # A viewer killed outright: the script restores the terminal, and the
    # collector, seeing its viewer gone, unloads itself from the target.
    type(term, "#{@script} top #{node} --cookie #{cookie} --interval 500")
    wait_for(term, "the first frame", top_row?("Processes by memory", "planted_hog"))
    [viewer] = viewers(node)
    os_pid = :erpc.call(viewer, :os, :getpid, [])
    {_, 0} = System.cmd("kill", ["-KILL", to_string(os_pid)])
    text = wait_for(term, "the shell prompt after kill", &prompt?/1)
    refute text =~ "Processes by"

    TestWait.until("the collector to unload itself", @wait, fn ->
      mem_probe_modules(node) == []
    end)

    stop_peer(peer)
  end

  test "the terminal is restored when the target goes down" do
    {peer, node} = start_target()
    term = terminal()
    type(term, "#{@script} top #{node} --cookie #{Node.get_cookie()} --interval 500")
    wait_for(term, "the first frame", top_row?("Processes by memory", "planted_hog"))
    stop_peer(peer)
    text = wait_for(term, "the shell prompt after nodedown", &prompt?/1)
    assert text =~ "mem_probe top: node #{node} went down"
    refute text =~ "Processes by"
  end

  test "--once prints one frame and leaves nothing on the target" do
    {peer, node} = start_target()
    cookie = Atom.to_string(Node.get_cookie())

    {out, 0} = System.cmd(@script, ["top", Atom.to_string(node), "--cookie", cookie, "--once"])
    assert out =~ "MemProbe top  #{node}"
    assert first_row(out, "Processes by memory") =~ "planted_hog"
    refute out =~ "\e["

    {out, 0} =
      System.cmd(@script, ["top", Atom.to_string(node), "--cookie", cookie, "--once", "--sort", "e"])

    assert first_row(out, "ETS tables") =~ "planted_blobs"
    assert mem_probe_modules(node) == []

    {out, 2} =
      System.cmd(@script, ["top", Atom.to_string(node), "--sort", "cpu", "--once"],
        stderr_to_stdout: true
      )

    assert out =~ "--sort: unknown key cpu"
    stop_peer(peer)
  end

  # --- the local top in iex ---------------------------------------------

  test "MemProbe.top() in iex: culprits on top, keys switch views, q gives the prompt back" do
    term = terminal()
    ebin = :code.which(:mem_probe) |> Path.dirname()
    type(term, "iex -pa #{ebin}")
    wait_for(term, "the iex prompt", &(&1 =~ "iex(1)>"))

    type(
      term,
      ~S|Process.register(spawn(fn -> l = Enum.to_list(1..1_500_000); receive do :stop -> length(l) end end), :iex_planted_hog); Process.register(spawn(fn -> receive do :stop -> :ok end end), :iex_planted_mailbox); for i <- 1..30_000, do: send(:iex_planted_mailbox, {:m, i}); t = :ets.new(:iex_planted_blobs, [:named_table, :public]); for i <- 1..100, do: :ets.insert(t, {i, :binary.copy("b", 100_000)}); :planted|
    )

    wait_for(term, "the planted load", &(&1 =~ ":planted\n"))

    type(
      term,
      ~S{Process.register(spawn(fn -> b = :binary.copy("z", 20_000_000); receive do :stop -> byte_size(b) end end), :iex_planted_binholder); Process.register(spawn(fn -> Stream.repeatedly(fn -> Enum.sum(Enum.to_list(1..20_000)); Process.sleep(5) end) |> Stream.run() end), :iex_planted_busy); Process.register(spawn(fn -> l = Enum.reduce(1..1000, [], fn _, acc -> Process.sleep(50); [Enum.to_list(1..1000) | acc] end); receive do :stop -> length(l) end end), :iex_planted_grower); :planted_more}
    )

    wait_for(term, "the rest of the planted load", &(&1 =~ ":planted_more\n"))
    type(term, "MemProbe.top(interval: 500)")

    text =
      wait_for(term, "iex_planted_hog on top", top_row?("Processes by memory", "iex_planted_hog"))

    assert text =~ "(single keys)"
    wait_for(term, "a refresh", refreshed?(frame_number(text)))

    keys(term, ["u"])
    wait_for(term, "the mailbox on top", top_row?("Processes by mailbox", "iex_planted_mailbox"))

    keys(term, ["e"])
    text = wait_for(term, "the table on top", top_row?("ETS tables", "iex_planted_blobs"))
    assert text =~ "binaries counted once each"
    assert first_row(text, "ETS tables") =~ "9.5 MiB"

    keys(term, ["b"])

    wait_for(
      term,
      "the binary holder on top",
      top_row?("Processes by off-heap", "iex_planted_binholder")
    )

    keys(term, ["g"])

    wait_for(
      term,
      "the grower on top by growth",
      top_row?("Processes by memory growth", "iex_planted_grower")
    )

    keys(term, ["r"])

    wait_for(
      term,
      "the busy process on top by reductions",
      top_row?("Processes by reductions in the last interval", "iex_planted_busy")
    )

    keys(term, ["a"])
    wait_for(term, "the allocators table", top_row?("Allocators", "_alloc"))

    keys(term, ["m"])
    wait_for(term, "iex_planted_hog on top", top_row?("Processes by memory", "iex_planted_hog"))
    keys(term, ["1"])
    wait_for(term, "the detail of row 1", &(&1 =~ "process_memory:" and &1 =~ "state_size:"))

    keys(term, ["q"])
    wait_for(term, "the iex prompt after q", &(&1 =~ ~r/:ok\s*\niex\(\d+\)> *\n/))
    refute screen(term) =~ "Processes by"

    # The shell reads and echoes again.
    type(term, "40 + 2")
    wait_for(term, "the shell to evaluate", &(&1 =~ "40 + 2\n42\n"))
  end
end
