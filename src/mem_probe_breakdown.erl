%%% @doc Where in a term the bytes are: an exact breakdown by retained size.
%%%
%%% Every heap object and every distinct off-heap binary of the term is
%%% charged once, to its dominator: the deepest position that every path
%%% from the root to it passes through. A subterm reachable from two fields is
%%% charged to their common parent, never to one of them; the answer does not
%%% depend on walk order. The walk and the dominator computation run in the
%%% NIF (`native/term_walker/src/breakdown.rs'), budgeted on the caller's
%%% scheduler and then, for a large term, again from the root on a dirty CPU
%%% scheduler, like `mem_probe:term_size/1'. There is no fallback: without
%%% the native walker the answer is `{error, native_walker_unavailable}'.
%%%
%%% A result is `{ok, #{total, rows, name}}':
%%% <ul>
%%% <li>`total': `bytes' (equals `term_size(Term)''s `bytes'),
%%%     `shared_words', `off_heap_bytes', `off_heap_binaries',
%%%     `literal_words' (module literals, reported apart, never charged),
%%%     `objects', and `graph_nodes' and `graph_bytes': the objects and
%%%     binaries the walk met and the most bytes its arrays held (the tree
%%%     pass's, or for a term with sharing the graph's).</li>
%%% <li>`rows': the heaviest accumulation points, heaviest first, each
%%%     `#{path, label, bytes, shared_words, off_heap_bytes, share, count,
%%%     kind}'. `path' is a list of steps (0-based): `{elem, I}' (tuples),
%%%     `{key, Key}' (maps; the key term itself), `{list, First, Last}' (a run
%%%     of list elements, one element when `First =:= Last'; with the option
%%%     `list_runs => ranges', as the Elixir face asks, `{list, First..Last}',
%%%     an Elixir `Range'), `{env, I}' (a fun's free variables). `count' is
%%%     the objects charged there.</li>
%%% </ul>
%%% A position is a row when it retains at least `min_share' of the total
%%% and no single child retains more than half of it: wrappers (a record
%%% around a map, a list around its one run of elements) are not rows, their
%%% heavy part is. The root is never a row; rows may nest.
-module(mem_probe_breakdown).

-export([breakdown/2, state_breakdown/2, diff_breakdown/2, format/2]).

-define(DEFAULT_MIN_SHARE, 0.01).
-define(DEFAULT_ROWS, 20).
-define(DEFAULT_DEPTH, 32).
%% The walk keeps up to about 32 bytes per object (a DAG 4 more per reference): past this many objects it stops
%% (`{error, too_many_objects}') rather than take gigabytes on a live node.
-define(DEFAULT_MAX_OBJECTS, 10000000).
-define(DEFAULT_TIMEOUT, 5000).
%% A key larger than this (in words) is shown by its text in a path sent out
%% of a measured process, so that the answer stays small.
-define(MAX_KEY_WORDS, 64).
-define(MAX_KEY_TEXT, 40).

-type step() :: {elem, non_neg_integer()} | {key, term()} | {key_text, binary()}
              | {list, non_neg_integer(), non_neg_integer()} | {list, elixir_range()}
              | {env, non_neg_integer()}.
%% Elixir's `first..last' (`list_runs => ranges').
-type elixir_range() :: #{'__struct__' := 'Elixir.Range', first := non_neg_integer(),
                          last := non_neg_integer(), step := 1}.
-type row() :: #{path := [step()], label := binary(), bytes := non_neg_integer(),
                 shared_words := non_neg_integer(), off_heap_bytes := non_neg_integer(),
                 share := float(), count := non_neg_integer(), kind := atom()}.
-type total() :: #{bytes := non_neg_integer(), shared_words := non_neg_integer(),
                   off_heap_bytes := non_neg_integer(), off_heap_binaries := non_neg_integer(),
                   literal_words := non_neg_integer(), objects := non_neg_integer(),
                   graph_nodes := non_neg_integer(), graph_bytes := non_neg_integer()}.
-type breakdown() :: #{total := total(), rows := [row()], name := binary()}.
-type diff_row() :: #{path := [step()], label := binary(), older_bytes := non_neg_integer(),
                      bytes := non_neg_integer(), growth_bytes := integer(), share := float(),
                      growth_share := float()}.
-type breakdown_diff() :: #{total := #{older_bytes := non_neg_integer(),
                                       newer_bytes := non_neg_integer(),
                                       growth_bytes := integer()},
                            rows := [diff_row()]}.
-export_type([step/0, breakdown/0, row/0, total/0, breakdown_diff/0, diff_row/0]).

%%--------------------------------------------------------------------
%% API
%%--------------------------------------------------------------------

%% @doc `{ok, Breakdown}' of `Term', or `{error, Reason}'. Options:
%% `min_share' (0.0..1.0, default 0.01), `n' (rows, default 20), `depth'
%% (steps, default 32), `records' (`[{Name, [Field]}]': tuples tagged `Name'
%% with one element per field show field names), `name' (the root's label,
%% default `"term"') and `key_format' (`fun(Key) -> iodata()' for keys that
%% are not atoms; default `~0tp'), `max_objects' (default 10,000,000: a
%% larger term answers `{error, too_many_objects}', as the walk keeps up to about 32
%% bytes per object) and `list_runs' (`pairs', the default: a run of list
%% elements is `{list, First, Last}'; `ranges': `{list, First..Last}', the
%% Elixir `Range' struct, as the Elixir face asks).
-spec breakdown(term(), list() | map()) -> {ok, breakdown()} | {error, term()}.
breakdown(Term, Opts0) ->
    measure(Term, options("breakdown/2", Opts0, [], <<"term">>)).

%% @doc `breakdown/2' of a sys process's state, measured inside the process
%% (as `mem_probe:state_size/2' does): sharing, literals and sub-binaries are
%% seen as they are and only the rows come back. The options of
%% `breakdown/2' (`name' defaults to `"state"') and `timeout' (ms, default
%% 5000). Errors: `noproc', `not_a_sys_process', `timeout',
%% `calling_process', `native_walker_unavailable'.
-spec state_breakdown(pid(), list() | map()) -> {ok, breakdown()} | {error, term()}.
state_breakdown(Pid, Opts0) ->
    F = "state_breakdown/2",
    Opts1 = options(F, Opts0, [timeout], <<"state">>),
    {Timeout, Opts2} = take(timeout, Opts1, ?DEFAULT_TIMEOUT),
    Opts = Opts2#{small_keys => true},
    case native() of
        false ->
            {error, native_walker_unavailable};
        true ->
            Measure = fun(State) ->
                              try measure(State, Opts)
                              catch Class:Reason -> {error, {breakdown_failed, Class, Reason}}
                              end
                      end,
            mem_probe_state:inside(F, Pid, Timeout, Measure)
    end.

%% @doc Which paths grew from `Older' to `Newer' (two breakdowns of the same
%% term or process, `{ok, _}' or bare): `#{total, rows}' where `total' has
%% `older_bytes', `newer_bytes' and `growth_bytes', and each row (largest
%% growth first, only positive growth) has `path', `label', `older_bytes'
%% (0 when the path was not a row before), `bytes', `growth_bytes', `share'
%% (of the newer total) and `growth_share' (of the total growth). A list run
%% that grew past its old end matches the old run of the same list.
-spec diff_breakdown(breakdown() | {ok, breakdown()}, breakdown() | {ok, breakdown()}) ->
          breakdown_diff().
diff_breakdown({ok, Older}, Newer) -> diff_breakdown(Older, Newer);
diff_breakdown(Older, {ok, Newer}) -> diff_breakdown(Older, Newer);
diff_breakdown(#{total := #{bytes := OldTotal}, rows := OldRows},
               #{total := #{bytes := NewTotal}, rows := NewRows}) ->
    Growth = NewTotal - OldTotal,
    Rows = [begin
                Before = older_bytes(Path, OldRows),
                Grew = Bytes - Before,
                #{path => Path, label => Label, older_bytes => Before, bytes => Bytes,
                  growth_bytes => Grew, share => share(Bytes, NewTotal),
                  growth_share => share(Grew, max(Growth, 0))}
            end || #{path := Path, label := Label, bytes := Bytes} <- NewRows],
    Grown = lists:sort(fun(#{growth_bytes := A}, #{growth_bytes := B}) -> A >= B end,
                       [R || #{growth_bytes := G} = R <- Rows, G > 0]),
    #{total => #{older_bytes => OldTotal, newer_bytes => NewTotal, growth_bytes => Growth},
      rows => Grown};
diff_breakdown(Older, Newer) ->
    mem_probe_args:bad("diff_breakdown/2",
                       io_lib:format("expected two breakdowns, got ~0tp and ~0tp",
                                     [summary(Older), summary(Newer)]),
                       "results of breakdown/2 or state_breakdown/2").

%% @doc The text `mem_probe:print/1' shows for a breakdown or a diff of two:
%% one line per row, indented under the rows that contain it, with aligned
%% sizes and shares.
-spec format(map(), list() | map()) -> unicode:chardata().
format(#{total := Total, rows := Rows} = Result, _Opts) ->
    Header = case Result of
                 #{name := Name} -> total_line(Name, Total);
                 _ -> diff_line(Total)
             end,
    Lines = case Rows of
                [] -> [["  (no position retains at least the minimum share)"]];
                _ -> table(Rows)
            end,
    lists:join($\n, [Header | Lines] ++ rest_line(Result)).

%% What no row holds: the root's own objects, parts shared between
%% positions (charged to their common parent), positions under the share.
rest_line(#{name := Name, total := #{bytes := Total}, rows := [_ | _] = Rows}) ->
    Outer = [B || #{path := P, bytes := B} <- Rows,
                  not lists:any(fun(#{path := Q}) -> contains(Q, P) end, Rows)],
    Rest = Total - lists:sum(Outer),
    [io_lib:format("~s in no row: ~ts's own objects, parts shared between its positions, "
                   "positions under the minimum share", [human(Rest), Name])];
rest_line(_) ->
    [].

%%--------------------------------------------------------------------
%% Measuring
%%--------------------------------------------------------------------

%% Options as a map over the walk's defaults (so the walk reads them in one
%% match), `name' (a binary) defaulting to `Name'. Valid options are checked
%% clause by clause (no list of checks is built per call); anything else
%% goes through `mem_probe_args:options/3', which raises the badarg that
%% names the option.
options(F, Opts0, Extra, Name) ->
    Defaults = #{name => Name, min_share => ?DEFAULT_MIN_SHARE, n => ?DEFAULT_ROWS,
                 depth => ?DEFAULT_DEPTH, max_objects => ?DEFAULT_MAX_OBJECTS,
                 list_runs => pairs, records => []},
    Opts = case valid_options(Opts0, Extra, Defaults) of
               {ok, Valid} -> Valid;
               error -> maps:merge(Defaults, mem_probe_args:options(F, Opts0, known(Extra)))
           end,
    case Opts of
        #{name := Text} when is_binary(Text) -> Opts;
        #{name := Other} -> Opts#{name := text(Other)}
    end.

valid_options(Opts, Extra, Acc) when is_map(Opts) ->
    valid_options(maps:to_list(Opts), Extra, Acc);
valid_options([{Key, Value} | Rest], Extra, Acc) ->
    case valid(Key, Value, Extra) of
        true -> valid_options(Rest, Extra, Acc#{Key => Value});
        false -> error
    end;
valid_options([], _Extra, Acc) ->
    {ok, Acc};
valid_options(_Other, _Extra, _Acc) ->
    error.

%% `{Key, Check}' for `mem_probe_args:options/3', from `valid/3'.
known(Extra) ->
    [{Key, fun(Value) -> valid(Key, Value, Extra) end} || Key <- option_keys(Extra)].

option_keys(Extra) ->
    [min_share, n, depth, records, name, key_format, max_objects, list_runs | Extra].

valid(min_share, S, _) -> is_number(S) andalso S >= 0 andalso S =< 1;
valid(n, N, _) -> is_integer(N) andalso N > 0;
valid(depth, D, _) -> is_integer(D) andalso D >= 0;
valid(records, Records, _) -> is_records(Records);
valid(name, T, _) -> is_binary(T) orelse is_atom(T) orelse io_lib:char_list(T);
valid(key_format, Fun, _) -> is_function(Fun, 1);
valid(max_objects, M, _) -> is_integer(M) andalso M > 0;
valid(list_runs, R, _) -> R =:= pairs orelse R =:= ranges;
valid(timeout, T, [timeout]) -> is_timeout(T);
valid(_Key, _Value, _Extra) -> false.

is_timeout(infinity) -> true;
is_timeout(T) -> is_integer(T) andalso T >= 0.

is_records(Records) when is_list(Records) ->
    lists:all(fun({Name, Fields}) when is_atom(Name), is_list(Fields) ->
                      lists:all(fun(F) when is_atom(F) -> true;
                                   ({F, _Default}) when is_atom(F) -> true;
                                   (_) -> false
                                end, Fields);
                 (_) -> false
              end, Records);
is_records(_) ->
    false.

take(Key, Map, Default) ->
    {maps:get(Key, Map, Default), maps:remove(Key, Map)}.

native() ->
    maps:get(mode, mem_probe_sizes:info()) =:= native.

%% The NIF itself refuses to walk until the calibration has passed, so it is
%% asked first; only when it refuses is the mode looked up (which runs the
%% calibration if it has not run yet).
measure(Term, Opts) ->
    case try_walk(Term, Opts) of
        unavailable ->
            case native() of
                false -> {error, native_walker_unavailable};
                true -> walked(Term, walk(Term, Opts), Opts)
            end;
        Walked ->
            walked(Term, Walked, Opts)
    end.

try_walk(Term, Opts) ->
    try walk(Term, Opts) of
        {error, Reason} when Reason =:= not_calibrated; Reason =:= unknown_release_layout ->
            unavailable;
        Walked ->
            Walked
    catch
        error:nif_not_loaded -> unavailable;
        error:undef -> unavailable
    end.

%% Budgeted on this scheduler, then from the root on a dirty one.
walk(Term, #{min_share := Share, n := Rows, depth := Depth, max_objects := Max} = Opts) ->
    MinShare = float(Share),
    Style = style(Opts),
    case mem_probe_nif:breakdown(Term, MinShare, Rows, Depth, Max, Style) of
        budget_exceeded -> mem_probe_nif:breakdown_dirty(Term, MinShare, Rows, Depth, Max, Style);
        Done -> Done
    end.

%% What the NIF writes itself: `{Ranges, Name}', list runs as Elixir ranges
%% or not, and with the root's name the labels it can (all but those with
%% keys that need `key_format'); with record definitions (which only this
%% side reads) it writes none (`false').
style(#{list_runs := Runs, records := Records, name := Name}) ->
    Ranges = Runs =:= ranges,
    case Records of
        [] -> {Ranges, Name};
        _ -> {Ranges, false}
    end.

walked(Term, {ok, {Total, Words, OffHeap, Binaries, Literal, Objects, Nodes, GraphBytes}, Rows},
       #{name := Name} = Opts) ->
    {ok, #{name => Name,
           total => #{bytes => Total, shared_words => Words, off_heap_bytes => OffHeap,
                      off_heap_binaries => Binaries, literal_words => Literal,
                      objects => Objects, graph_nodes => Nodes,
                      graph_bytes => GraphBytes},
           rows => rows(Rows, Term, Opts)}};
walked(_Term, {error, Reason}, _Opts) when Reason =:= too_many_objects;
                                          Reason =:= out_of_memory ->
    %% Past max_objects, or past the walk memory limit (walk_memory_limit):
    %% the walk stopped before allocating more.
    {error, Reason};
walked(_Term, {error, {layout_error, What, Address, Word}}, _Opts) ->
    %% The same fault policy as the term sizes: the node goes to fallback.
    {error, {layout_error, mem_probe_sizes:fault("breakdown/2", breakdown,
                                                 {What, Address, Word})}};
walked(_Term, {error, Reason}, _Opts) ->
    {error, {walk_failed, Reason}}.

%% The NIF's rows as maps: bytes and share come computed; a row whose label
%% the NIF could not write (`false') is labelled here, following its path
%% through the term.
rows([{Path, Label, Bytes, Words, OffHeap, Share, Count, Kind} | Rest], Term, Opts)
  when is_binary(Label) ->
    [#{path => Path, label => Label, bytes => Bytes, shared_words => Words,
       off_heap_bytes => OffHeap, share => Share, count => Count, kind => Kind}
     | rows(Rest, Term, Opts)];
rows([{Path, false, Bytes, Words, OffHeap, Share, Count, Kind} | Rest], Term, Opts) ->
    {Label, Shown} = (labeller(Opts))(Term, Path),
    [#{path => Shown, label => Label, bytes => Bytes, shared_words => Words,
       off_heap_bytes => OffHeap, share => Share, count => Count, kind => Kind}
     | rows(Rest, Term, Opts)];
rows([], _Term, _Opts) ->
    [].

share(_Part, 0) -> 0.0;
share(Part, Whole) -> Part / Whole.

%%--------------------------------------------------------------------
%% Labels
%%--------------------------------------------------------------------

%% `fun(Term, Path) -> {Label, Path}': the label follows the path through
%% the term (to find record tags); with `small_keys', large keys in the
%% returned path are replaced by their text. The label is made one binary
%% at the end (appending to a binary would allocate it off the heap), and
%% the returned path is built in the same pass.
labeller(Opts) ->
    Records = [{Name, [field_name(F) || F <- Fields]}
               || {Name, Fields} <- maps:get(records, Opts, [])],
    KeyFormat = maps:get(key_format, Opts, fun default_key_format/1),
    Label = {Records, KeyFormat, maps:get(small_keys, Opts, false),
             maps:get(list_runs, Opts, pairs)},
    Root = maps:get(name, Opts),
    fun(Term, Path) -> label(Path, {value, Term}, Label, Root, []) end.

%% UTF-8, as a `key_format' answers (`io_lib' writes characters).
default_key_format(K) -> unicode:characters_to_binary(io_lib:format("~0tp", [K])).

%% A list run as the caller writes one: `{list, First, Last}', or for Elixir
%% (`list_runs => ranges') `{list, First..Last}', built here as the Elixir
%% `Range' struct it is, so the Elixir face passes the result through.
run_step({list, F, L}, ranges) ->
    {list, #{'__struct__' => 'Elixir.Range', first => F, last => L, step => 1}};
run_step(Step, _Runs) ->
    Step.

%% The bounds of a list run in either form, `none' for any other step.
run_bounds({list, F, L}) -> {F, L};
run_bounds({list, #{'__struct__' := 'Elixir.Range', first := F, last := L}}) -> {F, L};
run_bounds(_Step) -> none.

field_name({F, _Default}) -> F;
field_name(F) -> F.

label([], _At, _Label, Text, Shown) ->
    {iolist_to_binary(Text), lists:reverse(Shown)};
label([Step0 | Rest], At, {Records, KeyFormat, Small, Runs} = Label, Text, Shown) ->
    %% A run may come as an Elixir range already (`list_runs => ranges').
    Step = case run_bounds(Step0) of
               {F, L} -> {list, F, L};
               none -> Step0
           end,
    {Part, Next} = step(Step, At, Records, KeyFormat),
    ShownStep = case Step of
                    {key, Key} when Small ->
                        case erts_debug:flat_size(Key) > ?MAX_KEY_WORDS of
                            true -> {key_text, unicode:characters_to_binary(key_text(Key, KeyFormat))};
                            false -> Step
                        end;
                    {list, _, _} -> run_step(Step, Runs);
                    _ -> Step
                end,
    label(Rest, Next, Label, [Text, Part], [ShownStep | Shown]).

%% The text of one step (a binary) and the term it leads to (`none' once
%% the path leaves what can be followed, e.g. a kind of object Erlang cannot
%% index).
step({elem, I}, {value, T}, Records, _KeyFormat) when is_tuple(T), I < tuple_size(T) ->
    Part = case record_field(T, I, Records) of
               {ok, Field} -> <<$., (atom_to_binary(Field, utf8))/binary>>;
               none -> <<"{", (integer_to_binary(I))/binary, "}">>
           end,
    {Part, {value, element(I + 1, T)}};
step({elem, I}, _At, _Records, _KeyFormat) ->
    {<<"{", (integer_to_binary(I))/binary, "}">>, none};
step({key, K}, At, _Records, KeyFormat) ->
    Next = case At of
               {value, M} when is_map(M) ->
                   case M of
                       #{K := V} -> {value, V};
                       _ -> none
                   end;
               _ -> none
           end,
    {unicode:characters_to_binary(key_part(K, KeyFormat)), Next};
step({list, F, L}, At, _Records, _KeyFormat) when F =:= L ->
    Next = case At of
               {value, List} when is_list(List) -> nth(F, List);
               _ -> none
           end,
    {<<"[", (integer_to_binary(F))/binary, "]">>, Next};
step({list, F, L}, _At, _Records, _KeyFormat) ->
    {<<"[", (integer_to_binary(F))/binary, "..", (integer_to_binary(L))/binary, "]">>, none};
step({env, I}, At, _Records, _KeyFormat) ->
    Next = case At of
               {value, Fun} when is_function(Fun) ->
                   {env, Env} = erlang:fun_info(Fun, env),
                   case I < length(Env) of
                       true -> {value, lists:nth(I + 1, Env)};
                       false -> none
                   end;
               _ -> none
           end,
    {<<".env[", (integer_to_binary(I))/binary, "]">>, Next};
step({key_text, Text}, _At, _Records, _KeyFormat) ->
    {<<"[", Text/binary, "]">>, none}.

nth(0, [H | _]) -> {value, H};
nth(N, [_ | T]) -> nth(N - 1, T);
nth(_, _) -> none.

record_field(_T, _I, []) ->
    none;
record_field(T, I, Records) when I >= 1 ->
    case element(1, T) of
        Tag when is_atom(Tag) ->
            case lists:keyfind(Tag, 1, Records) of
                {Tag, Fields} when length(Fields) + 1 =:= tuple_size(T) ->
                    {ok, lists:nth(I, Fields)};
                _ -> none
            end;
        _ -> none
    end;
record_field(_T, _I, _Records) ->
    none.

%% Atom keys whose whole name reads as an identifier print as fields
%% (`.sessions'); other keys, and names such as 'a\n', in brackets.
key_part(K, KeyFormat) when is_atom(K) ->
    Name = atom_to_list(K),
    Identifier = "^[a-z_][a-zA-Z0-9_]*[?!]?$",
    case re:run(Name, Identifier, [{capture, none}, unicode, dollar_endonly]) of
        match -> [$. | Name];
        nomatch -> ["[", key_text(K, KeyFormat), "]"]
    end;
key_part(K, KeyFormat) ->
    ["[", key_text(K, KeyFormat), "]"].

key_text(K, KeyFormat) ->
    Text = unicode:characters_to_list(iolist_to_binary(KeyFormat(K))),
    case string:length(Text) > ?MAX_KEY_TEXT of
        true -> [string:slice(Text, 0, ?MAX_KEY_TEXT - 3), "..."];
        false -> Text
    end.

text(T) when is_binary(T) -> T;
text(T) when is_atom(T) -> atom_to_binary(T, utf8);
text(T) -> unicode:characters_to_binary(T).

%%--------------------------------------------------------------------
%% Diff
%%--------------------------------------------------------------------

older_bytes(Path, OldRows) ->
    case [B || #{path := P, bytes := B} <- OldRows, P =:= Path] of
        [B | _] -> B;
        [] -> older_run_bytes(Path, OldRows)
    end.

%% A list's whole run grows with the list ([0..9999] -> [0..10999]): match
%% the old run of the same list that starts at 0.
older_run_bytes([], _OldRows) ->
    0;
older_run_bytes(Path, OldRows) ->
    [Last | Parent] = lists:reverse(Path),
    case run_bounds(Last) of
        {0, _} ->
            Runs = [{L, B} || #{path := P, bytes := B} <- OldRows,
                              [OldLast | Parent1] <- [lists:reverse(P)],
                              Parent1 =:= Parent,
                              {0, L} <- [run_bounds(OldLast)]],
            case lists:reverse(lists:sort(Runs)) of
                [{_, B} | _] -> B;
                [] -> 0
            end;
        _ -> 0
    end.

summary(#{} = M) -> maps:keys(M);
summary(Other) -> Other.

%%--------------------------------------------------------------------
%% Text
%%--------------------------------------------------------------------

total_line(Name, #{bytes := Bytes, shared_words := Words, off_heap_bytes := OffHeap,
                   off_heap_binaries := Bins, literal_words := Literal}) ->
    io_lib:format("~ts retains ~s: ~s of heap (~s words), ~s off-heap in ~s binaries; "
                  "~s literal words apart",
                  [Name, human(Bytes), human(Words * erlang:system_info(wordsize)),
                   group(Words), human(OffHeap), group(Bins), group(Literal)]).

diff_line(#{older_bytes := Old, newer_bytes := New, growth_bytes := Growth}) ->
    io_lib:format("grew ~s: ~s -> ~s", [human(Growth), human(Old), human(New)]).

%% Rows in tree order (each under the nearest row containing it, heaviest
%% first among siblings), labels indented by nesting.
table(Rows) ->
    Indexed = lists:zip(lists:seq(1, length(Rows)), Rows),
    Parent = fun({I, #{path := P}}) ->
                     Containing = [{length(Q), J} || {J, #{path := Q}} <- Indexed, J =/= I,
                                                     contains(Q, P)],
                     case lists:reverse(lists:sort(Containing)) of
                         [{_, J} | _] -> J;
                         [] -> root
                     end
             end,
    Parents = maps:from_list([{I, Parent(R)} || {I, _} = R <- Indexed]),
    Ordered = tree(root, 0, Indexed, Parents),
    Columns = case Rows of
                  [#{growth_bytes := _} | _] ->
                      [{"grew", growth_bytes, bytes}, {"now", bytes, bytes},
                       {"share", share, share}, {"of growth", growth_share, share}];
                  _ ->
                      [{"bytes", bytes, bytes}, {"share", share, share},
                       {"off-heap", off_heap_bytes, bytes}, {"objects", count, count},
                       {"kind", kind, text}]
              end,
    Header = ["path" | [Title || {Title, _, _} <- Columns]],
    Body = [[[lists:duplicate(2 * Depth, $\s), Label]
             | [cell(Kind, maps:get(Key, Row)) || {_, Key, Kind} <- Columns]]
            || {Depth, #{label := Label} = Row} <- Ordered],
    Texts = [[unicode:characters_to_list(C) || C <- Line] || Line <- [Header | Body]],
    Widths = lists:foldl(fun(Line, Ws) -> [max(W, string:length(C)) || {C, W} <- lists:zip(Line, Ws)] end,
                         [0 || _ <- Header], Texts),
    [string:trim(
       lists:join("  ", [pad(I, C, W) || {I, C, W} <- lists:zip3(lists:seq(1, length(Line)), Line, Widths)]),
       trailing) || Line <- Texts].

tree(Parent, Depth, Indexed, Parents) ->
    Children = [R || {I, _} = R <- Indexed, maps:get(I, Parents) =:= Parent],
    lists:append([[{Depth, Row} | tree(I, Depth + 1, Indexed, Parents)]
                  || {I, Row} <- Children]).

%% Whether position `Q' contains position `P': `Q' is a prefix of `P', a run
%% step covering the element or run at the same place.
contains(Q, P) when length(Q) =< length(P) ->
    {Head, _} = lists:split(length(Q), P),
    Q =/= P andalso lists:all(fun({A, B}) -> step_contains(A, B) end, lists:zip(Q, Head));
contains(_Q, _P) ->
    false.

step_contains(A, B) ->
    case {run_bounds(A), run_bounds(B)} of
        {{F, L}, {F2, L2}} -> F =< F2 andalso L2 =< L;
        _ -> A =:= B
    end.

pad(1, Text, Width) -> [Text, lists:duplicate(Width - string:length(Text), $\s)];
pad(_, Text, Width) -> [lists:duplicate(Width - string:length(Text), $\s), Text].

cell(bytes, B) -> human(B);
cell(share, S) -> io_lib:format("~.1f%", [S * 100]);
cell(count, N) -> integer_to_list(N);
cell(text, A) -> atom_to_list(A).

human(B) -> mem_probe_format:human_bytes(B).

group(N) -> integer_to_list(N).
