#!/usr/bin/env bash
# Builds the interpreter guests (examples/guests/interpreters) into OUT:
# quickjs.wasm (a WASI command) and quickjs_reactor.wasm (a WASI reactor with
# Munition's binary ABI), from QuickJS-ng's C sources as published in the
# rquickjs-sys crate (pinned by examples/guests/interpreters/Cargo.lock),
# with Debian's clang and wasi-libc; and qjs.wasm, QuickJS-ng's own command
# (qjs.c, with quickjs-libc: the std and os modules, so files: it imports
# path_open, path_rename, path_unlink_file, ... as Lua's io and os would);
# and lua_reactor.wasm, Lua 5.4 from the lua-src crate's sources (lua.c: a
# reactor with the binary ABI, every Lua error a trap).
#
# Built once per input: the modules are kept in ~/.cache/munition/guests/
# under a key hashing everything that goes into them (this script, the glue
# C files, the lockfile, clang's version), since CI starts from a fresh clone.
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

# Lua 5.4 as a reactor (lua.c), from lua-src's sources. Lua raises errors
# with longjmp, which wasi-libc lacks: LUAI_THROW becomes lua.c's lua_trap
# (the message to stderr, then a trap) and LUAI_TRY runs its block, so
# ldo.c's <setjmp.h> is an empty file of this build's. Its own key: its
# inputs are the same files, but a change to lua.c rebuilds Lua alone.
lua_key=$( {
  echo lua
  cat "$0" "$src/lua.c" "$src/Cargo.lock"
  "$clang" --version
  dpkg-query -W wasi-libc lld libclang-rt-14-dev-wasm32 2>/dev/null || true
} | sha256sum | cut -c1-16)
lua_dir=$cache/lua-$lua_key

if [ ! -e "$lua_dir/.complete" ]; then
  echo "  CLANG  Lua 5.4 (lua-src) for wasm32-wasi, into $lua_dir"
  manifest=$(cd "$src" && cargo fetch --locked -q && cargo metadata --locked --offline --format-version 1 |
    python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "lua-src"))')
  lua=$(dirname "$manifest")/lua-5.4.9
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir "$tmp/include"
  : >"$tmp/include/setjmp.h"
  cat >"$tmp/include/lua_trap.h" <<'EOF_TRAP'
struct lua_State;
__attribute__((noreturn)) void lua_trap(struct lua_State *L);
#define LUAI_THROW(L, c) lua_trap(L)
#define LUAI_TRY(L, c, a) a
#define luai_jmpbuf int
/* lstate.h's hook mask: <signal.h> is emulated in wasi-libc; an int is what it is. */
#define l_signalT int
EOF_TRAP
  flags=(--target=wasm32-wasi -O2 -I"$tmp/include" -include lua_trap.h -I"$lua" -Wno-everything)
  # The core and the libraries lua.c opens (no io, os, package, debug or
  # coroutine library, no linit.c), two at a time.
  sources=(lapi lcode lctype ldebug ldo ldump lfunc lgc llex lmem lobject lopcodes lparser lstate
    lstring ltable ltm lundump lvm lzio lauxlib lbaselib lmathlib lstrlib ltablib lutf8lib)
  jobs=()
  for file in "${sources[@]}"; do
    # lauxlib reopens a script file in binary mode with freopen, which
    # wasi-libc makes an fd_renumber (a `:wasi_fs` import): lua.c's
    # lua_freopen opens it again instead.
    extra=()
    [ "$file" = lauxlib ] && extra=(-Dfreopen=lua_freopen)
    "$clang" "${flags[@]}" "${extra[@]}" -c "$lua/$file.c" -o "$tmp/$file.o" &
    jobs+=($!)
    if [ "${#jobs[@]}" -ge 2 ]; then
      wait "${jobs[0]}"
      jobs=("${jobs[@]:1}")
    fi
  done
  for job in "${jobs[@]}"; do wait "$job"; done
  objects=()
  for file in "${sources[@]}"; do objects+=("$tmp/$file.o"); done
  "$clang" "${flags[@]}" -mexec-model=reactor "$src/lua.c" "${objects[@]}" -o "$tmp/lua_reactor.wasm"
  rm -rf "$tmp"/*.o "$tmp/include"
  touch "$tmp/.complete"
  rm -rf "$lua_dir"
  mv -T "$tmp" "$lua_dir" 2>/dev/null || rm -rf "$tmp"
  trap - EXIT
fi

mkdir -p "$out"
cp "$dir/quickjs.wasm" "$dir/quickjs_reactor.wasm" "$dir/qjs.wasm" "$lua_dir/lua_reactor.wasm" "$out/"
