#!/usr/bin/env bash
# Runs the client test suites against the real server: pytest for the
# Python client, test.sh for the bash/curl scripts, and the schema-driven
# API fuzzer (tests/schemathesis/run.sh: every check, 30 examples per
# operation; set SCHEMATHESIS=0 to skip it). Installs what is
# missing first (curl and b3sum from apt when root; the Python package with
# its test extras into the current Python). The server binary comes from
# DEPOT_BIN, default ${CARGO_TARGET_DIR:-~/.cache/depot-target}/debug/depot.
# Each suite starts its servers in token mode (DEPOT_AUTH_MODE=token), makes
# a tenant token with the admin token from <data-dir>/admin.token and runs
# its clients with it, and checks that a request without it answers 401;
# DEPOT_TEST_AUTH=local runs them all without tokens.
# Exits non-zero when anything fails.
set -uo pipefail
cd "$(dirname "$0")" || exit 1
PY=${PYTHON:-python3}

export DEPOT_BIN=${DEPOT_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/depot-target}/debug/depot}
if [ ! -x "$DEPOT_BIN" ]; then
    echo "error: depot binary not found at $DEPOT_BIN: build it (cargo build) or set DEPOT_BIN" >&2
    exit 1
fi

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v b3sum >/dev/null || missing+=(b3sum)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]}"
        { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >/dev/null ||
            echo "warning: could not install ${missing[*]} (without b3sum the bash tests use a Python stand-in)" >&2
    else
        echo "warning: not installed: ${missing[*]}" >&2
    fi
fi
command -v curl >/dev/null || { echo "error: curl is required" >&2; exit 1; }

if ! "$PY" -c 'import depot_client, requests, tqdm, blake3, numpy, pytest, zstandard' 2>/dev/null; then
    echo "installing the Python client and its test dependencies"
    "$PY" -m pip install -q -e "python[test]" || { echo "error: pip install failed" >&2; exit 1; }
fi

export DEPOT_TEST_AUTH=${DEPOT_TEST_AUTH:-token}
echo "auth mode: $DEPOT_TEST_AUTH"
status=0
start=$(date +%s)
echo "== Python client (pytest)"
(cd python && "$PY" -m pytest -q -p no:cacheprovider) || status=1
mid=$(date +%s)
echo "== bash/curl scripts (bash/test.sh)"
bash bash/test.sh || status=1
end=$(date +%s)
fuzz=0
if [ "${SCHEMATHESIS:-1}" != 0 ]; then
    echo "== OpenAPI document against the server (schemathesis)"
    bash ../tests/schemathesis/run.sh "${SCHEMATHESIS_EXAMPLES:-30}" || status=1
    fuzz=$(($(date +%s) - end))
fi
echo "clients: pytest $((mid - start))s, bash $((end - mid))s, schemathesis ${fuzz}s, total $(($(date +%s) - start))s"
exit "$status"
