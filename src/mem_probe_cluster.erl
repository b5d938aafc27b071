%%% @doc The same scan on several nodes: `nodes' in any scan's options.
%%%
%%% `nodes => all' means this node plus `nodes()'; a list names the nodes.
%%% Each node runs the call locally (so its numbers are its own, not copies
%%% sent over the wire and re-measured here) through `erpc' with a timeout
%%% (`rpc_timeout', default 15 s), and the answer is `#{Node => Result}' with
%%% one entry per node. A node that is down, does not answer in time, or does
%%% not have MemProbe gives `{error, Reason}' for that node while the others
%%% answer: `nodedown', `timeout', `mem_probe_not_loaded', or
%%% `{exception, Class, Reason}'.
-module(mem_probe_cluster).

-export([dispatch/4, split_options/2, resolve_nodes/2, on_nodes/5]).

-define(DEFAULT_TIMEOUT, 15000).

%% @doc Runs `mem_probe:Function(ArgsFun(LocalOptions)...)' here, or on each
%% node when `Options' has `nodes'. `Function' is a string for error messages
%% and an atom for the call: `{Name, Atom}'.
-spec dispatch({string(), atom()}, list() | map(), fun((list() | map()) -> [term()]),
               fun(() -> term())) -> term().
dispatch({Name, Function}, Options, ArgsFun, Local) ->
    case split_options(Name, Options) of
        {none, _, _} ->
            Local();
        {Nodes, Timeout, Rest} ->
            on_nodes(Name, Nodes, Function, ArgsFun(Rest), Timeout)
    end.

%% @doc `{Nodes | none, Timeout, OptionsWithoutClusterKeys}'.
-spec split_options(string(), term()) -> {none | [node()], timeout(), list() | map()}.
split_options(Name, Options) when is_map(Options) ->
    {Nodes, Timeout, Rest} = split_options(Name, maps:to_list(Options)),
    {Nodes, Timeout, maps:from_list(Rest)};
split_options(Name, Options) when is_list(Options) ->
    Timeout = case lists:keyfind(rpc_timeout, 1, Options) of
                  {rpc_timeout, T} -> mem_probe_args:timeout(Name, "rpc_timeout", T);
                  false -> ?DEFAULT_TIMEOUT
              end,
    Rest = [O || O <- Options, not is_cluster_key(O)],
    case lists:keyfind(nodes, 1, Options) of
        {nodes, Nodes} -> {resolve_nodes(Name, Nodes), Timeout, Rest};
        false -> {none, Timeout, Rest}
    end;
split_options(_Name, Options) ->
    %% Not options at all: the local function reports the bad argument.
    {none, ?DEFAULT_TIMEOUT, Options}.

is_cluster_key({nodes, _}) -> true;
is_cluster_key({rpc_timeout, _}) -> true;
is_cluster_key(_) -> false.

%% @doc `all' (this node and every connected node) or a list of node names.
-spec resolve_nodes(string(), term()) -> [node()].
resolve_nodes(_Name, all) ->
    [node() | nodes()];
resolve_nodes(Name, Nodes) when is_list(Nodes) ->
    case Nodes =/= [] andalso lists:all(fun is_atom/1, Nodes) of
        true -> lists:usort(Nodes);
        false -> bad_nodes(Name, Nodes)
    end;
resolve_nodes(Name, Other) ->
    bad_nodes(Name, Other).

-spec bad_nodes(string(), term()) -> no_return().
bad_nodes(Name, Value) ->
    mem_probe_args:bad(Name, io_lib:format("bad nodes option ~0tp", [Value]),
                       "all, or a non-empty list of node names").

%% @doc `#{Node => Result | {error, Reason}}' for `mem_probe:Function(Args...)'.
-spec on_nodes(string(), [node()], atom(), [term()], timeout()) -> #{node() => term()}.
on_nodes(_Name, Nodes, Function, Args, Timeout) ->
    Results = erpc:multicall(Nodes, mem_probe, Function, Args, Timeout),
    maps:from_list(lists:zipwith(fun(Node, R) -> {Node, result(R)} end, Nodes, Results)).

result({ok, Value}) -> Value;
result({error, {erpc, noconnection}}) -> {error, nodedown};
result({error, {erpc, timeout}}) -> {error, timeout};
result({error, {exception, undef, [{mem_probe, _, _, _} | _]}}) -> {error, mem_probe_not_loaded};
%% A bad argument a node checked (the options besides the cluster ones are
%% checked where the call runs): its message, as the error information has it.
result({error, {exception, badarg, Stack}} = Error) ->
    case mem_probe_args:message(Stack) of
        undefined -> result_other(Error);
        Message -> {error, {badarg, Message}}
    end;
result(Other) -> result_other(Other).

result_other({error, {exception, Reason, _Stack}}) -> {error, {exception, error, Reason}};
result_other({error, {erpc, Reason}}) -> {error, Reason};
result_other({throw, Value}) -> {error, {exception, throw, Value}};
result_other({exit, {exception, Reason}}) -> {error, {exception, exit, Reason}};
result_other({exit, Reason}) -> {error, {exception, exit, Reason}};
result_other(Other) -> {error, Other}.
