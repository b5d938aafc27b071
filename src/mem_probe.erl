%%% @doc MemProbe: where a BEAM node's memory goes.
%%%
%%% Term sizes (`flat_size/1', `shared_size/1', `term_size/1') are read in
%%% place by a native walker and always agree with the VM's own accounting;
%%% see `mem_probe_nif' for when the walker is trusted and what the fallback
%%% gives. Sizes are in words unless a field says bytes.
%%%
%%% Why three sizes: a term's flat size is what a copy costs (a send, an ETS
%%% insert, `:sys.get_state'); its shared size is what it occupies here, each
%%% shared subterm once, without the module literals it points to; and its
%%% off-heap bytes are the refc binaries it keeps alive, each counted once,
%%% whole, even when only a small slice of it is referenced.
-module(mem_probe).

-export([flat_size/1, shared_size/1, term_size/1, info/0]).
%% --- process scans exports ---
%% --- end of process scans exports ---
%% --- ETS, system and allocator exports ---
%% --- end of ETS, system and allocator exports ---

%% @doc Words a full copy of `Term' takes; equals `erts_debug:flat_size/1'.
%% Shared subterms count once per path, as a copy would expand them, but the
%% walk is linear in the distinct objects, so a deeply shared term answers at
%% once.
-spec flat_size(term()) -> non_neg_integer().
flat_size(Term) -> mem_probe_nif:flat_size(Term).

%% @doc Words of the distinct heap objects of `Term', each counted once,
%% module literals excluded. Equals `erts_debug:size_shared/1' except that
%% hashmap nodes are counted once (size_shared counts them twice).
-spec shared_size(term()) -> non_neg_integer().
shared_size(Term) -> mem_probe_nif:shared_size(Term).

%% @doc All sizes of `Term' from one walk: `flat_words', `shared_words',
%% `literal_words', `off_heap_binaries', `off_heap_bytes' and `bytes'
%% (`shared_words' in bytes plus `off_heap_bytes': what the term holds now).
-spec term_size(term()) -> mem_probe_nif:sizes().
term_size(Term) -> mem_probe_nif:term_size(Term).

%% @doc The mode (`native' or `fallback'), the OTP release, the layout in use
%% and, in fallback, the reason and the fields that are not exact.
-spec info() -> map().
info() -> mem_probe_nif:info().

%%--------------------------------------------------------------------
%% Process scans
%%--------------------------------------------------------------------
%% --- process scans ---
%% --- end of process scans ---

%%--------------------------------------------------------------------
%% ETS, system and allocator scans
%%--------------------------------------------------------------------
%% --- ETS, system and allocator scans ---
%% --- end of ETS, system and allocator scans ---
