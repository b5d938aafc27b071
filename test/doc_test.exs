defmodule MemProbe.DocTest do
  # Not async: the examples look at the whole node (snapshots, diffs, process
  # rankings), so another test spawning processes at the same time changes
  # what they see (diff/3's example lost its newborn process to the three
  # processes born meanwhile by a concurrent test).
  use ExUnit.Case, async: false
  doctest MemProbe
end
