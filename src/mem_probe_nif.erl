%%% @doc The term-size NIF: loader, mode, scheduling and the fallback path.
%%%
%%% The native walker reads a term's words in place. It is trusted only
%%% when three things hold: the library loaded, this OTP release has a known
%%% layout in the walker's layout table, and the calibration set
%%% (`mem_probe_calibration') sized by the walker agrees with
%%% `erts_debug:flat_size/1' and `erts_debug:size_shared/1'. The check runs
%%% once, on first use, and its verdict is kept in `persistent_term'.
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
-export([walk/3, walk_dirty/3, native_info/0, walk_flat_raw/2]).
-export([breakdown/4, breakdown_dirty/4]).

-on_load(load/0).

-define(STATE_KEY, {?MODULE, state}).
-define(ERRORS_KEY, {?MODULE, walk_errors}).

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
    LoadInfo = {list_to_binary(erlang:system_info(otp_release)),
                list_to_binary(erlang:system_info(version))},
    Status =
        case erlang:load_nif(Path, LoadInfo) of
            ok -> loaded;
            {error, {Reason, Text}} -> {not_loaded, {Reason, Text}}
        end,
    persistent_term:put({?MODULE, load_status}, Status),
    %% Always load the Erlang module: without the library it runs in fallback.
    ok.

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

%% @private Walk on the caller's scheduler within a budget. Returns
%% `{ok, FlatHi, FlatLo, Shared, Literal, HashmapNodeWords, Bins, BinBytes}'
%% (mode `calibrate': one more element, the `erts_debug:size/1' count),
%% `budget_exceeded' or `{error, Reason}'.
walk(_Term, _Mode, _HeapWords) -> erlang:nif_error(nif_not_loaded).

%% @private The same walk on a dirty CPU scheduler, without a budget.
walk_dirty(_Term, _Mode, _HeapWords) -> erlang:nif_error(nif_not_loaded).

%% @private `{LayoutName | unknown | no_literal_range, LiteralStart, LiteralSize}'.
native_info() -> erlang:nif_error(nif_not_loaded).

%% @private The plain (path-counting) flat walk with a word limit, no
%% sharing detection: `{ok, Words}' or `limit'. For tests of the DAG switch.
walk_flat_raw(_Term, _Limit) -> erlang:nif_error(nif_not_loaded).

%% @private Retained sizes by position (`mem_probe_breakdown') within a
%% budget: `{ok, Total, Rows}', `budget_exceeded' or `{error, Reason}'.
breakdown(_Term, _MinShare, _MaxRows, _MaxDepth) -> erlang:nif_error(nif_not_loaded).

%% @private The same on a dirty CPU scheduler, without a budget.
breakdown_dirty(_Term, _MinShare, _MaxRows, _MaxDepth) -> erlang:nif_error(nif_not_loaded).

%%--------------------------------------------------------------------
%% Public sizing functions
%%--------------------------------------------------------------------

-spec flat_size(term()) -> non_neg_integer().
flat_size(Term) ->
    case mode() of
        native ->
            case run(Term, flat) of
                {ok, Hi, Lo, _, _, _, _, _} -> (Hi bsl 64) bor Lo;
                {error, flat_size_overflow} -> overflow("flat_size/1");
                {error, _} -> erts_debug:flat_size(Term)
            end;
        fallback ->
            erts_debug:flat_size(Term)
    end.

-spec shared_size(term()) -> non_neg_integer().
shared_size(Term) ->
    case mode() of
        native ->
            case run(Term, shared) of
                {ok, _, _, Shared, _, _, _, _} -> Shared;
                {error, _} -> erts_debug:size_shared(Term)
            end;
        fallback ->
            erts_debug:size_shared(Term)
    end.

-spec term_size(term()) -> sizes().
term_size(Term) ->
    case mode() of
        native ->
            case run(Term, full) of
                {ok, Hi, Lo, Shared, Literal, _HashmapNodes, Bins, BinBytes} ->
                    #{flat_words => (Hi bsl 64) bor Lo,
                      shared_words => Shared,
                      literal_words => Literal,
                      off_heap_binaries => Bins,
                      off_heap_bytes => BinBytes,
                      bytes => Shared * erlang:system_info(wordsize) + BinBytes};
                {error, flat_size_overflow} ->
                    overflow("term_size/1");
                {error, _} ->
                    fallback_term_size(Term)
            end;
        fallback ->
            fallback_term_size(Term)
    end.

%% A flat size beyond 128 bits (a term shared ~128 levels deep). Falling
%% back to erts_debug:flat_size/1 here would walk its paths for ever.
overflow(Function) ->
    erlang:error({flat_size_overflow,
                  iolist_to_binary([Function, ": the flat size of this term is above 2^128 words, "
                                    "so no copy of it could ever be made; shared_size/1 still "
                                    "answers"])}).

fallback_term_size(Term) ->
    Shared = erts_debug:size_shared(Term),
    #{flat_words => erts_debug:flat_size(Term),
      shared_words => Shared,
      literal_words => undefined,
      off_heap_binaries => undefined,
      off_heap_bytes => undefined,
      bytes => Shared * erlang:system_info(wordsize)}.

%% A native walk: budgeted on this scheduler, then (if needed) from the root
%% again on a dirty CPU scheduler. Layout errors are counted and answered by
%% the caller through the fallback path.
run(Term, WalkMode) ->
    %% Only the flat walk uses the heap size (to notice shared paths early).
    HeapWords =
        case WalkMode of
            flat -> element(2, erlang:process_info(self(), total_heap_size));
            _ -> 0
        end,
    Result =
        case walk(Term, WalkMode, HeapWords) of
            budget_exceeded -> walk_dirty(Term, WalkMode, HeapWords);
            Done -> Done
        end,
    case Result of
        {error, {layout_error, _, _, _}} -> count_walk_error();
        _ -> ok
    end,
    Result.

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
    case {Forced, LoadStatus} of
        {fallback, _} ->
            fallback(forced_by_configuration);
        {_, {not_loaded, Why}} ->
            fallback({nif_not_loaded, Why});
        {_, loaded} ->
            case native_info() of
                {unknown, _, _} ->
                    %% No layout table for this release (only OTP 25 and 27
                    %% have one): say which release it was.
                    fallback({unknown_release_layout,
                              list_to_binary(erlang:system_info(otp_release))});
                {no_literal_range, _, _} ->
                    fallback(no_literal_range);
                {Layout, LitStart, LitSize} ->
                    Native = #{layout => Layout, literal_start => LitStart,
                               literal_size => LitSize},
                    case mem_probe_calibration:check() of
                        ok ->
                            Native#{mode => native};
                        {mismatch, Cases} ->
                            maps:merge(Native, fallback({calibration_mismatch, Cases}))
                    end
            end
    end.

fallback(Reason) ->
    #{mode => fallback,
      reason => Reason,
      inexact => [literal_words, off_heap_binaries, off_heap_bytes,
                  {shared_words, hashmap_nodes_counted_twice},
                  {flat_words, blocks_scheduler_and_walks_every_path}]}.
