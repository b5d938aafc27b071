%%% @doc Binary leaks: which processes keep off-heap binary memory alive,
%%% with each binary counted once across the node.
%%%
%%% A binary larger than 64 bytes lives outside the process heaps, shared,
%%% with a reference count; every process (and ETS object, and queued message)
%%% that holds it holds a reference. It is freed when the last reference goes,
%%% and a process drops its references only when it garbage-collects. Hence
%%% the classic leak: a process that touched large binaries, keeps a small
%%% slice of one (a 10-byte sub-binary keeps its whole parent alive), or
%%% simply does not allocate enough on its heap to collect, pins megabytes.
%%% `process_info(P, memory)' does not show them at all.
%%%
%%% == How bytes are attributed ==
%%%
%%% `process_info(P, binary)' lists, for each reference the process holds,
%%% the binary's address, size and the VM's reference count. Summing sizes
%%% per process (what recon's `bin_leak' and `proc_count(binary_memory, N)'
%%% do) counts a 10 MB binary held by 50 processes as 500 MB. Here each
%%% binary's size is split evenly among its references: a process holding
%%% `K' of a binary's `Refc' references is charged `Size * K / Refc'. The
%%% charges of all holders of a binary add up to its size, so the `bytes' of
%%% all processes add up to what the binaries really occupy (less the share
%%% of holders that are not processes: ETS tables, messages in flight). The
%%% ranking is by this share. Each entry also gives:
%%% <ul>
%%% <li>`raw_bytes': the process's own sum, each binary once for it (what a
%%%     per-process tool reports);</li>
%%% <li>`exclusive_bytes': binaries no one else references, which this
%%%     process alone keeps alive;</li>
%%% <li>`binaries': distinct binaries; `largest_binary_bytes' and `holders': the
%%%     size of its largest binary and that binary's reference count (one per
%%%     holding process, ETS object or queued message; 1 means only this
%%%     process).</li>
%%% </ul>
%%%
%%% The node is never collected as a whole (recon's `bin_leak' collects
%%% every process and ranks by the number of binaries freed, so 97 binaries
%%% of 65 bytes outrank one of 100 MB). With `{gc, true}' only the winners
%%% are collected, one at a time, and each entry says how many bytes that
%%% freed (`freed_bytes': binaries it alone referenced before and no longer
%%% references after).
%%%
%%% Limits: binaries referenced only from messages still in a queue, from
%%% ETS or from ports are in the reference counts but in no process's list.
-module(mem_probe_binaries).

-export([binary_leaks/2]).
%% For scans of several attributes in one pass (mem_probe_report).
-export([share/1, rows/2]).

-export_type([binary_leak/0]).

%% One process of binary_leaks/2, in bytes; `holders' is the reference count
%% of its largest binary; `freed_bytes' with `{gc, true}' only.
-type binary_leak() :: #{pid := pid(), name := atom() | undefined,
                         initial_call := mfa() | undefined,
                         current_function := mfa() | undefined,
                         bytes := non_neg_integer(), raw_bytes := non_neg_integer(),
                         exclusive_bytes := non_neg_integer(),
                         binaries := non_neg_integer(),
                         largest_binary_bytes := non_neg_integer(),
                         holders := non_neg_integer(),
                         freed_bytes => non_neg_integer()}.

%% @doc The `N' processes keeping the most off-heap binary bytes alive,
%% largest first. Options: `{gc, true}' collects those processes (only
%% those) and adds `freed_bytes' to each entry.
-spec binary_leaks(non_neg_integer(), list() | map()) -> [binary_leak()].
binary_leaks(N0, Opts0) ->
    F = "binary_leaks/2",
    N = mem_probe_args:non_neg_integer(F, "n", N0),
    Opts = mem_probe_args:options(F, Opts0, [{gc, fun is_boolean/1}]),
    GC = maps:get(gc, Opts, false),
    case N of
        0 -> [];
        _ -> mem_probe_scan:isolated(fun() -> leaks(N, GC) end)
    end.

leaks(N, GC) ->
    Cap = mem_probe_procs:capacity(N),
    Tops = mem_probe_scan:parallel(
             mem_probe_scan:processes(),
             fun(Chunk) -> chunk(Chunk, mem_probe_scan:top_new(Cap)) end),
    entries(mem_probe_scan:top_merge(Tops, Cap), N, GC).

%% @doc The rows of `binary_leaks(N, [])' from a ranking of
%% `{share(Bins), Pid, Bins}' (largest first), where `Bins' is the
%% process's `process_info(P, binary)' list.
-spec rows([{float(), pid(), list()}], non_neg_integer()) -> [binary_leak()].
rows(Ranked, N) -> entries(Ranked, N, false).

chunk([], Top) ->
    mem_probe_scan:top_list(Top);
chunk([P | Ps], Top) ->
    case erlang:process_info(P, binary) of
        {binary, []} -> chunk(Ps, Top);
        {binary, Bins} -> chunk(Ps, mem_probe_scan:top_offer(share(Bins), P, Bins, Top));
        undefined -> chunk(Ps, Top)
    end.

%% @doc What a process's binaries (`process_info(P, binary)') are charged:
%% each reference `Size / Refc', so that the charges of all holders add up
%% to the binaries' sizes.
-spec share(list()) -> float().
share(Bins) -> share(Bins, 0.0).

share([], Acc) -> Acc;
share([{_, Size, Refc} | Rest], Acc) -> share(Rest, Acc + Size / max(Refc, 1)).

entries(_, 0, _GC) ->
    [];
entries([], _, _GC) ->
    [];
entries([{Share, Pid, Bins} | Rest], N, GC) ->
    Entry0 = (summary(Bins))#{pid => Pid, bytes => round(Share)},
    case mem_probe_scan:details(Pid, Entry0) of
        undefined ->
            entries(Rest, N, GC);
        Entry when GC ->
            [Entry#{freed_bytes => collect(Pid)} | entries(Rest, N - 1, GC)];
        Entry ->
            [Entry | entries(Rest, N - 1, GC)]
    end.

%% One {Addr, Size, Refc, K} per distinct binary, K = this process's
%% references to it.
distinct(Bins) ->
    distinct(lists:keysort(1, Bins), []).

distinct([], Acc) ->
    Acc;
distinct([{Addr, Size, Refc} | Rest], [{Addr, _, Refc0, K} | Acc]) ->
    distinct(Rest, [{Addr, Size, max(Refc, Refc0), K + 1} | Acc]);
distinct([{Addr, Size, Refc} | Rest], Acc) ->
    distinct(Rest, [{Addr, Size, Refc, 1} | Acc]).

summary(Bins) ->
    lists:foldl(
      fun({_, Size, Refc, K}, #{raw_bytes := Raw, exclusive_bytes := Excl, binaries := Count,
                                largest_binary_bytes := Largest} = Acc) ->
              Acc1 = Acc#{raw_bytes := Raw + Size, binaries := Count + 1,
                          exclusive_bytes := case Refc =< K of
                                                 true -> Excl + Size;
                                                 false -> Excl
                                             end},
              case Size > Largest of
                  true -> Acc1#{largest_binary_bytes := Size, holders := Refc};
                  false -> Acc1
              end
      end,
      #{raw_bytes => 0, exclusive_bytes => 0, binaries => 0, largest_binary_bytes => 0,
        holders => 0},
      distinct(Bins)).

%% Collects one process and returns the bytes of the binaries it alone
%% referenced before and does not reference after.
collect(Pid) ->
    case erlang:process_info(Pid, binary) of
        {binary, Before} ->
            case erlang:garbage_collect(Pid) andalso erlang:process_info(Pid, binary) of
                {binary, After} ->
                    Kept = maps:from_keys([Addr || {Addr, _, _} <- After], []),
                    lists:sum([Size || {Addr, Size, Refc, K} <- distinct(Before),
                                       Refc =< K, not is_map_key(Addr, Kept)]);
                _ ->
                    %% It exited: what it held was freed by its exit, not by
                    %% a collection.
                    0
            end;
        undefined ->
            0
    end.
