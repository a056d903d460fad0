#!/usr/bin/env bash
# Installs what building and testing depot needs, each prerequisite detected
# by what its user really loads, not by a look-alike file.
#
#   .ci/deps.sh build     what `make run` needs: libclang for RocksDB's bindgen
#   .ci/deps.sh test      that, and what the Rust test suite runs (curl,
#                         PostgreSQL's initdb/pg_ctl for the metadata tests, and
#                         Garage GARAGE_VERSION, the S3 engine of tests/s3_*.rs)
#   .ci/deps.sh check     prints what `test` would install, installs nothing
#
# The interop and client harnesses (tests/interop/run.sh, clients/run_tests.sh,
# fuzz/run.sh) install their own tools the same way, each where it is used.
#
# ROOT (default /) is the file-system root the checks look under; the test
# in tests/setup/ points it at a fake root to prove the detection.
set -euo pipefail

ROOT="${ROOT:-/}"
ROOT="${ROOT%/}"

# bindgen (through clang-sys) loads libclang.so at build time and needs
# clang's own headers beside it. Debian ships both in libclang-dev; the base
# image's libclang-cpp14 (libclang-cpp.so.14) is a different library that
# bindgen cannot use. A set LIBCLANG_PATH is the user's own choice: trusted.
have_libclang() {
  if [[ -n "${LIBCLANG_PATH:-}" ]]; then
    [[ -e "$LIBCLANG_PATH/libclang.so" ]] || compgen -G "$LIBCLANG_PATH/libclang.so.*" >/dev/null
    return
  fi
  if [[ -f "$ROOT/var/lib/dpkg/status" ]]; then
    # Debian: the package is the honest test (it brings the headers too).
    awk -v RS= '/(^|\n)Package: libclang-dev\n/ && /\nStatus: install ok installed/ {found=1} END {exit !found}' \
      "$ROOT/var/lib/dpkg/status"
    return
  fi
  # Elsewhere: an unversioned libclang.so where clang-sys looks for it.
  compgen -G "$ROOT/usr/lib/llvm-*/lib/libclang.so" >/dev/null ||
    compgen -G "$ROOT/usr/lib*/libclang.so" >/dev/null ||
    compgen -G "$ROOT/usr/lib/*-linux-gnu/libclang.so" >/dev/null
}

# A command on PATH (or at ROOT's /usr/bin when ROOT is not /).
have_command() {
  if [[ "$ROOT" == "" ]]; then command -v "$1" >/dev/null; else [[ -x "$ROOT/usr/bin/$1" ]]; fi
}

# Garage, the reference S3 engine, pinned: built from crates.io (about ten
# minutes on two cores) only when `garage --version` is missing or another
# version. Its build has a target dir of its own, never the project's.
GARAGE_VERSION=2.5.0
have_garage() {
  local v
  v="$(garage --version 2>/dev/null)" || return 1
  [[ "$v" =~ (^|[^0-9.])${GARAGE_VERSION//./\\.}([^0-9.]|$) ]]
}

install_garage() {
  have_garage && return
  command -v cargo >/dev/null || {
    echo "deps: cargo is needed to install garage" >&2
    return 1
  }
  echo "deps: installing garage $GARAGE_VERSION (cargo install, about ten minutes)"
  local target
  target="$(mktemp -d)"
  CARGO_TARGET_DIR="$target" cargo install garage --locked --version "$GARAGE_VERSION"
  rm -rf "$target"
  have_garage || {
    echo "deps: garage --version still is not $GARAGE_VERSION: $(garage --version 2>&1)" >&2
    return 1
  }
}

# The PostgreSQL tests start their own server with initdb and pg_ctl, which
# Debian keeps under /usr/lib/postgresql/<version>/bin (not on PATH).
have_postgres() {
  compgen -G "$ROOT/usr/lib/postgresql/*/bin/initdb" >/dev/null && return
  [[ "$ROOT" == "" ]] && command -v initdb >/dev/null
}

mode="${1:-build}"
missing=()
have_libclang || missing+=(libclang-dev)
if [[ "$mode" != build ]]; then
  have_command curl || missing+=(curl)
  # Tests count a file's pages in the page cache with fincore.
  have_command fincore || missing+=(util-linux-extra)
  have_postgres || missing+=(postgresql)
fi

case "$mode" in
  check)
    if ((${#missing[@]})); then echo "missing: ${missing[*]}"; else echo "missing: none"; fi
    ;;
  build | test)
    if ((${#missing[@]})); then
      echo "deps: installing ${missing[*]}"
      if [[ "$(id -u)" == 0 ]]; then sudo=(); else sudo=(sudo); fi
      "${sudo[@]}" apt-get update -qq
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    if [[ "$mode" == test ]]; then
      install_garage
    fi
    ;;
  *)
    echo "usage: $0 [build|test|check]" >&2
    exit 2
    ;;
esac
