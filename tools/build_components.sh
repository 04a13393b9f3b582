#!/usr/bin/env bash
# Builds the component guests (examples/guests/components: one WIT world,
# plugin.wit, implemented in JavaScript and in Python) into OUT:
#   plugin_js.wasm  componentize-js (SpiderMonkey; npm, pinned by js/package-lock.json),
#                   built with `--disable http fetch-event`: no wasi:http imports;
#   plugin_py.wasm  componentize-py (CPython; PyPI, pinned by python/requirements.txt).
#
# Toolchains and built components are kept in ~/.cache/munition (toolchains/,
# guests/) under keys hashing their inputs, since CI starts from a fresh
# clone: installed and built once, copied after.
#
#     tools/build_components.sh OUT
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")/.." && pwd)
src=$here/examples/guests/components
cache=${MUNITION_CACHE_DIR:-$HOME/.cache/munition}
quietly() { local log; log=$(mktemp); if ! "$@" >"$log" 2>&1; then cat "$log"; rm -f "$log"; return 1; fi; rm -f "$log"; }

# Installs a toolchain into DIR with COMMAND (run in a fresh directory, its
# first argument), then renames it into place: a half-done install is never
# taken for a whole one, and two builds sharing the cache never see one.
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

key=$( { cat "$0" "$src/plugin.wit" "$src/js/plugin.js" "$src/python/app.py"; echo "$js_key $py_key"; } |
  sha256sum | cut -c1-16)
dir=$cache/guests/components-$key
if [ ! -e "$dir/.complete" ]; then
  mkdir -p "$cache/guests"
  tmp=$(mktemp -d "$cache/guests/.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "  JS     plugin_js.wasm (componentize-js)"
  quietly "$js_tools/node_modules/.bin/componentize-js" --wit "$src/plugin.wit" --world-name plugin \
    --disable http --disable fetch-event -o "$tmp/plugin_js.wasm" "$src/js/plugin.js"
  echo "  PY     plugin_py.wasm (componentize-py)"
  # From a copy: Python writes __pycache__ beside the module it imports.
  mkdir "$tmp/python" && cp "$src/python/app.py" "$tmp/python/"
  (cd "$tmp/python" && PYTHONPATH=$py_tools quietly "$py_tools/bin/componentize-py" -d "$src/plugin.wit" \
    -w plugin componentize app -o "$tmp/plugin_py.wasm")
  rm -rf "$tmp/python"
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp" # another build got there first
  trap - EXIT
fi

mkdir -p "$out"
cp "$dir/plugin_js.wasm" "$dir/plugin_py.wasm" "$out/"
