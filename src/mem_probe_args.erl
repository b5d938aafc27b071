%%% @doc Argument checks shared by every public function.
%%%
%%% Misuse raises `badarg' with EEP 54 error information: the shell
%%% (`erl_error:format_exception/3') prints the function and what was wrong,
%%% and Elixir raises `ArgumentError' with the message
%%% "Function: what was wrong; accepted: ...", both through `format_error/2'
%%% here, the one error formatter of MemProbe. Nothing here (or anywhere in
%%% MemProbe) creates atoms from input: options are compared against known
%%% atoms, never converted.
-module(mem_probe_args).

-export([bad/3, one_of/4, non_neg_integer/3, pos_integer/3, options/3, pid/2, timeout/3]).
-export([format_error/2, message/1]).

%% @doc Raises `badarg' for `Function' (a string such as "top_processes/3")
%% about `What' (a string), listing `Accepted'. The error information's
%% cause is `{Function, Detail}' (two binaries).
-spec bad(string(), iodata(), iodata()) -> no_return().
bad(Function, What, Accepted) ->
    Cause = {iolist_to_binary(Function), iolist_to_binary([What, "; accepted: ", Accepted])},
    erlang:error(badarg, none, [{error_info, #{module => ?MODULE, cause => Cause}}]).

%% @doc EEP 54's formatter for the errors `bad/3' raises: the function as the
%% reason (Elixir prints "Reason: General"), the detail as the general text.
-spec format_error(term(), erlang:stacktrace()) -> #{atom() => binary()}.
format_error(_Reason, [{_M, _F, _A, Info} | _]) ->
    case proplists:get_value(error_info, Info) of
        #{cause := {Function, Detail}} -> #{reason => Function, general => Detail};
        _ -> #{}
    end;
format_error(_Reason, _Stacktrace) ->
    #{}.

%% @doc The whole message, "Function: detail; accepted: ...", of a badarg
%% raised by `bad/3' with this stacktrace, or `undefined' for any other.
-spec message(erlang:stacktrace()) -> binary() | undefined.
message(Stacktrace) ->
    case format_error(badarg, Stacktrace) of
        #{reason := Function, general := Detail} -> <<Function/binary, ": ", Detail/binary>>;
        #{} -> undefined
    end.

%% @doc `Value' if it is one of `Allowed' (atoms), else a badarg listing them.
-spec one_of(string(), string(), term(), [atom()]) -> atom().
one_of(Function, Name, Value, Allowed) ->
    case lists:member(Value, Allowed) of
        true -> Value;
        false -> bad(Function, io_lib:format("unknown ~s ~0tp", [Name, Value]), join(Allowed))
    end.

-spec non_neg_integer(string(), string(), term()) -> non_neg_integer().
non_neg_integer(_Function, _Name, N) when is_integer(N), N >= 0 -> N;
non_neg_integer(Function, Name, N) ->
    bad(Function, io_lib:format("~s must be a non-negative integer, got ~0tp", [Name, N]),
        "0, 1, 2, ...").

-spec pos_integer(string(), string(), term()) -> pos_integer().
pos_integer(_Function, _Name, N) when is_integer(N), N > 0 -> N;
pos_integer(Function, Name, N) ->
    bad(Function, io_lib:format("~s must be a positive integer, got ~0tp", [Name, N]),
        "1, 2, 3, ...").

-spec timeout(string(), string(), term()) -> timeout().
timeout(_Function, _Name, infinity) -> infinity;
timeout(_Function, _Name, N) when is_integer(N), N >= 0 -> N;
timeout(Function, Name, N) ->
    bad(Function, io_lib:format("~s must be a timeout in milliseconds, got ~0tp", [Name, N]),
        "a non-negative integer or infinity").

-spec pid(string(), term()) -> pid().
pid(_Function, Pid) when is_pid(Pid) -> Pid;
pid(Function, Other) ->
    bad(Function, io_lib:format("expected a pid, got ~0tp", [Other]), "a pid").

%% @doc Checks a keyword list (or map) of options against `Known', a list of
%% `{Key, Check}' where `Check' is `fun(Value) -> boolean()'. Returns a map.
-spec options(string(), term(), [{atom(), fun((term()) -> boolean())}]) -> map().
options(Function, Options, Known) when is_map(Options) ->
    options(Function, maps:to_list(Options), Known);
options(Function, Options, Known) when is_list(Options) ->
    Keys = [K || {K, _} <- Known],
    lists:foldl(
      fun({Key, Value}, Acc) when is_atom(Key) ->
              case lists:keyfind(Key, 1, Known) of
                  {Key, Check} ->
                      case Check(Value) of
                          true -> Acc#{Key => Value};
                          false -> bad(Function, io_lib:format("bad value ~0tp for option ~s",
                                                               [Value, Key]), join(Keys))
                      end;
                  false ->
                      bad(Function, io_lib:format("unknown option ~0tp", [Key]), join(Keys))
              end;
         (Other, _) ->
              bad(Function, io_lib:format("options must be {Key, Value} pairs, got ~0tp", [Other]),
                  join(Keys))
      end, #{}, Options);
options(Function, Options, Known) ->
    bad(Function, io_lib:format("options must be a list or a map, got ~0tp", [Options]),
        join([K || {K, _} <- Known])).

join(Atoms) ->
    lists:join(", ", [atom_to_list(A) || A <- Atoms]).
