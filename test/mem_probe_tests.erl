%%% EUnit tests of the Erlang API of the term sizes, with PropEr properties
%%% (Debian's erlang-proper) against the erts_debug functions.
-module(mem_probe_tests).

-include_lib("proper/include/proper.hrl").
-include_lib("eunit/include/eunit.hrl").

native_mode_test() ->
    Info = mem_probe:info(),
    ?assertEqual(native, maps:get(mode, Info)),
    ?assertEqual(list_to_binary(erlang:system_info(otp_release)), maps:get(otp_release, Info)).

%% Words of a slice of an off-heap binary: a ProcBin (6) on OTP 25, a SubBits
%% and its BinRef (8) on OTP 27 and 29.
refc_words() ->
    case erlang:system_info(otp_release) of
        "25" -> 6;
        R when R =:= "27"; R =:= "29" -> 8
    end.

term_size_map_test() ->
    B = binary:copy(<<1>>, 1000),
    <<_:8, Slice:80/binary, _/binary>> = B,
    W = refc_words(),
    ?assertEqual(#{flat_words => W, shared_words => W, literal_words => 0,
                   off_heap_binaries => 1, off_heap_bytes => 1000, bytes => W * 8 + 1000},
                 mem_probe:term_size(Slice)).

literal_test() ->
    Lit = [1, 2, 3],
    ?assertEqual(6, mem_probe:flat_size(Lit)),
    ?assertEqual(0, mem_probe:shared_size(Lit)),
    ?assertMatch(#{literal_words := 6, shared_words := 0}, mem_probe:term_size(Lit)).

hashmap_nodes_counted_once_test() ->
    Map = maps:from_list([{I, I} || I <- lists:seq(1, 33)]),
    %% flat_size, and size_shared (hashmap nodes twice), per release: the
    %% internal hash, and with it the node layout, changed after OTP 25.
    {Flat, SizeShared} =
        case erlang:system_info(otp_release) of
            "25" -> {127, 188};
            R when R =:= "27"; R =:= "29" -> {123, 180}
        end,
    ?assertEqual(Flat, erts_debug:flat_size(Map)),
    ?assertEqual(Flat, mem_probe:shared_size(Map)),
    ?assertEqual(SizeShared, erts_debug:size_shared(Map)).

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

%% SizeWords is the walker's erts_debug:size/1 count. On OTP 25 it is shared
%% plus literal words. On OTP 27 size/1 counts a BinRef or FunRef once per
%% SubBits or fun that shares it while shared and literal words count it once
%% (as size_shared does), so there shared + literal may only be lower
%% (docs/LAYOUT.md §4).
prop_shared_and_literal() ->
    ?FORALL(T, term_gen(),
            begin
                {ok, #{shared_words := Shared, literal_words := Literal,
                       hashmap_node_words := HashmapNodes, size_words := SizeWords}} =
                    mem_probe_calibration:measure(T),
                SharedPlusLiteralOk =
                    case erlang:system_info(otp_release) of
                        "25" -> Shared + Literal =:= SizeWords;
                        _ -> Shared + Literal =< SizeWords
                    end,
                Shared + HashmapNodes =:= erts_debug:size_shared(T) andalso
                    Shared =:= mem_probe:shared_size(T) andalso
                    SizeWords =:= erts_debug:size(T) andalso
                    SharedPlusLiteralOk
            end).

proper_test_() ->
    case proper_works() of
        true ->
            Opts = [{numtests, 500}, {to_file, user}, quiet],
            {timeout, 120,
             [?_assert(proper:quickcheck(prop_flat_size(), Opts)),
              ?_assert(proper:quickcheck(prop_shared_and_literal(), Opts))]};
        {false, Why} ->
            io:format(user, "~nmem_probe_tests: PropEr does not run on OTP ~s (~0p); "
                      "the two property tests are SKIPPED~n",
                      [erlang:system_info(otp_release), Why]),
            []
    end.

%% PropEr comes from the system (Debian's erlang-proper, compiled for OTP 25):
%% on another release it may fail to load or to run.
proper_works() ->
    try proper:quickcheck(?FORALL(I, integer(), is_integer(I)), [{numtests, 5}, quiet]) of
        true -> true;
        Other -> {false, Other}
    catch
        Class:Reason -> {false, {Class, Reason}}
    end.
