%%% EUnit tests of the Erlang API of the term sizes, with PropEr properties
%%% (Debian's erlang-proper) against the erts_debug functions.
-module(mem_probe_tests).

-include_lib("proper/include/proper.hrl").
-include_lib("eunit/include/eunit.hrl").

native_mode_test() ->
    Info = mem_probe:info(),
    ?assertEqual(native, maps:get(mode, Info)),
    ?assertEqual(list_to_binary(erlang:system_info(otp_release)), maps:get(otp_release, Info)).

term_size_map_test() ->
    B = binary:copy(<<1>>, 1000),
    <<_:8, Slice:80/binary, _/binary>> = B,
    ?assertEqual(#{flat_words => 6, shared_words => 6, literal_words => 0,
                   off_heap_binaries => 1, off_heap_bytes => 1000, bytes => 1048},
                 mem_probe:term_size(Slice)).

literal_test() ->
    Lit = [1, 2, 3],
    ?assertEqual(6, mem_probe:flat_size(Lit)),
    ?assertEqual(0, mem_probe:shared_size(Lit)),
    ?assertMatch(#{literal_words := 6, shared_words := 0}, mem_probe:term_size(Lit)).

hashmap_nodes_counted_once_test() ->
    Map = maps:from_list([{I, I} || I <- lists:seq(1, 33)]),
    ?assertEqual(127, mem_probe:shared_size(Map)),
    ?assertEqual(188, erts_debug:size_shared(Map)).

doubling_dag_test() ->
    Dag = lists:foldl(fun(_, T) -> {T, T} end, leaf, lists:seq(1, 40)),
    ?assertEqual(3 * ((1 bsl 40) - 1), mem_probe:flat_size(Dag)),
    ?assertEqual(120, mem_probe:shared_size(Dag)).

%% Generated terms, with sharing ({T, T}) and heap copies, against the BIFs.
term_gen() ->
    ?LET(T, proper_types:any(),
         oneof([T, {T, T}, [T, binary_to_term(term_to_binary(T)) | T],
                #{T => T, shared => [T, T]}])).

prop_flat_size() ->
    ?FORALL(T, term_gen(), mem_probe:flat_size(T) =:= erts_debug:flat_size(T)).

prop_shared_and_literal() ->
    ?FORALL(T, term_gen(),
            begin
                {ok, _Flat, Shared, Literal, HashmapNodes, _, _} = mem_probe_calibration:measure(T),
                Shared + HashmapNodes =:= erts_debug:size_shared(T) andalso
                    Shared =:= mem_probe:shared_size(T) andalso
                    Shared + Literal =:= erts_debug:size(T)
            end).

proper_test_() ->
    Opts = [{numtests, 500}, {to_file, user}, quiet],
    {timeout, 120,
     [?_assert(proper:quickcheck(prop_flat_size(), Opts)),
      ?_assert(proper:quickcheck(prop_shared_and_literal(), Opts))]}.
