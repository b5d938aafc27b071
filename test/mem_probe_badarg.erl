%%% @doc The message of a badarg as the Erlang shell prints it: tests read
%%% the text `erl_error:format_exception/3' builds from the EEP 54 error
%%% information, "exception error: Function" and "*** Detail", and return
%%% "Function: Detail" (the text Elixir's ArgumentError carries).
-module(mem_probe_badarg).

-export([message/1]).

-spec message(fun(() -> term())) -> string() | {no_error, term()} | {other_error, term()}.
message(Fun) ->
    try Fun() of
        Other -> {no_error, Other}
    catch
        error:badarg:Stacktrace ->
            Text = unicode:characters_to_list(erl_error:format_exception(error, badarg, Stacktrace)),
            Lines = string:split(Text, "\n", all),
            ["exception error: " ++ Function | _] = Lines,
            [Detail] = [D || L <- Lines, {match, [D]} <- [re:run(L, "^ *\\*\\*\\* (.*)$",
                                                                  [{capture, all_but_first, list},
                                                                   unicode])]],
            Function ++ ": " ++ Detail;
        Class:Reason ->
            {other_error, {Class, Reason}}
    end.
