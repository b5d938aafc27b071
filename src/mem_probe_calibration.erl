%%% @doc The calibration set: terms of every shape the walker reads, built at
%%% run time (so the compiler cannot fold them into literals), plus deliberate
%%% literals (module constants, `persistent_term').
%%%
%%% `check/0' sizes each with the native walker and compares with the VM's
%%% own functions: flat words with `erts_debug:flat_size/1', shared words plus
%%% hashmap node words with `erts_debug:size_shared/1' (which counts hashmap
%%% nodes twice), and the walker's `erts_debug:size/1' count with that
%%% function. That count is shared plus literal words, plus (OTP 27 only) the
%%% words of BinRefs and FunRefs met again through another owner, which
%%% `size/1' counts once per SubBits or fun (docs/LAYOUT.md §4); on OTP 25
%%% it is exactly shared plus literal words. Any difference keeps the walker
%%% off (`mem_probe_sizes' falls back).
%%%
%%% The same construction gives different shapes per release: on OTP 27 a fun
%%% without free variables is a module literal (`fun_no_env'), `make_fun/3'
%%% returns the literal export fun, and every bitstring above 512 bits is a
%%% SubBits with a BinRef. The expected values per release are in
%%% test/term_size_test.exs.
-module(mem_probe_calibration).

-export([cases/0, check/0, measure/1]).

-export_type([reading/0]).

%% The calibration walk's numbers for one term, in words unless named bytes.
-type reading() :: #{flat_words := non_neg_integer(), shared_words := non_neg_integer(),
                     literal_words := non_neg_integer(),
                     hashmap_node_words := non_neg_integer(),
                     off_heap_binaries := non_neg_integer(),
                     off_heap_bytes := non_neg_integer(), size_words := non_neg_integer(),
                     term_size_bytes := non_neg_integer() | undefined}.

%% Improper lists are among the shapes the walker must read.
-dialyzer({no_improper_lists, cases/0}).

-define(PT_KEY, {?MODULE, persistent}).

%% @doc `[{Name, Term}]': one or more terms per layout rule.
-spec cases() -> [{atom(), term()}].
cases() ->
    B = binary:copy(<<1>>, 1000),
    HB = h(binary:copy(<<7>>, 40)),
    <<_:8, SubAligned:800/bitstring, _/binary>> = B,
    <<_:3, SubUnaligned:20/bitstring, _/bitstring>> = B,
    <<_:8, SubTrailing:803/bitstring, _/bitstring>> = B,
    <<_:8, HeapSubAligned:80/bitstring, _/binary>> = HB,
    <<_:3, HeapSubUnaligned:20/bitstring, _/bitstring>> = HB,
    L = h([1, 2]),
    T = h({a, b}),
    F = h(1.5),
    G = h(1 bsl 100),
    M = h(#{a => 1, b => 2}),
    HM = h(maps:from_list([{I, I} || I <- lists:seq(1, 40)])),
    X = h({1, 2}),
    Fn = fun() -> {X, X} end,
    Writable = << <<I>> || I <- lists:seq(1, 200) >>,
    Lists = h(lists),
    %% A heap slice of a literal binary: on OTP 27 a heap SubBits over the
    %% literal BinRef (more than 512 bits, so not copied into a HeapBits).
    [_, {b, LiteralBin} | _] = literal_mix(),
    <<_:8, SubOfLiteral:544/bitstring, _/bitstring>> = LiteralBin,
    Alias = alias(),
    unalias(Alias),
    Table = ets:new(mem_probe_calibration, []),
    ets:insert(Table, {export_fun, fun lists:map/2}),
    [{export_fun, EtsExportFun}] = ets:lookup(Table, export_fun),
    ets:delete(Table),
    [{nil, []}, {atom, foo}, {small, 42},
     {cons, h([1])}, {improper_list, h([1 | 2])}, {list, h([1, 2, 3])},
     {literal_list, literal_list()},
     {empty_tuple, {}}, {tuple, h({1, 2})},
     {float, h(1.5)},
     {bignum, h(1 bsl 64)}, {negative_bignum, h(-(1 bsl 64))}, {bignum_128, h(1 bsl 128)},
     {ordinary_ref, make_ref()}, {magic_ref, Table}, {pid_ref, Alias},
     {heap_binary_0, h(<<>>)}, {heap_binary_1, h(<<1>>)},
     {heap_binary_64, h(binary:copy(<<1>>, 64))},
     {refc_binary_65, binary:copy(<<1>>, 65)}, {refc_binary, B},
     {sub_refc_aligned, SubAligned}, {sub_refc_unaligned, SubUnaligned},
     {sub_refc_trailing, SubTrailing},
     {sub_heap_aligned, HeapSubAligned}, {sub_heap_unaligned, HeapSubUnaligned},
     {bitstring_7, h(<<1:7>>)},
     {shared_cons, [L, L]}, {shared_tuple, {T, T, T}}, {shared_refc_binary, {B, B}},
     {refc_binary_and_subs, {B, SubAligned, SubTrailing}},
     {shared_float, [F, F]}, {shared_bignum, [G, G]}, {shared_flatmap, [M, M]},
     {shared_keys_tuple, [M, M#{a := 3}]},
     {empty_map_literal, #{}}, {empty_map_heap, h(#{})},
     {literal_keys_tuple, #{a => self(), b => 2}},
     {flatmap_32, h(maps:from_list([{I, I} || I <- lists:seq(1, 32)]))},
     {hashmap_33, h(maps:from_list([{I, I} || I <- lists:seq(1, 33)]))},
     {hashmap_40, HM}, {shared_hashmap, [HM, HM]}, {hashmap_update, [HM, HM#{1 := x}]},
     {hashmap_1000, h(maps:from_list([{I, I} || I <- lists:seq(1, 1000)]))},
     {fun_no_env, fun() -> ok end}, {fun_env, Fn}, {shared_fun, [Fn, Fn]},
     {fun_heap_copy, h(fun() -> ok end)},
     {funs_of_one_lambda, [adder(1), adder(h({2}))]},
     {export_fun_literal, fun lists:map/2},
     {export_fun_heap, erlang:make_fun(Lists, map, 2)},
     {export_fun_ets_copy, EtsExportFun},
     {bignum_max_digits, h(1 bsl (64 * 65535 - 1))},
     {heap_bits_512, h(<<0:512>>)}, {bitstring_513, h(<<0:513>>)},
     {external_pid, binary_to_term(<<131, 88, 100, 0, 10, "other@host", 1:32, 0:32, 1:32>>)},
     {external_port, binary_to_term(<<131, 89, 100, 0, 10, "other@host", 5:32, 1:32>>)},
     {external_ref_3, binary_to_term(<<131, 90, 0, 3, 100, 0, 10, "other@host", 1:32,
                                       1:32, 2:32, 3:32>>)},
     {external_ref_5, binary_to_term(<<131, 90, 0, 5, 100, 0, 10, "other@host", 1:32,
                                       1:32, 2:32, 3:32, 4:32, 5:32>>)},
     {literal_mix, literal_mix()}, {heap_tuple_of_literals, {literal_mix(), literal_mix()}},
     {sub_of_literal_binary, SubOfLiteral},
     {writable_binary, Writable}, {appended_binary, <<Writable/binary, "x">>},
     {persistent_term, persistent()},
     {doubling_dag, doubling_dag(12)},
     {mixed, h([{self(), 1.0, <<"abc">>, [x | y], #{k => [1, 2]}} || _ <- lists:seq(1, 5)])}
     | record_cases()].

%% OTP 29 native records, built at run time from the external format (this
%% module cannot use the record syntax: it compiles on every release). A
%% record of a module that defines no such record gets a definition of its
%% own on the heap. Releases without native records refuse the format: no
%% cases there.
record_cases() ->
    try binary_to_term(<<131, (record_ext([<<97, 1>>, <<97, 2>>]))/binary>>) of
        Record ->
            [{record_heap_definition, Record}, {shared_record, [Record, Record]},
             {record_in_tuple, h({wrapped, Record})}]
    catch
        error:badarg -> []
    end.

%% RECORD_EXT: 'C', field count, a flag byte, module, name, field names,
%% values; all atoms already exist (no atom is created).
record_ext(Values) ->
    Atom = fun(A) -> B = atom_to_binary(A), <<119, (byte_size(B)), B/binary>> end,
    iolist_to_binary([<<67, (length(Values)):32, 0>>, Atom(?MODULE), Atom(cases),
                      Atom(nil), Atom(atom), Values]).

%% @doc `ok', or `{mismatch, [{Name, What, Expected, Got}]}'.
-spec check() -> ok | {mismatch, [tuple()]}.
check() ->
    Mismatches = lists:flatmap(fun({Name, Term}) -> compare(Name, Term) end, cases()),
    case Mismatches of
        [] -> ok;
        _ -> {mismatch, Mismatches}
    end.

compare(Name, Term) ->
    case measure(Term) of
        {ok, #{flat_words := Flat, shared_words := Shared, literal_words := Literal,
               hashmap_node_words := HashmapNodes, size_words := SizeWords,
               term_size_bytes := TermSize}} ->
            Checks = [{flat_words, erts_debug:flat_size(Term), Flat},
                      {size_shared, erts_debug:size_shared(Term), Shared + HashmapNodes},
                      {size, erts_debug:size(Term), SizeWords},
                      %% size/1 never counts less than each distinct word once.
                      {size_covers_shared_and_literal, true, SizeWords >= Shared + Literal}
                      %% NIF 2.18 (OTP 29): the VM's own flat size, in bytes.
                      | [{enif_term_size, TermSize, Flat * erlang:system_info(wordsize)}
                         || is_integer(TermSize)]],
            [{Name, What, Expected, Got} || {What, Expected, Got} <- Checks, Expected =/= Got];
        Other ->
            [{Name, walk, ok, Other}]
    end.

%% @doc The raw native reading of one term (dirty scheduler, no budget,
%% guarded reads), named: `size_words' is the walker's `erts_debug:size/1'
%% count (shared plus literal words on OTP 25; see the module doc for OTP
%% 27), `hashmap_node_words' what `erts_debug:size_shared/1' counts a second
%% time, `term_size_bytes' the VM's own flat size (`enif_term_size', NIF 2.18
%% on OTP 29; `undefined' before). Anything else the walk answers (an error)
%% is returned as it is.
-spec measure(term()) -> {ok, reading()} | term().
measure(Term) ->
    case mem_probe_nif:walk_dirty(Term, calibrate, 0) of
        {ok, Flat, Shared, Literal, HashmapNodes, Bins, BinBytes, SizeWords, TermSize} ->
            {ok, #{flat_words => Flat, shared_words => Shared, literal_words => Literal,
                   hashmap_node_words => HashmapNodes, off_heap_binaries => Bins,
                   off_heap_bytes => BinBytes, size_words => SizeWords,
                   term_size_bytes => case is_integer(TermSize) of
                                          true -> TermSize;
                                          false -> undefined
                                      end}};
        Other ->
            Other
    end.

%% A fresh heap copy: no sharing, no literals.
h(Term) -> binary_to_term(term_to_binary(Term)).

literal_list() -> [1, 2, 3].

%% Two closures of one lambda: on OTP 27 they share its (literal) FunRef.
adder(N) -> fun(X) -> X + N end.

literal_mix() ->
    [a, {b, <<"0123456789012345678901234567890123456789012345678901234567890123456789">>},
     1.5, #{k => v}].

persistent() ->
    case persistent_term:get(?PT_KEY, undefined) of
        undefined ->
            persistent_term:put(?PT_KEY, {a, [1, 2, 3]}),
            persistent_term:get(?PT_KEY);
        Value ->
            Value
    end.

doubling_dag(0) -> leaf;
doubling_dag(N) -> Half = doubling_dag(N - 1), {Half, Half}.
