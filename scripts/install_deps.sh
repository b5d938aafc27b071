#!/bin/sh
# Installs what `make demo` and `make test` need and is missing: Erlang/OTP,
# Elixir, rebar3 and PropEr from the system's packages (Debian/Ubuntu apt).
# Cargo (for the NIF) cannot come from apt in a usable version; without it
# MemProbe builds in fallback mode and `make test` stops with a message.
set -eu
need=""
have_pkg() { dpkg -s "$1" >/dev/null 2>&1; }
if command -v dpkg >/dev/null 2>&1; then
  for pkg in erlang-nox erlang-dev erlang-eunit erlang-proper erlang-proper-dev erlang-dialyzer elixir rebar3 tmux; do
    have_pkg "$pkg" || need="$need $pkg"
  done
else
  for cmd in erl elixir mix rebar3; do
    command -v "$cmd" >/dev/null 2>&1 || need="$need $cmd"
  done
  if [ -n "$need" ]; then
    echo "install_deps: missing:$need (install Erlang/OTP, Elixir and rebar3 with your package manager)" >&2
    exit 1
  fi
fi
if [ -n "$need" ]; then
  echo "install_deps: installing$need"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "install_deps: warning: cargo not found; the NIF is not built and MemProbe runs in fallback mode" >&2
fi
