%%% @doc The one screen an operator reads first.
%%%
%%% `report/1' gathers, in one call: memory by category, the top processes by
%%% memory and by mailbox, the top tables with the binaries they hold,
%%% allocator usage, process and atom counts against their limits, and the
%%% findings worth a look. Every per-process number comes from one pass over
%%% the processes. Each finding is a rule with a threshold, stated in
%%% its text, so an operator can judge it:
%%% <ul>
%%% <li>`mailbox' — a message queue over 10,000 (or one that grew since the
%%%     `previous' snapshot given in the options).</li>
%%% <li>`process_outlier' / `table_outlier' — the largest process (table, with
%%%     its off-heap binaries) holds at least 4 times the next one and at least
%%%     1 MiB.</li>
%%% <li>`pinned_binaries' — a process keeps at least 8 MiB of off-heap binaries
%%%     alive, 16 times its own heap or more: typically small sub-binaries of
%%%     large binaries, or binaries it no longer needs but has not collected.</li>
%%% <li>`monitors' — a process holds over 10,000 monitors.</li>
%%% <li>`process_group' — one initial call accounts for over a third of all
%%%     processes and over 1,000 of them (a process leak).</li>
%%% <li>`limit' — processes, ports or atoms above 80% of the VM's limit.</li>
%%% <li>`fragmentation' — an allocator type whose blocks fill under half of
%%%     its carriers, on more than 64 MiB of carriers.</li>
%%% </ul>
%%% It also shows where in its state the largest process (other than the
%%% caller) holds its bytes: `mem_probe_breakdown:state_breakdown/2', `n'
%%% rows, one second at most (`top_paths').
%%% When a leak watcher runs (`mem_probe_watcher', by default under its
%%% default name), the report adds its findings under `watcher': sustained
%%% growth seen over time, which one look cannot see.
-module(mem_probe_report).

-export([report/1, format/2, findings/1, finding_text/2]).

-export_type([report/0, finding/0, count_row/0]).

%% One finding worth a look: who (`subject': a process, a table, a group of
%% processes, a category, an allocator or a count) and what, as text.
-type finding() :: #{kind := mailbox | process_outlier | table_outlier | pinned_binaries
                             | monitors | process_group | limit | fragmentation,
                     subject := map(), text := binary()}.
-type count_row() :: #{what := processes | ports | atoms, count := non_neg_integer(),
                       limit := pos_integer(), share := float()}.
%% `watcher' when a leak watcher runs; `top_paths' is `undefined' when no
%% process but the caller exists.
-type report() :: #{node := node(), findings := [finding()],
                    memory := mem_probe_system:memory(),
                    top_memory := [mem_probe_procs:process_row()],
                    top_mailbox := [mem_probe_procs:process_row()],
                    top_tables := [mem_probe_ets:entry()],
                    binary_leaks := [mem_probe_binaries:binary_leak()],
                    allocators := map(),
                    counts := [count_row()],
                    top_paths := map() | undefined,
                    watcher => [mem_probe_watcher:finding()]}.

-define(FN, "report/1").
-define(MIB, (1024 * 1024)).

%% @doc The report as a map (print it with `mem_probe:print/1'). Options:
%% `n' (entries per list, default 5), `binaries' (walk tables for their
%% binaries, default `true'), `previous' (an earlier `mem_probe:snapshot/1'
%% of this node, to see what grew), `watcher' (a leak watcher's pid or
%% name, default `mem_probe_watcher:default_name()').
-spec report(list() | map()) -> report().
report(Options) ->
    Opts = mem_probe_args:options(?FN, Options,
                                  [{n, fun(N) -> is_integer(N) andalso N > 0 end},
                                   {binaries, fun is_boolean/1},
                                   {previous, fun is_map/1},
                                   {watcher, fun(W) -> is_pid(W) orelse is_atom(W) end}]),
    N = maps:get(n, Opts, 5),
    #{by_memory := ByMemory, by_mailbox := ByMailbox, by_monitors := ByMonitors,
      leaks := Leaks, groups := Groups} = processes(N),
    Tables = mem_probe_ets:top_tables(max(N, 2), [{binaries, maps:get(binaries, Opts, true)}]),
    Allocators = mem_probe_system:allocators(),
    Counts = counts(),
    Findings = findings(#{by_mailbox => ByMailbox, previous => maps:get(previous, Opts, undefined),
                          by_memory => ByMemory, tables => Tables, leaks => Leaks,
                          by_monitors => ByMonitors, groups => Groups, counts => Counts,
                          allocators => Allocators}),
    Watched = watched(maps:get(watcher, Opts, mem_probe_watcher:default_name())),
    TopPaths = top_paths(ByMemory, N),
    Watched#{node => node(),
             top_paths => TopPaths,
             findings => Findings,
             memory => mem_probe_system:memory(),
             top_memory => lists:sublist(ByMemory, N),
             top_mailbox => ByMailbox,
             top_tables => lists:sublist(Tables, N),
             binary_leaks => Leaks,
             allocators => maps:without([allocators, mseg_cache], Allocators),
             counts => Counts}.

%% Every process attribute the report ranks, from one pass over the
%% processes (one `process_info/2' call each, split over the workers of
%% `mem_probe_scan:parallel/2', in a fresh process): the same rows as
%% `top_processes(memory, max(N, 2))', `top_processes(message_queue_len, N)',
%% `top_processes(monitors, 1)', `binary_leaks(N)' and
%% `count_processes(initial_call, 3)', read from one snapshot of the
%% process table instead of five.
-define(PASS_ITEMS, [memory, message_queue_len, monitors, binary, initial_call]).

processes(N) ->
    Caps = {mem_probe_procs:capacity(max(N, 2)), mem_probe_procs:capacity(N),
            mem_probe_procs:capacity(1), mem_probe_procs:capacity(N)},
    mem_probe_scan:isolated(
      fun() ->
              Parts = mem_probe_scan:parallel(
                        mem_probe_scan:processes(),
                        fun(Chunk) -> pass(Chunk, pass_new(Caps)) end),
              {CapMemory, CapMailbox, CapMonitors, CapLeaks} = Caps,
              Ranked = fun(I, Cap) -> mem_probe_scan:top_merge([element(I, P) || P <- Parts],
                                                               Cap)
                       end,
              #{by_memory => mem_probe_procs:rows(memory, Ranked(1, CapMemory), max(N, 2)),
                by_mailbox => mem_probe_procs:rows(message_queue_len, Ranked(2, CapMailbox), N),
                by_monitors => mem_probe_procs:rows(monitors, Ranked(3, CapMonitors), 1),
                leaks => mem_probe_binaries:rows(Ranked(4, CapLeaks), N),
                groups => mem_probe_procs:groups(initial_call, [element(5, P) || P <- Parts],
                                                 3)}
      end).

pass_new({CapMemory, CapMailbox, CapMonitors, CapLeaks}) ->
    {mem_probe_scan:top_new(CapMemory), mem_probe_scan:top_new(CapMailbox),
     mem_probe_scan:top_new(CapMonitors), mem_probe_scan:top_new(CapLeaks), #{}}.

pass([], {Memory, Mailbox, Monitors, Leaks, Groups}) ->
    {mem_probe_scan:top_list(Memory), mem_probe_scan:top_list(Mailbox),
     mem_probe_scan:top_list(Monitors), mem_probe_scan:top_list(Leaks), Groups};
pass([P | Ps], {Memory, Mailbox, Monitors, Leaks, Groups} = Acc) ->
    case erlang:process_info(P, ?PASS_ITEMS) of
        [{memory, Bytes}, {message_queue_len, Queue}, {monitors, Monitored},
         {binary, Bins}, {initial_call, Raw}] ->
            %% As count_processes/2: proc_lib processes by their '$initial_call'.
            Key = mem_probe_scan:initial_call(P, Raw),
            pass(Ps, {mem_probe_scan:top_offer(Bytes, P, [], Memory),
                      mem_probe_scan:top_offer(Queue, P, [], Mailbox),
                      mem_probe_scan:top_offer(length(Monitored), P, [], Monitors),
                      case Bins of
                          [] -> Leaks;
                          _ -> mem_probe_scan:top_offer(mem_probe_binaries:share(Bins), P, Bins,
                                                        Leaks)
                      end,
                      Groups#{Key => maps:get(Key, Groups, 0) + 1}});
        undefined ->
            pass(Ps, Acc)
    end.

%% @doc The findings rules (see the module doc) applied to scan results
%% gathered elsewhere, each optional: `by_memory' (at least the top two
%% `top_processes(memory, _)' entries), `by_mailbox', `by_monitors',
%% `tables' (`top_tables/2' entries), `leaks' (`binary_leaks/2' entries;
%% an entry's `heap_bytes' is used when present, else its heap is read),
%% `groups' (`count_processes(initial_call, _)'), `counts' (as the report's),
%% `allocators' (as `allocators/0') and `previous' (a snapshot). A rule
%% whose input is missing finds nothing. The live top (`mem_probe_top')
%% applies them to each frame.
-spec findings(map()) -> [finding()].
findings(In) ->
    lists:append(
      [mailbox(maps:get(by_mailbox, In, []), maps:get(previous, In, undefined)),
       process_outlier(maps:get(by_memory, In, [])), table_outlier(maps:get(tables, In, [])),
       pinned(maps:get(leaks, In, [])), monitors(maps:get(by_monitors, In, [])),
       process_group(maps:get(groups, In, #{})), limits(maps:get(counts, In, [])),
       fragmentation(maps:get(allocators, In, #{}))]).

%% @doc One finding as the report prints it: who, then what (chardata).
-spec finding_text(finding(), list() | map()) -> unicode:chardata().
finding_text(#{subject := Subject, text := Text}, Opts) ->
    [describe(Subject, Opts), ": ", Text].

%% @doc The report as one screen of text: findings first, then each section
%% as a table (options as `mem_probe_format:format/2').
-spec format(report(), list() | map()) -> unicode:chardata().
format(#{findings := Findings} = Report, Opts) ->
    Table = fun(Key) -> mem_probe_format:format(maps:get(Key, Report), Opts) end,
    #{memory := #{total_bytes := Total, categories := Categories}} = Report,
    Sections =
        [{io_lib:format("MemProbe report for ~s", [node_name(Report)]), []},
         {"Findings worth a look", findings_text(Findings, Opts)}
         | watcher_sections(Report, Opts)] ++
        [{["Memory by category (total ", mem_probe_format:human_bytes(Total), ")"],
          mem_probe_format:format(Categories, Opts)},
         {"Top processes by memory", Table(top_memory)},
         top_paths_section(maps:get(top_paths, Report, undefined), Opts),
         {"Top processes by message queue", Table(top_mailbox)},
         {"Top ETS tables, with the off-heap binaries they hold", Table(top_tables)},
         {"Binary leaks (each binary counted once across the node)", Table(binary_leaks)},
         {"Allocators (usage = blocks / carriers)", Table(allocators)},
         {"Counts against limits", Table(counts)}],
    lists:join("\n\n", [[Title, "\n", lists:duplicate(string:length(Title), $-),
                          case Body of [] -> []; _ -> ["\n", Body] end]
                         || {Title0, Body} <- Sections,
                            Title <- [unicode:characters_to_list(Title0)]]).

node_name(#{node := Node}) -> atom_to_list(Node).

%% The heaviest paths in the state of the largest process that is not the
%% caller (a sys process's state, measured inside it).
top_paths(ByMemory, N) ->
    case [E || #{pid := Pid} = E <- ByMemory, Pid =/= self()] of
        [#{pid := Pid} = Top | _] ->
            Found = mem_probe_breakdown:state_breakdown(Pid, [{n, N}, {timeout, 1000}]),
            (subject(Top))#{breakdown => Found};
        [] ->
            undefined
    end.

top_paths_section(#{breakdown := Found} = Top, Opts) ->
    Title = ["Heaviest paths in the state of ", describe(maps:remove(breakdown, Top), Opts)],
    Body = case Found of
               {ok, Breakdown} -> mem_probe_breakdown:format(Breakdown, Opts);
               {error, Reason} -> io_lib:format("not available: ~0tp", [Reason])
           end,
    {Title, Body};
top_paths_section(undefined, _Opts) ->
    {"Heaviest paths in the state of the largest process", "no process to look at"}.

%% A running watcher's findings; nothing when none runs (or it is stuck).
watched(Watcher) when is_atom(Watcher) ->
    case erlang:whereis(Watcher) of
        undefined -> #{};
        Pid -> watched(Pid)
    end;
watched(Pid) ->
    try #{watcher => mem_probe_watcher:findings(Pid)}
    catch exit:_ -> #{}
    end.

watcher_sections(#{watcher := Found}, Opts) ->
    [{"Leak watcher: sustained growth, most urgent first",
      case Found of
          [] -> "no sustained growth";
          _ -> lists:join("\n", [["* ", mem_probe_watcher:finding_text(F, Opts)] || F <- Found])
      end}];
watcher_sections(_, _Opts) ->
    [].

findings_text([], _Opts) ->
    "nothing stands out";
findings_text(Findings, Opts) ->
    lists:join("\n", [["* ", finding_text(F, Opts)] || F <- Findings]).

describe(#{name := Name, pid := Pid}, Opts) when is_atom(Name), Name =/= undefined,
                                                  Name =/= nil ->
    [text(Name, Opts), " ", pid_to_list(Pid)];
describe(#{pid := Pid} = S, Opts) ->
    [pid_to_list(Pid), case S of
                           #{initial_call := MFA} -> [" ", text(MFA, Opts)];
                           _ -> []
                       end];
describe(#{table := _, name := Name}, Opts) ->
    ["table ", text(Name, Opts)];
describe(#{initial_call := MFA}, Opts) ->
    ["processes started from ", text(MFA, Opts)];
describe(#{category := C}, Opts) ->
    ["memory category ", text(C, Opts)];
describe(#{allocator := A}, Opts) ->
    text(A, Opts);
describe(#{what := What}, Opts) ->
    text(What, Opts);
describe(Subject, Opts) ->
    text(Subject, Opts).

%% A value as the tables show it (pids, m:f/a or Mod.f/a, names).
text(Value, Opts) ->
    mem_probe_format:value_text(Value, Opts).

counts() ->
    [#{what => What, count => erlang:system_info(Count), limit => erlang:system_info(Limit),
       share => erlang:system_info(Count) / erlang:system_info(Limit)}
     || {What, Count, Limit} <- [{processes, process_count, process_limit},
                                 {ports, port_count, port_limit},
                                 {atoms, atom_count, atom_limit}]].

finding(Kind, Text, Args, Subject) ->
    #{kind => Kind, subject => Subject,
      text => unicode:characters_to_binary(io_lib:format(Text, Args))}.

mailbox(ByMailbox, Previous) ->
    [finding(mailbox, "message queue of ~b~s", [Q, grew(Pid, Q, Previous)], subject(E))
     || #{pid := Pid, value := Q} = E <- ByMailbox,
        Q > 10000 orelse (grew(Pid, Q, Previous) =/= "" andalso Q > 100)].

grew(_Pid, _Q, undefined) ->
    "";
grew(Pid, Q, #{processes := Procs, taken_at := Then}) ->
    case Procs of
        #{Pid := {_, Q0, _, _}} when Q > Q0 ->
            Seconds = max(erlang:monotonic_time(millisecond) - Then, 1) / 1000,
            io_lib:format(", growing by ~.1f messages/s", [(Q - Q0) / Seconds]);
        _ ->
            ""
    end.

process_outlier([#{value := First} = Top, #{value := Second} | _])
  when First >= 4 * Second, First >= ?MIB ->
    [finding(process_outlier, "holds ~s, ~.1fx the next process", [human(First),
                                                                  First / max(Second, 1)],
             subject(Top))];
process_outlier(_) ->
    [].

table_outlier(Tables) ->
    Weighed = lists:reverse(lists:sort([{table_bytes(T), T} || T <- Tables])),
    case Weighed of
        [{First, Top}, {Second, _} | _] when First >= 4 * Second, First >= ?MIB ->
            [finding(table_outlier, "holds ~s (~s of it off-heap binaries ets:info/2 does not count), ~.1fx the next table",
                     [human(First), human(off_heap(Top)), First / max(Second, 1)],
                     maps:with([table, name, owner], Top))];
        _ ->
            []
    end.

table_bytes(#{memory_bytes := M} = T) -> M + off_heap(T).

off_heap(#{off_heap_bytes := B}) when is_integer(B) -> B;
off_heap(_) -> 0.

pinned(Leaks) ->
    lists:append([pinned_one(E) || E <- Leaks]).

pinned_one(#{bytes := Bytes} = E) when Bytes >= 8 * ?MIB ->
    case heap_bytes(E) of
        Heap when is_integer(Heap), Bytes >= 16 * Heap ->
            [finding(pinned_binaries,
                     "keeps ~s of off-heap binaries alive with a ~s heap (sub-binaries of larger binaries, or binaries it no longer needs?)",
                     [human(Bytes), human(Heap)], subject(E))];
        _ ->
            []
    end;
pinned_one(_) ->
    [].

heap_bytes(#{heap_bytes := Heap}) ->
    Heap;
heap_bytes(#{pid := Pid}) ->
    case erlang:process_info(Pid, total_heap_size) of
        {total_heap_size, Words} -> Words * erlang:system_info(wordsize);
        undefined -> undefined
    end.

monitors([#{value := Count} = E | _]) when Count > 10000 ->
    [finding(monitors, "holds ~b monitors", [Count], subject(E))];
monitors(_) ->
    [].

process_group(#{groups := [#{key := Key, count := Count} | _], process_count := All})
  when Count > 1000, Count * 3 > All ->
    [finding(process_group, "~b of ~b processes (a process leak?)", [Count, All],
             #{initial_call => Key})];
process_group(_) ->
    [].

limits(Counts) ->
    [finding(limit, "~s at ~.1f% of the limit (~b of ~b)",
             [What, Share * 100, Count, Limit], #{what => What})
     || #{what := What, count := Count, limit := Limit, share := Share} <- Counts,
        Share > 0.8].

fragmentation(#{allocators := Types}) ->
    [finding(fragmentation, "~s: blocks use ~.1f% of ~s of carriers",
             [Name, Usage * 100, human(Carriers)], #{allocator => Name})
     || #{allocator := Name, usage := Usage, carriers_bytes := Carriers} <- Types,
        is_number(Usage), Usage < 0.5, Carriers > 64 * ?MIB];
fragmentation(_) ->
    [].

subject(Entry) ->
    maps:with([pid, name, initial_call], Entry).

human(Bytes) ->
    mem_probe_format:human_bytes(Bytes).
