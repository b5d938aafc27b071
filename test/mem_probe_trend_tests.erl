%%% The leak watcher's statistics on synthetic series (mem_probe_trend).
-module(mem_probe_trend_tests).

-include_lib("eunit/include/eunit.hrl").

-define(P(Now), #{floor_ms => 1000, min_span => 5000, min_bytes_per_s => 1024,
                  min_growth => 0.1, z => mem_probe_trend:z_for(0.001), now => Now}).

%% Samples every 100 ms from 0 to Ms (exclusive): {T, F(T)}.
series(Ms, F) ->
    [{T, F(T)} || T <- lists:seq(0, Ms - 1, 100)].

%% A deterministic pseudo-random integer in [0, N) for sample T.
noise(T, N) ->
    erlang:phash2({noise, T}, N).

theil_sen_test_() ->
    Line = [{X, 3 * X + 7} || X <- lists:seq(0, 20)],
    %% Three wild points (a third of the pairs at most) do not move the median.
    Spiked = [{X, case X of 5 -> 1.0e9; 11 -> -1.0e9; 17 -> 5.0e8; _ -> 3 * X + 7 end}
              || X <- lists:seq(0, 20)],
    [?_assertEqual(3.0, mem_probe_trend:theil_sen(Line)),
     ?_assert(abs(mem_probe_trend:theil_sen(Spiked) - 3.0) < 0.2),
     ?_assertEqual(undefined, mem_probe_trend:theil_sen([{1, 5}])),
     ?_assertEqual(undefined, mem_probe_trend:theil_sen([{1, 5}, {1, 9}])),
     %% Slopes 1, 2, 3: the middle one.
     ?_assertEqual(2.0, mem_probe_trend:theil_sen([{0, 0}, {1, 1}, {2, 4}])),
     %% Six slopes (0, 1, 4/3, 3/2, 2, 3): the mean of the middle two.
     ?_assert(abs(mem_probe_trend:theil_sen([{0, 0}, {1, 1}, {2, 4}, {3, 4}])
                  - (4 / 3 + 3 / 2) / 2) < 1.0e-12),
     ?_assertEqual(0.0, mem_probe_trend:theil_sen([{X, 42} || X <- lists:seq(1, 9)]))].

floors_test_() ->
    Samples = [{0, 10}, {300, 5}, {900, 7}, {1000, 9}, {1500, 4}, {1999, 4}, {2100, 1}],
    [%% Sub-window 2 holds `now' (2500): not complete, its 1 is left out.
     ?_assertEqual([{300, 5}, {1500, 4}], mem_probe_trend:floors(Samples, 1000, 2500)),
     %% Once complete, it counts.
     ?_assertEqual([{300, 5}, {1500, 4}, {2100, 1}],
                   mem_probe_trend:floors(Samples, 1000, 3000)),
     ?_assertEqual([], mem_probe_trend:floors([], 1000, 5000)),
     %% A sawtooth of period 1 s: every floor is the base.
     ?_assertEqual(lists:duplicate(10, 1000),
                   [V || {_, V} <- mem_probe_trend:floors(
                                     series(10000, fun(T) -> 1000 + (T rem 1000) * 50 end),
                                     1000, 10000)])].

mann_kendall_test_() ->
    Rising = lists:seq(1, 10),
    {S, Z} = mem_probe_trend:mann_kendall(Rising),
    {Sf, Zf} = mem_probe_trend:mann_kendall(lists:reverse(Rising)),
    [?_assertEqual(45, S),
     %% sqrt(10 * 9 * 25 / 18) = sqrt(125).
     ?_assert(abs(Z - 44 / math:sqrt(125)) < 1.0e-9),
     ?_assertEqual({-45, -Z}, {Sf, Zf}),
     ?_assertEqual({0, 0.0}, mem_probe_trend:mann_kendall(lists:duplicate(8, 3))),
     %% Ties shrink the variance: a staircase scores higher than its S alone
     %% would with distinct values.
     ?_assert(element(2, mem_probe_trend:mann_kendall([1, 1, 2, 2, 3, 3, 4, 4, 5, 5]))
              > (40 - 1) / math:sqrt(125)),
     %% One step up in the middle is not significant at 0.001.
     ?_assert(element(2, mem_probe_trend:mann_kendall([1, 1, 1, 1, 1, 9, 9, 9, 9, 9]))
              < mem_probe_trend:z_for(0.001))].

z_for_test_() ->
    [?_assert(abs(mem_probe_trend:z_for(0.001) - 3.0902) < 1.0e-3),
     ?_assert(abs(mem_probe_trend:z_for(0.05) - 1.6449) < 1.0e-3),
     ?_assert(abs(mem_probe_trend:confidence(0.0) - 0.5) < 1.0e-12),
     ?_assert(abs(mem_probe_trend:confidence(mem_probe_trend:z_for(0.01)) - 0.99) < 1.0e-9),
     ?_assertError(function_clause, mem_probe_trend:z_for(0.7))].

growing(Samples, Now) ->
    maps:get(growing, mem_probe_trend:assess(Samples, ?P(Now))).

assess_test_() ->
    Now = 12000,
    %% 100 KB/s of steady growth on 1 MB, with a GC sawtooth of 300 KB on top.
    Leak = series(Now, fun(T) -> 1000000 + 100 * T + (T rem 700) * 400 end),
    Sawtooth = series(Now, fun(T) -> 1000000 + (T rem 1000) * 500 end),
    Flat = series(Now, fun(_) -> 5000000 end),
    Noisy = series(Now, fun(T) -> 5000000 + noise(T, 2000000) end),
    %% A burst every 800 ms that drains in 200 ms.
    Bursty = series(Now, fun(T) when T rem 800 < 200 -> 9000000; (_) -> 300000 end),
    %% A cache warming up: a step at 6 s, then a plateau.
    Step = series(Now, fun(T) when T < 6000 -> 1000000; (_) -> 3000000 end),
    %% Too slow to matter: 100 bytes/s.
    Slow = series(Now, fun(T) -> 1000000 + T div 10 end),
    %% Fast but small relative to the floor: 2 KB/s on 1 GB.
    Small = series(Now, fun(T) -> 1000000000 + 2 * T end),
    A = mem_probe_trend:assess(Leak, ?P(Now)),
    [?_assertEqual(true, maps:get(growing, A)),
     %% The floor's slope is the growth, not the sawtooth's ramps.
     ?_assert(abs(maps:get(rate, A) - 100000) < 10000),
     ?_assert(maps:get(confidence, A) > 0.999),
     ?_assertEqual(12, maps:get(floors, A)),
     ?_assertEqual(false, growing(Sawtooth, Now)),
     ?_assertEqual(false, growing(Flat, Now)),
     ?_assertEqual(false, growing(Noisy, Now)),
     ?_assertEqual(false, growing(Bursty, Now)),
     ?_assertEqual(false, growing(Step, Now)),
     ?_assertEqual(false, growing(Slow, Now)),
     ?_assertEqual(false, growing(Small, Now)),
     %% Too short: the same leak over 3 s.
     ?_assertEqual(false, growing(series(3000, fun(T) -> 1000000 + 100 * T end), 3000))].

%% A sawtooth slower than a sub-window (period 6.5 s, sub-windows of 1 s):
%% the floors climb its ramps, and at a loose z every test on the floors
%% passes. The halves of the window, each holding a trough, have the same
%% minimum: not growth.
slow_sawtooth_test() ->
    Now = 12000,
    Saw = series(Now, fun(T) -> 1000000 + (T rem 6500) * 200 end),
    P = maps:put(z, 1.0, ?P(Now)),
    {_, Z} = mem_probe_trend:mann_kendall([V || {_, V} <- mem_probe_trend:floors(Saw, 1000, Now)]),
    A = mem_probe_trend:assess(Saw, P),
    ?assert(Z > 1.0),
    ?assert(maps:get(rate, A) * 11 > 0.1 * 1000000),
    ?assertEqual(false, maps:get(growing, A)),
    %% The same with 100 KB/s of growth under it is found.
    Leak = series(Now, fun(T) -> 1000000 + (T rem 6500) * 200 + 100 * T end),
    ?assertEqual(true, maps:get(growing, mem_probe_trend:assess(Leak, P))).

still_growing_test_() ->
    Now = 12000,
    %% Grew until 5 s, flat since (over the newer half of the window).
    Stopped = series(Now, fun(T) -> 1000000 + 100 * min(T, 5000) end),
    %% Grows in steps of 300 KB every 3 s; the newest plateau is no
    %% reason to clear.
    Steps = series(Now, fun(T) -> 1000000 + 300000 * (T div 3000) end),
    Going = series(Now, fun(T) -> 1000000 + 100 * T end),
    [?_assertEqual(true, mem_probe_trend:still_growing(Going, ?P(Now))),
     ?_assertEqual(true, mem_probe_trend:still_growing(Steps, ?P(Now))),
     ?_assertEqual(false, mem_probe_trend:still_growing(Stopped, ?P(Now))),
     %% Looser than assess/2: a slope of 600 B/s is below min_bytes_per_s for
     %% a new finding but keeps an old one.
     ?_assertEqual(true, mem_probe_trend:still_growing(
                           series(Now, fun(T) -> 1000 + 6 * T div 10 end), ?P(Now)))].

%% Independent noise has no trend: at a false-alarm probability of 0.001
%% per test, 300 noisy series are expected to give 0.3 findings; with this
%% seed they give none.
noise_series_test() ->
    rand:seed(exsss, {1, 2, 3}),
    Found = [W || W <- lists:seq(1, 300),
                  growing([{I * 100, 5000000 + rand:uniform(1000000)}
                           || I <- lists:seq(0, 119)], 12000)],
    ?assertEqual([], Found).
