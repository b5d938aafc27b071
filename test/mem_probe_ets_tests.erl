%%% EUnit tests of the ETS, system/allocator and format modules, from Erlang.
-module(mem_probe_ets_tests).

-include_lib("eunit/include/eunit.hrl").

-define(MB, 1000000).

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

%% A table owned by a fresh process, which deletes it on `delete' (replying
%% `deleted') and stops on `stop'.
owned_table(Opts, Objects) ->
    Parent = self(),
    Owner = spawn(fun() ->
                          T = ets:new(mem_probe_eunit, Opts),
                          ets:insert(T, Objects()),
                          Parent ! {table, self(), T},
                          owner_loop(T)
                  end),
    receive {table, Owner, T} -> {Owner, T} end.

owner_loop(T) ->
    receive
        {delete, From} -> ets:delete(T), From ! deleted, owner_loop(T);
        stop -> ok
    end.

%% Runs `Fun' in a fresh process (walk_table/2 must run in a process that
%% holds no other binaries) and returns its result.
in_fresh_process(Fun) ->
    Parent = self(),
    Pid = spawn(fun() -> Parent ! {result, self(), Fun()} end),
    receive {result, Pid, R} -> R end.

%% The message the shell prints for a badarg (see mem_probe_badarg).
badarg_message(Fun) ->
    mem_probe_badarg:message(Fun).

%%--------------------------------------------------------------------
%% top_tables / table_size
%%--------------------------------------------------------------------

top_tables_binaries_test() ->
    T = ets:new(eunit_big, [public]),
    ets:insert(T, [{I, binary:copy(<<"x">>, ?MB)} || I <- lists:seq(1, 100)]),
    WordBytes = ets:info(T, memory) * erlang:system_info(wordsize),
    Plain = [E || E = #{table := Tab} <- mem_probe:top_tables(100000), Tab =:= T],
    ?assertMatch([#{memory_bytes := WordBytes, off_heap_bytes := undefined}], Plain),
    [First | _] = mem_probe:top_tables(3, [{binaries, true}]),
    ?assertMatch(#{table := T, off_heap_bytes := 100000000, memory_bytes := WordBytes,
                   size := 100, owner_name := undefined}, First),
    %% A map of options is accepted too.
    ?assertMatch([#{table := T}], mem_probe:top_tables(1, #{binaries => true})),
    ets:delete(T).

table_size_test() ->
    T = ets:new(eunit_sized, [public, duplicate_bag]),
    Shared = binary:copy(<<"s">>, ?MB),
    ets:insert(T, [{I rem 7, Shared, binary:part(Shared, I, 65)} || I <- lists:seq(1, 3000)]),
    {ok, S} = mem_probe:table_size(T),
    Flat = lists:sum([erts_debug:flat_size(O) || O <- ets:tab2list(T)]),
    ?assertMatch(#{size := 3000, off_heap_binaries := 1, off_heap_bytes := ?MB,
                   readable := true, type := duplicate_bag}, S),
    ?assertEqual(Flat * erlang:system_info(wordsize), maps:get(objects_bytes, S)),
    ?assertEqual(maps:get(memory_bytes, S) + ?MB, maps:get(total_bytes, S)),
    ets:delete(T).

walk_counts_each_binary_once_across_chunks_test() ->
    Big = binary:copy(<<"b">>, ?MB),
    {Owner, T} = owned_table([public], fun() -> [{I, Big} || I <- lists:seq(1, 5000)] end),
    Parent = self(),
    R = in_fresh_process(
          fun() -> mem_probe_ets:walk_table(T, #{on_chunk => fun(N) -> Parent ! {chunk, N} end}) end),
    Chunks = collect_chunks(),
    ?assert(length(Chunks) > 1),
    ?assertMatch(#{objects := 5000, off_heap_binaries := 1, off_heap_bytes := ?MB}, R),
    Owner ! stop.

collect_chunks() ->
    receive {chunk, N} -> [N | collect_chunks()]
    after 0 -> []
    end.

table_deleted_during_walk_is_vanished_test() ->
    {Owner, T} = owned_table([public],
                             fun() -> [{I, binary:copy(<<"d">>, 100)} || I <- lists:seq(1, 5000)] end),
    %% After the first chunk the owner deletes the table; the walk must
    %% notice at the next chunk and report it gone, not crash.
    Delete = fun(1) -> Owner ! {delete, self()}, receive deleted -> ok end;
                (_) -> ok
             end,
    ?assertEqual(vanished, in_fresh_process(fun() -> mem_probe_ets:walk_table(T, #{on_chunk => Delete}) end)),
    ?assertEqual(vanished, in_fresh_process(fun() -> mem_probe_ets:walk_table(T, #{}) end)),
    Owner ! stop.

private_table_is_unreadable_test() ->
    {Owner, T} = owned_table([private], fun() -> [{1, binary:copy(<<"p">>, ?MB)}] end),
    ?assertEqual(unreadable, in_fresh_process(fun() -> mem_probe_ets:walk_table(T, #{}) end)),
    {ok, S} = mem_probe:table_size(T),
    ?assertMatch(#{readable := false, off_heap_bytes := undefined, protection := private,
                   size := 1}, S),
    [E] = [E || E = #{table := Tab} <- mem_probe:top_tables(100000, [{binaries, true}]), Tab =:= T],
    ?assertMatch(#{off_heap_bytes := undefined, owner := Owner}, E),
    Owner ! stop.

bad_arguments_test() ->
    ?assertEqual("top_tables/2: n must be a non-negative integer, got -3; accepted: 0, 1, 2, ...",
                 badarg_message(fun() -> mem_probe:top_tables(-3) end)),
    ?assertEqual("top_tables/2: unknown option binary; accepted: binaries",
                 badarg_message(fun() -> mem_probe:top_tables(3, [{binary, true}]) end)),
    ?assertEqual("top_tables/2: unknown value for option binaries: 1; accepted: true, false",
                 badarg_message(fun() -> mem_probe:top_tables(3, [{binaries, 1}]) end)),
    ?assertMatch("table_size/1: unknown table eunit_no_such_table; accepted: a table name" ++ _,
                 badarg_message(fun() -> mem_probe:table_size(eunit_no_such_table) end)),
    ?assertMatch("table_size/1: not a table: \"t\"; accepted: " ++ _,
                 badarg_message(fun() -> mem_probe:table_size("t") end)),
    ?assertMatch("print/2: unknown option color;" ++ _,
                 badarg_message(fun() -> mem_probe:print([], [{color, true}]) end)),
    ?assertEqual([], mem_probe:top_tables(0)).

%%--------------------------------------------------------------------
%% memory / allocators
%%--------------------------------------------------------------------

memory_parts_add_up_test() ->
    #{total_bytes := Total, categories := Cs} = mem_probe:memory(),
    By = maps:from_list([{C, B} || #{category := C, bytes := B} <- Cs]),
    #{processes := P, system := S, atom := A, binary := B, code := C, ets := E,
      other_system := O} = By,
    ?assertEqual(Total, P + S),
    ?assertEqual(S, A + B + C + E + O),
    [?assertEqual(Bytes / Total, Share) || #{bytes := Bytes, share := Share} <- Cs].

%% Two instances, new-style blocks per type, a pool, maxima that must not be
%% added, and blocks of another type living in this allocator's carriers.
allocator_summary_test() ->
    Instance = fun(N, Pool) ->
                       {instance, N,
                        [{versions, "0.9", "3.0"},
                         {options, [{e, true}]},
                         {mbcs, [{blocks, [{binary_alloc, [{count, 10, 99, 99}, {size, 1000, 9999, 9999}]},
                                           {ets_alloc, [{count, 1, 1, 1}, {size, 24, 24, 24}]}]},
                                 {carriers, 2, 5, 5},
                                 {carriers_size, 4096, 99999, 99999}]},
                         {sbcs, [{blocks, [{binary_alloc, [{count, 1, 1, 1}, {size, 600000, 600000, 600000}]}]},
                                 {carriers, 1, 1, 1},
                                 {carriers_size, 606208, 606208, 606208}]}]
                        ++ Pool
                        ++ [{calls, [{binary_alloc, 0, 5}]}]}
               end,
    Pool = [{mbcs_pool, [{blocks, [{binary_alloc, [{count, 3}, {size, 300}]}]},
                         {carriers, 1}, {carriers_size, 2048},
                         {fetch, 0, 0}]}],
    Row = mem_probe_system:allocator_summary(binary_alloc, [Instance(0, []), Instance(1, Pool)]),
    ?assertEqual(#{allocator => binary_alloc,
                   instances => 2,
                   blocks => 2 * (10 + 1 + 1) + 3,
                   blocks_bytes => 2 * (1000 + 24 + 600000) + 300,
                   carriers => 2 * (2 + 1) + 1,
                   carriers_bytes => 2 * (4096 + 606208) + 2048,
                   usage => (2 * (1000 + 24 + 600000) + 300) / (2 * (4096 + 606208) + 2048),
                   mbcs_usage => (2 * 1024 + 300) / (2 * 4096 + 2048),
                   sbcs_carriers_bytes => 2 * 606208,
                   pool_carriers_bytes => 2048},
                 Row),
    %% The pre-OTP 22 shape: one blocks count and a blocks_size.
    Old = [{instance, 0, [{mbcs, [{blocks, 4, 9, 9}, {blocks_size, 400, 900, 900},
                                  {carriers, 1, 1, 1}, {carriers_size, 1024, 1024, 1024}]}]}],
    ?assertMatch(#{blocks := 4, blocks_bytes := 400, carriers := 1, carriers_bytes := 1024,
                   usage := 0.390625},
                 mem_probe_system:allocator_summary(ets_alloc, Old)),
    ?assertMatch(#{usage := undefined, carriers_bytes := 0},
                 mem_probe_system:allocator_summary(std_alloc, [])).

mseg_cache_test() ->
    Reply = [{instance, 0,
              [{version, "0.9"},
               {memkind, [{name, "all memory"},
                          {status, [{cached_segments, 2}, {cache_hits, 5},
                                    {segments, 6, 6, 6}, {segments_size, 8192, 9999, 9999}]},
                          {calls, [{mseg_alloc, 1, 7}, {mseg_create, 0, 2}]}]}]}],
    ?assertEqual([#{instance => 0, hits => 5, calls => 1000000007,
                    hit_rate => 5 / 1000000007, cached_segments => 2, segments_bytes => 8192}],
                 mem_probe_system:mseg_cache(Reply)),
    ?assertEqual([], mem_probe_system:mseg_cache(false)).

allocators_live_test() ->
    #{allocators := Rows, blocks_bytes := B, carriers_bytes := C, usage := U} = mem_probe:allocators(),
    ?assert(B =< C),
    ?assert(U >= 0 andalso U =< 1),
    ?assertEqual(lists:sort(erlang:system_info(alloc_util_allocators)),
                 lists:sort([A || #{allocator := A} <- Rows])),
    [?assert(R =:= undefined orelse (R >= 0 andalso R =< 1)) || #{usage := R} <- Rows].

%%--------------------------------------------------------------------
%% format
%%--------------------------------------------------------------------

format_erlang_style_test() ->
    Text = lists:flatten(io_lib:format("~ts", [mem_probe:format(
             [#{pid => list_to_pid("<0.1.0>"), value => 10, name => undefined,
                initial_call => {lists, map, 2}, current_function => {'Elixir.Foo', bar, 0}},
              #{pid => list_to_pid("<0.2.0>"), value => 12345, name => init,
                initial_call => {erlang, apply, 2}, current_function => {gen, call, 4}}])])),
    ?assertEqual(
       "pid      name   value  initial_call    current_function\n"
       "-------  ----  ------  --------------  ------------------\n"
       "<0.1.0>  -         10  lists:map/2     'Elixir.Foo':bar/0\n"
       "<0.2.0>  init  12,345  erlang:apply/2  gen:call/4",
       Text).

human_bytes_test() ->
    ?assertEqual("12.5 KiB", mem_probe_format:human_bytes(12800)),
    ?assertEqual("95.4 MiB", mem_probe_format:human_bytes(100000000)),
    ?assertEqual("1.0 TiB", mem_probe_format:human_bytes(1 bsl 40)),
    ?assertEqual("64 B", mem_probe_format:human_bytes(64)).
