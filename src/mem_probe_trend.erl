%%% @doc Sustained growth in a memory series, told apart from noise; the
%%% statistics behind `mem_probe_watcher', pure functions on lists.
%%%
%%% A memory series is a floor with noise on top: a process's heap climbs
%%% until a collection drops it, a mailbox fills and drains, a cache churns.
%%% A leak is a floor that keeps rising. So, as JDK Mission Control looks at
%%% the heap after collections, the detector looks at the series' floor:
%%% <ol>
%%% <li>the samples are cut into sub-windows of `floor_ms' (aligned on the
%%%     clock, so every series shares them) and each complete sub-window
%%%     gives its minimum (`floors/3'): a sawtooth or a burst shorter than a
%%%     sub-window leaves no trace;</li>
%%% <li>the floors' slope is the Theil–Sen estimator (`theil_sen/1', the
%%%     median of the pairwise slopes): a few wild floors cannot tilt it,
%%%     where least squares (Prometheus `predict_linear') follows the last
%%%     spike;</li>
%%% <li>the rise must be significant: the Mann–Kendall test
%%%     (`mann_kendall/1', with its correction for ties) asks how likely so
%%%     many rising pairs of floors would be if the floor had no trend;</li>
%%% <li>and sustained: the floors must cover `min_span', both halves of
%%%     them must rise (a single step, a cache warming up to a plateau, is
%%%     not a leak), the rate must reach `min_bytes_per_s' and the rise over
%%%     the span `min_growth' of the first floor;</li>
%%% <li>and seen at two scales: the minimum of the newer half of the samples
%%%     must exceed the older half's by half of what the slope predicts. A
%%%     sawtooth slower than a sub-window makes sub-window minima climb its
%%%     ramps (they beat with it); the halves, longer than its period, both
%%%     hold its trough. Slower still (a period over half the window), a
%%%     sawtooth is growth for all a window can tell.</li>
%%% </ol>
%%% Once a series is found growing, `still_growing/2' keeps it so with looser
%%% conditions (hysteresis): it clears when the floor has stopped rising over
%%% the newer half of the window or over the window, not when one test dips
%%% below its threshold.
-module(mem_probe_trend).

-export([floors/3, theil_sen/1, mann_kendall/1, z_for/1, confidence/1, assess/2,
         still_growing/2, verdict/3]).

-export_type([sample/0, params/0, assessment/0]).

%% {Milliseconds, Value}; any monotonic millisecond clock.
-type sample() :: {integer(), number()}.
-type params() :: #{floor_ms := pos_integer(), min_span := non_neg_integer(),
                    min_bytes_per_s := number(), min_growth := number(), z := number(),
                    now := integer()}.
-type assessment() :: #{growing := boolean(), rate := float() | undefined,
                        z := float(), confidence := float(), floors := non_neg_integer(),
                        span := non_neg_integer(), start := integer() | undefined}.

%% The fewest floors a trend is read from.
-define(MIN_FLOORS, 3).

%% @doc The floor of each complete sub-window of `FloorMs' milliseconds
%% (sub-window `K' holds the samples with `T div FloorMs == K'), oldest
%% first: `{T, V}' of the sub-window's minimum (the earliest if several). The
%% sub-window holding `Now' is not complete and is left out: its minimum may
%% still come. `Samples' are oldest first.
-spec floors([sample()], pos_integer(), integer()) -> [sample()].
floors(Samples, FloorMs, Now) ->
    Current = Now div FloorMs,
    floors(Samples, FloorMs, Current, none, []).

floors([], _FloorMs, _Current, none, Acc) ->
    lists:reverse(Acc);
floors([], _FloorMs, _Current, {_K, Min}, Acc) ->
    lists:reverse([Min | Acc]);
floors([{T, _} | _], FloorMs, Current, Open, Acc) when T div FloorMs >= Current ->
    floors([], FloorMs, Current, Open, Acc);
floors([{T, V} = S | Rest], FloorMs, Current, Open, Acc) ->
    K = T div FloorMs,
    case Open of
        {K, {_, Vmin}} when V >= Vmin -> floors(Rest, FloorMs, Current, Open, Acc);
        {K, _} -> floors(Rest, FloorMs, Current, {K, S}, Acc);
        none -> floors(Rest, FloorMs, Current, {K, S}, Acc);
        {_, Min} -> floors(Rest, FloorMs, Current, {K, S}, [Min | Acc])
    end.

%% @doc The Theil–Sen slope of `Points' (`{X, Y}'): the median of the slopes
%% of all pairs with distinct X (the mean of the two middle ones for an even
%% count); `undefined' with fewer than two distinct X.
-spec theil_sen([sample()]) -> float() | undefined.
theil_sen(Points) ->
    Slopes = lists:sort(pair_slopes(Points, [])),
    case length(Slopes) of
        0 -> undefined;
        N when N rem 2 =:= 1 -> float(lists:nth(N div 2 + 1, Slopes));
        N -> (lists:nth(N div 2, Slopes) + lists:nth(N div 2 + 1, Slopes)) / 2
    end.

pair_slopes([], Acc) ->
    Acc;
pair_slopes([{X1, Y1} | Rest], Acc) ->
    pair_slopes(Rest, lists:foldl(fun({X2, _}, A) when X2 == X1 -> A;
                                     ({X2, Y2}, A) -> [(Y2 - Y1) / (X2 - X1) | A]
                                  end, Acc, Rest)).

%% @doc The Mann–Kendall statistic of `Values' (in time order): `S', the
%% number of rising pairs minus falling pairs, and its normal score `Z'
%% (continuity-corrected, variance corrected for ties; `0.0' when every
%% value is equal). Under "no trend" `Z' is about standard normal.
-spec mann_kendall([number()]) -> {integer(), float()}.
mann_kendall(Values) ->
    S = kendall_s(Values, 0),
    N = length(Values),
    Ties = [C || C <- tie_counts(lists:sort(Values)), C > 1],
    Var = (N * (N - 1) * (2 * N + 5) - lists:sum([T * (T - 1) * (2 * T + 5) || T <- Ties])) / 18,
    Z = if
            Var =< 0 -> 0.0;
            S > 0 -> (S - 1) / math:sqrt(Var);
            S < 0 -> (S + 1) / math:sqrt(Var);
            true -> 0.0
        end,
    {S, Z}.

kendall_s([], S) ->
    S;
kendall_s([V | Rest], S) ->
    kendall_s(Rest, lists:foldl(fun(W, A) when W > V -> A + 1;
                                   (W, A) when W < V -> A - 1;
                                   (_, A) -> A
                                end, S, Rest)).

tie_counts([]) -> [];
tie_counts([V | Rest]) -> tie_counts(Rest, V, 1).

tie_counts([V | Rest], V, C) -> tie_counts(Rest, V, C + 1);
tie_counts([W | Rest], _V, C) -> [C | tie_counts(Rest, W, 1)];
tie_counts([], _V, C) -> [C].

%% @doc The one-sided normal score for a false-alarm probability `P'
%% (`0 < P < 0.5'): `z_for(0.001)' is about 3.09.
-spec z_for(float()) -> float().
z_for(P) when is_float(P), P > 0, P < 0.5 ->
    bisect(1 - P, 0.0, 40.0, 60).

bisect(_Target, Lo, Hi, 0) ->
    (Lo + Hi) / 2;
bisect(Target, Lo, Hi, Steps) ->
    Mid = (Lo + Hi) / 2,
    case confidence(Mid) < Target of
        true -> bisect(Target, Mid, Hi, Steps - 1);
        false -> bisect(Target, Lo, Mid, Steps - 1)
    end.

%% @doc The standard normal distribution function at `Z': for a
%% Mann–Kendall score, one minus the probability of a rise at least this
%% clear in a series without trend.
-spec confidence(number()) -> float().
confidence(Z) ->
    0.5 * (1 + math:erf(Z / math:sqrt(2))).

%% @doc Whether `Samples' (oldest first) grow in a sustained way, by the
%% rules in the module doc. `rate' is the floors' Theil–Sen slope in units
%% per second, `start' the time of the first floor, `span' the time from
%% the first floor to the last.
-spec assess([sample()], params()) -> assessment().
assess(Samples, #{floor_ms := FloorMs, now := Now} = P) ->
    Floors = floors(Samples, FloorMs, Now),
    Base = #{growing => false, rate => undefined, z => 0.0, confidence => 0.5,
             floors => length(Floors), span => span(Floors), start => start(Floors)},
    case length(Floors) >= ?MIN_FLOORS of
        false -> Base;
        true -> judge(Samples, Floors, Base, P)
    end.

judge(Samples, Floors, #{span := Span} = Base,
      #{min_span := MinSpan, min_bytes_per_s := MinRate, min_growth := MinGrowth, z := Zmin}) ->
    Rate = per_second(theil_sen(Floors)),
    {_, Z} = mann_kendall([V || {_, V} <- Floors]),
    {Older, Newer} = halves(Floors),
    [{_, First} | _] = Floors,
    Growing = Span >= MinSpan
        andalso Z >= Zmin
        andalso Rate >= MinRate
        andalso Rate > 0
        andalso per_second(theil_sen(Older)) >= MinRate / 2
        andalso per_second(theil_sen(Newer)) >= MinRate / 2
        andalso Rate * Span / 1000 >= MinGrowth * max(First, 1)
        andalso halves_rise(Samples, Rate),
    Base#{growing => Growing, rate => Rate, z => Z, confidence => confidence(Z)}.

%% @doc For a series already found growing: whether it still is. Looser
%% than `assess/2' (hysteresis): the floors' slope, over the window and over
%% its newer half, is at least half of `min_bytes_per_s' (and positive). A
%% finding so clears after about half a window without growth; a shorter
%% pause, such as a heap that grows in steps, keeps it.
-spec still_growing([sample()], params()) -> boolean().
still_growing(Samples, #{floor_ms := FloorMs, now := Now, min_bytes_per_s := MinRate}) ->
    Floors = floors(Samples, FloorMs, Now),
    {_, Newer} = halves(Floors),
    length(Floors) >= ?MIN_FLOORS
        andalso lists:all(fun(Rate) -> Rate > 0 andalso Rate >= MinRate / 2 end,
                          [per_second(theil_sen(Floors)), per_second(theil_sen(Newer))]).

%% @doc One step of a series' finding: for a series that is not a finding
%% (`Found' false), `{raise, Assessment}' when `assess/2' finds it growing,
%% else `none'; for a finding, `keep' while `still_growing/2', else `clear'.
-spec verdict([sample()], params(), boolean()) -> {raise, assessment()} | none | keep | clear.
verdict(Samples, P, false) ->
    case assess(Samples, P) of
        #{growing := true} = A -> {raise, A};
        _ -> none
    end;
verdict(Samples, P, true) ->
    case still_growing(Samples, P) of
        true -> keep;
        false -> clear
    end.

%% The minimum of the newer half of the samples exceeds that of the older
%% half by at least half of what `Rate' (per second) predicts. A sawtooth
%% whose period is longer than a sub-window makes the sub-windows' minima
%% climb its ramps (they miss its troughs, a little more each time when the
%% periods beat): its halves, each longer than its period, have the same
%% minimum.
halves_rise([{T0, _} | _] = Samples, Rate) ->
    {T1, _} = lists:last(Samples),
    Mid = T0 + (T1 - T0) div 2,
    {Older, Newer} = lists:partition(fun({T, _}) -> T < Mid end, Samples),
    case {Older, Newer} of
        {[_ | _], [_ | _]} ->
            Rise = lists:min([V || {_, V} <- Newer]) - lists:min([V || {_, V} <- Older]),
            Rise >= Rate * (T1 - T0) / 2000 / 2;
        _ ->
            false
    end.

%% The older and the newer half (sharing the middle floor when odd).
halves(Floors) ->
    N = length(Floors),
    {lists:sublist(Floors, (N + 1) div 2), lists:nthtail(N div 2, Floors)}.

per_second(undefined) -> 0.0;
per_second(SlopePerMs) -> SlopePerMs * 1000.

span([]) -> 0;
span([{T0, _} | _] = Floors) -> element(1, lists:last(Floors)) - T0.

start([]) -> undefined;
start([{T0, _} | _]) -> T0.
