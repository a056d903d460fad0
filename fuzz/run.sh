#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 20), one after
# the other; exits non-zero if any target crashes or breaks an invariant.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain (FUZZ_TOOLCHAIN, default `nightly`); installs
# cargo-fuzz when it is missing. New corpus entries go to a temporary
# directory: the committed seeds in fuzz/corpus/ are only read. A failing
# input is left in fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run -a <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

secs="${1:-20}"
shift || true
cd "$(dirname "$0")"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
# The fuzz build (sanitizers, coverage) stays in fuzz/target, whatever a
# cargo configuration or the environment says for the main build.
export CARGO_TARGET_DIR="$PWD/target"

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: the $toolchain toolchain is needed (cargo-fuzz builds with sanitizers)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

# -a: debug assertions and overflow checks in the fuzzed code.
cargo "+$toolchain" fuzz build -a

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
printf '%-14s %10s %12s %8s %8s  %s\n' target execs/s "total execs" corpus cov result
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "corpus/$t"
  log="$work/$t.log"
  if cargo "+$toolchain" fuzz run -a "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed+=("$t")
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  printf '%-14s %10s %12s %8s %8s  %s\n' "$t" "${rate:--}" "${execs:--}" "${corpus:--}" "${cov:--}" "$result"
  if [ "$result" = FAILED ]; then
    grep -E -A12 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | head -40 >&2 || tail -40 "$log" >&2
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz/run.sh: failing targets: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
