%%% @doc A continuous leak watcher: samples the node's memory by itself,
%%% finds sustained growth per process, ETS table and memory category,
%%% forecasts when the node reaches its limit, and tells (OTP alarms, a
%%% logger warning, `telemetry' events, a callback).
%%%
%%% == What it samples, every `interval' ==
%%% <ul>
%%% <li>`erlang:memory/0': the total and every category (but
%%%     `processes_used' and `atom_used', parts of `processes' and `atom');</li>
%%% <li>every ETS table's `memory' (bytes) and `size' (objects), the
%%%     `max_tables' largest when there are more;</li>
%%% <li>the memory of the processes that matter: the current top `top' by
%%%     memory (one `mem_probe_procs:top_processes/3' scan, the one cost that
%%%     grows with the node) plus every process already followed, read one by
%%%     one.</li>
%%% </ul>
%%% Each series is a ring of its last `window' samples. The watcher's own
%%% memory is bounded by `window' times the number of series, which is at
%%% most `max_processes + max_tables' plus the categories; `info/1' reports
%%% it.
%%%
%%% == What is a finding ==
%%% A series whose floor (the minimum of each sub-window of `floor_ms')
%%% rises significantly, over at least `min_span', at `min_bytes_per_s' or
%%% more and by `min_growth' of where it started; see `mem_probe_trend' for
%%% the statistics. A finding clears with hysteresis: when its floor has
%%% stopped rising (`mem_probe_trend:still_growing/2'), or at once when its
%%% process exits or its table is deleted.
%%%
%%% A process that restarts keeps its series: a process with a registered
%%% name is followed by that name, and a new process whose initial call is
%%% that of a followed process that has exited takes over its series
%%% (processes spawned from a fun all have the initial call
%%% `erlang:apply/2' and are never matched that way).
%%%
%%% == The forecast ==
%%% The limit is `limit_bytes' when given, else the cgroup's memory limit
%%% (v2 `memory.max', v1 `memory.limit_in_bytes'), else the machine's memory
%%% (`MemTotal' of /proc/meminfo). A finding's `forecast_ms' is the time
%%% until `erlang:memory(total)' reaches the limit if its growth goes on at
%%% its rate and the rest of the node stays as it is; `info/1' adds the
%%% total's own trend and each finding's share of it. (The limit is compared
%%% with what the VM has allocated; the operating system sees its carriers,
%%% a little more.)
%%%
%%% == How it tells ==
%%% For each new finding: `alarm_handler:set_alarm({{mem_probe_leak, Id},
%%% Finding})' (cleared with the finding, and when the watcher stops; sasl's
%%% alarm handler is started if it does not run, or `{alarms, false}'), one
%%% logger warning (at most 5 a minute, the rest counted in the next), the
%%% `telemetry' event `[mem_probe, watcher, finding]' when the `telemetry'
%%% module is loaded (called dynamically: MemProbe does not depend on it),
%%% and `on_finding(Finding)'. Callbacks run in the watcher: an exception in
%%% them is caught and counted. The watcher never takes
%%% `erlang:system_monitor/2' (a node has only one).
-module(mem_probe_watcher).
-behaviour(gen_server).

-export([start_link/0, start_link/1, start/1, stop/1, findings/1, info/1, tick/1,
         series/2, default_name/0, options/0, finding_text/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-export_type([finding/0, info/0, series/0]).

-type finding() :: #{kind := process | table | category | total,
                     id := pid() | atom() | ets:tid(),
                     name := term(),
                     bytes := non_neg_integer(),
                     rate := float(),
                     since := integer(),
                     forecast_ms := non_neg_integer() | undefined,
                     confidence := float()}.

%% info/1: what the watcher does and costs (`options' as given, less the
%% callback; `series' counts per kind).
-type info() :: #{options := map(), ticks := non_neg_integer(),
                  series := #{process | table | category | total => non_neg_integer()},
                  samples := non_neg_integer(), memory_bytes := non_neg_integer(),
                  last_tick_us := non_neg_integer(), max_tick_us := non_neg_integer(),
                  limit_bytes := non_neg_integer() | undefined,
                  limit_source := atom() | undefined,
                  total_bytes := non_neg_integer() | undefined,
                  total_rate := float() | undefined,
                  forecast_ms := non_neg_integer() | undefined,
                  shares := [#{kind := atom(), id := term(), share := float() | undefined}],
                  findings := non_neg_integer(), found := non_neg_integer(),
                  cleared := non_neg_integer(), alarms := on | off | {unavailable, term()},
                  callback_errors := non_neg_integer()}.
%% series/2: one followed series, samples `{SystemTimeMs, Bytes}' oldest
%% first, and the trend test on them now.
-type series() :: #{kind := process | table | category | total, id := term(), name := term(),
                    samples := [{integer(), number()}],
                    assessment := mem_probe_trend:assessment()}.

-define(FN, "mem_probe_watcher:start_link/1").
-define(DEFAULT_NAME, mem_probe_watcher).
-define(LOG_BURST, 5).
-define(LOG_PERIOD_MS, 60000).
%% v1 reports "no limit" as a huge number (2^63 rounded down to a page).
-define(NO_CGROUP_LIMIT, (1 bsl 60)).

-record(series, {kind :: process | table | category | total,
                 id :: term(),
                 name :: term(),
                 initial_call :: mfa() | undefined,
                 samples = [] :: [{integer(), integer()}],  % newest first
                 count = 0 :: non_neg_integer(),
                 size :: non_neg_integer() | undefined,     % ETS objects
                 alive = true :: boolean(),
                 seen = 0 :: non_neg_integer()}).           % tick of the last sample

-record(state, {opts :: map(),
                params :: map(),
                origin :: integer(),
                ticks = 0 :: non_neg_integer(),
                series = #{} :: #{term() => #series{}},
                pids = #{} :: #{pid() => term()},
                findings = #{} :: #{term() => finding()},
                limit :: {non_neg_integer(), atom()} | undefined,
                alarms :: on | off | {unavailable, term()},
                log_window = {0, 0, 0} :: {integer(), non_neg_integer(), non_neg_integer()},
                callback_errors = 0 :: non_neg_integer(),
                last_tick_us = 0 :: non_neg_integer(),
                max_tick_us = 0 :: non_neg_integer(),
                found = 0 :: non_neg_integer(),
                cleared = 0 :: non_neg_integer()}).

%%--------------------------------------------------------------------
%% API
%%--------------------------------------------------------------------

%% @doc `start_link([])'.
-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() -> start_link([]).

%% @doc Starts a watcher linked to the caller (for a supervision tree).
%% Options (a list or a map; times in milliseconds):
%% <ul>
%% <li>`name' — the local name to register (default `mem_probe_watcher',
%%     which `mem_probe:report/1' looks for); `undefined' for none;</li>
%% <li>`interval' — between samples (default 10000);</li>
%% <li>`window' — samples kept per series (default 60);</li>
%% <li>`top' — processes taken from the top by memory each time (default 20);</li>
%% <li>`floor_ms' — the sub-window whose minimum is a floor (default
%%     `6 * interval'); make it longer than the sawtooth of your largest
%%     processes;</li>
%% <li>`min_span' — the time growth must last (default half the window);</li>
%% <li>`min_bytes_per_s' (default 1024) and `min_growth' (a fraction of the
%%     first floor, default 0.1) — rates too small to matter;</li>
%% <li>`significance' — the false-alarm probability of one trend test
%%     (default 0.0001: a series is tested at every tick, all day; with the
%%     default window, 10 floors, that asks for a nearly monotone floor.
%%     0.001 finds more slow leaks under a large sawtooth and raises a false
%%     alarm every 15 series-days or so on the benchmark's healthy day);</li>
%% <li>`limit_bytes' — the memory limit for forecasts (default: detected);</li>
%% <li>`max_processes' (default `4 * top') and `max_tables' (default 1000) —
%%     the most series of each kind;</li>
%% <li>`alarms' (default `true'), `log' (default `true'), `on_finding' (a
%%     fun of one argument, called with each new finding).</li>
%% </ul>
-spec start_link(list() | map()) -> {ok, pid()} | {error, term()}.
start_link(Options) -> start(start_link, Options).

%% @doc As `start_link/1', not linked.
-spec start(list() | map()) -> {ok, pid()} | {error, term()}.
start(Options) -> start(start, Options).

%% Options are checked in the caller, so that misuse raises there.
start(How, Options) ->
    Opts = parse(Options),
    case maps:get(name, Opts) of
        undefined -> gen_server:How(?MODULE, Opts, []);
        Name -> gen_server:How({local, Name}, ?MODULE, Opts, [])
    end.

%% @doc Stops the watcher; its alarms are cleared.
-spec stop(pid() | atom()) -> ok.
stop(Watcher) -> gen_server:stop(Watcher).

%% @doc The current findings, most urgent first (the shortest forecast,
%% then the highest confidence): maps with `kind' (`process', `table',
%% `category' or `total'), `id' (the pid, the table, the category, `total'),
%% `name' (a process's registered name, else its initial call; a table's
%% name), `bytes' (now), `rate' (bytes/s), `since' (`erlang:system_time/1'
%% in milliseconds when the growth began, as first seen), `forecast_ms'
%% (`undefined' or the time to the limit) and `confidence' (0.0..1.0).
-spec findings(pid() | atom()) -> [finding()].
findings(Watcher) -> gen_server:call(Watcher, findings).

%% @doc What the watcher does and what it costs: options, ticks, series by
%% kind, samples held, its own memory, the last and longest tick, the
%% limit and where it came from, the total's forecast with each finding's
%% share, alarm state, counters.
-spec info(pid() | atom()) -> info().
info(Watcher) -> gen_server:call(Watcher, info).

%% @doc The series the watcher keeps for `Id' (a pid, a table, a category,
%% `total'), to see why it is or is not a finding: `kind', `id', `name',
%% `samples' (`[{SystemTimeMs, Bytes}]', oldest first) and `assessment'
%% (`mem_probe_trend:assess/2' now); `undefined' when it is not followed.
-spec series(pid() | atom(), term()) -> series() | undefined.
series(Watcher, Id) -> gen_server:call(Watcher, {series, Id}).

%% @doc Takes one sample now (besides the timer's) and returns the findings.
-spec tick(pid() | atom()) -> [finding()].
tick(Watcher) -> gen_server:call(Watcher, tick, infinity).

%% @doc The name a watcher registers by default.
-spec default_name() -> atom().
default_name() -> ?DEFAULT_NAME.

%% @doc The option names `start_link/1' accepts.
-spec options() -> [atom()].
options() -> [K || {K, _} <- checks()].

%%--------------------------------------------------------------------
%% Options
%%--------------------------------------------------------------------

checks() ->
    Pos = fun(V) -> is_integer(V) andalso V > 0 end,
    NonNeg = fun(V) -> is_number(V) andalso V >= 0 end,
    [{name, fun(V) -> is_atom(V) end},
     {interval, Pos},
     {window, fun(V) -> is_integer(V) andalso V >= 4 end},
     {top, Pos},
     {floor_ms, Pos},
     {min_span, fun(V) -> is_integer(V) andalso V >= 0 end},
     {min_bytes_per_s, NonNeg},
     {min_growth, NonNeg},
     {significance, fun(V) -> is_float(V) andalso V > 0 andalso V < 0.5 end},
     {limit_bytes, fun(V) -> V =:= undefined orelse (is_integer(V) andalso V > 0) end},
     {max_processes, Pos},
     {max_tables, fun(V) -> is_integer(V) andalso V >= 0 end},
     {alarms, fun is_boolean/1},
     {log, fun is_boolean/1},
     {on_finding, fun(V) -> V =:= undefined orelse is_function(V, 1) end}].

parse(Options) ->
    Given = mem_probe_args:options(?FN, Options, checks()),
    Name = case maps:get(name, Given, ?DEFAULT_NAME) of
               N when N =:= false; N =:= nil -> undefined;
               N -> N
           end,
    Interval = maps:get(interval, Given, 10000),
    Window = maps:get(window, Given, 60),
    Top = maps:get(top, Given, 20),
    maps:merge(#{interval => Interval, window => Window, top => Top,
                 floor_ms => 6 * Interval, min_span => Window * Interval div 2,
                 min_bytes_per_s => 1024, min_growth => 0.1, significance => 0.0001,
                 limit_bytes => undefined, max_processes => 4 * Top, max_tables => 1000,
                 alarms => true, log => true, on_finding => undefined},
               Given#{name => Name}).

%%--------------------------------------------------------------------
%% gen_server
%%--------------------------------------------------------------------

%% @private
init(Opts) ->
    %% Trapping exits makes a supervisor's shutdown run terminate/2, which
    %% clears the alarms.
    process_flag(trap_exit, true),
    Origin = erlang:monotonic_time(millisecond),
    State = #state{opts = Opts,
                   params = #{floor_ms => maps:get(floor_ms, Opts),
                              min_span => maps:get(min_span, Opts),
                              min_bytes_per_s => maps:get(min_bytes_per_s, Opts),
                              min_growth => maps:get(min_growth, Opts),
                              z => mem_probe_trend:z_for(maps:get(significance, Opts))},
                   origin = Origin,
                   limit = limit(maps:get(limit_bytes, Opts)),
                   alarms = alarms(maps:get(alarms, Opts))},
    self() ! tick,
    {ok, State}.

%% @private
handle_call(findings, _From, State) ->
    {reply, sorted(State), State};
handle_call(info, _From, State) ->
    {reply, describe(State), State};
handle_call({series, Id}, _From, State) ->
    {reply, series_of(Id, State), State};
handle_call(tick, _From, State) ->
    State1 = sample(State),
    {reply, sorted(State1), State1}.

%% @private
handle_cast(_Msg, State) ->
    {noreply, State}.

%% @private
handle_info(tick, #state{opts = #{interval := Interval}} = State) ->
    %% The next tick is counted from the start of this one, so the rate of
    %% sampling does not drift by the tick's own duration.
    erlang:send_after(Interval, self(), tick),
    {noreply, sample(State)};
handle_info(_Other, State) ->
    {noreply, State}.

%% @private
terminate(_Reason, #state{findings = Findings} = State) ->
    _ = [clear_alarm(State, F) || F <- maps:values(Findings)],
    ok.

%%--------------------------------------------------------------------
%% Sampling
%%--------------------------------------------------------------------

sample(#state{origin = Origin, ticks = Ticks} = State0) ->
    Started = erlang:monotonic_time(microsecond),
    Now = erlang:monotonic_time(millisecond) - Origin,
    Tick = Ticks + 1,
    State1 = State0#state{ticks = Tick},
    State2 = sample_memory(Now, Tick, State1),
    State3 = sample_tables(Now, Tick, State2),
    State4 = sample_processes(Now, Tick, State3),
    State5 = judge(Now, State4),
    Us = erlang:monotonic_time(microsecond) - Started,
    State5#state{last_tick_us = Us, max_tick_us = max(Us, State5#state.max_tick_us)}.

%% `processes_used' and `atom_used' are left out: they are parts of
%% `processes' and `atom' that grow with them, and would double a finding.
sample_memory(Now, Tick, State) ->
    lists:foldl(fun({Used, _}, S) when Used =:= processes_used; Used =:= atom_used ->
                        S;
                   ({total, Bytes}, S) ->
                        put_sample({total, total}, #series{kind = total, id = total,
                                                           name = total},
                                   Now, Tick, Bytes, S);
                   ({Category, Bytes}, S) ->
                        put_sample({category, Category},
                                   #series{kind = category, id = Category, name = Category},
                                   Now, Tick, Bytes, S)
                end, State, erlang:memory()).

sample_tables(Now, Tick, #state{opts = #{max_tables := Max}} = State) ->
    W = mem_probe_scan:wordsize(),
    Read = [{Words * W, T} || T <- ets:all(), Words <- [ets:info(T, memory)],
                              is_integer(Words)],
    Kept = case length(Read) > Max of
               true -> lists:sublist(lists:reverse(lists:sort(Read)), Max);
               false -> Read
           end,
    State1 = lists:foldl(
               fun({Bytes, T}, S) ->
                       %% A named table is named by its name (ets:all/0 gives the
                       %% name), so a table created again keeps its series.
                       case {ets:info(T, name), ets:info(T, size)} of
                           {undefined, _} -> S;
                           {_, undefined} -> S;
                           {Name, Size} ->
                               put_sample({table, T},
                                          #series{kind = table, id = T, name = Name},
                                          Now, Tick, Bytes, S, Size)
                       end
               end, State, Kept),
    %% Tables not read this tick are deleted (or fell out of max_tables).
    drop(fun(#series{kind = table, seen = Seen}) -> Seen =/= Tick;
            (_) -> false
         end, State1).

sample_processes(Now, Tick, #state{opts = #{top := K}} = State) ->
    Self = self(),
    Top = [E || #{pid := P} = E <- mem_probe_procs:top_processes(memory, K + 1, []),
                P =/= Self],
    State1 = lists:foldl(fun(E, S) -> top_sample(E, Now, Tick, S) end, State,
                         lists:sublist(Top, K)),
    State2 = maps:fold(fun(Key, #series{kind = process, seen = Seen} = Series, S)
                             when Seen =/= Tick ->
                               follow(Key, Series, Now, Tick, S);
                          (_, _, S) ->
                               S
                       end, State1, State1#state.series),
    bound_processes(State2).

%% A process of the top: its name's series, its own, an exited
%% predecessor's with the same initial call, or a new one. The name comes
%% first: a successor read before it registered got a series of its own,
%% which its name's series now absorbs. Sampled at most once a tick (a
%% restarting process and its successor can both be in the top).
top_sample(#{pid := Pid, value := Bytes, name := Name, initial_call := MFA}, Now, Tick,
           #state{series = Series, pids = Pids} = State0) ->
    Named = is_atom(Name) andalso Name =/= undefined,
    NameKey = {process, {name, Name}},
    {Key, State} =
        case Pids of
            #{Pid := K} when Named, K =/= NameKey, is_map_key(NameKey, Series) ->
                {NameKey, remove(K, State0)};
            #{Pid := K} ->
                {K, State0};
            _ when Named ->
                {NameKey, State0};
            _ ->
                {successor(MFA, Series, {process, Pid}), State0}
        end,
    case State#state.series of
        #{Key := #series{seen = Tick}} ->
            State;
        _ ->
            New = #series{kind = process, id = Pid, name = Name, initial_call = MFA},
            put_sample(Key, New, Now, Tick, Bytes, rebind(Key, Pid, Name, State))
    end.

successor({erlang, apply, 2}, _Series, Default) ->
    Default;
successor(MFA, Series, Default) ->
    Orphans = [K || {K, #series{kind = process, alive = false, initial_call = I}}
                        <- maps:to_list(Series), I =:= MFA],
    case Orphans of
        [K] -> K;
        _ -> Default
    end.

%% Points a process series at `Pid' (a restart keeps the series).
rebind(Key, Pid, Name, #state{series = Series, pids = Pids} = State) ->
    case Series of
        #{Key := #series{id = Pid}} ->
            State;
        #{Key := #series{id = Old} = S} ->
            State#state{series = Series#{Key => S#series{id = Pid, name = Name, alive = true}},
                        pids = (maps:remove(Old, Pids))#{Pid => Key}};
        _ ->
            State#state{pids = Pids#{Pid => Key}}
    end.

%% A followed process outside the top: read it alone. A named one that
%% exited is looked up by its name (restarted under it?).
follow(Key, #series{id = Pid, name = Name} = S, Now, Tick, State) ->
    case erlang:process_info(Pid, memory) of
        {memory, Bytes} ->
            put_sample(Key, S, Now, Tick, Bytes, State);
        undefined ->
            Next = case Key of
                       {process, {name, Name}} -> erlang:whereis(Name);
                       _ -> undefined
                   end,
            case is_pid(Next) andalso erlang:process_info(Next, memory) of
                {memory, Bytes} ->
                    State1 = rebind(Key, Next, Name, State),
                    put_sample(Key, S, Now, Tick, Bytes, State1);
                _ ->
                    exited(Key, S, Tick, State)
            end
    end.

%% An exited process keeps its series for a window, for a successor.
exited(Key, #series{seen = Seen} = S, Tick, #state{opts = #{window := Window}} = State) ->
    case Tick - Seen > Window of
        true -> remove(Key, State);
        false -> State#state{series = (State#state.series)#{Key => S#series{alive = false}}}
    end.

%% At most max_processes process series: the smallest ones that are not
%% findings go first.
bound_processes(#state{opts = #{max_processes := Max}, series = Series,
                       findings = Findings} = State) ->
    Procs = [{latest(S), K} || {K, #series{kind = process} = S} <- maps:to_list(Series)],
    Spare = lists:sort([P || {_, K} = P <- Procs, not is_map_key(K, Findings)]),
    case length(Procs) - Max of
        Over when Over > 0 ->
            lists:foldl(fun({_, K}, S) -> remove(K, S) end, State,
                        lists:sublist(Spare, Over));
        _ ->
            State
    end.

latest(#series{samples = [{_, V} | _]}) -> V;
latest(#series{samples = []}) -> 0.

put_sample(Key, New, Now, Tick, Bytes, State) ->
    put_sample(Key, New, Now, Tick, Bytes, State, undefined).

put_sample(Key, New, Now, Tick, Bytes, #state{series = Series,
                                              opts = #{window := Window}} = State, Size) ->
    S0 = maps:get(Key, Series, New),
    {Samples, Count} = case S0#series.count >= Window of
                           true -> {lists:droplast(S0#series.samples), Window - 1};
                           false -> {S0#series.samples, S0#series.count}
                       end,
    S = S0#series{samples = [{Now, Bytes} | Samples], count = Count + 1, seen = Tick,
                  alive = true, size = Size},
    State#state{series = Series#{Key => S}}.

remove(Key, #state{series = Series, pids = Pids} = State) ->
    case Series of
        #{Key := #series{kind = process, id = Pid}} ->
            State#state{series = maps:remove(Key, Series), pids = maps:remove(Pid, Pids)};
        _ ->
            State#state{series = maps:remove(Key, Series)}
    end.

drop(Pred, #state{series = Series} = State) ->
    maps:fold(fun(K, S, St) ->
                      case Pred(S) of
                          true -> remove(K, St);
                          false -> St
                      end
              end, State, Series).

%%--------------------------------------------------------------------
%% Findings
%%--------------------------------------------------------------------

judge(Now, #state{series = Series, findings = Findings0, params = P0} = State0) ->
    P = P0#{now => Now},
    Total = total(Series),
    %% Findings whose series is gone (exited, deleted) clear first.
    Gone = [K || K <- maps:keys(Findings0), not alive(maps:get(K, Series, undefined))],
    State1 = lists:foldl(fun(K, S) -> clear(K, S) end, State0, Gone),
    maps:fold(fun(Key, #series{alive = true} = S, St) -> judge_one(Key, S, Total, P, St);
                 (_, _, St) -> St
              end, State1, Series).

alive(#series{alive = Alive}) -> Alive;
alive(undefined) -> false.

judge_one(Key, #series{samples = Newest} = S, Total, P, #state{findings = Findings} = State) ->
    Samples = lists:reverse(Newest),
    case mem_probe_trend:verdict(Samples, P, is_map_key(Key, Findings)) of
        {raise, A} -> raise(Key, S, A, Total, P, State);
        keep -> update(Key, maps:get(Key, Findings), S, Samples, Total, P, State);
        clear -> clear(Key, State);
        none -> State
    end.

raise(Key, S, #{rate := Rate, confidence := C, start := Start}, Total,
      #{now := Now}, State) ->
    Since = erlang:system_time(millisecond) - (Now - Start),
    F = finding(S, Rate, C, Since, Total, State),
    State1 = State#state{findings = (State#state.findings)#{Key => F},
                         found = State#state.found + 1},
    tell(F, State1).

%% A finding still growing: its numbers now; a restarted process's new
%% pid moves its alarm.
update(Key, #{since := Since, id := OldId} = Old, S, Samples, Total, P, State) ->
    A = mem_probe_trend:assess(Samples, P),
    Rate = case A of
               #{rate := R} when is_float(R), R > 0 -> R;
               _ -> maps:get(rate, Old)
           end,
    F = finding(S, Rate, maps:get(confidence, A), Since, Total, State),
    State1 = State#state{findings = (State#state.findings)#{Key => F}},
    case maps:get(id, F) of
        OldId -> State1;
        _ -> clear_alarm(State1, Old), set_alarm(State1, F), State1
    end.

finding(#series{kind = Kind, id = Id, name = Name, initial_call = MFA} = S, Rate, C, Since,
        Total, #state{limit = Limit}) ->
    #{kind => Kind, id => Id,
      name => case {Kind, Name} of
                  {process, undefined} -> MFA;
                  _ -> Name
              end,
      bytes => latest(S), rate => Rate, since => Since,
      forecast_ms => forecast(Limit, Total, Rate), confidence => C}.

forecast(undefined, _Total, _Rate) -> undefined;
forecast(_Limit, _Total, Rate) when not is_number(Rate); Rate =< 0 -> undefined;
forecast({Limit, _}, Total, _Rate) when Total >= Limit -> 0;
forecast({Limit, _}, Total, Rate) -> round((Limit - Total) * 1000 / Rate).

total(#{{total, total} := S}) -> latest(S);
total(_) -> erlang:memory(total).

clear(Key, #state{findings = Findings} = State) ->
    case Findings of
        #{Key := F} ->
            clear_alarm(State, F),
            State#state{findings = maps:remove(Key, Findings),
                        cleared = State#state.cleared + 1};
        _ ->
            State
    end.

sorted(#state{findings = Findings}) ->
    Urgency = fun(#{forecast_ms := Ms, confidence := C, rate := R}) ->
                      {case Ms of undefined -> infinity; _ -> Ms end, -C, -R}
              end,
    %% Numbers sort before atoms: a forecast before `infinity'.
    [F || {_, F} <- lists:sort([{Urgency(F), F} || F <- maps:values(Findings)])].

%%--------------------------------------------------------------------
%% Telling
%%--------------------------------------------------------------------

tell(F, State0) ->
    set_alarm(State0, F),
    State1 = log(F, State0),
    telemetry(F),
    callback(F, State1).

alarms(false) ->
    off;
alarms(true) ->
    case erlang:whereis(alarm_handler) of
        undefined ->
            case application:ensure_all_started(sasl) of
                {ok, _} -> on;
                {error, Reason} -> {unavailable, Reason}
            end;
        _ ->
            on
    end.

set_alarm(#state{alarms = on}, #{id := Id} = F) ->
    ignore_failure(fun() -> alarm_handler:set_alarm({{mem_probe_leak, Id}, F}) end);
set_alarm(_, _) ->
    ok.

clear_alarm(#state{alarms = on}, #{id := Id}) ->
    ignore_failure(fun() -> alarm_handler:clear_alarm({mem_probe_leak, Id}) end);
clear_alarm(_, _) ->
    ok.

%% An alarm handler or a telemetry handler that fails must not stop the
%% watcher (try, not `catch Expr': OTP 29 deprecates the latter).
ignore_failure(Fun) ->
    try Fun() of
        _ -> ok
    catch
        _:_ -> ok
    end.

log(_F, #state{opts = #{log := false}} = State) ->
    State;
log(F, #state{log_window = {Start, Logged, Suppressed}} = State) ->
    Now = erlang:monotonic_time(millisecond),
    case Now - Start >= ?LOG_PERIOD_MS of
        true ->
            warn(F, Suppressed),
            State#state{log_window = {Now, 1, 0}};
        false when Logged < ?LOG_BURST ->
            warn(F, 0),
            State#state{log_window = {Start, Logged + 1, Suppressed}};
        false ->
            State#state{log_window = {Start, Logged, Suppressed + 1}}
    end.

warn(F, Suppressed) ->
    logger:warning("mem_probe_watcher: ~ts~s",
                   [finding_text(F, []),
                    case Suppressed of
                        0 -> "";
                        _ -> io_lib:format(" (~b more findings not logged)", [Suppressed])
                    end],
                   #{domain => [mem_probe, watcher]}).

%% @doc One finding as a line of text (options as `mem_probe_format:format/2'):
%% what grows, how much it holds, how fast, for how long, and the forecast.
-spec finding_text(finding(), list() | map()) -> unicode:chardata().
finding_text(#{kind := Kind, id := Id, name := Name, bytes := Bytes, rate := Rate,
               since := Since, forecast_ms := Forecast, confidence := C}, Opts) ->
    Text = fun(V) -> mem_probe_format:value_text(V, Opts) end,
    What = case Kind of
               process when is_atom(Name), Name =/= undefined, Name =/= nil ->
                   [Text(Name), " ", Text(Id)];
               process -> [Text(Id), " ", Text(Name)];
               table -> ["table ", Text(Name)];
               category -> ["memory category ", Text(Id)];
               total -> "total memory"
           end,
    Ago = max(0, erlang:system_time(millisecond) - Since),
    [What, " holds ", mem_probe_format:human_bytes(Bytes), ", growing ",
     mem_probe_format:human_bytes(round(Rate)), "/s for ", duration(Ago),
     case is_integer(Forecast) of
         false -> "; no memory limit known";
         true -> ["; at this rate the node reaches its memory limit in ", duration(Forecast)]
     end,
     io_lib:format(" (confidence ~.1f%)", [C * 100])].

duration(Ms) when Ms < 60000 -> io_lib:format("~b s", [Ms div 1000]);
duration(Ms) when Ms < 3600000 -> io_lib:format("~b min", [Ms div 60000]);
duration(Ms) when Ms < 172800000 -> io_lib:format("~.1f h", [Ms / 3600000]);
duration(Ms) -> io_lib:format("~.1f days", [Ms / 86400000]).

%% Called dynamically: MemProbe does not depend on telemetry.
telemetry(#{bytes := Bytes, rate := Rate, forecast_ms := Forecast} = F) ->
    Mod = telemetry,
    case erlang:function_exported(Mod, execute, 3) of
        true ->
            ignore_failure(fun() ->
                                   Mod:execute([mem_probe, watcher, finding],
                                               #{bytes => Bytes, rate => Rate,
                                                 forecast_ms => Forecast}, F)
                           end);
        false ->
            ok
    end.

callback(F, #state{opts = #{on_finding := Fun}} = State) when is_function(Fun, 1) ->
    try Fun(F) of
        _ -> State
    catch
        _:_ -> State#state{callback_errors = State#state.callback_errors + 1}
    end;
callback(_F, State) ->
    State.

%%--------------------------------------------------------------------
%% The limit
%%--------------------------------------------------------------------

limit(Bytes) when is_integer(Bytes) ->
    {Bytes, limit_bytes};
limit(undefined) ->
    first([fun cgroup2/0, fun cgroup1/0, fun meminfo/0]).

first([]) -> undefined;
first([F | Fs]) ->
    case F() of
        undefined -> first(Fs);
        Limit -> Limit
    end.

cgroup2() ->
    case read_integer("/sys/fs/cgroup/memory.max") of
        N when is_integer(N) -> {N, cgroup};
        _ -> undefined
    end.

cgroup1() ->
    case read_integer("/sys/fs/cgroup/memory/memory.limit_in_bytes") of
        N when is_integer(N), N < ?NO_CGROUP_LIMIT -> {N, cgroup};
        _ -> undefined
    end.

meminfo() ->
    case file:read_file("/proc/meminfo") of
        {ok, Text} ->
            case re:run(Text, "^MemTotal:\\s+(\\d+) kB", [multiline, {capture, [1], list}]) of
                {match, [Kb]} -> {list_to_integer(Kb) * 1024, machine};
                nomatch -> undefined
            end;
        {error, _} ->
            undefined
    end.

%% "max" (no limit) and unreadable files are undefined.
read_integer(Path) ->
    case file:read_file(Path) of
        {ok, Text} ->
            case string:to_integer(string:trim(binary_to_list(Text))) of
                {N, []} when is_integer(N), N > 0 -> N;
                _ -> undefined
            end;
        {error, _} ->
            undefined
    end.

%%--------------------------------------------------------------------
%% info
%%--------------------------------------------------------------------

describe(#state{opts = Opts, series = Series, findings = Findings, limit = Limit,
                ticks = Ticks} = State) ->
    Kinds = lists:foldl(fun(#series{kind = K}, Acc) -> Acc#{K => maps:get(K, Acc, 0) + 1} end,
                        #{process => 0, table => 0, category => 0, total => 0},
                        maps:values(Series)),
    Total = total(Series),
    TotalRate = total_rate(State),
    #{options => maps:remove(on_finding, Opts),
      ticks => Ticks,
      series => Kinds,
      samples => lists:sum([C || #series{count = C} <- maps:values(Series)]),
      memory_bytes => element(2, erlang:process_info(self(), memory)),
      last_tick_us => State#state.last_tick_us,
      max_tick_us => State#state.max_tick_us,
      limit_bytes => case Limit of {B, _} -> B; undefined -> undefined end,
      limit_source => case Limit of {_, Src} -> Src; undefined -> undefined end,
      total_bytes => Total,
      total_rate => TotalRate,
      forecast_ms => forecast(Limit, Total, TotalRate),
      shares => [#{kind => K, id => Id, share => share(R, TotalRate)}
                 || #{kind := K, id := Id, rate := R} <- sorted(State), K =/= total],
      findings => map_size(Findings),
      found => State#state.found,
      cleared => State#state.cleared,
      alarms => State#state.alarms,
      callback_errors => State#state.callback_errors}.

series_of(Id, #state{series = Series, params = P, origin = Origin}) ->
    case [S || #series{id = I} = S <- maps:values(Series), I =:= Id] of
        [#series{kind = Kind, name = Name, samples = Newest} | _] ->
            Now = erlang:monotonic_time(millisecond) - Origin,
            Wall = erlang:system_time(millisecond),
            Samples = lists:reverse(Newest),
            #{kind => Kind, id => Id, name => Name,
              samples => [{Wall - (Now - T), V} || {T, V} <- Samples],
              assessment => mem_probe_trend:assess(Samples, P#{now => Now})};
        [] ->
            undefined
    end.

%% The total's floor slope in bytes/s, whether or not it is a finding.
total_rate(#state{series = #{{total, total} := #series{samples = Newest}},
                  params = P, origin = Origin}) ->
    Now = erlang:monotonic_time(millisecond) - Origin,
    case mem_probe_trend:assess(lists:reverse(Newest), P#{now => Now}) of
        #{rate := R} when is_float(R) -> R;
        _ -> undefined
    end;
total_rate(_) ->
    undefined.

share(Rate, Total) when is_float(Total), Total > 0 -> min(1.0, Rate / Total);
share(_, _) -> undefined.
