#!/usr/bin/env bash
# Checks contrib/depot.service with systemd's own tools, without running it:
# `systemd-analyze verify` (syntax, directives, that ExecStart is executable
# and that the Documentation= man page exists) and `systemd-analyze security
# --offline` (the exposure score, which must stay "OK": 2.0 or below).
#
#   .ci/service_check.sh [DEPOT_BINARY]
#
# verify wants /usr/local/bin/depot, which a build machine need not have:
# as root, the binary the tests built is mounted there in a private mount
# namespace (the unit is checked unchanged); otherwise a copy of the unit
# with ExecStart pointing at that binary is checked. The man page comes from
# `depot man --out-dir`. Skips (exit 0, saying why) without systemd-analyze.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
unit="$repo/contrib/depot.service"
bin="${1:-${DEPOT_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/depot-target}/debug/depot}}"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "service check: SKIPPED: no systemd-analyze (apt-get install -y systemd)" >&2
  exit 0
fi
[ -x "$bin" ] || { echo "service check: FAILED: no depot binary at $bin" >&2; exit 1; }
grep -q '^ExecStart=/usr/local/bin/depot serve$' "$unit" \
  || { echo "service check: FAILED: ExecStart is not /usr/local/bin/depot serve (what make install installs)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/man/man1"
"$bin" man --out-dir "$work/man/man1"
export MANPATH="$work/man"

if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1; then
  unshare --mount --propagation private /bin/sh -c '
    set -e
    mkdir -p /usr/local/bin
    mount -t tmpfs tmpfs /usr/local/bin
    cp "$1" /usr/local/bin/depot
    systemd-analyze verify "$2"' _ "$bin" "$unit"
else
  sed "s|^ExecStart=/usr/local/bin/depot |ExecStart=$bin |" "$unit" >"$work/depot.service"
  systemd-analyze verify "$work/depot.service"
fi
echo "service check: systemd-analyze verify passed" >&2

if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
  score="$(systemd-analyze security --offline=yes "$unit" 2>&1 | sed -n 's/.*Overall exposure level for depot.service: \([0-9.]*\).*/\1/p')"
  [ -n "$score" ] || { echo "service check: FAILED: no exposure score" >&2; exit 1; }
  if ! awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
    systemd-analyze security --offline=yes "$unit" >&2 || true
    echo "service check: FAILED: exposure $score is above 2.0" >&2
    exit 1
  fi
  echo "service check: systemd-analyze security: exposure $score (OK is 2.0 or below)" >&2
else
  echo "service check: systemd-analyze security --offline not available (systemd < 250): not scored" >&2
fi
