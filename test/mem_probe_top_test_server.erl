%%% A gen_server whose state is the term it was started with, for the
%%% collector's state_size test.
-module(mem_probe_top_test_server).
-behaviour(gen_server).
-export([init/1, handle_call/3, handle_cast/2]).

init(State) -> {ok, State}.
handle_call(_Request, _From, State) -> {reply, ok, State}.
handle_cast(_Request, State) -> {noreply, State}.
