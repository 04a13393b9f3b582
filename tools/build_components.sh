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

js_key=$(sha256sum "$src/js/package-lock.json" | cut -c1-16)
py_key=$(sha256sum "$src/python/requirements.txt" | cut -c1-16)
js_tools=$cache/toolchains/componentize-js-$js_key
py_tools=$cache/toolchains/componentize-py-$py_key

if [ ! -e "$js_tools/.complete" ]; then
  echo "  NPM    componentize-js (npm ci) into $js_tools"
  rm -rf "$js_tools" && mkdir -p "$js_tools"
  cp "$src/js/package.json" "$src/js/package-lock.json" "$js_tools/"
  (cd "$js_tools" && quietly npm ci --no-audit --no-fund)
  touch "$js_tools/.complete"
fi
if [ ! -e "$py_tools/.complete" ]; then
  echo "  PIP    componentize-py into $py_tools"
  rm -rf "$py_tools"
  PIP_ROOT_USER_ACTION=ignore quietly python3 -m pip install --disable-pip-version-check \
    --no-warn-script-location --target "$py_tools" -r "$src/python/requirements.txt"
  touch "$py_tools/.complete"
fi

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
  (cd "$src/python" && PYTHONPATH=$py_tools quietly "$py_tools/bin/componentize-py" -d "$src/plugin.wit" \
    -w plugin componentize app -o "$tmp/plugin_py.wasm")
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  trap - EXIT
fi

mkdir -p "$out"
cp "$dir/plugin_js.wasm" "$dir/plugin_py.wasm" "$out/"
