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
%%% What one frame costs on the target: one pass over the processes with
%%% one `process_info/2' call per process for the view's own item only
%%% (see `scan/5'; in workers when the item is one the process must answer
%%% for, memory or the binary list), keeping only bounded tops; details for
%%% the shown rows only. The findings' inputs from the processes (the
%%% largest two by memory, long queues, a dominant initial call) need
%%% memory, which costs five times a queue length or a reduction count:
%%% they are gathered in a full frame, the first and then whenever they are
%%% ?FINDINGS_EVERY ms old (the `findings_every' option), and in between
%%% the frame reuses them, asking their processes again, and says how old
%%% they are. While a rate view is shown the collector keeps each
%%% process's previous memory and reductions (8 bytes a process each, in
%%% two binaries aligned with the process list; a frame writes the field
%%% it reads and carries the other), so that reductions per interval
%%% and growth in bytes/s need no second pass. ETS objects are walked only
%%% in the ETS view. The frame reports its own wall time, reductions, the
%%% collector's memory and what it read per process.
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

%% For the tests.
-export([align/2, light_ranked/6]).

-compile({inline, [answer/1, memory_top/3, queue_top/6, group/2, reading/2, memory/2]}).

-define(WALK_CAP, 100000).      % ETS objects walked per table and frame
-define(CHUNK, 500).            % objects per ets:select/3 chunk
-define(HEAP_BIN, 64).          % binaries up to this size live in a heap (or a table)
-define(STATE_TIMEOUT, 2000).
-define(MIN_CHUNK, 4096).       % processes worth a scan worker of their own
-define(MAX_WORKERS, 16).       % as mem_probe_scan
-define(GROUP_SAMPLE, 256).     % processes sampled for the candidate groups
-define(MSG_WORDS, 4).          % a queued message adds at least this to memory (11 measured)
-define(FINDINGS_EVERY, 10000). % ms: the findings' memory ranks are at most this old
-define(MAILBOX_FINDING, 10000). % report/1's mailbox rule looks above this
%% One reading of a process, in the rate views: memory, or reductions + 1.
-define(UNREAD, <<0:64>>).
-define(REC, 8).

%% @doc The views a frame can compute.
-spec views() -> [atom()].
views() -> [memory, mailbox, reductions, binaries, growth, ets, allocators].

%%--------------------------------------------------------------------
%% Client side (runs wherever the viewer runs)
%%--------------------------------------------------------------------

%% @doc Starts a collector process on this node for `Owner' and returns its
%% pid. Options: `unload' (`true': delete and purge this module when the
%% owner goes away), `findings_every' (ms after which a frame reads memory
%% for the findings again; default 10,000; 0: every frame). Called on the
%% target through `erpc'.
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
           every => maps:get(findings_every, Opts, ?FINDINGS_EVERY),
           prev => undefined, mem_at => undefined, reds_at => undefined,
           findings => undefined, last_at => undefined, frames => 0}).

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

frame_now(Spec, #{last_at := LastAt, frames := Frames, every := Every} = S) ->
    View = maps:get(view, Spec, memory),
    lists:member(View, views()) orelse error({unknown_view, View}),
    Rows = maps:get(rows, Spec, 20),
    T0 = erlang:monotonic_time(),
    {reductions, R0} = erlang:process_info(self(), reductions),
    Now = erlang:monotonic_time(millisecond),
    SinceLast = case LastAt of undefined -> undefined; _ -> max(1, Now - LastAt) end,
    %% The per-process readings the rates need are kept while a rate view
    %% is shown, not paid for in every other frame.
    Rate = lists:member(View, [reductions, growth]),
    {Prev, MemAt, RedsAt} = case {Rate, S} of
                                {true, #{prev := P, mem_at := M, reds_at := R}} -> {P, M, R};
                                _ -> {undefined, undefined, undefined}
                            end,
    RateMs = case {View, MemAt, RedsAt} of
                 {growth, At, _} when is_integer(At) -> max(1, Now - At);
                 {reductions, _, At} when is_integer(At) -> max(1, Now - At);
                 _ -> undefined
             end,
    %% Memory and initial calls for the findings in this frame, or what
    %% an earlier frame found (see scan/5).
    Cache = maps:get(findings, S),
    Full = due(Cache, Now, Every),
    {Scan, Next} = scan(View, Rows, Full, Prev, RateMs),
    Read = maps:get(read, Scan),
    Found = findings(View, Scan, Cache, Now),
    Age = Now - lists:min([At || {At, _} <- maps:values(Found)]),
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
    %% What the frame allocated here (rows, the pass's results) is garbage
    %% now; the memory shown is what the collector keeps between frames:
    %% its heap (the last process list, in a rate view) and the readings
    %% binary.
    true = erlang:garbage_collect(),
    {reductions, R1} = erlang:process_info(self(), reductions),
    {memory, CollectorMemory} = erlang:process_info(self(), memory),
    Ms = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond) / 1000,
    Frame = #{node => node(),
              frame => Frames + 1,
              view => View,
              interval_ms => SinceLast,
              rate_ms => RateMs,
              uptime_ms => element(1, erlang:statistics(wall_clock)),
              memory => erlang:memory(),
              counts => Counts,
              run_queue => erlang:statistics(run_queue),
              schedulers => erlang:system_info(schedulers_online),
              otp_release => erlang:system_info(otp_release),
              rows => ViewRows,
              findings_age_ms => Age,
              findings_input =>
                  #{by_memory => element(2, maps:get(by_memory, Found)),
                    by_mailbox => element(2, maps:get(by_mailbox, Found)),
                    tables => lists:sublist(Tables, 2),
                    leaks => case View of binaries -> ViewRows; _ -> [] end,
                    groups => element(2, maps:get(groups, Found)),
                    counts => Counts,
                    allocators => #{allocators => Allocators}},
              cost => #{ms => Ms, reductions => R1 - R0,
                        collector_bytes => CollectorMemory + case Next of
                                                                 {_, Ms1, Rs1} ->
                                                                     byte_size(Ms1)
                                                                         + byte_size(Rs1);
                                                                 undefined -> 0
                                                             end,
                        processes_scanned => maps:get(scanned, Scan),
                        read => Read}},
    ReadMemory = lists:member(memory, Read),
    {{ok, Frame},
     S#{prev := Next,
        %% A reading not taken in this frame is carried over from the
        %% previous one (its time with it), or there is none.
        mem_at := if Next =:= undefined -> undefined;
                     ReadMemory -> Now;
                     true -> MemAt
                  end,
        reds_at := if Next =:= undefined -> undefined;
                      View =:= reductions -> Now;
                      true -> RedsAt
                   end,
        findings := Found, last_at := Now, frames := Frames + 1}}.

%% Whether this frame reads memory and initial calls for the findings:
%% in the first frame, and when what an earlier frame found is `Every' ms
%% old.
due(undefined, _Now, _Every) -> true;
due(Cache, Now, Every) -> Now - lists:min([At || {At, _} <- maps:values(Cache)]) >= Every.

%% The findings inputs that come from the process pass, each as
%% `{FoundAt, Value}': what this frame found, else what an earlier frame
%% found, its processes asked again for their memory or queue length (so
%% that a finding never names a process that has exited, nor an old
%% number; only the ranking is as old as the frame that made it).
findings(_View, Scan, undefined, Now) ->
    maps:map(fun(_, V) -> {Now, V} end, maps:with([by_memory, by_mailbox, groups], Scan));
findings(_View, Scan, Cache, Now) ->
    maps:map(fun(Key, {At, Old}) ->
                     case Scan of
                         #{Key := New} -> {Now, New};
                         _ -> {At, again(Key, Old)}
                     end
             end, Cache).

again(by_memory, Rows) -> asked(memory, Rows);
again(by_mailbox, Rows) -> [R || #{value := Q} = R <- asked(message_queue_len, Rows),
                                 Q > ?MAILBOX_FINDING];
again(groups, Groups) -> Groups.

asked(Item, Rows) ->
    Again = [{V, R#{value := V}} || #{pid := P} = R <- Rows,
                                    {_, V} <- [erlang:process_info(P, Item)]],
    [R || {_, R} <- lists:reverse(lists:keysort(1, Again))].

%%--------------------------------------------------------------------
%% The process pass
%%--------------------------------------------------------------------

%% What the pass keeps between frames, for the rates: the process list it
%% read and, aligned with it, two binaries of one 8-byte record per
%% process: memory, and reductions + 1; zero for a reading not taken (no
%% process has zero memory). Binaries, so that they live off the
%% collector's heap (no garbage collection copies them) and go to the
%% workers and back by reference, not copied. A frame writes the field it
%% reads (the view's own, and memory in a full frame) and carries the other
%% over, aligned, with its time.

%% The item each view ranks processes by (`none': it ranks no processes).
item(memory) -> memory;
item(growth) -> memory;
item(mailbox) -> message_queue_len;
item(reductions) -> reductions;
item(binaries) -> binary;
item(_) -> none.

%% One pass over the processes, with one `process_info/2' call per
%% process, for the view's own item only (the
%% single-item form, as `top_processes' asks it): memory, message queue
%% length, reductions or the binary list; none at all in the ETS and
%% allocators views. `Full' (the first frame, then whenever what an earlier
%% frame found for the findings is ?FINDINGS_EVERY old) adds what the
%% findings need besides:
%% <ul>
%% <li>memory, for the largest two processes. The VM asks the process to
%%     answer for it (as for `binary'), where the queue length and the
%%     reductions are read from the process structure at a fifth of the
%%     cost: in the mailbox and reductions views, memory every frame
%%     would cost five of that view's scans;</li>
%% <li>queues over 10,000 messages: a queued message adds at least
%%     ?MSG_WORDS words to a process's memory (88 bytes, measured on OTP 25
%%     and 29, with the queue on or off the heap), so only the processes
%%     whose memory could hold such a queue are asked for their queue
%%     length, after the pass;</li>
%% <li>the largest group by initial call: counted (initial call added to
%%     the items) only when an even sample of the processes shows a
%%     candidate that could hold a third of them (`group_candidates/1').</li>
%% </ul>
%% The memory and growth views read memory anyway, and so have the first
%% two every frame; the mailbox view has the long queues every frame; and
%% every pass takes the sample, so that a node where no group stands out
%% knows it in every frame. The
%% row details (name, current function, the heap of a binaries row) are
%% read for the shown rows only. Returns the rows, what it found for the
%% findings (`by_memory', `by_mailbox', `groups', each only if found in
%% this pass), the items read and the count of processes read; and, in a
%% rate view, the readings for the next frame.
scan(View, _Rows, false, _Prev, _Ms) when View =:= ets; View =:= allocators ->
    {#{rows => [], read => [], scanned => 0}, undefined};
scan(View, Rows, Full, Prev, RateMs) ->
    Rate = lists:member(View, [reductions, growth]),
    Pids = erlang:processes(),
    Self = self(),
    Item = item(View),
    %% The candidates groups (an even sample: cheap) in every pass; counted
    %% in a full frame only. Without candidates the groups are known now.
    Candidates = group_candidates(Pids),
    Keys = case Full of
               true -> Candidates;
               false -> {none, none, none}
           end,
    Read = [I || I <- [Item], I =/= none]
        ++ [memory || Full, Item =/= memory]
        ++ [initial_call || Keys =/= {none, none, none}],
    ReadMemory = lists:member(memory, Read),
    Arg = case Read of [One] -> One; _ -> Read end,
    %% In the memory view its own top gives the largest two processes.
    ViewCap = case View of memory -> max(Rows, 2); _ when Item =:= none -> 0; _ -> Rows end,
    MemCap = case View =/= memory andalso ReadMemory of true -> 2; false -> 0 end,
    %% Memory below this cannot hold a queue over ?MAILBOX_FINDING.
    QueueBytes = ?MAILBOX_FINDING * ?MSG_WORDS * erlang:system_info(wordsize),
    %% The readings of both fields in the order of `Pids'; the pass walks
    %% the view's own (memory for growth, reductions for reductions).
    {Mems, Reds} = case Rate of
                       true -> readings(Pids, Prev);
                       false -> {none, none}
                   end,
    Before = case View of growth -> Mems; reductions -> Reds; _ -> none end,
    %% A full reductions frame reads memory too: it replaces the carried one.
    MemOut = case View =:= reductions andalso ReadMemory of true -> <<>>; false -> none end,
    Parts = in_parallel(
              fun(Chunk, PrevChunk) ->
                      VT = top_new(ViewCap),
                      MT = top_new(MemCap),
                      QT = case View of mailbox -> top_new(5); _ -> [] end,
                      case {Rate, Arg} of
                          %% A light frame: the view's item alone.
                          {true, Item} when is_atom(Item) ->
                              {Out, VT1, MT1, QT1, N} =
                                  light_rate(View, PrevChunk, Chunk, Self, RateMs, VT, MT, QT,
                                             QueueBytes),
                              {{Out, none}, VT1, MT1, QT1, {0, 0, 0}, N};
                          {false, Item} when is_atom(Item) ->
                              light(Chunk, Item, View, Self, VT, QT, QueueBytes, 0);
                          {true, _} ->
                              rates(PrevChunk, Chunk, <<>>, MemOut, Arg, View, Self, RateMs,
                                    VT, MT, QT, QueueBytes, Keys, 0, 0, 0, 0);
                          {false, _} ->
                              pass(Chunk, Arg, View, Self, VT, MT, QT, QueueBytes, Keys,
                                   0, 0, 0, 0)
                      end
              end, Pids, Before,
              %% Queue lengths, reductions and initial calls are read from
              %% the process structure, without the process's answer:
              %% workers would only add their copies of the lists.
              lists:member(memory, Read) orelse lists:member(binary, Read)),
    Next = case View of
               growth -> {Pids, joined(1, Parts), Reds};
               reductions when MemOut =:= none -> {Pids, Mems, joined(1, Parts)};
               reductions -> {Pids, joined(2, Parts), joined(1, Parts)};
               _ -> undefined
           end,
    Merge = fun(Pos, Cap) ->
                    lists:foldl(fun({V, P, X}, T) -> top_offer(V, P, X, T) end, top_new(Cap),
                                lists:append([top_list(element(Pos, Part)) || Part <- Parts]))
            end,
    Scanned = lists:sum([element(6, Part) || Part <- Parts]),
    Shown = view_rows(View, top_list(Merge(2, ViewCap)), RateMs),
    Found = maps:from_list(
              [{by_memory, case View of
                               memory -> lists:sublist(Shown, 2);
                               _ -> [Row || {V, P, _} <- top_list(Merge(3, 2)),
                                            Row <- described(P, #{value => V, attr => memory})]
                           end} || ReadMemory]
              ++ [{by_mailbox, by_mailbox(View, Parts, Merge)}
                  || ReadMemory orelse View =:= mailbox]
              ++ [{groups,
                   group_summary([{K, lists:sum([element(I, element(5, Part)) || Part <- Parts])}
                                  || {I, K} <- lists:zip([1, 2, 3], tuple_to_list(Keys)),
                                     K =/= none], Scanned)}
                  || Full orelse Candidates =:= {none, none, none}]),
    {Found#{rows => lists:sublist(Shown, Rows), read => Read, scanned => Scanned}, Next}.

%% The readings of the two fields, memory and reductions + 1 (8 bytes a
%% process each, zero for a reading not taken), in the order of `Pids'.
readings(Pids, undefined) ->
    Unread = binary:copy(?UNREAD, length(Pids)),
    {Unread, Unread};
readings(Pids, {Old, Mems, Reds}) ->
    [Mems1, Reds1] = align(Pids, Old, [Mems, Reds]),
    {Mems1, Reds1}.

%% A pass's readings of one field (1: the view's, 2: memory in a full
%% reductions frame), the parts joined in chunk order.
joined(I, Parts) ->
    iolist_to_binary([element(I, Readings) || {Readings, _, _, _, _, _} <- Parts]).

%% The previous frame's readings in the order of `Pids' (zeros for a
%% process born since): `{Old, Bin}', records of one size aligned with
%% `Old'. The process table lists processes in a stable order (by slot),
%% so the previous list and this one are walked side by side without a
%% lookup: a pid that does not match is born, or the expected one has
%% exited. Should the order ever not hold (an old process left over,
%% alive, at the end), the readings are paired by pid instead.
align(Pids, {Old, Bin}) ->
    [Aligned] = align(Pids, Old, [Bin]),
    Aligned.

align(Pids, Pids, Bins) ->
    Bins;
align(Pids, Old, Bins) ->
    Sizes = [byte_size(Bin) div max(1, length(Old)) || Bin <- Bins],
    case walk(Pids, Old, 0, 0, []) of
        {ok, Runs} ->
            [iolist_to_binary([case Run of
                                   {At, Len} -> binary_part(Bin, At * Size, Len * Size);
                                   unread -> <<0:(Size * 8)>>
                               end || Run <- lists:reverse(Runs)])
             || {Bin, Size} <- lists:zip(Bins, Sizes)];
        unordered ->
            by_pid(Pids, Old, Bins, Sizes)
    end.

%% Runs of matching pids become slices of the old readings (one copy at
%% the end), so a matched process costs a comparison. `At' is the old
%% position of the current run, `Run' its length; `unread' stands for a
%% process born since.
walk([P | Ps], [P | Os], At, Run, Acc) ->
    walk(Ps, Os, At, Run + 1, Acc);
walk([P | Ps], [O | Os], At, Run, Acc) ->
    Acc1 = run(At, Run, Acc),
    case erlang:is_process_alive(O) of
        false -> walk([P | Ps], Os, At + Run + 1, 0, Acc1);
        true -> walk(Ps, [O | Os], At + Run, 0, [unread | Acc1])
    end;
walk([_ | Ps], [], At, Run, Acc) ->
    walk(Ps, [], At + Run, 0, [unread | run(At, Run, Acc)]);
walk([], Os, At, Run, Acc) ->
    case lists:any(fun erlang:is_process_alive/1, Os) of
        false -> {ok, run(At, Run, Acc)};
        true -> unordered
    end.

run(_At, 0, Acc) -> Acc;
run(At, Run, Acc) -> [{At, Run} | Acc].

by_pid(Pids, Old, Bins, Sizes) ->
    Index = maps:from_list(lists:zip(Old, lists:seq(0, length(Old) - 1))),
    [<< <<(case Index of
               #{P := I} -> binary_part(Bin, I * Size, Size);
               _ -> <<0:(Size * 8)>>
           end)/binary>> || P <- Pids >>
     || {Bin, Size} <- lists:zip(Bins, Sizes)].

%% `Pass(Chunk, PrevChunk)' over contiguous chunks of `Pids' and of their
%% readings, in workers when there are many and `Parallel' (an item the
%% process must answer for is read), as top_processes does: a
%% process_info/2 call for memory waits for the other process to answer,
%% and with a few requests in flight the schedulers answer them back to
%% back. Otherwise in this process, in one chunk. Results in chunk order (the readings are concatenated). A worker
%% that dies (it cannot, short of being killed) leaves its chunk unread:
%% its readings become zeros.
in_parallel(Pass, Pids, Before, false = _Parallel) ->
    [Pass(Pids, Before)];
in_parallel(Pass, Pids, Before, true) ->
    Len = length(Pids),
    Max = min(?MAX_WORKERS, 2 * erlang:system_info(schedulers_online)),
    case max(1, min(Max, Len div ?MIN_CHUNK)) of
        1 ->
            [Pass(Pids, Before)];
        Workers ->
            Tag = make_ref(),
            Self = self(),
            Size = (Len + Workers - 1) div Workers,
            Started = [{spawn_monitor(fun() -> Self ! {Tag, self(), Pass(Chunk, Recs)} end),
                        length(Chunk)}
                       || {Chunk, Recs} <- chunks(Pids, Before, Size)],
            [receive
                 {Tag, Pid, Result} ->
                     erlang:demonitor(MRef, [flush]),
                     Result;
                 {'DOWN', MRef, process, Pid, _} ->
                     {case Before of
                          none -> none;
                          _ -> {binary:copy(?UNREAD, N), binary:copy(?UNREAD, N)}
                      end, top_new(0), top_new(0), [], {0, 0, 0}, 0}
             end || {{Pid, MRef}, N} <- Started]
    end.

chunks([], _Bin, _Size) -> [];
chunks(Pids, none, Size) ->
    {Chunk, Rest} = take(Pids, Size, []),
    [{Chunk, none} | chunks(Rest, none, Size)];
chunks(Pids, Bin, Size) ->
    {Chunk, Rest} = take(Pids, Size, []),
    N = length(Chunk),
    <<Recs:(N * ?REC)/binary, More/binary>> = Bin,
    [{Chunk, Recs} | chunks(Rest, More, Size)].

take(Rest, 0, Acc) -> {lists:reverse(Acc), Rest};
take([], _, Acc) -> {lists:reverse(Acc), []};
take([P | Ps], N, Acc) -> take(Ps, N - 1, [P | Acc]).

%% The hot loops: one process_info/2 call per process (`Arg': one item,
%% or a list in a full frame); the tops allocate nothing for a value that
%% does not enter them, and only the candidate groups are counted. The
%% mailbox top holds the queue lengths in the mailbox view, else the
%% memory of the processes that could hold a long queue. Each returns
%% {Readings, ViewTop, MemoryTop, MailboxTop, GroupCounts, Scanned}.
pass([P | Ps], Arg, View, Self, VT, MT, QT, QB, Keys, X1, X2, X3, N) when P =/= Self ->
    case erlang:process_info(P, Arg) of
        undefined ->
            pass(Ps, Arg, View, Self, VT, MT, QT, QB, Keys, X1, X2, X3, N);
        Info ->
            {V, M, IC} = answer(Info),
            VT1 = offer(View, P, V, 0, undefined, VT),
            MT1 = memory_top(M, P, MT),
            QT1 = queue_top(View, V, M, P, QT, QB),
            case group(IC, Keys) of
                0 -> pass(Ps, Arg, View, Self, VT1, MT1, QT1, QB, Keys, X1, X2, X3, N + 1);
                1 -> pass(Ps, Arg, View, Self, VT1, MT1, QT1, QB, Keys, X1 + 1, X2, X3, N + 1);
                2 -> pass(Ps, Arg, View, Self, VT1, MT1, QT1, QB, Keys, X1, X2 + 1, X3, N + 1);
                3 -> pass(Ps, Arg, View, Self, VT1, MT1, QT1, QB, Keys, X1, X2, X3 + 1, N + 1)
            end
    end;
pass([_Self | Ps], Arg, View, Self, VT, MT, QT, QB, Keys, X1, X2, X3, N) ->
    pass(Ps, Arg, View, Self, VT, MT, QT, QB, Keys, X1, X2, X3, N);
pass([], _Arg, _View, _Self, VT, MT, QT, _QB, _Keys, X1, X2, X3, N) ->
    {none, VT, MT, QT, {X1, X2, X3}, N}.

%% The same in a rate view, with the chunk's previous readings of the
%% view's field `Prev' (8 bytes a process, in its order: memory for growth,
%% reductions + 1 for reductions), this frame's collected in `Out' for the
%% next one, and in a full reductions frame the memory read in `MemOut'
%% (else `none'). Every clause starts by matching `Prev' and
%% every call passes its rest straight on, so the VM walks it in place.
rates(<<X0:64, Prev/binary>>, [P | Ps], Out, MemOut, Arg, View, Self, Ms, VT, MT, QT, QB,
      Keys, X1, X2, X3, N) when P =/= Self ->
    case erlang:process_info(P, Arg) of
        undefined ->
            rates(Prev, Ps, <<Out/binary, 0:64>>, unread(MemOut), Arg, View, Self, Ms, VT, MT,
                  QT, QB, Keys, X1, X2, X3, N);
        Info ->
            {V, M, IC} = answer(Info),
            VT1 = offer(View, P, V, X0, Ms, VT),
            %% Reductions + 1: a process that has not run has none.
            Out1 = case View of
                       reductions -> <<Out/binary, (V + 1):64>>;
                       growth -> <<Out/binary, V:64>>
                   end,
            MemOut1 = case MemOut of
                          none -> none;
                          _ -> <<MemOut/binary, M:64>>
                      end,
            MT1 = memory_top(M, P, MT),
            QT1 = queue_top(View, V, M, P, QT, QB),
            case group(IC, Keys) of
                0 -> rates(Prev, Ps, Out1, MemOut1, Arg, View, Self, Ms, VT1, MT1, QT1, QB,
                           Keys, X1, X2, X3, N + 1);
                1 -> rates(Prev, Ps, Out1, MemOut1, Arg, View, Self, Ms, VT1, MT1, QT1, QB,
                           Keys, X1 + 1, X2, X3, N + 1);
                2 -> rates(Prev, Ps, Out1, MemOut1, Arg, View, Self, Ms, VT1, MT1, QT1, QB,
                           Keys, X1, X2 + 1, X3, N + 1);
                3 -> rates(Prev, Ps, Out1, MemOut1, Arg, View, Self, Ms, VT1, MT1, QT1, QB,
                           Keys, X1, X2, X3 + 1, N + 1)
            end
    end;
rates(<<_:?REC/binary, Prev/binary>>, [_Self | Ps], Out, MemOut, Arg, View, Self, Ms, VT, MT,
      QT, QB, Keys, X1, X2, X3, N) ->
    rates(Prev, Ps, <<Out/binary, 0:64>>, unread(MemOut), Arg, View, Self, Ms, VT, MT, QT, QB,
          Keys, X1, X2, X3, N);
rates(<<>>, [], Out, MemOut, _Arg, _View, _Self, _Ms, VT, MT, QT, _QB, _Keys, X1, X2, X3, N) ->
    {{Out, MemOut}, VT, MT, QT, {X1, X2, X3}, N}.

unread(none) -> none;
unread(MemOut) -> <<MemOut/binary, 0:64>>.

%% The loops of a light frame, which reads the view's item alone (`Item',
%% one atom): the same as pass/13 and, for the rate views, rates/17, with
%% less to carry.
light([P | Ps], Item, View, Self, VT, QT, QB, N) when P =/= Self ->
    case erlang:process_info(P, Item) of
        {_, V} ->
            light(Ps, Item, View, Self, offer(View, P, V, 0, undefined, VT),
                  queue_top(View, V, case Item of memory -> V; _ -> none end, P, QT, QB),
                  QB, N + 1);
        undefined ->
            light(Ps, Item, View, Self, VT, QT, QB, N)
    end;
light([_Self | Ps], Item, View, Self, VT, QT, QB, N) ->
    light(Ps, Item, View, Self, VT, QT, QB, N);
light([], _Item, _View, _Self, VT, QT, _QB, N) ->
    {none, VT, top_new(0), QT, {0, 0, 0}, N}.

%% The loop of a rate view's light frame: `{Readings, ViewTop, MemoryTop,
%% MailboxTop, Scanned}' (the memory and mailbox tops as given in the
%% reductions view).
light_rate(reductions, Prev, Pids, Self, Ms, VT, MT, QT, _QB) ->
    {Out, VT1, Zeros} = light_rates(Prev, Pids, <<>>, Self, Ms, rate_min(Ms, VT), VT, 0),
    {Out, VT1, MT, QT, byte_size(Out) div ?REC - Zeros};
light_rate(growth, Prev, Pids, Self, Ms, VT, MT, QT, QB) ->
    {Out, VT1, MT1, QT1, Zeros} = light_growth(Prev, Pids, <<>>, Self, Ms, growth_min(Ms, VT),
                                               top_floor(MT), VT, MT, QT, QB, 0),
    {Out, VT1, MT1, QT1, byte_size(Out) div ?REC - Zeros}.

%% For the tests: light_rate/9 with tops of `Rows' (and, for growth, two by
%% memory), as lists, largest first.
light_ranked(View, Prev, Pids, Self, Rows, QB) ->
    {Out, VT, MT, QT, N} = light_rate(View, Prev, Pids, Self, 1000, top_new(Rows),
                                      top_new(case View of growth -> 2; _ -> 0 end), [], QB),
    {Out, top_list(VT), top_list(MT), QT, N}.

%% The reductions view's: eight processes at a time, so that a process
%% costs its `process_info/2' call and a few instructions. On OTP 25 the
%% append that writes a reading (a new sub-binary each time, and the
%% garbage collections it brings) was the dearest part of the loop, dearer
%% than matching the previous reading: one 64-byte append per eight
%% processes cut the loop from about 1.4 to about 1.05 times the plain
%% scan's (measured in a scratch microbench, 100,000 idle processes). A
%% chunk goes on without a call while each of its readings is a live one
%% (not the collector, not exited: `reading/2' answers 0 for those) whose
%% change since the previous reading cannot enter the top (at most `Min',
%% the top's smallest once it is full: `rate_min/2'); otherwise each of
%% its eight is offered (`rate_offer/4'), which ranks it exactly as the
%% one-at-a-time loop did. A tail of under eight goes one at a time.
%% Returns the readings (reductions + 1, 0 for none), the top and how many
%% readings were 0.
light_rates(<<A1:64, A2:64, A3:64, A4:64, A5:64, A6:64, A7:64, A8:64, Prev/binary>>,
            [P1, P2, P3, P4, P5, P6, P7, P8 | Ps], Out, Self, Ms, Min, VT, Zeros) ->
    R1 = reading(P1, Self), R2 = reading(P2, Self), R3 = reading(P3, Self),
    R4 = reading(P4, Self), R5 = reading(P5, Self), R6 = reading(P6, Self),
    R7 = reading(P7, Self), R8 = reading(P8, Self),
    Out1 = <<Out/binary, R1:64, R2:64, R3:64, R4:64, R5:64, R6:64, R7:64, R8:64>>,
    if
        R1 =/= 0, R2 =/= 0, R3 =/= 0, R4 =/= 0, R5 =/= 0, R6 =/= 0, R7 =/= 0, R8 =/= 0,
        R1 - A1 =< Min, R2 - A2 =< Min, R3 - A3 =< Min, R4 - A4 =< Min,
        R5 - A5 =< Min, R6 - A6 =< Min, R7 - A7 =< Min, R8 - A8 =< Min ->
            light_rates(Prev, Ps, Out1, Self, Ms, Min, VT, Zeros);
        true ->
            {VT1, Zeros1} = rate_offer([{R1, A1, P1}, {R2, A2, P2}, {R3, A3, P3}, {R4, A4, P4},
                                        {R5, A5, P5}, {R6, A6, P6}, {R7, A7, P7}, {R8, A8, P8}],
                                       Ms, VT, Zeros),
            light_rates(Prev, Ps, Out1, Self, Ms, rate_min(Ms, VT1), VT1, Zeros1)
    end;
light_rates(<<A:64, Prev/binary>>, [P | Ps], Out, Self, Ms, _Min, VT, Zeros) ->
    R = reading(P, Self),
    {VT1, Zeros1} = rate_offer([{R, A, P}], Ms, VT, Zeros),
    light_rates(Prev, Ps, <<Out/binary, R:64>>, Self, Ms, rate_min(Ms, VT1), VT1, Zeros1);
light_rates(<<>>, [], Out, _Self, _Ms, _Min, VT, Zeros) ->
    {Out, VT, Zeros}.

%% A process's reductions + 1; 0 for the collector itself (never ranked)
%% and for a process that has exited.
reading(Self, Self) ->
    0;
reading(P, _Self) ->
    case erlang:process_info(P, reductions) of
        {reductions, R} -> R + 1;
        undefined -> 0
    end.

%% `{Reading, Previous, Pid}' offered to the reductions top, as offer/6
%% ranks them; a 0 reading is counted instead.
rate_offer([], _Ms, VT, Zeros) ->
    {VT, Zeros};
rate_offer([{0, _, _} | More], Ms, VT, Zeros) ->
    rate_offer(More, Ms, VT, Zeros + 1);
rate_offer([{R, R0, P} | More], Ms, VT, Zeros) ->
    rate_offer(More, Ms, offer(reductions, P, R - 1, R0, Ms, VT), Zeros).

%% The largest change since the previous reading that cannot enter `VT':
%% its smallest once it is full; -1 (every live process can) until then;
%% `infinity' (an atom: above every number in term order) when it takes
%% none, or without previous readings (`Ms' undefined: offer/6 ranks
%% nothing).
rate_min(undefined, _VT) -> infinity;
rate_min(_Ms, VT) -> top_floor(VT).

%% The same for growth, where a change of zero or less is never offered.
growth_min(Ms, VT) -> max(0, rate_min(Ms, VT)).

%% The largest value `top_offer/4' turns away from `Top'.
top_floor({0, _, _, _}) -> infinity;
top_floor({Cap, Cap, Min, _}) -> Min;
top_floor(_Top) -> -1.

%% The growth view's: memory, whose top two and long-queue candidates the
%% findings take; eight processes at a time as light_rates/8, a chunk going
%% on without a call while each of its eight is live, cannot enter the
%% growth top (`Min') nor the memory top (`MemMin'), and has too little
%% memory to hold a long queue (under `QB').
light_growth(<<A1:64, A2:64, A3:64, A4:64, A5:64, A6:64, A7:64, A8:64, Prev/binary>>,
             [P1, P2, P3, P4, P5, P6, P7, P8 | Ps], Out, Self, Ms, Min, MemMin,
             VT, MT, QT, QB, Zeros) ->
    M1 = memory(P1, Self), M2 = memory(P2, Self), M3 = memory(P3, Self),
    M4 = memory(P4, Self), M5 = memory(P5, Self), M6 = memory(P6, Self),
    M7 = memory(P7, Self), M8 = memory(P8, Self),
    Out1 = <<Out/binary, M1:64, M2:64, M3:64, M4:64, M5:64, M6:64, M7:64, M8:64>>,
    if
        M1 =/= 0, M2 =/= 0, M3 =/= 0, M4 =/= 0, M5 =/= 0, M6 =/= 0, M7 =/= 0, M8 =/= 0,
        M1 - A1 =< Min, M2 - A2 =< Min, M3 - A3 =< Min, M4 - A4 =< Min,
        M5 - A5 =< Min, M6 - A6 =< Min, M7 - A7 =< Min, M8 - A8 =< Min,
        M1 =< MemMin, M2 =< MemMin, M3 =< MemMin, M4 =< MemMin,
        M5 =< MemMin, M6 =< MemMin, M7 =< MemMin, M8 =< MemMin,
        M1 < QB, M2 < QB, M3 < QB, M4 < QB, M5 < QB, M6 < QB, M7 < QB, M8 < QB ->
            light_growth(Prev, Ps, Out1, Self, Ms, Min, MemMin, VT, MT, QT, QB, Zeros);
        true ->
            {VT1, MT1, QT1, Zeros1} =
                growth_offer([{M1, A1, P1}, {M2, A2, P2}, {M3, A3, P3}, {M4, A4, P4},
                              {M5, A5, P5}, {M6, A6, P6}, {M7, A7, P7}, {M8, A8, P8}],
                             Ms, VT, MT, QT, QB, Zeros),
            light_growth(Prev, Ps, Out1, Self, Ms, growth_min(Ms, VT1), top_floor(MT1),
                         VT1, MT1, QT1, QB, Zeros1)
    end;
light_growth(<<A:64, Prev/binary>>, [P | Ps], Out, Self, Ms, _Min, _MemMin,
             VT, MT, QT, QB, Zeros) ->
    M = memory(P, Self),
    {VT1, MT1, QT1, Zeros1} = growth_offer([{M, A, P}], Ms, VT, MT, QT, QB, Zeros),
    light_growth(Prev, Ps, <<Out/binary, M:64>>, Self, Ms, growth_min(Ms, VT1),
                 top_floor(MT1), VT1, MT1, QT1, QB, Zeros1);
light_growth(<<>>, [], Out, _Self, _Ms, _Min, _MemMin, VT, MT, QT, _QB, Zeros) ->
    {Out, VT, MT, QT, Zeros}.

%% A process's memory; 0 for the collector itself and for a process that
%% has exited (no live process has none).
memory(Self, Self) ->
    0;
memory(P, _Self) ->
    case erlang:process_info(P, memory) of
        {memory, M} -> M;
        undefined -> 0
    end.

%% `{Memory, Previous, Pid}' offered to the growth, memory and long-queue
%% tops, as rates/17 offers them; a 0 reading is counted instead.
growth_offer([], _Ms, VT, MT, QT, _QB, Zeros) ->
    {VT, MT, QT, Zeros};
growth_offer([{0, _, _} | More], Ms, VT, MT, QT, QB, Zeros) ->
    growth_offer(More, Ms, VT, MT, QT, QB, Zeros + 1);
growth_offer([{M, M0, P} | More], Ms, VT, MT, QT, QB, Zeros) ->
    growth_offer(More, Ms, offer(growth, P, M, M0, Ms, VT), top_offer(M, P, [], MT),
                 queue_top(growth, M, M, P, QT, QB), QB, Zeros).

%% One process's answer as {the view's item, memory, initial call}
%% (`none' for an item not asked; in the memory, growth, ETS and
%% allocators views the item is memory).
answer({memory, M}) -> {M, M, none};
answer({_, V}) -> {V, none, none};
answer([{memory, M}, {initial_call, IC}]) -> {M, M, IC};
answer([{_, V}, {memory, M}]) -> {V, M, none};
answer([{_, V}, {memory, M}, {initial_call, IC}]) -> {V, M, IC}.

memory_top(none, _P, MT) -> MT;
memory_top(M, P, MT) -> top_offer(M, P, [], MT).

queue_top(mailbox, V, _M, P, QT, _QB) when V > ?MAILBOX_FINDING -> top_offer(V, P, [], QT);
queue_top(mailbox, _V, _M, _P, QT, _QB) -> QT;
queue_top(_View, _V, none, _P, QT, _QB) -> QT;
queue_top(_View, _V, M, P, QT, QB) when M >= QB -> [P | QT];
queue_top(_View, _V, _M, _P, QT, _QB) -> QT.

%% Which candidate group an initial call counts in (0: none).
group(none, _Keys) -> 0;
group(IC, {IC, _, _}) -> 1;
group(IC, {_, IC, _}) -> 2;
group(IC, {_, _, IC}) -> 3;
group(_IC, _Keys) -> 0.

%% The queues over ?MAILBOX_FINDING, longest first: in the mailbox view
%% the pass has them; elsewhere the processes whose memory could hold one
%% are asked for their queue length.
by_mailbox(mailbox, _Parts, Merge) ->
    described_queues(top_list(Merge(4, 5)));
by_mailbox(_View, Parts, _Merge) ->
    Long = [{Q, P, []} || Part <- Parts, P <- element(4, Part),
                          {message_queue_len, Q} <- [erlang:process_info(P, message_queue_len)],
                          Q > ?MAILBOX_FINDING],
    described_queues(lists:sublist(lists:reverse(lists:sort(Long)), 5)).

described_queues(Long) ->
    [Row || {V, P, _} <- Long, Row <- described(P, #{value => V, attr => message_queue_len})].

%% Offers one process to the view's top: its sort value in `View' and
%% what its row needs besides. `V' is the view's own item, `X0' the
%% previous reading of it in a rate view (zero: not read then, the process
%% was born since; `Ms' undefined: no previous readings at all).
offer(memory, P, M, _X0, _Ms, VT) -> top_offer(M, P, [], VT);
offer(mailbox, _P, 0, _X0, _Ms, VT) -> VT;
offer(mailbox, P, Q, _X0, _Ms, VT) -> top_offer(Q, P, [], VT);
offer(Rate, _P, _V, _X0, undefined, VT) when Rate =:= reductions; Rate =:= growth ->
    VT;
offer(reductions, P, R, 0, _Ms, VT) -> top_offer(R, P, born, VT);
offer(reductions, P, R, R0, _Ms, VT) -> top_offer(R + 1 - R0, P, [], VT);
offer(growth, P, M, 0, _Ms, VT) -> top_offer(M, P, born, VT);
offer(growth, P, M, M0, _Ms, VT) when M > M0 -> top_offer(M - M0, P, [], VT);
offer(growth, _P, _M, _M0, _Ms, VT) -> VT;
offer(binaries, _P, [], _X0, _Ms, VT) -> VT;
offer(binaries, P, Bins, _X0, _Ms, VT) ->
    %% The sizes summed, each reference, bound the share from above: a
    %% process that cannot enter the top is not sorted.
    case top_accepts(upper(Bins, 0), VT) of
        true ->
            {Share, Raw, Count} = binaries(Bins),
            top_offer(round(Share), P, {Raw, Count}, VT);
        false ->
            VT
    end;
offer(_View, _P, _V, _X0, _Ms, VT) ->
    VT.

upper([], Sum) -> Sum;
upper([{_, Size, _} | Bins], Sum) -> upper(Bins, Sum + Size).

%% A process's distinct off-heap binaries (by address): its share of them
%% (each binary's size divided among its holders, so a binary shared by
%% 50 processes counts once across the node), their whole size, and how
%% many.
binaries([{_, Size, Refc}]) ->
    {Size / max(Refc, 1), Size, 1};
binaries(Bins) ->
    distinct(lists:keysort(1, Bins), none, 0.0, 0, 0).

distinct([], _Last, Share, Raw, N) -> {Share, Raw, N};
distinct([{Addr, _, _} | Rest], Addr, Share, Raw, N) -> distinct(Rest, Addr, Share, Raw, N);
distinct([{Addr, Size, Refc} | Rest], _, Share, Raw, N) ->
    distinct(Rest, Addr, Share + Size / max(Refc, 1), Raw + Size, N + 1).

view_rows(View, Winners, IntervalMs) ->
    [Row || {Value, P, Extra} <- Winners,
            Row <- described(P, row_values(View, P, Value, Extra, IntervalMs))].

row_values(binaries, P, Share, {Raw, Count}, _Ms) ->
    #{value => Share, attr => binaries, bytes => Share, raw_bytes => Raw, binaries => Count,
      heap_bytes => case erlang:process_info(P, total_heap_size) of
                        {total_heap_size, Words} -> Words * erlang:system_info(wordsize);
                        undefined -> undefined
                    end};
row_values(growth, _P, Change, Extra, Ms) ->
    #{value => Change, attr => growth, change => Change, rate => Change * 1000 / Ms,
      born => Extra =:= born};
row_values(reductions, _P, Reds, Extra, Ms) ->
    #{value => Reds, attr => reductions, rate => Reds * 1000 / Ms, born => Extra =:= born};
row_values(View, _P, Value, _Extra, _Ms) ->
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

%% The initial calls worth counting: those that hold at least a quarter
%% of an even sample of ?GROUP_SAMPLE processes (at most three), on a node
%% of over 1,000 processes. The rule the findings apply (one initial call
%% for over 1,000 processes and over a third of them all) is about a group
%% that holds about a third of an even sample; one that showed under a
%% quarter would be a sampling error of over three standard deviations.
%% The pass then counts these exactly, and nothing at all (not even the
%% initial call) on a node where no group stands out. proc_lib:init_p/5 is
%% left out: it is the raw initial call of every OTP behaviour process,
%% and telling them apart would copy every such process's dictionary.
group_candidates(Pids) when length(Pids) =< 1000 ->
    {none, none, none};
group_candidates(Pids) ->
    Step = max(1, length(Pids) div ?GROUP_SAMPLE),
    Sample = every(Pids, Step),
    Sampled = lists:foldl(
                fun(P, Acc) ->
                        case erlang:process_info(P, initial_call) of
                            {initial_call, {proc_lib, init_p, 5}} -> Acc;
                            {initial_call, IC} -> maps:update_with(IC, fun(C) -> C + 1 end, 1, Acc);
                            undefined -> Acc
                        end
                end, #{}, Sample),
    Quarter = length(Sample) / 4,
    Top = lists:sublist(lists:reverse(lists:keysort(2, [{K, C} || {K, C} <- maps:to_list(Sampled),
                                                                  C >= Quarter])), 3),
    list_to_tuple([K || {K, _} <- Top] ++ lists:duplicate(3 - length(Top), none)).

every([], _Step) -> [];
every([P | _] = Pids, Step) -> [P | every(drop(Pids, Step), Step)].

drop([], _) -> [];
drop(L, 0) -> L;
drop([_ | T], N) -> drop(T, N - 1).

%% The largest counted group, in the shape of `mem_probe:count_processes/2'.
group_summary(Groups, Scanned) ->
    Sorted = lists:reverse(lists:keysort(2, Groups)),
    #{groups => [#{key => K, count => C} || {K, C} <- lists:sublist(Sorted, 1)],
      process_count => Scanned}.

%%--------------------------------------------------------------------
%% A bounded top: {Capacity, Count, Min, gb_set of {Value, Pid, Extra}}
%% (mem_probe_scan's, again: Min, the smallest value once the top is
%% full, turns away most offers without touching the set)
%%--------------------------------------------------------------------

top_new(Cap) -> {Cap, 0, undefined, gb_sets:empty()}.

top_offer(V, _P, _X, {Cap, Cap, Min, _} = Top) when V =< Min ->
    Top;
top_offer(_V, _P, _X, {0, _, _, _} = Top) ->
    Top;
top_offer(V, P, X, {Cap, Cap, _Min, Set}) ->
    {_, Set0} = gb_sets:take_smallest(Set),
    Set1 = gb_sets:add({V, P, X}, Set0),
    {Cap, Cap, element(1, gb_sets:smallest(Set1)), Set1};
top_offer(V, P, X, {Cap, N, _Min, Set}) ->
    Set1 = gb_sets:add({V, P, X}, Set),
    Min = case N + 1 of
              Cap -> element(1, gb_sets:smallest(Set1));
              _ -> undefined
          end,
    {Cap, N + 1, Min, Set1}.

%% Whether top_offer/4 would keep `V'.
top_accepts(_V, {0, _, _, _}) -> false;
top_accepts(V, {Cap, Cap, Min, _}) -> V > Min;
top_accepts(_V, _Top) -> true.

top_list({_, _, _, Set}) -> lists:reverse(gb_sets:to_list(Set)).

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
    %% A private table can be read by its owner only (the collector owns
    %% none).
    case ets_info(T, protection) of
        private ->
            {undefined, #{}};
        _ ->
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
