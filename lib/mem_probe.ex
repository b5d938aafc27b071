defmodule MemProbe do
  @moduledoc """
  Where a BEAM node's memory goes: exact term sizes, read in place.

  MemProbe's numbers are the VM's own accounting, computed faster and with
  fewer blind spots:

    * `flat_size/1` — words a full copy takes (a send, an ETS insert,
      `:sys.get_state/1`). Equals `:erts_debug.flat_size/1`, but a heavily
      shared term is sized in time linear in its distinct objects.
    * `shared_size/1` — words the term occupies here, each shared subterm once,
      module literals excluded. Equals `:erts_debug.size_shared/1` except that
      hashmap nodes are counted once (the BIF counts them twice).
    * `term_size/1` — both, plus literal words and the off-heap binaries the
      term keeps alive, each counted once and whole: a 10-byte sub-binary of a
      1 MB binary keeps 1 MB alive, and that is what it reports.

  Sizes are in words unless a key says bytes; a word is 8 bytes on 64-bit
  systems.

  A native walker (a Rust NIF) reads the term's words in place. It is used
  only when this OTP release's layout is known and a calibration set agrees
  with the VM's functions; otherwise MemProbe runs in fallback mode (see
  `info/0`). A call never holds a normal scheduler for more than about a
  millisecond: larger terms are walked on a dirty CPU scheduler.

  Functions that are not term sizes (process, ETS and allocator scans) live
  in the same module; all of them are thin wrappers of the Erlang module
  `:mem_probe`, which Erlang users call directly. Results are the Erlang
  side's terms as they are (the types below name them): a value that is not
  known or does not apply is `:undefined`, as in Erlang. A breakdown's run of
  list elements is `{:list, first..last}`: the Erlang side builds the range
  for the Elixir face (`list_runs: :ranges`), where Erlang callers get
  `{list, First, Last}`.
  """

  @typedoc "All sizes of one term, as returned by `term_size/1`."
  @type sizes :: :mem_probe_sizes.sizes()

  @typedoc "What `info/0` answers."
  @type info :: :mem_probe_sizes.info()

  @typedoc "A result per node, with `nodes:`: `%{node => result | {:error, reason}}`."
  @type per_node(result) :: :mem_probe.per_node(result)

  @doc """
  Words a full copy of `term` takes; equals `:erts_debug.flat_size/1`.

  Shared subterms count once per path, as a copy would expand them.

  ## Examples

      iex> MemProbe.flat_size([1, 2, 3])
      6
      iex> MemProbe.flat_size({:ok, "abc"})
      6
      iex> t = Enum.reduce(1..40, :leaf, fn _, t -> {t, t} end)
      iex> MemProbe.flat_size(t)
      3_298_534_883_325

  The last term has 120 words in memory; `:erts_debug.flat_size/1` would walk
  its 2^40 paths.
  """
  @spec flat_size(term()) :: non_neg_integer()
  def flat_size(term), do: :mem_probe.flat_size(term)

  @doc """
  Words of the distinct heap objects of `term`, each counted once, module
  literals excluded.

  Equals `:erts_debug.size_shared/1` except for hashmaps (maps of more than
  32 keys), whose nodes that BIF counts twice.

  ## Examples

      iex> list = Enum.to_list(1..3)
      iex> MemProbe.shared_size([list, list])
      10
      iex> MemProbe.flat_size([list, list])
      16
  """
  @spec shared_size(term()) :: non_neg_integer()
  def shared_size(term), do: :mem_probe.shared_size(term)

  @doc """
  All sizes of `term` from one walk.

    * `:flat_words` — as `flat_size/1`;
    * `:shared_words` — as `shared_size/1`;
    * `:literal_words` — distinct words in the literal area (module constants,
      `:persistent_term`); `shared_words + literal_words` equals
      `:erts_debug.size/1` (on OTP 27 it can be lower: `size/1` counts a shared
      BinRef or FunRef once per owner);
    * `:off_heap_binaries`, `:off_heap_bytes` — distinct off-heap binaries the
      term keeps alive and their allocated bytes, each counted once;
    * `:bytes` — `shared_words` in bytes plus `off_heap_bytes`: what the term
      holds now.

  In fallback mode the literal and off-heap fields are `:undefined`.

  ## Examples

      iex> big = :binary.copy("x", 1_000_000)
      iex> <<slice::binary-size(100), _::binary>> = big
      iex> size = MemProbe.term_size(slice)
      iex> {size.off_heap_binaries, size.off_heap_bytes, size.literal_words}
      {1, 1_000_000, 0}
      iex> size.bytes == size.shared_words * 8 + 1_000_000
      true

  The 100-byte slice keeps the whole megabyte alive.
  """
  @spec term_size(term()) :: sizes()
  def term_size(term), do: :mem_probe.term_size(term)

  @doc """
  What MemProbe is doing and why.

  `:mode` is `:native` when the walker reads terms in place, or `:fallback`
  when it is off, with `:reason` saying why (no library, an OTP release whose
  layout is unknown, a literal area that could not be found, a calibration
  mismatch, a layout error met by a walk (`{:layout_error, %{what: ...,
  address: ..., word: ..., walk: ..., at: ...}}`), or `config :mem_probe,
  mode: :fallback`) and `:inexact` listing what the fallback cannot give
  exactly. `:layout`, `:verified`, `:literal_method` and `:calibration_reads`
  say which layout table is in use, whether it was tested on a real VM of
  this release, how the literal area was found and how the calibration read
  memory. `:walk_errors` counts native walks that met an unexpected layout.

  ## Examples

      iex> info = MemProbe.info()
      iex> info.mode in [:native, :fallback]
      true
      iex> info.otp_release == List.to_string(:erlang.system_info(:otp_release))
      true
  """
  @spec info() :: info()
  def info, do: :mem_probe.info()

  @doc """
  Decides the mode again and returns the new `info/0`.

  After a walk met an unexpected layout the node runs in fallback mode;
  `recalibrate/0` runs the load-time calibration again and turns the walker
  back on if it agrees with the VM.

  ## Examples

      iex> MemProbe.recalibrate().mode == MemProbe.info().mode
      true
  """
  @spec recalibrate() :: info()
  def recalibrate, do: :mem_probe.recalibrate()

  # --- process scans (top_processes, count_processes, binary_leaks, process_memory, state_size) ---

  @typedoc """
  One process of `top_processes/3`. `value` is in bytes for `:memory`,
  `:total_heap_size`, `:heap_size`, `:stack_size` and `:binary_memory`, a
  count otherwise; `attr` repeats the attribute. With `window:` it is the
  change over the window, and `born`/`died` say whether the process started
  or exited inside it.
  """
  @type process_row :: :mem_probe_procs.process_row()

  @doc """
  The `n` processes with the largest `attr`, largest first.

  `attr` is one of `:memory`, `:message_queue_len`, `:reductions`,
  `:total_heap_size`, `:heap_size`, `:stack_size` (sizes in bytes, not the
  words `Process.info/2` gives), `:binary_memory` (bytes of the off-heap
  binaries the process references, each once), `:monitors`, `:monitored_by`
  or `:links` (ranked by how many).

  Each entry is `%{pid:, value:, attr:, name:, initial_call:, current_function:}`.
  `name` is the registered name or `:undefined`; `initial_call` is what proc_lib
  recorded for processes it started, so a GenServer shows `{MyServer, :init, 1}`
  rather than `{:proc_lib, :init_p, 5}`.

  The scan is built for nodes with a million processes: one `Process.info/2`
  item per process, read by a few short-lived workers that keep only their
  current top `n`; the other fields are read for the winners only. The caller
  receives the result and nothing else, so its heap does not grow. The
  calling process is ranked too; processes that exit during the scan are
  skipped.

  With `window: ms` the ranking is by the change over `ms` milliseconds. An
  entry has `born: true` when the process started inside the window (its
  whole value is change) and `died: true` when it exited inside it: for a
  level such as `:memory` its change is then minus what it held; for
  `:reductions`, whose count the VM forgets at exit, such a process is left
  out rather than reported with its lifetime total.

  Numbers that can mislead: `:memory` does not include the off-heap binaries a
  process keeps alive (see `binary_leaks/2`), and `:binary_memory` counts a
  binary shared by 50 processes 50 times, once in each.

  ## Examples

      iex> [top] = MemProbe.top_processes(:memory, 1)
      iex> is_pid(top.pid) and top.value > 0
      true
      iex> pid = spawn(fn -> receive do: (:stop -> :ok) end)
      iex> for _ <- 1..50_000, do: send(pid, :hello)
      iex> [%{pid: ^pid, value: 50_000}] = MemProbe.top_processes(:message_queue_len, 1)
      iex> Process.exit(pid, :kill)
      true
      iex> MemProbe.top_processes(:size, 3)
      ** (ArgumentError) top_processes/3: unknown attribute size; accepted: memory, message_queue_len, reductions, total_heap_size, heap_size, stack_size, binary_memory, monitors, monitored_by, links
  """
  @spec top_processes(atom(), non_neg_integer(), keyword() | map()) ::
          [process_row()] | per_node([process_row()])
  def top_processes(attr, n, opts \\ []) do
    :mem_probe.top_processes(attr, n, opts)
  end

  @typedoc "What `count_processes/3` answers."
  @type process_groups :: :mem_probe_procs.process_groups()

  @doc """
  All processes grouped by `by`, the `n` largest groups first: a process
  leak is a group that keeps growing.

  `by` is `:initial_call` (proc_lib's record for processes it started, so
  GenServers group by module), `:current_function`, or `:application` (from
  each process's group leader). Returns
  `%{groups: [%{key:, count:}], process_count:, process_limit:}`, where
  `process_count` is the number of processes grouped and `process_limit` the
  VM's limit. The VM does not record which fun a `spawn(fun)` process was
  started with: all such processes have the initial call `{:erlang, :apply, 2}`;
  group them by `:current_function` instead.

  ## Examples

      iex> %{groups: groups, process_count: count, process_limit: limit} =
      ...>   MemProbe.count_processes(:initial_call, 3)
      iex> length(groups) <= 3 and count <= limit
      true
      iex> %{groups: [%{key: key} | _]} = MemProbe.count_processes(:application)
      iex> is_atom(key)
      true
      iex> MemProbe.count_processes(:module)
      ** (ArgumentError) count_processes/2: unknown grouping module; accepted: initial_call, current_function, application
  """
  @spec count_processes(atom(), non_neg_integer(), keyword() | map()) ::
          process_groups() | per_node(process_groups())
  def count_processes(by, n \\ 10, opts \\ []) do
    :mem_probe.count_processes(by, n, opts)
  end

  @typedoc "One process of `binary_leaks/2`."
  @type binary_leak :: :mem_probe_binaries.binary_leak()

  @doc """
  The `n` processes that keep the most off-heap binary memory alive, with
  each binary counted once across the node.

  A binary over 64 bytes lives outside the process heaps with a reference
  count, and stays alive while anything references it, even through a
  10-byte slice. Summing per process (as `top_processes(:binary_memory, n)`
  does) counts a 10 MB binary held by 50 processes as 500 MB. Here each
  binary's size is split among its references, so the `bytes` of all
  processes add up to what the binaries really occupy; the ranking is by
  `bytes`. Each entry also has `raw_bytes` (the per-process sum),
  `exclusive_bytes` (binaries no one else references), `binaries` (distinct
  ones), `largest_binary_bytes` and `holders` (that binary's reference
  count: one per holding process, ETS object or queued message), plus `pid`,
  `name`, `initial_call` and `current_function`.

  The node is not garbage-collected. With `gc: true` the `n` winners, and
  only they, are collected one at a time, and `freed_bytes` says what that
  freed.

  ## Examples

      iex> big = :binary.copy("x", 50_000_000)
      iex> pid = spawn(fn -> receive do: (:stop -> byte_size(big)) end)
      iex> entry = Enum.find(MemProbe.binary_leaks(20), &(&1.pid == pid))
      iex> Process.exit(pid, :kill)
      true
      iex> {entry.bytes, entry.raw_bytes, entry.holders, byte_size(big)}
      {25_000_000, 50_000_000, 2, 50_000_000}

  The binary has two holders, this process and `pid`: each is charged half.
  """
  @spec binary_leaks(non_neg_integer(), keyword() | map()) ::
          [binary_leak()] | per_node([binary_leak()])
  def binary_leaks(n, opts \\ []) do
    :mem_probe.binary_leaks(n, opts)
  end

  @typedoc "One process's memory in bytes, as `process_memory/1` splits it."
  @type process_memory :: :mem_probe_procs.process_memory()

  @doc """
  One process's memory in bytes, split into its parts, from one reading.

  `{:ok, map}` with `memory` (what the VM charges to the process, as
  `Process.info(pid, :memory)`), `heap` (young and old heap blocks, free
  space included, stack excluded), `stack`, `mailbox` (queued messages:
  a header each, and their data while it is outside the heap blocks),
  `overhead_bytes` (the rest: process structure, links, monitors), so that
  `heap + stack + mailbox + overhead_bytes == memory`; plus
  `off_heap_bytes` and `off_heap_binaries` (the distinct refc binaries the
  process references, not part of `memory`), `message_queue_len` and
  `message_queue_data`. `{:error, :noproc}` if the process is not alive.

  With the default `:on_heap` message queue, a message's data moves into the
  heap at the process's next garbage collection; from then on it is counted
  in `heap`.

  ## Examples

      iex> {:ok, mem} = MemProbe.process_memory(self())
      iex> mem.heap + mem.stack + mem.mailbox + mem.overhead_bytes == mem.memory
      true
      iex> pid = spawn(fn -> :ok end)
      iex> ref = Process.monitor(pid)
      iex> receive do: ({:DOWN, ^ref, _, _, _} -> MemProbe.process_memory(pid))
      {:error, :noproc}
      iex> MemProbe.process_memory(:not_a_pid)
      ** (ArgumentError) process_memory/1: expected a pid, got not_a_pid; accepted: a pid
  """
  @spec process_memory(pid()) :: {:ok, process_memory()} | {:error, :noproc}
  def process_memory(pid) do
    :mem_probe.process_memory(pid)
  end

  @doc """
  The sizes of a GenServer's (or any sys process's) state, measured inside
  the process.

  `:sys.get_state/1` copies the state to the caller, and a copy is flat: a
  subterm the state shares a thousand times is copied a thousand times, and
  module literals are copied as if they were on the heap. `state_size/2`
  instead runs `term_size/1` in the target (through the `replace_state`
  system message, leaving the state unchanged) and only the sizes travel.
  Returns `{:ok, sizes}` (see `term_size/1`) or `{:error, reason}`:
  `:noproc`, `:not_a_sys_process` (not started by proc_lib; nothing is sent),
  `:timeout` (busy or stuck; option `timeout:`, default 5000 ms; a late
  answer is dropped) or `:calling_process`. Never a hang or a crash of either
  side.

  ## Examples

      iex> {:ok, agent} = Agent.start_link(fn -> Enum.to_list(1..100) end)
      iex> {:ok, sizes} = MemProbe.state_size(agent)
      iex> {sizes.flat_words, sizes.shared_words}
      {200, 200}
      iex> Agent.update(agent, fn list -> {list, list} end)
      :ok
      iex> {:ok, sizes} = MemProbe.state_size(agent)
      iex> {sizes.flat_words, sizes.shared_words}
      {403, 203}
      iex> MemProbe.state_size(spawn(fn -> Process.sleep(100) end))
      {:error, :not_a_sys_process}

  The list is in the state twice but in memory once: 203 words, where a copy
  (`flat_words`, what `:sys.get_state/1` would build) takes 403.
  """
  @spec state_size(pid(), keyword() | map()) :: {:ok, sizes()} | {:error, term()}
  def state_size(pid, opts \\ []) do
    :mem_probe.state_size(pid, opts)
  end

  # --- end of process scans ---

  # --- ETS, system and allocator scans, print ---

  @typedoc "One table in `top_tables/2`. Sizes are bytes."
  @type table_row :: :mem_probe_ets.entry()

  @typedoc "What `table_size/1` answers for a table."
  @type table_size :: :mem_probe_ets.table_size()

  @doc """
  The `n` ETS tables holding the most memory, largest first.

  Each entry has `:table` (the name of a named table, else its identifier),
  `:name`, `:owner`, `:owner_name`, `:memory_bytes` (`:ets.info(t, :memory)`
  converted from words to bytes), `:size` (objects), `:type`, `:protection`
  and `:off_heap_bytes`.

  `:ets.info(t, :memory)` leaves out the refc binaries (over 64 bytes) the
  objects point to: a table of 100 binaries of 1 MB reports 12.5 KiB while it
  keeps 100 MB alive, and a ranking by it (observer, observer_cli,
  LiveDashboard) never shows that table. With `binaries: true` the objects of
  every public or protected table are walked in bounded chunks in a fresh
  helper process per table, each binary is counted once per table and whole
  (a 100-byte slice pins its whole parent), and tables are ranked by
  `memory_bytes + off_heap_bytes`. Without it `:off_heap_bytes` is `:undefined`.
  Private tables cannot be read by the helper (even when the caller owns
  them): they show what `:ets.info/1` shows, with `:off_heap_bytes` `:undefined`.

  Without `binaries: true` the scan reads one item per table and fetches the
  other fields for the winners only; with it, the cost is that of copying
  every object once (like `:ets.tab2list/1`), spread over chunks of about
  64k words, none of which reach the caller's heap. Tables deleted during
  the scan are skipped.

  Options: `binaries: boolean()` (default `false`).

  ## Examples

      iex> t = :ets.new(:doc_blobs, [:public])
      iex> for i <- 1..10, do: :ets.insert(t, {i, :binary.copy("x", 100_000)})
      iex> entry = Enum.find(MemProbe.top_tables(1_000, binaries: true), &(&1.table == t))
      iex> entry.off_heap_bytes
      1_000_000
      iex> entry.memory_bytes < 10_000
      true
      iex> MemProbe.top_tables(-1)
      ** (ArgumentError) top_tables/2: n must be a non-negative integer, got -1; accepted: 0, 1, 2, ...
  """
  @spec top_tables(non_neg_integer(), keyword() | map()) ::
          [table_row()] | per_node([table_row()])
  def top_tables(n, opts \\ []) do
    :mem_probe.top_tables(n, opts)
  end

  @doc """
  Every number for one table, given its name (for a named table) or its
  identifier.

  Returns `{:ok, map}` with the fields of `top_tables/2` (`:size` is the
  number of objects) and:

    * `:objects_bytes` — what a copy of all objects takes (the sum of their
      flat sizes: what `:ets.tab2list/1` would copy), sized by the term-size
      walker;
    * `:off_heap_binaries`, `:off_heap_bytes` — the distinct refc binaries the
      objects keep alive and their bytes, each binary counted once however
      many objects refer to it;
    * `:total_bytes` — `memory_bytes + off_heap_bytes`: what the table holds;
    * `:compressed`, `:readable` — a private table cannot be read by another
      process; then `readable` is `false` and the walked fields are `:undefined`.

  `{:error, :deleted}` if the table is gone: deleted during the walk, or
  before the call when `table` is a table identifier (only a table that
  existed has one, so this is a result, as a dead pid is). A name no table
  has, a reference that never was a table, or anything that is not an atom
  or a reference, raises `ArgumentError`.

  ## Examples

      iex> t = :ets.new(:doc_slices, [:public])
      iex> big = :binary.copy("x", 1_000_000)
      iex> for i <- 1..1_000, do: :ets.insert(t, {i, binary_part(big, i, 100)})
      iex> {:ok, s} = MemProbe.table_size(t)
      iex> {s.size, s.off_heap_binaries, s.off_heap_bytes, s.readable}
      {1000, 1, 1_000_000, true}
      iex> s.total_bytes == s.memory_bytes + s.off_heap_bytes
      true

  A thousand 100-byte slices keep one megabyte alive, counted once. (A slice
  of 64 bytes or less is copied into the table as a small binary of its
  own, and pins nothing.)
  """
  @spec table_size(atom() | :ets.tid()) :: {:ok, table_size()} | {:error, :deleted}
  def table_size(table) do
    :mem_probe.table_size(table)
  end

  @typedoc "One category of `memory/0`."
  @type memory_category :: :mem_probe_system.memory_category()

  @typedoc "What `memory/1` answers."
  @type memory :: :mem_probe_system.memory()

  @doc """
  `:erlang.memory/0` in bytes, from one call, with each category's share of
  the total.

  Returns `%{total_bytes: bytes, categories: [memory_category]}`. The
  categories overlap, and `:part_of` says how: `processes` and `system` make
  up the total; `atom`, `binary`, `code`, `ets` and `other_system` (computed
  here: the rest of `system`) make up `system`; `processes_used` is part of
  `processes` and `atom_used` of `atom`.

  These are blocks the VM has handed out. The operating system sees the
  carriers they are carved from, which can be much larger after a peak:
  see `allocators/0`. ETS memory excludes the binaries tables refer to; they
  are in `binary`.

  ## Examples

      iex> m = MemProbe.memory()
      iex> Enum.sum(for %{part_of: :total, bytes: b} <- m.categories, do: b) == m.total_bytes
      true
      iex> Enum.find(m.categories, &(&1.category == :binary)).part_of
      :system
  """
  @spec memory(keyword() | map()) :: memory() | per_node(memory())
  def memory(opts \\ []) do
    :mem_probe.memory(opts)
  end

  @typedoc "What `allocators/1` answers; one `:mem_probe_system.allocator_row()` per type."
  @type allocators :: :mem_probe_system.allocators()

  @doc """
  Allocator memory per allocator type, in bytes, from one snapshot per type.

  Each entry of `:allocators` (largest `:carriers_bytes` first) sums one
  allocator type (`:binary_alloc`, `:eheap_alloc`, `:ets_alloc`, ...) over its
  instances and over multi-block, single-block and pooled carriers:

    * `:blocks`, `:blocks_bytes` — memory handed out (what `memory/0` counts);
    * `:carriers`, `:carriers_bytes` — memory reserved from the OS;
    * `:usage` — `blocks_bytes / carriers_bytes`; a low value means
      fragmented carriers the OS cannot get back;
    * `:mbcs_usage` — the same for multi-block carriers alone, where
      fragmentation happens;
    * `:sbcs_carriers_bytes`, `:pool_carriers_bytes`, `:instances`.

  The top level has the sums and `:usage` over all types, `:mseg_cache` (the
  mseg_alloc carrier cache per instance: `:hits`, `:calls`, `:hit_rate`,
  `:cached_segments`, `:segments_bytes`) and `:mseg_cache_hit_rate`.

  Blocks and carriers come from the same reply of
  `:erlang.system_info({:allocator, type})`, so `usage` never exceeds 1
  (tools that read blocks and carriers in two calls can report more); only
  current values are summed, never the maxima the VM reports beside them.

  ## Examples

      iex> a = MemProbe.allocators()
      iex> Enum.all?(a.allocators, &(&1.usage == :undefined or (&1.usage >= 0 and &1.usage <= 1)))
      true
      iex> a.blocks_bytes <= a.carriers_bytes
      true
  """
  @spec allocators(keyword() | map()) :: allocators() | per_node(allocators())
  def allocators(opts \\ []) do
    :mem_probe.allocators(opts)
  end

  @doc """
  Prints any MemProbe result as an aligned table, with human units, and
  returns `:ok`.

  A list of maps prints as a table (one column per key); a map as key/value
  lines followed by a sub-table for each value that is a list of maps (such
  as `:categories`, `:allocators` or `:groups`); `{:ok, x}` as `x`. Keys
  ending in `bytes` or `memory` print in B/KiB/MiB/GiB, ratios (`share`,
  `usage`, `*_rate`) as percentages, `{m, f, a}` as `M.f/a`, `:undefined`
  (and `nil`) as `-`.

  Options: `bytes: [key]` marks more keys as bytes (for instance
  `bytes: [:value]`; a row or map whose `:attr` is a size attribute such as
  `:memory` marks `:value` by itself), `raw: true` prints plain integers.

      MemProbe.top_tables(5, binaries: true) |> MemProbe.print()
      MemProbe.allocators() |> MemProbe.print()

  See `format/2` for the text itself.

  ## Examples

      iex> output =
      ...>   ExUnit.CaptureIO.capture_io(fn ->
      ...>     :ok = MemProbe.print([%{name: :cache, memory_bytes: 2048, size: 10}])
      ...>   end)
      iex> String.split(output, "\\n", trim: true)
      ["name   memory_bytes  size", "-----  ------------  ----", "cache       2.0 KiB    10"]
  """
  @spec print(term(), keyword() | map()) :: :ok
  def print(result, opts \\ []) do
    :mem_probe.print(result, elixir_style(opts))
  end

  @doc """
  The text `print/2` prints, as a string (no final newline).

  ## Examples

      iex> [%{name: :cache, memory_bytes: 13_107_200, size: 1_200},
      ...>  %{name: :sessions, memory_bytes: 512, size: 3, owner_name: :undefined}]
      ...> |> MemProbe.format()
      ...> |> String.split("\\n")
      ["name      owner_name  memory_bytes   size",
       "--------  ----------  ------------  -----",
       "cache                     12.5 MiB  1,200",
       "sessions  -                  512 B      3"]
      iex> MemProbe.format({:ok, %{pid: self(), initial_call: {MyApp.Worker, :init, 1}}}) =~
      ...>   "MyApp.Worker.init/1"
      true
  """
  @spec format(term(), keyword()) :: String.t()
  def format(result, opts \\ []) do
    :mem_probe.format(result, elixir_style(opts))
    |> IO.chardata_to_string()
  end

  defp elixir_style(opts) when is_list(opts), do: Keyword.put_new(opts, :style, :elixir)
  defp elixir_style(opts) when is_map(opts), do: Map.put_new(opts, :style, :elixir)
  defp elixir_style(opts), do: opts

  # --- end of ETS, system and allocator scans ---

  # --- leak hunting over time ---

  @typedoc "What `snapshot/1` records (a map; its fields are for `diff/3`)."
  @type snapshot :: :mem_probe_snapshot.snapshot()

  @typedoc "What `diff/3` answers for one node."
  @type diff :: :mem_probe_snapshot.diff()

  @doc """
  Records what a later `diff/3` needs: `:erlang.memory/0`, per process
  (memory, message queue, off-heap binary bytes, reductions), per ETS table
  (memory, size), process, port and atom counts against their limits, and
  when it was taken.

  Compact: a 4-tuple of integers per process, about 70 bytes each (measured
  for a million processes, see the README). Options: `binaries: false` skips the
  per-process binary lists (cheaper on large nodes); `nodes: :all | [node]`
  takes one snapshot per node and returns `%{node => snapshot}`.

  ## Examples

      iex> snapshot = MemProbe.snapshot()
      iex> snapshot.node == node()
      true
      iex> {memory, _queue, _binary_bytes, _reductions} = snapshot.processes[self()]
      iex> memory > 0
      true
  """
  @spec snapshot(keyword() | map()) :: snapshot() | per_node(snapshot())
  def snapshot(opts \\ []), do: :mem_probe.snapshot(opts)

  @doc """
  What grew most between two snapshots of the same node, largest growth
  first, `n` entries per list.

  Returns `%{processes: [...], tables: [...], memory: [...], born: ..., gone: ...}`
  (plus `counts` and `interval_ms`). Each growth entry carries its identity
  (`pid` and `name`, `table` and `name`, or `category`), `change` in bytes and
  `rate` in bytes per second. Processes and tables born or gone in between are
  listed apart (`born`, `gone`), never as growth. Two `%{node => snapshot}`
  maps (from `snapshot(nodes: ...)`) are diffed node by node.

  ## Examples

      iex> older = MemProbe.snapshot(binaries: false)
      iex> pid = spawn(fn -> receive do: (:stop -> :ok) end)
      iex> newer = MemProbe.snapshot(binaries: false)
      iex> diff = MemProbe.diff(older, newer, 3)
      iex> Enum.any?(diff.born.processes, &(&1.pid == pid))
      true
      iex> MemProbe.diff(older, :yesterday)
      ** (ArgumentError) diff/3: the newer argument is not a snapshot: yesterday; accepted: maps returned by mem_probe:snapshot/1
  """
  @spec diff(map(), map(), non_neg_integer()) :: diff() | per_node(diff())
  def diff(older, newer, n \\ 10) do
    :mem_probe.diff(older, newer, n)
  end

  @typedoc "What `check/1` answers: the report, or the limits broken."
  @type check_result ::
          {:ok, :mem_probe_check.check_report()} | {:error, [:mem_probe_check.violation()]}

  @doc """
  A health check: `{:ok, report}` or `{:error, violations}`.

  Built for an HTTP health endpoint called every few seconds: it never raises
  because a process or table vanished, reads only what the given limits need,
  and stops at its time budget (`budget_ms`, default 100) with
  `complete: false` in the report rather than answering late.

  Limits (keyword list or map): `max_total_bytes`, `max_category_bytes` (a
  map of `:erlang.memory/0` category to bytes), `max_process_ratio` and
  `max_atom_ratio` (count over the VM's limit), `max_message_queue_len`,
  `max_process_bytes`, `max_table_bytes`, `budget_ms`. Each violation names
  the `limit`, its `max`, the measured `value` and the `culprit` (pid and
  name, table, or category), with the number of `offenders`.

  ## Examples

      iex> {:ok, report} = MemProbe.check(max_process_ratio: 0.9)
      iex> report.complete
      true
      iex> {:error, [violation]} = MemProbe.check(max_total_bytes: 1)
      iex> violation.limit
      :max_total_bytes
      iex> MemProbe.check(max_bytes: 1)
      ** (ArgumentError) check/1: unknown option max_bytes; accepted: max_total_bytes, max_category_bytes, max_process_ratio, max_atom_ratio, max_message_queue_len, max_process_bytes, max_table_bytes, budget_ms
  """
  @spec check(keyword() | map()) :: check_result() | per_node(check_result())
  def check(limits), do: :mem_probe.check(limits)

  @doc """
  Prints the one screen an operator reads first and returns `:ok`: findings
  worth a look, memory by category, top processes by memory and by mailbox,
  top tables with the binaries they hold, binary leaks, allocator usage, and
  process, port and atom counts against their limits.

  When a leak watcher runs (`MemProbe.Watcher`, under its default name), the
  screen adds its findings — sustained growth with forecasts — after the
  findings worth a look.

  Options: `n` (entries per list, default 5), `binaries: false` (do not walk
  tables for their binaries), `previous: snapshot` (to say what grew),
  `watcher: pid_or_name` (another watcher), `nodes:`. `:mem_probe.report/1`
  returns the same as a map (the watcher's findings under `:watcher`).

  ## Examples

      iex> screen = ExUnit.CaptureIO.capture_io(fn -> :ok = MemProbe.report(n: 2) end)
      iex> screen =~ "Findings worth a look" and screen =~ "Top processes by memory"
      true
      iex> :mem_probe.report(n: 1).top_memory |> length()
      1
  """
  @spec report(keyword() | map()) :: :ok
  def report(opts \\ []) do
    :mem_probe.report(opts) |> print()
  end

  # --- end of leak hunting over time ---

  # --- where in a term the bytes are ---

  @typedoc """
  One step of a breakdown path (indices are 0-based): a tuple element, a map
  key (`{:key_text, text}` for a large key sent out of a measured process), a
  run of list elements as a range, a fun's free variable.
  """
  @type step ::
          {:elem, non_neg_integer()}
          | {:key, term()}
          | {:key_text, String.t()}
          | {:list, Range.t()}
          | {:env, non_neg_integer()}

  @typedoc "What `breakdown/2` and `state_breakdown/2` answer inside `{:ok, _}`."
  @type breakdown :: :mem_probe_breakdown.breakdown()

  @typedoc "What `diff_breakdown/2` answers."
  @type breakdown_diff :: :mem_probe_breakdown.breakdown_diff()

  @doc """
  An exact breakdown of `term` by retained size: which parts of it hold the
  bytes.

  Every heap object and every distinct off-heap binary is charged once, to
  its *dominator*, the deepest position every path from the root to it
  passes through: a subterm reachable from two fields is charged to their
  common parent, never to whichever field was walked first. For a child no
  other part shares, its row's `:bytes` equal `term_size(child).bytes`; the
  whole term's (`total.bytes`) equal `term_size(term).bytes`. Module literals
  are counted apart (`total.literal_words`), not charged.

  Returns `{:ok, %{name: ..., total: ..., rows: [...]}}`. Each row is a
  position: `:path` (steps `{:elem, i}`, `{:key, key}`, `{:list, first..last}`
  for a run of list elements, `{:env, i}` for a fun's free variables),
  `:label` (the path as text, `term.sessions[0..9999]`), `:bytes`,
  `:shared_words`, `:off_heap_bytes` (binaries it keeps alive; a sub-binary
  keeps its whole parent), `:share` of the total, `:count` (objects) and
  `:kind` (`:map`, `:list`, `:tuple`, `:binary`, `:fun`, ...).

  A position is a row when it retains at least `min_share` of the total and
  no single child of it retains more than half of what it does: wrappers (a
  state tuple around a map, a list around its one run of elements) are not
  rows, their heavy part is. The root is never a row; rows may nest.

  Options: `min_share:` (default 0.01), `n:` rows (default 20), `depth:` steps
  (default 32), `records:` (`[state: [:sessions, :count]]` or
  `Record.extract/2` output: tuples tagged `:state` show field names), `name:`
  (the root's label, default `"term"`), `key_format:` (how non-atom keys
  print; default `inspect/1`), `max_objects:` (default 10,000,000; the walk
  keeps up to about 32 bytes per object, and a larger term answers
  `{:error, :too_many_objects}`), `list_runs:` (`:ranges`, the default here:
  `{:list, first..last}`; `:pairs`: `{:list, first, last}`, as Erlang callers
  get). Struct and other atom keys print as fields. Without the native walker: `{:error, :native_walker_unavailable}`.

  ## Examples

      iex> term = %{config: %{retries: 3}, sessions: Enum.map(1..1000, &{:session, &1})}
      iex> {:ok, breakdown} = MemProbe.breakdown(term)
      iex> breakdown.total.bytes == MemProbe.term_size(term).bytes
      true
      iex> [row] = breakdown.rows
      iex> {row.label, row.path, row.kind, row.bytes}
      {"term.sessions[0..999]", [key: :sessions, list: 0..999], :list, 40_000}
      iex> MemProbe.breakdown(term, n: 0)
      ** (ArgumentError) breakdown/2: bad value 0 for option n; accepted: min_share, n, depth, records, name, key_format, max_objects, list_runs
  """
  @spec breakdown(term(), keyword() | map()) :: {:ok, breakdown()} | {:error, term()}
  def breakdown(term, opts \\ []), do: :mem_probe.breakdown(term, breakdown_opts(opts))

  @doc """
  `breakdown/2` of a GenServer's (or any sys process's) state, run inside the
  process as `state_size/2` is: sharing, literals and sub-binaries are
  measured as they are, and only the rows travel back. The root's label is
  `"state"`. Options: those of `breakdown/2` and `timeout:` (ms, default
  5000). Errors as `state_size/2`: `{:error, :noproc}`,
  `{:error, :not_a_sys_process}`, `{:error, :timeout}`,
  `{:error, :calling_process}`.

  ## Examples

      iex> {:ok, agent} = Agent.start_link(fn -> %{log: Enum.to_list(1..5000), n: 1} end)
      iex> {:ok, breakdown} = MemProbe.state_breakdown(agent)
      iex> hd(breakdown.rows).label
      "state.log[0..4999]"
      iex> MemProbe.state_breakdown(spawn(fn -> Process.sleep(100) end))
      {:error, :not_a_sys_process}
  """
  @spec state_breakdown(pid(), keyword() | map()) :: {:ok, breakdown()} | {:error, term()}
  def state_breakdown(pid, opts \\ []),
    do: :mem_probe.state_breakdown(pid, breakdown_opts(opts))

  @doc """
  Which paths grew between two breakdowns of the same term or process
  (`breakdown/2` or `state_breakdown/2` results): `%{total: %{older_bytes,
  newer_bytes, growth_bytes}, rows: [...]}`, rows with `:growth_bytes`,
  `:older_bytes`, `:bytes`, `:share` (of the newer total) and
  `:growth_share`, largest growth first. A list run that grew past its old
  end (`[0..9999]` to `[0..19999]`) is compared with the old run.

  ## Examples

      iex> {:ok, older} = MemProbe.breakdown(%{log: Enum.to_list(1..1000), n: 1})
      iex> {:ok, newer} = MemProbe.breakdown(%{log: Enum.to_list(1..3000), n: 1})
      iex> [grew] = MemProbe.diff_breakdown(older, newer).rows
      iex> {grew.label, grew.growth_bytes}
      {"term.log[0..2999]", 32_000}
  """
  @spec diff_breakdown(breakdown() | {:ok, breakdown()}, breakdown() | {:ok, breakdown()}) ::
          breakdown_diff()
  def diff_breakdown(older, newer), do: :mem_probe.diff_breakdown(older, newer)

  # Keys printed as Elixir prints them, list runs as ranges: the Erlang side
  # builds the result in this style, so nothing is rebuilt here.
  defp breakdown_opts([]), do: [key_format: &inspect/1, list_runs: :ranges]

  defp breakdown_opts(opts) when is_list(opts) do
    if Keyword.keyword?(opts),
      do: opts |> Keyword.put_new(:key_format, &inspect/1) |> Keyword.put_new(:list_runs, :ranges),
      else: opts
  end

  defp breakdown_opts(opts) when is_map(opts),
    do: opts |> Map.put_new(:key_format, &inspect/1) |> Map.put_new(:list_runs, :ranges)

  defp breakdown_opts(opts), do: opts

  # --- end of where in a term the bytes are ---

  # --- live top ---

  @doc """
  A live top: a refreshing full-screen view of where this node's memory
  goes, until `q`. Returns `:ok` (or `{:error, reason}` when the measured
  node went down).

  The screen has a header (node, uptime, memory by category, process, port
  and atom counts against their limits, run queue), a findings line (the
  rules of `report/1`), the frame's own cost, and one table at a time.
  Keys: `m` memory, `u` mailbox, `r` reductions per interval, `b` off-heap
  binaries (each binary counted once across the node), `g` growth in
  bytes/s, `e` ETS tables with their binaries, `a` allocators, `+`/`-`
  the interval, `1`..`9` that row's process in detail (`process_memory/1`,
  `state_size/1`), `q` quit. In iex a key acts at once; where the terminal
  only delivers lines, type the key and Enter.

  Options: `interval:` ms between frames (default 2000, 250..60000),
  `sort:` the first table (`:memory`, `:mailbox`, `:reductions`,
  `:binaries`, `:growth`, `:ets`, `:allocators`), `node:` another node to
  measure (MemProbe need not be installed there: a small collector module
  is loaded for the session and purged afterwards), `once: true` (print
  one frame as text and return), `rows:` (rows printed by `once`),
  `input: :line` (always key then Enter).

      MemProbe.top()
      MemProbe.top(sort: :mailbox, interval: 1000)
      MemProbe.top(once: true, sort: :ets, rows: 5)

  ## Examples

      iex> frame = ExUnit.CaptureIO.capture_io(fn -> :ok = MemProbe.top(once: true, rows: 3) end)
      iex> frame =~ "MemProbe top" and frame =~ "findings:"
      true
      iex> MemProbe.top(sort: :cpu)
      ** (ArgumentError) top/1: bad value cpu for option sort; accepted: interval, sort, node, once, rows, style, input, terminal
  """
  @spec top(keyword() | map()) :: :ok | {:error, term()}
  def top(opts \\ []) do
    :mem_probe.top(elixir_style(opts))
  end

  # --- end of live top ---
end
