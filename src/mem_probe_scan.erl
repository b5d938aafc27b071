%%% @doc The plumbing shared by the question modules: where a scan runs (a
%%% fresh process, parallel workers), how it keeps only its winners (the
%%% bounded top), how a winner is described (names, initial calls), the
%%% binary sums and the ets:info calls that never raise.
%%%
%%% Why a scan runs in its own processes. Reading `memory', `total_heap_size',
%%% `binary', `monitors', `links' or `current_function' of another process is
%%% not a read: on OTP 25 `process_info/2' sends the target a signal and
%%% waits for the target to answer it (about a microsecond per process on an
%%% idle node, a context switch each way). So
%%% <ul>
%%% <li>the scan runs in a short-lived coordinator: the caller (a shell, a
%%%     health-check process with a long life) receives the result and nothing
%%%     else, so its heap does not grow by the tens of megabytes a scan of a
%%%     million processes allocates;</li>
%%% <li>the process list is cut into a few contiguous chunks, each read by a
%%%     linked worker: with several requests in flight, the schedulers answer
%%%     them back to back instead of waking up for each one;</li>
%%% <li>each worker keeps only its current top N in a bounded set, so nothing
%%%     the size of the node is ever built, sorted or copied between
%%%     processes.</li>
%%% </ul>
%%% The workers are linked to the coordinator and the coordinator watches its
%%% caller, so a scan whose caller goes away stops. Processes that exit during
%%% a scan answer `undefined' and are skipped; no scan crashes on them.
-module(mem_probe_scan).

-export([isolated/1, stop_if_caller_gone/0, processes/0, parallel/2, chunks/1,
         worker_count/1, initial_call/2,
         top_new/1, top_offer/4, top_accepts/2, top_list/1, top_merge/2, top/2,
         details/1, details/2, registered_name/1, wordsize/0, sleep_or_caller_down/2,
         binary_bytes/1, ets_info/1, ets_info/2]).

-export_type([top/0]).

%% A bounded top: {Capacity, Count, Min, Set}; Set holds {Value, Pid, Extra}.
-opaque top() :: {non_neg_integer(), non_neg_integer(), term(), gb_sets:set()}.

%% Chunks below this many processes are not worth a worker of their own.
-define(MIN_CHUNK, 4096).
-define(MAX_WORKERS, 16).
-define(CALLER_KEY, {?MODULE, caller}).

%%--------------------------------------------------------------------
%% Where a scan runs
%%--------------------------------------------------------------------

%% @doc Runs `Fun()' in a fresh process and returns its value. An exception
%% in `Fun' is raised again in the caller; the process's garbage dies with it,
%% and its heap holds none of the caller's binaries. A long `Fun' calls
%% `stop_if_caller_gone/0' now and then.
-spec isolated(fun(() -> T)) -> T.
isolated(Fun) ->
    Caller = self(),
    Tag = make_ref(),
    {Pid, MRef} =
        spawn_opt(fun() ->
                          put(?CALLER_KEY, erlang:monitor(process, Caller)),
                          Result = try {ok, Fun()}
                                   catch Class:Reason:Stack -> {raise, Class, Reason, Stack}
                                   end,
                          Caller ! {Tag, Result}
                  end, [monitor]),
    receive
        {Tag, {ok, Value}} ->
            erlang:demonitor(MRef, [flush]),
            Value;
        {Tag, {raise, Class, Reason, Stack}} ->
            erlang:demonitor(MRef, [flush]),
            erlang:raise(Class, Reason, Stack);
        {'DOWN', MRef, process, Pid, Reason} ->
            erlang:error({mem_probe_scan_failed, Reason})
    end.

%% @doc In a process `isolated/1' started: exits it (normally) if its
%% caller has exited. Elsewhere: nothing.
-spec stop_if_caller_gone() -> ok.
stop_if_caller_gone() ->
    case get(?CALLER_KEY) of
        undefined ->
            ok;
        Mon ->
            receive {'DOWN', Mon, process, _, _} -> exit(normal)
            after 0 -> ok
            end
    end.

%% @doc Waits `Ms' milliseconds, or exits the calling (coordinator) process
%% if the process that asked for the scan exits first.
-spec sleep_or_caller_down(non_neg_integer(), pid() | undefined) -> ok.
sleep_or_caller_down(Ms, Caller) when is_pid(Caller) ->
    MRef = erlang:monitor(process, Caller),
    receive
        {'DOWN', MRef, process, Caller, _} -> exit(normal)
    after Ms ->
        erlang:demonitor(MRef, [flush]),
        ok
    end;
sleep_or_caller_down(Ms, _) ->
    receive after Ms -> ok end.

%% @doc A snapshot of all processes (the coordinator skips itself when it
%% splits the list: `parallel/2').
-spec processes() -> [pid()].
processes() ->
    erlang:processes().

%% @doc How many workers for `Len' processes: one per ?MIN_CHUNK processes,
%% at most two per online scheduler (measured on OTP 25: two requests in
%% flight per scheduler is where the gain stops) and at most ?MAX_WORKERS.
-spec worker_count(non_neg_integer()) -> pos_integer().
worker_count(Len) ->
    Max = min(?MAX_WORKERS, 2 * erlang:system_info(schedulers_online)),
    max(1, min(Max, Len div ?MIN_CHUNK)).

%% @doc Runs `Fun(Chunk)' on the `chunks/1' of `Pids' in linked workers
%% and returns the results, in no particular order, once every worker has
%% exited. A single chunk runs in the calling process. Each worker starts as
%% soon as its chunk is cut.
-spec parallel([pid()], fun(([pid()]) -> T)) -> [T].
parallel(Pids, Fun) ->
    Len = length(Pids),
    case worker_count(Len) of
        1 ->
            [Fun(lists:delete(self(), Pids))];
        K ->
            Tag = make_ref(),
            Workers = spawn_chunks(Pids, (Len + K - 1) div K, Fun, Tag, self(), []),
            collect(Tag, Workers, [])
    end.

spawn_chunks([], _Size, _Fun, _Tag, _Parent, Workers) ->
    Workers;
spawn_chunks(Pids, Size, Fun, Tag, Parent, Workers) ->
    {Reversed, Rest} = take(Pids, Size, Parent, []),
    Chunk = lists:reverse(Reversed),
    Worker = spawn_opt(fun() -> Parent ! {Tag, self(), Fun(Chunk)} end, [link, monitor]),
    spawn_chunks(Rest, Size, Fun, Tag, Parent, [Worker | Workers]).

%% @doc `Pids' without the calling process, cut into `worker_count/1'
%% contiguous chunks, each in the order of `Pids'. Contiguous and in table
%% order because neighbours in the process table were mostly spawned
%% together and share a run queue, and a worker that talks to one run queue
%% keeps its requests on one scheduler (measured on OTP 25: dealing the pids
%% out round-robin is a third slower).
-spec chunks([pid()]) -> [[pid()]].
chunks(Pids) ->
    Len = length(Pids),
    K = worker_count(Len),
    Size = max(1, (Len + K - 1) div K),
    chunks(Pids, Size, self(), []).

chunks([], _Size, _Skip, []) ->
    [[]];
chunks([], _Size, _Skip, Acc) ->
    lists:reverse(Acc);
chunks(Pids, Size, Skip, Acc) ->
    {Reversed, Rest} = take(Pids, Size, Skip, []),
    chunks(Rest, Size, Skip, [lists:reverse(Reversed) | Acc]).

take(Rest, 0, _Skip, Acc) -> {Acc, Rest};
take([], _, _Skip, Acc) -> {Acc, []};
take([Skip | Ps], N, Skip, Acc) -> take(Ps, N, Skip, Acc);
take([P | Ps], N, Skip, Acc) -> take(Ps, N - 1, Skip, [P | Acc]).

%% Results, then the workers' exits: a worker that has answered may still
%% be alive for a moment, and a following snapshot must not see it.
collect(_Tag, [], Acc) ->
    Acc;
collect(Tag, [{Pid, MRef} | Workers], Acc) ->
    receive
        {Tag, Pid, Result} ->
            receive {'DOWN', MRef, process, Pid, _} -> ok end,
            collect(Tag, Workers, [Result | Acc])
    end.

%%--------------------------------------------------------------------
%% Bounded top
%%--------------------------------------------------------------------

%% @doc An empty top of capacity `Cap'.
-spec top_new(non_neg_integer()) -> top().
top_new(Cap) -> {Cap, 0, undefined, gb_sets:empty()}.

%% @doc Offers `Value' for `Pid' (with `Extra' kept alongside). Allocates
%% nothing when the value does not make it into the top. `Pid' may be any
%% identity (a table, for instance).
-spec top_offer(number(), term(), term(), top()) -> top().
top_offer(Value, _Pid, _Extra, {Cap, Cap, Min, _} = Top) when Value =< Min ->
    Top;
top_offer(_Value, _Pid, _Extra, {0, _, _, _} = Top) ->
    Top;
top_offer(Value, Pid, Extra, {Cap, Cap, _Min, Set}) ->
    {_, Set0} = gb_sets:take_smallest(Set),
    Set1 = gb_sets:insert({Value, Pid, Extra}, Set0),
    {Cap, Cap, element(1, gb_sets:smallest(Set1)), Set1};
top_offer(Value, Pid, Extra, {Cap, Count, _Min, Set}) ->
    Set1 = gb_sets:insert({Value, Pid, Extra}, Set),
    Min = case Count + 1 of
              Cap -> element(1, gb_sets:smallest(Set1));
              _ -> undefined
          end,
    {Cap, Count + 1, Min, Set1}.

%% @doc Whether `top_offer/4' would keep `Value'.
-spec top_accepts(number(), top()) -> boolean().
top_accepts(_Value, {0, _, _, _}) -> false;
top_accepts(Value, {Cap, Cap, Min, _}) -> Value > Min;
top_accepts(_Value, _Top) -> true.

%% @doc The top's `{Value, Pid, Extra}' entries, largest first.
-spec top_list(top()) -> [{number(), term(), term()}].
top_list({_, _, _, Set}) -> lists:reverse(gb_sets:to_list(Set)).

%% @doc The `Cap' largest of the workers' `top_list/1' results, largest
%% first: one ranking of a scan split over `parallel/2'.
-spec top_merge([[{number(), term(), term()}]], non_neg_integer()) ->
          [{number(), term(), term()}].
top_merge(Lists, Cap) -> lists:sublist(lists:reverse(lists:sort(lists:append(Lists))), Cap).

%% @doc The `N' largest `{Value, Id, Extra}' of a list, largest first, in one
%% pass that keeps only `N' of them (a million entries are never sorted).
-spec top([{number(), term(), term()}], non_neg_integer()) -> [{number(), term(), term()}].
top(Entries, N) ->
    top_list(lists:foldl(fun({Value, Id, Extra}, Top) -> top_offer(Value, Id, Extra, Top) end,
                         top_new(N), Entries)).

%%--------------------------------------------------------------------
%% Winners
%%--------------------------------------------------------------------

%% @doc Registered name (or `undefined'), initial call and current function
%% of a live process, or `undefined' if it has exited. The initial call of a
%% process started by `proc_lib' (every gen_server, gen_statem, supervisor,
%% Task...) is the `'$initial_call'' proc_lib keeps in its dictionary, so a
%% GenServer shows its callback module rather than `proc_lib:init_p/5'.
-spec details(pid()) -> #{name := atom(), initial_call := mfa(),
                          current_function := mfa() | undefined} | undefined.
details(Pid) ->
    details(Pid, #{}).

%% @doc As `details/1', merged into `Map'.
-spec details(pid(), map()) -> map() | undefined.
details(Pid, Map) ->
    case erlang:process_info(Pid, [registered_name, initial_call, current_function]) of
        [{registered_name, Name}, {initial_call, Initial}, {current_function, Current}] ->
            Map#{name => case Name of [] -> undefined; _ -> Name end,
                 initial_call => initial_call(Pid, Initial),
                 current_function => Current};
        undefined ->
            undefined
    end.

%% @doc A process's initial call, preferring proc_lib's `'$initial_call'' so
%% that GenServers show their module; `Raw' is `process_info(Pid, initial_call)'.
-spec initial_call(pid(), mfa()) -> mfa().
initial_call(Pid, {proc_lib, init_p, 5} = Raw) ->
    %% OTP 25 has no process_info(P, {dictionary, Key}): the dictionary is
    %% copied, which is why this is done for winners only.
    case erlang:process_info(Pid, dictionary) of
        {dictionary, Dict} ->
            case lists:keyfind('$initial_call', 1, Dict) of
                {_, {M, F, A} = MFA} when is_atom(M), is_atom(F), is_integer(A) -> MFA;
                _ -> Raw
            end;
        undefined ->
            Raw
    end;
initial_call(_Pid, Raw) ->
    Raw.

%% @doc A process's registered name, or `undefined' (not registered, not
%% alive, not a pid).
-spec registered_name(term()) -> atom() | undefined.
registered_name(Pid) when is_pid(Pid) ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} -> Name;
        _ -> undefined % [] when unregistered, undefined when not alive
    end;
registered_name(_) ->
    undefined.

%%--------------------------------------------------------------------
%% Binaries and tables
%%--------------------------------------------------------------------

%% @doc Bytes of the distinct binaries in a `process_info(P, binary)' list:
%% a process can hold several references to one binary (it received it
%% twice); it is counted once.
-spec binary_bytes([{non_neg_integer(), non_neg_integer(), non_neg_integer()}]) ->
          non_neg_integer().
binary_bytes([]) -> 0;
binary_bytes([{_, Size, _}]) -> Size;
binary_bytes(Bins) -> distinct_sum(lists:keysort(1, Bins), none, 0).

distinct_sum([], _, Sum) -> Sum;
distinct_sum([{Addr, _, _} | Rest], Addr, Sum) -> distinct_sum(Rest, Addr, Sum);
distinct_sum([{Addr, Size, _} | Rest], _, Sum) -> distinct_sum(Rest, Addr, Sum + Size).

%% @doc `ets:info(T)', or `undefined' for a table that no longer exists or a
%% name that is not a table; never raises.
-spec ets_info(term()) -> [{atom(), term()}] | undefined.
ets_info(T) ->
    try ets:info(T)
    catch error:badarg -> undefined
    end.

%% @doc `ets:info(T, Item)', or `undefined' as `ets_info/1'.
-spec ets_info(term(), atom()) -> term().
ets_info(T, Item) ->
    try ets:info(T, Item)
    catch error:badarg -> undefined
    end.

-spec wordsize() -> pos_integer().
wordsize() -> erlang:system_info(wordsize).
