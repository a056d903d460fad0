#!/usr/bin/env bash
# Proves .ci/deps.sh's detection on fake file-system roots (a fresh machine
# of the project's kind ships libclang-cpp14, which bindgen cannot use), then
# that the real machine has what the build loads after `make deps`.
# Prints "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pass=0
fail=0

expect() { # label, want, root, [env...]
  local label="$1" want="$2" root="$3"
  shift 3
  local got
  got="$(env -u LIBCLANG_PATH "$@" ROOT="$root" "$here/deps.sh" check)"
  if [[ "$got" == "$want" ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $label: want '$want', got '$got'" >&2
  fi
}

status_of() { # root, package...
  mkdir -p "$1/var/lib/dpkg"
  local root="$1"
  shift
  : >"$root/var/lib/dpkg/status"
  for p in "$@"; do
    printf 'Package: %s\nStatus: install ok installed\nVersion: 1\n\n' "$p" >>"$root/var/lib/dpkg/status"
  done
}

with_curl() {
  mkdir -p "$1/usr/bin" && touch "$1/usr/bin/curl" "$1/usr/bin/fincore" && chmod +x "$1/usr/bin/curl" "$1/usr/bin/fincore"
  with_pg "$1"
}
with_pg() { mkdir -p "$1/usr/lib/postgresql/15/bin" && touch "$1/usr/lib/postgresql/15/bin/initdb"; }

# The fresh base image: libclang-cpp only. The old check took it for libclang.
r="$work/fresh"
status_of "$r" libclang-cpp14 libllvm14 curl
mkdir -p "$r/usr/lib/llvm-14/lib" && touch "$r/usr/lib/llvm-14/lib/libclang-cpp.so.14"
with_curl "$r"
expect "fresh image" "missing: libclang-dev" "$r"

# A removed package leaves its status entry with another state.
r="$work/removed"
status_of "$r" libclang-cpp14
printf 'Package: libclang-dev\nStatus: deinstall ok config-files\n\n' >>"$r/var/lib/dpkg/status"
with_curl "$r"
expect "deinstalled libclang-dev" "missing: libclang-dev" "$r"

r="$work/installed"
status_of "$r" libclang-cpp14 libclang-dev
with_curl "$r"
expect "libclang-dev installed" "missing: none" "$r"

r="$work/nocurl"
status_of "$r" libclang-dev
with_curl "$r"
rm "$r/usr/bin/curl"
expect "curl missing" "missing: curl" "$r"

r="$work/nopg"
status_of "$r" libclang-dev
with_curl "$r"
rm -r "$r/usr/lib/postgresql"
expect "postgresql missing" "missing: postgresql" "$r"

r="$work/nofincore"
status_of "$r" libclang-dev
with_curl "$r"
rm "$r/usr/bin/fincore"
expect "fincore missing" "missing: util-linux-extra" "$r"

# No dpkg: an unversioned libclang.so where clang-sys looks.
r="$work/other-distro"
mkdir -p "$r/usr/lib/llvm-16/lib" && touch "$r/usr/lib/llvm-16/lib/libclang-cpp.so.16"
with_curl "$r"
expect "other distro, libclang-cpp only" "missing: libclang-dev" "$r"
touch "$r/usr/lib/llvm-16/lib/libclang.so"
expect "other distro, libclang.so" "missing: none" "$r"

# LIBCLANG_PATH is the user's choice, and must hold the library.
r="$work/libclang-path"
status_of "$r"
with_curl "$r"
mkdir -p "$work/lc"
expect "LIBCLANG_PATH without the library" "missing: libclang-dev" "$r" LIBCLANG_PATH="$work/lc"
touch "$work/lc/libclang.so.1"
expect "LIBCLANG_PATH with the library" "missing: none" "$r" LIBCLANG_PATH="$work/lc"

# This machine, after `make deps`: nothing left to install.
if [[ -z "${LIBCLANG_PATH:-}" ]]; then
  expect "this machine" "missing: none" /
fi

echo "deps: $pass passed, $fail failed"
((fail == 0))
