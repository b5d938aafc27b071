defmodule MemProbe.DocTest do
  use ExUnit.Case, async: true
  doctest MemProbe
end
