%%% @doc The frame computation of the live top (`mem_probe_top'), as one
%%% small module that runs on the node it measures.
%%%
%%% Why self-contained: `bin/mem_probe top NODE' attaches to a node that
%%% does not have MemProbe. The viewer loads this one module there as a
%%% binary (`code:load_binary/3', no file written), runs every frame in a
%%% collector process on the target and receives only the rows it shows;
%%% afterwards it purges the module. So this module calls nothing but
%%% erts, kernel and stdlib: not the NIF, not `mem_probe_scan' or
%%% `mem_probe_system' (their pieces it needs — a bounded top, the
%%% allocator sums — exist here in the small form a frame needs), and
%%% nothing that logs: a frame that fails answers `{error, Reason}', the
%%% collector never crashes, and on the target nothing goes through
%%% `logger'.
%%%
%%% What one frame costs on the target: one pass over the processes, with
%%% one `process_info/2' call per process (memory, message queue length,
%%% reductions and initial call; in the binaries view also the binary list
%%% and heap size), keeping only bounded tops; details for the winners only.
%%% The collector keeps the previous frame's memory and reductions per
%%% process (two integers a process) so that reductions per interval and
%%% growth in bytes/s need no second pass. ETS objects are walked only in
%%% the ETS view. The frame reports its own wall time, reductions and the
%%% collector's memory.
%%%
%%% The collector process watches its owner (the viewer); if the owner goes
%%% away (quit, Ctrl-C, the connection drops) it exits, and when it was
%%% loaded for the occasion (`unload' option) it deletes and purges this
%%% module first, so a viewer that vanished leaves nothing behind.
-module(mem_probe_top_collector).

-export([start/2, frame/3, detail/3, stop/2, views/0]).
%% The collector process's entry point (spawned by MFA, so no fun of this
%% module outlives it).
-export([init/3]).

-define(WALK_CAP, 100000).      % ETS objects walked per table and frame
-define(CHUNK, 500).            % objects per ets:select/3 chunk
-define(HEAP_BIN, 64).          % binaries up to this size live in a heap (or a table)
-define(STATE_TIMEOUT, 2000).
-define(MIN_CHUNK, 4096).       % processes worth a scan worker of their own

%% @doc The views a frame can compute.
-spec views() -> [atom()].
views() -> [memory, mailbox, reductions, binaries, growth, ets, allocators].

%%--------------------------------------------------------------------
%% Client side (runs wherever the viewer runs)
%%--------------------------------------------------------------------

%% @doc Starts a collector process on this node for `Owner' and returns its
%% pid. Options: `unload' (`true': delete and purge this module when the
%% owner goes away). Called on the target through `erpc'.
-spec start(pid(), map()) -> {ok, pid()}.
start(Owner, Opts) when is_pid(Owner), is_map(Opts) ->
    Ref = make_ref(),
    Pid = spawn(?MODULE, init, [Owner, Opts, {self(), Ref}]),
    MRef = erlang:monitor(process, Pid),
    receive
        {Ref, ready} -> erlang:demonitor(MRef, [flush]), {ok, Pid};
        {'DOWN', MRef, process, Pid, Reason} -> {error, Reason}
    end.

%% @doc One frame from collector `Server': `{ok, Frame}' or `{error, R}'.
%% `Spec' is `#{view, rows}' and, optionally, `table_binaries' (a fun
%% `(Table) -> {ok, Bytes} | error' that sizes a table's binaries better
%% than this module can; used by the local top, which has MemProbe's NIF).
-spec frame(pid(), map(), timeout()) -> {ok, map()} | {error, term()}.
frame(Server, Spec, Timeout) -> call(Server, {frame, Spec}, Timeout).

%% @doc One process's memory and state size, measured on its node by
%% collector `Server': `{ok, Map}' or `{error, R}'.
-spec detail(pid(), pid(), timeout()) -> {ok, map()} | {error, term()}.
detail(Server, Pid, Timeout) -> call(Server, {detail, Pid}, Timeout).

%% @doc Stops collector `Server' (without unloading: the caller purges).
-spec stop(pid(), timeout()) -> ok | {error, term()}.
stop(Server, Timeout) ->
    MRef = erlang:monitor(process, Server),
    Server ! {stop, self()},
    receive {'DOWN', MRef, process, Server, _} -> ok
    after Timeout -> erlang:demonitor(MRef, [flush]), {error, timeout}
    end.

%% A request whose answer comes to an alias: once the call has given up,
%% a late answer is dropped by the VM instead of reaching the caller.
call(Server, Request, Timeout) ->
    MRef = erlang:monitor(process, Server, [{alias, demonitor}]),
    Server ! {call, MRef, Request},
    receive
        {MRef, Reply} ->
            erlang:demonitor(MRef, [flush]),
            Reply;
        {'DOWN', MRef, process, Server, Reason} ->
            {error, {collector_down, Reason}}
    after Timeout ->
            erlang:demonitor(MRef, [flush]),
            receive {MRef, Reply} -> Reply after 0 -> {error, timeout} end
    end.

%%--------------------------------------------------------------------
%% The collector process (runs on the measured node)
%%--------------------------------------------------------------------

%% @private
-spec init(pid(), map(), {pid(), reference()}) -> ok.
init(Owner, Opts, {Starter, Ref}) ->
    OwnerRef = erlang:monitor(process, Owner),
    Starter ! {Ref, ready},
    loop(#{owner_ref => OwnerRef, unload => maps:get(unload, Opts, false),
           prev => undefined, prev_at => undefined, frames => 0}).

loop(#{owner_ref := OwnerRef} = S) ->
    receive
        {call, Alias, {frame, Spec}} ->
            {Reply, S1} = try frame_now(Spec, S)
                          catch Class:Reason -> {{error, {Class, Reason}}, S}
                          end,
            Alias ! {Alias, Reply},
            loop(S1);
        {call, Alias, {detail, Pid}} ->
            Reply = try detail_now(Pid)
                    catch Class:Reason -> {error, {Class, Reason}}
                    end,
            Alias ! {Alias, Reply},
            loop(S);
        {stop, _From} ->
            ok;
        {'DOWN', OwnerRef, process, _, _} ->
            unload(S);
        _Other ->
            loop(S)
    end.

%% The owner is gone: take this module off the node if it was brought here
%% for the occasion. The purge, in a process of its own, also ends this one
%% if it still runs the (now old) code.
unload(#{unload := true}) ->
    _ = try code:delete(?MODULE) catch _:_ -> false end,
    _ = spawn(code, purge, [?MODULE]),
    ok;
unload(_) ->
    ok.

%%--------------------------------------------------------------------
%% One frame
%%--------------------------------------------------------------------

frame_now(Spec, #{prev := Prev, prev_at := PrevAt, frames := Frames} = S) ->
    View = maps:get(view, Spec, memory),
    lists:member(View, views()) orelse error({unknown_view, View}),
    Rows = maps:get(rows, Spec, 20),
    T0 = erlang:monotonic_time(),
    {reductions, R0} = erlang:process_info(self(), reductions),
    Now = erlang:monotonic_time(millisecond),
    IntervalMs = case PrevAt of undefined -> undefined; _ -> max(1, Now - PrevAt) end,
    %% This frame's memory and reductions per process go to a fresh table
    %% (public: the scan workers write it); the previous frame's is read,
    %% then dropped, so processes that exited leave nothing behind.
    Next = ets:new(mem_probe_top_previous, [set, public, {write_concurrency, true}]),
    Scan = try scan(View, Rows, Prev, Next, IntervalMs)
           catch Class:Reason:Stack -> ets:delete(Next), erlang:raise(Class, Reason, Stack)
           end,
    Prev =:= undefined orelse ets:delete(Prev),
    Wordsize = erlang:system_info(wordsize),
    Tables = case View of
                 ets -> tables(Rows, true, maps:get(table_binaries, Spec, undefined), Wordsize);
                 _ -> tables(2, false, undefined, Wordsize)
             end,
    Allocators = allocators(),
    ViewRows = case View of
                   ets -> Tables;
                   allocators -> lists:sublist(Allocators, Rows);
                   _ -> maps:get(rows, Scan)
               end,
    Counts = counts(),
    %% What the frame allocated here (binary lists, rows) is garbage now;
    %% the memory shown is what the collector keeps between frames.
    true = erlang:garbage_collect(),
    {reductions, R1} = erlang:process_info(self(), reductions),
    {memory, CollectorMemory} = erlang:process_info(self(), memory),
    Ms = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond) / 1000,
    Frame = #{node => node(),
              frame => Frames + 1,
              view => View,
              interval_ms => IntervalMs,
              uptime_ms => element(1, erlang:statistics(wall_clock)),
              memory => erlang:memory(),
              counts => Counts,
              run_queue => erlang:statistics(run_queue),
              schedulers => erlang:system_info(schedulers_online),
              otp_release => erlang:system_info(otp_release),
              rows => ViewRows,
              findings_input =>
                  #{by_memory => maps:get(by_memory, Scan),
                    by_mailbox => maps:get(by_mailbox, Scan),
                    tables => lists:sublist(Tables, 2),
                    leaks => case View of binaries -> ViewRows; _ -> [] end,
                    groups => maps:get(groups, Scan),
                    counts => Counts,
                    allocators => #{allocators => Allocators}},
              cost => #{ms => Ms, reductions => R1 - R0,
                        collector_bytes => CollectorMemory,
                        processes_scanned => maps:get(scanned, Scan)}},
    {{ok, Frame}, S#{prev := Next, prev_at := Now, frames := Frames + 1}}.

%%--------------------------------------------------------------------
%% The process pass
%%--------------------------------------------------------------------

scan(View, Rows, Prev, Next, IntervalMs) ->
    Items = [memory, message_queue_len, reductions, initial_call]
        ++ case View of binaries -> [binary, total_heap_size]; _ -> [] end,
    Self = self(),
    Pass = fun(Pids) ->
                   Acc0 = #{view => top_new(Rows), memory => top_new(2), mailbox => top_new(5),
                            groups => #{}, scanned => 0},
                   lists:foldl(
                     fun(P, A) when P =:= Self -> A;
                        (P, A) ->
                             case erlang:process_info(P, Items) of
                                 undefined -> A;
                                 Info -> one(P, Info, View, Prev, Next, IntervalMs, A)
                             end
                     end, Acc0, Pids)
           end,
    Parts = in_parallel(Pass, erlang:processes()),
    Merge = fun(Key, Cap) -> lists:foldl(fun({V, P, X}, T) -> top_offer(V, P, X, T) end,
                                         top_new(Cap),
                                         lists:append([top_list(maps:get(Key, A)) || A <- Parts]))
            end,
    Groups = lists:foldl(fun(#{groups := G}, Acc) ->
                                 maps:fold(fun(K, C, A) ->
                                                   maps:update_with(K, fun(C0) -> C0 + C end, C, A)
                                           end, Acc, G)
                         end, #{}, Parts),
    Scanned = lists:sum([N || #{scanned := N} <- Parts]),
    #{rows => view_rows(View, top_list(Merge(view, Rows)), IntervalMs),
      by_memory => [Row || {V, P, _} <- top_list(Merge(memory, 2)),
                           Row <- described(P, #{value => V, attr => memory})],
      by_mailbox => [Row || {V, P, _} <- top_list(Merge(mailbox, 5)), V > 10000,
                            Row <- described(P, #{value => V,
                                                  attr => message_queue_len})],
      groups => group_summary(Groups, Scanned),
      scanned => Scanned}.

%% `Pass' over contiguous chunks of `Pids', in workers when there are many:
%% a process_info/2 call waits for the other process to answer it, and with
%% a few requests in flight the schedulers answer them back to back (the
%% reason mem_probe_scan's scans use workers too). A worker that dies (it
%% cannot, short of being killed) leaves its chunk out of this frame.
in_parallel(Pass, Pids) ->
    Len = length(Pids),
    Workers = max(1, min(2 * erlang:system_info(schedulers_online), Len div ?MIN_CHUNK)),
    case Workers of
        1 ->
            [Pass(Pids)];
        _ ->
            Tag = make_ref(),
            Self = self(),
            Started = [spawn_monitor(fun() -> Self ! {Tag, self(), Pass(Chunk)} end)
                       || Chunk <- chunks(Pids, (Len + Workers - 1) div Workers)],
            [R || {Pid, MRef} <- Started,
                  R <- receive
                           {Tag, Pid, Result} ->
                               erlang:demonitor(MRef, [flush]),
                               [Result];
                           {'DOWN', MRef, process, Pid, _} ->
                               []
                       end]
    end.

chunks([], _Size) -> [];
chunks(Pids, Size) when length(Pids) =< Size -> [Pids];
chunks(Pids, Size) ->
    {Chunk, Rest} = lists:split(Size, Pids),
    [Chunk | chunks(Rest, Size)].

one(P, [{memory, M}, {message_queue_len, Q}, {reductions, R}, {initial_call, IC} | More],
    View, Prev, Next, IntervalMs, A) ->
    #{view := VT, memory := MT, mailbox := QT, groups := G, scanned := N} = A,
    Before = case Prev of
                 undefined -> undefined;
                 _ -> case ets:lookup(Prev, P) of
                          [{_, M0, R0}] -> {M0, R0};
                          [] -> undefined
                      end
             end,
    ets:insert(Next, {P, M, R}),
    VT1 = case view_value(View, M, Q, R, Before, IntervalMs, More) of
              skip -> VT;
              {Value, Extra} -> top_offer(Value, P, Extra, VT)
          end,
    A#{view := VT1,
       memory := top_offer(M, P, [], MT),
       mailbox := case Q > 0 of true -> top_offer(Q, P, [], QT); false -> QT end,
       groups := maps:update_with(IC, fun(C) -> C + 1 end, 1, G),
       scanned := N + 1}.

%% The sort value of one process in `View' and what its row needs besides.
view_value(memory, M, _Q, _R, _Before, _Ms, _More) -> {M, []};
view_value(mailbox, _M, 0, _R, _Before, _Ms, _More) -> skip;
view_value(mailbox, _M, Q, _R, _Before, _Ms, _More) -> {Q, []};
view_value(reductions, _M, _Q, _R, _Before, undefined, _More) -> skip;
view_value(reductions, _M, _Q, R, undefined, _Ms, _More) -> {R, born};
view_value(reductions, _M, _Q, R, {_, R0}, _Ms, _More) -> {R - R0, []};
view_value(growth, _M, _Q, _R, _Before, undefined, _More) -> skip;
view_value(growth, M, _Q, _R, undefined, _Ms, _More) -> {M, born};
view_value(growth, M, _Q, _R, {M0, _}, _Ms, _More) when M > M0 -> {M - M0, []};
view_value(growth, _M, _Q, _R, _Before, _Ms, _More) -> skip;
view_value(binaries, _M, _Q, _R, _Before, _Ms,
           [{binary, Bins}, {total_heap_size, Words}]) ->
    {Share, Raw, Count} = binaries(Bins),
    case Count of
        0 -> skip;
        _ -> {round(Share), {Raw, Count, Words * erlang:system_info(wordsize)}}
    end;
view_value(_View, _M, _Q, _R, _Before, _Ms, _More) ->
    skip.

%% A process's distinct off-heap binaries (by address): its share of them
%% (each binary's size divided among its holders, so a binary shared by
%% 50 processes counts once across the node), their whole size, and how
%% many.
binaries(Bins) ->
    distinct(lists:keysort(1, Bins), none, 0.0, 0, 0).

distinct([], _Last, Share, Raw, N) -> {Share, Raw, N};
distinct([{Addr, _, _} | Rest], Addr, Share, Raw, N) -> distinct(Rest, Addr, Share, Raw, N);
distinct([{Addr, Size, Refc} | Rest], _, Share, Raw, N) ->
    distinct(Rest, Addr, Share + Size / max(Refc, 1), Raw + Size, N + 1).

view_rows(View, Winners, IntervalMs) ->
    [Row || {Value, P, Extra} <- Winners,
            Row <- described(P, row_values(View, Value, Extra, IntervalMs))].

row_values(binaries, Share, {Raw, Count, HeapBytes}, _Ms) ->
    #{value => Share, attr => binaries, bytes => Share, raw_bytes => Raw, binaries => Count,
      heap_bytes => HeapBytes};
row_values(growth, Change, Extra, Ms) ->
    #{value => Change, attr => growth, change => Change, rate => Change * 1000 / Ms,
      born => Extra =:= born};
row_values(reductions, Reds, Extra, Ms) ->
    #{value => Reds, attr => reductions, rate => Reds * 1000 / Ms, born => Extra =:= born};
row_values(View, Value, _Extra, _Ms) ->
    #{value => Value, attr => View}.

%% Registered name, initial call (proc_lib's '$initial_call' for OTP
%% behaviours) and current function of a winner; `[]' if it has exited.
%% The same rule as mem_probe_scan:details/2, written again here because
%% this module runs where mem_probe_scan is not loaded.
described(P, Row) ->
    case erlang:process_info(P, [registered_name, initial_call, current_function]) of
        [{registered_name, Name}, {initial_call, IC}, {current_function, CF}] ->
            [Row#{pid => P,
                  name => case Name of [] -> undefined; _ -> Name end,
                  initial_call => initial_call(P, IC),
                  current_function => CF}];
        undefined ->
            []
    end.

initial_call(P, {proc_lib, init_p, 5} = Raw) ->
    case erlang:process_info(P, dictionary) of
        {dictionary, Dict} ->
            case lists:keyfind('$initial_call', 1, Dict) of
                {_, {M, F, A} = MFA} when is_atom(M), is_atom(F), is_integer(A) -> MFA;
                _ -> Raw
            end;
        undefined ->
            Raw
    end;
initial_call(_P, Raw) ->
    Raw.

%% The largest group of processes by raw initial call, in the shape of
%% `mem_probe:count_processes/2'. proc_lib:init_p/5 is left out: it is the
%% raw initial call of every OTP behaviour process, and telling them apart
%% would copy every such process's dictionary.
group_summary(Groups, Scanned) ->
    Sorted = lists:reverse(lists:keysort(2, [{K, C} || {K, C} <- maps:to_list(Groups),
                                                       K =/= {proc_lib, init_p, 5}])),
    #{groups => [#{key => K, count => C} || {K, C} <- lists:sublist(Sorted, 1)],
      process_count => Scanned}.

%%--------------------------------------------------------------------
%% A bounded top: {Capacity, Count, gb_set of {Value, Pid, Extra}}
%%--------------------------------------------------------------------

top_new(Cap) -> {Cap, 0, gb_sets:empty()}.

top_offer(_V, _P, _X, {0, _, _} = Top) ->
    Top;
top_offer(V, P, X, {Cap, N, Set}) when N < Cap ->
    {Cap, N + 1, gb_sets:add({V, P, X}, Set)};
top_offer(V, P, X, {Cap, Cap, Set} = Top) ->
    case V > element(1, gb_sets:smallest(Set)) of
        true ->
            {_, Set1} = gb_sets:take_smallest(Set),
            {Cap, Cap, gb_sets:add({V, P, X}, Set1)};
        false ->
            Top
    end.

top_list({_, _, Set}) -> lists:reverse(gb_sets:to_list(Set)).

%%--------------------------------------------------------------------
%% ETS
%%--------------------------------------------------------------------

%% The `N' tables with the most memory, as rows in the shape of
%% `mem_probe:top_tables/2'. With `Walk', the objects of every readable
%% table are walked for the refc binaries they refer to (the table's
%% `ets:info/2' memory leaves them out) and tables rank by both.
tables(N, Walk, Sizer, Wordsize) ->
    Measured = [{rank(Mem * Wordsize, Off), T, Mem * Wordsize, Off, Extra}
                || T <- ets:all(),
                   ets_info(T, owner) =/= self(), % the collector's own
                   Mem <- [ets_info(T, memory)], is_integer(Mem),
                   {Off, Extra} <- [case Walk of
                                        true -> table_binaries(T, Sizer);
                                        false -> {undefined, #{}}
                                    end]],
    Top = lists:sublist(lists:reverse(lists:sort(Measured)), N),
    [maps:merge(Extra, #{table => T, name => ets_info(T, name), owner => Owner,
                         owner_name => registered_name(Owner),
                         memory_bytes => MemBytes, off_heap_bytes => Off,
                         value => rank(MemBytes, Off), attr => ets,
                         size => ets_info(T, size), protection => ets_info(T, protection)})
     || {_, T, MemBytes, Off, Extra} <- Top, Owner <- [ets_info(T, owner)]].

rank(MemBytes, undefined) -> MemBytes;
rank(MemBytes, Off) -> MemBytes + Off.

ets_info(T, Item) ->
    try ets:info(T, Item) catch error:badarg -> undefined end.

registered_name(Pid) when is_pid(Pid) ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} when is_atom(Name) -> Name;
        _ -> undefined
    end;
registered_name(_) ->
    undefined.

%% Off-heap binary bytes a table refers to: from `Sizer' when given (exact,
%% each binary once), else by walking up to ?WALK_CAP objects here, where
%% each reference counts (pure Erlang cannot see a binary's address, so a
%% binary stored twice counts twice); a larger table is extrapolated from
%% the objects walked and says `sampled'.
table_binaries(T, Sizer) when is_function(Sizer, 1) ->
    case Sizer(T) of
        {ok, Bytes} when is_integer(Bytes) -> {Bytes, #{binaries_counted => once}};
        _ -> {undefined, #{}}
    end;
table_binaries(T, _) ->
    case ets_info(T, protection) =:= private andalso ets_info(T, owner) =/= self() of
        true ->
            {undefined, #{}};
        false ->
            try walk_table(T) of
                {Bytes, Walked, Size} when Walked < Size, Walked > 0 ->
                    {round(Bytes * Size / Walked),
                     #{binaries_counted => per_reference, sampled => Walked}};
                {Bytes, _, _} ->
                    {Bytes, #{binaries_counted => per_reference}}
            catch error:badarg ->
                    {undefined, #{}}
            end
    end.

walk_table(T) ->
    Size = ets_info(T, size),
    walk_chunks(ets:select(T, [{'_', [], ['$_']}], ?CHUNK), 0, 0, Size).

walk_chunks('$end_of_table', Bytes, Walked, Size) ->
    {Bytes, Walked, Size};
walk_chunks({Objects, Cont}, Bytes, Walked, Size) ->
    Bytes1 = bin_bytes(Objects, Bytes),
    Walked1 = Walked + length(Objects),
    case Walked1 >= ?WALK_CAP of
        true -> {Bytes1, Walked1, Size};
        false -> walk_chunks(ets:select(Cont), Bytes1, Walked1, Size)
    end.

%% Bytes of the refc binaries a term refers to (whole: a slice keeps its
%% parent alive), with an explicit stack.
bin_bytes(Term, Acc) -> bin_bytes([Term], [], Acc).

bin_bytes([], [], Acc) -> Acc;
bin_bytes([], [Next | Stack], Acc) -> bin_bytes(Next, Stack, Acc);
bin_bytes([H | T], Stack, Acc) -> bin_term(H, [T | Stack], Acc);
bin_bytes(Other, Stack, Acc) -> bin_term(Other, Stack, Acc).

bin_term(B, Stack, Acc) when is_binary(B) ->
    Ref = binary:referenced_byte_size(B),
    bin_bytes([], Stack, case Ref > ?HEAP_BIN of true -> Acc + Ref; false -> Acc end);
bin_term(T, Stack, Acc) when is_tuple(T) -> bin_bytes(tuple_to_list(T), Stack, Acc);
bin_term(M, Stack, Acc) when is_map(M) -> bin_bytes(maps:to_list(M), Stack, Acc);
bin_term(L, Stack, Acc) when is_list(L) -> bin_bytes(L, Stack, Acc);
bin_term(_, Stack, Acc) -> bin_bytes([], Stack, Acc).

%%--------------------------------------------------------------------
%% Allocators and counts
%%--------------------------------------------------------------------

%% Per allocator type, from one `system_info({allocator, T})' reply each:
%% blocks and carriers (current values, summed over instances and over
%% mbcs, sbcs and mbcs_pool) and usage = blocks / carriers; largest
%% carriers first. The shape of `mem_probe:allocators/0''s `allocators'.
allocators() ->
    Types = try erlang:system_info(alloc_util_allocators) catch error:badarg -> [] end,
    Rows = [allocator_row(T, Info) || T <- Types, Info <- [allocator_info(T)], is_list(Info)],
    lists:sort(fun(#{carriers_bytes := A}, #{carriers_bytes := B}) -> A >= B end, Rows).

allocator_info(Type) ->
    try erlang:system_info({allocator, Type}) catch error:badarg -> false end.

allocator_row(Type, Instances) ->
    {Blocks, Carriers} =
        lists:foldl(fun({B, C}, {B0, C0}) -> {B0 + B, C0 + C} end, {0, 0},
                    [section(Props) || {instance, _, Sections} <- Instances,
                                       {Kind, Props} <- Sections,
                                       lists:member(Kind, [mbcs, sbcs, mbcs_pool])]),
    #{allocator => Type, blocks_bytes => Blocks, carriers_bytes => Carriers,
      value => Carriers, attr => allocators,
      usage => case Carriers of 0 -> undefined; _ -> Blocks / Carriers end}.

%% {BlockBytes, CarrierBytes} of one section; OTP 22+ lists blocks per type.
section(Props) ->
    lists:foldl(fun({blocks, PerType}, {B, C}) when is_list(PerType) ->
                        {B + lists:sum([current(size, P) || {_, P} <- PerType]), C};
                   ({blocks_size, S, _, _}, {B, C}) -> {B + S, C};
                   ({blocks_size, S}, {B, C}) -> {B + S, C};
                   ({carriers_size, S, _, _}, {B, C}) -> {B, C + S};
                   ({carriers_size, S}, {B, C}) -> {B, C + S};
                   (_, Acc) -> Acc
                end, {0, 0}, Props).

current(Key, Props) ->
    case lists:keyfind(Key, 1, Props) of
        T when is_tuple(T), tuple_size(T) >= 2, is_integer(element(2, T)) -> element(2, T);
        _ -> 0
    end.

%% Processes, ports and atoms against their limits, in the shape of the
%% report's `counts'.
counts() ->
    [#{what => What, count => C, limit => L, share => C / L}
     || {What, CountKey, LimitKey} <- [{processes, process_count, process_limit},
                                       {ports, port_count, port_limit},
                                       {atoms, atom_count, atom_limit}],
        C <- [erlang:system_info(CountKey)], L <- [erlang:system_info(LimitKey)]].

%%--------------------------------------------------------------------
%% Detail of one process
%%--------------------------------------------------------------------

detail_now(Pid) when is_pid(Pid), node(Pid) =:= node() ->
    Items = [memory, heap_size, total_heap_size, stack_size, message_queue_len,
             message_queue_data, reductions, binary, links, monitors, status],
    case erlang:process_info(Pid, Items) of
        undefined ->
            {error, noproc};
        Info ->
            W = erlang:system_info(wordsize),
            Get = fun(K) -> element(2, lists:keyfind(K, 1, Info)) end,
            {_Share, Raw, Count} = binaries(Get(binary)),
            Memory = #{memory => Get(memory),
                       heap => Get(total_heap_size) * W,
                       stack => Get(stack_size) * W,
                       message_queue_len => Get(message_queue_len),
                       message_queue_data => Get(message_queue_data),
                       off_heap_bytes => Raw, off_heap_binaries => Count,
                       links => length(Get(links)), monitors => length(Get(monitors)),
                       status => Get(status), reductions => Get(reductions)},
            {ok, #{pid => Pid, process_memory => Memory, state_size => state_size(Pid)}}
    end;
detail_now(_) ->
    {error, not_a_local_pid}.

%% A sys process's state size, measured inside it: `size_shared' words
%% (each shared subterm once; linear, so bounded by the heap; it counts
%% hashmap nodes twice). Only OTP behaviour processes are asked: a system
%% message sent to any other process would stay in its queue for ever.
state_size(Pid) ->
    case erlang:process_info(Pid, initial_call) of
        {initial_call, {proc_lib, init_p, _}} -> ask_state(Pid);
        {initial_call, _} -> {error, not_a_sys_process};
        undefined -> {error, noproc}
    end.

%% The state fun is built by erl_eval, not compiled here: a fun of this
%% module could wait in a stuck process's queue, and purging this module
%% would then kill that process.
ask_state(Pid) ->
    Ref = erlang:monitor(process, Pid, [{alias, explicit_unalias}]),
    {ok, Tokens, _} = erl_scan:string(
                        "fun(S) -> R ! {R, catch erts_debug:size_shared(S)}, S end."),
    {ok, [Expr]} = erl_parse:parse_exprs(Tokens),
    {value, StateFun, _} = erl_eval:expr(Expr, erl_eval:add_binding('R', Ref,
                                                                    erl_eval:new_bindings())),
    %% The reply of the sys call itself goes to a pid that is not alive.
    Sink = dead_pid(),
    Pid ! {system, {Sink, Ref}, {replace_state, StateFun}},
    Result = receive
                 {Ref, Words} when is_integer(Words) ->
                     {ok, #{shared_words => Words,
                            bytes => Words * erlang:system_info(wordsize)}};
                 {Ref, Other} -> {error, Other};
                 {'DOWN', Ref, process, Pid, _} -> {error, noproc}
             after ?STATE_TIMEOUT ->
                     {error, timeout}
             end,
    erlang:unalias(Ref),
    erlang:demonitor(Ref, [flush]),
    receive {Ref, _} -> ok after 0 -> ok end,
    Result.

dead_pid() ->
    {Pid, MRef} = spawn_monitor(erlang, is_process_alive, [self()]),
    receive {'DOWN', MRef, process, Pid, _} -> Pid end.
