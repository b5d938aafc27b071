# The README's two commands: `make demo` and `make test`. Each installs what
# is missing (scripts/install_deps.sh) before it builds.
.PHONY: demo test deps build test-style test-native test-elixir test-erlang test-dialyzer bench clean \
	test-otp27 test-otp29 test-matrix

# rebar3 keeps its own build folder so it never shares _build/test with mix.
REBAR := REBAR_BASE_DIR=_build/rebar3 rebar3

deps:
	@sh scripts/install_deps.sh

build: deps
	@mix compile

demo: build
	@mix run examples/demo.exs

test: deps test-style test-native test-elixir test-erlang test-dialyzer

# Formatting and lints fail the build: mix format, cargo fmt, cargo clippy.
test-style:
	mix format --check-formatted
	cd native && cargo fmt --check && cargo clippy --quiet --all-targets -- -D warnings

test-native:
	@command -v cargo >/dev/null || { echo "make test needs cargo (Rust) for the walker's tests"; exit 1; }
	cd native && cargo test --quiet

test-elixir:
	MIX_ENV=test mix test

test-erlang:
	$(REBAR) eunit

# Zero warnings, or the target fails (the PLT is built once, under _build).
test-dialyzer:
	$(REBAR) dialyzer

bench: build
	MIX_ENV=prod mix run bench/term_size.exs
	MIX_ENV=prod mix run bench/breakdown.exs
	MIX_ENV=prod mix run bench/scans.exs
	MIX_ENV=prod mix run bench/ets_system.exs
	ERL_FLAGS="+P 2000000" MIX_ENV=prod mix run bench/leak_hunting.exs
	MIX_ENV=prod mix run bench/watcher.exs

clean:
	rm -rf _build priv/*.so native/target

# The same suite on OTP 27 and OTP 29, from Debian's binary packages (trixie,
# sid) unpacked into ~/.cache/mem_probe (seconds; reused). It fails unless the
# walker is native there. `make test` stays on the system OTP (25).
test-otp27:
	sh scripts/otp.sh 27

test-otp29:
	sh scripts/otp.sh 29

test-matrix: test test-otp27 test-otp29
