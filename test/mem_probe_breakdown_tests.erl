%%% EUnit tests of the Erlang API of the breakdown: totals equal term_size,
%%% records by field, keys as terms, diff and text.
-module(mem_probe_breakdown_tests).

-include_lib("eunit/include/eunit.hrl").

-record(state, {sessions = [], cache = #{}, count = 0}).

state() ->
    #state{sessions = [{session, I, integer_to_binary(I)} || I <- lists:seq(1, 2000)],
           cache = #{<<"k">> => lists:seq(1, 300)},
           count = 7}.

total_and_records_test() ->
    State = state(),
    {ok, B} = mem_probe:breakdown(State, [{records, [{state, record_info(fields, state)}]},
                                          {name, "state"}]),
    #{total := #{bytes := Bytes}, rows := [First | _] = Rows} = B,
    ?assertEqual(maps:get(bytes, mem_probe:term_size(State)), Bytes),
    ?assertEqual(<<"state.sessions[0..1999]">>, maps:get(label, First)),
    ?assertEqual([{elem, 1}, {list, 0, 1999}], maps:get(path, First)),
    ?assertEqual(maps:get(bytes, mem_probe:term_size(State#state.sessions)),
                 maps:get(bytes, First)),
    Labels = [L || #{label := L} <- Rows],
    ?assert(lists:member(<<"state.cache[<<\"k\">>][0..299]">>, Labels)).

unknown_key_is_not_an_atom_test() ->
    Key = <<"never_an_atom_", (integer_to_binary(erlang:unique_integer([positive])))/binary>>,
    {ok, #{rows := [#{path := Path} | _]}} = mem_probe:breakdown(#{Key => lists:seq(1, 100)}, []),
    ?assertEqual([{key, Key}, {list, 0, 99}], Path),
    ?assertError(badarg, binary_to_existing_atom(Key, utf8)).

diff_and_text_test() ->
    {ok, Older} = mem_probe:breakdown(#{log => lists:seq(1, 100), n => 1}, []),
    {ok, Newer} = mem_probe:breakdown(#{log => lists:seq(1, 400), n => 1}, []),
    #{rows := [Grew]} = mem_probe:diff_breakdown(Older, Newer),
    ?assertEqual(300 * 16, maps:get(growth_bytes, Grew)),
    Text = unicode:characters_to_binary(mem_probe:format(Newer)),
    ?assertMatch({match, _}, re:run(Text, "term.log\\[0..399\\] +6\\.[23] KiB +[0-9.]+%")),
    ?assertMatch("diff_breakdown/2: " ++ _,
                 mem_probe_badarg:message(fun() -> mem_probe:diff_breakdown(a, b) end)),
    ?assertMatch("breakdown/2: bad value -1 for option depth" ++ _,
                 mem_probe_badarg:message(fun() -> mem_probe:breakdown(1, [{depth, -1}]) end)).

%% An atom reads as a field only if its whole name matches: a name ending in
%% a newline ('a\n') is bracketed, never printed as `.a' and a line break.
field_names_match_whole_names_test() ->
    Term = {s, #{ok => lists:seq(1, 500), 'a\n' => lists:seq(1, 300), 'ok?' => lists:seq(1, 200)}},
    {ok, #{rows := Rows}} = mem_probe:breakdown(Term, [{min_share, 0.0}, {n, 100}]),
    Labels = [Label || #{label := Label} <- Rows],
    ?assert(lists:member(<<"term{1}.ok[0..499]">>, Labels)),
    ?assert(lists:member(<<"term{1}.ok?[0..199]">>, Labels)),
    ?assert(lists:member(<<"term{1}['a\\n'][0..299]">>, Labels)),
    ?assertEqual([], [L || L <- Labels, binary:match(L, <<"\n">>) =/= nomatch]).

%% The labels the NIF writes (no record definitions) are the ones this side
%% writes (a record definition that matches nothing: every row labelled
%% here), for every kind of step and key, in both forms of list runs.
nif_labels_are_the_erlang_labels_test() ->
    L = fun(N) -> lists:seq(1, N) end,
    X = L(300),
    %% (Made at run time: a literal is charged nothing and makes no row.)
    Small = binary_to_term(term_to_binary({ok, [1, 2, 3], #{a => 1}, <<"abc">>})),
    Terms = [Small,
             {state, L(12000), #{sessions => L(100), 'Elixir.Key' => L(101),
                                 'with space' => L(102), 'ok?' => L(103), 'go!' => L(104),
                                 '?x' => L(105), 'é' => L(106), 'a\n' => L(107),
                                 42 => L(108), <<"k">> => L(109), {t, 1} => L(110)}},
             [L(50), {nested, [{deep, L(30)}]}],
             #{fn => fun() -> X end, other => L(200)},
             maps:from_list([{I, L(I)} || I <- lists:seq(1, 40)])],
    lists:foreach(
      fun(Term) ->
              lists:foreach(
                fun(Runs) ->
                        Opts = [{min_share, 0.0}, {n, 1000}, {list_runs, Runs}],
                        {ok, #{rows := Fast}} = mem_probe:breakdown(Term, Opts),
                        {ok, #{rows := Slow}} =
                            mem_probe:breakdown(Term, [{records, [{no_such_record, [f]}]} | Opts]),
                        ?assertEqual(Slow, Fast),
                        ?assert(length(Fast) >= 2)
                end, [pairs, ranges])
      end, Terms).
