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
                  %% The findings inputs are in report/1's shapes; every view
                  %% finds the long queue (outside the mailbox view only the
                  %% processes whose memory could hold one are asked).
                  [begin
                       #{findings_input := In} = frame(S, View),
                       Findings = mem_probe_report:findings(In),
                       ?assertEqual({View, [Queue]},
                                    {View, [P || #{kind := mailbox, subject := #{pid := P}}
                                                     <- Findings]})
                   end || View <- ?C:views()]
          end)
    after
        [P ! stop || P <- [Hog, Queue, Holder]],
        ets:delete(Table)
    end.

rates_need_two_frames_test() ->
    with_collector(
      fun(S) ->
              ?assertMatch(#{rows := [], interval_ms := undefined, rate_ms := undefined},
                           frame(S, reductions)),
              Busy = spawn(fun Loop() -> receive stop -> ok after 0 -> Loop() end end),
              timer:sleep(200),
              #{rows := Rows, rate_ms := Ms} = frame(S, reductions),
              Busy ! stop,
              ?assert(is_integer(Ms)),
              ?assert(lists:member(Busy, [P || #{pid := P} <- Rows])),
              %% The readings are kept while a rate view is shown: growth
              %% follows reductions at once; after another view the first
              %% rate frame has no rows again.
              ?assertMatch(#{rate_ms := G} when is_integer(G), frame(S, growth)),
              ?assertMatch(#{rate_ms := undefined}, frame(S, memory)),
              #{rows := [], interval_ms := Since, rate_ms := undefined} = frame(S, growth),
              ?assert(is_integer(Since))
      end).

%% Growth pairs each process with its own previous reading: the change of
%% a process told to grow is its memory after less its memory before, as
%% process_info/2 reports them (it is idle around both frames), processes
%% born and exited in between come and go, and a born one says so.
growth_pairs_readings_test() ->
    Grower = spawn(fun() -> grower([]) end),
    Dying = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 50)],
    with_collector(
      fun(S) ->
              {memory, Before} = erlang:process_info(Grower, memory),
              _ = frame(S, growth),
              [P ! stop || P <- Dying],
              Born = ready(fun() -> lists:seq(1, 100000) end),
              Grower ! {grow, 50000, self()},
              receive {Grower, grown} -> ok end,
              timer:sleep(50),
              {memory, After} = erlang:process_info(Grower, memory),
              {ok, #{rows := Rows}} = ?C:frame(S, #{view => growth, rows => 50}, 30000),
              {memory, After} = erlang:process_info(Grower, memory),
              [#{change := Change, born := false}] = [R || #{pid := P} = R <- Rows, P =:= Grower],
              ?assertEqual(After - Before, Change),
              [#{born := true}] = [R || #{pid := P} = R <- Rows, P =:= Born],
              ?assertEqual([], [R || #{pid := P} = R <- Rows, lists:member(P, Dying)]),
              Born ! stop
      end),
    Grower ! stop.

%% Reductions per interval are exact for the rows shown: workers planted
%% among idle processes (so that the light loop's chunks of eight, both
%% their quick way and their offers, and its tail all run), each told to
%% run a different amount of work between two frames and read while it
%% waits, head the view in that order with exactly the reductions they
%% ran, as process_info/2 counts them; one born in between shows all its
%% reductions and says it was born; one that worked and exited is not
%% shown; and the processes read are all of them.
reductions_per_interval_test() ->
    Idle = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 3000)],
    Worker = fun() ->
                     spawn(fun Loop() ->
                                   receive
                                       {work, N, From} -> spin(N), From ! {self(), done}, Loop();
                                       stop -> ok
                                   end
                           end)
             end,
    Work = fun(P, N) -> P ! {work, N, self()}, receive {P, done} -> waiting(P) end end,
    Reds = fun(P) -> {reductions, R} = erlang:process_info(P, reductions), R end,
    %% Spread over the process list, between runs of 0 to 8 idle ones.
    Spread = [{Worker(), [spawn(fun() -> receive stop -> ok end end)
                          || _ <- lists:seq(1, I rem 9)]}
              || I <- lists:seq(1, 12)],
    {Workers, Fillers} = lists:unzip(Spread),
    Busy = Workers ++ lists:append(Fillers),
    Dying = Worker(),
    {ok, S} = ?C:start(self(), #{findings_every => 3600000}),
    try
        %% The first frame is a full one: it asks for memory too, a
        %% signal each process handles, which counts a reduction of its own.
        _ = frame(S, reductions),
        [waiting(P) || P <- Workers],
        #{cost := #{read := [reductions]}} = frame(S, reductions),
        Before = [{P, Reds(P)} || P <- Workers],
        %% Amounts not in the order of the process list.
        {_, Ws} = lists:unzip(lists:sort([{erlang:phash2(P), P} || P <- Workers])),
        Amounts = lists:zip(Ws, [100000 + 20000 * I || I <- lists:seq(1, length(Ws))]),
        [Work(P, N) || {P, N} <- Amounts],
        Work(Dying, 2000000),
        Dying ! stop,
        wait_dead(Dying),
        Born = Worker(),
        Work(Born, 3000000),
        Expected = [{P, Reds(P) - R0} || {P, R0} <- Before],
        BornReds = Reds(Born),
        {ok, #{rows := Rows, cost := #{read := [reductions], processes_scanned := Scanned}}} =
            ?C:frame(S, #{view => reductions, rows => 20}, 30000),
        Shown = [{P, V, B} || #{pid := P, value := V, born := B} <- Rows],
        Ranked = lists:reverse(lists:sort([{V, P} || {P, V} <- Expected])),
        ?assertEqual([{Born, BornReds, true} | [{P, V, false} || {V, P} <- Ranked]],
                     lists:sublist(Shown, 1 + length(Workers))),
        ?assertNot(lists:keymember(Dying, 1, Shown)),
        %% Every process but the collector, less any that exited meanwhile.
        ?assert(Scanned > length(Idle) + length(Busy)),
        ?assert(Scanned < erlang:system_info(process_count)),
        Born ! stop
    after
        ?C:stop(S, 5000),
        [P ! stop || P <- Idle ++ Busy]
    end.

%% The same for growth (memory, read in two workers): growers spread among
%% idle processes, each told to hold a different amount more between two
%% frames, head the view with exactly their change in memory; the
%% findings' largest two by memory, which the same loop ranks, are the two
%% planted hogs.
growth_per_interval_test() ->
    Idle = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 9000)],
    Hogs = [ready(fun() -> lists:seq(1, N) end) || N <- [3000000, 2000000]],
    Mem = fun(P) -> {memory, M} = erlang:process_info(P, memory), M end,
    Spread = [{spawn(fun() -> grower([]) end), [spawn(fun() -> receive stop -> ok end end)
                                              || _ <- lists:seq(1, I rem 9)]}
              || I <- lists:seq(1, 12)],
    {Growers, Fillers} = lists:unzip(Spread),
    {ok, S} = ?C:start(self(), #{findings_every => 3600000}),
    try
        _ = frame(S, growth),
        [waiting(P) || P <- Growers],
        Before = [{P, Mem(P)} || P <- Growers],
        {_, Gs} = lists:unzip(lists:sort([{erlang:phash2(P), P} || P <- Growers])),
        [begin P ! {grow, 20000 * I, self()}, receive {P, grown} -> waiting(P) end end
         || {I, P} <- lists:zip(lists:seq(1, length(Gs)), Gs)],
        Expected = lists:reverse(lists:sort([{Mem(P) - M0, P} || {P, M0} <- Before])),
        {ok, #{rows := Rows, cost := #{read := [memory]},
               findings_input := #{by_memory := ByMemory}}} =
            ?C:frame(S, #{view => growth, rows => 20}, 30000),
        ?assertEqual([{P, C, false} || {C, P} <- Expected],
                     lists:sublist([{P, C, B} || #{pid := P, change := C, born := B} <- Rows],
                                   length(Growers))),
        ?assertEqual(Hogs, [P || #{pid := P} <- ByMemory])
    after
        ?C:stop(S, 5000),
        [P ! stop || P <- Idle ++ Hogs ++ Growers ++ lists:append(Fillers)]
    end.

%% The light loops of the rate views, eight processes at a time with a
%% quick way for a chunk none of whose eight can enter a top, rank exactly
%% as offering every process would: idle processes (their readings stay
%% put) with previous readings made up to give each a chosen change, most
%% of them too small to count and a larger one in each position of a
%% chunk and in the tail, every list rotated so that each special process
%% takes every position; the collector itself and an exited process are
%% neither ranked nor counted. Growth also ranks memory (the top two of
%% four large processes, each alone in its chunk, smallest or largest
%% first) and lists the processes with memory enough for a long queue.
light_loops_rank_exactly_test() ->
    Idle = fun(N) ->
                   spawn(fun() -> L = lists:seq(1, N), spin(10000), receive stop -> L end end)
           end,
    Small = [Idle(0) || _ <- lists:seq(1, 135)],
    Large = [Idle(N) || N <- [10000, 50000, 150000, 400000]],
    Self = Idle(0),
    Dead = spawn(fun() -> ok end),
    wait_dead(Dead),
    %% The large ones 11 apart.
    {S1, More1} = lists:split(11, Small),
    {S2, More2} = lists:split(10, More1),
    {S3, S4} = lists:split(10, More2),
    Layout = fun([L1, L2, L3, L4]) -> [Self, Dead, L1 | S1] ++ [L2 | S2] ++ [L3 | S3] ++ [L4 | S4]
             end,
    Pids = Layout(Large),
    [waiting(P) || P <- Pids -- [Dead]],
    Reading = fun(P, reductions) -> {_, R} = erlang:process_info(P, reductions), R + 1;
                 (P, growth) -> {_, M} = erlang:process_info(P, memory), M
              end,
    %% Changes: 20 to 35 for the first 16 (they fill a top of 9), 1 to 10
    %% after, and 1000 + I for nine, the top: eight placed 17 apart (each
    %% in the next position of a chunk, every other chunk) and the last of
    %% the 141 processes (in the tail, after 17 chunks).
    Special = [16 + 17 * I || I <- lists:seq(0, 7)] ++ [140],
    Change = fun(I) when I < 16 -> 20 + I;
                (I) -> case lists:member(I, Special) of
                           true -> 1000 + I;
                           false -> 1 + I rem 10
                       end
             end,
    try
        [begin
             {Front, Back} = lists:split(Rot, Layout(Order(Large))),
             List = Back ++ Front,
             Indexed = lists:zip(lists:seq(0, length(List) - 1), List),
             Live = [P || P <- List, P =/= Self, P =/= Dead],
             Now = [{P, Reading(P, View)} || P <- Live],
             Prev = << <<(case lists:keyfind(P, 1, Now) of
                              {_, R} -> R - Change(I);
                              false -> 7
                          end):64>>
                      || {I, P} <- Indexed >>,
             Changes = [{Change(I), P} || {I, P} <- Indexed, lists:member(P, Live)],
             {Out, Top, MemTop, Queues, Scanned} =
                 ?C:light_ranked(View, Prev, List, Self, 9, QB),
             Ranked = lists:sublist(lists:reverse(lists:sort(Changes)), 9),
             ?assertEqual({View, Rot, [{C, P, []} || {C, P} <- Ranked]}, {View, Rot, Top}),
             ?assertEqual(<< <<(case lists:keyfind(P, 1, Now) of {_, R} -> R; false -> 0 end):64>>
                             || P <- List >>, Out),
             ?assertEqual(length(Live), Scanned),
             case View of
                 growth ->
                     ByMemory = lists:reverse(lists:sort([{M, P, []} || {P, M} <- Now])),
                     ?assertEqual(lists:sublist(ByMemory, 2), MemTop),
                     ?assertEqual(lists:sort([P || {P, M} <- Now, M >= QB]), lists:sort(Queues));
                 reductions ->
                     ok
             end
         end || {View, QB} <- [{reductions, 0}, {growth, 50000}, {growth, 1 bsl 40}],
                Order <- [fun(L) -> L end, fun lists:reverse/1], Rot <- lists:seq(0, 15)]
    after
        [P ! stop || P <- Pids]
    end.

%% A process that holds N more integers each time it is told
%% `{grow, N, From}', answers `{self(), grown}', and ends on `stop'.
grower(Held) ->
    receive
        {grow, N, From} ->
            More = [lists:seq(1, N) | Held],
            From ! {self(), grown},
            grower(More);
        stop ->
            Held
    end.

spin(0) -> ok;
spin(N) -> spin(N - 1).

%% Once `P' waits in a receive its reductions stay as they are.
waiting(P) ->
    case erlang:process_info(P, status) of
        {status, waiting} -> ok;
        _ -> timer:sleep(1), waiting(P)
    end.

%% The largest group of processes by initial call is counted exactly (the
%% candidates come from a sample, the count from the whole pass), and a
%% group of over a third of the processes is a finding.
process_group_test() ->
    Leak = [spawn(timer, sleep, [infinity]) || _ <- lists:seq(1, 3000)],
    try
        with_collector(
          fun(S) ->
                  #{findings_input := #{groups := Groups} = In} = frame(S, mailbox),
                  Exact = length([P || P <- erlang:processes(),
                                       erlang:process_info(P, initial_call) =:=
                                           {initial_call, {timer, sleep, 1}}]),
                  ?assertMatch(#{groups := [#{key := {timer, sleep, 1}}]}, Groups),
                  #{groups := [#{count := Count}]} = Groups,
                  ?assertEqual(Exact, Count),
                  ?assert(lists:any(fun(#{kind := K}) -> K =:= process_group end,
                                    mem_probe_report:findings(In)))
          end)
    after
        [exit(P, kill) || P <- Leak]
    end.

%% The previous readings follow each pid: in the process table's order,
%% with processes gone and born in between, and (should that order not
%% hold) in any order.
align_test() ->
    Live = fun() -> spawn(fun() -> receive stop -> ok end end) end,
    [A, B, C, D, X] = [Live() || _ <- lists:seq(1, 5)],
    Rec = fun(I) -> <<I:64, (I * 10):64>> end,
    Old = {[A, B, C, D], iolist_to_binary([Rec(I) || I <- [1, 2, 3, 4]])},
    B ! stop,
    wait_dead(B),
    Unread = <<0:64, 0:64>>,
    ?assertEqual(iolist_to_binary([Rec(1), Unread, Rec(3), Rec(4), Unread]),
                 ?C:align([A, X, C, D, Live()], Old)),
    ?assertEqual(iolist_to_binary([Rec(4), Rec(1), Rec(3)]), ?C:align([D, A, C], Old)),
    ?assertEqual(element(2, Old), ?C:align([A, B, C, D], Old)),
    [P ! stop || P <- [A, C, D, X]].

wait_dead(P) ->
    MRef = erlang:monitor(process, P),
    receive {'DOWN', MRef, process, P, _} -> ok end.

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

%% A frame reads the view's own item only; memory and initial calls for
%% the findings come in a full frame (the first, then whenever those inputs
%% are `findings_every' ms old), and a light frame says how old they are.
light_frames_test() ->
    {ok, S} = ?C:start(self(), #{findings_every => 3600000}),
    try
        Read = fun(F) -> maps:get(read, maps:get(cost, F)) end,
        First = frame(S, mailbox),
        ?assertEqual([message_queue_len, memory], Read(First) -- [initial_call]),
        ?assertEqual(0, maps:get(findings_age_ms, First)),
        timer:sleep(20),
        Light = frame(S, mailbox),
        ?assertEqual([message_queue_len], Read(Light)),
        ?assert(maps:get(findings_age_ms, Light) >= 20),
        ?assertEqual([reductions], Read(frame(S, reductions))),
        ?assertEqual([binary], Read(frame(S, binaries))),
        #{cost := #{read := [], processes_scanned := 0}} = frame(S, ets),
        #{cost := #{read := []}} = frame(S, allocators),
        %% The memory view ranks by memory: the memory ranks are new.
        ?assertEqual([memory], Read(frame(S, memory)))
    after
        ?C:stop(S, 5000)
    end,
    {ok, Full} = ?C:start(self(), #{findings_every => 0}),
    try
        [?assert(lists:member(memory, Read)) || _ <- [1, 2],
                                                #{cost := #{read := Read}} <- [frame(Full, mailbox)]],
        ?assertEqual(0, maps:get(findings_age_ms, frame(Full, ets)))
    after
        ?C:stop(Full, 5000)
    end.

%% Between full frames the earlier ranks are kept, but their processes are
%% asked again: a process that has exited is no longer named, a queue that
%% grew shows its length now.
kept_findings_asked_again_test() ->
    Hog = ready(fun() -> lists:seq(1, 3000000) end),
    Queue = spawn(fun() -> receive stop -> ok end end),
    [Queue ! {m, I} || I <- lists:seq(1, 20000)],
    {ok, S} = ?C:start(self(), #{findings_every => 3600000}),
    Kinds = fun(F) -> [{K, P} || #{kind := K, subject := #{pid := P}}
                                     <- mem_probe_report:findings(maps:get(findings_input, F))]
            end,
    try
        Full = frame(S, reductions),
        ?assert(lists:member({process_outlier, Hog}, Kinds(Full))),
        ?assert(lists:member({mailbox, Queue}, Kinds(Full))),
        exit(Hog, kill),
        wait_dead(Hog),
        [Queue ! {m, I} || I <- lists:seq(1, 5000)],
        Light = frame(S, reductions),
        ?assertEqual([reductions], maps:get(read, maps:get(cost, Light))),
        ?assertNot(lists:keymember(Hog, 2, Kinds(Light))),
        #{findings_input := #{by_mailbox := [#{pid := Queue, value := 25000}]}} = Light
    after
        ?C:stop(S, 5000),
        Queue ! stop
    end.

%% A reading not taken in a frame is carried over with its time: growth
%% after reductions frames compares with the memory read by the last frame
%% that read it, over the time since then.
readings_carried_over_test() ->
    Grow = fun Loop(Held) ->
                   receive
                       {grow, From} ->
                           More = [lists:seq(1, 50000) | Held],
                           From ! {self(), grown},
                           Loop(More);
                       stop -> Held
                   end
           end,
    Grower = spawn(fun() -> Grow([]) end),
    {ok, S} = ?C:start(self(), #{findings_every => 3600000}),
    try
        {memory, Before} = erlang:process_info(Grower, memory),
        #{cost := #{read := Read}} = frame(S, reductions),
        ?assert(lists:member(memory, Read)),
        timer:sleep(100),
        #{rate_ms := RedsMs, cost := #{read := [reductions]}} = frame(S, reductions),
        ?assert(RedsMs >= 100),
        Grower ! {grow, self()},
        receive {Grower, grown} -> ok end,
        timer:sleep(100),
        {memory, After} = erlang:process_info(Grower, memory),
        {ok, #{rows := Rows, rate_ms := GrowthMs}} =
            ?C:frame(S, #{view => growth, rows => 50}, 30000),
        ?assert(GrowthMs >= RedsMs + 100),
        [#{change := Change, born := false}] = [R || #{pid := P} = R <- Rows, P =:= Grower],
        ?assertEqual(After - Before, Change)
    after
        ?C:stop(S, 5000),
        Grower ! stop
    end.

%% With many processes the pass runs in workers, each on its chunk of the
%% process list and of the readings: the pairing still holds across the
%% chunks, with processes exiting and born in between, in light growth
%% frames and in full reductions frames (memory read for the findings).
readings_in_workers_test() ->
    Idle = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 12000)],
    Grow = fun Loop(Held) ->
                   receive
                       {grow, From} ->
                           More = [lists:seq(1, 50000) | Held],
                           From ! {self(), grown},
                           Loop(More);
                       stop -> Held
                   end
           end,
    Grower = spawn(fun() -> Grow([]) end),
    {ok, L} = ?C:start(self(), #{findings_every => 3600000}),
    {ok, S} = ?C:start(self(), #{findings_every => 0}),
    try
        _ = frame(L, memory),
        {memory, Before} = erlang:process_info(Grower, memory),
        #{cost := #{read := [memory]}} = frame(L, growth),
        {Gone, Kept} = lists:split(3000, Idle),
        [P ! stop || P <- Gone],
        [wait_dead(P) || P <- Gone],
        Born = ready(fun() -> lists:seq(1, 100000) end),
        Grower ! {grow, self()},
        receive {Grower, grown} -> ok end,
        {memory, After} = erlang:process_info(Grower, memory),
        {ok, #{rows := Rows, cost := #{processes_scanned := Scanned, read := [memory]}}} =
            ?C:frame(L, #{view => growth, rows => 50}, 30000),
        ?assert(Scanned > 9000),
        [#{change := Change, born := false}] = [R || #{pid := P} = R <- Rows, P =:= Grower],
        ?assertEqual(After - Before, Change),
        [#{born := true}] = [R || #{pid := P} = R <- Rows, P =:= Born],
        %% A full reductions frame (in workers: it reads memory) after
        %% growth: the reductions of a process told to work, paired.
        #{cost := #{read := Read}} = frame(S, reductions),
        ?assert(lists:member(memory, Read)),
        Worker = spawn(fun() -> receive go -> ok end,
                                _ = lists:sum(lists:seq(1, 100000)),
                                receive stop -> ok end
                       end),
        _ = frame(S, reductions),
        {reductions, W0} = erlang:process_info(Worker, reductions),
        Worker ! go,
        timer:sleep(50),
        {ok, #{rows := RRows}} = ?C:frame(S, #{view => reductions, rows => 50}, 30000),
        {reductions, W1} = erlang:process_info(Worker, reductions),
        [#{value := Reds, born := false}] = [R || #{pid := P} = R <- RRows, P =:= Worker],
        %% A full frame's read asks for memory: a signal the process
        %% handles, which counts a reduction of its own.
        ?assert(abs(W1 - W0 - Reds) =< 2),
        Worker ! stop,
        [P ! stop || P <- [Born | Kept]]
    after
        ?C:stop(L, 5000),
        ?C:stop(S, 5000),
        Grower ! stop
    end.
