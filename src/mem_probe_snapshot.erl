%%% @doc Snapshots and growth diffs: a leak is growth.
%%%
%%% A snapshot records, compactly, what a later comparison needs:
%%% `erlang:memory()', per process (memory, message queue length, off-heap
%%% binary bytes, reductions), per ETS table (memory, size), process, port
%%% and atom counts against their limits, and when it was taken.
%%%
%%% Why a diff can mislead, and what this one does about it:
%%% <ul>
%%% <li>A process that was born between the snapshots has no "before": its
%%%     whole size is not a change. Born and gone processes and tables are
%%%     reported apart (`born', `gone'), never mixed into the growth ranking.</li>
%%% <li>Reductions only grow; their change is work done, not memory held.</li>
%%% <li>A process's off-heap binary bytes count each binary it references in
%%%     full, so a binary shared by many processes shows in each of them
%%%     (`mem_probe:binary_leaks/2' counts it once across the node).</li>
%%% <li>Snapshots from two nodes cannot be compared: `diff/3' refuses.</li>
%%% </ul>
%%%
%%% Compactness: per process a 4-tuple of integers (memory, message queue,
%%% binary bytes, reductions) in a map keyed by pid, about 70 bytes a process
%%% as measured for a million processes (the README's benchmark). Registered names are kept once, for
%%% the registered processes only.
-module(mem_probe_snapshot).

-export([snapshot/1, diff/3, size_bytes/1]).

-define(FN_SNAPSHOT, "snapshot/1").
-define(FN_DIFF, "diff/3").

-type snapshot() :: #{'$mem_probe_snapshot' := 1, node := node(), _ => _}.
%% diff/3's answer for one node; changes in bytes, rates in bytes per second.
-type process_growth() :: #{pid := pid(), name := atom() | undefined, change := integer(),
                            rate := float(), memory := non_neg_integer(),
                            message_queue_len := non_neg_integer(),
                            message_queue_change := integer(),
                            binary_bytes := non_neg_integer(), binary_change := integer(),
                            reductions_change := integer()}.
-type table_growth() :: #{table := atom() | ets:tid(), name := atom(), owner := pid(),
                          change := integer(), rate := float(),
                          memory_bytes := non_neg_integer(), size := non_neg_integer(),
                          size_change := integer()}.
-type category_growth() :: #{category := atom(), bytes := non_neg_integer(),
                             change := integer(), rate := float()}.
%% A process or table born or gone between the snapshots.
-type process_seen() :: #{pid := pid(), name := atom() | undefined,
                          memory := non_neg_integer(), message_queue_len := non_neg_integer(),
                          binary_bytes := non_neg_integer()}.
-type table_seen() :: #{table := atom() | ets:tid(), name := atom(), owner := pid(),
                        memory_bytes := non_neg_integer(), size := non_neg_integer()}.
-type born_or_gone() :: #{process_count := non_neg_integer(), processes := [process_seen()],
                          table_count := non_neg_integer(), tables := [table_seen()]}.
-type diff() :: #{node := node(), interval_ms := integer(),
                  processes := [process_growth()], tables := [table_growth()],
                  memory := [category_growth()],
                  counts := #{atom() => #{value := non_neg_integer(), change := integer()}},
                  born := born_or_gone(), gone := born_or_gone()}.
-export_type([snapshot/0, diff/0, process_growth/0, table_growth/0, category_growth/0]).

%% @doc Takes a snapshot of this node. Options: `binaries' (default `true'):
%% also record each process's off-heap binary bytes, which costs a
%% `process_info(P, binary)' list per process.
-spec snapshot(list() | map()) -> snapshot().
snapshot(Options) ->
    Opts = mem_probe_args:options(?FN_SNAPSHOT, Options, [{binaries, fun is_boolean/1}]),
    Binaries = maps:get(binaries, Opts, true),
    Items = case Binaries of
                true -> [memory, message_queue_len, binary, reductions];
                false -> [memory, message_queue_len, reductions]
            end,
    Time = erlang:monotonic_time(millisecond),
    Procs = processes(Items),
    #{'$mem_probe_snapshot' => 1,
      node => node(),
      taken_at => Time,
      system_time => os:system_time(millisecond),
      memory => maps:from_list(erlang:memory()),
      processes => Procs,
      names => maps:from_list([{Pid, Name} || Name <- registered(),
                                               Pid <- [whereis(Name)], is_pid(Pid)]),
      tables => tables(),
      counts => counts(),
      binaries => Binaries}.

%% Per process: {Memory, MessageQueueLen, BinaryBytes, Reductions}, bytes.
%% One process_info call per process; dead ones are skipped.
processes(Items) ->
    lists:foldl(
      fun(Pid, Acc) ->
              case erlang:process_info(Pid, Items) of
                  undefined -> Acc;
                  Info -> Acc#{Pid => process_entry(Info)}
              end
      end, #{}, erlang:processes()).

process_entry([{memory, M}, {message_queue_len, Q}, {binary, Bins}, {reductions, R}]) ->
    {M, Q, mem_probe_scan:binary_bytes(Bins), R};
process_entry([{memory, M}, {message_queue_len, Q}, {reductions, R}]) ->
    {M, Q, 0, R}.

tables() ->
    Word = erlang:system_info(wordsize),
    lists:foldl(
      fun(T, Acc) ->
              case ets_info(T) of
                  undefined -> Acc;
                  {Memory, Size, Name, Owner} -> Acc#{T => {Memory * Word, Size, Name, Owner}}
              end
      end, #{}, ets:all()).

%% One table's numbers, or undefined when it was deleted meanwhile.
ets_info(T) ->
    Info = [mem_probe_scan:ets_info(T, Item) || Item <- [memory, size, name, owner]],
    case lists:member(undefined, Info) of
        true -> undefined;
        false -> list_to_tuple(Info)
    end.

counts() ->
    #{process_count => erlang:system_info(process_count),
      process_limit => erlang:system_info(process_limit),
      port_count => erlang:system_info(port_count),
      port_limit => erlang:system_info(port_limit),
      atom_count => erlang:system_info(atom_count),
      atom_limit => erlang:system_info(atom_limit)}.

%% @doc Bytes a snapshot takes on the heap (flat, as a copy would).
-spec size_bytes(snapshot()) -> non_neg_integer().
size_bytes(Snapshot) ->
    mem_probe_sizes:flat_size(Snapshot) * erlang:system_info(wordsize).

%% @doc What grew most between two snapshots of the same node, largest growth
%% first, `N' entries per list: `processes' (by memory change), `tables' (by
%% memory change), `memory' (every `erlang:memory' category), `born' and `gone'.
%% Each growth entry has its identity, `change' (bytes) and `rate' (bytes per
%% second).
%%
%% Given two `#{Node => Snapshot}' maps (from `snapshot/1' with `nodes'), it
%% diffs node by node: `#{Node => Diff}' for the nodes in both, and
%% `{error, Reason}' for a node whose snapshot is an error or missing.
-spec diff(snapshot() | #{node() => term()}, snapshot() | #{node() => term()},
           non_neg_integer()) -> diff() | #{node() => diff() | {error, term()}}.
diff(Older, Newer, N) when is_map(Older), is_map(Newer),
                           not is_map_key('$mem_probe_snapshot', Older),
                           not is_map_key('$mem_probe_snapshot', Newer),
                           map_size(Older) > 0, map_size(Newer) > 0 ->
    case lists:all(fun is_atom/1, maps:keys(Older) ++ maps:keys(Newer)) of
        true -> cluster_diff(Older, Newer, N);
        false -> diff_one(Older, Newer, N)
    end;
diff(Older, Newer, N) ->
    diff_one(Older, Newer, N).

cluster_diff(Older, Newer, N) ->
    maps:from_list(
      [{Node, case {maps:get(Node, Older, missing), maps:get(Node, Newer, missing)} of
                  {{error, _} = E, _} -> E;
                  {_, {error, _} = E} -> E;
                  {missing, _} -> {error, no_older_snapshot};
                  {_, missing} -> {error, no_newer_snapshot};
                  {A, B} -> diff_one(A, B, N)
              end}
       || Node <- lists:usort(maps:keys(Older) ++ maps:keys(Newer))]).

diff_one(Older, Newer, N) ->
    check_snapshot(older, Older),
    check_snapshot(newer, Newer),
    mem_probe_args:non_neg_integer(?FN_DIFF, "n", N),
    #{node := NodeA, taken_at := T0} = Older,
    #{node := NodeB, taken_at := T1} = Newer,
    NodeA =:= NodeB orelse
        mem_probe_args:bad(?FN_DIFF, io_lib:format("snapshots come from different nodes (~p and ~p)",
                                                   [NodeA, NodeB]),
                           "two snapshots of the same node"),
    T1 >= T0 orelse
        mem_probe_args:bad(?FN_DIFF, "the newer snapshot was taken before the older one",
                           "older first, newer second"),
    Seconds = max(T1 - T0, 1) / 1000,
    {Procs, ProcsBorn, ProcsGone} = diff_processes(Older, Newer, N, Seconds),
    {Tables, TablesBorn, TablesGone} = diff_tables(Older, Newer, N, Seconds),
    #{node => NodeB,
      interval_ms => T1 - T0,
      processes => Procs,
      tables => Tables,
      memory => diff_memory(Older, Newer, Seconds),
      counts => diff_counts(Older, Newer),
      born => #{process_count => element(1, ProcsBorn), processes => element(2, ProcsBorn),
                table_count => element(1, TablesBorn), tables => element(2, TablesBorn)},
      gone => #{process_count => element(1, ProcsGone), processes => element(2, ProcsGone),
                table_count => element(1, TablesGone), tables => element(2, TablesGone)}}.

check_snapshot(_, #{'$mem_probe_snapshot' := 1, node := _, taken_at := _, processes := _,
                    tables := _}) ->
    ok;
check_snapshot(Which, Other) ->
    mem_probe_args:bad(?FN_DIFF, io_lib:format("the ~s argument is not a snapshot: ~0tP",
                                               [Which, Other, 5]),
                       "maps returned by mem_probe:snapshot/1").

diff_processes(#{processes := Old, names := OldNames}, #{processes := New, names := NewNames},
               N, Seconds) ->
    Name = fun(Pid) -> maps:get(Pid, NewNames, maps:get(Pid, OldNames, undefined)) end,
    {Grown, Born} =
        maps:fold(
          fun(Pid, {M1, Q1, B1, R1} = Now, {GrownAcc, BornAcc}) ->
                  case Old of
                      #{Pid := {M0, Q0, B0, R0}} ->
                          {[{M1 - M0, Pid, {M1, M1 - M0, Q1, Q1 - Q0, B1, B1 - B0, R1 - R0}}
                            | GrownAcc], BornAcc};
                      _ ->
                          {GrownAcc, [{M1, Pid, Now} | BornAcc]}
                  end
          end, {[], []}, New),
    Gone = [{M0, Pid, Then} || {Pid, {M0, _, _, _} = Then} <- maps:to_list(Old),
                               not is_map_key(Pid, New)],
    Entries =
        [#{pid => Pid, name => Name(Pid), change => Change, rate => rate(Change, Seconds),
           memory => M, message_queue_len => Q, message_queue_change => DQ,
           binary_bytes => B, binary_change => DB, reductions_change => DR}
         || {Change, Pid, {M, Change, Q, DQ, B, DB, DR}} <- mem_probe_scan:top(Grown, N)],
    Describe = fun({Bytes, Pid, {_, Q, B, _}}) ->
                       #{pid => Pid, name => Name(Pid), memory => Bytes,
                         message_queue_len => Q, binary_bytes => B}
               end,
    {Entries, {length(Born), [Describe(E) || E <- mem_probe_scan:top(Born, N)]},
     {length(Gone), [Describe(E) || E <- mem_probe_scan:top(Gone, N)]}}.

diff_tables(#{tables := Old}, #{tables := New}, N, Seconds) ->
    Grown = [{M1 - M0, T, {Name, Owner, M1, S1, S1 - S0}}
             || {T, {M1, S1, Name, Owner}} <- maps:to_list(New),
                {M0, S0, _, _} <- [maps:get(T, Old, undefined)]],
    Entries = [#{table => T, name => Name, owner => Owner, change => Change,
                 rate => rate(Change, Seconds), memory_bytes => M, size => S,
                 size_change => DS}
               || {Change, T, {Name, Owner, M, S, DS}} <- mem_probe_scan:top(Grown, N)],
    Describe = fun({M, T, {S, Name, Owner}}) ->
                       #{table => T, name => Name, owner => Owner, memory_bytes => M, size => S}
               end,
    Born = [{M, T, {S, Name, Owner}} || {T, {M, S, Name, Owner}} <- maps:to_list(New),
                                        not is_map_key(T, Old)],
    Gone = [{M, T, {S, Name, Owner}} || {T, {M, S, Name, Owner}} <- maps:to_list(Old),
                                        not is_map_key(T, New)],
    {Entries, {length(Born), [Describe(E) || E <- mem_probe_scan:top(Born, N)]},
     {length(Gone), [Describe(E) || E <- mem_probe_scan:top(Gone, N)]}}.

diff_memory(#{memory := Old}, #{memory := New}, Seconds) ->
    Changes = [#{category => C, bytes => Bytes, change => Bytes - maps:get(C, Old, 0),
                 rate => rate(Bytes - maps:get(C, Old, 0), Seconds)}
               || {C, Bytes} <- maps:to_list(New)],
    lists:sort(fun(A, B) -> maps:get(change, A) >= maps:get(change, B) end, Changes).

diff_counts(#{counts := Old}, #{counts := New}) ->
    maps:map(fun(K, V) -> #{value => V, change => V - maps:get(K, Old, V)} end, New).

rate(Change, Seconds) -> Change / Seconds.
