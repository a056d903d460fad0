#!/usr/bin/env bash
# Upload a file to depot in pieces with curl, skipping what the server has.
#
#   curl_chunked_upload.sh FILE [chunk_size_kb]     (default 256)
#
# Each piece is read with dd (no copy of the file is made). The server is
# asked about each piece first and only absent pieces are sent. With b3sum
# installed every piece carries its BLAKE3 (chunkHash), so pieces whose
# content the server already stores, from any upload, are skipped too.
# The upload session lives on the server, keyed by an identifier made from
# the file's path, size and modification time: running the same command
# again after an interruption resumes it.
#
# Environment: DEPOT_SERVER (default http://localhost:8080); DEPOT_TOKEN,
# the token for a server in token mode (sent as Authorization: Bearer, from
# a private header file, never on curl's command line); DEPOT_B3SUM,
# the b3sum command (default b3sum; a name that is not installed turns
# hashing off).
#
# Output: a progress bar on stderr, under 80 columns: confirmed bytes,
# sent and skipped bytes, rate and time left (one line per piece when
# stderr is not a terminal), a summary on stderr, and the file id as the last line of stdout.
#
# Exit codes: 0 done; 2 usage; 3 the file cannot be read; 4 the server
# cannot be reached; 5 the server refused the upload (4xx: e.g. 401, no
# or a bad token; 403, the token may not upload); 6 server error
# (5xx or an unexpected answer); 130 interrupted (run again to resume).
set -euo pipefail

SERVER="${DEPOT_SERVER:-http://localhost:8080}"
SERVER="${SERVER%/}"
B3SUM="${DEPOT_B3SUM:-b3sum}"
PROG="${0##*/}"

die() {
    local code=$1
    shift
    [ -n "${BAR_SHOWN:-}" ] && printf '\n' >&2
    printf 'error: %s\n' "$*" >&2
    exit "$code"
}

usage() {
    printf 'usage: %s FILE [chunk_size_kb]   (default 256; server from DEPOT_SERVER)\n' "$PROG" >&2
    exit 2
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
case "$1" in -h | --help) usage ;; esac
FILE=$1
CHUNK_KB=${2:-256}
[[ "$CHUNK_KB" =~ ^[1-9][0-9]{0,6}$ ]] || die 2 "chunk size must be a positive number of KiB, not '$CHUNK_KB'"

command -v curl >/dev/null || die 2 "curl is not installed"
[ -e "$FILE" ] || die 3 "no such file: $FILE"
[ -f "$FILE" ] || die 3 "not a regular file: $FILE"
[ -r "$FILE" ] || die 3 "cannot read $FILE: permission denied"

CHUNK=$((CHUNK_KB * 1024))
SIZE=$(stat -c %s -- "$FILE")
MTIME=$(stat -c %Y -- "$FILE")
NAME=$(basename -- "$FILE")
ABS=$(readlink -f -- "$FILE")
if [ "$SIZE" -eq 0 ]; then
    TOTAL=1 # an empty file is one piece of 0 bytes
else
    TOTAL=$(((SIZE + CHUNK - 1) / CHUNK))
fi
IDENTIFIER="sh-$(printf '%s\0%s\0%s' "$ABS" "$SIZE" "$MTIME" | md5sum | cut -c1-32)"

HASHING=
command -v "$B3SUM" >/dev/null 2>&1 && HASHING=1

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Ctrl-C reaches dd and curl too: whatever was running, the interrupt ends
# the script here, once, with 130. The handler first ignores further
# signals, so that a second Ctrl-C (or the INT and the TERM of a process
# group kill) cannot run it again midway.
on_interrupt() {
    trap '' INT TERM
    [ -n "${BAR_SHOWN:-}" ] && printf '\n' >&2
    printf 'error: interrupted: run the same command again to resume\n' >&2
    exit 130
}
trap on_interrupt INT TERM

human() {
    if command -v numfmt >/dev/null; then
        numfmt --to=iec-i --suffix=B --format='%.1f' "$1" 2>/dev/null || printf '%sB' "$1"
    else
        printf '%sB' "$1"
    fi
}

# The "message" of a JSON error answer, else the answer's first line.
message_of() {
    local m
    m=$(sed -n 's/.*"message":"\([^"]*\)".*/\1/p' "$1" | head -n1)
    [ -n "$m" ] || m=$(head -c 200 "$1" | head -n1)
    printf '%s' "$m"
}

# The token (DEPOT_TOKEN), when there is one, reaches curl in a header file
# (-H @file, in the private temporary directory), never on a command line,
# where ps would show it. api_curl is curl with that header.
TOKEN=${DEPOT_TOKEN:-}
TOKEN=${TOKEN#"${TOKEN%%[![:space:]]*}"}
TOKEN=${TOKEN%"${TOKEN##*[![:space:]]}"}
AUTH_FILE=
if [ -n "$TOKEN" ]; then
    [[ "$TOKEN" =~ ^[[:graph:]]+$ ]] || die 2 "DEPOT_TOKEN has spaces or characters a token never has"
    AUTH_FILE="$TMP/auth"
    (umask 077 && printf 'Authorization: Bearer %s\n' "$TOKEN" >"$AUTH_FILE") || die 3 "cannot write $AUTH_FILE"
fi
unset TOKEN
api_curl() {
    if [ -n "$AUTH_FILE" ]; then curl -H "@$AUTH_FILE" "$@"; else curl "$@"; fi
}

# refused CODE WHAT: why a 4xx answer (body in $TMP/body) refused WHAT; a
# 401 and a 403 say what to do about the token.
refused() {
    case "$1" in
        401)
            if [ -n "$AUTH_FILE" ]; then
                printf 'the server refused the token in DEPOT_TOKEN (401: %s): it is unknown, expired or revoked' \
                    "$(message_of "$TMP/body")"
            else
                printf 'the server needs a token (401: %s): set DEPOT_TOKEN' "$(message_of "$TMP/body")"
            fi
            ;;
        403) printf 'the server refused %s (403: %s): the token lacks that permission' "$2" "$(message_of "$TMP/body")" ;;
        *) printf 'the server refused %s (%s): %s' "$2" "$1" "$(message_of "$TMP/body")" ;;
    esac
}

# The id of the file in a "complete" answer (builtins only: once a piece).
file_id_of() {
    local body=
    IFS= read -r body <"$1" || true
    if [[ "$body" =~ \"status\":\"complete\".*\"file\":\{\"id\":\"([^\"]*)\" ]]; then
        printf '%s' "${BASH_REMATCH[1]}"
    fi
}

piece() { # piece N: the bytes of piece N on stdout
    dd if="$FILE" bs="$CHUNK" skip=$(($1 - 1)) count=1 status=none
}

# curl with retries for connection failures, 5xx and 429; sets CODE to the
# HTTP status, the body in $TMP/body. Arguments: curl's.
call() {
    local attempt rc
    for attempt in 1 2 3 4; do
        rc=0
        CODE=$(api_curl -sS -o "$TMP/body" -w '%{http_code}' "$@" 2>"$TMP/err") || rc=$?
        [ "$rc" -lt 128 ] || on_interrupt # curl was killed by the Ctrl-C
        if [ "$rc" -eq 0 ]; then
            case "$CODE" in
                5?? | 429) ;;
                *) return 0 ;;
            esac
        elif [ "$rc" -eq 7 ] || [ "$rc" -eq 6 ]; then
            die 4 "cannot reach the server at $SERVER ($(sed 's/^curl: ([0-9]*) //' "$TMP/err" | head -n1))"
        fi
        [ "$attempt" -lt 4 ] && sleep "$attempt" # back off before trying again
    done
    if [ "$rc" -ne 0 ]; then
        die 4 "the server at $SERVER did not answer: $(head -n1 "$TMP/err")"
    fi
    die 6 "server error $CODE: $(message_of "$TMP/body")"
}

# short BYTES: at most 7 cells (1023.9M).
short() {
    if [ "$1" -lt 1000 ]; then
        printf '%sB' "$1"
    elif command -v numfmt >/dev/null; then
        numfmt --to=iec --format='%.1f' "$1" 2>/dev/null || printf '%sB' "$1"
    else
        printf '%sK' $(($1 / 1024))
    fi
}

# duration SECONDS: 42s, 3m05s, 2h10m.
duration() {
    local s=$1
    if [ "$s" -lt 60 ]; then
        printf '%ss' "$s"
    elif [ "$s" -lt 3600 ]; then
        printf '%dm%02ds' $((s / 60)) $((s % 60))
    else
        printf '%dh%02dm' $((s / 3600)) $((s % 3600 / 60))
    fi
}

BAR_SHOWN=
STARTED=$SECONDS
# The bar: bytes confirmed (sent, or skipped because the server has them)
# out of the file, then sent and skipped bytes, the rate and the time left.
# Fixed-width fields: the line stays under 80 columns.
draw() { # draw DONE_BYTES
    local done=$1 pct width=12 fill elapsed rate eta
    if [ -t 2 ]; then
        if [ "$SIZE" -gt 0 ]; then pct=$((done * 100 / SIZE)); else pct=100; fi
        fill=$((pct * width / 100))
        elapsed=$((SECONDS - STARTED))
        rate=$(((done - SKIPPED_BYTES) / (elapsed > 0 ? elapsed : 1)))
        if [ "$done" -ge "$SIZE" ]; then
            eta=0s
        elif [ "$rate" -gt 0 ]; then
            eta=$(duration $(((SIZE - done) / rate)))
        else
            eta=?
        fi
        printf '\r[%s%s] %3d%% %-15s sent %7s skip %7s %8s/s ETA %s\033[K' \
            "$(printf '%*s' "$fill" '' | tr ' ' '#')" "$(printf '%*s' $((width - fill)) '' | tr ' ' '-')" \
            "$pct" "$(short "$done")/$(short "$SIZE")" "$(short "$SENT_BYTES")" "$(short "$SKIPPED_BYTES")" \
            "$(short "$rate")" "$eta" >&2
        BAR_SHOWN=1
    fi
}

say() { # one line per piece when stderr is not a terminal
    [ -t 2 ] || printf '%s\n' "$*" >&2
}

# Reachable at all? (A clear message rather than one per piece.)
call "$SERVER/healthz"
[ "$CODE" = 200 ] || die 6 "$SERVER does not look like a depot server (GET /healthz: $CODE)"

[ -n "$HASHING" ] || say "note: $B3SUM not found: pieces are sent without their hashes (no skipping of content stored by other uploads)"

upload_all() {
    local len offset hash
    FILE_ID=
    SENT=0
    SENT_BYTES=0
    SKIPPED=0
    SKIPPED_BYTES=0
    DONE=0
    for ((N = 1; N <= TOTAL; N++)); do
        offset=$(((N - 1) * CHUNK))
        len=$((SIZE - offset < CHUNK ? SIZE - offset : CHUNK))
        hash=
        if [ -n "$HASHING" ]; then
            hash=$(piece "$N" | "$B3SUM" --no-names) || {
                rc=$?
                [ "$rc" -lt 128 ] || on_interrupt
                die 3 "cannot hash piece $N of $FILE"
            }
        fi
        local params=(--data-urlencode "chunkNumber=$N" --data-urlencode "totalChunks=$TOTAL"
            --data-urlencode "chunkSize=$CHUNK" --data-urlencode "currentChunkSize=$len"
            --data-urlencode "totalSize=$SIZE" --data-urlencode "identifier=$IDENTIFIER"
            --data-urlencode "filename=$NAME")
        [ -n "$hash" ] && params+=(--data-urlencode "chunkHash=$hash")
        call -G "${params[@]}" "$SERVER/api/files/upload/chunked"
        case "$CODE" in
            200)
                SKIPPED=$((SKIPPED + 1))
                SKIPPED_BYTES=$((SKIPPED_BYTES + len))
                say "piece $N/$TOTAL skipped ($len bytes)"
                ;;
            204)
                local fields=(--form-string "chunkNumber=$N" --form-string "totalChunks=$TOTAL"
                    --form-string "chunkSize=$CHUNK" --form-string "currentChunkSize=$len"
                    --form-string "totalSize=$SIZE" --form-string "identifier=$IDENTIFIER"
                    --form-string "filename=$NAME")
                [ -n "$hash" ] && fields+=(--form-string "chunkHash=$hash")
                # The piece is piped from dd: re-read for each attempt.
                local attempt rc
                for attempt in 1 2 3 4; do
                    rc=0
                    CODE=$(piece "$N" | api_curl -sS -o "$TMP/body" -w '%{http_code}' "${fields[@]}" \
                        -F "file=@-;filename=piece-$N;type=application/octet-stream" \
                        "$SERVER/api/files/upload/chunked" 2>"$TMP/err") || rc=$?
                    [ "$rc" -lt 128 ] || on_interrupt
                    if [ "$rc" -eq 7 ] || [ "$rc" -eq 6 ]; then
                        die 4 "cannot reach the server at $SERVER ($(sed 's/^curl: ([0-9]*) //' "$TMP/err" | head -n1))"
                    fi
                    if [ "$rc" -eq 0 ] && [[ "$CODE" != 5?? ]] && [ "$CODE" != 429 ]; then break; fi
                    [ "$attempt" -lt 4 ] && sleep "$attempt" # back off before trying again
                done
                [ "$rc" -eq 0 ] || die 4 "sending piece $N failed: $(head -n1 "$TMP/err")"
                case "$CODE" in
                    200 | 201) ;;
                    4??) die 5 "$(refused "$CODE" "piece $N")" ;;
                    *) die 6 "server error on piece $N ($CODE): $(message_of "$TMP/body")" ;;
                esac
                SENT=$((SENT + 1))
                SENT_BYTES=$((SENT_BYTES + len))
                say "piece $N/$TOTAL sent ($len bytes)"
                ;;
            4??) die 5 "$(refused "$CODE" "piece $N")" ;;
            *) die 6 "unexpected answer to piece $N ($CODE): $(message_of "$TMP/body")" ;;
        esac
        DONE=$((DONE + len))
        draw "$DONE"
        FILE_ID=$(file_id_of "$TMP/body")
        if [ -n "$FILE_ID" ]; then
            # Complete (now or in an earlier run): the rest is there too.
            SKIPPED=$((SKIPPED + TOTAL - N))
            SKIPPED_BYTES=$((SKIPPED_BYTES + SIZE - DONE))
            N=$TOTAL
            draw "$SIZE"
            return 0
        fi
    done
    return 0
}

upload_all
[ -n "$BAR_SHOWN" ] && printf '\n' >&2
[ -n "$FILE_ID" ] || die 6 "all $TOTAL pieces were accepted but the server did not report the file complete"
printf 'uploaded %s (%s): sent %d of %d pieces (%s), skipped %d already on the server\n' \
    "$NAME" "$(human "$SIZE")" "$SENT" "$TOTAL" "$(human "$SENT_BYTES")" "$SKIPPED" >&2
printf '%s\n' "$FILE_ID"
