defmodule MemProbe.TestWait do
  @moduledoc false
  # Polling for what a test cannot be told about (a watcher's judgement, a
  # collector unloading itself on another node): every 100 ms until `check`
  # returns something other than false or nil, which is returned, or until
  # `timeout_ms` has passed, when the test fails naming what it waited for
  # (`what`: text, or a function that makes it then, with what was seen).
  import ExUnit.Assertions, only: [flunk: 1]

  def until(what, timeout_ms, check) do
    poll(what, System.monotonic_time(:millisecond) + timeout_ms, check)
  end

  defp poll(what, deadline_ms, check) do
    case check.() do
      waiting when waiting in [false, nil] ->
        if System.monotonic_time(:millisecond) > deadline_ms,
          do: flunk("timed out waiting for #{describe(what)}")

        Process.sleep(100)
        poll(what, deadline_ms, check)

      result ->
        result
    end
  end

  defp describe(what) when is_function(what, 0), do: what.()
  defp describe(what), do: what
end
