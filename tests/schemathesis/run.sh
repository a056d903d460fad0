#!/usr/bin/env bash
# Runs schemathesis (pinned in requirements.txt) against the real server:
# every check, a bounded number of examples per operation (default 30), a
# fixed seed. Fails on any 5xx or any answer that contradicts the OpenAPI
# document the server serves. The server binary is $DEPOT_BIN, by default
# ${CARGO_TARGET_DIR:-~/.cache/depot-target}/debug/depot; schemathesis goes
# into a virtualenv beside the build output, installed on first use.
# The server runs in token mode (DEPOT_TEST_AUTH=local: without tokens):
# schemathesis sends a tenant token (read, write, delete) made with the
# admin token the server wrote, as a header from its config (the token stays
# in the environment, off every command line); first, a request without it
# must answer 401.
#
#   tests/schemathesis/run.sh [EXAMPLES]      (SCHEMATHESIS_SEED: another seed)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
EXAMPLES=${1:-30}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/depot-target}
DEPOT_BIN=${DEPOT_BIN:-$TARGET/debug/depot}
VENV=${SCHEMATHESIS_VENV:-$TARGET/schemathesis-venv}
PY=${PYTHON:-python3}

[ -x "$DEPOT_BIN" ] || { echo "error: depot binary not found at $DEPOT_BIN: build it first" >&2; exit 1; }
if ! "$VENV/bin/python" -c 'import sys, importlib.metadata as m; sys.exit(m.version("schemathesis") != sys.argv[1])' \
    "$(sed -n 's/^schemathesis==//p' "$HERE/requirements.txt")" 2>/dev/null; then
    echo "installing schemathesis into $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

AUTH_MODE=${DEPOT_TEST_AUTH:-token}
case "$AUTH_MODE" in token | local) ;; *) echo "error: DEPOT_TEST_AUTH must be token or local" >&2 && exit 2 ;; esac
unset DEPOT_TOKEN
mode=()
[ "$AUTH_MODE" = token ] && mode=(env DEPOT_AUTH_MODE=token)

# Small limits, so that size checks are reachable with generated values.
DEPOT_RATE_LIMIT=false DEPOT_LOG=warn DEPOT_MAX_FILE_SIZE=16MiB \
    "${mode[@]}" "$DEPOT_BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" 2>"$WORK/server.log" &
SERVER_PID=$!
URL=
for _ in $(seq 1 300); do
    URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$WORK/server.log" | head -n1)
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "error: the server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }

CONFIG="$HERE/schemathesis.toml"
EXTRA=()
# local mode serves without a token by design (the document's security
# schemes say what token mode needs): the check that a request without one
# is refused does not apply.
[ "$AUTH_MODE" = local ] && EXTRA=(--exclude-checks ignored_auth)
if [ "$AUTH_MODE" = token ]; then
    [ -f "$WORK/data/admin.token" ] || {
        echo "error: token mode: the server wrote no admin.token (DEPOT_TEST_AUTH=local runs without)" >&2
        exit 1
    }
    (umask 077 && printf 'Authorization: Bearer %s\n' "$(cat "$WORK/data/admin.token")" >"$WORK/admin.auth")
    DEPOT_TOKEN=$(curl -sS -H "@$WORK/admin.auth" -H 'Content-Type: application/json' \
        -d '{"tenant":"schemathesis","scopes":["read","write","delete"],"name":"schemathesis"}' \
        "$URL/api/admin/tokens" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
    [ -n "$DEPOT_TOKEN" ] || { echo "error: POST /api/admin/tokens made no token" >&2 && exit 1; }
    export DEPOT_TOKEN
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/api/files")
    [ "$code" = 401 ] || { echo "error: GET /api/files without a token answered $code, not 401" >&2 && exit 1; }
    DEPOT_ADMIN_TOKEN=$(cat "$WORK/data/admin.token")
    export DEPOT_ADMIN_TOKEN
    # The repository's settings plus the headers: the tenant token
    # everywhere (TOML: top-level keys first), the admin token where only an
    # admin may go (/metrics, the admin API). schemathesis fills ${...} in
    # from the environment. Revoking is left out: the stateful phase feeds
    # the ids GET /api/admin/tokens lists to DELETE, which revokes the very
    # tokens the run uses (tests/auth.rs covers revocation).
    CONFIG="$WORK/schemathesis.toml"
    {
        printf 'headers = { Authorization = "Bearer ${DEPOT_TOKEN}" }\n\n'
        cat "$HERE/schemathesis.toml"
        printf '\n[[operations]]\ninclude-path-regex = "^/(metrics|api/admin/)"\n'
        printf 'headers = { Authorization = "Bearer ${DEPOT_ADMIN_TOKEN}" }\n'
        printf '\n[[operations]]\ninclude-name = "DELETE /api/admin/tokens/{id}"\nenabled = false\n'
    } >"$CONFIG"
fi

cd "$WORK"
status=0
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks "$VENV/bin/schemathesis" --config-file "$CONFIG" run "$URL/api/openapi.json" \
    --url "$URL" --checks all "${EXTRA[@]}" --max-examples "$EXAMPLES" --seed "${SCHEMATHESIS_SEED:-18}" --workers 1 \
    --request-timeout 30 --no-color --report junit --report-dir "$WORK/report" || status=$?
for report in "$WORK"/report/junit*.xml; do
    # The counts, for the record.
    [ -f "$report" ] && grep -o '<testsuite [^>]*' "$report" | grep -o '\(tests\|failures\|errors\)="[0-9]*"' |
        tr '\n' ' ' | sed 's/^/schemathesis operations: /;s/$/\n/'
done
if grep -q "panicked" "$WORK/server.log"; then
    echo "error: the server panicked:" >&2
    grep -A3 "panicked" "$WORK/server.log" >&2
    status=1
fi
exit "$status"
