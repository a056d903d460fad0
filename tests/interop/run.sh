#!/usr/bin/env bash
# Interop tests against a depot binary: resumable.js, flow.js and Uppy in
# headless Chromium, tus-js-client in Node, tuspy in Python; depot's own web
# page in headless Chromium and its chunker in Node. Installs what is
# missing (Debian's chromium, the npm packages pinned in package-lock.json),
# then runs `node --test`. Each test file starts depot in token mode
# (DEPOT_AUTH_MODE=token): the libraries send a tenant token made with the
# admin token from <data-dir>/admin.token, and each family also checks that
# an upload without it is refused with 401. DEPOT_TEST_AUTH=local runs them
# without tokens.
#
#   DEPOT_BIN=/path/to/depot tests/interop/run.sh
#
# DEPOT_BIN defaults to ${CARGO_TARGET_DIR:-$HOME/.cache/depot-target}/debug/depot.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

DEPOT_BIN="${DEPOT_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/depot-target}/debug/depot}"
if [[ ! -x "$DEPOT_BIN" ]]; then
  echo "interop: no depot binary at $DEPOT_BIN (build it with 'cargo build', or set DEPOT_BIN)" >&2
  exit 2
fi
export DEPOT_BIN

if [[ "$(id -u)" == 0 ]]; then sudo=(); else sudo=(sudo); fi

if [[ ! -x /usr/bin/chromium ]]; then
  echo "interop: installing Debian's chromium"
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "interop: node and npm (Node.js 20 or newer) are needed" >&2
  exit 2
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "interop: Node.js 20 or newer is needed (found $(node --version))" >&2
  exit 2
fi

# node_modules is (re)installed when it is missing or was installed from a
# different package-lock.json.
stamp=node_modules/.interop-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "interop: npm ci"
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
fi

export DEPOT_TEST_AUTH="${DEPOT_TEST_AUTH:-token}"
echo "interop: depot $DEPOT_BIN (auth mode $DEPOT_TEST_AUTH); $(/usr/bin/chromium --version 2>/dev/null)"
# One test file at a time: each starts its own depot and Chromium.
exec node --test --test-concurrency=1 --test-reporter=spec ./*.test.mjs
