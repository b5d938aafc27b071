%%% @doc Renders any MemProbe result as aligned text tables for a shell.
%%%
%%% The rules are generic, so that every scan (and any plain map or list of
%%% maps) prints without a per-result formatter:
%%% <ul>
%%% <li>`{ok, X}' renders `X'; `{error, R}' renders `error: R'.</li>
%%% <li>A list of maps is a table: one row per map, one column per key (the
%%% union of the keys; identifying keys such as `pid', `table', `name' first,
%%% then the measured values, then the rest in key order).</li>
%%% <li>A map is a key/value table of its plain values, followed by one
%%% titled, indented section per value that is itself a map or a non-empty
%%% list of maps (for instance `groups', `categories', `allocators').</li>
%%% <li>Sizes print with binary units (B, KiB, MiB, GiB, TiB): a value is a
%%% size when its key ends in `bytes' or `memory', is `heap', `stack',
%%% `mailbox', `heap_size', `stack_size' or `total_heap_size' (MemProbe
%%% reports these in bytes), is listed in the `bytes' option, or is
%%% `value' in a map (or row) whose `attr' (or `attribute') is a size
%%% attribute (`memory', `binary_memory', ...) or whose `unit' is `bytes'.
%%% Floats whose key is `share', `usage', `*_usage', `*_rate' or `*_ratio'
%%% print as percentages; `rate' (a diff's growth) prints as bytes per
%%% second, and `change' and `binary_change' as bytes. Other integers get
%%% thousands separators.</li>
%%% <li>Pids print as `<0.1.0>', `{M, F, A}' as `m:f/a' (`M.f/a' in the
%%% Elixir style), `undefined' and `nil' as `-'. Long cells are cut at 60
%%% characters.</li>
%%% </ul>
%%% Options (a list or a map): `style' (`erlang' or `elixir'), `bytes' (a list
%%% of extra keys whose integers are sizes in bytes) and `raw' (`true' prints
%%% integers as they are, without units or separators).
%%%
%%% Numbers are rendered for reading, not for parsing: a rounded `95.4 MiB'
%%% is 100,000,000 bytes give or take 50 KiB. Use the result maps themselves
%%% for arithmetic.
-module(mem_probe_format).

-export([format/1, format/2, print/1, print/2, human_bytes/1, integer_text/1, value_text/2]).

-record(ctx, {style = erlang :: erlang | elixir,
              bytes = [] :: [term()],
              raw = false :: boolean(),
              value_bytes = false :: boolean()}).

-define(MAX_CELL, 60).
-define(BYTE_ATTRS, [memory, binary_memory, total_heap_size, heap_size, stack_size,
                     off_heap_bytes, bytes]).
%% Sizes in MemProbe results whose names do not end in bytes or memory.
-define(BYTE_KEYS, [heap_size, stack_size, total_heap_size, heap, stack, mailbox,
                    change, binary_change]).
%% Columns (and key/value lines) that come first, in this order: what a
%% row is, then what it measures; the rest follow in key order.
-define(FIRST, [kind, id, rank, pid, port, table, allocator, category, part_of, instance, group,
                name, registered_name, owner, owner_name, change, rate, value, count,
                initial_call, current_function, application,
                memory_bytes, off_heap_bytes, total_bytes, bytes, share, size,
                objects_bytes, off_heap_binaries,
                instances, blocks, blocks_bytes, carriers, carriers_bytes, usage,
                mbcs_usage, sbcs_carriers_bytes, pool_carriers_bytes,
                hits, calls, hit_rate, cached_segments, segments_bytes]).

%% @doc The text of `Term' (chardata), without a final newline.
-spec format(term()) -> unicode:chardata().
format(Term) -> format(Term, []).

-spec format(term(), list() | map()) -> unicode:chardata().
format(Term, Opts) ->
    text("format/2", Term, Opts).

text(Function, Term, Opts) ->
    lists:join($\n, render(Term, context(Function, Opts))).

%% @doc Prints `format(Term)' on the standard output and returns `ok'.
-spec print(term()) -> ok.
print(Term) -> print(Term, []).

-spec print(term(), list() | map()) -> ok.
print(Term, Opts) ->
    io:put_chars([text("print/2", Term, Opts), $\n]).

context(Fn, Opts0) ->
    IsKeyList = fun(L) -> is_list(L) andalso lists:all(fun is_atom/1, L) end,
    Opts = mem_probe_args:options(
             Fn, Opts0,
             [{style, fun(S) -> S =:= erlang orelse S =:= elixir end},
              {bytes, IsKeyList},
              {raw, fun is_boolean/1}]),
    #ctx{style = maps:get(style, Opts, erlang),
         bytes = maps:get(bytes, Opts, []),
         raw = maps:get(raw, Opts, false)}.

%%--------------------------------------------------------------------
%% Shapes
%%--------------------------------------------------------------------

%% A list of lines (chardata without newlines).
render({ok, X}, Ctx) ->
    render(X, Ctx);
render({error, Reason}, Ctx) ->
    [["error: ", inline(Reason, Ctx)]];
render([], _Ctx) ->
    ["(none)"];
render(List, Ctx) when is_list(List) ->
    case lists:all(fun is_map/1, List) of
        true -> table(List, Ctx);
        false -> lines(io_lib:format("~tp", [List]))
    end;
render(Map, Ctx) when is_map(Map) ->
    map_lines(Map, Ctx);
render(Other, _Ctx) ->
    lines(io_lib:format("~tp", [Other])).

lines(Chars) ->
    string:split(unicode:characters_to_list(Chars), "\n", all).

map_lines(Map0, Ctx0) ->
    Map = maps:remove('__struct__', Map0),
    Ctx = row_context(Map, Ctx0),
    Keys = order_keys(maps:keys(Map)),
    {Plain, Nested} = lists:partition(fun(K) -> not nested(maps:get(K, Map)) end, Keys),
    KeyValue = case Plain of
                   [] -> [];
                   _ -> align([[key_text(K), cell(K, maps:get(K, Map), Ctx)] || K <- Plain],
                              [left, left])
               end,
    Sections = [["", [key_text(K), ":"]
                 | [["  ", Line] || Line <- render(maps:get(K, Map), Ctx)]]
                || K <- Nested],
    case KeyValue ++ lists:append(Sections) of
        [] -> ["(empty)"];
        [_, _ | _] = All when KeyValue =:= [] -> tl(All); % no blank line first
        All -> All
    end.

nested(V) when is_map(V) -> map_size(V) > 0;
nested([_ | _] = L) -> lists:all(fun is_map/1, L);
nested(_) -> false.

table(Rows0, Ctx) ->
    Rows = [maps:remove('__struct__', R) || R <- Rows0],
    Columns = order_keys(lists:usort(lists:append([maps:keys(R) || R <- Rows]))),
    Cells = [begin
                 RowCtx = row_context(Row, Ctx),
                 [case Row of
                      #{K := V} -> cell(K, V, RowCtx);
                      _ -> {"", none}
                  end || K <- Columns]
             end || Row <- Rows],
    Align = [case lists:usort([Kind || Row <- Cells, {_, Kind} <- [lists:nth(I, Row)],
                                       Kind =/= none]) of
                 [num] -> right;
                 _ -> left
             end || I <- lists:seq(1, length(Columns))],
    Header = [{key_text(K), text} || K <- Columns],
    [HeaderLine | Body] = align([Header | Cells], Align),
    Widths = widths([Header | Cells]),
    Rule = lists:join("  ", [lists:duplicate(W, $-) || W <- Widths]),
    [HeaderLine, Rule | Body].

%% Whether `value' is a size in this map or row.
row_context(Map, Ctx) ->
    Attr = case Map of
               #{attr := A} -> A;
               #{attribute := A} -> A;
               _ -> undefined
           end,
    Unit = maps:get(unit, Map, undefined),
    Ctx#ctx{value_bytes = Ctx#ctx.value_bytes
                orelse lists:member(Attr, ?BYTE_ATTRS)
                orelse Unit =:= bytes orelse Unit =:= byte}.

order_keys(Keys) ->
    First = [K || K <- ?FIRST, lists:member(K, Keys)],
    First ++ lists:sort([K || K <- Keys, not lists:member(K, ?FIRST)]).

%%--------------------------------------------------------------------
%% Alignment
%%--------------------------------------------------------------------

%% Rows of cells (`{Text, Kind}' or plain text) to lines, columns two
%% spaces apart, no trailing spaces.
align(Rows0, Align) ->
    Rows = [[text_of(C) || C <- Row] || Row <- Rows0],
    Widths = widths(Rows),
    [string:trim(lists:join("  ", [pad(T, W, A) || {T, W, A} <- zip3(Row, Widths, Align)]),
                 trailing)
     || Row <- Rows].

widths(Rows) ->
    lists:foldl(fun(Row, Ws) ->
                        [max(W, string:length(text_of(C))) || {C, W} <- lists:zip(Row, Ws)]
                end, [0 || _ <- hd(Rows)], Rows).

text_of({Text, _Kind}) -> Text;
text_of(Text) -> Text.

pad(Text, Width, Align) ->
    Fill = lists:duplicate(max(0, Width - string:length(Text)), $\s),
    case Align of
        right -> [Fill, Text];
        left -> [Text, Fill]
    end.

zip3([A | As], [B | Bs], [C | Cs]) -> [{A, B, C} | zip3(As, Bs, Cs)];
zip3(_, _, _) -> [].

%%--------------------------------------------------------------------
%% Cells
%%--------------------------------------------------------------------

%% `{Text, num | text | none}'.
cell(_Key, V, _Ctx) when V =:= undefined; V =:= nil ->
    {"-", none};
cell(Key, V, Ctx) when is_integer(V) ->
    case Ctx#ctx.raw of
        true -> {integer_to_list(V), num};
        false ->
            case is_bytes(Key, Ctx) of
                true -> {human_bytes(V), num};
                false -> {group(V), num}
            end
    end;
cell(rate, V, #ctx{raw = false}) when is_number(V) ->
    %% Growth rates in diffs are bytes per second.
    {human_bytes(round(V)) ++ "/s", num};
cell(Key, V, Ctx) when is_float(V) ->
    case is_ratio(Key) andalso not Ctx#ctx.raw of
        true -> {percent(V), num};
        false -> {float_to_list(V, [{decimals, 3}, compact]), num}
    end;
cell(_Key, V, Ctx) ->
    {inline(V, Ctx), text}.

%% @doc One value as a table cell shows it (a pid, `m:f/a' or `Mod.f/a', a
%% name), for text that mentions values outside a table.
-spec value_text(term(), list() | map()) -> unicode:chardata().
value_text(Value, Opts) ->
    inline(Value, context("value_text/2", Opts)).

inline(V, _Ctx) when is_pid(V) -> pid_to_list(V);
inline(V, _Ctx) when is_port(V) -> erlang:port_to_list(V);
inline(V, #ctx{style = elixir}) when is_reference(V) ->
    "#Reference<" ++ string:slice(erlang:ref_to_list(V), 5);
inline(V, _Ctx) when is_reference(V) -> erlang:ref_to_list(V);
inline(V, Ctx) when is_atom(V) -> atom_text(V, Ctx);
inline({M, F, A}, Ctx) when is_atom(M), is_atom(F), is_integer(A) ->
    case Ctx#ctx.style of
        elixir -> [module_text(M), ".", atom_to_list(F), "/", integer_to_list(A)];
        erlang -> cut(io_lib:format("~tw:~tw/~w", [M, F, A]))
    end;
inline(V, _Ctx) when is_binary(V) ->
    case io_lib:printable_unicode_list(unicode:characters_to_list(V, utf8)) of
        true -> cut(V);
        false -> cut(io_lib:format("~0tp", [V]))
    end;
inline([_ | _] = V, _Ctx) ->
    case io_lib:printable_unicode_list(V) of
        true -> cut(V);
        false ->
            case lists:all(fun is_map/1, V) of
                true -> integer_to_list(length(V)) ++ " entries";
                false -> cut(io_lib:format("~0tp", [V]))
            end
    end;
inline(V, _Ctx) ->
    cut(io_lib:format("~0tp", [V])).

atom_text(true, _) -> "true";
atom_text(false, _) -> "false";
atom_text(A, #ctx{style = elixir}) ->
    case atom_to_list(A) of
        "Elixir." ++ Alias -> Alias;
        Name -> Name
    end;
atom_text(A, _) -> atom_to_list(A).

%% Elixir style: `Elixir.Foo.Bar' is `Foo.Bar'; any other module is `:mod'.
module_text(M) ->
    case atom_to_list(M) of
        "Elixir." ++ Alias -> Alias;
        Name -> ":" ++ Name
    end.

cut(Chars) ->
    Text = unicode:characters_to_list(Chars),
    case string:length(Text) > ?MAX_CELL of
        true -> string:slice(Text, 0, ?MAX_CELL - 3) ++ "...";
        false -> Text
    end.

key_text(K) when is_atom(K) -> atom_to_list(K);
key_text(K) when is_binary(K) -> cut(K);
key_text(K) -> cut(io_lib:format("~0tp", [K])).

is_bytes(Key, #ctx{bytes = Extra, value_bytes = ValueBytes}) ->
    lists:member(Key, Extra)
        orelse (Key =:= value andalso ValueBytes)
        orelse lists:member(Key, ?BYTE_KEYS)
        orelse (is_atom(Key) andalso has_suffix(atom_to_list(Key), ["bytes", "memory"])).

is_ratio(Key) when is_atom(Key) ->
    Name = atom_to_list(Key),
    lists:member(Name, ["share", "usage", "ratio"])
        orelse has_suffix(Name, ["_usage", "_rate", "_ratio", "_share"]);
is_ratio(_) ->
    false.

has_suffix(Name, Suffixes) ->
    lists:any(fun(S) -> lists:suffix(S, Name) end, Suffixes).

%%--------------------------------------------------------------------
%% Numbers
%%--------------------------------------------------------------------

%% @doc `Bytes' in binary units: `512 B', `12.5 KiB', `95.4 MiB'.
-spec human_bytes(integer()) -> string().
human_bytes(B) when B < 0 -> "-" ++ human_bytes(-B);
human_bytes(B) when B < 1024 -> integer_to_list(B) ++ " B";
human_bytes(B) -> human_bytes(B / 1024, ["KiB", "MiB", "GiB", "TiB", "PiB"]).

human_bytes(V, [Unit]) -> lists:flatten(io_lib:format("~.1f ~s", [V, Unit]));
human_bytes(V, [Unit | Rest]) ->
    %% 1023.96 KiB would print as "1024.0 KiB"; move up a unit first.
    case V >= 1023.95 of
        true -> human_bytes(V / 1024, Rest);
        false -> lists:flatten(io_lib:format("~.1f ~s", [V, Unit]))
    end.

%% @doc `N' with thousands separators, as tables print integers: `1,234,567'.
-spec integer_text(integer()) -> string().
integer_text(N) -> group(N).

percent(F) -> lists:flatten(io_lib:format("~.1f%", [F * 100])).

group(N) when N < 0 -> "-" ++ group(-N);
group(N) ->
    Digits = integer_to_list(N),
    Lead = length(Digits) rem 3,
    {Head, Tail} = lists:split(Lead, Digits),
    Groups = [Head || Head =/= []] ++ chunks3(Tail),
    lists:flatten(lists:join(",", Groups)).

chunks3([]) -> [];
chunks3([A, B, C | Rest]) -> [[A, B, C] | chunks3(Rest)].
