#!/bin/sh
# Builds OTP 27 and Elixir 1.18 from Debian trixie's source packages into a
# cache folder outside the repository (reused when present), then runs the
# whole suite against them: cargo tests, EUnit and ExUnit.
#
#   scripts/otp27.sh          build (when the cache is missing) and run the tests
#   scripts/otp27.sh build    only build/refresh the cache
#   scripts/otp27.sh env      print the environment of the test run, for
#                             manual runs: eval "$(scripts/otp27.sh env)"
#
# Cache: ${MEMPROBE_OTP27_CACHE:-$HOME/.cache/mem_probe/otp27}
#   otp-27/       OTP 27 install prefix (bin/erl, ...)
#   elixir-1.18/  Elixir 1.18 built with that OTP (bin/elixir, bin/mix)
#   erl_libs/     PropEr built with that OTP (ERL_LIBS for the EUnit properties)
#   src/          the downloaded trixie source tarballs and build trees
# Build dependencies come from the system's packages (gcc, make,
# libncurses-dev, libssl-dev); the only thing fetched is trixie's source.
# `make test` and CI stay on the system OTP (25); nothing here touches them.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache="${MEMPROBE_OTP27_CACHE:-$HOME/.cache/mem_probe/otp27}"
otp="$cache/otp-27"
ex="$cache/elixir-1.18"
src="$cache/src"
jobs="${MEMPROBE_OTP27_JOBS:-$(nproc 2>/dev/null || echo 2)}"

say() { echo "otp27: $*"; }
die() { echo "otp27: error: $*" >&2; exit 1; }

sudo_cmd() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# A deb-src line for trixie (same URI and keyring as the system's
# debian.sources). Source lines never change installed binaries.
ensure_trixie_src() {
  list=/etc/apt/sources.list.d/memprobe-trixie-src.sources
  if [ ! -f "$list" ]; then
    say "adding $list (deb-src trixie)"
    printf '%s\n' \
      "Types: deb-src" \
      "URIs: http://deb.debian.org/debian" \
      "Suites: trixie" \
      "Components: main" \
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
      | sudo_cmd tee "$list" >/dev/null
    sudo_cmd apt-get update -qq
  fi
}

ensure_build_deps() {
  need=""
  for pkg in gcc make libncurses-dev libssl-dev xz-utils dpkg-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    say "installing build dependencies:$need"
    DEBIAN_FRONTEND=noninteractive sudo_cmd apt-get install -y -qq $need >/dev/null
  fi
}

# Downloads the orig tarball of source package $1 (as named by apt) into $src.
# apt-get source may fail on the .dsc/.debian.tar.xz (404 for elixir) while the
# orig tarball arrived: that is enough.
fetch_orig() {
  pkg=$1 pattern=$2
  mkdir -p "$src"
  if ! ls "$src"/$pattern >/dev/null 2>&1; then
    ensure_trixie_src
    say "downloading trixie source of $pkg"
    (cd "$src" && apt-get source --download-only "$pkg/trixie" >/dev/null 2>&1) || true
    ls "$src"/$pattern >/dev/null 2>&1 || die "could not download $pattern (apt-get source $pkg/trixie)"
  fi
}

build_otp() {
  if [ -x "$otp/bin/erl" ] && [ -f "$otp/.memprobe-ok" ]; then return 0; fi
  ensure_build_deps
  fetch_orig erlang 'erlang_27.*orig.tar.xz'
  tarball=$(ls "$src"/erlang_27.*orig.tar.xz | head -n 1)
  tree="$src/otp-build"
  rm -rf "$tree" "$otp"
  mkdir -p "$tree"
  say "unpacking $(basename "$tarball")"
  tar -xJf "$tarball" -C "$tree" --strip-components=1
  # The dfsg tarball removed two jQuery files that `make install` copies from
  # lib/common_test/priv; empty stand-ins let the install finish.
  for f in jquery-latest.js jquery.tablesorter.min.js; do
    [ -e "$tree/lib/common_test/priv/$f" ] || : >"$tree/lib/common_test/priv/$f"
  done
  say "configuring and building OTP 27 (make -j$jobs; several minutes)"
  (
    cd "$tree"
    ./configure --prefix="$otp" --without-javac --without-wx --without-odbc \
      --without-debugger --without-observer --without-et --without-megaco \
      --without-jinterface >"$tree/configure.log" 2>&1 || { tail -n 40 "$tree/configure.log"; exit 1; }
    make -j"$jobs" >"$tree/make.log" 2>&1 || { tail -n 40 "$tree/make.log"; exit 1; }
    make install >"$tree/install.log" 2>&1 || { tail -n 40 "$tree/install.log"; exit 1; }
  )
  rel=$("$otp/bin/erl" -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]),halt().')
  [ "$rel" = 27 ] || die "built OTP reports release $rel, expected 27"
  touch "$otp/.memprobe-ok"
  rm -rf "$tree"
  say "OTP 27 installed in $otp"
}

build_elixir() {
  if [ -x "$ex/bin/elixir" ] && [ -f "$ex/.memprobe-ok" ]; then return 0; fi
  fetch_orig elixir 'elixir-lang_1.18.*orig.tar.xz'
  tarball=$(ls "$src"/elixir-lang_1.18.*orig.tar.xz | head -n 1)
  rm -rf "$ex"
  mkdir -p "$ex"
  say "unpacking $(basename "$tarball")"
  tar -xJf "$tarball" -C "$ex" --strip-components=1
  say "building Elixir with OTP 27"
  (cd "$ex" && PATH="$otp/bin:$PATH" make compile >"$ex/build.log" 2>&1) \
    || { tail -n 40 "$ex/build.log"; die "elixir build failed"; }
  # Capture first: a pipe closed early (grep -q) makes the VM crash-dump.
  version=$(cd "$ex" && PATH="$otp/bin:$PATH" ERL_CRASH_DUMP=/dev/null "$ex/bin/elixir" --version)
  case "$version" in
    *"Erlang/OTP 27"*) ;;
    *) die "elixir does not report Erlang/OTP 27: $version" ;;
  esac
  touch "$ex/.memprobe-ok"
  say "Elixir installed in $ex"
}

# PropEr for the EUnit properties. Debian bookworm's erlang-proper beams do
# not load on OTP 27 (the loader rejects their old `make_fun2` instruction:
# "please re-compile this module with an Erlang/OTP 27 compiler"), so PropEr
# is built from trixie's erlang-proper source with the OTP 27 compiler, into
# a folder that ERL_LIBS brings in alone (nothing else of the system's OTP 25).
libs="$cache/erl_libs"
build_proper() {
  if [ -f "$libs/.memprobe-ok" ]; then return 0; fi
  fetch_orig erlang-proper 'erlang-proper_*.orig.tar.gz'
  tarball=$(ls "$src"/erlang-proper_*.orig.tar.gz | head -n 1)
  tree="$src/proper-build"
  rm -rf "$tree" "$libs"
  mkdir -p "$tree"
  tar -xzf "$tarball" -C "$tree" --strip-components=1
  vsn=$(basename "$tarball" | sed 's/^erlang-proper_\(.*\)\.orig\.tar\.gz$/\1/')
  dest="$libs/proper-$vsn"
  mkdir -p "$dest/ebin"
  cp -r "$tree/include" "$dest/"
  say "building PropEr $vsn with OTP 27"
  (
    cd "$tree"
    PATH="$otp/bin:$PATH"
    erlc -o "$dest/ebin" -I include src/vararg.erl src/proper_target.erl
    erlc -o "$dest/ebin" -pa "$dest/ebin" -I include src/*.erl
  ) || die "PropEr build failed"
  cp "$tree/src/proper.app.src" "$dest/ebin/proper.app"
  ok=$("$otp/bin/erl" -noshell -pa "$dest/ebin" -eval \
    'io:format("~p", [proper:quickcheck(proper:forall(proper_types:integer(), fun is_integer/1), [quiet])]), halt().')
  [ "$ok" = true ] || die "PropEr does not run on OTP 27: $ok"
  touch "$libs/.memprobe-ok"
  rm -rf "$tree"
}

# The environment of the OTP 27 run. Mix and rebar3 get build folders of their
# own, so OTP 27 beams never mix with the system OTP 25 build (_build/test,
# _build/rebar3), and Mix a home of its own (no OTP 25 archives).
print_env() {
  cat <<EOF
export PATH="$ex/bin:$otp/bin:\$PATH"
export ERL_LIBS="$libs"
export MIX_HOME="$cache/mix_home"
export MIX_BUILD_PATH="$root/_build/otp27"
export REBAR_BASE_DIR="$root/_build/otp27_rebar3"
export REBAR_CACHE_DIR="$cache/rebar3_cache"
EOF
}

run_tests() {
  eval "$(print_env)"
  cd "$root"
  rel=$(erl -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]),halt().')
  [ "$rel" = 27 ] || die "erl on PATH reports OTP $rel, expected 27"
  version=$(elixir --version)
  say "erl: OTP $rel ($(command -v erl)); $(echo "$version" | tail -n 1)"

  say "1/3 cargo tests (walker, synthetic heaps of OTP 25 and 27)"
  (cd native && cargo test --quiet)

  # Debian's rebar3 is an escript: it runs on the first `erl` in PATH, and
  # works on OTP 27 (checked here before use).
  say "2/3 EUnit on OTP 27 (rebar3 eunit, REBAR_BASE_DIR=$REBAR_BASE_DIR)"
  rebar3 version >/dev/null 2>&1 || die "rebar3 does not start on OTP 27"
  rebar3 eunit

  say "3/3 ExUnit on OTP 27 (MIX_BUILD_PATH=$MIX_BUILD_PATH)"
  MIX_ENV=test mix run -e '
    info = MemProbe.info()
    IO.puts("otp27: MemProbe.info(): #{inspect(info)}")
    if info.mode != :native, do: System.halt(1)' \
    || die "MemProbe is not in native mode on OTP 27"
  MIX_ENV=test mix test
  say "all suites passed on OTP 27 (native mode)"
}

cmd="${1:-test}"
case "$cmd" in
  build)
    build_otp
    build_elixir
    build_proper
    ;;
  env)
    print_env
    ;;
  test)
    build_otp
    build_elixir
    build_proper
    run_tests
    ;;
  *)
    die "usage: $0 [test|build|env]"
    ;;
esac
