%%% @doc The size of a process's state, measured inside the process.
%%%
%%% `sys:get_state/1' copies the state into the caller: the copy is flat, so
%%% a state that shares a subterm a thousand times (a list referenced from
%%% every entry of a map) is counted a thousand times, module literals are
%%% copied as if they were on the heap, and the caller pays for the whole
%%% copy (a 1 GB state is a 1 GB message). `state_size/2' instead runs the
%%% term walker in the target process, through the `replace_state' system
%%% message with a function that sizes the state, sends the sizes (a small
%%% map) to the caller and returns the state unchanged. The sizes are
%%% `mem_probe:term_size/1''s: `flat_words' (what a copy costs),
%%% `shared_words' (what the state occupies, each shared subterm once),
%%% `literal_words', `off_heap_binaries', `off_heap_bytes' (refc binaries it
%%% keeps alive, whole, even through a small slice) and `bytes'.
%%%
%%% The sys protocol answers a `replace_state' with the new state. That reply
%%% is addressed to a process that has already exited, so the VM drops it
%%% without copying: neither side copies the state.
%%%
%%% Errors, never a hang or a crash of either side:
%%% <ul>
%%% <li>`{error, noproc}': the process is not alive, or exits before it
%%%     answers;</li>
%%% <li>`{error, not_a_sys_process}': it was not started by `proc_lib', so
%%%     it cannot understand system messages (nothing is sent to it);</li>
%%% <li>`{error, timeout}': no answer in time (default 5000 ms): a busy or
%%%     stuck process, or a `proc_lib' process that is not a sys process (a
%%%     Task): the system message then stays in its queue. A late answer is
%%%     dropped by the VM (it is sent to an alias that is deactivated);</li>
%%% <li>`{error, calling_process}': a process cannot serve a system message
%%%     while it waits for its own answer.</li>
%%% </ul>
-module(mem_probe_state).

-export([state_size/2, inside/4]).

-define(DEFAULT_TIMEOUT, 5000).

%% @doc `{ok, Sizes}' of `Pid''s state, measured in `Pid'. Options:
%% `{timeout, Ms | infinity}' (default 5000).
-spec state_size(pid(), list() | map()) -> {ok, mem_probe_sizes:sizes()} | {error, term()}.
state_size(Pid, Opts0) ->
    F = "state_size/2",
    Opts = mem_probe_args:options(F, Opts0, [{timeout, fun is_timeout/1}]),
    inside(F, Pid, maps:get(timeout, Opts, ?DEFAULT_TIMEOUT), fun sizes/1).

%% @doc Runs `Measure(State)' inside the sys process `Pid' and returns its
%% result (which should be small: it is sent back), or one of the errors
%% above. `Function' names the caller in argument errors.
-spec inside(string(), pid(), timeout(), fun((term()) -> Result)) ->
          Result | {error, term()}.
inside(F, Pid0, Timeout, Measure) ->
    Pid = mem_probe_args:pid(F, Pid0),
    node(Pid) =:= node() orelse
        mem_probe_args:bad(F, io_lib:format("~0p is not a pid of this node", [Pid]),
                           "a pid of this node"),
    case Pid =:= self() of
        true ->
            {error, calling_process};
        false ->
            case erlang:process_info(Pid, initial_call) of
                undefined -> {error, noproc};
                {initial_call, {proc_lib, init_p, _}} -> ask(Pid, Timeout, Measure);
                {initial_call, _} -> {error, not_a_sys_process}
            end
    end.

is_timeout(infinity) -> true;
is_timeout(T) -> is_integer(T) andalso T >= 0.

ask(Pid, Timeout, Measure) ->
    Sink = dead_pid(),
    %% One reference is both the monitor and the alias the answer comes to;
    %% once unaliased, a late answer is dropped before it reaches the queue.
    Ref = erlang:monitor(process, Pid, [{alias, explicit_unalias}]),
    StateFun = fun(State) ->
                       Ref ! {Ref, Measure(State)},
                       State
               end,
    Pid ! {system, {Sink, Ref}, {replace_state, StateFun}},
    receive
        {Ref, Result} ->
            done(Ref),
            Result;
        {'DOWN', Ref, process, Pid, _} ->
            done(Ref),
            {error, noproc}
    after Timeout ->
            done(Ref),
            {error, timeout}
    end.

sizes(State) ->
    try {ok, mem_probe_sizes:term_size(State)}
    catch Class:Reason -> {error, {term_size_failed, Class, Reason}}
    end.

done(Ref) ->
    erlang:unalias(Ref),
    erlang:demonitor(Ref, [flush]),
    receive {Ref, _} -> ok after 0 -> ok end.

%% A local pid that is certainly not alive: messages to it are dropped by
%% the sender's VM without being copied.
dead_pid() ->
    {Pid, MRef} = spawn_monitor(fun() -> ok end),
    receive {'DOWN', MRef, process, Pid, _} -> Pid end.
