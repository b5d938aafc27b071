%%% @doc MemProbe: where a BEAM node's memory goes.
%%%
%%% Term sizes (`flat_size/1', `shared_size/1', `term_size/1') are read in
%%% place by a native walker and always agree with the VM's own accounting;
%%% see `mem_probe_sizes' for when the walker is trusted and what the fallback
%%% gives. Sizes are in words unless a field says bytes.
%%%
%%% Why three sizes: a term's flat size is what a copy costs (a send, an ETS
%%% insert, `:sys.get_state'); its shared size is what it occupies here, each
%%% shared subterm once, without the module literals it points to; and its
%%% off-heap bytes are the refc binaries it keeps alive, each counted once,
%%% whole, even when only a small slice of it is referenced.
-module(mem_probe).

-export([flat_size/1, shared_size/1, term_size/1, info/0, recalibrate/0]).
%% --- process scans exports ---
-export([top_processes/2, top_processes/3, count_processes/1, count_processes/2,
         count_processes/3,
         binary_leaks/1, binary_leaks/2, process_memory/1, state_size/1, state_size/2]).
%% --- end of process scans exports ---
%% --- ETS, system and allocator exports ---
-export([top_tables/1, top_tables/2, table_size/1, memory/0, memory/1, allocators/0,
         allocators/1,
         print/1, print/2, format/1, format/2]).
%% --- end of ETS, system and allocator exports ---
-export([breakdown/1, breakdown/2, state_breakdown/1, state_breakdown/2,
         diff_breakdown/2]).
-export([snapshot/0, snapshot/1, diff/2, diff/3, check/1, report/0, report/1]).
-export([top/0, top/1]).

-export_type([per_node/1, check_result/0]).

%% With `{nodes, all | [Node]}' a call answers per node; a node that could
%% not answer has `{error, Reason}' (see mem_probe_cluster).
-type per_node(Result) :: #{node() => Result | {error, term()}}.
-type check_result() :: {ok, mem_probe_check:check_report()}
                      | {error, [mem_probe_check:violation()]}.

%% @doc Words a full copy of `Term' takes; equals `erts_debug:flat_size/1'.
%% Shared subterms count once per path, as a copy would expand them, but the
%% walk is linear in the distinct objects, so a deeply shared term answers at
%% once.
-spec flat_size(term()) -> non_neg_integer().
flat_size(Term) -> mem_probe_sizes:flat_size(Term).

%% @doc Words of the distinct heap objects of `Term', each counted once,
%% module literals excluded. Equals `erts_debug:size_shared/1' except that
%% hashmap nodes are counted once (size_shared counts them twice).
-spec shared_size(term()) -> non_neg_integer().
shared_size(Term) -> mem_probe_sizes:shared_size(Term).

%% @doc All sizes of `Term' from one walk: `flat_words', `shared_words',
%% `literal_words', `off_heap_binaries', `off_heap_bytes' and `bytes'
%% (`shared_words' in bytes plus `off_heap_bytes': what the term holds now).
-spec term_size(term()) -> mem_probe_sizes:sizes().
term_size(Term) -> mem_probe_sizes:term_size(Term).

%% @doc The mode (`native' or `fallback'), the OTP release, the layout in use
%% and, in fallback, the reason and the fields that are not exact.
-spec info() -> mem_probe_sizes:info().
info() -> mem_probe_sizes:info().

%% @doc Decides the mode again: runs the calibration (after a layout error
%% switched the node to fallback, or after changing the `mem_probe'
%% application environment) and returns the new `info()'.
-spec recalibrate() -> mem_probe_sizes:info().
recalibrate() -> mem_probe_sizes:recalibrate().

%%--------------------------------------------------------------------
%% Process scans
%%--------------------------------------------------------------------
%% --- process scans ---
%% Details, and why each number can mislead: mem_probe_procs,
%% mem_probe_binaries, mem_probe_state. Sizes in bytes.

%% @doc The `N' processes with the largest `Attr' (`memory',
%% `message_queue_len', `reductions', `total_heap_size', `heap_size',
%% `stack_size', `binary_memory', `monitors', `monitored_by', `links'),
%% largest first: `[#{pid, value, name, initial_call, current_function, attr}]'.
-spec top_processes(atom(), non_neg_integer()) -> [mem_probe_procs:process_row()].
top_processes(Attr, N) -> mem_probe_procs:top_processes(Attr, N, []).

%% @doc As `top_processes/2'; `{window, Ms}' ranks by the change over `Ms'
%% milliseconds and adds `born' and `died' to each entry.
-spec top_processes(atom(), non_neg_integer(), list() | map()) ->
          [mem_probe_procs:process_row()] | per_node([mem_probe_procs:process_row()]).
top_processes(Attr, N, Opts) ->
    mem_probe_cluster:dispatch({"top_processes/3", top_processes}, Opts,
                               fun(Rest) -> [Attr, N, Rest] end,
                               fun() -> mem_probe_procs:top_processes(Attr, N, Opts) end).

%% @doc `count_processes(By, 10)'.
-spec count_processes(atom()) -> mem_probe_procs:process_groups().
count_processes(By) -> mem_probe_procs:count_processes(By, 10).

%% @doc All processes grouped by `initial_call', `current_function' or
%% `application': `#{groups => [#{key, count}], process_count, process_limit}'.
-spec count_processes(atom(), non_neg_integer()) -> mem_probe_procs:process_groups().
count_processes(By, N) -> mem_probe_procs:count_processes(By, N).

%% @doc `count_processes/2' on the nodes given by `{nodes, all | [Node]}'.
-spec count_processes(atom(), non_neg_integer(), list() | map()) ->
          mem_probe_procs:process_groups() | per_node(mem_probe_procs:process_groups()).
count_processes(By, N, Opts) ->
    mem_probe_cluster:dispatch({"count_processes/3", count_processes}, Opts,
                               fun(_Rest) -> [By, N] end,
                               fun() ->
                                       no_options("count_processes/3", Opts),
                                       count_processes(By, N)
                               end).

%% @doc `binary_leaks(N, [])'.
-spec binary_leaks(non_neg_integer()) -> [mem_probe_binaries:binary_leak()].
binary_leaks(N) -> mem_probe_binaries:binary_leaks(N, []).

%% @doc The `N' processes keeping the most off-heap binary bytes alive, each
%% binary counted once across the node; `{gc, true}' collects those `N'.
-spec binary_leaks(non_neg_integer(), list() | map()) ->
          [mem_probe_binaries:binary_leak()] | per_node([mem_probe_binaries:binary_leak()]).
binary_leaks(N, Opts) ->
    mem_probe_cluster:dispatch({"binary_leaks/2", binary_leaks}, Opts,
                               fun(Rest) -> [N, Rest] end,
                               fun() -> mem_probe_binaries:binary_leaks(N, Opts) end).

%% @doc One process's memory split into heap, stack, mailbox, other and the
%% off-heap binaries it references; `{error, noproc}' if it is not alive.
-spec process_memory(pid()) -> {ok, mem_probe_procs:process_memory()} | {error, noproc}.
process_memory(Pid) -> mem_probe_procs:process_memory(Pid).

%% @doc `state_size(Pid, [])'.
-spec state_size(pid()) -> {ok, mem_probe_sizes:sizes()} | {error, term()}.
state_size(Pid) -> mem_probe_state:state_size(Pid, []).

%% @doc The term sizes of a sys process's state, measured inside it;
%% `{timeout, Ms}' (default 5000).
-spec state_size(pid(), list() | map()) -> {ok, mem_probe_sizes:sizes()} | {error, term()}.
state_size(Pid, Opts) -> mem_probe_state:state_size(Pid, Opts).
%% --- end of process scans ---

%%--------------------------------------------------------------------
%% Where in a term the bytes are
%%--------------------------------------------------------------------

%% @doc `breakdown(Term, [])'.
-spec breakdown(term()) -> {ok, mem_probe_breakdown:breakdown()} | {error, term()}.
breakdown(Term) -> mem_probe_breakdown:breakdown(Term, []).

%% @doc An exact breakdown of `Term' by retained size (dominators): the
%% heaviest accumulation points with their paths; see mem_probe_breakdown.
-spec breakdown(term(), list() | map()) ->
          {ok, mem_probe_breakdown:breakdown()} | {error, term()}.
breakdown(Term, Opts) -> mem_probe_breakdown:breakdown(Term, Opts).

%% @doc `state_breakdown(Pid, [])'.
-spec state_breakdown(pid()) -> {ok, mem_probe_breakdown:breakdown()} | {error, term()}.
state_breakdown(Pid) -> mem_probe_breakdown:state_breakdown(Pid, []).

%% @doc `breakdown/2' of a sys process's state, measured inside it;
%% `{timeout, Ms}' (default 5000) besides the options of `breakdown/2'.
-spec state_breakdown(pid(), list() | map()) ->
          {ok, mem_probe_breakdown:breakdown()} | {error, term()}.
state_breakdown(Pid, Opts) -> mem_probe_breakdown:state_breakdown(Pid, Opts).

%% @doc Which paths grew between two breakdowns of the same term or process.
-spec diff_breakdown(term(), term()) -> mem_probe_breakdown:breakdown_diff().
diff_breakdown(Older, Newer) -> mem_probe_breakdown:diff_breakdown(Older, Newer).

%%--------------------------------------------------------------------
%% ETS, system and allocator scans
%%--------------------------------------------------------------------
%% --- ETS, system and allocator scans ---

%% @doc The `N' ETS tables holding the most memory, largest first; see
%% `top_tables/2'.
-spec top_tables(non_neg_integer()) -> [mem_probe_ets:entry()].
top_tables(N) -> mem_probe_ets:top_tables(N, []).

%% @doc The `N' ETS tables holding the most memory, largest first, as maps
%% with `table', `name', `owner', `owner_name', `memory_bytes', `size',
%% `type', `protection' and `off_heap_bytes'. `ets:info(T, memory)' leaves out
%% the refc binaries a table refers to; with `[{binaries, true}]' the objects
%% are walked, each binary is counted once, and tables are ranked by
%% `memory_bytes + off_heap_bytes' (otherwise `off_heap_bytes' is
%% `undefined'). See `mem_probe_ets'.
-spec top_tables(non_neg_integer(), list() | map()) ->
          [mem_probe_ets:entry()] | per_node([mem_probe_ets:entry()]).
top_tables(N, Opts) ->
    mem_probe_cluster:dispatch({"top_tables/2", top_tables}, Opts, fun(Rest) -> [N, Rest] end,
                               fun() -> mem_probe_ets:top_tables(N, Opts) end).

%% @doc Every number for one table (a name or a table identifier):
%% `{ok, Map}' with its objects' flat bytes and the distinct refc binaries
%% they keep alive, or `{error, deleted}' if it is deleted during the walk.
-spec table_size(atom() | ets:tid()) -> {ok, mem_probe_ets:table_size()} | {error, deleted}.
table_size(Table) -> mem_probe_ets:table_size(Table).

%% @doc `erlang:memory/0' in bytes with each category's share of the total
%% and the category it is part of. See `mem_probe_system'.
-spec memory() -> mem_probe_system:memory().
memory() -> mem_probe_system:memory().

%% @doc `memory()' on the nodes given by `{nodes, all | [Node]}'.
-spec memory(list() | map()) -> mem_probe_system:memory() | per_node(mem_probe_system:memory()).
memory(Opts) ->
    mem_probe_cluster:dispatch({"memory/1", memory}, Opts, fun(_) -> [] end,
                               fun() -> no_options("memory/1", Opts), memory() end).

%% @doc Per allocator type: blocks and carriers in bytes, usage (blocks /
%% carriers), and the mseg_alloc cache hit rates, from one snapshot per
%% allocator type. See `mem_probe_system'.
-spec allocators() -> mem_probe_system:allocators().
allocators() -> mem_probe_system:allocators().

%% @doc `allocators()' on the nodes given by `{nodes, all | [Node]}'.
-spec allocators(list() | map()) ->
          mem_probe_system:allocators() | per_node(mem_probe_system:allocators()).
allocators(Opts) ->
    mem_probe_cluster:dispatch({"allocators/1", allocators}, Opts, fun(_) -> [] end,
                               fun() -> no_options("allocators/1", Opts), allocators() end).

%% Functions whose only options are the cluster ones.
no_options(Function, Opts) ->
    mem_probe_args:options(Function, Opts, [{nodes, fun(_) -> true end},
                                            {rpc_timeout, fun(_) -> true end}]).

%% @doc Prints any MemProbe result as an aligned table; returns `ok'.
-spec print(term()) -> ok.
print(Result) -> print(Result, []).

%% @doc As `print/1' with options: `style' (`erlang' | `elixir'), `bytes'
%% (more keys whose integers are bytes), `raw' (no units). See
%% `mem_probe_format'.
-spec print(term(), list() | map()) -> ok.
print(Result, Opts) ->
    case kind_of_result(Result) of
        report -> io:put_chars([mem_probe_report:format(Result, Opts), $\n]);
        {breakdown, B} -> io:put_chars([mem_probe_breakdown:format(B, Opts), $\n]);
        table -> mem_probe_format:print(Result, Opts)
    end.

%% @doc The text `print/1' prints (chardata, no final newline).
-spec format(term()) -> unicode:chardata().
format(Result) -> format(Result, []).

-spec format(term(), list() | map()) -> unicode:chardata().
format(Result, Opts) ->
    case kind_of_result(Result) of
        report -> mem_probe_report:format(Result, Opts);
        {breakdown, B} -> mem_probe_breakdown:format(B, Opts);
        table -> mem_probe_format:format(Result, Opts)
    end.

%% report/1's map has a layout of its own (findings first), so its text
%% comes from mem_probe_report; a breakdown (or a diff of two) prints as an
%% indented tree of paths (mem_probe_breakdown); every other result is a
%% table.
kind_of_result(#{findings := _, top_memory := _, counts := _}) -> report;
kind_of_result({ok, #{rows := _, total := #{}} = Breakdown}) -> {breakdown, Breakdown};
kind_of_result(#{rows := _, total := #{}} = Breakdown) -> {breakdown, Breakdown};
kind_of_result(_) -> table.
%% --- end of ETS, system and allocator scans ---

%%--------------------------------------------------------------------
%% Leak hunting over time: snapshots, diffs, checks, the report
%%--------------------------------------------------------------------
%% Each accepts `{nodes, all | [Node]}' (and `{rpc_timeout, Ms}'): the call
%% then runs on each node and answers `#{Node => Result}'; see
%% mem_probe_cluster.

%% @doc `snapshot([])'.
-spec snapshot() -> mem_probe_snapshot:snapshot().
snapshot() -> snapshot([]).

%% @doc What a later `diff/3' needs, compactly; see mem_probe_snapshot.
%% Options: `{binaries, false}' skips the per-process binary lists.
-spec snapshot(list() | map()) ->
          mem_probe_snapshot:snapshot() | per_node(mem_probe_snapshot:snapshot()).
snapshot(Opts) ->
    mem_probe_cluster:dispatch({"snapshot/1", snapshot}, Opts, fun(Rest) -> [Rest] end,
                               fun() -> mem_probe_snapshot:snapshot(Opts) end).

%% @doc `diff(Older, Newer, 10)'.
-spec diff(map(), map()) ->
          mem_probe_snapshot:diff() | #{node() => mem_probe_snapshot:diff() | {error, term()}}.
diff(Older, Newer) -> diff(Older, Newer, 10).

%% @doc What grew most between two snapshots of one node (or two
%% `#{Node => Snapshot}' maps): processes, tables and memory categories by
%% growth, each with `change' and `rate' per second, and what was born or
%% gone in between.
-spec diff(map(), map(), non_neg_integer()) ->
          mem_probe_snapshot:diff() | #{node() => mem_probe_snapshot:diff() | {error, term()}}.
diff(Older, Newer, N) -> mem_probe_snapshot:diff(Older, Newer, N).

%% @doc `{ok, Report}' or `{error, Violations}' for the given limits; see
%% mem_probe_check for the keys.
-spec check(list() | map()) -> check_result() | per_node(check_result()).
check(Limits) ->
    mem_probe_cluster:dispatch({"check/1", check}, Limits, fun(Rest) -> [Rest] end,
                               fun() -> mem_probe_check:check(Limits) end).

%% @doc `report([])'.
-spec report() -> mem_probe_report:report().
report() -> report([]).

%% @doc The one-screen report as a map (print it with `print/1'); see
%% mem_probe_report.
-spec report(list() | map()) -> mem_probe_report:report() | per_node(mem_probe_report:report()).
report(Opts) ->
    mem_probe_cluster:dispatch({"report/1", report}, Opts, fun(Rest) -> [Rest] end,
                               fun() -> mem_probe_report:report(Opts) end).

%%--------------------------------------------------------------------
%% The live top
%%--------------------------------------------------------------------

%% @doc `top([])'.
-spec top() -> ok | {error, term()}.
top() -> top([]).

%% @doc A refreshing full-screen view of this node (or of `{node, N}',
%% which need not have MemProbe) until `q'; `{once, true}' prints one frame.
%% Options: `interval', `sort', `node', `once', `rows', `style', `input';
%% see mem_probe_top.
-spec top(list() | map()) -> ok | {error, term()}.
top(Opts) -> mem_probe_top:top(Opts).
