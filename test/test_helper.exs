Code.require_file("support/term_generator.exs", __DIR__)
ExUnit.start()
