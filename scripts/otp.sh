#!/bin/sh
# The OTP matrix: runs MemProbe's whole suite on another OTP release, taken
# from Debian's binary packages (27: trixie, 29: sid) and unpacked into a
# cache outside the repository. Nothing is installed on the system: the
# packages are fetched with a private apt configuration, unpacked with
# `dpkg -x`, and their executables pointed at the unpacked C libraries with
# patchelf (trixie and sid need a newer glibc than bookworm's).
#
#   scripts/otp.sh RELEASE          fetch (when missing) and run the suite
#   scripts/otp.sh RELEASE test     the same
#   scripts/otp.sh RELEASE fetch    only fetch/unpack into the cache
#   scripts/otp.sh RELEASE env      print export lines for a run by hand:
#                                   eval "$(scripts/otp.sh 29 env)"; mix test
#
# The system OTP (25) is `make test`; `make test-matrix` runs 25, 27 and 29.
# Cache: ${MEMPROBE_OTP_CACHE:-$HOME/.cache/mem_probe}/otp-RELEASE
#   root/      the unpacked packages (usr/lib/erlang, usr/lib/elixir, libs)
#   erl_libs/  PropEr built with this release's compiler (ERL_LIBS)
#   apt/       the private apt lists and downloaded .debs
# The suite fails unless MemProbe.info().mode is :native on that release.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root_dir=$(dirname "$here")
release="${1:-}"
cmd="${2:-test}"

say() { echo "otp$release: $*" >&2; }
die() { echo "otp$release: error: $*" >&2; exit 1; }

case "$release" in
  27) suite=trixie ;;
  29) suite=sid ;;
  *) echo "usage: $0 27|29 [test|env|fetch]" >&2; exit 2 ;;
esac

cache_base="${MEMPROBE_OTP_CACHE:-$HOME/.cache/mem_probe}"
cache="$cache_base/otp-$release"
unpacked="$cache/root"
libs="$cache/erl_libs"
apt_dir="$cache/apt"
erlang_root="$unpacked/usr/lib/erlang"
elixir_root="$unpacked/usr/lib/elixir"
lib_dir="$unpacked/usr/lib/x86_64-linux-gnu"

# What a test run needs: the OTP applications the suite, mix and rebar3 load,
# Elixir, and the C libraries those binaries were linked against.
packages="erlang-base erlang-crypto erlang-eunit erlang-dev erlang-tools
  erlang-syntax-tools erlang-parsetools erlang-runtime-tools erlang-public-key
  erlang-asn1 erlang-inets erlang-ssl erlang-mnesia erlang-os-mon erlang-xmerl
  erlang-dialyzer erlang-edoc elixir
  libc6 libgcc-s1 libstdc++6 libtinfo6 zlib1g libsystemd0 libcap2 libssl3t64"

# apt with a configuration of its own: only $suite's lists, kept in the cache.
private_apt() {
  apt-get -q \
    -o Dir::Etc::SourceList="$apt_dir/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::Etc::Preferences=/dev/null \
    -o Dir::Etc::PreferencesParts=/dev/null \
    -o Dir::State="$apt_dir/state" \
    -o Dir::State::status=/dev/null \
    -o Dir::Cache="$apt_dir/cache" \
    -o APT::Get::List-Cleanup=0 \
    -o APT::Sandbox::User=root \
    "$@"
}

need_tools() {
  missing=""
  command -v patchelf >/dev/null 2>&1 || missing="$missing patchelf"
  command -v dpkg >/dev/null 2>&1 || missing="$missing dpkg"
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing="$missing debian-archive-keyring"
  if [ -n "$missing" ]; then
    say "installing$missing"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
  fi
}

# The Erlang/OTP version the unpacked release reports, e.g. 29.1.2.
unpacked_version() {
  cat "$erlang_root/releases/$release/OTP_VERSION" 2>/dev/null || true
}

fetch() {
  if [ -f "$cache/.memprobe-ok" ] && [ -x "$erlang_root/bin/erl" ]; then
    return 0
  fi
  need_tools
  rm -rf "$unpacked" "$libs" "$cache/.memprobe-ok"
  mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$unpacked"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
    >"$apt_dir/sources.list"
  say "fetching Debian $suite's package lists"
  private_apt update >/dev/null || die "apt-get update of $suite failed"
  say "downloading $(echo $packages | wc -w) packages from $suite"
  # shellcheck disable=SC2086
  (cd "$apt_dir/debs" && rm -f ./*.deb && private_apt download $packages >/dev/null) \
    || die "apt-get download from $suite failed"
  for deb in "$apt_dir"/debs/*.deb; do
    dpkg -x "$deb" "$unpacked"
  done
  version=$(unpacked_version)
  case "$version" in
    "$release".*|"$release") ;;
    *) die "Debian $suite serves OTP ${version:-unknown}, not OTP $release (sid moves on: this script knows releases 27 and 29)" ;;
  esac
  package=$(ls "$apt_dir"/debs/erlang-base_*.deb | sed 's/.*erlang-base_\(.*\)_amd64\.deb/\1/; s/%3a/:/')
  say "unpacked Erlang/OTP $version (Debian package erlang-base $package)"
  relink
  fix_rootdir
  version_check
  build_proper
  touch "$cache/.memprobe-ok"
}

# Points every ELF executable at the unpacked loader and libraries, and every
# shared object (crypto's NIF, ...) at the unpacked libraries.
relink() {
  loader="$lib_dir/ld-linux-x86-64.so.2"
  [ -e "$loader" ] || die "no loader in the unpacked libc6 ($loader)"
  for file in "$erlang_root"/bin/* "$erlang_root"/erts-*/bin/*; do
    [ -f "$file" ] || continue
    if patchelf --print-interpreter "$file" >/dev/null 2>&1; then
      patchelf --set-interpreter "$loader" --set-rpath "$lib_dir" "$file"
    fi
  done
  find "$erlang_root/lib" -name '*.so' -type f | while read -r so; do
    patchelf --set-rpath "$lib_dir" "$so"
  done
}

# bin/erl hard-codes ROOTDIR=/usr/lib/erlang; Elixir's scripts find erl on
# PATH and need nothing.
fix_rootdir() {
  for erl in "$erlang_root/bin/erl" "$erlang_root"/erts-*/bin/erl; do
    [ -f "$erl" ] || continue
    sed -i "s|^\( *\)ROOTDIR=/usr/lib/erlang\$|\1ROOTDIR=\"$erlang_root\"|" "$erl"
  done
  for tool in elixir elixirc iex mix; do
    [ -e "$elixir_root/bin/$tool" ] || die "Elixir's $tool is missing from the unpacked elixir package"
  done
}

version_check() {
  got=$("$erlang_root/bin/erl" -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().') \
    || die "the unpacked erl does not start"
  [ "$got" = "$release" ] || die "the unpacked erl reports OTP $got, expected $release"
}

# PropEr for the EUnit properties, built with this release's compiler (beams
# of bookworm's erlang-proper do not load on 27+). The source is trixie's
# erlang-proper package, fetched with the same private apt setup.
build_proper() {
  src="$apt_dir/proper-src"
  rm -rf "$src"
  mkdir -p "$src"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    >"$apt_dir/sources.list"
  private_apt update >/dev/null || die "apt-get update of trixie's sources failed"
  (cd "$src" && private_apt source --download-only erlang-proper/trixie >/dev/null 2>&1) || true
  tarball=$(ls "$src"/erlang-proper_*.orig.tar.gz 2>/dev/null | head -n 1)
  [ -n "$tarball" ] || die "could not download trixie's erlang-proper source"
  tree="$src/tree"
  mkdir -p "$tree"
  tar -xzf "$tarball" -C "$tree" --strip-components=1
  vsn=$(basename "$tarball" | sed 's/^erlang-proper_\(.*\)\.orig\.tar\.gz$/\1/')
  dest="$libs/proper-$vsn"
  mkdir -p "$dest/ebin"
  cp -r "$tree/include" "$dest/"
  say "building PropEr $vsn with OTP $release"
  (
    cd "$tree"
    PATH="$erlang_root/bin:$PATH"
    erlc -o "$dest/ebin" -I include src/vararg.erl src/proper_target.erl
    erlc -o "$dest/ebin" -pa "$dest/ebin" -I include src/*.erl
  ) >"$src/build.log" 2>&1 || { tail -n 20 "$src/build.log" >&2; die "PropEr build failed"; }
  cp "$tree/src/proper.app.src" "$dest/ebin/proper.app"
  ok=$("$erlang_root/bin/erl" -noshell -pa "$dest/ebin" -eval \
    'io:format("~p", [proper:quickcheck(proper:forall(proper_types:integer(), fun is_integer/1), [quiet])]), halt().')
  [ "$ok" = true ] || die "PropEr does not run on OTP $release: $ok"
  rm -rf "$src"
}

# The environment of a run on this release: its erl and Elixir first on PATH,
# and build folders of its own so its beams never mix with the system OTP's
# (_build/test, _build/rebar3).
print_env() {
  cat <<EOF
export PATH="$elixir_root/bin:$erlang_root/bin:\$PATH"
export ERL_LIBS="$libs"
export MIX_HOME="$cache/mix_home"
export MIX_BUILD_PATH="$root_dir/_build/otp$release"
export REBAR_BASE_DIR="$root_dir/_build/otp${release}_rebar3"
export REBAR_CACHE_DIR="$cache/rebar3_cache"
EOF
}

# The whole suite: cargo tests, EUnit (with PropEr), and ExUnit (doctests,
# properties against erts_debug, calibration values), after checking that
# the walker is native on this release.
run_suite() {
  cd "$root_dir"
  rel=$(erl -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]),halt().')
  [ "$rel" = "$release" ] || die "erl on PATH reports OTP $rel, expected $release"
  otp_version=$(erl -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]),{ok,V}=file:read_file(filename:join([code:root_dir(),"releases",erlang:system_info(otp_release),"OTP_VERSION"])),io:format(" (~s)",[string:trim(V)]),halt().')
  say "erl: OTP $otp_version at $(command -v erl); $(elixir --version | tail -n 1)"

  say "1/4 cargo tests (walker, synthetic heaps of every layout table)"
  (cd native && cargo test --quiet)

  say "2/4 native mode"
  MIX_ENV=test mix run --no-start -e '
    info = MemProbe.info()
    IO.puts("otp'"$release"': MemProbe.info(): #{inspect(info)}")
    if info.mode != :native, do: System.halt(1)' \
    || die "MemProbe is not in native mode on OTP $release"

  # The EUnit modules run with plain erlc and eunit on the beams mix just
  # built: bookworm's rebar3 (3.19) does not start on OTP 29.
  say "3/4 EUnit and PropEr (test/*_tests.erl)"
  ebin="$MIX_BUILD_PATH/lib/mem_probe/ebin"
  tests_ebin="$MIX_BUILD_PATH/eunit"
  rm -rf "$tests_ebin"
  mkdir -p "$tests_ebin"
  erlc -o "$tests_ebin" -pa "$ebin" test/*_tests.erl
  modules=$(cd "$tests_ebin" && ls -- *.beam | sed 's/\.beam$//' | paste -sd, -)
  erl -noshell -pa "$ebin" "$tests_ebin" -eval \
    "case eunit:test([$modules], [verbose]) of ok -> halt(0); _ -> halt(1) end." \
    || die "EUnit failed on OTP $release"

  say "4/4 ExUnit (mix test)"
  MIX_ENV=test mix test
  say "all suites passed on OTP $otp_version (native mode)"
}

case "$cmd" in
  fetch)
    fetch
    ;;
  env)
    fetch
    print_env
    ;;
  test)
    fetch
    eval "$(print_env)"
    run_suite
    ;;
  *)
    die "usage: $0 27|29 [test|env|fetch]"
    ;;
esac
