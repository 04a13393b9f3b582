# Munition's two commands: `make demo` and `make test`; `make check` runs Dialyzer.
SHELL := /bin/bash
export MIX_ENV ?= test

.PHONY: test demo deps elixir rust-checks elixir-checks consumer bench check soak

elixir:
	@if ! command -v mix >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Elixir and Erlang from Debian's packages"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q elixir erlang-dev; \
	  else \
	    echo "Munition needs Elixir (>= 1.14) and Erlang/OTP with its NIF headers (erlang-dev)."; \
	    echo "apt-get is not available here: install them with your system's package manager and run make again."; \
	    exit 1; \
	  fi; \
	fi
	@command -v cargo >/dev/null 2>&1 || { echo "Munition needs Rust's cargo: install Rust (https://rustup.rs) and run make again."; exit 1; }

rust-checks:
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings
	cargo test --release

elixir-checks: elixir
	mix format --check-formatted
	mix compile --warnings-as-errors --force

test: elixir rust-checks elixir-checks check
	mix test
	$(MAKE) consumer

consumer: elixir
	cd test/consumer && MIX_ENV=dev mix run -e 'Consumer.smoke()'

# Dialyzer on the compiled code (installs erlang-dialyzer if missing); fails on
# any warning. The PLT is cached in ~/.cache/munition, keyed on the OTP and
# Elixir versions: the first run builds it (a minute or more), later runs reuse it.
check: elixir
	bash tools/dialyzer.sh

demo: elixir
	MIX_ENV=dev mix run examples/demo.exs

# Benchmarks are scripts that print figures, never tests with timed assertions.
# bench/fire.exs first: the one table of Munition's paths against raw Wasmtime
# (it builds and runs native/munition_bench); then the other scripts' figures.
bench: elixir
	for script in bench/fire.exs $$(ls bench/*.exs | grep -vx bench/fire.exs); do \
	  MIX_ENV=test mix run $$script || exit 1; \
	done

# Soak and load suites (test/soak, tagged :soak and excluded from `make test`):
# minutes of calls, each suite printing its figures.
soak: elixir
	MIX_ENV=test mix test --only soak test/soak
