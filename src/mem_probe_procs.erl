%%% @doc Process scans: the top processes by an attribute (now, or by its
%%% change over a window), processes grouped by what started them, and one
%%% process's memory split into its parts. Sizes are in bytes.
%%%
%%% == What the numbers mean, and how they can mislead ==
%%%
%%% <ul>
%%% <li>`memory' is what the VM charges to the process: its struct, heap
%%% and stack blocks (allocated, not used: a process that peaked once keeps
%%% its large heap until it shrinks at a later collection), heap fragments,
%%% queued messages, links and monitors. It does not include the off-heap
%%% (refc) binaries the process references: see `binary_memory' and
%%% `mem_probe_binaries'. A process holding a 100 MB binary can show 3 KB of
%%% memory.</li>
%%% <li>`total_heap_size', `heap_size' and `stack_size' are reported in
%%% bytes (the VM counts them in words). The stack lives inside the young
%%% heap block, so `heap_size' includes it.</li>
%%% <li>`binary_memory' counts every binary a process references once for
%%% that process, so a binary shared by 50 processes is counted 50 times
%%% across the ranking: this is the number the VM reports, and it is fine to
%%% find the process holding the most, but the values must not be summed.
%%% `mem_probe_binaries:binary_leaks/2' counts each binary once.</li>
%%% <li>`monitors', `monitored_by' and `links' are ranked by how many there
%%% are (recon compares the lists themselves, in term order, and can rank one
%%% monitor above 999).</li>
%%% <li>A top is a snapshot taken over the time of the scan, not at one
%%% instant: on a million processes the first and the last one are read
%%% about a second apart. Processes that exit during the scan are skipped;
%%% the calling process is included.</li>
%%% <li>With `{window, Ms}' the value is the change between two readings Ms
%%% apart. A process born inside the window (`born => true') reports its
%%% whole value, which is all change. A process that exited inside the window
%%% cannot be read at the end: for a level (memory, queue length, counts...)
%%% its change is minus its first reading, reported with `died => true'; for
%%% `reductions', a counter the VM forgets at exit, its change is unknowable
%%% and it is left out (recon reports its lifetime total as if it were the
%%% change).</li>
%%% </ul>
%%%
%%% How a scan stays cheap: see `mem_probe_scan' (one `process_info' item
%%% per process, in a few workers, keeping only the current top N; names,
%%% initial calls and current functions are fetched for the winners only).
-module(mem_probe_procs).

-export([top_processes/3, count_processes/2, process_memory/1, attributes/0,
         groupings/0]).
%% For scans of several attributes in one pass (mem_probe_report).
-export([capacity/1, rows/3, groups/3]).

-export_type([process_row/0, process_groups/0, process_group/0, process_memory/0]).

%% One process of top_processes/3: `value' in bytes for the size attributes,
%% a count otherwise; `born' and `died' with `{window, Ms}' only.
-type process_row() :: #{pid := pid(), attr := atom(), value := integer(),
                         name := atom() | undefined, initial_call := mfa() | undefined,
                         current_function := mfa() | undefined,
                         born => boolean(), died => boolean()}.
-type process_group() :: #{key := term(), count := pos_integer()}.
-type process_groups() :: #{groups := [process_group()], process_count := non_neg_integer(),
                            process_limit := pos_integer()}.
%% process_memory/1's parts, in bytes (`heap + stack + mailbox +
%% overhead_bytes == memory').
-type process_memory() :: #{memory := non_neg_integer(), heap := non_neg_integer(),
                            stack := non_neg_integer(), mailbox := non_neg_integer(),
                            overhead_bytes := integer(),
                            off_heap_bytes := non_neg_integer(),
                            off_heap_binaries := non_neg_integer(),
                            message_queue_len := non_neg_integer(),
                            message_queue_data := on_heap | off_heap}.

-define(ATTRS, [memory, message_queue_len, reductions, total_heap_size, heap_size,
                stack_size, binary_memory, monitors, monitored_by, links]).
-define(GROUPINGS, [initial_call, current_function, application]).
-define(CALIBRATION, {?MODULE, calibration}).

%% @doc The attributes `top_processes/3' ranks by.
-spec attributes() -> [atom()].
attributes() -> ?ATTRS.

%% @doc The groupings `count_processes/2' accepts.
-spec groupings() -> [atom()].
groupings() -> ?GROUPINGS.

%%--------------------------------------------------------------------
%% top_processes
%%--------------------------------------------------------------------

%% @doc The `N' processes with the largest `Attr', largest first, as maps
%% `#{pid, value, name, initial_call, current_function, attr}' (plus `born'
%% and `died' with `{window, Ms}'); `attr' repeats the attribute so that a
%% printed row knows the unit of `value'. `name' is `undefined' for an
%% unregistered process. Options: `{window, Ms}' ranks by the change over
%% `Ms' milliseconds.
-spec top_processes(atom(), non_neg_integer(), list() | map()) -> [process_row()].
top_processes(Attr0, N0, Opts0) ->
    F = "top_processes/3",
    Attr = mem_probe_args:one_of(F, "attribute", Attr0, ?ATTRS),
    N = mem_probe_args:non_neg_integer(F, "n", N0),
    Opts = mem_probe_args:options(F, Opts0,
                                  [{window, fun(W) -> is_integer(W) andalso W >= 0 end}]),
    Caller = self(),
    case {N, maps:find(window, Opts)} of
        {0, _} -> [];
        {_, error} -> mem_probe_scan:isolated(fun() -> top(Attr, N) end);
        {_, {ok, Ms}} -> mem_probe_scan:isolated(fun() -> window(Attr, N, Ms, Caller) end)
    end.

item(binary_memory) -> binary;
item(Attr) -> Attr.

scale(heap_size) -> mem_probe_scan:wordsize();
scale(total_heap_size) -> mem_probe_scan:wordsize();
scale(stack_size) -> mem_probe_scan:wordsize();
scale(_) -> 1.

%% Levels drop to zero when a process exits; reductions is a counter.
level(reductions) -> false;
level(_) -> true.

%% @doc How many candidates a scan for the top `N' keeps: `N' and a few
%% more, to replace winners that exit before their details are read.
-spec capacity(non_neg_integer()) -> non_neg_integer().
capacity(N) -> N + min(N, 5).

%% One process_info item of one process, as a number, or undefined if the
%% process has exited.
measure(P, binary) ->
    case erlang:process_info(P, binary) of
        {binary, Bins} -> mem_probe_scan:binary_bytes(Bins);
        undefined -> undefined
    end;
measure(P, Item) when Item =:= monitors; Item =:= monitored_by; Item =:= links ->
    case erlang:process_info(P, Item) of
        {_, List} -> length(List);
        undefined -> undefined
    end;
measure(P, Item) ->
    case erlang:process_info(P, Item) of
        {_, Value} -> Value;
        undefined -> undefined
    end.

top(Attr, N) ->
    Item = item(Attr),
    Cap = capacity(N),
    Tops = mem_probe_scan:parallel(
             mem_probe_scan:processes(),
             fun(Chunk) -> top_chunk(Chunk, Item, mem_probe_scan:top_new(Cap)) end),
    rows(Attr, mem_probe_scan:top_merge(Tops, Cap), N).

%% @doc The rows of `top_processes(Attr, N)' from a ranking of
%% `{Value, Pid, Extra}' (largest first, values as `process_info/2' gives
%% them, counts for the list items); details are read for the winners only.
-spec rows(atom(), [{number(), pid(), term()}], non_neg_integer()) -> [process_row()].
rows(Attr, Ranked, N) ->
    Scale = scale(Attr),
    winners(Ranked, N, fun(Value, _Extra) -> #{attr => Attr, value => Value * Scale} end).

top_chunk(Pids, Item, Top) when Item =:= binary; Item =:= monitors;
                                Item =:= monitored_by; Item =:= links ->
    top_measured(Pids, Item, Top);
top_chunk(Pids, Item, Top) ->
    top_plain(Pids, Item, Top).

%% The hot loop for items that are a number: one process_info call per
%% process, nothing allocated unless the value enters the top.
top_plain([], _Item, Top) ->
    mem_probe_scan:top_list(Top);
top_plain([P | Ps], Item, Top) ->
    case erlang:process_info(P, Item) of
        {_, Value} -> top_plain(Ps, Item, mem_probe_scan:top_offer(Value, P, [], Top));
        undefined -> top_plain(Ps, Item, Top)
    end.

top_measured([], _Item, Top) ->
    mem_probe_scan:top_list(Top);
top_measured([P | Ps], Item, Top) ->
    case measure(P, Item) of
        undefined -> top_measured(Ps, Item, Top);
        Value -> top_measured(Ps, Item, mem_probe_scan:top_offer(Value, P, [], Top))
    end.

%% Details for the winners, in rank order, until N live ones are found.
%% `died' entries are reported without details (the process is gone).
winners(_, 0, _Base) ->
    [];
winners([], _, _Base) ->
    [];
winners([{Value, Pid, died} | Rest], N, Base) ->
    Entry = (Base(Value, died))#{pid => Pid, name => undefined,
                                 initial_call => undefined,
                                 current_function => undefined},
    [Entry | winners(Rest, N - 1, Base)];
winners([{Value, Pid, Extra} | Rest], N, Base) ->
    case mem_probe_scan:details(Pid, (Base(Value, Extra))#{pid => Pid}) of
        undefined -> winners(Rest, N, Base);
        Entry -> [Entry | winners(Rest, N - 1, Base)]
    end.

%%--------------------------------------------------------------------
%% Windowed top
%%--------------------------------------------------------------------

%% Two snapshots Ms apart, from the start of the first to the start of the
%% second: both scans run at the same pace, so each process is read about Ms
%% apart. The first snapshot is cut into contiguous chunks, one per worker;
%% a worker keeps its chunk's readings, in order, across the window. The
%% process table lists processes in a stable order (by slot), so the second
%% snapshot, cut at the first surviving pid of each first chunk, gives each
%% worker the survivors of its own chunk in the same order, plus the
%% processes born in between: the worker walks both lists side by side and
%% pairs readings without a lookup. A pid that does not match is born, or the
%% expected one has exited (checked with is_process_alive/1); a pid that
%% would enter the top as born is first looked up in a table of all first
%% readings, so the result never depends on that order, only the speed does.
window(Attr, N, Ms, Caller) ->
    Item = item(Attr),
    Cap = capacity(N),
    Level = level(Attr),
    T0 = erlang:monotonic_time(millisecond),
    Chunks = mem_probe_scan:chunks(mem_probe_scan:processes()),
    First = ets:new(?MODULE, [set, public, {read_concurrency, true},
                              {write_concurrency, true}]),
    Tag = make_ref(),
    Self = self(),
    Workers = [spawn_opt(fun() -> window_worker(Chunk, Item, Level, Cap, First, Self, Tag) end,
                         [link, monitor])
               || Chunk <- Chunks],
    [receive {Tag, W, ready} -> ok end || {W, _} <- Workers],
    Left = T0 + Ms - erlang:monotonic_time(millisecond),
    mem_probe_scan:sleep_or_caller_down(max(0, Left), Caller),
    Pids = mem_probe_scan:processes(),
    Skip = maps:from_keys([Self | [W || {W, _} <- Workers]], []),
    Bounds = [first_alive(Chunk) || Chunk <- tl(Chunks)],
    Parts = split_at(Pids, Bounds, Skip),
    lists:foreach(fun({{W, _}, Part}) -> W ! {Tag, scan, Part} end, lists:zip(Workers, Parts)),
    Tops = [receive
                {Tag, W, {top, Top}} ->
                    receive {'DOWN', MRef, process, W, _} -> Top end
            end || {W, MRef} <- Workers],
    Scale = scale(Attr),
    winners(mem_probe_scan:top_merge(Tops, Cap), N,
            fun(Value, Extra) ->
                    #{attr => Attr, value => Value * Scale, born => Extra =:= born,
                      died => Extra =:= died}
            end).

first_alive([]) -> none;
first_alive([P | Ps]) ->
    case erlang:is_process_alive(P) of
        true -> P;
        false -> first_alive(Ps)
    end.

%% Cuts the second snapshot before each bound (a pid alive now, so present
%% in it); a chunk with no survivor gets only what no other chunk takes.
split_at(Pids, Bounds, Skip) ->
    Marks = [{B, J} || {B, J} <- lists:zip(Bounds, lists:seq(2, length(Bounds) + 1)),
                       B =/= none],
    Parts = split_walk(Pids, Marks, Skip, 1, [], #{}),
    [maps:get(J, Parts, []) || J <- lists:seq(1, length(Bounds) + 1)].

split_walk([], _Marks, _Skip, J, Cur, Acc) ->
    Acc#{J => lists:reverse(Cur)};
split_walk([B | Ps], [{B, J1} | Marks], Skip, J, Cur, Acc) ->
    split_walk(Ps, Marks, Skip, J1, [B], Acc#{J => lists:reverse(Cur)});
split_walk([P | Ps], Marks, Skip, J, Cur, Acc) ->
    case is_map_key(P, Skip) of
        true -> split_walk(Ps, Marks, Skip, J, Cur, Acc);
        false -> split_walk(Ps, Marks, Skip, J, [P | Cur], Acc)
    end.

window_worker(Chunk, Item, Level, Cap, First, Parent, Tag) ->
    Old = lists:reverse(snapshot(Chunk, Item, [])),
    true = ets:insert(First, Old),
    Parent ! {Tag, self(), ready},
    Part = receive {Tag, scan, P} -> P end,
    Top = walk(Part, Old, Item, Level, First, mem_probe_scan:top_new(Cap)),
    Parent ! {Tag, self(), {top, mem_probe_scan:top_list(Top)}}.

snapshot([], _Item, Acc) ->
    Acc;
snapshot([P | Ps], Item, Acc) ->
    case measure(P, Item) of
        undefined -> snapshot(Ps, Item, Acc);
        Value -> snapshot(Ps, Item, [{P, Value} | Acc])
    end.

walk([], Old, _Item, Level, _First, Top) ->
    leftovers(Old, Level, Top);
walk([P | Ps], Old, Item, Level, First, Top) ->
    case measure(P, Item) of
        undefined -> walk(Ps, Old, Item, Level, First, Top);
        Now -> pair(P, Now, Ps, Old, Item, Level, First, Top)
    end.

pair(P, Now, Ps, [{P, Before} | Old], Item, Level, First, Top) ->
    walk(Ps, Old, Item, Level, First, mem_probe_scan:top_offer(Now - Before, P, alive, Top));
pair(P, Now, Ps, [{H, Before} | Old1] = Old, Item, Level, First, Top) ->
    case erlang:is_process_alive(H) of
        false -> pair(P, Now, Ps, Old1, Item, Level, First, exited(Level, H, Before, Top));
        true -> walk(Ps, Old, Item, Level, First, unexpected(P, Now, First, Top))
    end;
pair(P, Now, Ps, [], Item, Level, First, Top) ->
    walk(Ps, [], Item, Level, First, unexpected(P, Now, First, Top)).

%% P is not the next pid of this worker's first snapshot: it was born in
%% the window, unless the table of first readings has it.
unexpected(P, Now, First, Top) ->
    case mem_probe_scan:top_accepts(Now, Top) of
        false ->
            %% Its change is at most Now (readings are never negative).
            Top;
        true ->
            case ets:lookup(First, P) of
                [{_, Before}] -> mem_probe_scan:top_offer(Now - Before, P, alive, Top);
                [] -> mem_probe_scan:top_offer(Now, P, born, Top)
            end
    end.

%% A level falls to zero when its process exits; a counter's change is
%% unknowable then, and the process is left out.
exited(true, H, Before, Top) -> mem_probe_scan:top_offer(-Before, H, died, Top);
exited(false, _H, _Before, Top) -> Top.

leftovers([], _Level, Top) ->
    Top;
leftovers([{H, Before} | Old], Level, Top) ->
    case erlang:is_process_alive(H) of
        false -> leftovers(Old, Level, exited(Level, H, Before, Top));
        true -> leftovers(Old, Level, Top)
    end.

%%--------------------------------------------------------------------
%% count_processes
%%--------------------------------------------------------------------

%% @doc All processes grouped by `By' (`initial_call', `current_function' or
%% `application'), the `N' largest groups first:
%% `#{groups => [#{key, count}], process_count, process_limit}'.
%% `process_count' is the number of processes grouped (alive when read).
%% The VM does not record which fun a `spawn(Fun)' process was started
%% with: all of them have the initial call `{erlang, apply, 2}'; group
%% those by `current_function' instead.
-spec count_processes(atom(), non_neg_integer()) -> process_groups().
count_processes(By0, N0) ->
    F = "count_processes/2",
    By = mem_probe_args:one_of(F, "grouping", By0, ?GROUPINGS),
    N = mem_probe_args:non_neg_integer(F, "n", N0),
    mem_probe_scan:isolated(fun() -> count(By, N) end).

count(By, N) ->
    Counts = mem_probe_scan:parallel(mem_probe_scan:processes(),
                                     fun(Chunk) -> count_chunk(Chunk, By, #{}) end),
    groups(By, Counts, N).

%% @doc `count_processes(By, N)' from the workers' counts per key (for
%% `application', per group leader).
-spec groups(atom(), [#{term() => pos_integer()}], non_neg_integer()) -> process_groups().
groups(By, Counts, N) ->
    Merged = lists:foldl(fun(M, Acc) ->
                                 maps:fold(fun(Key, C, A) ->
                                                   A#{Key => maps:get(Key, A, 0) + C}
                                           end, Acc, M)
                         end, #{}, Counts),
    Grouped = case By of
                  application -> by_application(Merged);
                  _ -> Merged
              end,
    Total = lists:sum(maps:values(Grouped)),
    Sorted = lists:sort(fun({K1, C1}, {K2, C2}) -> {C1, K2} >= {C2, K1} end,
                        maps:to_list(Grouped)),
    #{groups => [#{key => Key, count => C} || {Key, C} <- lists:sublist(Sorted, N)],
      process_count => Total,
      process_limit => erlang:system_info(process_limit)}.

count_chunk([], _By, Acc) ->
    Acc;
count_chunk([P | Ps], By, Acc) ->
    case group_key(P, By) of
        '$gone' -> count_chunk(Ps, By, Acc);
        Key -> count_chunk(Ps, By, Acc#{Key => maps:get(Key, Acc, 0) + 1})
    end.

group_key(P, initial_call) ->
    %% proc_lib processes by their '$initial_call' (mem_probe_scan).
    case erlang:process_info(P, initial_call) of
        {initial_call, Raw} -> mem_probe_scan:initial_call(P, Raw);
        undefined -> '$gone'
    end;
group_key(P, current_function) ->
    case erlang:process_info(P, current_function) of
        {current_function, MFA} -> MFA;
        undefined -> '$gone'
    end;
group_key(P, application) ->
    %% Grouped by group leader here; each distinct group leader is mapped to
    %% its application once, afterwards.
    case erlang:process_info(P, group_leader) of
        {group_leader, GL} -> GL;
        undefined -> '$gone'
    end.

by_application(ByGroupLeader) ->
    maps:fold(fun(GL, C, Acc) ->
                      App = case application_controller:get_application(GL) of
                                {ok, A} -> A;
                                undefined -> undefined
                            end,
                      Acc#{App => maps:get(App, Acc, 0) + C}
              end, #{}, ByGroupLeader).

%%--------------------------------------------------------------------
%% process_memory
%%--------------------------------------------------------------------

%% @doc One process's memory in bytes, from one consistent reading:
%% <ul>
%% <li>`memory': what the VM charges to the process (`process_info/2');</li>
%% <li>`heap': young and old heap blocks, allocated (free space included),
%%     stack excluded; heap fragments too when the queue is empty;</li>
%% <li>`stack';</li>
%% <li>`mailbox': queued messages: a header per message, plus their data
%%     while it is not yet in the heap blocks (for an `on_heap' queue the
%%     heap fragments, where received messages wait for the next collection;
%%     for an `off_heap' queue what `memory' has beyond everything else, so
%%     the links and monitors of such a process are counted here);</li>
%% <li>`overhead_bytes': the rest: the process structure, links, monitors
%%     and the like;</li>
%% <li>`off_heap_bytes', `off_heap_binaries': bytes and number of the
%%     distinct refc binaries it references (not part of `memory'; named as
%%     in `mem_probe:term_size/1');</li>
%% <li>`message_queue_len', `message_queue_data'.</li>
%% </ul>
%% `heap + stack + mailbox + overhead_bytes == memory'. `{error, noproc}' if the
%% process is not alive.
-spec process_memory(pid()) -> {ok, process_memory()} | {error, noproc}.
process_memory(Pid0) ->
    Pid = local_pid("process_memory/1", Pid0),
    {Header, Base} = calibration(),
    Items = [memory, message_queue_len, message_queue_data, stack_size, total_heap_size,
             garbage_collection_info, binary],
    case erlang:process_info(Pid, Items) of
        undefined ->
            {error, noproc};
        [{memory, Mem}, {message_queue_len, Len}, {message_queue_data, Mode},
         {stack_size, StackW}, {total_heap_size, Total}, {garbage_collection_info, GC},
         {binary, Bins}] ->
            W = mem_probe_scan:wordsize(),
            Young = proplists:get_value(heap_block_size, GC, 0),
            Old = proplists:get_value(old_heap_block_size, GC, 0),
            Frag = proplists:get_value(mbuf_size, GC, 0) * W,
            Stack = StackW * W,
            Blocks = (Young + Old) * W - Stack,
            Attached =
                case Mode of
                    on_heap -> max(0, Total - Young - Old) * W - Frag;
                    off_heap -> max(0, Mem - (Young + Old) * W - Frag - Base - Len * Header)
                end,
            {Heap, Mailbox} =
                case Len of
                    0 -> {Blocks + Frag, max(0, Attached)};
                    _ -> {Blocks, Len * Header + max(0, Attached) + Frag}
                end,
            {ok, #{memory => Mem,
                   heap => Heap,
                   stack => Stack,
                   mailbox => Mailbox,
                   overhead_bytes => Mem - Heap - Stack - Mailbox,
                   off_heap_bytes => mem_probe_scan:binary_bytes(Bins),
                   off_heap_binaries => length(lists:ukeysort(1, Bins)),
                   message_queue_len => Len,
                   message_queue_data => Mode}}
    end.

local_pid(F, Pid0) ->
    Pid = mem_probe_args:pid(F, Pid0),
    case node(Pid) =:= node() of
        true -> Pid;
        false -> mem_probe_args:bad(F, io_lib:format("~0p is not a pid of this node", [Pid]),
                                    "a pid of this node")
    end.

%% What the VM charges per queued message (its header), and the fixed part
%% of a process (its structure) that is neither heap nor stack: measured once
%% on a fresh process and kept.
calibration() ->
    case persistent_term:get(?CALIBRATION, undefined) of
        undefined ->
            Value = mem_probe_scan:isolated(fun measure_calibration/0),
            persistent_term:put(?CALIBRATION, Value),
            Value;
        Value ->
            Value
    end.

measure_calibration() ->
    P = spawn(fun() -> receive {stop, From} -> From ! stopped end end),
    Read = fun() ->
                   [{memory, M}, {garbage_collection_info, GC}] =
                       erlang:process_info(P, [memory, garbage_collection_info]),
                   Blocks = proplists:get_value(heap_block_size, GC)
                       + proplists:get_value(old_heap_block_size, GC)
                       + proplists:get_value(mbuf_size, GC),
                   {M, Blocks * mem_probe_scan:wordsize()}
           end,
    {M0, B0} = Read(),
    Count = 16,
    [P ! x || _ <- lists:seq(1, Count)],
    {M1, B1} = Read(),
    P ! {stop, self()},
    receive stopped -> ok end,
    {((M1 - B1) - (M0 - B0)) div Count, M0 - B0}.
