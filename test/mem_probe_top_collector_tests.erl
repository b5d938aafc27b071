%%% EUnit tests of the live top's collector, on this node: the planted
%%% culprit heads each view, rates need a previous frame, failures are
%%% answers, and the collector goes when its owner goes.
-module(mem_probe_top_collector_tests).

-include_lib("eunit/include/eunit.hrl").

-define(C, mem_probe_top_collector).

with_collector(Fun) ->
    {ok, Server} = ?C:start(self(), #{}),
    try Fun(Server) after ?C:stop(Server, 5000) end.

frame(Server, View) ->
    {ok, Frame} = ?C:frame(Server, #{view => View, rows => 5}, 30000),
    Frame.

%% A process holding `Make()', once it holds it.
ready(Make) ->
    Parent = self(),
    Pid = spawn(fun() -> Held = Make(), Parent ! {self(), ready},
                         receive stop -> Held end end),
    receive {Pid, ready} -> Pid end.

top_pid(#{rows := [#{pid := Pid} | _]}) -> Pid;
top_pid(_) -> none.

planted_views_test() ->
    Hog = ready(fun() -> lists:seq(1, 3000000) end),
    Queue = spawn(fun() -> receive stop -> ok end end),
    [Queue ! {m, I} || I <- lists:seq(1, 20000)],
    Holder = ready(fun() -> binary:copy(<<"x">>, 5000000) end),
    Table = ets:new(collector_test_blobs, [public]),
    [ets:insert(Table, {I, binary:copy(<<"b">>, 10000)}) || I <- lists:seq(1, 300)],
    try
        with_collector(
          fun(S) ->
                  Memory = frame(S, memory),
                  ?assertEqual(Hog, top_pid(Memory)),
                  ?assert(length(maps:get(rows, Memory)) =< 5),
                  ?assertEqual(Queue, top_pid(frame(S, mailbox))),
                  #{rows := [#{pid := Holder, bytes := Bytes, heap_bytes := Heap} | _]} =
                      frame(S, binaries),
                  ?assert(Bytes >= 5000000),
                  ?assert(Heap < Bytes),
                  #{rows := [#{table := Table, off_heap_bytes := Off} | _]} = frame(S, ets),
                  ?assertEqual(300 * 10000, Off),
                  #{rows := [#{allocator := _, carriers_bytes := _} | _]} = frame(S, allocators),
                  %% The findings inputs are in report/1's shapes.
                  #{findings_input := In} = frame(S, memory),
                  Findings = mem_probe_report:findings(In),
                  ?assert(lists:any(fun(#{kind := K}) -> K =:= mailbox end, Findings))
          end)
    after
        [P ! stop || P <- [Hog, Queue, Holder]],
        ets:delete(Table)
    end.

rates_need_two_frames_test() ->
    with_collector(
      fun(S) ->
              ?assertMatch(#{rows := [], interval_ms := undefined}, frame(S, reductions)),
              Busy = spawn(fun Loop() -> receive stop -> ok after 0 -> Loop() end end),
              timer:sleep(200),
              #{rows := Rows, interval_ms := Ms} = frame(S, reductions),
              Busy ! stop,
              ?assert(is_integer(Ms)),
              ?assert(lists:member(Busy, [P || #{pid := P} <- Rows]))
      end).

failures_are_answers_test() ->
    with_collector(
      fun(S) ->
              ?assertMatch({error, _}, ?C:frame(S, #{view => cpu, rows => 5}, 5000)),
              ?assertMatch({ok, _}, ?C:frame(S, #{view => memory, rows => 5}, 5000)),
              Dead = spawn(fun() -> ok end),
              timer:sleep(50),
              ?assertEqual({error, noproc}, ?C:detail(S, Dead, 5000)),
              Plain = spawn(fun() -> receive stop -> ok end end),
              {ok, #{state_size := NotSys}} = ?C:detail(S, Plain, 5000),
              ?assertEqual({error, not_a_sys_process}, NotSys),
              Plain ! stop,
              {ok, Server} = gen_server:start(mem_probe_top_test_server, lists:seq(1, 1000), []),
              {ok, #{state_size := {ok, #{shared_words := Words}},
                     process_memory := #{memory := Memory}}} = ?C:detail(S, Server, 5000),
              gen_server:stop(Server),
              ?assertEqual(2000, Words),
              ?assert(is_integer(Memory))
      end).

goes_with_its_owner_test() ->
    Owner = spawn(fun() -> receive stop -> ok end end),
    {ok, Server} = ?C:start(Owner, #{}),
    MRef = erlang:monitor(process, Server),
    Owner ! stop,
    receive {'DOWN', MRef, process, Server, Reason} -> ?assertEqual(normal, Reason)
    after 5000 -> error(collector_stayed)
    end,
    ?assertEqual({module, ?C}, code:ensure_loaded(?C)).
