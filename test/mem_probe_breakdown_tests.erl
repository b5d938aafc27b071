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
