# The support modules' bytecode is kept so that MemProbe.TestPeer can load the
# same modules into a peer VM (test/adversarial_test.exs runs there).
support =
  for file <- ~w(support/term_generator.exs support/walker_assertions.exs support/test_peer.exs),
      module <- Code.require_file(file, __DIR__),
      do: module

:persistent_term.put({MemProbe.TestPeer, :modules}, support)

# Polling with a deadline, for the tests that cannot be told when to look.
Code.require_file("support/wait.exs", __DIR__)
# The recap repeats failures after the suite (CI logs keep only the tail).
Code.require_file("support/failure_recap.exs", __DIR__)
ExUnit.start(formatters: [ExUnit.CLIFormatter, MemProbe.FailureRecap])
