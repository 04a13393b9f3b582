#!/usr/bin/env bash
# Runs Dialyzer on Munition's compiled code; exits non-zero on any warning.
#
#   tools/dialyzer.sh            # what `make check` runs
#
# The PLT (the types of OTP and Elixir) takes a minute or more to build, so it
# is cached outside the checkout, in $MUNITION_PLT_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/munition), under a name that carries the OTP
# and Elixir versions: an upgrade builds a new one instead of reusing a stale
# one. Dialyzer also checks the cached PLT against the files it was built from
# (under a second) and updates it if they changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Warnings that turn on checks beyond Dialyzer's defaults:
#   unmatched_returns  a call whose {:error, _} (or other structured) result is dropped
#   error_handling     a function that can only raise, without a no_return() spec
#   missing_return     a @spec that omits values the function can return
#   unknown            a call to a function or type the PLT does not know fails the
#                      run instead of being skipped silently (a missing app in the PLT
#                      or a misspelt call)
WARNINGS=(-Wunmatched_returns -Werror_handling -Wmissing_return -Wunknown)

# OTP applications (from the Erlang installation) and Elixir applications
# (located through the Elixir on PATH) whose types the code relies on. lib/ uses
# erts' :atomics, :persistent_term and :erlang, kernel's :file and :code,
# stdlib's :ets, :binary, :unicode, :rand, :filename, crypto, Logger, Mix (the
# Mix task, Mix.Project) and test/support uses ExUnit.
OTP_APPS=(erts kernel stdlib crypto compiler)
ELIXIR_APPS=(elixir logger mix ex_unit eex)

if ! command -v dialyzer >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "Installing Dialyzer from Debian's packages"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q erlang-dialyzer
  else
    echo "Dialyzer is not on PATH: install it with Erlang/OTP (Debian: erlang-dialyzer) and run again." >&2
    exit 1
  fi
fi

echo "Compiling (MIX_ENV=test)"
MIX_ENV="test" mix compile
ebin=_build/test/lib/munition/ebin

# One line: OTP version, Elixir version, then the ebin directory of each Elixir app.
info=$(
  elixir -e '
    otp_file = Path.join([:code.root_dir(), "releases", System.otp_release(), "OTP_VERSION"])
    otp = case File.read(otp_file) do
      {:ok, v} -> String.trim(v)
      _ -> System.otp_release()
    end
    dirs = for app <- System.argv() do
      dir = :code.lib_dir(String.to_atom(app), :ebin)
      if is_list(dir), do: Path.expand(dir), else: raise("Elixir application #{app} not found")
    end
    IO.puts(Enum.join([otp, System.version() | dirs], " "))
  ' "${ELIXIR_APPS[@]}"
)
read -r otp_vsn elixir_vsn elixir_ebins <<<"$info"
# shellcheck disable=SC2206
elixir_ebins=($elixir_ebins)
elixir_ebin=${elixir_ebins[0]}

plt_dir=${MUNITION_PLT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/munition}
plt="$plt_dir/dialyzer-otp${otp_vsn}-elixir${elixir_vsn}.plt"

# Elixir's beams keep their debug info in Elixir's format: Dialyzer needs the
# elixir application on its code path (-pa) to read them, ours as well as Elixir's.
if [ ! -f "$plt" ]; then
  echo "Building the PLT $plt (once per OTP and Elixir version; a minute or more)"
  mkdir -p "$plt_dir"
  tmp="$plt.$$.tmp"
  trap 'rm -f "$tmp" "$tmp.log"' EXIT
  # The OTP and Elixir code has warnings and calls to applications left out of
  # the PLT (inets, ssl, ...); they are not ours, so the output is kept quiet.
  # Built under a temporary name and renamed, so an interrupted or concurrent
  # build never leaves a partial PLT under the real name.
  if ! dialyzer --build_plt --quiet --output_plt "$tmp" -pa "$elixir_ebin" \
    --apps "${OTP_APPS[@]}" "${elixir_ebins[@]}" >"$tmp.log" 2>&1; then
    # Exit status 2 means warnings in OTP or Elixir code: the PLT is still good.
    [ -f "$tmp" ] || { cat "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
  fi
  rm -f "$tmp.log"
  mv "$tmp" "$plt"
  trap - EXIT
fi

echo "Running Dialyzer on $ebin (PLT $plt)"
# Exit status: 0 no warnings, 2 warnings, 1 an error (such as a damaged PLT).
status=0
dialyzer --plt "$plt" -pa "$elixir_ebin" --fullpath --no_indentation "${WARNINGS[@]}" "$ebin" || status=$?
if [ "$status" = 1 ]; then
  echo "Dialyzer failed; if the PLT is damaged, delete $plt and run again to rebuild it." >&2
fi
exit "$status"
