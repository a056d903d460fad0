# depot: `make run` starts the server on the embedded defaults
# (127.0.0.1:8080, ./depot-data); `make test` runs every check CI runs.
# Both install what they need first.

# Keep build output outside the checkout: a cold RocksDB build is slow, and a
# shared cache makes every later build incremental.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/depot-target
CARGO ?= cargo

.PHONY: run test deps test-deps lint unit bin interop fuzz fuzz-smoke bench bench-e2e clean-data

run: deps
	$(CARGO) run --bin depot -- serve

test: test-deps lint unit interop fuzz-smoke

# RocksDB's build needs libclang (bindgen): .ci/deps.sh installs it when the
# build could not load it (see the script for how that is detected).
deps:
	.ci/deps.sh build

# What the test suite needs too, then the proof that the detection holds on
# fake roots (a fresh machine's look-alike libraries included).
test-deps:
	.ci/deps.sh test
	.ci/deps_test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test --all-targets

bin:
	$(CARGO) build --bin depot

# Real clients against the binary the tests built (no second build): the
# browser libraries in headless Chromium, tus-js-client in Node, the Python
# client and the bash/curl scripts.
interop: bin
	DEPOT_BIN=$(CARGO_TARGET_DIR)/debug/depot tests/interop/run.sh
	DEPOT_BIN=$(CARGO_TARGET_DIR)/debug/depot clients/run_tests.sh

# Every fuzz target for FUZZ_SECONDS each (cargo-fuzz on the nightly
# toolchain; the fuzz crate builds the pure core only, never RocksDB).
FUZZ_SECONDS ?= 300
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke:
	fuzz/run.sh 20

bench: deps
	$(CARGO) bench --bench store

# End-to-end benchmarks against real peers (nginx, a tus server, restic):
# installs them, builds the release binary, writes docs/BENCHMARKS.md.
# Options through BENCH_ARGS, e.g. BENCH_ARGS="--size 128M --runs 3 --out -".
bench-e2e: deps
	benches/e2e/run.sh $(BENCH_ARGS)

clean-data:
	rm -rf depot-data
