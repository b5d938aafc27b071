defmodule Mix.Tasks.Compile.MemProbeNif do
  @moduledoc false
  # Builds the Rust NIF through native/build.sh (the same script rebar3 runs).
  # A missing cargo is a warning, not an error: MemProbe then runs in fallback mode.
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    script = Path.join([__DIR__, "native", "build.sh"])
    {_, status} = System.cmd("sh", [script], into: IO.stream(:stdio, :line), stderr_to_stdout: true)
    if status == 0, do: {:ok, []}, else: {:error, []}
  end
end

defmodule MemProbe.MixProject do
  use Mix.Project

  def project do
    [
      app: :mem_probe,
      version: "0.1.0",
      elixir: "~> 1.14",
      compilers: [:mem_probe_nif] ++ Mix.compilers(),
      erlc_paths: ["src"],
      erlc_include_path: "include",
      start_permanent: false,
      deps: [],
      test_paths: ["test"],
      test_pattern: "*_test.exs",
      docs: [main: "MemProbe"]
    ]
  end

  def application do
    # sasl: the leak watcher sets its alarms through sasl's alarm_handler (and
    # Elixir 1.15+ keeps only listed applications on the code path).
    [extra_applications: [:logger, :tools, :runtime_tools, :sasl]]
  end
end
