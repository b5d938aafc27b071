%%% @doc System memory and allocators, in bytes, from one snapshot.
%%%
%%% Why the numbers can mislead:
%%% <ul>
%%% <li>`erlang:memory/0' counts memory the VM's allocators have handed out
%%% (blocks). The operating system sees carriers: the large areas the
%%% allocators reserve and carve blocks from. A node whose carriers are
%%% mostly empty (fragmentation after a peak) shows a small
%%% `erlang:memory(total)' and a large resident size; `allocators/0' shows
%%% both, and `usage' = blocks / carriers says how full the carriers
%%% are.</li>
%%% <li>The categories of `erlang:memory/0' overlap: `total' = `processes' +
%%% `system'; `processes_used' is part of `processes'; `atom', `binary',
%%% `code' and `ets' are parts of `system'; `atom_used' is part of `atom'.
%%% `memory/0' says which category each is part of and adds `other_system'
%%% (the part of `system' in none of the named ones), so that shares add up.
%%% ETS memory does not include the binaries the tables refer to: those are
%%% in `binary'.</li>
%%% <li>Usage from two samples can exceed 1 (recon issue #55: blocks read in
%%% one call, carriers in another). Here every ratio is computed from the
%%% blocks and carriers of the same `erlang:system_info({allocator, Type})'
%%% reply, in which each instance reports both at once. Only current
%%% values are summed (the replies also carry maxima, which must not be
%%% added), over all instances and over multi-block carriers (`mbcs'),
%%% single-block carriers (`sbcs') and carriers in the migration pool
%%% (`mbcs_pool'). A carrier put in the pool leaves its instance's `mbcs'
%%% figures, blocks included, so nothing is counted twice.</li>
%%% <li>`blocks_bytes' of an allocator type is what lies in that type's
%%% carriers. With carrier migration a carrier can hold a few blocks of
%%% another type; they are counted where they lie, which is what usage
%%% (fragmentation) needs.</li>
%%% <li>All sizes the VM reports here are bytes already; nothing is in
%%% words (a confusion observer_cli and LiveDashboard have had).</li>
%%% </ul>
-module(mem_probe_system).

-export([memory/0, allocators/0]).
%% Internal, exported for the tests: sums one allocator's snapshot.
-export([allocator_summary/2, mseg_cache/1]).

-export_type([memory/0, memory_category/0, allocators/0, allocator_row/0, mseg_cache_row/0]).

%% One `erlang:memory/0' category; `share' is `undefined' when the total is 0,
%% `part_of' for a category this module does not know.
-type memory_category() :: #{category := atom(), bytes := non_neg_integer(),
                             share := float() | undefined,
                             part_of := total | processes | system | atom | undefined}.
-type memory() :: #{total_bytes := non_neg_integer(), categories := [memory_category()]}.
%% Ratios are `undefined' when their denominator is 0.
-type allocator_row() :: #{allocator := atom(), instances := non_neg_integer(),
                           blocks := non_neg_integer(), blocks_bytes := non_neg_integer(),
                           carriers := non_neg_integer(), carriers_bytes := non_neg_integer(),
                           usage := float() | undefined, mbcs_usage := float() | undefined,
                           sbcs_carriers_bytes := non_neg_integer(),
                           pool_carriers_bytes := non_neg_integer()}.
-type mseg_cache_row() :: #{instance := non_neg_integer(), hits := non_neg_integer(),
                            calls := non_neg_integer(), hit_rate := float() | undefined,
                            cached_segments := non_neg_integer(),
                            segments_bytes := non_neg_integer()}.
-type allocators() :: #{blocks_bytes := non_neg_integer(), carriers_bytes := non_neg_integer(),
                        usage := float() | undefined, mseg_cache_hit_rate := float() | undefined,
                        allocators := [allocator_row()], mseg_cache := [mseg_cache_row()]}.

%% Where each `erlang:memory/0' category belongs, in display order.
-define(PARTS, [{processes, total}, {processes_used, processes}, {system, total},
                {atom, system}, {atom_used, atom}, {binary, system}, {code, system},
                {ets, system}]).

%%--------------------------------------------------------------------
%% memory/0
%%--------------------------------------------------------------------

%% @doc `erlang:memory/0' in bytes, each category with its share of the
%% total and the category it is part of:
%% `#{total_bytes, categories => [#{category, bytes, share, part_of}]}'.
%% `other_system' is `system' minus `atom', `binary', `code' and `ets'.
-spec memory() -> memory().
memory() ->
    Mem = erlang:memory(),
    Total = proplists:get_value(total, Mem),
    Known = [{C, P, B} || {C, P} <- ?PARTS, {_, B} <- [lists:keyfind(C, 1, Mem)]],
    Other = case {lists:keyfind(system, 1, Mem), [B || {_, system, B} <- Known]} of
                {{system, System}, Parts} -> [{other_system, system, System - lists:sum(Parts)}];
                {false, _} -> []
            end,
    Extra = [{C, undefined, B} || {C, B} <- Mem, C =/= total,
                                  not lists:keymember(C, 1, ?PARTS)],
    #{total_bytes => Total,
      categories => [#{category => C, bytes => B, share => share(B, Total), part_of => P}
                     || {C, P, B} <- Known ++ Other ++ Extra]}.

%%--------------------------------------------------------------------
%% allocators/0
%%--------------------------------------------------------------------

%% @doc Per allocator type (`binary_alloc', `eheap_alloc', `ets_alloc', ...),
%% summed over its instances: `blocks' and `blocks_bytes' (what is handed out),
%% `carriers' and `carriers_bytes' (what is reserved from the OS), `usage'
%% (blocks_bytes / carriers_bytes; low means fragmented), `mbcs_usage' (the
%% same for multi-block carriers alone, where fragmentation happens),
%% `sbcs_carriers_bytes' and `pool_carriers_bytes'. The top level sums them
%% and adds the mseg_alloc carrier cache: `mseg_cache' per instance (`hits',
%% `calls', `hit_rate', `cached_segments') and `mseg_cache_hit_rate' overall.
%% Allocators are listed by `carriers_bytes', largest first.
-spec allocators() -> allocators().
allocators() ->
    Rows = [Row || Type <- alloc_util_types(),
                   Info <- [erlang:system_info({allocator, Type})],
                   is_list(Info),
                   Row <- [allocator_summary(Type, Info)]],
    Sorted = lists:sort(fun(#{carriers_bytes := A}, #{carriers_bytes := B}) -> A >= B end,
                        Rows),
    Mseg = mseg_cache(safe_allocator_info(mseg_alloc)),
    Blocks = lists:sum([B || #{blocks_bytes := B} <- Rows]),
    Carriers = lists:sum([C || #{carriers_bytes := C} <- Rows]),
    Hits = lists:sum([H || #{hits := H} <- Mseg]),
    Calls = lists:sum([C || #{calls := C} <- Mseg]),
    #{blocks_bytes => Blocks,
      carriers_bytes => Carriers,
      usage => ratio(Blocks, Carriers),
      mseg_cache_hit_rate => ratio(Hits, Calls),
      allocators => Sorted,
      mseg_cache => Mseg}.

alloc_util_types() ->
    try erlang:system_info(alloc_util_allocators)
    catch error:badarg -> []
    end.

safe_allocator_info(Type) ->
    try erlang:system_info({allocator, Type})
    catch error:badarg -> false
    end.

%% @private One allocator type's row from one `system_info({allocator, T})'
%% reply: a list of `{instance, N, Props}'.
-spec allocator_summary(atom(), list()) -> allocator_row().
allocator_summary(Type, Instances) ->
    Sections = [{Kind, section(Section)}
                || {instance, _, Props} <- Instances,
                   {Kind, Section} <- Props,
                   Kind =:= mbcs orelse Kind =:= sbcs orelse Kind =:= mbcs_pool],
    Sum = fun(Kinds) ->
                  lists:foldl(fun({K, {Bn, Bb, Cn, Cb}}, {Bn0, Bb0, Cn0, Cb0}) ->
                                      case lists:member(K, Kinds) of
                                          true -> {Bn0 + Bn, Bb0 + Bb, Cn0 + Cn, Cb0 + Cb};
                                          false -> {Bn0, Bb0, Cn0, Cb0}
                                      end
                              end, {0, 0, 0, 0}, Sections)
          end,
    {Blocks, BlocksBytes, Carriers, CarriersBytes} = Sum([mbcs, sbcs, mbcs_pool]),
    {_, MbcBlocksBytes, _, MbcCarriersBytes} = Sum([mbcs, mbcs_pool]),
    {_, _, _, SbcCarriersBytes} = Sum([sbcs]),
    {_, _, _, PoolCarriersBytes} = Sum([mbcs_pool]),
    #{allocator => Type,
      instances => length([I || {instance, I, _} <- Instances]),
      blocks => Blocks,
      blocks_bytes => BlocksBytes,
      carriers => Carriers,
      carriers_bytes => CarriersBytes,
      usage => ratio(BlocksBytes, CarriersBytes),
      mbcs_usage => ratio(MbcBlocksBytes, MbcCarriersBytes),
      sbcs_carriers_bytes => SbcCarriersBytes,
      pool_carriers_bytes => PoolCarriersBytes}.

%% {BlockCount, BlockBytes, CarrierCount, CarrierBytes} of one mbcs, sbcs
%% or mbcs_pool section, current values only. OTP 22 and later list blocks
%% per allocator type (`{blocks, [{Type, [{count, ...}, {size, ...}]}]}');
%% earlier releases had `{blocks, N, ...}' and `{blocks_size, S, ...}'.
section(Props) ->
    lists:foldl(
      fun({blocks, PerType}, {Bn, Bb, Cn, Cb}) when is_list(PerType) ->
              {Bn + lists:sum([current(count, P) || {_, P} <- PerType]),
               Bb + lists:sum([current(size, P) || {_, P} <- PerType]), Cn, Cb};
         ({blocks, N}, {Bn, Bb, Cn, Cb}) when is_integer(N) -> {Bn + N, Bb, Cn, Cb};
         ({blocks, N, _, _}, {Bn, Bb, Cn, Cb}) -> {Bn + N, Bb, Cn, Cb};
         ({blocks_size, S}, {Bn, Bb, Cn, Cb}) -> {Bn, Bb + S, Cn, Cb};
         ({blocks_size, S, _, _}, {Bn, Bb, Cn, Cb}) -> {Bn, Bb + S, Cn, Cb};
         ({carriers, N}, {Bn, Bb, Cn, Cb}) -> {Bn, Bb, Cn + N, Cb};
         ({carriers, N, _, _}, {Bn, Bb, Cn, Cb}) -> {Bn, Bb, Cn + N, Cb};
         ({carriers_size, S}, {Bn, Bb, Cn, Cb}) -> {Bn, Bb, Cn, Cb + S};
         ({carriers_size, S, _, _}, {Bn, Bb, Cn, Cb}) -> {Bn, Bb, Cn, Cb + S};
         (_, Acc) -> Acc
      end, {0, 0, 0, 0}, Props).

%% The first (current) value of `{Key, Current, ...}' in a property list.
current(Key, Props) ->
    case lists:keyfind(Key, 1, Props) of
        false -> 0;
        Tuple when tuple_size(Tuple) >= 2, is_integer(element(2, Tuple)) -> element(2, Tuple);
        _ -> 0
    end.

%% @private The mseg_alloc carrier cache per instance, from one
%% `system_info({allocator, mseg_alloc})' reply: `hits' (carrier requests
%% served from the cache), `calls' (all carrier requests), `hit_rate',
%% `cached_segments' and `segments_bytes' (current mseg carriers).
-spec mseg_cache(term()) -> [mseg_cache_row()].
mseg_cache(Instances) when is_list(Instances) ->
    [#{instance => N,
       hits => Hits,
       calls => Calls,
       hit_rate => ratio(Hits, Calls),
       cached_segments => current(cached_segments, Status),
       segments_bytes => current(segments_size, Status)}
     || {instance, N, Props} <- Instances,
        {memkind, Kind} <- Props,
        Status <- [proplists:get_value(status, Kind, [])],
        CallList <- [proplists:get_value(calls, Kind, [])],
        Hits <- [current(cache_hits, Status)],
        Calls <- [calls(mseg_alloc, CallList)]];
mseg_cache(_) ->
    [].

%% Call counters are `{Name, Giga, Count}': Giga * 10^9 + Count.
calls(Name, Calls) ->
    case lists:keyfind(Name, 1, Calls) of
        {Name, Giga, N} -> Giga * 1000000000 + N;
        {Name, N} -> N;
        false -> 0
    end.

ratio(_, 0) -> undefined;
ratio(A, B) -> A / B.

share(_, 0) -> undefined;
share(_, undefined) -> undefined;
share(B, Total) -> B / Total.
