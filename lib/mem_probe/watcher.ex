defmodule MemProbe.Watcher do
  @moduledoc """
  A continuous leak watcher: it samples the node's memory by itself, finds
  sustained growth per process, ETS table and memory category, forecasts
  when the node reaches its memory limit, and tells.

  Not started unless asked. In a supervision tree:

      children = [{MemProbe.Watcher, interval: 10_000}]

  Every `:interval` it samples `:erlang.memory/0` (the total and each
  category), every ETS table's memory and size, and the memory of the
  processes that matter — the current top `:top` by memory (one
  `MemProbe.top_processes/3` scan per tick) plus every process it already
  follows — into rings of `:window` samples. A series is *growing* when its
  floor (the minimum of each sub-window of `:floor_ms`, so a GC sawtooth or a
  mailbox that fills and drains leaves no trace) rises significantly
  (Theil–Sen slope, Mann–Kendall test at `:significance`), over at least
  `:min_span`, in both halves of the window, at `:min_bytes_per_s` or more
  and by `:min_growth` of where it started. A finding clears with hysteresis
  when the floor stops rising, or at once when its process exits or its table
  is deleted. A restarted process (new pid, same registered name, or the
  initial call of a followed process that exited) keeps its series.

  For each new finding it sets the OTP alarm `{{:mem_probe_leak, id},
  finding}` through `:alarm_handler` (starting `:sasl` if it does not run;
  `alarms: false` to avoid), logs one warning (at most 5 a minute), emits the
  `:telemetry` event `[:mem_probe, :watcher, :finding]` when `:telemetry` is
  loaded, and calls `on_finding` (in the watcher: keep it short). It never
  takes `:erlang.system_monitor/2`.

  Options (times in milliseconds): `:name` (default `:mem_probe_watcher`,
  which `MemProbe.report/1` looks for; `nil` for none), `:interval` (10_000),
  `:window` (60 samples), `:top` (20), `:floor_ms` (6 intervals),
  `:min_span` (half the window), `:min_bytes_per_s` (1024), `:min_growth`
  (0.1), `:significance` (0.0001), `:limit_bytes` (default: the cgroup's
  memory limit, else the machine's memory), `:max_processes` (4 × `:top`),
  `:max_tables` (1000), `:alarms` (true), `:log` (true), `:on_finding` (a
  function of one finding). See `:mem_probe_watcher` for the details.

  ## Examples

      iex> {:ok, w} = MemProbe.Watcher.start_link(name: nil, interval: 60_000, alarms: false)
      iex> MemProbe.Watcher.findings(w)
      []
      iex> info = MemProbe.Watcher.info(w)
      iex> {info.ticks, info.series.total, info.series.process > 0}
      {1, 1, true}
      iex> MemProbe.Watcher.stop(w)
      :ok
      iex> MemProbe.Watcher.start_link(interval: 0)
      ** (ArgumentError) mem_probe_watcher:start_link/1: bad value 0 for option interval; accepted: name, interval, window, top, floor_ms, min_span, min_bytes_per_s, min_growth, significance, limit_bytes, max_processes, max_tables, alarms, log, on_finding
  """

  @typedoc """
  One finding. `id` is the pid, the table (its name for a named table), the
  `:erlang.memory/0` category, or `:total`; `name` a process's registered
  name (else its initial call) or a table's name; `bytes` what it holds now;
  `rate` its growth in bytes/s (the floor's slope); `since` when the growth
  began as first seen (`System.system_time(:millisecond)`); `forecast_ms` the
  time until the node reaches its limit if this growth goes on (`:undefined`
  when no limit is known); `confidence` of the trend test, 0.0..1.0.
  """
  @type finding :: :mem_probe_watcher.finding()

  @type watcher :: pid() | atom()

  @doc """
  Starts a watcher linked to the caller; options in the module doc. It takes
  its first sample before it answers.

  ## Examples

      iex> {:ok, w} = MemProbe.Watcher.start_link(name: nil, interval: 60_000, alarms: false)
      iex> MemProbe.Watcher.info(w).ticks
      1
      iex> MemProbe.Watcher.stop(w)
      :ok
  """
  @spec start_link(keyword() | map()) :: GenServer.on_start()
  def start_link(opts \\ []) do
    :mem_probe_watcher.start_link(erlang_opts(opts))
  end

  @doc """
  A child spec for a supervision tree, as `{MemProbe.Watcher, opts}` uses:
  a worker with the id `MemProbe.Watcher` (or `opts[:id]`).

  ## Examples

      iex> spec = MemProbe.Watcher.child_spec(interval: 5_000)
      iex> {spec.id, spec.start}
      {MemProbe.Watcher, {MemProbe.Watcher, :start_link, [[interval: 5_000]]}}
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    {id, opts} = Keyword.pop(opts, :id, __MODULE__)
    %{id: id, start: {__MODULE__, :start_link, [opts]}, type: :worker, shutdown: 5_000}
  end

  @doc """
  The current findings, most urgent first (the shortest forecast, then the
  highest confidence). See `t:finding/0`.

  ## Examples

      iex> {:ok, w} = MemProbe.Watcher.start_link(name: nil, interval: 60_000, alarms: false)
      iex> MemProbe.Watcher.findings(w)
      []
      iex> MemProbe.Watcher.stop(w)
      :ok
  """
  @spec findings(watcher()) :: [finding()]
  def findings(watcher \\ :mem_probe_watcher) do
    :mem_probe_watcher.findings(watcher)
  end

  @doc """
  What the watcher does and costs: `ticks`, `series` by kind, `samples` held,
  its own `memory_bytes`, `last_tick_us` and `max_tick_us`, `limit_bytes`
  and `limit_source` (`:limit_bytes`, `:cgroup` or `:machine`), the total's
  `total_rate` and `forecast_ms`, each finding's `shares` of the total's
  growth, `alarms`, counters (`found`, `cleared`, `callback_errors`) and the
  `options` in force.

  ## Examples

      iex> {:ok, w} = MemProbe.Watcher.start_link(name: nil, interval: 60_000, alarms: false)
      iex> info = MemProbe.Watcher.info(w)
      iex> {info.ticks, info.options.interval, info.memory_bytes > 0}
      {1, 60_000, true}
      iex> MemProbe.Watcher.stop(w)
      :ok
  """
  @spec info(watcher()) :: :mem_probe_watcher.info()
  def info(watcher \\ :mem_probe_watcher) do
    :mem_probe_watcher.info(watcher)
  end

  @doc """
  The series the watcher keeps for `id` (a pid, a table, a category,
  `:total`), to see why it is or is not a finding: `kind`, `id`, `name`,
  `samples` (`[{system_time_ms, bytes}]`, oldest first) and `assessment`
  (the trend test now: `growing`, `rate`, `z`, `confidence`, `floors`,
  `span`, `start`); `:undefined` when it is not followed.

  ## Examples

      iex> {:ok, w} = MemProbe.Watcher.start_link(name: nil, interval: 60_000, alarms: false)
      iex> %{kind: :total, samples: [{_time, bytes}]} = MemProbe.Watcher.series(w, :total)
      iex> bytes > 0
      true
      iex> MemProbe.Watcher.series(w, :no_such_series)
      :undefined
      iex> MemProbe.Watcher.stop(w)
      :ok
  """
  @spec series(watcher(), term()) :: :mem_probe_watcher.series() | :undefined
  def series(watcher \\ :mem_probe_watcher, id) do
    :mem_probe_watcher.series(watcher, id)
  end

  @doc """
  Takes one sample now, besides the timer's, and returns the findings.

  ## Examples

      iex> {:ok, w} = MemProbe.Watcher.start_link(name: nil, interval: 60_000, alarms: false)
      iex> MemProbe.Watcher.tick(w)
      []
      iex> length(MemProbe.Watcher.series(w, :total).samples)
      2
      iex> MemProbe.Watcher.stop(w)
      :ok
  """
  @spec tick(watcher()) :: [finding()]
  def tick(watcher \\ :mem_probe_watcher) do
    :mem_probe_watcher.tick(watcher)
  end

  @doc """
  One finding as a line of text: what grows, what it holds, how fast, for
  how long, and when the node would reach its limit at that rate.

  ## Examples

      iex> MemProbe.Watcher.describe(%{kind: :table, id: :sessions, name: :sessions,
      ...>   bytes: 52_428_800, rate: 1_048_576.0, since: System.system_time(:millisecond) - 90_000,
      ...>   forecast_ms: 7_200_000, confidence: 0.9999})
      "table sessions holds 50.0 MiB, growing 1.0 MiB/s for 1 min; at this rate the node reaches its memory limit in 2.0 h (confidence 100.0%)"
  """
  @spec describe(finding()) :: String.t()
  def describe(finding) do
    :mem_probe_watcher.finding_text(finding, style: :elixir) |> IO.chardata_to_string()
  end

  @doc """
  Stops the watcher and clears its alarms.

  ## Examples

      iex> {:ok, w} = MemProbe.Watcher.start_link(name: nil, interval: 60_000, alarms: false)
      iex> MemProbe.Watcher.stop(w)
      :ok
      iex> Process.alive?(w)
      false
  """
  @spec stop(watcher()) :: :ok
  def stop(watcher \\ :mem_probe_watcher), do: :mem_probe_watcher.stop(watcher)

  # `nil` for "none" in the options is Erlang's `undefined`.
  defp erlang_opts(opts) when is_list(opts) or is_map(opts) do
    Enum.map(opts, fn
      {key, nil} when key in [:name, :limit_bytes, :on_finding] ->
        {key, :undefined}

      other ->
        other
    end)
  end

  defp erlang_opts(opts), do: opts
end
