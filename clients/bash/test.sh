#!/usr/bin/env bash
# Tests for curl_chunked_upload.sh and curl_download.sh against the real
# depot server (DEPOT_BIN, default $CARGO_TARGET_DIR/debug/depot with
# CARGO_TARGET_DIR defaulting to ~/.cache/depot-target), started here on an
# ephemeral port with fresh data, in token mode (DEPOT_AUTH_MODE=token;
# DEPOT_TEST_AUTH=local runs it without tokens): the scripts get a token of
# their own tenant in DEPOT_TOKEN, made with the admin token the server
# wrote to <data-dir>/admin.token. Needs curl, coreutils and python3 (test
# data; a BLAKE3 stand-in when b3sum is not installed). Prints one line per
# test and "bash: N passed, M failed"; exits non-zero on any failure.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
UP="$HERE/curl_chunked_upload.sh"
DOWN="$HERE/curl_download.sh"
DEPOT_BIN=${DEPOT_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/depot-target}/debug/depot}
WORK=$(mktemp -d)
AUTH_MODE=${DEPOT_TEST_AUTH:-token}
case "$AUTH_MODE" in token | local) ;; *) echo "DEPOT_TEST_AUTH must be token or local" >&2 && exit 2 ;; esac
unset DEPOT_TOKEN
SERVER_PID=
PASSED=0
FAILED=0
PIECE_KB=64
PIECE=$((PIECE_KB * 1024))
OVERHEAD=2048 # multipart framing and fields of one piece, generously

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=
    fi
    exec 3<&- 2>/dev/null
}
trap 'stop_server; rm -rf "$WORK"' EXIT

# start_server DATA_DIR: sets SERVER_PID and DEPOT_SERVER once it listens.
start_server() {
    [ -x "$DEPOT_BIN" ] || { echo "depot binary not found at $DEPOT_BIN: build it or set DEPOT_BIN" >&2; exit 1; }
    rm -f "$WORK/server.fifo"
    mkfifo "$WORK/server.fifo"
    local mode=()
    [ "$AUTH_MODE" = token ] && mode=(env DEPOT_AUTH_MODE=token)
    DEPOT_RATE_LIMIT=false DEPOT_LOG=warn "${mode[@]}" "$DEPOT_BIN" serve --listen 127.0.0.1:0 --data-dir "$1" \
        </dev/null >/dev/null 2>"$WORK/server.fifo" &
    SERVER_PID=$!
    exec 3<"$WORK/server.fifo"
    local line
    while IFS= read -r -t 60 line <&3; do
        echo "$line" >>"$WORK/server.log"
        if [[ "$line" =~ listening\ on\ (http://[^ ]+) ]]; then
            export DEPOT_SERVER=${BASH_REMATCH[1]%/}
            cat <&3 >>"$WORK/server.log" &
            [ "$AUTH_MODE" = token ] && make_token "$1"
            return 0
        fi
    done
    echo "depot did not start:" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

# Header files for curl: the admin token (for /metrics) and the scripts'
# tenant token (for the test's own API calls); empty files in local mode.
: >"$WORK/admin.auth"
: >"$WORK/auth"

# make_token DATA_DIR: reads the admin token the server wrote, makes a token
# of tenant "bash" with it and exports it as DEPOT_TOKEN.
make_token() {
    local admin="$1/admin.token" mode token
    [ -f "$admin" ] || {
        echo "token mode: the server wrote no $admin (a server without token mode? DEPOT_TEST_AUTH=local runs without)" >&2
        exit 1
    }
    mode=$(stat -c %a -- "$admin")
    [ "$mode" = 600 ] || { echo "$admin has mode $mode, not 600" >&2 && exit 1; }
    (umask 077 && printf 'Authorization: Bearer %s\n' "$(cat -- "$admin")" >"$WORK/admin.auth")
    token=$(curl -sS -H "@$WORK/admin.auth" -H 'Content-Type: application/json' \
        -d '{"tenant":"bash","scopes":["read","write","delete"],"name":"bash-test"}' \
        "$DEPOT_SERVER/api/admin/tokens" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
    [ -n "$token" ] || { echo "POST /api/admin/tokens made no token" >&2 && exit 1; }
    (umask 077 && printf 'Authorization: Bearer %s\n' "$token" >"$WORK/auth")
    export DEPOT_TOKEN=$token
}

# curl for the test's own API calls, with the scripts' token.
api() { curl -H "@$WORK/auth" "$@"; }

# A BLAKE3 stand-in for machines without b3sum (tests only).
if ! command -v b3sum >/dev/null; then
    mkdir -p "$WORK/bin"
    cat >"$WORK/bin/b3sum" <<'EOF'
#!/usr/bin/env python3
import sys
import blake3
args = [a for a in sys.argv[1:] if a != "--no-names"]
names = "--no-names" not in sys.argv[1:]
for path in args or ["-"]:
    h = blake3.blake3()
    f = sys.stdin.buffer if path == "-" else open(path, "rb")
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    print(h.hexdigest() + (f"  {path}" if names else ""))
EOF
    chmod +x "$WORK/bin/b3sum"
    export PATH="$WORK/bin:$PATH"
    echo "# b3sum not installed: using a python blake3 stand-in"
fi

# gen FILE SIZE SEED: deterministic incompressible bytes.
gen() {
    python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(int(sys.argv[2])).randbytes(int(sys.argv[1])))' \
        "$2" "$3" >"$1"
}

metric() { curl -sS -H "@$WORK/admin.auth" "$DEPOT_SERVER/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
req_bytes() { metric depot_http_request_bytes_total; }
resp_bytes() { metric depot_http_response_bytes_total; }

# run SCRIPT ARGS...: sets RC, OUT (stdout), ERR (stderr).
run() {
    RC=0
    "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
    OUT=$(cat "$WORK/out")
    ERR=$(cat "$WORK/err")
}

fail() {
    echo "    $*"
    [ -n "${ERR:-}" ] && printf '    stderr: %s\n' "$ERR" | head -n 20
    return 1
}

last_line() { printf '%s\n' "$1" | tail -n1; }

# skipped_of SUMMARY: the number of pieces the upload skipped.
skipped_of() { sed -n 's/.*skipped \([0-9]*\) already.*/\1/p' <<<"$1" | tail -n1; }
sent_of() { sed -n 's/.*sent \([0-9]*\) of .*/\1/p' <<<"$1" | tail -n1; }

t() { # t NAME FUNCTION
    ERR=
    if "$2"; then
        PASSED=$((PASSED + 1))
        echo "ok - $1"
    else
        FAILED=$((FAILED + 1))
        echo "not ok - $1"
    fi
}

# --- the tests -------------------------------------------------------------

test_upload_download() {
    local f="$WORK/a.bin" id before sent
    gen "$f" $((20 * PIECE + 1234)) 1
    before=$(req_bytes)
    run "$UP" "$f" "$PIECE_KB"
    [ "$RC" = 0 ] || fail "upload exited $RC" || return 1
    id=$(last_line "$OUT")
    [[ "$id" =~ ^[0-9A-Z]{26}$ ]] || fail "last stdout line is not a file id: '$id'" || return 1
    sent=$(($(req_bytes) - before))
    [ "$(sent_of "$ERR")" = 21 ] || fail "expected 21 pieces sent: $ERR" || return 1
    [ "$sent" -ge $((20 * PIECE + 1234)) ] && [ "$sent" -le $((20 * PIECE + 1234 + 21 * OVERHEAD)) ] ||
        fail "server received $sent request bytes" || return 1
    [ "$(api -sS "$DEPOT_SERVER/api/files/$id/info" | sed -n 's/.*"size":\([0-9]*\).*/\1/p')" = $((20 * PIECE + 1234)) ] ||
        fail "wrong size on the server" || return 1
    run "$DOWN" "$id" "$WORK/a.out"
    [ "$RC" = 0 ] || fail "download exited $RC" || return 1
    [ "$(last_line "$OUT")" = "$WORK/a.out" ] || fail "download did not print the path last" || return 1
    cmp -s "$f" "$WORK/a.out" || fail "downloaded bytes differ" || return 1
    A_ID=$id
}

test_reupload_skips_everything() {
    local before
    before=$(req_bytes)
    run "$UP" "$WORK/a.bin" "$PIECE_KB"
    [ "$RC" = 0 ] || fail "upload exited $RC" || return 1
    [ "$(req_bytes)" = "$before" ] || fail "re-upload sent $(($(req_bytes) - before)) request bytes" || return 1
    [ "$(sent_of "$ERR")" = 0 ] && [ "$(skipped_of "$ERR")" = 21 ] || fail "summary: $ERR" || return 1
    [ "$(last_line "$OUT")" = "$A_ID" ] || fail "re-upload gave another id" || return 1
}

test_same_content_elsewhere_skipped_by_hash() {
    local before
    mkdir -p "$WORK/elsewhere"
    cp "$WORK/a.bin" "$WORK/elsewhere/a-copy.bin"
    before=$(req_bytes)
    run "$UP" "$WORK/elsewhere/a-copy.bin" "$PIECE_KB"
    [ "$RC" = 0 ] || fail "upload exited $RC" || return 1
    [ "$(req_bytes)" = "$before" ] || fail "sent $(($(req_bytes) - before)) request bytes" || return 1
    [ "$(last_line "$OUT")" != "$A_ID" ] || fail "expected a new file record" || return 1
    run "$DOWN" "$(last_line "$OUT")" "$WORK/a-copy.out"
    cmp -s "$WORK/a.bin" "$WORK/a-copy.out" || fail "downloaded bytes differ" || return 1
}

test_interrupted_upload_resumes() {
    local f="$WORK/b.bin" pid line seen=0 before received id
    gen "$f" $((30 * PIECE)) 2
    rm -f "$WORK/up.fifo"
    mkfifo "$WORK/up.fifo"
    # Its own process group (setsid), so the kill takes dd and curl too.
    setsid "$UP" "$f" "$PIECE_KB" >/dev/null 2>"$WORK/up.fifo" &
    pid=$!
    exec 4<"$WORK/up.fifo"
    while IFS= read -r line <&4; do
        if [[ "$line" == *" sent "* ]]; then
            seen=$((seen + 1))
            if [ "$seen" = 5 ]; then
                kill -KILL -- -"$pid"
                break
            fi
        fi
    done
    exec 4<&-
    wait "$pid" 2>/dev/null
    [ "$seen" = 5 ] || fail "saw only $seen pieces sent before the upload ended" || return 1
    before=$(req_bytes)
    run "$UP" "$f" "$PIECE_KB"
    received=$(($(req_bytes) - before))
    [ "$RC" = 0 ] || fail "resumed upload exited $RC" || return 1
    [ "$(skipped_of "$ERR")" -ge 5 ] || fail "expected at least 5 pieces skipped: $(tail -n1 <<<"$ERR")" || return 1
    [ "$received" -le $((25 * (PIECE + OVERHEAD))) ] || fail "resumed upload sent $received bytes" || return 1
    id=$(last_line "$OUT")
    run "$DOWN" "$id" "$WORK/b.out"
    cmp -s "$f" "$WORK/b.out" || fail "downloaded bytes differ" || return 1
}

test_no_b3sum() {
    local f="$WORK/c.bin" id before
    gen "$f" $((6 * PIECE + 5)) 3
    DEPOT_B3SUM=no-such-b3sum run "$UP" "$f" "$PIECE_KB"
    [ "$RC" = 0 ] || fail "upload without b3sum exited $RC" || return 1
    grep -q "no-such-b3sum not found" <<<"$ERR" || fail "no note about hashing being off" || return 1
    id=$(last_line "$OUT")
    # Re-running still skips: the session knows its pieces.
    before=$(req_bytes)
    DEPOT_B3SUM=no-such-b3sum run "$UP" "$f" "$PIECE_KB"
    [ "$RC" = 0 ] && [ "$(req_bytes)" = "$before" ] && [ "$(last_line "$OUT")" = "$id" ] ||
        fail "re-upload without b3sum sent data or failed" || return 1
    DEPOT_B3SUM=no-such-b3sum run "$DOWN" "$id" "$WORK/c.out"
    [ "$RC" = 0 ] && cmp -s "$f" "$WORK/c.out" || fail "download without b3sum failed" || return 1
    grep -q "only the size was checked" <<<"$ERR" || fail "no note about the size-only check" || return 1
}

test_download_resume() {
    local f="$WORK/d.bin" id before got
    gen "$f" 800000 4
    # A whole-body upload: the record carries content_hash.
    id=$(api -sS --data-binary @"$f" "$DEPOT_SERVER/api/files/upload?filename=d.bin" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
    [ -n "$id" ] || fail "upload failed" || return 1
    head -c 300000 "$f" >"$WORK/d.out.part"
    before=$(resp_bytes)
    run "$DOWN" "$id" "$WORK/d.out"
    got=$(($(resp_bytes) - before))
    [ "$RC" = 0 ] || fail "download exited $RC" || return 1
    cmp -s "$f" "$WORK/d.out" || fail "resumed download differs" || return 1
    grep -q "resumed at" <<<"$ERR" && grep -q "content_hash" <<<"$ERR" || fail "summary: $ERR" || return 1
    [ "$got" -ge 500000 ] && [ "$got" -lt 508000 ] || fail "server sent $got bytes for the last 500000" || return 1
}

test_download_repairs_a_wrong_partial() {
    local f="$WORK/d.bin" id
    id=$(api -sS "$DEPOT_SERVER/api/files?limit=100" | grep -o '"id":"[^"]*","name":"d.bin"' | head -n1 | cut -d'"' -f4)
    gen "$WORK/wrong.out.part" 300000 99
    run "$DOWN" "$id" "$WORK/wrong.out"
    [ "$RC" = 0 ] || fail "download exited $RC" || return 1
    cmp -s "$f" "$WORK/wrong.out" || fail "repaired download differs" || return 1
    grep -q "does not match the file from byte 0" <<<"$ERR" || fail "no note about the bad partial" || return 1
}

test_download_chunk_check_resumes_from_bad_chunk() {
    # A chunked upload has no content_hash: with the native API the
    # manifest's chunk hashes locate the damage.
    if [ "$(api -s -o /dev/null -w '%{http_code}' "$DEPOT_SERVER/api/chunking")" != 200 ]; then
        echo "    GET /api/chunking does not answer 200: no manifests to check against"
        return 1
    fi
    mv "$WORK/b.out" "$WORK/b.out.part"
    printf 'XXXX' | dd of="$WORK/b.out.part" bs=1 seek=$((7 * PIECE + 3)) conv=notrunc status=none
    truncate -s $((12 * PIECE + 100)) "$WORK/b.out.part"
    local id
    id=$(api -sS "$DEPOT_SERVER/api/files?limit=100" | grep -o '"id":"[^"]*","name":"b.bin"' | head -n1 | cut -d'"' -f4)
    run "$DOWN" "$id" "$WORK/b.out"
    [ "$RC" = 0 ] || fail "download exited $RC" || return 1
    cmp -s "$WORK/b.bin" "$WORK/b.out" || fail "repaired download differs" || return 1
    grep -q "from byte $((7 * PIECE))" <<<"$ERR" || fail "expected a restart at the damaged piece $((7 * PIECE))" || return 1
}

test_empty_file() {
    : >"$WORK/empty.txt"
    run "$UP" "$WORK/empty.txt"
    [ "$RC" = 0 ] || fail "upload of an empty file exited $RC" || return 1
    run "$DOWN" "$(last_line "$OUT")" "$WORK/empty.out"
    [ "$RC" = 0 ] && [ -f "$WORK/empty.out" ] && [ ! -s "$WORK/empty.out" ] || fail "empty download wrong" || return 1
}

test_reupload_after_delete() {
    local f="$WORK/e.bin" id
    gen "$f" $((3 * PIECE)) 5
    run "$UP" "$f" "$PIECE_KB"
    id=$(last_line "$OUT")
    api -sS -X DELETE "$DEPOT_SERVER/api/files/$id" >/dev/null
    run "$UP" "$f" "$PIECE_KB"
    [ "$RC" = 0 ] || fail "re-upload after delete exited $RC" || return 1
    [ "$(last_line "$OUT")" != "$id" ] || fail "got the deleted id back" || return 1
    run "$DOWN" "$(last_line "$OUT")" "$WORK/e.out"
    [ "$RC" = 0 ] && cmp -s "$f" "$WORK/e.out" || fail "the new file does not download right" || return 1
}

test_download_refuses_to_overwrite() {
    local f="$WORK/a.bin" id
    id=$(api -sS "$DEPOT_SERVER/api/files?name=a.bin" | grep -o '"id":"[^"]*"' | head -n1 | cut -d'"' -f4)
    [ -n "$id" ] || fail "no file named a.bin (GET /api/files?name=)" || return 1
    printf 'precious' >"$WORK/keep.out"
    run "$DOWN" "$id" "$WORK/keep.out"
    [ "$RC" = 3 ] && grep -q -- "exists; use --force" <<<"$ERR" || fail "overwrote or wrong error: rc $RC" || return 1
    [ "$(cat "$WORK/keep.out")" = precious ] || fail "the existing file was changed" || return 1
    run "$DOWN" --force "$id" "$WORK/keep.out"
    [ "$RC" = 0 ] && cmp -s "$f" "$WORK/keep.out" || fail "--force did not replace the file: rc $RC" || return 1
    [ ! -e "$WORK/keep.out.part" ] || fail "the .part file was left behind" || return 1
}

# start_as_at_a_terminal ERR CMD...: runs CMD in the background as a shell at
# a terminal runs a foreground job: in a process group of its own, with
# SIGINT at its default disposition, its stderr into ERR; sets BG_PID. A
# background job of a non-interactive shell starts with SIGINT ignored (and
# then cannot trap it), and `set -m` gives no job control without a terminal
# (CI has none), so a small exec wrapper does both.
start_as_at_a_terminal() {
    local err=$1
    shift
    "${PYTHON:-python3}" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setpgid(0, 0)
os.execvp(sys.argv[1], sys.argv[1:])' "$@" >/dev/null 2>"$err" </dev/null &
    BG_PID=$!
}

# interrupted RC ERRFILE: a script ended by Ctrl-C exits 130 with one
# message saying how to resume, and bash says nothing of its own.
interrupted() {
    ERR=$(cat "$2")
    [ "$1" = 130 ] || fail "exit status $1 after Ctrl-C, not 130" || return 1
    [ "$(grep -c '^error: ' "$2")" = 1 ] && grep -q "interrupted: run the same command again" "$2" ||
        fail "not one interrupted message" || return 1
    ! grep -qi "trap\|line [0-9]*:" "$2" || fail "bash complained" || return 1
}

# Ctrl-C reaches the whole foreground process group (the script, dd, curl):
# the script must end with one message and status 130, whatever it was doing.
test_ctrl_c_ends_with_130() {
    local f="$WORK/int.bin" line seen=0 rc
    gen "$f" $((40 * PIECE)) 21
    rm -f "$WORK/int.fifo"
    mkfifo "$WORK/int.fifo"
    start_as_at_a_terminal "$WORK/int.fifo" "$UP" "$f" "$PIECE_KB"
    exec 4<"$WORK/int.fifo"
    : >"$WORK/int.err"
    while IFS= read -r line <&4; do
        printf '%s\n' "$line" >>"$WORK/int.err"
        if [[ "$line" == *" sent "* ]]; then
            seen=$((seen + 1))
            [ "$seen" = 3 ] && kill -INT -- -"$BG_PID"
        fi
    done
    exec 4<&-
    rc=0
    wait "$BG_PID" 2>/dev/null || rc=$?
    interrupted "$rc" "$WORK/int.err"
}

# Ctrl-C while curl downloads (slowed by a curlrc that only this run reads,
# through CURL_HOME) ends the same way and keeps OUTPUT.part, which the same
# command then resumes to the whole file.
test_ctrl_c_during_a_download_ends_with_130_and_resumes() {
    local f="$WORK/int-d.bin" out="$WORK/int-d.out" id size=0 rc total=$((40 * PIECE))
    gen "$f" "$total" 22
    id=$(api -sS --data-binary @"$f" "$DEPOT_SERVER/api/files/upload?filename=int-d.bin" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
    [ -n "$id" ] || fail "upload failed" || return 1
    mkdir -p "$WORK/slow-curl"
    echo 'limit-rate = 200k' >"$WORK/slow-curl/.curlrc"
    start_as_at_a_terminal "$WORK/int-d.err" env CURL_HOME="$WORK/slow-curl" "$DOWN" "$id" "$out"
    for _ in $(seq 200); do
        size=$(stat -c %s -- "$out.part" 2>/dev/null || echo 0)
        [ "$size" -ge "$PIECE" ] && break
        sleep 0.05
    done
    kill -INT -- -"$BG_PID"
    rc=0
    wait "$BG_PID" 2>/dev/null || rc=$?
    [ "$size" -ge "$PIECE" ] || fail "no $PIECE bytes in $out.part after 10 s" || return 1
    interrupted "$rc" "$WORK/int-d.err" || return 1
    [ ! -e "$out" ] || fail "an interrupted download left $out" || return 1
    size=$(stat -c %s -- "$out.part" 2>/dev/null || echo 0)
    [ "$size" -gt 0 ] && [ "$size" -lt "$total" ] || fail "$out.part holds $size of $total bytes" || return 1
    run "$DOWN" "$id" "$out"
    [ "$RC" = 0 ] || fail "the download again exited $RC: $ERR" || return 1
    cmp -s "$f" "$out" || fail "the resumed download differs" || return 1
    grep -q "resumed at" <<<"$ERR" || fail "the download again did not resume: $ERR" || return 1
}

# On a terminal (a pty from script(1)) both scripts show progress: the
# upload's bar with sent and skipped bytes, rate and ETA, every frame under
# 80 columns; the download's curl meter.
test_progress_on_a_terminal() {
    command -v script >/dev/null || { echo "    script(1) is not installed: nothing to check"; return 1; }
    local f="$WORK/bar.bin" longest id
    gen "$f" $((8 * PIECE)) 22
    script -qec "COLUMNS=80 DEPOT_SERVER=$DEPOT_SERVER '$UP' '$f' $PIECE_KB" "$WORK/bar.tty" >/dev/null </dev/null ||
        fail "upload on a terminal failed" || return 1
    tr '\r' '\n' <"$WORK/bar.tty" | sed 's/\x1b\[K//g' | grep '^\[' >"$WORK/bar.frames"
    [ -s "$WORK/bar.frames" ] || fail "no progress bar drawn" || return 1
    longest=$(awk '{ if (length($0) > m) m = length($0) } END { print m + 0 }' "$WORK/bar.frames")
    [ "$longest" -lt 80 ] || fail "a frame is $longest columns: $(tail -n1 "$WORK/bar.frames")" || return 1
    grep -q ' sent .* skip .*/s ETA ' "$WORK/bar.frames" || fail "bar lacks sent/skip/rate/ETA: $(tail -n1 "$WORK/bar.frames")" || return 1
    id=$(tr -d '\r' <"$WORK/bar.tty" | grep -E '^[0-9A-Z]{26}$' | tail -n1)
    [ -n "$id" ] || fail "no file id in the terminal output" || return 1
    script -qec "DEPOT_SERVER=$DEPOT_SERVER '$DOWN' $id '$WORK/bar.out'" "$WORK/down.tty" >/dev/null </dev/null ||
        fail "download on a terminal failed" || return 1
    grep -q "Time.*Current" "$WORK/down.tty" || fail "curl's progress meter was not shown" || return 1
    cmp -s "$f" "$WORK/bar.out" || fail "download differs" || return 1
}

test_errors() {
    run "$UP" "$WORK/no-such-file.bin"
    [ "$RC" = 3 ] && [ "$ERR" = "error: no such file: $WORK/no-such-file.bin" ] || fail "missing file: rc $RC" || return 1
    run "$UP" "$WORK/a.bin" zero
    [ "$RC" = 2 ] || fail "bad chunk size: rc $RC" || return 1
    run "$UP"
    [ "$RC" = 2 ] || fail "no arguments: rc $RC" || return 1
    DEPOT_SERVER=http://127.0.0.1:9 run "$UP" "$WORK/a.bin"
    [ "$RC" = 4 ] && grep -q "cannot reach the server" <<<"$ERR" || fail "server down (upload): rc $RC" || return 1
    DEPOT_SERVER=http://127.0.0.1:9 run "$DOWN" 01ABCDEFGHJKMNPQRSTVWXYZ01
    [ "$RC" = 4 ] || fail "server down (download): rc $RC" || return 1
    run "$DOWN" 01ABCDEFGHJKMNPQRSTVWXYZ01 "$WORK/x.out"
    [ "$RC" = 5 ] && [ "$ERR" = "error: no file with id 01ABCDEFGHJKMNPQRSTVWXYZ01" ] || fail "unknown id: rc $RC" || return 1
    run "$DOWN" '../etc/passwd'
    [ "$RC" = 2 ] || fail "bad id: rc $RC" || return 1
}

# Every curl the scripts run sends the token from a header file, never on
# its command line; without a token, or with a bad one, they stop with exit
# status 5 and say what to do.
test_token() {
    local real spy f="$WORK/tok.bin" id
    if [ "$AUTH_MODE" != token ]; then
        echo "    DEPOT_TEST_AUTH=local: no tokens to check"
        return 0
    fi
    real=$(command -v curl)
    mkdir -p "$WORK/spy"
    spy="$WORK/spy/curl"
    printf '#!/usr/bin/env bash\nprintf "%%s\\n" "$*" >>"%s"\nexec "%s" "$@"\n' "$WORK/curl.argv" "$real" >"$spy"
    chmod +x "$spy"
    : >"$WORK/curl.argv"
    gen "$f" $((2 * PIECE + 10)) 30
    PATH="$WORK/spy:$PATH" run "$UP" "$f" "$PIECE_KB"
    [ "$RC" = 0 ] || fail "upload with the token exited $RC" || return 1
    id=$(last_line "$OUT")
    PATH="$WORK/spy:$PATH" run "$DOWN" "$id" "$WORK/tok.out"
    [ "$RC" = 0 ] && cmp -s "$f" "$WORK/tok.out" || fail "download with the token failed: rc $RC" || return 1
    [ "$(grep -c . "$WORK/curl.argv")" -ge 5 ] || fail "the spy saw $(grep -c . "$WORK/curl.argv") curl runs" || return 1
    ! grep -qF -- "$DEPOT_TOKEN" "$WORK/curl.argv" || fail "the token is on a curl command line" || return 1
    [ "$(grep -c -- '-H @' "$WORK/curl.argv")" = "$(grep -c . "$WORK/curl.argv")" ] ||
        fail "a curl run without the header file: $(grep -v -- '-H @' "$WORK/curl.argv" | head -n1)" || return 1

    DEPOT_TOKEN= run "$UP" "$f" "$PIECE_KB"
    [ "$RC" = 5 ] && grep -q "needs a token (401.*set DEPOT_TOKEN" <<<"$ERR" || fail "upload without a token: rc $RC" || return 1
    DEPOT_TOKEN= run "$DOWN" "$id" "$WORK/tok2.out"
    [ "$RC" = 5 ] && grep -q "needs a token" <<<"$ERR" || fail "download without a token: rc $RC" || return 1
    DEPOT_TOKEN=dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_bm90LWEtc2VjcmV0 run "$DOWN" "$id" "$WORK/tok2.out"
    [ "$RC" = 5 ] && grep -q "refused the token in DEPOT_TOKEN" <<<"$ERR" || fail "download with a bad token: rc $RC" || return 1
    ! grep -q "bm90LWEtc2VjcmV0" <<<"$ERR" || fail "the token is in the message" || return 1
    [ ! -e "$WORK/tok2.out" ] && [ ! -s "$WORK/tok2.out.part" ] || fail "a refused download left bytes behind" || return 1
    DEPOT_TOKEN=dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_bm90LWEtc2VjcmV0 run "$UP" "$f" "$PIECE_KB"
    [ "$RC" = 5 ] && grep -q "refused the token in DEPOT_TOKEN" <<<"$ERR" || fail "upload with a bad token: rc $RC" || return 1
    ! grep -q "bm90LWEtc2VjcmV0" <<<"$ERR" || fail "the token is in the upload's message" || return 1
    DEPOT_TOKEN="two words" run "$UP" "$f"
    [ "$RC" = 2 ] || fail "a token with a space: rc $RC" || return 1
}

start_server "$WORK/data"
echo "# server $DEPOT_SERVER ($DEPOT_BIN)"
t "upload in pieces, download byte-identical" test_upload_download
t "re-upload of the same file sends nothing" test_reupload_skips_everything
t "same content at another path is skipped by hash" test_same_content_elsewhere_skipped_by_hash
t "upload killed mid-way resumes, skipping sent pieces" test_interrupted_upload_resumes
t "works without b3sum (resume by session only)" test_no_b3sum
t "download resumes a partial file" test_download_resume
t "download repairs a partial file that is not the file" test_download_repairs_a_wrong_partial
t "download check finds a damaged chunk and resumes there" test_download_chunk_check_resumes_from_bad_chunk
t "empty file" test_empty_file
t "re-upload after delete starts a new session" test_reupload_after_delete
t "download refuses to overwrite an existing file without --force" test_download_refuses_to_overwrite
t "Ctrl-C during an upload exits 130 with one message" test_ctrl_c_ends_with_130
t "Ctrl-C during a download exits 130 with one message and resumes" test_ctrl_c_during_a_download_ends_with_130_and_resumes
t "progress on a terminal: upload bar under 80 columns, curl's meter" test_progress_on_a_terminal
t "errors: clear message, distinct exit codes" test_errors
t "the token goes in a header file; none or a bad one: exit 5" test_token
stop_server
echo "bash: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
