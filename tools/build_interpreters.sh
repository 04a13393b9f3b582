#!/usr/bin/env bash
# Builds the interpreter guests (examples/guests/interpreters) into OUT:
# quickjs.wasm (a WASI command) and quickjs_reactor.wasm (a WASI reactor with
# Munition's binary ABI), from QuickJS-ng's C sources as published in the
# rquickjs-sys crate (pinned by examples/guests/interpreters/Cargo.lock),
# with Debian's clang and wasi-libc; and qjs.wasm, QuickJS-ng's own command
# (qjs.c, with quickjs-libc: the std and os modules, so files: it imports
# path_open, path_rename, path_unlink_file, ... as Lua's io and os would).
#
# Built once per input: the modules are kept in ~/.cache/munition/guests/
# under a key hashing everything that goes into them (this script, the glue
# C file, the lockfile, clang's version), since CI starts from a fresh clone.
#
#     tools/build_interpreters.sh OUT
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")/.." && pwd)
src=$here/examples/guests/interpreters
clang=/usr/bin/clang
cache=${MUNITION_CACHE_DIR:-$HOME/.cache/munition}/guests

key=$( {
  cat "$0" "$src/quickjs.c" "$src/Cargo.lock"
  "$clang" --version
  dpkg-query -W wasi-libc lld libclang-rt-14-dev-wasm32 2>/dev/null || true
} | sha256sum | cut -c1-16)
dir=$cache/quickjs-$key

if [ ! -e "$dir/.complete" ]; then
  echo "  CLANG  QuickJS-ng (rquickjs-sys) for wasm32-wasi, into $dir"
  manifest=$(cd "$src" && cargo fetch --locked -q && cargo metadata --locked --offline --format-version 1 |
    python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "rquickjs-sys"))')
  qjs=$(dirname "$manifest")/quickjs
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # As rquickjs-sys builds them: _GNU_SOURCE; signal emulation for the
  # <signal.h> quickjs.c includes (it raises none). QuickJS's own files are
  # compiled once, two at a time, for both modules.
  flags=(--target=wasm32-wasi -O2 -D_GNU_SOURCE -D_WASI_EMULATED_SIGNAL -I"$qjs" -Wno-everything)
  jobs=()
  for file in quickjs libregexp libunicode dtoa; do
    "$clang" "${flags[@]}" -c "$qjs/$file.c" -o "$tmp/$file.o" &
    jobs+=($!)
  done
  for job in "${jobs[@]}"; do wait "$job"; done
  objects=("$tmp/quickjs.o" "$tmp/libregexp.o" "$tmp/libunicode.o" "$tmp/dtoa.o")
  "$clang" "${flags[@]}" "$src/quickjs.c" "${objects[@]}" -lwasi-emulated-signal -o "$tmp/quickjs.wasm"
  "$clang" "${flags[@]}" -mexec-model=reactor -DQUICKJS_REACTOR "$src/quickjs.c" "${objects[@]}" \
    -lwasi-emulated-signal -o "$tmp/quickjs_reactor.wasm"
  # qjs as upstream builds it for WASI (CMakeLists.txt): its clock() wants
  # the emulated process clocks. Its REPL and standalone scripts come
  # compiled to C in gen/.
  "$clang" "${flags[@]}" -D_WASI_EMULATED_PROCESS_CLOCKS "$qjs/qjs.c" "$qjs/quickjs-libc.c" \
    "$qjs/gen/repl.c" "$qjs/gen/standalone.c" "${objects[@]}" \
    -lwasi-emulated-signal -lwasi-emulated-process-clocks -o "$tmp/qjs.wasm"
  rm "${objects[@]}"
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp" # another build got there first
  trap - EXIT
fi

mkdir -p "$out"
cp "$dir/quickjs.wasm" "$dir/quickjs_reactor.wasm" "$dir/qjs.wasm" "$out/"
