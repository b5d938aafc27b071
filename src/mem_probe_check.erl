%%% @doc Health checks: which limit broke, by how much, and who broke it.
%%%
%%% Built for an HTTP health endpoint called every few seconds: it never raises
%%% because a process or table vanished, it reads only what the given limits
%%% need (node-wide numbers are O(1); per-process limits cost one
%%% `process_info' call per process; per-table limits one `ets:info' per
%%% table), and it stops scanning when its time budget is spent, saying so in
%%% the report (`complete => false') rather than answering late.
%%%
%%% Limits (a map or keyword list):
%%% <ul>
%%% <li>`max_total_bytes' — `erlang:memory(total)'.</li>
%%% <li>`max_category_bytes' — a map of `erlang:memory/0' category to bytes.</li>
%%% <li>`max_process_ratio', `max_atom_ratio' — count over the VM's limit, 0..1.</li>
%%% <li>`max_message_queue_len', `max_process_bytes' — any single process.</li>
%%% <li>`max_table_bytes' — any single ETS table (`ets:info(T, memory)' in
%%%     bytes; refc binaries stored in it are not part of that number, see
%%%     `mem_probe:top_tables/2' with `binaries').</li>
%%% <li>`budget_ms' — the time budget of the whole check (default 100).</li>
%%% </ul>
%%% A violation names the limit, its value, the measured value and the culprit
%%% (the worst offender), with the number of offenders.
-module(mem_probe_check).

-export([check/1, limit_keys/0]).

-export_type([check_report/0, violation/0, culprit/0]).

-type counts() :: #{process_count := non_neg_integer(), process_limit := pos_integer(),
                    atom_count := non_neg_integer(), atom_limit := pos_integer()}.
%% What broke a limit: a process, a table, a memory category, or (for a
%% ratio limit) the count against the VM's limit.
-type culprit() :: #{pid := pid(), name := atom() | undefined}
                 | #{table := atom() | ets:tid(), name := atom() | undefined}
                 | #{category := atom()}
                 | #{count := non_neg_integer(), limit := pos_integer()}.
%% `offenders' (how many broke it) for the process and table limits.
-type violation() :: #{limit := atom(), max := number(), value := number(),
                       culprit := culprit(), offenders => pos_integer()}.
-type check_report() :: #{memory := #{atom() => non_neg_integer()}, counts := counts(),
                          processes_checked := non_neg_integer(), complete := boolean(),
                          elapsed_ms := integer()}.

-define(FN, "check/1").

-define(CATEGORIES, [total, processes, processes_used, system, atom, atom_used, binary,
                     code, ets]).

%% @doc The accepted limit keys.
-spec limit_keys() -> [atom()].
limit_keys() ->
    [max_total_bytes, max_category_bytes, max_process_ratio, max_atom_ratio,
     max_message_queue_len, max_process_bytes, max_table_bytes, budget_ms].

%% @doc `{ok, Report}' or `{error, Violations}'.
-spec check(map() | list()) -> {ok, check_report()} | {error, [violation()]}.
check(Limits) ->
    L = mem_probe_args:options(?FN, Limits, [{K, checker(K)} || K <- limit_keys()]),
    Started = erlang:monotonic_time(millisecond),
    Deadline = Started + maps:get(budget_ms, L, 100),
    Memory = maps:from_list(erlang:memory()),
    Counts = #{process_count => erlang:system_info(process_count),
               process_limit => erlang:system_info(process_limit),
               atom_count => erlang:system_info(atom_count),
               atom_limit => erlang:system_info(atom_limit)},
    {ProcViolations, ProcsComplete, Checked} = process_limits(L, Deadline),
    {TableViolations, TablesComplete} = table_limits(L, Deadline),
    Violations = memory_limits(L, Memory) ++ ratio_limits(L, Counts)
        ++ ProcViolations ++ TableViolations,
    Report = #{memory => Memory, counts => Counts,
               processes_checked => Checked,
               complete => ProcsComplete andalso TablesComplete,
               elapsed_ms => erlang:monotonic_time(millisecond) - Started},
    case Violations of
        [] -> {ok, Report};
        _ -> {error, Violations}
    end.

checker(max_category_bytes) ->
    fun(M) when is_map(M) -> category_map_ok(maps:to_list(M));
       (L) when is_list(L) -> category_map_ok(L);
       (_) -> false
    end;
checker(K) when K =:= max_process_ratio; K =:= max_atom_ratio ->
    fun(R) -> is_number(R) andalso R >= 0 end;
checker(budget_ms) ->
    fun(B) -> is_integer(B) andalso B > 0 end;
checker(_) ->
    fun(B) -> is_integer(B) andalso B >= 0 end.

category_map_ok(Pairs) ->
    lists:all(fun({C, B}) -> lists:member(C, ?CATEGORIES) andalso is_integer(B) andalso B >= 0;
                 (_) -> false
              end, Pairs).

memory_limits(L, Memory) ->
    Total = case L of
                #{max_total_bytes := Max} ->
                    over(max_total_bytes, Max, maps:get(total, Memory), #{category => total});
                _ -> []
            end,
    Categories = case L of
                     #{max_category_bytes := Cats} ->
                         lists:append([over(max_category_bytes, Max, maps:get(C, Memory, 0),
                                            #{category => C})
                                       || {C, Max} <- pairs(Cats)]);
                     _ -> []
                 end,
    Total ++ Categories.

pairs(M) when is_map(M) -> maps:to_list(M);
pairs(L) -> L.

ratio_limits(L, #{process_count := P, process_limit := PL, atom_count := A, atom_limit := AL}) ->
    Procs = case L of
                #{max_process_ratio := R} -> over(max_process_ratio, R, P / PL,
                                                  #{count => P, limit => PL});
                _ -> []
            end,
    Atoms = case L of
                #{max_atom_ratio := R2} -> over(max_atom_ratio, R2, A / AL,
                                                #{count => A, limit => AL});
                _ -> []
            end,
    Procs ++ Atoms.

over(Limit, Max, Value, Culprit) when Value > Max ->
    [#{limit => Limit, max => Max, value => Value, culprit => Culprit}];
over(_, _, _, _) ->
    [].

%% One pass over processes, only when a per-process limit is set. It runs
%% in a short-lived process (the caller, often a long-lived health endpoint,
%% keeps no garbage) split over parallel workers (mem_probe_scan).
process_limits(L, Deadline) ->
    Items = [I || {K, I} <- [{max_process_bytes, memory},
                             {max_message_queue_len, message_queue_len}],
                  is_map_key(K, L)],
    case Items of
        [] ->
            {[], true, 0};
        _ ->
            mem_probe_scan:isolated(
              fun() ->
                      Parts = mem_probe_scan:parallel(
                                mem_probe_scan:processes(),
                                fun(Chunk) -> scan_processes(Chunk, Items, L, Deadline, #{}, 0) end),
                      merge(Parts)
              end)
    end.

merge(Parts) ->
    {Worst, Complete, Checked} = lists:foldl(
      fun({PartWorst, PartComplete, PartChecked}, {AllWorst, AllComplete, AllChecked}) ->
              {maps:fold(fun add_offenders/3, AllWorst, PartWorst),
               AllComplete andalso PartComplete, AllChecked + PartChecked}
      end, {#{}, true, 0}, Parts),
    {process_violations(Worst), Complete, Checked}.

%% Worst offender and offender count per limit; stops at the deadline
%% (checked every 1000 processes).
scan_processes([], _Items, _L, _Deadline, Worst, Checked) ->
    {Worst, true, Checked};
scan_processes(Pids, Items, L, Deadline, Worst, Checked)
  when Checked rem 1000 =:= 0, Checked > 0 ->
    case erlang:monotonic_time(millisecond) > Deadline of
        true -> {Worst, false, Checked};
        false -> scan_one(Pids, Items, L, Deadline, Worst, Checked)
    end;
scan_processes(Pids, Items, L, Deadline, Worst, Checked) ->
    scan_one(Pids, Items, L, Deadline, Worst, Checked).

scan_one([Pid | Rest], Items, L, Deadline, Worst, Checked) ->
    Worst1 = case erlang:process_info(Pid, Items) of
                 undefined -> Worst; % died meanwhile: not a violation, not a crash
                 Info -> lists:foldl(fun(Item, W) -> note(Pid, Item, L, W) end, Worst, Info)
             end,
    scan_processes(Rest, Items, L, Deadline, Worst1, Checked + 1).

note(Pid, {memory, Bytes}, #{max_process_bytes := Max}, W) when Bytes > Max ->
    worse(max_process_bytes, Max, Bytes, Pid, W);
note(Pid, {message_queue_len, Len}, #{max_message_queue_len := Max}, W) when Len > Max ->
    worse(max_message_queue_len, Max, Len, Pid, W);
note(_, _, _, W) ->
    W.

worse(Limit, Max, Value, Culprit, W) ->
    add_offenders(Limit, {Value, Culprit, Max, 1}, W).

%% The worst-offender table: per limit `{WorstValue, Culprit, Max, Count}'.
%% Adds `Count' offenders whose worst is `Value' (one from a scan, or a
%% worker's whole tally when the parts are merged).
add_offenders(Limit, {Value, Culprit, Max, Count}, W) ->
    case W of
        #{Limit := {Worst, WorstCulprit, _, Seen}} when Worst >= Value ->
            W#{Limit := {Worst, WorstCulprit, Max, Seen + Count}};
        #{Limit := {_, _, _, Seen}} ->
            W#{Limit := {Value, Culprit, Max, Seen + Count}};
        _ ->
            W#{Limit => {Value, Culprit, Max, Count}}
    end.

process_violations(Worst) ->
    [#{limit => Limit, max => Max, value => Value, offenders => Count,
       culprit => #{pid => Pid, name => mem_probe_scan:registered_name(Pid)}}
     || {Limit, {Value, Pid, Max, Count}} <- lists:sort(maps:to_list(Worst))].

table_limits(#{max_table_bytes := Max}, Deadline) ->
    Word = erlang:system_info(wordsize),
    {Worst, Complete} =
        lists:foldl(
          fun(_T, {W, false}) -> {W, false};
             (T, {W, true}) ->
                  Complete = erlang:monotonic_time(millisecond) =< Deadline,
                  case Complete andalso mem_probe_scan:ets_info(T, memory) of
                      false -> {W, false};
                      undefined -> {W, true};
                      Words when Words * Word > Max ->
                          {worse(max_table_bytes, Max, Words * Word, T, W), true};
                      _ -> {W, true}
                  end
          end, {#{}, true}, ets:all()),
    Violations = [#{limit => max_table_bytes, max => M, value => V, offenders => C,
                    culprit => #{table => T, name => mem_probe_scan:ets_info(T, name)}}
                  || {_, {V, T, M, C}} <- maps:to_list(Worst)],
    {Violations, Complete};
table_limits(_, _) ->
    {[], true}.
