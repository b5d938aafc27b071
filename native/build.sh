#!/bin/sh
# Builds the term-size NIF with cargo and puts it in priv/.
# Called by mix.exs (compile step) and rebar.config (pre-compile hook), so both
# build tools produce the same library. Without cargo it warns and exits 0: the
# library then runs in fallback mode (see MemProbe.info/0).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
priv="$root/priv"
mkdir -p "$priv"
if ! command -v cargo >/dev/null 2>&1; then
  echo "mem_probe: warning: cargo not found; the NIF is not built and MemProbe runs in fallback mode" >&2
  exit 0
fi
if ! cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p mem_probe_nif; then
  echo "mem_probe: warning: cargo build failed; MemProbe runs in fallback mode" >&2
  exit 0
fi
case "$(uname -s)" in
  Darwin) lib=libmem_probe_nif.dylib ;;
  *) lib=libmem_probe_nif.so ;;
esac
target="${CARGO_TARGET_DIR:-$here/target}"
# Copy to a temporary name, then rename: a running VM that has the old
# library mapped keeps its copy intact.
cp "$target/release/$lib" "$priv/mem_probe_nif.so.tmp" && mv -f "$priv/mem_probe_nif.so.tmp" "$priv/mem_probe_nif.so"
