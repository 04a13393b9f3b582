# Munition's two commands: `make demo` and `make test`; `make check` runs Dialyzer.
SHELL := /bin/bash
export MIX_ENV ?= test

.PHONY: test demo deps elixir rust-checks elixir-checks consumer native-package bench check soak examples guest-toolchain-apt

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

# The cluster tests (test/munition/cluster) start peer nodes on loopback,
# which need epmd: started here if none runs (they also start it themselves).
test: elixir proper rust-checks elixir-checks check examples
	@epmd -names >/dev/null 2>&1 || epmd -daemon
	mix test
	$(MAKE) consumer

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

# Example guests written in C, Rust, AssemblyScript and Zig (examples/guests/),
# built from source into _build/guests/ for the tests in test/guests/. Installs
# the toolchains it lacks, once: Debian's clang, lld, wasi-libc and rustc with
# its wasm32 standard library (apt), AssemblyScript (npm, pinned by
# examples/guests/assemblyscript/package-lock.json, into _build/toolchains/npm)
# and Zig (PyPI's ziglang, into _build/toolchains/pip).
GUESTS_SRC := examples/guests
GUESTS_OUT := _build/guests
TOOLCHAINS := $(CURDIR)/_build/toolchains
ZIGLANG_VERSION := 0.14.1
GUEST_APT_PACKAGES := clang lld wasi-libc libclang-rt-dev-wasm32 rustc libstd-rust-dev-wasm32

GUESTS := c/upper c/checked_sum c/rot13 c/hash \
          rust/reverse_words rust/reverse_words_wasi rust/wc rust/parse_config \
          assemblyscript/text assemblyscript/port \
          zig/base64 zig/greet

# Debian's compilers by path: a rustup toolchain earlier on PATH has no wasm32 std.
CLANG := /usr/bin/clang
RUSTC := /usr/bin/rustc
RUST_FLAGS := --edition 2021 -C opt-level=s -C strip=debuginfo -C panic=abort
ASC := $(TOOLCHAINS)/npm/node_modules/.bin/asc
ASC_FLAGS := --runtime stub -O3 --debug
NPM_STAMP := $(TOOLCHAINS)/npm/.installed
ZIG_STAMP := $(TOOLCHAINS)/pip/.ziglang-$(ZIGLANG_VERSION)
ZIG := PYTHONPATH=$(TOOLCHAINS)/pip ZIG_GLOBAL_CACHE_DIR=$(TOOLCHAINS)/zig-cache \
       ZIG_LOCAL_CACHE_DIR=$(TOOLCHAINS)/zig-cache python3 -m ziglang
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# Runs a command with its output kept back, shown only when it fails.
quietly = log=$$(mktemp); if ! ( $(1) ) >$$log 2>&1; then cat $$log; rm -f $$log; exit 1; fi; rm -f $$log
APT_INSTALL := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends

examples: $(GUESTS:%=$(GUESTS_OUT)/%.wasm) interpreters components

# Interpreters as guests, built from the C sources published in Rust crates
# (QuickJS-ng from rquickjs-sys) and cached in ~/.cache/munition/guests by a
# key of their inputs: see tools/build_interpreters.sh.
.PHONY: interpreters
interpreters: | guest-toolchain-apt
	@tools/build_interpreters.sh $(GUESTS_OUT)/interpreters

# Plugins as WebAssembly components (WIT, WASI 0.2), one world in JavaScript
# (componentize-js, npm), Python (componentize-py, PyPI) and C (wit-bindgen
# from crates.io, Debian's clang and wasi-libc, wasm-tools from PyPI), and a
# C plugin that makes outgoing HTTP requests (wasi:http), one that reads and
# writes files (wasi:filesystem),
# toolchains and builds cached in ~/.cache/munition by a key of their inputs:
# see tools/build_components.sh.
.PHONY: components
components: | guest-toolchain-apt
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "Installing Node.js and npm from Debian's packages"; \
	  $(call quietly,$(SUDO) apt-get update -q && $(APT_INSTALL) nodejs npm); \
	fi
	@python3 -m pip --version >/dev/null 2>&1 || { \
	  echo "Installing Python's pip from Debian's packages"; \
	  $(call quietly,$(SUDO) apt-get update -q && $(APT_INSTALL) python3-pip); }
	@tools/build_components.sh $(GUESTS_OUT)/components

# Installs what is missing of GUEST_APT_PACKAGES; nothing when all are there.
guest-toolchain-apt:
	@missing=""; \
	for p in $(GUEST_APT_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "The example guests need clang with wasm32 support, wasm-ld, wasi-libc, and rustc 1.63+ with the"; \
	    echo "wasm32-wasi and wasm32-unknown-unknown std (Debian:$$missing): install them and run make again."; \
	    exit 1; \
	  fi; \
	  echo "Installing the guests' toolchains from Debian's packages:$$missing"; \
	  $(call quietly,$(SUDO) apt-get update -q && $(APT_INSTALL) $$missing); \
	fi

$(NPM_STAMP): $(GUESTS_SRC)/assemblyscript/package.json $(GUESTS_SRC)/assemblyscript/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "Installing Node.js and npm from Debian's packages"; \
	  $(call quietly,$(SUDO) apt-get update -q && $(APT_INSTALL) nodejs npm); \
	fi
	@echo "Installing AssemblyScript (npm ci) into $(TOOLCHAINS)/npm"
	@rm -rf $(TOOLCHAINS)/npm && mkdir -p $(TOOLCHAINS)/npm
	@cp $^ $(TOOLCHAINS)/npm/
	@$(call quietly,cd $(TOOLCHAINS)/npm && npm ci --no-audit --no-fund)
	@touch $@

$(ZIG_STAMP):
	@if ! python3 -m pip --version >/dev/null 2>&1; then \
	  echo "Installing Python's pip from Debian's packages"; \
	  $(call quietly,$(SUDO) apt-get update -q && $(APT_INSTALL) python3-pip); \
	fi
	@echo "Installing Zig (PyPI's ziglang==$(ZIGLANG_VERSION)) into $(TOOLCHAINS)/pip"
	@rm -rf $(TOOLCHAINS)/pip
	@$(call quietly,PIP_ROOT_USER_ACTION=ignore python3 -m pip install --disable-pip-version-check \
	  --no-warn-script-location --target $(TOOLCHAINS)/pip ziglang==$(ZIGLANG_VERSION))
	@touch $@

# C: WASI commands with wasi-libc; rot13 is freestanding (no libc, no imports).
$(GUESTS_OUT)/c/rot13.wasm: $(GUESTS_SRC)/c/rot13.c | guest-toolchain-apt
	@mkdir -p $(@D) && echo "  CLANG  $@"
	@$(CLANG) --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--export=alloc -Wl,--export=rot13 $< -o $@

# hash, the C guest of bench/compute.exs: freestanding too, exporting its
# memory (wasm-ld's default), alloc and fnv1a.
$(GUESTS_OUT)/c/hash.wasm: $(GUESTS_SRC)/c/hash.c | guest-toolchain-apt
	@mkdir -p $(@D) && echo "  CLANG  $@"
	@$(CLANG) --target=wasm32 -O2 -nostdlib -Wl,--no-entry $< -o $@

$(GUESTS_OUT)/c/%.wasm: $(GUESTS_SRC)/c/%.c | guest-toolchain-apt
	@mkdir -p $(@D) && echo "  CLANG  $@"
	@$(CLANG) --target=wasm32-wasi -O2 $< -o $@

# Rust: reverse_words built twice, without WASI (no imports) and with it (the
# same library then imports WASI for its start-up and panic paths).
$(GUESTS_OUT)/rust/reverse_words.wasm: $(GUESTS_SRC)/rust/reverse_words.rs | guest-toolchain-apt
	@mkdir -p $(@D) && echo "  RUSTC  $@"
	@$(RUSTC) $(RUST_FLAGS) --target wasm32-unknown-unknown --crate-type cdylib $< -o $@

$(GUESTS_OUT)/rust/reverse_words_wasi.wasm: $(GUESTS_SRC)/rust/reverse_words.rs | guest-toolchain-apt
	@mkdir -p $(@D) && echo "  RUSTC  $@"
	@$(RUSTC) $(RUST_FLAGS) --target wasm32-wasi --crate-type cdylib --crate-name reverse_words_wasi $< -o $@

$(GUESTS_OUT)/rust/%.wasm: $(GUESTS_SRC)/rust/%.rs | guest-toolchain-apt
	@mkdir -p $(@D) && echo "  RUSTC  $@"
	@$(RUSTC) $(RUST_FLAGS) --target wasm32-wasi $< -o $@

# AssemblyScript, compiled from its own directory so that abort messages name
# the file as `port.ts`.
$(GUESTS_OUT)/assemblyscript/%.wasm: $(GUESTS_SRC)/assemblyscript/%.ts $(GUESTS_SRC)/assemblyscript/abi.ts $(NPM_STAMP)
	@mkdir -p $(@D) && echo "  ASC    $@"
	@cd $(GUESTS_SRC)/assemblyscript && $(ASC) $*.ts $(ASC_FLAGS) -o $(CURDIR)/$@

# Zig: base64 is freestanding and keeps its DWARF (dumps then name the file).
# Zig leaves its object file beside the module: not needed.
$(GUESTS_OUT)/zig/base64.wasm: $(GUESTS_SRC)/zig/base64.zig $(ZIG_STAMP)
	@mkdir -p $(@D) && echo "  ZIG    $@"
	@$(ZIG) build-exe $< -target wasm32-freestanding -O ReleaseSmall -fno-entry -rdynamic -fno-strip -femit-bin=$@
	@rm -f $@.o

$(GUESTS_OUT)/zig/%.wasm: $(GUESTS_SRC)/zig/%.zig $(ZIG_STAMP)
	@mkdir -p $(@D) && echo "  ZIG    $@"
	@$(ZIG) build-exe $< -target wasm32-wasi -O ReleaseSmall -femit-bin=$@
	@rm -f $@.o

# The consumer project (test/consumer) depends on a directory holding exactly
# the Hex package's files (tools/package_dir.exs), as a user's project depends
# on the package: test/consumer/run.sh fires a module through it built from
# source (sharing this repository's cargo target directory: no second Wasmtime
# build), then from a precompiled artifact with no cargo on PATH, and checks
# that a tampered artifact is refused and a missing one falls back, saying why.
PACKAGE_DIR := $(CURDIR)/_build/package/munition
ARTIFACTS_DIR := $(CURDIR)/_build/package/artifacts
MUNITION_CACHE := $(HOME)/.cache/munition
CARGO_ZIGBUILD_VERSION := 0.24.1
ZIGBUILD_DIR := $(MUNITION_CACHE)/toolchains/cargo-zigbuild-$(CARGO_ZIGBUILD_VERSION)-zig-$(ZIGLANG_VERSION)
ZIGBUILD_STAMP := $(ZIGBUILD_DIR)/.installed
# Its own target directory, outside the clone: a build for an explicit target
# triple shares nothing with the host build, and CI starts from a fresh clone.
ZIGBUILD_TARGET := $(MUNITION_CACHE)/cargo-target-zigbuild
# The oldest glibc a precompiled artifact loads on (Rust's own floor).
GLIBC_FLOOR := 2.17
ZIGBUILD_ENV := PATH=$(ZIGBUILD_DIR)/bin:$$PATH PYTHONPATH=$(ZIGBUILD_DIR) CARGO_TARGET_DIR=$(ZIGBUILD_TARGET)

# The artifact here is linked against this machine's glibc (--no-glibc-floor):
# it reuses the release build `make test` already made, where a glibc-floor
# build (`make native-package`) is a second Wasmtime build of 4 to 7 minutes.
consumer: elixir
	mix run --no-compile --no-start tools/package_dir.exs $(PACKAGE_DIR)
	rm -rf $(ARTIFACTS_DIR)
	mix munition.native.package $(ARTIFACTS_DIR) --no-glibc-floor
	CARGO_TARGET_DIR=$(CURDIR)/target bash test/consumer/run.sh $(PACKAGE_DIR) $(ARTIFACTS_DIR)

# cargo-zigbuild and Zig (PyPI), for `mix munition.native.package`, kept in
# ~/.cache/munition: CI's clone starts without them.
$(ZIGBUILD_STAMP):
	@echo "Installing cargo-zigbuild $(CARGO_ZIGBUILD_VERSION) and Zig $(ZIGLANG_VERSION) (PyPI) into $(ZIGBUILD_DIR)"
	@rm -rf $(ZIGBUILD_DIR)
	@$(call quietly,PIP_ROOT_USER_ACTION=ignore python3 -m pip install --disable-pip-version-check \
	  --no-warn-script-location --target $(ZIGBUILD_DIR) cargo-zigbuild==$(CARGO_ZIGBUILD_VERSION) ziglang==$(ZIGLANG_VERSION))
	@touch $@

# A precompiled artifact of this machine's NIF for a release, into DIR
# (default _build/native-package): see `mix help munition.native.package`.
native-package: elixir $(ZIGBUILD_STAMP)
	$(ZIGBUILD_ENV) mix munition.native.package $(or $(DIR),_build/native-package) --glibc $(GLIBC_FLOOR)
