%%% @doc The live top: a refreshing full-screen view of where a node's
%%% memory goes, for a shell (`mem_probe:top/1', `MemProbe.top/1') or for a
%%% node that has nothing installed (`bin/mem_probe top NODE').
%%%
%%% The screen: a header (node, uptime, memory by category, process, port
%%% and atom counts against their limits, run queue), a findings line (the
%%% rules of `mem_probe_report:findings/1'), the frame's own cost on the
%%% measured node, and one table: processes by memory, by mailbox, by
%%% reductions per interval, by off-heap binaries (each binary's size split
%%% among its holders, so it counts once across the node), by memory growth
%%% in bytes/s; ETS tables with the binaries they refer to; allocators.
%%%
%%% Keys: `m' `u' `r' `b' `g' `e' `a' switch the table, `+' / `-' double or
%%% halve the interval, `1'..`9' show that row's process in detail (its
%%% memory split and its state size), `q' (or Ctrl-C where it arrives as a
%%% key) quits and restores the terminal. A key takes effect at once where
%%% the terminal delivers single keys (an interactive shell, `bin/mem_probe'
%%% on a terminal), else after Enter; both work, Enter is ignored.
%%%
%%% Every frame is computed by `mem_probe_top_collector' on the measured
%%% node, in one pass over its processes; only the rows shown travel. On a
%%% remote node the collector is loaded as a binary for the session and
%%% purged afterwards (also when this viewer vanishes: the collector
%%% watches it).
-module(mem_probe_top).

-export([top/1, main/1]).

-define(FN, "top/1").
-define(COLLECTOR, mem_probe_top_collector).
-define(KEYS, [{$m, memory}, {$u, mailbox}, {$r, reductions}, {$b, binaries},
               {$g, growth}, {$e, ets}, {$a, allocators}]).
-define(MIN_INTERVAL, 250).
-define(MAX_INTERVAL, 60000).
-define(CALL_TIMEOUT, 30000).
-define(HEADER_LINES, 5).       % the header's lines on a terminal wide enough

%% @doc Runs the live top until `q'; returns `ok', or `{error, Reason}'
%% when the node went down or could not be attached. Options (a list or
%% a map): `interval' (ms between frames, default 2000), `sort' (the first
%% table: `memory', `mailbox', `reductions', `binaries', `growth', `ets',
%% `allocators'), `node' (another node to measure; MemProbe need not be
%% installed there), `once' (`true': print one frame as plain text and
%% return), `rows' (table rows for `once', default 20), `style' (`erlang'
%% or `elixir'), `input' (`auto' or `line': always expect key then Enter).
-spec top(list() | map()) -> ok | {error, term()}.
top(Options) ->
    Opts = mem_probe_args:options(
             ?FN, Options,
             [{interval, fun(I) -> is_integer(I) andalso I >= ?MIN_INTERVAL
                                      andalso I =< ?MAX_INTERVAL end},
              {sort, fun(S) -> lists:keymember(S, 2, ?KEYS) end},
              {node, fun is_atom/1},
              {once, fun is_boolean/1},
              {rows, fun(R) -> is_integer(R) andalso R > 0 end},
              {style, fun(S) -> S =:= erlang orelse S =:= elixir end},
              {input, fun(I) -> I =:= auto orelse I =:= line end},
              %% Set by bin/mem_probe: it put the terminal in cbreak mode.
              {terminal, fun(T) -> T =:= cbreak orelse T =:= cooked end}]),
    Node = maps:get(node, Opts, node()),
    case attach(Node) of
        {ok, Session} ->
            try
                case maps:get(once, Opts, false) of
                    true -> once(Session, Opts);
                    false -> interactive(Session, Opts)
                end
            after
                detach(Session)
            end;
        {error, _} = Error ->
            Error
    end.

%%--------------------------------------------------------------------
%% bin/mem_probe top NODE [--cookie C] [--interval MS] [--sort KEY] [--once]
%%--------------------------------------------------------------------

%% @doc The entry point of `bin/mem_probe top' (the arguments after
%% `-extra'): attaches to the node, runs the top, halts the (throwaway)
%% viewer node. Exit status 0 after `q' or `--once', 1 on errors, 2 on
%% bad arguments.
-spec main([string()]) -> no_return().
main(Args) ->
    Status = try parse_args(Args, #{}) of
                 {usage, Message} ->
                     io:put_chars(standard_error, [Message, "\n", usage()]),
                     2;
                 Opts ->
                     case top(Opts) of
                         ok -> 0;
                         {error, Reason} ->
                             io:put_chars(standard_error,
                                          io_lib:format("mem_probe top: ~ts~n",
                                                        [error_text(Reason)])),
                             1
                     end
             catch error:badarg:Stacktrace ->
                     io:put_chars(standard_error, [mem_probe_args:message(Stacktrace), "\n"]),
                     2
             end,
    erlang:halt(Status).

usage() ->
    "usage: mem_probe top NODE [--cookie C] [--interval MS] [--sort KEY] [--once]\n"
    "  KEY: memory mailbox reductions binaries growth ets allocators (or m u r b g e a)\n".

parse_args(["--cookie", C | Rest], Opts) ->
    %% The cookie is set by the script (-setcookie); accepted here for the
    %% usage text only.
    _ = C,
    parse_args(Rest, Opts);
parse_args(["--interval", Ms | Rest], Opts) ->
    case string:to_integer(Ms) of
        {I, []} when I >= ?MIN_INTERVAL, I =< ?MAX_INTERVAL -> parse_args(Rest, Opts#{interval => I});
        _ -> {usage, io_lib:format("--interval: ~ts is not a number of ms in ~b..~b",
                                   [Ms, ?MIN_INTERVAL, ?MAX_INTERVAL])}
    end;
parse_args(["--sort", Key | Rest], Opts) ->
    Known = [{atom_to_list(V), V} || {_, V} <- ?KEYS] ++ [{[K], V} || {K, V} <- ?KEYS],
    case lists:keyfind(Key, 1, Known) of
        {_, View} -> parse_args(Rest, Opts#{sort => View});
        false -> {usage, io_lib:format("--sort: unknown key ~ts", [Key])}
    end;
parse_args(["--once" | Rest], Opts) ->
    parse_args(Rest, Opts#{once => true});
parse_args(["--terminal=cbreak" | Rest], Opts) ->
    parse_args(Rest, Opts#{terminal => cbreak});
parse_args(["--input=line" | Rest], Opts) ->
    parse_args(Rest, Opts#{input => line});
parse_args(["-" ++ _ = Flag | _], _Opts) ->
    {usage, io_lib:format("unknown option ~ts", [Flag])};
parse_args([Node | Rest], Opts) when not is_map_key(node, Opts) ->
    %% The node name becomes an atom here, on the throwaway viewer node,
    %% never on the measured one.
    parse_args(Rest, Opts#{node => list_to_atom(Node)});
parse_args([Extra | _], _Opts) ->
    {usage, io_lib:format("unexpected argument ~ts", [Extra])};
parse_args([], Opts) when is_map_key(node, Opts) ->
    Opts;
parse_args([], _Opts) ->
    {usage, "no NODE given"}.

error_text({nodedown, Node}) -> io_lib:format("node ~ts went down", [Node]);
error_text({noconnection, Node}) ->
    io_lib:format("cannot connect to ~ts (is it running, is the cookie right?)", [Node]);
error_text({load_failed, Node, Why}) ->
    io_lib:format("cannot load the collector on ~ts: ~0tp (a node of an older OTP "
                  "release needs a viewer of its release)", [Node, Why]);
error_text(Other) -> io_lib:format("~0tp", [Other]).

%%--------------------------------------------------------------------
%% Attaching to the measured node
%%--------------------------------------------------------------------

attach(Node) when Node =:= node() ->
    {ok, Server} = ?COLLECTOR:start(self(), #{}),
    {ok, #{node => Node, local => true, server => Server, loaded => false}};
attach(Node) ->
    case net_kernel:connect_node(Node) of
        true ->
            erlang:monitor_node(Node, true),
            try
                Loaded = ensure_collector(Node),
                {ok, Server} = erpc:call(Node, ?COLLECTOR, start,
                                         [self(), #{unload => Loaded}], ?CALL_TIMEOUT),
                {ok, #{node => Node, local => false, server => Server, loaded => Loaded}}
            catch
                throw:{load_failed, _, _} = Why -> {error, Why};
                Class:Reason -> {error, {attach_failed, Node, {Class, Reason}}}
            end;
        _ ->
            {error, {noconnection, Node}}
    end.

%% Loads the collector onto `Node' from its object code here (no file is
%% written there) unless the node has it already (MemProbe installed).
%% Returns whether this session loaded it.
ensure_collector(Node) ->
    case erpc:call(Node, code, is_loaded, [?COLLECTOR], ?CALL_TIMEOUT) of
        {file, _} ->
            false;
        false ->
            {?COLLECTOR, Binary, File} = code:get_object_code(?COLLECTOR),
            case erpc:call(Node, code, load_binary, [?COLLECTOR, File, Binary],
                           ?CALL_TIMEOUT) of
                {module, ?COLLECTOR} -> true;
                {error, Why} -> throw({load_failed, Node, Why})
            end
    end.

detach(#{local := true, server := Server}) ->
    _ = ?COLLECTOR:stop(Server, 5000),
    ok;
detach(#{node := Node, server := Server, loaded := Loaded}) ->
    _ = ?COLLECTOR:stop(Server, 5000),
    case Loaded of
        true ->
            %% purge (nothing runs the old code: the collector has exited),
            %% delete, purge again: the module is gone from the node.
            try
                _ = erpc:call(Node, code, purge, [?COLLECTOR], 5000),
                _ = erpc:call(Node, code, delete, [?COLLECTOR], 5000),
                _ = erpc:call(Node, code, purge, [?COLLECTOR], 5000)
            catch _:_ -> ok % node down: the collector unloads itself
            end;
        false ->
            ok
    end,
    erlang:monitor_node(Node, false),
    ok.

%%--------------------------------------------------------------------
%% Frames
%%--------------------------------------------------------------------

fetch(#{server := Server} = Session, View, Rows) ->
    Spec0 = #{view => View, rows => Rows},
    Spec = case Session of
               #{local := true} -> Spec0#{table_binaries => fun local_table_binaries/1};
               _ -> Spec0
           end,
    ?COLLECTOR:frame(Server, Spec, ?CALL_TIMEOUT).

%% Locally MemProbe's own table walk counts each binary once, by address.
local_table_binaries(Table) ->
    case mem_probe_ets:table_size(Table) of
        {ok, #{off_heap_bytes := Bytes}} when is_integer(Bytes) -> {ok, Bytes};
        _ -> error
    end.

detail(#{local := true}, Pid) ->
    {ok, #{pid => Pid,
           process_memory => mem_probe_procs:process_memory(Pid),
           state_size => mem_probe_state:state_size(Pid, [{timeout, 2000}])}};
detail(#{server := Server}, Pid) ->
    ?COLLECTOR:detail(Server, Pid, ?CALL_TIMEOUT).

once(Session, Opts) ->
    View = maps:get(sort, Opts, memory),
    Rows = maps:get(rows, Opts, 20),
    First = fetch(Session, View, Rows),
    %% Rates need two frames: the second comes one interval later.
    Result = case lists:member(View, [reductions, growth]) of
                 true ->
                     receive after maps:get(interval, Opts, 1000) -> ok end,
                     fetch(Session, View, Rows);
                 false ->
                     First
             end,
    case Result of
        {ok, Frame} ->
            %% Text for a file or a ticket is not cut to a width.
            Width = case io:columns() of
                        {ok, W} -> W;
                        _ -> size(none, "COLUMNS", 1000)
                    end,
            St = #{view => View, style => maps:get(style, Opts, erlang),
                   interval => maps:get(interval, Opts, 2000), keys => none,
                   detail => undefined, detail_data => undefined},
            Lines = screen(Frame, St, Width, Rows),
            io:put_chars([[L, $\n] || L <- Lines]),
            ok;
        {error, _} = Error ->
            Error
    end.

%%--------------------------------------------------------------------
%% The interactive loop
%%--------------------------------------------------------------------

interactive(Session, Opts) ->
    Terminal = setup_terminal(Opts),
    Reader = start_reader(group_leader()),
    St = #{session => Session, view => maps:get(sort, Opts, memory),
           interval => maps:get(interval, Opts, 2000),
           style => maps:get(style, Opts, erlang),
           keys => maps:get(keys, Terminal), detail => undefined, detail_data => undefined,
           rows => [], reader => Reader},
    try
        loop(St)
    after
        restore_terminal(Terminal),
        unlink(Reader),
        exit(Reader, kill)
    end.

loop(#{session := Session, view := View} = St) ->
    {Width, Height} = terminal_size(),
    %% Header and blank (6), title and column heads (2), blank and keys
    %% (2), and the last line, where the cursor waits.
    Rows = max(1, Height - 11),
    case fetch(Session, View, Rows) of
        {ok, Frame} ->
            St1 = with_detail(St#{rows := maps:get(rows, Frame)}),
            draw(screen(Frame, St1, Width, Rows), Height),
            wait(St1, erlang:monotonic_time(millisecond) + next_in(Frame, St1));
        {error, {collector_down, _}} ->
            node_down(Session);
        {error, Reason} ->
            {error, Reason}
    end.

%% A rate view just switched to has no previous readings yet (they are
%% kept only while a rate view is shown): its first rows come a second
%% later, not a whole interval.
next_in(#{view := View, rate_ms := undefined}, #{interval := Interval})
  when View =:= reductions; View =:= growth ->
    min(Interval, 1000);
next_in(_Frame, #{interval := Interval}) ->
    Interval.

with_detail(#{detail := undefined} = St) -> St;
with_detail(#{detail := Pid, session := Session} = St) ->
    St#{detail_data := detail(Session, Pid)}.

node_down(#{node := Node}) -> {error, {nodedown, Node}}.

wait(#{session := #{node := Node} = Session, reader := Reader} = St, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {Reader, key, Char} ->
            case key(Char, St) of
                quit -> ok;
                same -> wait(St, Deadline);
                {redraw, St1} -> loop(St1)
            end;
        {Reader, eof} ->
            ok;
        {nodedown, Node} ->
            node_down(Session)
    after Left ->
            loop(St)
    end.

key(C, _St) when C =:= $q; C =:= $Q; C =:= 3; C =:= 4 -> quit;
key($+, #{interval := I} = St) -> {redraw, St#{interval := min(?MAX_INTERVAL, I * 2)}};
key($-, #{interval := I} = St) -> {redraw, St#{interval := max(?MIN_INTERVAL, I div 2)}};
key(C, #{rows := Rows} = St) when C >= $1, C =< $9 ->
    case lists:nth(C - $0, Rows ++ lists:duplicate(9, none)) of
        #{pid := Pid} when is_pid(Pid) -> {redraw, St#{detail := Pid, detail_data := undefined}};
        _ -> same
    end;
key(C, St) ->
    case lists:keyfind(C, 1, ?KEYS) of
        {_, View} -> {redraw, St#{view := View, detail := undefined, detail_data := undefined}};
        false -> same % Enter, a second byte of an escape sequence, ...
    end.

%% A process that reads one key at a time from the group leader and sends
%% it on; it stops after `q' so that no read is left pending in the shell.
start_reader(GL) ->
    Top = self(),
    spawn_link(fun() -> read_keys(GL, Top) end).

read_keys(GL, Top) ->
    case io:get_chars(GL, "", 1) of
        [C] when C =:= $q; C =:= $Q; C =:= 3; C =:= 4 ->
            Top ! {self(), key, C};
        [C] ->
            Top ! {self(), key, C},
            read_keys(GL, Top);
        <<C/utf8>> ->
            Top ! {self(), key, C},
            read_keys(GL, Top);
        _ -> % eof or an error
            Top ! {self(), eof}
    end.

%%--------------------------------------------------------------------
%% The terminal
%%--------------------------------------------------------------------

%% Single keys where the terminal allows, detected, not assumed:
%% <ul>
%% <li>on a noshell node without a shell (bin/mem_probe's viewer) on OTP
%%     28+, `shell:start_interactive({noshell, raw})': the VM sets raw mode
%%     and restores the terminal itself at exit;</li>
%% <li>in a shell (erl, iex, a remote shell) the group's `echo' option,
%%     turned off, makes get_chars answer each key (OTP 25 to 29);</li>
%% <li>on an older noshell node whose terminal bin/mem_probe lets it use
%%     (`{terminal, cbreak}'; the script restores it however the viewer
%%     ends), stty cbreak mode, set after the VM started so that whatever
%%     the VM restores at exit is the terminal as it was.</li>
%% </ul>
%% Where bin/mem_probe allows, Ctrl-C arrives as a key (stty -isig) and
%% quits like q. Otherwise (or with `{input, line}') key then Enter.
setup_terminal(Opts) ->
    Forced = maps:get(input, Opts, auto) =:= line,
    Saved = case io:getopts() of
                L when is_list(L) -> [O || {K, _} = O <- L, K =:= echo orelse K =:= binary];
                _ -> []
            end,
    %% Lists, not binaries: on OTP 25 a group in binary mode answers every
    %% get_chars after the first with eof (Elixir's iex sets binary mode).
    _ = io:setopts([{binary, false}]),
    %% On OTP 26 and 27 the viewer's noshell VM gets its input a line at a
    %% time whatever the terminal's mode (single keys came back with OTP
    %% 28's raw noshell mode), so there it reads key then Enter.
    Viewer = maps:get(terminal, Opts, cooked) =:= cbreak,
    LineOnly = Viewer andalso lists:member(erlang:system_info(otp_release), ["26", "27"]),
    MayStty = Viewer andalso not LineOnly,
    HasEcho = lists:keymember(echo, 1, Saved) andalso not LineOnly,
    {Keys, Tty} =
        case Forced orelse raw_noshell() of
            true when Forced ->
                {line, undefined};
            true ->
                _ = MayStty andalso stty("-isig") =:= ok,
                {single, undefined};
            false when HasEcho ->
                _ = io:setopts([{echo, false}]),
                {single, undefined};
            false when MayStty ->
                case cbreak() of
                    undefined -> {line, undefined};
                    Previous -> {single, Previous}
                end;
            false ->
                {line, undefined}
        end,
    io:put_chars("\e[?1049h\e[?25l"),
    #{keys => Keys, saved => Saved, tty => Tty}.

%% Fails where an interactive shell runs (iex on OTP 29 is a noshell node
%% that started one).
raw_noshell() ->
    %% Raw keys without a shell came with OTP 28; on 26 and 27 the call
    %% exists and says ok, but no key arrives (the viewer then uses cbreak).
    list_to_integer(erlang:system_info(otp_release)) >= 28
        andalso init:get_argument(noshell) =/= error
        andalso code:ensure_loaded(shell) =:= {module, shell}
        andalso erlang:function_exported(shell, start_interactive, 1)
        %% Through apply/3: the function exists from OTP 26 on only.
        andalso try apply(shell, start_interactive, [{noshell, raw}]) =:= ok
                catch _:_ -> false
                end.

restore_terminal(#{saved := Saved, tty := Tty}) ->
    io:put_chars("\e[?25h\e[?1049l"),
    _ = io:setopts(Saved),
    _ = case Tty of
            undefined -> ok;
            _ -> stty(Tty)
        end,
    ok.

stty(Args) ->
    case os:cmd("stty " ++ Args ++ " < " ++ tty_device() ++ " 2>&1") of
        [] -> ok;
        _ -> error
    end.

%% The terminal by its path (bin/mem_probe says which): the shell os:cmd
%% starts has no controlling terminal, so /dev/tty would not do.
tty_device() ->
    case os:getenv("MEMPROBE_TOP_TTY") of
        "/dev/" ++ Rest = Path when Rest =/= "" ->
            case lists:all(fun(C) -> (C >= $a andalso C =< $z) orelse (C >= $0 andalso C =< $9)
                                         orelse C =:= $/ end, Rest) of
                true -> Path;
                false -> "/dev/tty"
            end;
        _ ->
            "/dev/tty"
    end.

%% Keys one at a time, not echoed, Ctrl-C as a key (byte 3) so that it
%% quits like q; the previous settings (`stty -g'), or undefined.
cbreak() ->
    Saved = string:trim(os:cmd("stty -g < " ++ tty_device() ++ " 2>/dev/null")),
    case Saved =/= "" andalso lists:all(fun(C) -> C =:= $: orelse
                                                 (C >= $0 andalso C =< $9) orelse
                                                 (C >= $a andalso C =< $f) end, Saved)
        andalso stty("-icanon -echo -isig min 1") =:= ok of
        true -> Saved;
        false -> undefined
    end.

terminal_size() ->
    {size(io:columns(), "COLUMNS", 100), size(io:rows(), "LINES", 30)}.

size({ok, N}, _Env, _Default) when is_integer(N), N > 0 -> N;
size(_, Env, Default) ->
    case string:to_integer(os:getenv(Env, "")) of
        {N, []} when N > 0 -> N;
        _ -> Default
    end.

%% Home, each line cleared to its end, the rest of the screen cleared; the
%% cursor ends on the last line (where a typed key echoes in line mode).
draw(Lines0, Height) ->
    Lines = lists:sublist(Lines0, max(1, Height - 1)),
    io:put_chars(["\e[H", lists:join("\e[K\r\n", Lines), "\e[K\r\n\e[J"]).

%%--------------------------------------------------------------------
%% The screen (a list of lines, each at most Width characters)
%%--------------------------------------------------------------------

screen(Frame, St, Width, Rows) ->
    Fmt = #{style => maps:get(style, St)},
    Header = lists:append([lay(L, Width) || L <- header(Frame, St, Fmt)]),
    Footer = case maps:get(keys, St) of
                 none -> [];
                 Keys -> ["" | lay(footer(Keys), Width)]
             end,
    %% A narrow terminal wraps header and footer lines: the table gives up
    %% as many rows.
    TableRows = max(1, Rows - (length(Header) - ?HEADER_LINES)
                    - max(0, length(Footer) - 2)),
    Body = case maps:get(detail, St) of
               undefined -> table(Frame, Fmt, TableRows, Width);
               Pid -> detail_lines(Pid, maps:get(detail_data, St), Fmt)
           end,
    [fit(L, Width) || L <- Header ++ [""] ++ Body ++ Footer].

fit(Line, Width) ->
    Text = unicode:characters_to_list(Line),
    case string:length(Text) > Width of
        true -> string:slice(Text, 0, Width);
        false -> Text
    end.

%% A header line: `{Items, Sep}' is packed into as few lines as fit
%% `Width', breaking between items only (continued lines indented by two);
%% anything else is one line, cut to the width later (the findings).
lay({Items, Sep}, Width) ->
    [Item0 | More] = [unicode:characters_to_list(I) || I <- Items],
    {Last, Done} =
        lists:foldl(fun(Item, {Line, Lines}) ->
                            Joined = Line ++ Sep ++ Item,
                            case string:length(Joined) =< Width of
                                true -> {Joined, Lines};
                                false -> {"  " ++ Item, [Line | Lines]}
                            end
                    end, {Item0, []}, More),
    lists:reverse([Last | Done]);
lay(Line, _Width) ->
    [Line].

header(#{node := Node, uptime_ms := Up, frame := N, memory := Mem, counts := Counts,
         run_queue := RunQ, schedulers := Sched, otp_release := Rel, cost := Cost} = Frame,
       St, Fmt) ->
    Interval = case Frame of
                   #{interval_ms := Ms} when is_integer(Ms) -> io_lib:format("~.1f s", [Ms / 1000]);
                   _ -> "-"
               end,
    {{_, _, _}, {H, Mi, S}} = calendar:local_time(),
    Categories = [{processes, "processes"}, {binary, "binary"}, {ets, "ets"}, {code, "code"},
                  {atom, "atom"}],
    Total = proplists:get_value(total, Mem, 0),
    Named = lists:sum([proplists:get_value(C, Mem, 0) || {C, _} <- Categories]),
    [{C0, Label0} | MoreCategories] = Categories,
    [{[io_lib:format("MemProbe top  ~ts", [Node]), ["up ", uptime(Up)], ["OTP ", Rel],
       io_lib:format("frame ~b  every ~.1f s (last ~ts)", [N, maps:get(interval, St) / 1000,
                                                            Interval]),
       io_lib:format("~2..0b:~2..0b:~2..0b", [H, Mi, S])], "  "},
     {[["memory ", human(Total), ": ", Label0, " ", human(proplists:get_value(C0, Mem, 0))]
       | [[Label, " ", human(proplists:get_value(C, Mem, 0))] || {C, Label} <- MoreCategories]]
      ++ [["other ", human(max(0, Total - Named))]], "  "},
     {[io_lib:format("~ts ~ts/~ts (~.1f%)", [What, group(C), group(L), Share * 100])
       || #{what := What, count := C, limit := L, share := Share} <- Counts]
      ++ [io_lib:format("run queue ~b", [RunQ]), io_lib:format("schedulers ~b", [Sched])], "  "},
     ["findings", findings_age(Frame), ": ", findings_line(Frame, Fmt)],
     {[io_lib:format("frame cost on ~ts: ~.1f ms", [Node, maps:get(ms, Cost) * 1.0]),
       [group(maps:get(reductions, Cost)), " reductions"],
       ["collector ", human(maps:get(collector_bytes, Cost))],
       case maps:get(processes_scanned, Cost) of
           0 -> "no process scanned";
           Scanned -> [group(Scanned), " processes scanned (",
                       lists:join(", ", [atom_to_list(I) || I <- maps:get(read, Cost, [])]),
                       ")"]
       end], ", "}].

%% The findings' inputs from the process pass are as old as the last frame
%% that read memory (the full frames; the memory and growth views read it
%% in every frame, the initial-call groups only in the full ones).
findings_age(#{findings_age_ms := Ms}) when is_integer(Ms), Ms > 0 ->
    io_lib:format(" (up to ~.1f s old)", [Ms / 1000]);
findings_age(_) ->
    "".

findings_line(#{findings_input := Input}, Fmt) ->
    case mem_probe_report:findings(Input) of
        [] -> "nothing stands out";
        [First | More] ->
            [mem_probe_report:finding_text(First, Fmt),
             case More of
                 [] -> [];
                 _ -> io_lib:format("  (+~b more: ~ts)",
                                    [length(More),
                                     lists:join("; ", [mem_probe_report:finding_text(F, Fmt)
                                                       || F <- More])])
             end]
    end.

uptime(Ms) ->
    S = Ms div 1000,
    case S of
        _ when S < 3600 -> io_lib:format("~bm~2..0bs", [S div 60, S rem 60]);
        _ when S < 86400 -> io_lib:format("~bh~2..0bm", [S div 3600, (S rem 3600) div 60]);
        _ -> io_lib:format("~bd~2..0bh", [S div 86400, (S rem 86400) div 3600])
    end.

footer(Keys) ->
    {["keys: m memory", "u mailbox", "r reductions", "b binaries", "g growth", "e ets",
      "a allocators", "+/- interval", "1-9 detail", "q quit",
      ["(", case Keys of single -> "single keys"; line -> "type the key, then Enter" end, ")"]],
     "  "}.

title(memory) -> "Processes by memory";
title(mailbox) -> "Processes by mailbox (messages queued)";
title(reductions) -> "Processes by reductions in the last interval";
title(binaries) -> "Processes by off-heap binaries (each binary split among its holders: counted once)";
title(growth) -> "Processes by memory growth (bytes/s over the last interval)";
title(ets) -> "ETS tables with the off-heap binaries they refer to";
title(allocators) -> "Allocators (usage = blocks / carriers)".

%% Columns: {Title, Align, Fun(Row) -> text}; `flex' columns share the
%% width left over.
columns(memory, Fmt) -> proc_columns(Fmt, [{"memory", fun(R) -> human(maps:get(value, R)) end}]);
columns(mailbox, Fmt) -> proc_columns(Fmt, [{"messages", fun(R) -> group(maps:get(value, R)) end}]);
columns(reductions, Fmt) ->
    proc_columns(Fmt, [{"reductions", fun(R) -> group(maps:get(value, R)) end},
                  {"per s", fun(R) -> group(round(maps:get(rate, R))) end}]);
columns(binaries, Fmt) ->
    proc_columns(Fmt, [{"binaries", fun(R) -> human(maps:get(value, R)) end},
                  {"referenced", fun(R) -> human(maps:get(raw_bytes, R)) end},
                  {"count", fun(R) -> group(maps:get(binaries, R)) end},
                  {"heap", fun(R) -> human(maps:get(heap_bytes, R)) end}]);
columns(growth, Fmt) ->
    proc_columns(Fmt, [{"growth/s", fun(R) -> [human(round(maps:get(rate, R))), "/s"] end},
                  {"change", fun(R) -> [human(maps:get(change, R)),
                                        case maps:get(born, R) of true -> " new"; false -> "" end]
                             end}]);
columns(ets, Fmt) ->
    [{"#", right, fun(R) -> integer_to_list(maps:get(rank, R)) end},
     {"table", flex, fun(R) -> text(maps:get(name, R), Fmt) end},
     {"owner", flex, fun(R) -> [pid(maps:get(owner, R)),
                                case maps:get(owner_name, R) of
                                    undefined -> "";
                                    Name -> [" ", text(Name, Fmt)]
                                end] end},
     {"objects", right, fun(R) -> maybe_group(maps:get(size, R)) end},
     {"memory", right, fun(R) -> human(maps:get(memory_bytes, R)) end},
     {"binaries", right, fun(R) -> case maps:get(off_heap_bytes, R) of
                                       undefined -> "-";
                                       B -> [case R of #{sampled := _} -> "~"; _ -> "" end,
                                             human(B)]
                                   end end},
     {"total", right, fun(R) -> human(maps:get(value, R)) end}];
columns(allocators, Fmt) ->
    [{"#", right, fun(R) -> integer_to_list(maps:get(rank, R)) end},
     {"allocator", flex, fun(R) -> text(maps:get(allocator, R), Fmt) end},
     {"blocks", right, fun(R) -> human(maps:get(blocks_bytes, R)) end},
     {"carriers", right, fun(R) -> human(maps:get(carriers_bytes, R)) end},
     {"usage", right, fun(R) -> case maps:get(usage, R) of
                                    undefined -> "-";
                                    U -> io_lib:format("~.1f%", [U * 100])
                                end end}].

proc_columns(Fmt, Values) ->
    [{"#", right, fun(R) -> integer_to_list(maps:get(rank, R)) end},
     {"pid", left, fun(R) -> pid(maps:get(pid, R)) end},
     {"name or initial call", flex,
      fun(R) -> case maps:get(name, R) of
                    undefined -> text(maps:get(initial_call, R), Fmt);
                    Name -> text(Name, Fmt)
                end end},
     {"current function", flex, fun(R) -> text(maps:get(current_function, R), Fmt) end}]
        ++ [{T, right, F} || {T, F} <- Values].

table(#{view := View, rows := Rows0} = Frame, Fmt, MaxRows, Width) ->
    Rows1 = lists:sublist(Rows0, MaxRows),
    Rows = [R#{rank => I} || {I, R} <- lists:zip(lists:seq(1, length(Rows1)), Rows1)],
    Title = [title(View), table_note(View, Frame, Rows)],
    case Rows of
        [] ->
            [Title, "", case lists:member(View, [reductions, growth])
                                andalso maps:get(rate_ms, Frame, undefined) =:= undefined of
                            true -> "  (a rate needs two frames: it appears at the next refresh)";
                            false -> "  (none)"
                        end];
        _ ->
            Cols = columns(View, Fmt),
            Cells = [[unicode:characters_to_list(F(R)) || {_, _, F} <- Cols] || R <- Rows],
            Heads = [T || {T, _, _} <- Cols],
            Natural = [lists:max([string:length(C) || C <- Col])
                       || Col <- transpose([Heads | Cells])],
            Widths = fit_widths(Natural, [A || {_, A, _} <- Cols], Width),
            Aligns = [A || {_, A, _} <- Cols],
            [Title, row_line(Heads, Widths, Aligns)
             | [row_line(C, Widths, Aligns) || C <- Cells]]
    end.

table_note(ets, _Frame, [#{binaries_counted := per_reference} | _]) ->
    " (binaries: per reference, ~ = extrapolated)";
table_note(ets, _Frame, [#{binaries_counted := once} | _]) ->
    " (binaries counted once each)";
table_note(_, _, _) ->
    "".

transpose([[] | _]) -> [];
transpose(Rows) -> [[hd(R) || R <- Rows] | transpose([tl(R) || R <- Rows])].

%% Flex columns shrink (never below 12) when the natural widths do not fit.
fit_widths(Natural, Aligns, Width) ->
    Sep = 2 * (length(Natural) - 1),
    Fixed = lists:sum([W || {W, A} <- lists:zip(Natural, Aligns), A =/= flex]),
    Flex = [W || {W, flex} <- lists:zip(Natural, Aligns)],
    Room = max(12 * length(Flex), Width - Sep - Fixed),
    case lists:sum(Flex) =< Room of
        true -> Natural;
        false ->
            Each = Room div max(1, length(Flex)),
            [case A of flex -> min(W, Each); _ -> W end || {W, A} <- lists:zip(Natural, Aligns)]
    end.

row_line(Cells, Widths, Aligns) ->
    string:trim(lists:join("  ", [pad(C, W, A) || {C, W, A} <- zip3(Cells, Widths, Aligns)]),
                trailing).

pad(Text, W, Align) ->
    T = case string:length(Text) > W of
            true -> string:slice(Text, 0, W);
            false -> Text
        end,
    Fill = lists:duplicate(W - string:length(T), $\s),
    case Align of right -> [Fill, T]; _ -> [T, Fill] end.

zip3([A | As], [B | Bs], [C | Cs]) -> [{A, B, C} | zip3(As, Bs, Cs)];
zip3(_, _, _) -> [].

detail_lines(Pid, Data, Fmt) ->
    Title = ["Process ", pid(Pid), " (press a table key to go back)"],
    Body = case Data of
               undefined -> ["(measuring)"];
               {ok, #{process_memory := PM, state_size := SS}} ->
                   ["process_memory:"]
                       ++ indent(mem_probe_format:format(PM, Fmt))
                       ++ ["", "state_size:"]
                       ++ indent(mem_probe_format:format(SS, Fmt));
               {error, Reason} ->
                   [io_lib:format("error: ~0tp", [Reason])]
           end,
    [Title, "" | Body].

indent(Text) ->
    ["  " ++ L || L <- string:split(unicode:characters_to_list(Text), "\n", all)].

%% Cell text through MemProbe's formatter (pids, m:f/a or Mod.f/a, names).
text(Value, Fmt) ->
    mem_probe_format:value_text(Value, Fmt).

pid(P) when is_pid(P) -> pid_to_list(P);
pid(Other) -> text(Other, []).

human(B) when is_integer(B) -> mem_probe_format:human_bytes(B);
human(_) -> "-".

maybe_group(N) when is_integer(N) -> group(N);
maybe_group(_) -> "-".

group(N) -> mem_probe_format:integer_text(N).
