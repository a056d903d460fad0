#!/usr/bin/env bash
# Download a file from depot with curl, resuming a partial download.
#
#   curl_download.sh [--force] FILE_ID [OUTPUT]   (default OUTPUT: the file's name)
#
# The bytes go to OUTPUT.part and move to OUTPUT once checked. An existing
# OUTPUT is never overwritten without --force; an existing, shorter
# OUTPUT.part is continued where it stops (curl -C -). The result is checked: its size always; with b3sum installed, its BLAKE3
# against the file's content_hash when the server has one, else each chunk
# against the file's manifest when the server has the native API. A resumed
# download that fails the check is downloaded again from the first bad byte
# (or from the start).
#
# Environment: DEPOT_SERVER (default http://localhost:8080); DEPOT_TOKEN,
# the token for a server in token mode (sent as Authorization: Bearer, from
# a private header file, never on curl's command line); DEPOT_B3SUM, the
# b3sum command (default b3sum).
#
# Output: curl's progress meter on a terminal (received bytes, rate, time
# left; a resumed download first says how many bytes it kept), a summary on
# stderr, and the output path as the last line of stdout.
#
# Exit codes: 0 done; 2 usage; 3 OUTPUT cannot be written, or exists
# (without --force); 4 the server
# cannot be reached; 5 the server refused (4xx, e.g. no such file, or 401:
# no or a bad token); 6 server
# error; 7 the download does not verify; 130 interrupted (run again to resume).
set -euo pipefail

SERVER="${DEPOT_SERVER:-http://localhost:8080}"
SERVER="${SERVER%/}"
B3SUM="${DEPOT_B3SUM:-b3sum}"
PROG="${0##*/}"

die() {
    local code=$1
    shift
    printf 'error: %s\n' "$*" >&2
    exit "$code"
}

usage() {
    printf 'usage: %s [--force] FILE_ID [OUTPUT]   (server from DEPOT_SERVER)\n' "$PROG" >&2
    exit 2
}

FORCE=
case "${1:-}" in -f | --force) FORCE=1 && shift ;; esac
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
case "$1" in -h | --help) usage ;; esac
ID=$1
[[ "$ID" =~ ^[0-9A-Za-z_-]{1,128}$ ]] || die 2 "not a file id: '$ID'"
command -v curl >/dev/null || die 2 "curl is not installed"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
on_interrupt() {
    trap - INT TERM
    printf '\nerror: interrupted: run the same command again to resume\n' >&2
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

# A string field of a flat JSON object (empty when absent or escaped).
field() {
    sed -n 's/.*"'"$1"'":"\([^"\\]*\)".*/\1/p' "$2" | head -n1
}

# curl -sS GET URL into $TMP/body; sets CODE; connection failures exit 4.
get() {
    local rc=0
    CODE=$(api_curl -sS -o "$TMP/body" -w '%{http_code}' "$1" 2>"$TMP/err") || rc=$?
    [ "$rc" -eq 0 ] || die 4 "cannot reach the server at $SERVER ($(sed 's/^curl: ([0-9]*) //' "$TMP/err" | head -n1))"
}

get "$SERVER/api/files/$ID/info"
case "$CODE" in
    200) ;;
    404) die 5 "no file with id $ID" ;;
    4??) die 5 "$(refused "$CODE" "the request")" ;;
    *) die 6 "server error ($CODE): $(message_of "$TMP/body")" ;;
esac
cp "$TMP/body" "$TMP/info"
SIZE=$(sed -n 's/.*"size":\([0-9]*\).*/\1/p' "$TMP/info" | head -n1)
[ -n "$SIZE" ] || die 6 "the server's answer has no size: $(head -c 200 "$TMP/info")"
NAME=$(field name "$TMP/info")
CONTENT_HASH=$(field content_hash "$TMP/info")

OUT=${2:-}
if [ -z "$OUT" ]; then
    OUT=$(basename -- "${NAME:-$ID}")
    case "$OUT" in "" | . | ..) OUT=$ID ;; esac
fi
[ -d "$OUT" ] && OUT="${OUT%/}/$(basename -- "${NAME:-$ID}")"
if [ -e "$OUT" ] && [ -z "$FORCE" ]; then
    die 3 "$OUT exists; use --force to overwrite it, or name another OUTPUT"
fi
PART="$OUT.part"

HASHING=
command -v "$B3SUM" >/dev/null 2>&1 && HASHING=1

size_of() { stat -c %s -- "$1" 2>/dev/null || echo 0; }

# fetch: download the rest of OUT (or all of it) with curl.
fetch() {
    local have rc=0
    have=$(size_of "$PART")
    if [ "$have" -gt "$SIZE" ]; then
        printf 'note: %s is larger than the file; downloading it again\n' "$PART" >&2
        : >"$PART" || die 3 "cannot write $PART"
        have=0
    fi
    RESUMED_FROM=$have
    if [ "$have" -eq "$SIZE" ]; then
        [ -e "$PART" ] || : >"$PART" || die 3 "cannot write $PART"
        return 0
    fi
    touch -- "$PART" 2>/dev/null || die 3 "cannot write $PART"
    if [ -t 2 ]; then
        # curl's own meter on the terminal: received bytes, rate, time left.
        [ "$have" -gt 0 ] && printf 'resuming: %s kept from an earlier run, %s to go\n' \
            "$(human "$have")" "$(human $((SIZE - have)))" >&2
        CODE=$(api_curl -S -C - -o "$PART" -w '%{http_code}' "$SERVER/api/files/$ID") || rc=$?
        [ "$rc" -eq 0 ] || printf 'curl: (%s)\n' "$rc" >"$TMP/err"
    else
        CODE=$(api_curl -sS -C - -o "$PART" -w '%{http_code}' "$SERVER/api/files/$ID" 2>"$TMP/err") || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        case "$rc" in
            6 | 7) die 4 "cannot reach the server at $SERVER" ;;
            18 | 52 | 56) die 4 "the connection broke after $(size_of "$PART") bytes: run the same command again to resume" ;;
            23) die 3 "cannot write $PART" ;;
            *) die 6 "curl failed ($rc): $(grep -v '^#' "$TMP/err" | tail -n1)" ;;
        esac
    fi
    case "$CODE" in
        200 | 206) ;;
        404) die 5 "no file with id $ID" ;;
        4??)
            # The answer's body went to the .part file: keep it out.
            tail -c +$((RESUMED_FROM + 1)) -- "$PART" >"$TMP/body" 2>/dev/null
            truncate -s "$RESUMED_FROM" -- "$PART" 2>/dev/null
            die 5 "$(refused "$CODE" "the download")"
            ;;
        *) die 6 "server error on download ($CODE)" ;;
    esac
}

# verify: prints what was checked; returns 1 with BAD_AT set (first bad
# byte, or 0) when the content is wrong.
verify() {
    local got
    BAD_AT=
    got=$(size_of "$PART")
    if [ "$got" -ne "$SIZE" ]; then
        BAD_AT=$((got < SIZE ? got : 0))
        return 1
    fi
    CHECKS="size"
    [ -n "$HASHING" ] || return 0
    if [ -n "$CONTENT_HASH" ]; then
        got=$("$B3SUM" --no-names <"$PART")
        if [ "$got" != "$CONTENT_HASH" ]; then
            BAD_AT=0
            return 1
        fi
        CHECKS="size, content_hash"
        return 0
    fi
    # No content hash (chunked or native uploads): check the chunks against
    # the manifest, when the server has one.
    get "$SERVER/api/files/$ID/manifest"
    [ "$CODE" = 200 ] || return 0
    local n=0 hash offset len
    # One {"hash":..,"offset":..,"len":..} per line.
    sed 's/},{/}\n{/g' "$TMP/body" |
        sed -n 's/.*"hash":"\([0-9a-f]*\)","offset":\([0-9]*\),"len":\([0-9]*\).*/\1 \2 \3/p' >"$TMP/chunks"
    while read -r hash offset len || [ -n "${hash:-}" ]; do
        got=$(dd if="$PART" iflag=skip_bytes,count_bytes skip="$offset" count="$len" bs=1M status=none | "$B3SUM" --no-names)
        if [ "$got" != "$hash" ]; then
            BAD_AT=$offset
            return 1
        fi
        n=$((n + 1))
        hash=
    done <"$TMP/chunks"
    [ "$n" -gt 0 ] || return 0
    CHECKS="size, $n chunk hashes"
}

fetch
if [ "$RESUMED_FROM" -eq 0 ]; then
    HOW="whole"
elif [ "$RESUMED_FROM" -eq "$SIZE" ]; then
    HOW="already complete"
else
    HOW="resumed at $(human "$RESUMED_FROM")"
fi
if ! verify; then
    if [ "$RESUMED_FROM" -gt 0 ]; then
        # The partial file was not (all) this file's: keep what is good.
        printf 'note: %s does not match the file from byte %s; downloading from there\n' "$PART" "$BAD_AT" >&2
        truncate -s "$BAD_AT" -- "$PART" || die 3 "cannot write $PART"
        HOW="$HOW; bytes from $(human "$BAD_AT") downloaded again"
        fetch
        verify || die 7 "$PART does not match the file on the server (from byte $BAD_AT)"
    else
        die 7 "$PART does not match the file on the server (from byte $BAD_AT)"
    fi
fi
mv -f -- "$PART" "$OUT" || die 3 "cannot move $PART to $OUT"
[ -n "$HASHING" ] || printf 'note: %s not found: only the size was checked\n' "$B3SUM" >&2
printf 'downloaded %s (%s, %s; verified: %s)\n' "$OUT" "$(human "$SIZE")" "$HOW" "$CHECKS" >&2
printf '%s\n' "$OUT"
