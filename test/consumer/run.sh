#!/usr/bin/env bash
# `make consumer`: a project that depends on Munition's package directory
# (PACKAGE, exactly the Hex package's files), compiled and fired as a user's
# project would be:
#   1. from source: the package lists an artifact for this target, but no base
#      URL for precompiled NIFs is configured, so cargo builds it
#      (CARGO_TARGET_DIR shared with the repository's build);
#   2. from the precompiled artifact in ARTIFACTS (served as file://), with no
#      cargo on PATH;
#   3. the artifact tampered with: the compile fails naming the checksum, and
#      no library is installed;
#   4. the artifact missing: the compile falls back to building from source and
#      says why (and, with no cargo on PATH, that it needs cargo).
# The HTTP side of fetching is tested by test/mix/precompiled_test.exs.
set -euo pipefail
package=$1 artifacts=$2
cd "$(dirname "$0")"
# Each scenario sets what it needs; nothing from the caller's shell may decide it.
unset MUNITION_BUILD MUNITION_NATIVE_BASE_URL MUNITION_NATIVE_CACHE_DIR
export MUNITION_PACKAGE_DIR=$package
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# A PATH with everything of the current one except cargo and rustup's tools.
nocargo=$scratch/bin
mkdir -p "$nocargo"
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  for tool in "$dir"/*; do
    name=$(basename "$tool")
    case $name in cargo | cargo-* | rustc | rustup | rustdoc) continue ;; esac
    [ -x "$tool" ] && [ ! -e "$nocargo/$name" ] && ln -s "$tool" "$nocargo/$name"
  done
done
without_cargo() { PATH=$nocargo "$@"; }
without_cargo sh -c '! command -v cargo >/dev/null' || { echo "cargo is still on PATH"; exit 1; }

# The package as released: the artifacts' checksum file ships in it.
cp "$artifacts/checksum-Elixir.Munition.Native.exs" "$package/"
rm -rf _build

echo "consumer 1/4: built from source (no base URL configured)"
out=$(MIX_ENV=dev mix run -e 'Consumer.smoke()' 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -v '^   Compiling'
grep -q 'Compiling munition_native from source with cargo: no base URL' <<<"$out" || { echo "not built from source"; exit 1; }

artifact=$(cd "$artifacts" && ls ./*.tar.gz | head -1)
artifact=${artifact#./}
export MIX_ENV=prod MUNITION_NATIVE_BASE_URL=file://$artifacts MUNITION_NATIVE_CACHE_DIR=$scratch/cache
library=_build/prod/lib/munition/priv/native/munition_native.so

echo "consumer 2/4: precompiled ($artifact), no cargo on PATH"
out=$(without_cargo mix run -e 'Consumer.smoke()' 2>&1) || { echo "$out"; exit 1; }
echo "$out"
grep -q "munition_native: precompiled $artifact" <<<"$out" || { echo "not installed from the artifact"; exit 1; }

echo "consumer 3/4: a tampered artifact is refused"
rm -rf _build/prod/lib/munition "$scratch/cache"
cp "$artifacts/$artifact" "$scratch/saved"
printf 'x' >>"$artifacts/$artifact"
if out=$(without_cargo mix compile 2>&1); then
  echo "$out"; echo "a tampered artifact compiled"; exit 1
fi
grep -q 'refusing to load it' <<<"$out" || { echo "$out"; exit 1; }
[ ! -e "$library" ] || { echo "a library was installed from a tampered artifact"; exit 1; }

echo "consumer 4/4: a missing artifact falls back to building from source, saying why"
rm "$artifacts/$artifact"
if out=$(without_cargo mix compile 2>&1); then
  echo "$out"; echo "compiled with neither an artifact nor cargo"; exit 1
fi
grep -q 'the precompiled NIF could not be fetched' <<<"$out" || { echo "$out"; exit 1; }
grep -q 'needs Rust.s cargo' <<<"$out" || { echo "$out"; exit 1; }
mv "$scratch/saved" "$artifacts/$artifact"
echo "consumer: 4 scenarios passed"
