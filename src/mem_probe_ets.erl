%%% @doc ETS scans: which tables hold the memory, counting what `ets:info'
%%% leaves out.
%%%
%%% Why `ets:info(T, memory)' misleads: it counts the words of the table's
%%% own storage (objects, hash buckets or tree nodes), in WORDS, and it leaves
%%% out every off-heap (refc) binary the objects point to. A binary larger
%%% than 64 bytes is not copied into the table; the table keeps a small
%%% reference to it. A table of 100 x 1 MB binaries therefore reports about
%%% 1,600 words (12.5 KB) while it keeps 100 MB alive, and tools that rank
%%% tables by `ets:info(T, memory)' (observer, observer_cli, LiveDashboard)
%%% never show it. Here every size is in bytes, and `binaries => true'
%%% walks the objects to find those binaries.
%%%
%%% How the binaries are counted: the objects are copied out in chunks
%%% (`ets:select/3' with a continuation, about 64k words per chunk) into a
%%% fresh helper process, one per table, that holds nothing else. After each
%%% chunk the helper reads `process_info(self(), binary)', which lists every
%%% refc binary its heap references by the address of the shared binary, and
%%% keeps a set of those addresses. Each binary is therefore counted once per
%%% table, across all chunks, however many objects refer to it, and whole: a
%%% 100-byte slice of a 1 MB binary pins 1 MB (a slice of 64 bytes or less is
%%% copied into the table as a small binary of its own and pins nothing).
%%% This needs no native code, so it is exact in fallback mode too, and the
%%% caller's heap never holds the objects. (Why one process per table: a
%%% chunk that happens to live through two garbage collections moves to the
%%% old heap, where its binaries stay listed until a major collection; a
%%% reused helper would count them for the next table as well.)
%%%
%%% Limits, on purpose:
%%% <ul>
%%% <li>Private tables can only be read by their owner; the helper cannot read
%%% them, so they show what `ets:info' shows and `off_heap_bytes' is
%%% `undefined'.</li>
%%% <li>A table written during the walk is a moving target: `ets:select/3'
%%% with a continuation does not fix the table (fixing would delay the
%%% owner's deletes), so an object may be missed or seen twice; binaries are
%%% still counted once. A binary freed during the walk whose address is
%%% reused by a new binary of the same table is taken for the old one and
%%% not counted.</li>
%%% <li>Only refc binaries are off-heap here. NIF resources, atomics and
%%% counters stored in a table are references to memory this cannot
%%% size.</li>
%%% <li>Tables deleted during a scan are skipped; `table_size/1' returns
%%% `{error, deleted}'.</li>
%%% <li>Walking copies every object once, in bounded chunks: the cost is that
%%% of `ets:tab2list/1' spread over time, without its peak memory in the
%%% caller.</li>
%%% </ul>
-module(mem_probe_ets).

-export([top_tables/2, table_size/1]).
%% Internal, exported for the tests: the object walk of one table.
-export([walk_table/2]).

%% Extra candidates kept beyond `n', so that a winner deleted before its
%% details are read is replaced without a second scan.
-define(MARGIN, 8).
%% Target words copied per chunk, and the bounds on objects per chunk.
-define(CHUNK_WORDS, 65536).
-define(MAX_CHUNK, 1000).

-type table() :: atom() | ets:tid().
%% One table of top_tables/2 (`off_heap_bytes' `undefined' unless walked).
-type entry() :: #{table := table(),
                   name := atom(),
                   owner := pid(),
                   owner_name := atom() | undefined,
                   memory_bytes := non_neg_integer(),
                   size := non_neg_integer(),
                   type := set | ordered_set | bag | duplicate_bag,
                   protection := public | protected | private,
                   off_heap_bytes := non_neg_integer() | undefined}.
%% table_size/1's answer: an entry and what the walk found; the walked
%% fields are `undefined' for a private table (`readable' false).
-type table_size() :: #{table := table(),
                        name := atom(),
                        owner := pid(),
                        owner_name := atom() | undefined,
                        memory_bytes := non_neg_integer(),
                        size := non_neg_integer(),
                        type := set | ordered_set | bag | duplicate_bag,
                        protection := public | protected | private,
                        compressed := boolean(),
                        readable := boolean(),
                        objects_bytes := non_neg_integer() | undefined,
                        off_heap_binaries := non_neg_integer() | undefined,
                        off_heap_bytes := non_neg_integer() | undefined,
                        total_bytes := non_neg_integer() | undefined}.
-export_type([entry/0, table/0, table_size/0]).

%%--------------------------------------------------------------------
%% top_tables
%%--------------------------------------------------------------------

%% @doc The `N' tables holding the most memory, largest first.
%%
%% Without options tables are ranked by `memory_bytes' (`ets:info(T,
%% memory)' in bytes) and `off_heap_bytes' is `undefined'. With `{binaries,
%% true}' every readable table's objects are walked, `off_heap_bytes' is the
%% refc binary bytes it keeps alive (each binary once), and tables are ranked
%% by `memory_bytes + off_heap_bytes'.
%%
%% The scan without binaries reads one item, `memory', per table and keeps
%% only the leaders; the other fields are read for the winners alone.
-spec top_tables(non_neg_integer(), [{binaries, boolean()}] | map()) -> [entry()].
top_tables(N0, Opts0) ->
    Fn = "top_tables/2",
    N = mem_probe_args:non_neg_integer(Fn, "n", N0),
    %% A bad value names the values accepted, not just the option.
    Boolean = fun(V) ->
                      is_boolean(V) orelse
                          mem_probe_args:one_of(Fn, "value for option binaries:", V,
                                                [true, false])
              end,
    Opts = mem_probe_args:options(Fn, Opts0, [{binaries, Boolean}]),
    case {N, maps:get(binaries, Opts, false)} of
        {0, _} -> [];
        {_, false} -> top_by_memory(N);
        {_, true} -> top_with_binaries(N)
    end.

top_by_memory(N) ->
    Keep = N + ?MARGIN,
    Leaders = lists:foldl(
                fun(T, Set) ->
                        case mem_probe_scan:ets_info(T, memory) of
                            undefined -> Set;
                            W -> mem_probe_scan:top_offer(W, T, undefined, Set)
                        end
                end, mem_probe_scan:top_new(Keep), ets:all()),
    details([{T, undefined} || {_, T, _} <- mem_probe_scan:top_list(Leaders)], N).

top_with_binaries(N) ->
    %% One fresh helper per table: a chunk that lived through two
    %% collections sits in the old heap until a major one, and its binaries
    %% would be counted for the next table too. A fresh process costs a few
    %% microseconds; a major collection per table would copy everything the
    %% helper keeps.
    WordSize = erlang:system_info(wordsize),
    Ranked =
        lists:foldl(
          fun(T, Set) ->
                  case mem_probe_scan:ets_info(T, memory) of
                      undefined ->
                          Set;
                      W ->
                          case mem_probe_scan:isolated(fun() -> off_heap_bytes(T) end) of
                              vanished -> Set;
                              unreadable -> mem_probe_scan:top_offer(W * WordSize, T, undefined,
                                                                     Set);
                              B -> mem_probe_scan:top_offer(W * WordSize + B, T, B, Set)
                          end
                  end
          end, mem_probe_scan:top_new(N + ?MARGIN), ets:all()),
    Entries = details([{T, B} || {_, T, B} <- mem_probe_scan:top_list(Ranked)], N),
    %% Re-rank on the values read with the details, which are the ones shown.
    lists:sort(fun(A, B) -> rank_key(A) >= rank_key(B) end, Entries).

%% Only the number crosses back to the caller.
off_heap_bytes(T) ->
    case walk_table(T, #{}) of
        #{off_heap_bytes := B} -> B;
        Other -> Other
    end.

rank_key(#{memory_bytes := M, off_heap_bytes := undefined}) -> M;
rank_key(#{memory_bytes := M, off_heap_bytes := B}) -> M + B.

%% Full entries for the ranked `{Table, OffHeapBytes}' until `N' are found;
%% tables deleted since they were ranked are skipped.
details(_, 0) -> [];
details([], _) -> [];
details([{T, Off} | Rest], N) ->
    case mem_probe_scan:ets_info(T) of
        undefined -> details(Rest, N);
        Info -> [entry(T, Info, Off) | details(Rest, N - 1)]
    end.

entry(T, Info, Off) ->
    Owner = info_value(owner, Info),
    #{table => T,
      name => info_value(name, Info),
      owner => Owner,
      owner_name => mem_probe_scan:registered_name(Owner),
      memory_bytes => info_value(memory, Info) * erlang:system_info(wordsize),
      size => info_value(size, Info),
      type => info_value(type, Info),
      protection => info_value(protection, Info),
      off_heap_bytes => Off}.

%%--------------------------------------------------------------------
%% table_size
%%--------------------------------------------------------------------

%% @doc The full numbers for one table, `Table' being a table name (an atom,
%% for a named table) or a table identifier.
%%
%% `{ok, Map}' where, besides the fields of `top_tables/2' (`size' is the
%% number of objects): `objects_bytes' is what a copy of all objects takes
%% (the sum of their flat sizes, as `ets:tab2list/1' would copy them),
%% `off_heap_binaries' and `off_heap_bytes' the distinct refc binaries the
%% objects keep alive and their bytes, `total_bytes' is `memory_bytes +
%% off_heap_bytes', `compressed' and `readable'. For a private table
%% (`readable' false) the walked fields are `undefined'. `{error, deleted}'
%% when the table is gone: deleted during the walk, or before the call when
%% `Table' is a table identifier (`ets:info/1' answers `undefined' for the
%% identifier of a deleted table and raises for a reference that never was
%% one). A name no table has, or a reference that never was a table, raises
%% badarg.
-spec table_size(table()) -> {ok, table_size()} | {error, deleted}.
table_size(Table) ->
    Fn = "table_size/1",
    Accepted = "a table name (an atom naming a named table) or a table identifier "
               "(as returned by ets:new/2) of an existing table",
    case is_atom(Table) orelse is_reference(Table) of
        true -> ok;
        false -> mem_probe_args:bad(Fn, io_lib:format("not a table: ~0tp", [Table]), Accepted)
    end,
    case table_info(Table) of
        undefined when is_reference(Table) ->
            {error, deleted};
        Unknown when Unknown =:= undefined; Unknown =:= not_a_table ->
            mem_probe_args:bad(Fn, io_lib:format("unknown table ~0tp", [Table]), Accepted);
        Info ->
            Base = maps:merge(entry(Table, Info, undefined),
                              #{compressed => info_value(compressed, Info),
                                objects_bytes => undefined,
                                off_heap_binaries => undefined,
                                total_bytes => undefined,
                                readable => false}),
            Walk = case info_value(protection, Info) of
                       private -> unreadable;
                       _ -> mem_probe_scan:isolated(fun() -> walk_table(Table, #{flat => true}) end)
                   end,
            case Walk of
                vanished ->
                    {error, deleted};
                unreadable ->
                    {ok, Base};
                #{flat_words := Flat, off_heap_binaries := Bins, off_heap_bytes := Bytes} ->
                    %% Read again: the walk took time, and these are the
                    %% numbers it saw.
                    Now = case mem_probe_scan:ets_info(Table) of
                              undefined -> Base;
                              Info2 -> maps:merge(Base, entry(Table, Info2, undefined))
                          end,
                    #{memory_bytes := Mem} = Now,
                    {ok, Now#{objects_bytes => Flat * erlang:system_info(wordsize),
                              off_heap_binaries => Bins,
                              off_heap_bytes => Bytes,
                              total_bytes => Mem + Bytes,
                              readable => true}}
            end
    end.

%% `ets:info/1', or `not_a_table' for what never was a table.
table_info(Table) ->
    try ets:info(Table)
    catch error:badarg -> not_a_table
    end.

%%--------------------------------------------------------------------
%% The object walk (runs in a helper process)
%%--------------------------------------------------------------------

%% @private Walks the objects of `Table' in chunks from the calling process,
%% which must be a fresh process holding no refc binaries (a helper from
%% `mem_probe_scan:isolated/1'): every binary its heap references is taken to be the
%% table's.
%% Options: `flat => true' also sums the objects' flat sizes through the
%% term-size NIF; `on_chunk => fun(ChunkNumber) -> any()' is called after
%% each chunk (for tests). Returns `#{objects, off_heap_binaries,
%% off_heap_bytes, flat_words}', `vanished' (deleted during the walk) or
%% `unreadable' (private).
-spec walk_table(table(), map()) -> map() | vanished | unreadable.
walk_table(Table, Opts) ->
    case mem_probe_scan:ets_info(Table, protection) of
        undefined ->
            vanished;
        private ->
            unreadable;
        _ ->
            Limit = chunk_limit(Table),
            Acc = #{objects => 0, off_heap_binaries => 0, off_heap_bytes => 0,
                    flat_words => 0, seen => #{}, chunk => 0},
            MatchSpec = [{'_', [], ['$_']}],
            walk(fun() -> ets:select(Table, MatchSpec, Limit) end, Table, Opts, Acc)
    end.

walk(Next, Table, Opts, Acc) ->
    case select(Next) of
        '$end_of_table' ->
            maps:without([seen, chunk], Acc);
        {badarg} ->
            lost(Table);
        {Objects, Cont} ->
            Acc1 = count_chunk(Objects, Opts, Acc),
            case maps:get(on_chunk, Opts, undefined) of
                undefined -> ok;
                Hook -> Hook(maps:get(chunk, Acc1))
            end,
            mem_probe_scan:stop_if_caller_gone(),
            walk_next(Cont, Table, Opts, Acc1)
    end.

%% A separate function so that the chunk is garbage when collected.
walk_next(Cont, Table, Opts, Acc) ->
    erlang:garbage_collect(self(), [{type, minor}]),
    walk(fun() -> ets:select(Cont) end, Table, Opts, Acc).

select(Next) ->
    try Next()
    catch error:badarg -> {badarg}
    end.

lost(Table) ->
    case mem_probe_scan:ets_info(Table, protection) of
        private -> unreadable;
        _ -> vanished
    end.

count_chunk(Objects, Opts, Acc) ->
    #{objects := Count, seen := Seen0, off_heap_binaries := Bins0,
      off_heap_bytes := Bytes0, flat_words := Flat0, chunk := Chunk} = Acc,
    {binary, Refs} = erlang:process_info(self(), binary),
    {Seen, Bins, Bytes} =
        lists:foldl(fun({Addr, Size, _Refc}, {S, Bn, By} = Unchanged) ->
                            case S of
                                #{Addr := _} -> Unchanged;
                                _ -> {S#{Addr => true}, Bn + 1, By + Size}
                            end
                    end, {Seen0, Bins0, Bytes0}, Refs),
    Len = length(Objects),
    Flat = case maps:get(flat, Opts, false) of
               %% The chunk list's own cells (2 words per object) are not
               %% part of the table.
               true -> Flat0 + mem_probe_sizes:flat_size(Objects) - 2 * Len;
               false -> Flat0
           end,
    Acc#{objects := Count + Len, seen := Seen, off_heap_binaries := Bins,
         off_heap_bytes := Bytes, flat_words := Flat, chunk := Chunk + 1}.

chunk_limit(Table) ->
    Words = case mem_probe_scan:ets_info(Table, memory) of
                W when is_integer(W) -> W;
                _ -> 0
            end,
    Size = case mem_probe_scan:ets_info(Table, size) of
               S when is_integer(S), S > 0 -> S;
               _ -> 1
           end,
    PerObject = max(1, Words div Size),
    max(1, min(?MAX_CHUNK, ?CHUNK_WORDS div PerObject)).

info_value(Key, Info) ->
    case lists:keyfind(Key, 1, Info) of
        {Key, Value} -> Value;
        false -> undefined
    end.
