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
  `:mem_probe`, which Erlang users call directly.
  """

  @typedoc "All sizes of one term, as returned by `term_size/1`."
  @type sizes :: %{
          flat_words: non_neg_integer(),
          shared_words: non_neg_integer(),
          literal_words: non_neg_integer() | nil,
          off_heap_binaries: non_neg_integer() | nil,
          off_heap_bytes: non_neg_integer() | nil,
          bytes: non_neg_integer()
        }

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
      `:erts_debug.size/1`;
    * `:off_heap_binaries`, `:off_heap_bytes` — distinct off-heap binaries the
      term keeps alive and their allocated bytes, each counted once;
    * `:bytes` — `shared_words` in bytes plus `off_heap_bytes`: what the term
      holds now.

  In fallback mode the literal and off-heap fields are `nil`.

  ## Examples

      iex> big = :binary.copy("x", 1_000_000)
      iex> <<slice::binary-size(100), _::binary>> = big
      iex> MemProbe.term_size(slice)
      %{flat_words: 6, shared_words: 6, literal_words: 0, off_heap_binaries: 1,
        off_heap_bytes: 1_000_000, bytes: 1_000_048}

  The 100-byte slice keeps the whole megabyte alive.
  """
  @spec term_size(term()) :: sizes()
  def term_size(term) do
    :mem_probe.term_size(term)
    |> Map.new(fn {key, :undefined} -> {key, nil}; pair -> pair end)
  end

  @doc """
  What MemProbe is doing and why.

  `:mode` is `:native` when the walker reads terms in place, or `:fallback`
  when it is off, with `:reason` saying why (no library, an OTP release whose
  layout is unknown, a calibration mismatch, or `config :mem_probe, mode:
  :fallback`) and `:inexact` listing what the fallback cannot give exactly.
  `:walk_errors` counts native walks that met an unexpected layout and were
  answered through the fallback.

  ## Examples

      iex> info = MemProbe.info()
      iex> info.mode in [:native, :fallback]
      true
      iex> info.otp_release == List.to_string(:erlang.system_info(:otp_release))
      true
  """
  @spec info() :: map()
  def info, do: :mem_probe.info()

  # --- process scans (top_processes, count_processes, binary_leaks, process_memory, state_size) ---

  # --- end of process scans ---

  # --- ETS, system and allocator scans, print ---

  # --- end of ETS, system and allocator scans ---

  # Erlang raises {:badarg, message} for misuse (see :mem_probe_args);
  # Elixir users get an ArgumentError with the same message.
  @doc false
  def translate_badarg(fun) do
    fun.()
  catch
    :error, {:badarg, message} when is_binary(message) ->
      reraise ArgumentError, [message: message], __STACKTRACE__
  end
end
