# Munition's two commands: `make demo` and `make test`; `make check` runs Dialyzer.
SHELL := /bin/bash
export MIX_ENV ?= test

.PHONY: test demo deps elixir rust-checks elixir-checks consumer bench check

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

# PropEr (Debian's erlang-proper), which the property tests in test/property use.
.PHONY: proper fuzz
proper: elixir
	@if ! erl -noshell -eval 'halt(case code:which(proper) of non_existing -> 1; _ -> 0 end).' >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing PropEr from Debian's packages"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q erlang-proper; \
	  else \
	    echo "The property tests need PropEr (Debian: erlang-proper) on Erlang's code path: install it and run make again."; \
	    exit 1; \
	  fi; \
	fi

# The generated-module test and the properties of test/property at a much larger
# scale, with a random seed printed first: `SEED=<seed> make fuzz` runs the same
# again, FUZZ_SCALE=<factor> scales the counts. A failing generated module is
# written to test/fixtures/fuzz/, where the default suite keeps firing it.
fuzz: elixir proper
	@seed=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "make fuzz: seed $$seed (to reproduce: SEED=$$seed make fuzz)"; \
	MUNITION_FUZZ=1 MUNITION_FUZZ_SEED=$$seed MUNITION_FUZZ_SCALE=$${FUZZ_SCALE:-1} mix test test/property \
	  || { echo "make fuzz: FAILED with seed $$seed (to reproduce: SEED=$$seed make fuzz)"; exit 1; }

rust-checks:
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings
	cargo test --release

elixir-checks: elixir
	mix format --check-formatted
	mix compile --warnings-as-errors --force

test: elixir proper rust-checks elixir-checks check
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
bench: elixir
	for script in bench/*.exs; do MIX_ENV=test mix run $$script || exit 1; done
