%%% EUnit tests of the Erlang API of the process scans (mem_probe_procs,
%%% mem_probe_binaries, mem_probe_state through mem_probe): real processes,
%%% each planted culprit must rank first with its exact value.
-module(mem_probe_procs_tests).

-include_lib("eunit/include/eunit.hrl").

-behaviour(gen_server).
-export([init/1, handle_call/3, handle_cast/2]).

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

idle() ->
    receive stop -> ok end.

hold(Term) ->
    receive stop -> Term end.

kill(Pids) ->
    [exit(P, kill) || P <- Pids],
    ok.

memory(Pid) ->
    {memory, M} = erlang:process_info(Pid, memory),
    M.

%% Waits until Pid has run its setup and waits in a receive.
settle(Pid) ->
    settle(Pid, 500).

settle(_Pid, 0) ->
    ok;
settle(Pid, N) ->
    case erlang:process_info(Pid, status) of
        {status, waiting} -> ok;
        _ -> timer:sleep(2), settle(Pid, N - 1)
    end.

%% A gen_server whose state is what it is told.
init(State) -> {ok, State}.
handle_call({set, State}, _From, _) -> {reply, ok, State};
%% Built here, not in the test process (whose heap would then be the largest).
handle_call({seq, N}, _From, _) -> {reply, ok, lists:seq(1, N)};
handle_call({share, N}, _From, _) ->
    L = lists:seq(1, N),
    {reply, ok, {L, L}};
handle_call({block, Test}, _From, State) ->
    Test ! blocked,
    receive unblock -> ok end,
    {reply, ok, State};
handle_call(get, _From, State) -> {reply, State, State}.
handle_cast(_, State) -> {noreply, State}.

%%--------------------------------------------------------------------
%% top_processes
%%--------------------------------------------------------------------

top_memory_gen_server_test() ->
    {ok, Pid} = gen_server:start(?MODULE, [], []),
    try
        ok = gen_server:call(Pid, {seq, 1000000}),
        [Top] = mem_probe:top_processes(memory, 1),
        %% The gen_server loop's arity changed (7 up to OTP 27, 5 on 29).
        ?assertMatch(#{pid := Pid, attr := memory, name := undefined,
                       initial_call := {?MODULE, init, 1},
                       current_function := {gen_server, loop, _}}, Top),
        ?assertEqual(memory(Pid), maps:get(value, Top))
    after
        kill([Pid])
    end.

top_mailbox_test() ->
    Pid = spawn(fun idle/0),
    [Pid ! {msg, I} || I <- lists:seq(1, 25000)],
    ?assertMatch([#{pid := Pid, value := 25000, current_function := {?MODULE, idle, 0}}],
                 mem_probe:top_processes(message_queue_len, 1)),
    kill([Pid]).

top_monitors_by_count_test() ->
    Targets = [spawn(fun idle/0) || _ <- lists:seq(1, 1000)],
    Self = self(),
    Culprit = spawn(fun() -> [erlang:monitor(process, T) || T <- Targets], Self ! ready, idle() end),
    Late = spawn(fun idle/0),
    Decoy = spawn(fun() -> erlang:monitor(process, Late), Self ! ready, idle() end),
    [receive ready -> ok end || _ <- [1, 2]],
    ?assertMatch([#{pid := Culprit, value := 1000}], mem_probe:top_processes(monitors, 1)),
    kill([Culprit, Decoy, Late | Targets]).

top_window_test() ->
    {ok, Pid} = gen_server:start(?MODULE, [], []),
    Before = memory(Pid),
    spawn(fun() -> timer:sleep(200), gen_server:call(Pid, {seq, 400000}) end),
    [Top | _] = mem_probe:top_processes(memory, 3, [{window, 800}]),
    ?assertMatch(#{pid := Pid, born := false, died := false}, Top),
    ?assertEqual(memory(Pid) - Before, maps:get(value, Top)),
    kill([Pid]).

top_includes_caller_test() ->
    Big = lists:seq(1, 2000000),
    [#{pid := Top}] = mem_probe:top_processes(total_heap_size, 1),
    ?assertEqual(self(), Top),
    ?assertEqual(2000000, length(Big)).

%%--------------------------------------------------------------------
%% count_processes
%%--------------------------------------------------------------------

count_burst_test() ->
    Pids = [spawn(fun idle/0) || _ <- lists:seq(1, 2500)],
    [settle(P) || P <- Pids],
    #{groups := [First | _], process_count := Count, process_limit := Limit} =
        mem_probe:count_processes(current_function, 3),
    ?assertEqual(#{key => {?MODULE, idle, 0}, count => 2500}, First),
    ?assert(Count >= 2500),
    ?assertEqual(erlang:system_info(process_limit), Limit),
    kill(Pids).

count_gen_servers_test() ->
    Pids = [begin {ok, P} = gen_server:start(?MODULE, [], []), P end || _ <- lists:seq(1, 2000)],
    try
        #{groups := [First | _]} = mem_probe:count_processes(initial_call),
        ?assertEqual(#{key => {?MODULE, init, 1}, count => 2000}, First)
    after
        kill(Pids)
    end.

%%--------------------------------------------------------------------
%% binary_leaks
%%--------------------------------------------------------------------

shared_binary_counted_once_test() ->
    Self = self(),
    Creator = spawn(fun() ->
                            Shared = binary:copy(<<"s">>, 10000000),
                            Others = [spawn(fun() -> hold(Shared) end) || _ <- lists:seq(1, 49)],
                            Self ! {holders, [self() | Others]},
                            hold(Shared)
                    end),
    Holders = receive {holders, Hs} -> Hs end,
    Culprit = spawn(fun() -> hold(binary:copy(<<"c">>, 15000000)) end),
    [settle(P) || P <- [Culprit | Holders]],
    [Top | _] = Leaks = mem_probe:binary_leaks(60),
    ?assertMatch(#{pid := Culprit, bytes := 15000000, raw_bytes := 15000000,
                   exclusive_bytes := 15000000, holders := 1}, Top),
    Sharers = [E || #{pid := P} = E <- Leaks, lists:member(P, Holders)],
    ?assertEqual(50, length(Sharers)),
    ?assertEqual(10000000, lists:sum([B || #{bytes := B} <- Sharers])),
    ?assert(lists:all(fun(#{raw_bytes := R, holders := H}) -> {R, H} =:= {10000000, 50} end,
                      Sharers)),
    kill([Creator, Culprit | Holders]).

gc_winners_only_test() ->
    Litter = fun(Count) ->
                     spawn(fun() ->
                                   process_flag(min_heap_size, 100000),
                                   process_flag(min_bin_vheap_size, 1000000000),
                                   [binary:copy(<<"g">>, 1000000) || _ <- lists:seq(1, Count)],
                                   idle()
                           end)
             end,
    Culprit = Litter(20),
    Bystander = Litter(4),
    [settle(P) || P <- [Culprit, Bystander]],
    ?assertMatch([#{pid := Culprit, bytes := 20000000, freed_bytes := 20000000}],
                 mem_probe:binary_leaks(1, [{gc, true}])),
    ?assertEqual({binary, []}, erlang:process_info(Culprit, binary)),
    {binary, Kept} = erlang:process_info(Bystander, binary),
    ?assertEqual(4, length(Kept)),
    kill([Culprit, Bystander]).

%%--------------------------------------------------------------------
%% process_memory and state_size
%%--------------------------------------------------------------------

process_memory_test() ->
    Pid = spawn(fun() -> hold(binary:copy(<<"b">>, 5000000)) end),
    settle(Pid),
    {ok, M} = mem_probe:process_memory(Pid),
    ?assertEqual(memory(Pid), maps:get(memory, M)),
    #{heap := H, stack := S, mailbox := Mb, overhead_bytes := O, memory := Mem} = M,
    ?assertEqual(Mem, H + S + Mb + O),
    ?assertMatch(#{off_heap_bytes := 5000000, off_heap_binaries := 1}, M),
    kill([Pid]),
    timer:sleep(10),
    ?assertEqual({error, noproc}, mem_probe:process_memory(Pid)).

state_size_in_place_test() ->
    {ok, Pid} = gen_server:start(?MODULE, [], []),
    ok = gen_server:call(Pid, {share, 1000}),
    {ok, Sizes} = mem_probe:state_size(Pid),
    %% {L, L}: a copy (sys:get_state) takes 3 + 2 * 2000 words, the state
    %% itself 3 + 2000.
    ?assertMatch(#{flat_words := 4003, shared_words := 2003}, Sizes),
    ?assertEqual(4003, erts_debug:flat_size(sys:get_state(Pid))),
    kill([Pid]).

state_size_errors_test() ->
    Plain = spawn(fun idle/0),
    ?assertEqual({error, not_a_sys_process}, mem_probe:state_size(Plain)),
    ?assertEqual({error, calling_process}, mem_probe:state_size(self())),
    {ok, Stuck} = gen_server:start(?MODULE, kept, []),
    Self = self(),
    %% Stuck in a call until told: the state request waits behind it.
    spawn(fun() -> Self ! {unblocked, gen_server:call(Stuck, {block, Self}, infinity)} end),
    receive blocked -> ok end,
    ?assertEqual({error, timeout}, mem_probe:state_size(Stuck, [{timeout, 50}])),
    Stuck ! unblock,
    receive {unblocked, ok} -> ok end,
    ?assertEqual(kept, gen_server:call(Stuck, get)),
    receive Stray -> ?assertEqual(no_stray_message, Stray) after 0 -> ok end,
    Gone = monitor(process, Stuck),
    kill([Plain, Stuck]),
    receive {'DOWN', Gone, process, Stuck, killed} -> ok end,
    ?assertEqual({error, noproc}, mem_probe:state_size(Stuck)).

%%--------------------------------------------------------------------
%% report/1: every process attribute from one pass
%%--------------------------------------------------------------------

%% The report's process sections are the rows the five scans give, from one
%% pass over the process table (mem_probe_scan:processes/0 called once).
report_one_pass_test() ->
    Mailbox = spawn(fun idle/0),
    [Mailbox ! {msg, I} || I <- lists:seq(1, 30000)],
    Targets = [spawn(fun idle/0) || _ <- lists:seq(1, 2000)],
    Self = self(),
    Monitoring = spawn(fun() -> [erlang:monitor(process, T) || T <- Targets], Self ! ready,
                                idle() end),
    %% One binary held by two processes (never by this one, which outlives
    %% the test and would keep it alive for the next modules' scans).
    Holder = spawn(fun() ->
                           Big = binary:copy(<<"x">>, 40000000),
                           Other = spawn(fun() -> hold(Big) end),
                           Self ! {other, Other},
                           hold(Big)
                   end),
    Other = receive {other, O} -> O end,
    receive ready -> ok end,
    {ok, Server} = gen_server:start(?MODULE, [], []),
    ok = gen_server:call(Server, {seq, 2000000}),
    [settle(P) || P <- [Mailbox, Monitoring, Holder, Other, Server]],
    %% The caller is ranked too: drop what earlier tests left on this heap.
    erlang:garbage_collect(),
    erlang:trace_pattern({mem_probe_scan, processes, 0}, true, [call_count]),
    try
        Report = mem_probe:report([{binaries, false}, {n, 3}]),
        ?assertEqual({call_count, 1},
                     erlang:trace_info({mem_probe_scan, processes, 0}, call_count)),
        #{top_memory := [TopMemory | _], top_mailbox := [TopMailbox | _],
          binary_leaks := Leaks, findings := Findings} = Report,
        ?assertMatch(#{pid := Server, attr := memory, initial_call := {?MODULE, init, 1}},
                     TopMemory),
        %% (Its memory moved a little since: the report measured its state.)
        ?assertEqual(maps:remove(value, hd(mem_probe:top_processes(memory, 1))),
                     maps:remove(value, TopMemory)),
        ?assert(maps:get(value, TopMemory) > 16000000),
        ?assertMatch(#{pid := Mailbox, attr := message_queue_len, value := 30000}, TopMailbox),
        ?assertEqual(mem_probe:top_processes(message_queue_len, 1), [TopMailbox]),
        %% Held by Holder and Other: each charged half, as binary_leaks/2.
        [HolderRow] = [R || #{pid := P} = R <- Leaks, P =:= Holder],
        [HolderAlone] = [R || #{pid := P} = R <- mem_probe:binary_leaks(20), P =:= Holder],
        ?assertEqual(HolderAlone, HolderRow),
        ?assertMatch(#{bytes := 20000000, raw_bytes := 40000000, holders := 2}, HolderRow),
        ?assertEqual(length(Leaks), min(3, length(mem_probe:binary_leaks(3)))),
        %% The monitors rule sees the top process by monitors (2000 do not
        %% reach its threshold: no finding, as with top_processes(monitors, 1)).
        ?assertEqual([], [F || #{kind := monitors} = F <- Findings]),
        ?assertMatch([#{pid := Monitoring, value := 2000}], mem_probe:top_processes(monitors, 1))
    after
        erlang:trace_pattern({mem_probe_scan, processes, 0}, false, [call_count]),
        kill([Mailbox, Monitoring, Holder, Other, Server | Targets])
    end.

%%--------------------------------------------------------------------
%% Bad arguments
%%--------------------------------------------------------------------

badarg_test() ->
    Message = fun mem_probe_badarg:message/1,
    ?assertEqual("top_processes/3: unknown attribute size; accepted: memory, "
                 "message_queue_len, reductions, total_heap_size, heap_size, "
                 "stack_size, binary_memory, monitors, monitored_by, links",
                 Message(fun() -> mem_probe:top_processes(size, 1) end)),
    ?assertEqual("top_processes/3: n must be a non-negative integer, got -1; "
                 "accepted: 0, 1, 2, ...",
                 Message(fun() -> mem_probe:top_processes(memory, -1) end)),
    ?assertMatch("top_processes/3: bad value -1 for option window" ++ _,
                 Message(fun() -> mem_probe:top_processes(memory, 1, [{window, -1}]) end)),
    ?assertMatch("count_processes/2: unknown grouping module; accepted: " ++ _,
                 Message(fun() -> mem_probe:count_processes(module, 3) end)),
    ?assertMatch("binary_leaks/2: n must be a non-negative integer, got a;" ++ _,
                 Message(fun() -> mem_probe:binary_leaks(a) end)),
    ?assertEqual("process_memory/1: expected a pid, got foo; accepted: a pid",
                 Message(fun() -> mem_probe:process_memory(foo) end)),
    ?assertMatch("state_size/2: expected a pid, got \"pid\"" ++ _,
                 Message(fun() -> mem_probe:state_size("pid") end)),
    %% The error is the OTP one (badarg with EEP 54 error information), the
    %% shell's first line names the function.
    ?assertError(badarg, mem_probe:top_processes(size, 1)),
    try mem_probe:top_processes(size, 1)
    catch error:badarg:Stacktrace ->
            Text = lists:flatten(erl_error:format_exception(error, badarg, Stacktrace)),
            ?assertMatch("exception error: top_processes/3\n" ++ _, Text),
            ?assertNotEqual(nomatch, string:find(Text, "*** unknown attribute size; accepted:"))
    end,
    %% Nothing is created from input.
    ?assertError(badarg, mem_probe:top_processes(<<"no_such_attribute_7d2e">>, 1)),
    ?assertError(badarg, binary_to_existing_atom(<<"no_such_attribute_7d2e">>, utf8)).
