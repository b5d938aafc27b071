%%% @doc The term-size NIF: loader, mode, scheduling and the fallback path.
%%%
%%% The native walker reads a term's words in place. It is trusted only
%%% when four things hold: the library loaded, this OTP release has a
%%% layout in the walker's layout table, the literal area was found (from
%%% the emulator's symbols, or where it exports none, as on OTP 29, from
%%% `/proc/self/maps' proven with known literals and heap terms), and the
%%% calibration set (`mem_probe_calibration') sized by the walker agrees with
%%% `erts_debug:flat_size/1', `erts_debug:size_shared/1' and
%%% `erts_debug:size/1'. The calibration reads memory through guarded reads
%%% (a failing read is a refusal, never a fault), so an unverified layout
%%% table (OTP 26, 28) can be tried safely. The check runs once, on first
%%% use; its verdict is kept in `persistent_term' and handed to the NIF,
%%% which refuses every other walk until then.
%%% Otherwise every call answers through the fallback path: the erts_debug
%%% BIFs, which are exact for flat and shared words but cannot see literals or
%%% off-heap binaries (those fields are `undefined').
%%%
%%% Scheduling: a walk first runs on the caller's normal scheduler with a work
%%% budget of about a millisecond. A term too large for it is walked again,
%%% from the root, on a dirty CPU scheduler; no address survives between the
%%% two calls because the process may be garbage-collected in between.
-module(mem_probe_nif).

-export([flat_size/1, shared_size/1, term_size/1, info/0, recalibrate/0]).
%% Raw NIF entry points, exported for the calibration and the tests.
-export([walk/3, walk_dirty/3, native_info/0, walk_flat_raw/2, set_native/1]).
-export([breakdown/5, breakdown_dirty/5]).

-on_load(load/0).

-define(STATE_KEY, {?MODULE, state}).
-define(ERRORS_KEY, {?MODULE, walk_errors}).
%% Bytes one walk may allocate for its own bookkeeping (`walk_memory_limit').
-define(DEFAULT_WALK_MEMORY, 1 bsl 30).

-type mode() :: native | fallback.
-type sizes() :: #{
    flat_words := non_neg_integer(),
    shared_words := non_neg_integer(),
    literal_words := non_neg_integer() | undefined,
    off_heap_binaries := non_neg_integer() | undefined,
    off_heap_bytes := non_neg_integer() | undefined,
    bytes := non_neg_integer()
}.
-export_type([sizes/0, mode/0]).

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
    persistent_term:put({?MODULE, load_status}, Status),
    %% A new instance of this module (a reload or an upgrade) decides its mode
    %% again: the old verdict was about the old instance and its library.
    case persistent_term:get(?STATE_KEY, undefined) of
        undefined -> ok;
        _ -> persistent_term:erase(?STATE_KEY)
    end,
    %% Always load the Erlang module: without the library it runs in fallback.
    ok.

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
      walk_memory_limit => application:get_env(mem_probe, walk_memory_limit,
                                               ?DEFAULT_WALK_MEMORY),
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
%% at most 1 ms of CPU time). Returns `{ok, FlatWords}' (mode `flat'),
%% `{ok, SharedWords}' (`shared'), `{ok, Sizes}' (`full': the map of
%% `term_size/1'), `{ok, Flat, Shared, Literal, HashmapNodeWords, Bins,
%% BinBytes, SizeWords, TermSizeBytes}' (`calibrate'), `budget_exceeded' or
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
breakdown(_Term, _MinShare, _MaxRows, _MaxDepth, _MaxObjects) ->
    erlang:nif_error(nif_not_loaded).

%% @private The same on a dirty CPU scheduler, without a budget.
breakdown_dirty(_Term, _MinShare, _MaxRows, _MaxDepth, _MaxObjects) ->
    erlang:nif_error(nif_not_loaded).

%%--------------------------------------------------------------------
%% Public sizing functions
%%--------------------------------------------------------------------

-spec flat_size(term()) -> non_neg_integer().
flat_size(Term) ->
    case native(Term, flat, "flat_size/1") of
        {ok, Flat} -> Flat;
        fallback -> erts_debug:flat_size(Term)
    end.

-spec shared_size(term()) -> non_neg_integer().
shared_size(Term) ->
    case native(Term, shared, "shared_size/1") of
        {ok, Shared} -> Shared;
        fallback -> erts_debug:size_shared(Term)
    end.

%% The NIF builds the very map returned here (no copy on the way).
-spec term_size(term()) -> sizes().
term_size(Term) ->
    case native(Term, full, "term_size/1") of
        {ok, Sizes} -> Sizes;
        fallback -> fallback_term_size(Term)
    end.

fallback_term_size(Term) ->
    Shared = erts_debug:size_shared(Term),
    #{flat_words => erts_debug:flat_size(Term),
      shared_words => Shared,
      literal_words => undefined,
      off_heap_binaries => undefined,
      off_heap_bytes => undefined,
      bytes => Shared * erlang:system_info(wordsize)}.

%% The native walk's result, or `fallback' when the node is in fallback mode
%% (or has just been switched there by another walk). A walk that cannot
%% give an exact answer raises a clear error rather than handing the term to
%% a BIF, which on a shared term walks every path and never yields:
%% a flat size beyond 128 bits, the walk's memory limit, or a layout error,
%% which also switches the node to fallback mode (the fault policy).
native(Term, WalkMode, Function) ->
    case mode() of
        fallback ->
            fallback;
        native ->
            case run(Term, WalkMode) of
                {ok, _} = Done -> Done;
                %% The verdict was taken back meanwhile, or the NIF has no
                %% layout after all: the fallback answers.
                {error, not_calibrated} -> fallback;
                {error, unknown_release_layout} -> fallback;
                {error, flat_size_overflow} -> overflow(Function);
                {error, out_of_memory} -> out_of_memory(Function);
                {error, {layout_error, What, Address, Word}} ->
                    layout_fault(Function, WalkMode, What, Address, Word)
            end
    end.

%% A flat size beyond 128 bits (a term shared ~128 levels deep).
overflow(Function) ->
    erlang:error({flat_size_overflow,
                  iolist_to_binary([Function, ": the flat size of this term is above 2^128 words, "
                                    "so no copy of it could ever be made; shared_size/1 still "
                                    "answers"])}).

out_of_memory(Function) ->
    Limit = application:get_env(mem_probe, walk_memory_limit, ?DEFAULT_WALK_MEMORY),
    erlang:error({walk_out_of_memory,
                  iolist_to_binary(io_lib:format(
                    "~s: sizing this term would take the walker more than its memory limit "
                    "(walk_memory_limit: ~p bytes); nothing was allocated past it",
                    [Function, Limit]))}).

%% The first layout error switches the node to fallback mode, with what
%% stopped the walk and when in info(); recalibrate/0 may switch it back.
layout_fault(Function, WalkMode, What, Address, Word) ->
    count_walk_error(),
    Fault = #{what => What, address => Address, word => Word, walk => WalkMode,
              at => list_to_binary(calendar:system_time_to_rfc3339(
                                     erlang:system_time(millisecond), [{unit, millisecond}]))},
    case persistent_term:get(?STATE_KEY, undefined) of
        #{mode := native} = State ->
            _ = set_native(false),
            persistent_term:put(?STATE_KEY,
                                maps:merge(State, fallback({layout_error, Fault})));
        _ ->
            ok
    end,
    erlang:error({layout_error,
                  iolist_to_binary(io_lib:format(
                    "~s: the native walker met an unexpected layout (~s at 0x~.16b: 0x~.16b), so "
                    "this node is now in fallback mode; mem_probe:info() has the details and "
                    "recalibrate() tries the walker again", [Function, What, Address, Word]))}).

%% A native walk: budgeted on this scheduler, then (if needed) from the root
%% again on a dirty CPU scheduler. Only the dirty flat walk uses the heap
%% size (to notice shared paths early); the budgeted one is bounded anyway.
run(Term, WalkMode) ->
    case walk(Term, WalkMode, 0) of
        budget_exceeded when WalkMode =:= flat ->
            {total_heap_size, HeapWords} = erlang:process_info(self(), total_heap_size),
            walk_dirty(Term, flat, HeapWords);
        budget_exceeded ->
            walk_dirty(Term, WalkMode, 0);
        Done ->
            Done
    end.

count_walk_error() ->
    case persistent_term:get(?ERRORS_KEY, undefined) of
        undefined -> ok;
        Ref -> counters:add(Ref, 1, 1)
    end.

%%--------------------------------------------------------------------
%% Mode and calibration
%%--------------------------------------------------------------------

-spec mode() -> mode().
mode() ->
    case persistent_term:get(?STATE_KEY, undefined) of
        undefined -> maps:get(mode, calibrate());
        #{mode := Mode} -> Mode
    end.

%% @doc What the library is doing and why: `mode' (`native' or `fallback'),
%% `otp_release', the layout in use, the literal range, `reason' when in
%% fallback, the fields that are inexact in that mode, and how many native
%% walks stopped on an unexpected layout since load.
-spec info() -> map().
info() ->
    _ = mode(),
    State = persistent_term:get(?STATE_KEY),
    Errors =
        case persistent_term:get(?ERRORS_KEY, undefined) of
            undefined -> 0;
            Ref -> counters:get(Ref, 1)
        end,
    State#{walk_errors => Errors}.

%% @doc Runs the calibration again (for instance after forcing a mode in
%% the application environment) and returns the new `info()'.
-spec recalibrate() -> map().
recalibrate() ->
    _ = calibrate(),
    info().

calibrate() ->
    case persistent_term:get(?ERRORS_KEY, undefined) of
        undefined -> persistent_term:put(?ERRORS_KEY, counters:new(1, [write_concurrency]));
        _ -> ok
    end,
    Base = #{otp_release => list_to_binary(erlang:system_info(otp_release)),
             erts_version => list_to_binary(erlang:system_info(version))},
    State = maps:merge(Base, decide()),
    persistent_term:put(?STATE_KEY, State),
    State.

decide() ->
    Forced = application:get_env(mem_probe, mode, auto),
    LoadStatus = persistent_term:get({?MODULE, load_status}, {not_loaded, unknown}),
    State =
        case {Forced, LoadStatus} of
            {fallback, _} -> fallback(forced_by_configuration);
            {_, {not_loaded, Why}} -> fallback({nif_not_loaded, Why});
            {_, loaded} -> native_or_fallback(native_info())
        end,
    case LoadStatus of
        loaded -> set_native(maps:get(mode, State) =:= native);
        _ -> ok
    end,
    State.

native_or_fallback(#{layout := undefined}) ->
    %% No layout table for this release (24 and older, 30 and later).
    fallback({unknown_release_layout, list_to_binary(erlang:system_info(otp_release))});
native_or_fallback(#{literal_range := {error, Why}}) ->
    fallback({no_literal_range, Why});
native_or_fallback(#{verified := false, guarded_reads := false}) ->
    fallback(unverified_layout_needs_guarded_reads);
native_or_fallback(#{layout := Layout, verified := Verified,
                     literal_range := {Method, Start, Size},
                     literal_cross_check := CrossCheck, guarded_reads := Guarded}) ->
    Native = #{layout => Layout, verified => Verified, literal_method => Method,
               literal_start => Start, literal_size => Size,
               literal_cross_check => CrossCheck,
               calibration_reads => case Guarded of true -> guarded; false -> direct end},
    case mem_probe_calibration:check() of
        ok -> Native#{mode => native};
        {mismatch, Cases} -> maps:merge(Native, fallback({calibration_mismatch, Cases}))
    end.

fallback(Reason) ->
    #{mode => fallback,
      reason => Reason,
      inexact => [literal_words, off_heap_binaries, off_heap_bytes,
                  {shared_words, hashmap_nodes_counted_twice},
                  {flat_words, blocks_scheduler_and_walks_every_path}]}.
