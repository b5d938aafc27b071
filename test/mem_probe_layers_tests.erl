%%% The layering of the Erlang core, checked with xref on the compiled
%%% modules: the facade (`mem_probe') calls the modules that answer one
%%% question each; they call the shared plumbing and the term sizes; the
%%% sizes call the calibration and the NIF loader. No call goes up a layer,
%%% and the question modules that build on one another (the report on the
%%% scans, the top on the report) never do so in a circle. The live top's
%%% collector, loaded alone onto nodes without MemProbe, calls no MemProbe
%%% module at all.
-module(mem_probe_layers_tests).

-include_lib("eunit/include/eunit.hrl").

%% Higher calls lower. A new module must be given its layer here.
layer(mem_probe) -> 6;
layer(M) when M =:= mem_probe_procs; M =:= mem_probe_binaries; M =:= mem_probe_ets;
              M =:= mem_probe_system; M =:= mem_probe_state; M =:= mem_probe_snapshot;
              M =:= mem_probe_check; M =:= mem_probe_report; M =:= mem_probe_cluster;
              M =:= mem_probe_watcher; M =:= mem_probe_top; M =:= mem_probe_breakdown -> 5;
layer(M) when M =:= mem_probe_scan; M =:= mem_probe_format; M =:= mem_probe_trend;
              M =:= mem_probe_top_collector -> 4;
%% Argument checks: every module that takes arguments uses them.
layer(mem_probe_args) -> 3;
layer(mem_probe_sizes) -> 2;
layer(mem_probe_calibration) -> 1;
layer(mem_probe_nif) -> 0;
layer(_) -> unknown.

%% Calls between two different MemProbe modules, as {Caller, Callee}.
calls() ->
    Ebin = filename:dirname(code:which(mem_probe)),
    {ok, Xref} = xref:start([{xref_mode, modules}]),
    try
        {ok, _} = xref:add_directory(Xref, Ebin),
        {ok, Edges} = xref:q(Xref, "ME"),
        [{A, B} || {A, B} <- lists:usort(Edges), A =/= B, ours(A), ours(B)]
    after
        xref:stop(Xref)
    end.

ours(M) -> lists:prefix("mem_probe", atom_to_list(M)).

every_module_has_a_layer_test() ->
    Modules = lists:usort(lists:append([[A, B] || {A, B} <- calls()])),
    ?assertEqual([], [M || M <- Modules, layer(M) =:= unknown]).

no_call_goes_up_test() ->
    ?assertEqual([], [{A, B} || {A, B} <- calls(), layer(A) < layer(B)]).

plumbing_and_below_never_call_sideways_test() ->
    %% Only the question modules may build on one another.
    ?assertEqual([], [{A, B} || {A, B} <- calls(), layer(A) =:= layer(B), layer(A) =/= 5]).

no_calls_in_a_circle_test() ->
    Calls = calls(),
    Graph = digraph:new(),
    try
        [begin digraph:add_vertex(Graph, A), digraph:add_vertex(Graph, B),
               digraph:add_edge(Graph, A, B) end || {A, B} <- Calls],
        ?assertEqual([], [M || M <- digraph:vertices(Graph),
                              digraph:get_cycle(Graph, M) =/= false])
    after
        digraph:delete(Graph)
    end.

the_top_collector_needs_no_other_module_test() ->
    ?assertEqual([], [B || {mem_probe_top_collector, B} <- calls()]).
