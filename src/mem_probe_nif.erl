%%% @doc The term-size NIF library: loading it, and its entry points.
%%%
%%% This module only loads the Rust library (native/mem_probe_nif) and holds
%%% the stubs it replaces. Whether its walks are trusted, and what answers
%%% when they are not, is `mem_probe_sizes''s job; the calibration set is
%%% `mem_probe_calibration'. At load the library gets the release (for its
%%% layout table) and what it needs to find the literal area where the
%%% emulator exports no symbol for it (docs/LAYOUT.md §7). It refuses every
%%% walk but the guarded calibration until `set_native(true)'.
-module(mem_probe_nif).

%% The library's entry points (raw: `mem_probe_sizes' and the calibration
%% call them; so do the tests).
-export([walk/3, walk_dirty/3, native_info/0, walk_flat_raw/2, set_native/1]).
%% What `mem_probe_sizes' needs to know of the loading.
-export([load_status/0, walk_memory_limit/0]).
%% The breakdown's entry points (`mem_probe_breakdown').
-export([breakdown/6, breakdown_dirty/6]).
%% Empty NIFs: the fixed cost of a call (bench/nif_floor.exs).
-export([echo/1, echo_rustler/1]).

-on_load(load/0).

-define(LOAD_STATUS_KEY, {?MODULE, load_status}).
%% Bytes one walk may allocate for its own bookkeeping (`walk_memory_limit').
-define(DEFAULT_WALK_MEMORY, 1 bsl 30).

%%--------------------------------------------------------------------
%% Loading
%%--------------------------------------------------------------------

load() ->
    Path = filename:join(priv_dir(), "mem_probe_nif"),
    Status =
        case erlang:load_nif(Path, load_info()) of
            ok -> loaded;
            {error, {Reason, Text}} -> {not_loaded, {Reason, Text}}
        end,
    %% A new instance of this module (a reload or an upgrade) has a status of
    %% its own, so the mode is decided again (mem_probe_sizes compares them).
    Loads = case persistent_term:get(?LOAD_STATUS_KEY, undefined) of
                {_, _, #{loads := N}} -> N + 1;
                _ -> 1
            end,
    At = list_to_binary(calendar:system_time_to_rfc3339(erlang:system_time(second))),
    persistent_term:put(?LOAD_STATUS_KEY,
                        {make_ref(), Status, #{loads => Loads, loaded_at => At}}),
    %% Always load the Erlang module: without the library it runs in fallback.
    ok.

%% @doc How the library loaded into this instance of the module: `{Load,
%% loaded | {not_loaded, Why}, #{loads, loaded_at}}', where `Load' is new at
%% every load, `loads' counts the loads of this module on the node (a reload
%% or an upgrade is one more) and `loaded_at' says when the last was.
-spec load_status() -> {reference() | undefined, loaded | {not_loaded, term()}, map()}.
load_status() ->
    persistent_term:get(?LOAD_STATUS_KEY, {undefined, {not_loaded, module_not_loaded}, #{}}).

%% What the library needs to know at load: the release (for its layout
%% table) and, for finding the literal area where the emulator exports no
%% symbol for it, the literal super carrier's sizes and terms whose place is
%% known: module constants and a persistent term (literal), and terms built
%% here at run time (on this process's heap).
load_info() ->
    #{otp_release => list_to_binary(erlang:system_info(otp_release)),
      %% Another release's table, for trying a table on a release it was not
      %% made for (the tests do, to prove a wrong table is refused): always
      %% treated as unverified, so calibrated with guarded reads.
      layout_release => application:get_env(mem_probe, layout_release, undefined),
      walk_memory_limit => walk_memory_limit(),
      %% A test switch: every walk but the calibration ends in a layout
      %% error, so the tests can watch the fault policy act.
      inject_layout_error => application:get_env(mem_probe, inject_layout_error, false),
      literal_carrier => literal_carrier(),
      literal_probes => [{mem_probe_nif, literal_probe, [1, 2, 3]}, [a, b, c],
                         fun lists:map/2, {}, persistent_literal_probe()],
      heap_probes => [binary_to_term(term_to_binary({heap_probe, [1, 2, 3]})),
                      lists:seq(1, 3), make_ref()]}.

%% `{Size, UsedFromBottom, UsedFromTop}' of the literal super carrier, or
%% `undefined' when the emulator does not describe one.
literal_carrier() ->
    try
        Mmap = erlang:system_info({allocator, erts_mmap}),
        Literal = proplists:get_value(literal_mmap, Mmap),
        Scs = proplists:get_value(scs, proplists:get_value(options, Literal)),
        Sizes = proplists:get_value(sizes, proplists:get_value(supercarrier, Literal)),
        {Scs, proplists:get_value(total_sa, Sizes), proplists:get_value(total_sua, Sizes)}
    of
        {S, Sa, Sua} = Carrier when is_integer(S), is_integer(Sa), is_integer(Sua) -> Carrier;
        _ -> undefined
    catch
        _:_ -> undefined
    end.

%% A persistent term lives in the literal area. Put once per node: putting a
%% new key is cheap, replacing or erasing one would make every process scan.
persistent_literal_probe() ->
    Key = {?MODULE, literal_probe},
    case persistent_term:get(Key, undefined) of
        undefined -> persistent_term:put(Key, {literal_probe, [1, 2, 3]});
        _ -> ok
    end,
    persistent_term:get(Key).

%% @doc Bytes one walk may allocate for itself (`walk_memory_limit').
-spec walk_memory_limit() -> non_neg_integer() | infinity.
walk_memory_limit() ->
    application:get_env(mem_probe, walk_memory_limit, ?DEFAULT_WALK_MEMORY).

priv_dir() ->
    case code:priv_dir(mem_probe) of
        {error, bad_name} ->
            %% Not started as an application (plain erlc builds): the priv
            %% folder sits beside ebin.
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

%%--------------------------------------------------------------------
%% NIF stubs (replaced when the library loads)
%%--------------------------------------------------------------------

%% @private Walk on the caller's scheduler within a budget (about 10k words,
%% at most 1 ms of CPU time). Returns `FlatWords' (mode `flat'),
%% `SharedWords' (`shared'), `{ok, Flat, Shared, Literal, Bins, BinBytes,
%% Bytes}' (`full': the fields of `term_size/1''s map), `{ok,
%% Flat, Shared, Literal, HashmapNodeWords, Bins, BinBytes, SizeWords,
%% TermSizeBytes}' (`calibrate'), `budget_exceeded' or
%% `{error, Reason}'. `HeapWords' is the caller's heap size for a flat walk
%% (0: unknown).
walk(_Term, _Mode, _HeapWords) -> erlang:nif_error(nif_not_loaded).

%% @private The same walk on a dirty CPU scheduler, without a budget.
walk_dirty(_Term, _Mode, _HeapWords) -> erlang:nif_error(nif_not_loaded).

%% @private What the library found at load: `#{layout => Name | undefined,
%% verified => boolean(), literal_range => {symbols | proc_maps, Start, Size}
%% | {error, Why}, literal_cross_check => agrees | disagrees | not_checked,
%% guarded_reads => boolean(), term_size_check => boolean()}'.
native_info() -> erlang:nif_error(nif_not_loaded).

%% @private The calibration's verdict for the NIF: until `true', it refuses
%% every walk but the (guarded) calibration. Returns the verdict it keeps.
set_native(_Native) -> erlang:nif_error(nif_not_loaded).

%% @private The plain (path-counting) flat walk with a word limit, no
%% sharing detection: `{ok, Words}' or `limit'. For tests of the DAG switch.
walk_flat_raw(_Term, _Limit) -> erlang:nif_error(nif_not_loaded).

%% @private Retained sizes by position (`mem_probe_breakdown') within a
%% budget: `{ok, Total, Rows}', `budget_exceeded' or `{error, Reason}'.
breakdown(_Term, _MinShare, _MaxRows, _MaxDepth, _MaxObjects, _Style) ->
    erlang:nif_error(nif_not_loaded).

%% @private The same on a dirty CPU scheduler, without a budget.
breakdown_dirty(_Term, _MinShare, _MaxRows, _MaxDepth, _MaxObjects, _Style) ->
    erlang:nif_error(nif_not_loaded).

%% @private Returns `Term': an empty NIF (a bare C function), the fixed cost
%% of any NIF call on this VM (bench/nif_floor.exs).
echo(_Term) -> erlang:nif_error(nif_not_loaded).

%% @private The same through rustler's wrapper.
echo_rustler(_Term) -> erlang:nif_error(nif_not_loaded).
