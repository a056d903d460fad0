#!/usr/bin/env bash
# depot's end-to-end benchmark: installs the peers it measures against, then
# runs bench.py (which builds the profiling binary, release code with line
# tables, and the CPU-limit bench).
#
#   benches/e2e/run.sh [--size 1G] [--runs 5] [--warmup 1] [--only U1,D1,...] [--out FILE|-]
#
# Environment: DEPOT_BIN (use this depot binary instead of building one),
# LIMITS_BIN (the same for the limits bench), CARGO_TARGET_DIR (default
# ~/.cache/depot-target), BENCH_CACHE (corpus cache and work dir, default
# ~/.cache/depot-bench), BENCH_WORK (where the large temporary files go,
# default $BENCH_CACHE/work). See benches/e2e/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi

# Debian packages: the download reference, the dedup peer, the HTTP load tool.
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  # The package's own service is not wanted: the bench starts its own nginx.
  RUNLEVEL=1 $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

# Node peers: @tus/server + @tus/file-store and tus-js-client, exact versions
# from package-lock.json.
if ! command -v node >/dev/null 2>&1; then
  echo "error: node (>= 20.19) is needed for the tus peer" >&2
  exit 2
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "error: node >= 20.19 is needed for @tus/server, found $(node --version)" >&2
  exit 2
fi
if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

# The Python client (U4's seed chunked upload).
python3 -m pip install -q -e clients/python

exec python3 "$here/bench.py" "$@"
