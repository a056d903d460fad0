#!/usr/bin/env bash
# Rebuilds the vendored third-party code of depot's web page from the npm
# packages pinned in package.json / package-lock.json (needs Node.js 20 and
# the network; the server itself never does). Commit what changes:
# uppy.min.js, uppy.min.css, blake3.umd.min.js, VERSIONS, licenses/.
#
#   ui/vendor/refresh.sh            # rebuild from the lock file
#   ui/vendor/refresh.sh --update   # after editing a pinned version
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ "${1:-}" == "--update" ]]; then
  npm install --no-audit --no-fund
else
  npm ci --no-audit --no-fund
fi
node build.mjs
