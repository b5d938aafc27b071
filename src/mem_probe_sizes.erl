%%% @doc Term sizes: the native walker when it is trusted, the VM's own
%%% functions when it is not, and the policy between them.
%%%
%%% The walker (`mem_probe_nif') is trusted only when four things hold: the
%%% library loaded, this OTP release has a layout in the walker's layout
%%% table, the literal area was found (from the emulator's symbols, or where
%%% it exports none, as on OTP 29, from `/proc/self/maps' proven with known
%%% literals and heap terms), and the calibration set (`mem_probe_calibration')
%%% sized by the walker agrees with `erts_debug:flat_size/1',
%%% `erts_debug:size_shared/1' and `erts_debug:size/1'. The calibration reads
%%% memory through guarded reads (a failing read is a refusal, never a
%%% fault), so an unverified layout table (OTP 26, 28) can be tried safely.
%%% The check runs once, on first use (again after a reload of the library);
%%% its verdict is kept in `persistent_term' and handed to the NIF, which
%%% refuses every other walk until then. Otherwise every call answers
%%% through the fallback path: the erts_debug BIFs, which are exact for flat
%%% and shared words but cannot see literals or off-heap binaries (those
%%% fields are `undefined').
%%%
%%% Faults: the first walk that meets an unexpected layout switches the node
%%% to fallback (`info()' says what stopped it, where and when) and raises
%%% for that call; a flat size beyond 128 bits and a walk past its memory
%%% limit raise too. None of them is handed to a BIF that walks every path.
%%%
%%% Scheduling: a walk first runs on the caller's normal scheduler with a work
%%% budget (about 10k words, at most 1 ms of CPU time). A term too large for
%%% it is walked again, from the root, on a dirty CPU scheduler; no address
%%% survives between the two calls because the process may be
%%% garbage-collected in between.
-module(mem_probe_sizes).

-export([flat_size/1, shared_size/1, term_size/1, info/0, recalibrate/0, fault/3]).

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
%% info/0: the mode and why, the release, the layout in use (native mode),
%% the library's loads and the count of walks that met an unexpected layout.
-type info() :: #{mode := mode(), otp_release := binary(), erts_version := binary(),
                  library := term(), walk_errors := non_neg_integer(),
                  reason => term(), inexact => [atom() | {atom(), atom()}],
                  layout => atom(), verified => boolean(), literal_method => atom(),
                  literal_start => non_neg_integer(), literal_size => non_neg_integer(),
                  literal_cross_check => term(), calibration_reads => guarded | direct}.
-export_type([sizes/0, mode/0, info/0]).

%%--------------------------------------------------------------------
%% Public sizing functions
%%--------------------------------------------------------------------

%% Each size function asks the NIF first and looks no further when it gets
%% its answer (an integer, or `ok' and the six fields of term_size/1): a small term
%% costs the NIF call and this one match. Anything else (a walk past the
%% normal scheduler's budget, a NIF not yet calibrated or not loaded, an
%% error) goes to `slow/4'.
-spec flat_size(term()) -> non_neg_integer().
flat_size(Term) ->
    try mem_probe_nif:walk(Term, flat, 0) of
        Flat when is_integer(Flat) -> Flat;
        Other -> slow(Other, Term, flat, "flat_size/1")
    catch
        error:nif_not_loaded -> slow({error, not_calibrated}, Term, flat, "flat_size/1")
    end.

-spec shared_size(term()) -> non_neg_integer().
shared_size(Term) ->
    try mem_probe_nif:walk(Term, shared, 0) of
        Shared when is_integer(Shared) -> Shared;
        Other -> slow(Other, Term, shared, "shared_size/1")
    catch
        error:nif_not_loaded -> slow({error, not_calibrated}, Term, shared, "shared_size/1")
    end.

%% The NIF gives the fields; the one map is made here, with literal keys.
-spec term_size(term()) -> sizes().
term_size(Term) ->
    try mem_probe_nif:walk(Term, full, 0) of
        {ok, Flat, Shared, Literal, Binaries, BinaryBytes, Bytes} ->
            #{flat_words => Flat, shared_words => Shared, literal_words => Literal,
              off_heap_binaries => Binaries, off_heap_bytes => BinaryBytes, bytes => Bytes};
        Other ->
            slow(Other, Term, full, "term_size/1")
    catch
        error:nif_not_loaded -> slow({error, not_calibrated}, Term, full, "term_size/1")
    end.

sizes(Flat, Shared, Literal, Binaries, BinaryBytes, Bytes) ->
    #{flat_words => Flat, shared_words => Shared, literal_words => Literal,
      off_heap_binaries => Binaries, off_heap_bytes => BinaryBytes, bytes => Bytes}.

%% What the first walk answered when it was not the size: the walk again on
%% a dirty scheduler, the calibration, the fallback or an error.
slow(First, Term, WalkMode, Function) ->
    case native(First, Term, WalkMode, Function) of
        {ok, Size} when is_integer(Size) ->
            Size;
        {ok, Flat, Shared, Literal, Binaries, BinaryBytes, Bytes} ->
            sizes(Flat, Shared, Literal, Binaries, BinaryBytes, Bytes);
        fallback ->
            fallback(Term, WalkMode)
    end.

fallback(Term, flat) ->
    erts_debug:flat_size(Term);
fallback(Term, shared) ->
    erts_debug:size_shared(Term);
fallback(Term, full) ->
    Shared = erts_debug:size_shared(Term),
    #{flat_words => erts_debug:flat_size(Term),
      shared_words => Shared,
      literal_words => undefined,
      off_heap_binaries => undefined,
      off_heap_bytes => undefined,
      bytes => Shared * erlang:system_info(wordsize)}.

%% `{ok, Answer}' from a native walk, given what the first (budgeted) walk
%% answered, or `fallback' when the node is in fallback mode (or has just
%% been switched there by another walk). A walk that cannot give an exact
%% answer raises a clear error rather than handing the term to a BIF, which
%% on a shared term walks every path and never yields: a flat size beyond
%% 128 bits, the walk's memory limit, or a layout error, which also
%% switches the node to fallback mode (the fault policy).
%%
%% The NIF refuses every walk (`not_calibrated') until the calibration's
%% verdict for its current load is native, and that verdict is taken back
%% on a fault, so the mode is looked at only when the NIF refuses (first
%% use, a reload, fallback mode, no library).
native({error, not_calibrated}, Term, WalkMode, Function) ->
    case mode() of
        fallback -> fallback;
        native -> answer(walk(Term, WalkMode), Function, WalkMode)
    end;
native(budget_exceeded, Term, WalkMode, Function) ->
    answer(dirty_walk(Term, WalkMode), Function, WalkMode);
native(First, _Term, WalkMode, Function) ->
    answer(First, Function, WalkMode).

answer(Size, _Function, _WalkMode) when is_integer(Size) ->
    {ok, Size};
answer({ok, _, _, _, _, _, _} = Fields, _Function, _WalkMode) ->
    Fields;
%% The verdict was taken back meanwhile, or the NIF has no layout after all:
%% the fallback answers.
answer({error, not_calibrated}, _Function, _WalkMode) ->
    fallback;
answer({error, unknown_release_layout}, _Function, _WalkMode) ->
    fallback;
answer({error, flat_size_overflow}, Function, _WalkMode) ->
    overflow(Function);
answer({error, out_of_memory}, Function, _WalkMode) ->
    out_of_memory(Function);
answer({error, {layout_error, What, Address, Word}}, Function, WalkMode) ->
    layout_fault(Function, WalkMode, What, Address, Word).

%% A flat size beyond 128 bits (a term shared ~128 levels deep).
overflow(Function) ->
    erlang:error({flat_size_overflow,
                  iolist_to_binary([Function, ": the flat size of this term is above 2^128 words, "
                                    "so no copy of it could ever be made; shared_size/1 still "
                                    "answers"])}).

out_of_memory(Function) ->
    Limit = mem_probe_nif:walk_memory_limit(),
    erlang:error({walk_out_of_memory,
                  iolist_to_binary(io_lib:format(
                    "~s: sizing this term would take the walker more than its memory limit "
                    "(walk_memory_limit: ~p bytes); nothing was allocated past it",
                    [Function, Limit]))}).

%% The first layout error switches the node to fallback mode, with what
%% stopped the walk and when in info(); recalibrate/0 may switch it back.
layout_fault(Function, WalkMode, What, Address, Word) ->
    erlang:error({layout_error, fault(Function, WalkMode, {What, Address, Word})}).

%% @doc The fault policy for a native walk that stopped on an unexpected
%% layout (`{What, Address, Word}' from the NIF), whichever walk it was:
%% the node switches to fallback mode, `info()' says what stopped it, where
%% and when; returns the message for the caller's error.
-spec fault(string(), atom(), {binary(), non_neg_integer(), non_neg_integer()}) -> binary().
fault(Function, WalkMode, {What, Address, Word}) ->
    count_walk_error(),
    Fault = #{what => What, address => Address, word => Word, walk => WalkMode,
              at => list_to_binary(calendar:system_time_to_rfc3339(
                                     erlang:system_time(millisecond), [{unit, millisecond}]))},
    case persistent_term:get(?STATE_KEY, undefined) of
        #{mode := native} = State ->
            _ = mem_probe_nif:set_native(false),
            persistent_term:put(?STATE_KEY,
                                maps:merge(State, fallback({layout_error, Fault})));
        _ ->
            ok
    end,
    iolist_to_binary(io_lib:format(
      "~s: the native walker met an unexpected layout (~s at 0x~.16b: 0x~.16b), so "
      "this node is now in fallback mode; mem_probe:info() has the details and "
      "recalibrate() tries the walker again", [Function, What, Address, Word])).

%% A native walk: budgeted on this scheduler, then (if needed) from the root
%% again on a dirty CPU scheduler. Only the dirty flat walk uses the heap
%% size (to notice shared paths early); the budgeted one is bounded anyway.
walk(Term, WalkMode) ->
    case mem_probe_nif:walk(Term, WalkMode, 0) of
        budget_exceeded -> dirty_walk(Term, WalkMode);
        Done -> Done
    end.

%% No address survives between the two calls: the process may be
%% garbage-collected in between, so the dirty walk starts from the root.
dirty_walk(Term, flat) ->
    {total_heap_size, HeapWords} = erlang:process_info(self(), total_heap_size),
    mem_probe_nif:walk_dirty(Term, flat, HeapWords);
dirty_walk(Term, WalkMode) ->
    mem_probe_nif:walk_dirty(Term, WalkMode, 0).

count_walk_error() ->
    case persistent_term:get(?ERRORS_KEY, undefined) of
        undefined -> ok;
        Ref -> counters:add(Ref, 1, 1)
    end.

%%--------------------------------------------------------------------
%% Mode and calibration
%%--------------------------------------------------------------------

%% The verdict for the library as it is loaded now: a reload or an upgrade
%% of `mem_probe_nif' (a new load) is decided again.
-spec mode() -> mode().
mode() ->
    {Load, _, _} = mem_probe_nif:load_status(),
    case persistent_term:get(?STATE_KEY, undefined) of
        #{mode := Mode, load := Load} -> Mode;
        _ -> maps:get(mode, calibrate())
    end.

%% @doc What the library is doing and why: `mode' (`native' or `fallback'),
%% `otp_release', the layout in use, the literal range, `reason' when in
%% fallback, the fields that are inexact in that mode, and how many native
%% walks stopped on an unexpected layout since load.
-spec info() -> info().
info() ->
    _ = mode(),
    State = persistent_term:get(?STATE_KEY),
    Errors =
        case persistent_term:get(?ERRORS_KEY, undefined) of
            undefined -> 0;
            Ref -> counters:get(Ref, 1)
        end,
    (maps:remove(load, State))#{walk_errors => Errors}.

%% @doc Runs the calibration again (for instance after forcing a mode in
%% the application environment) and returns the new `info()'.
-spec recalibrate() -> info().
recalibrate() ->
    _ = calibrate(),
    info().

calibrate() ->
    case persistent_term:get(?ERRORS_KEY, undefined) of
        undefined -> persistent_term:put(?ERRORS_KEY, counters:new(1, [write_concurrency]));
        _ -> ok
    end,
    {Load, _, Loads} = mem_probe_nif:load_status(),
    %% `library': how many times the library loaded here, and when last (a
    %% reload or an upgrade shows as one more load).
    Base = #{otp_release => list_to_binary(erlang:system_info(otp_release)),
             erts_version => list_to_binary(erlang:system_info(version)),
             library => Loads},
    State = maps:merge(Base, decide()),
    persistent_term:put(?STATE_KEY, State#{load => Load}),
    State.

decide() ->
    Forced = application:get_env(mem_probe, mode, auto),
    {_, LoadStatus, _} = mem_probe_nif:load_status(),
    State =
        case {Forced, LoadStatus} of
            {fallback, _} -> fallback(forced_by_configuration);
            {_, {not_loaded, Why}} -> fallback({nif_not_loaded, Why});
            {_, loaded} -> native_or_fallback(mem_probe_nif:native_info())
        end,
    case LoadStatus of
        loaded -> mem_probe_nif:set_native(maps:get(mode, State) =:= native);
        _ -> ok
    end,
    State.

native_or_fallback(#{layout := undefined}) ->
    %% No layout table for this release (24 and older, 30 and later), or for
    %% the one `layout_release' asked for.
    Release = case application:get_env(mem_probe, layout_release) of
                  {ok, Forced} -> integer_to_binary(Forced);
                  undefined -> list_to_binary(erlang:system_info(otp_release))
              end,
    fallback({unknown_release_layout, Release});
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
