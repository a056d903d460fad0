#!/usr/bin/env bash
# Proves the Dockerfile without a container engine that can run images:
#
#   1. a Debian bookworm base made with debootstrap from the configured apt
#      mirror, cached outside the checkout (once per machine) and imported
#      into podman;
#   2. `podman build` of the Dockerfile's runtime stage with the depot binary
#      the tests built (BINARY=prebuilt: no compiling inside);
#   3. the image's root filesystem, exported, runs the image's own
#      ENTRYPOINT + CMD as its USER, with its ENV and WORKDIR, under
#      chroot in fresh mount, PID, network, UTS and IPC namespaces, with a
#      volume on /data; the HEALTHCHECK command must pass, an upload must
#      survive a stop with the image's STOPSIGNAL and a start, and come back
#      byte for byte.
#
#   .ci/container_test.sh [DEPOT_BINARY]
#
# Installs the tools it needs with apt-get when they are missing; skips
# (exit 0, saying why) without root, or without apt-get to install them;
# DEPOT_CONTAINER_TEST=require (set by .ci/run) turns a skip into a failure.
# Environment: DEPOT_BIN (the binary; default $CARGO_TARGET_DIR/debug/depot),
# DEPOT_CONTAINER_CACHE (default ~/.cache/depot-container), DEBIAN_MIRROR
# (default: the bookworm mirror apt is configured with), PODMAN_STORAGE_DRIVER
# (passed to podman as --storage-driver; default: podman's own), DEPOT_CONTAINER_VERBOSE
# (print the server's log at the end).
#
# Why chroot isolation for RUN steps: crun refuses cgroups in hybrid mode
# ("cgroups in hybrid mode not supported"), which some machines have; the
# Dockerfile's one RUN step (useradd) needs no more than chroot.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start_all=$(date +%s)

skip() {
  if [ "${DEPOT_CONTAINER_TEST:-}" = require ]; then
    echo "container test: FAILED: $*" >&2
    exit 1
  fi
  echo "container test: SKIPPED: $*" >&2
  exit 0
}
fail() {
  echo "container test: FAILED: $*" >&2
  exit 1
}
step() { echo "container test: $*" >&2; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot and namespaces)"
# Each tool and the Debian package that has it.
tools=(podman:podman debootstrap:debootstrap unshare:util-linux nsenter:util-linux chroot:coreutils
  curl:curl python3:python3 ip:iproute2 flock:util-linux docker-compose:docker-compose)
missing_tools() {
  missing=()
  for t in "${tools[@]}"; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t##*:}")
  done
}
missing_tools
# Installed where missing, like the other harnesses' tools, where apt-get is
# there to do it (as root, which this test needs anyway).
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
  step "installing ${packages[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >/dev/null \
    || fail "apt-get install ${packages[*]} failed"
  missing_tools
fi
[ ${#missing[@]} -eq 0 ] || skip "missing, and no apt-get to install them: $(printf '%s\n' "${missing[@]}" | sort -u | xargs)"

bin="${1:-${DEPOT_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/depot-target}/debug/depot}}"
[ -x "$bin" ] || fail "no depot binary at $bin (build it first: cargo build --bin depot)"

podman=(podman)
if [ -n "${PODMAN_STORAGE_DRIVER:-}" ]; then podman+=(--storage-driver "$PODMAN_STORAGE_DRIVER"); fi

cache="${DEPOT_CONTAINER_CACHE:-$HOME/.cache/depot-container}"
mkdir -p "$cache"
# Bump when the way the base is made changes.
base_version=1
base_tar="$cache/debian-bookworm-minbase-v$base_version.tar"
base_image="localhost/depot-base:bookworm-v$base_version"

# The bookworm mirror apt uses here (deb822 .sources or one-line lists).
mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  python3 - <<'EOF'
import glob, re
found = None
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
        if "bookworm" in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
            found = found or fields.get("URIs", "").split()[0]
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        for line in open(path):
            parts = re.sub(r"\[[^]]*\]", "", line).split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == "bookworm":
                found = found or parts[1]
    except OSError:
        pass
print(found or "http://deb.debian.org/debian")
EOF
}

# 1. The base: debootstrap once per machine (under a lock: two runs at once
# wait for one debootstrap), trimmed like the slim images; then imported.
(
  flock 9
  if [ ! -s "$base_tar" ]; then
    m="$(mirror)"
    step "making the Debian bookworm base with debootstrap from $m (once per machine; cached in $cache)"
    t0=$(date +%s)
    root="$(mktemp -d "$cache/rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase bookworm "$root" "$m" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; fail "debootstrap failed (log: $cache/debootstrap.log)"; }
    # What debian:bookworm-slim leaves out: documentation, man pages,
    # translations, apt's package lists and downloaded packages.
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
      "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    tar --numeric-owner -C "$root" -cf "$base_tar.part" .
    mv "$base_tar.part" "$base_tar"
    rm -rf "$root"
    trap - EXIT
    step "base made in $(($(date +%s) - t0)) s ($(du -h "$base_tar" | cut -f1))"
  fi
  if ! "${podman[@]}" image exists "$base_image"; then
    step "importing the base into podman as $base_image"
    "${podman[@]}" import --quiet --change 'CMD ["bash"]' "$base_tar" "$base_image" >/dev/null
  fi
) 9>"$cache/.lock"

# compose.yaml against the Compose schema (docker-compose is one of the
# tools above).
(cd "$repo" && docker-compose -f compose.yaml config -q) || fail "compose.yaml does not validate"
step "compose.yaml validates (docker-compose config)"

work="$(mktemp -d "${TMPDIR:-/tmp}/depot-container.XXXXXX")"
tag="localhost/depot-container-test:$$"
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  "${podman[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
  # The stages' images this build left (untagged), and only those.
  if [ -n "${dangling_before+set}" ]; then
    for image in $("${podman[@]}" images -q --filter dangling=true 2>/dev/null); do
      grep -qx "$image" <<<"$dangling_before" || "${podman[@]}" rmi -f "$image" >/dev/null 2>&1 || true
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# 2. The runtime stage over the binary the tests built.
mkdir "$work/context"
cp "$bin" "$work/context/depot"
commit="$("$bin" --version | sed -n 's/.*(\(.*\)).*/\1/p')"
step "podman build of the runtime stage (BINARY=prebuilt, base $base_image)"
t0=$(date +%s)
dangling_before="$("${podman[@]}" images -q --filter dangling=true)"
"${podman[@]}" build --quiet --format docker --isolation chroot --pull=never \
  -f "$repo/Dockerfile" --build-arg BINARY=prebuilt --build-arg RUNTIME_BASE="$base_image" \
  --build-arg DEPOT_COMMIT="$commit" -t "$tag" "$work/context" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; fail "podman build failed"; }
build_secs=$(($(date +%s) - t0))

# What the image says about itself.
"${podman[@]}" image inspect "$tag" >"$work/inspect.json"
python3 - "$work/inspect.json" "$work" <<'EOF'
import json, shlex, sys
image = json.load(open(sys.argv[1]))[0]
c, work = image["Config"], sys.argv[2]
def check(ok, what):
    if not ok:
        sys.exit(f"container test: FAILED: the image {what}: {json.dumps(c, indent=1)}")
env = dict(e.split("=", 1) for e in c.get("Env", []))
user = c.get("User", "")
check(user not in ("", "root", "0") and not user.startswith(("root:", "0:")), "runs as root")
check(c.get("Entrypoint") == ["depot"] and c.get("Cmd") == ["serve"], "does not start `depot serve`")
check("8080/tcp" in c.get("ExposedPorts", {}), "does not expose 8080")
check("/data" in c.get("Volumes", {}), "has no /data volume")
check(env.get("DEPOT_LISTEN") == "0.0.0.0:8080" and env.get("DEPOT_DATA_DIR") == "/data", "lacks the listen/data env")
check(env.get("DEPOT_AUTH_MODE") == "token", "is not in token auth mode")
# depot stops gracefully on SIGTERM and SIGINT (src/main.rs, shutdown_signal).
check(c.get("StopSignal") in ("SIGTERM", "SIGINT", "15", "2"), "stops with a signal depot does not handle")
hc = image.get("Healthcheck") or c.get("Healthcheck") or {}
test = hc.get("Test", [])
check(test[:1] in (["CMD"], ["CMD-SHELL"]) and "health" in " ".join(test), "has no HEALTHCHECK on /healthz")
health = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
with open(f"{work}/image.env", "w") as f:
    f.write(f"image_user={shlex.quote(user)}\n")
    f.write(f"image_workdir={shlex.quote(c.get('WorkingDir') or '/')}\n")
    f.write(f"image_stopsignal={shlex.quote(c.get('StopSignal') or 'SIGTERM')}\n")
    f.write("image_env=(" + " ".join(shlex.quote(e) for e in c.get("Env", [])) + ")\n")
    f.write("image_argv=(" + " ".join(shlex.quote(a) for a in c["Entrypoint"] + c.get("Cmd", [])) + ")\n")
    f.write("image_health=(" + " ".join(shlex.quote(a) for a in health) + ")\n")
EOF
# shellcheck source=/dev/null
. "$work/image.env"

# 3. The root filesystem, exported; the volume starts as the image's /data
# (as a named volume does: contents and ownership).
cid="$("${podman[@]}" create "$tag")"
mkdir "$work/rootfs"
"${podman[@]}" export "$cid" | tar -C "$work/rootfs" -x
"${podman[@]}" rm "$cid" >/dev/null 2>&1 || true
root="$work/rootfs"
cp -a "$root/data" "$work/volume"

# USER as uid:gid, looked up in the image's own files.
lookup() { # file name → id
  awk -F: -v n="$2" '$1 == n { print $3; exit }' "$1"
}
user_part="${image_user%%:*}"
group_part="${image_user#*:}"
[ "$group_part" = "$image_user" ] && group_part=
uid="$user_part"
[[ "$uid" =~ ^[0-9]+$ ]] || uid="$(lookup "$root/etc/passwd" "$user_part")"
[ -n "$uid" ] || fail "user $user_part is not in the image's /etc/passwd"
if [ -n "$group_part" ]; then
  gid="$group_part"
  [[ "$gid" =~ ^[0-9]+$ ]] || gid="$(lookup "$root/etc/group" "$group_part")"
else
  gid="$(awk -F: -v u="$uid" '$3 == u { print $4; exit }' "$root/etc/passwd")"
fi
[ -n "$gid" ] || fail "no group for $image_user in the image"

# Starts the image's command in fresh namespaces, where it is pid 1; sets
# server_pid (unshare, which waits for it) and inner_pid (the server).
start() {
  : >"$work/server.log"
  unshare --mount --uts --ipc --net --pid --fork --kill-child --propagation private \
    /bin/bash -c '
      set -e
      root="$1"; volume="$2"; shift 2
      mount -t proc proc "$root/proc"
      mount --rbind /dev "$root/dev"
      mount --bind "$volume" "$root/data"
      ip link set lo up
      exec "$@"' _ "$root" "$work/volume" \
    chroot --userspec="$uid:$gid" --groups="$gid" "$root" \
    /usr/bin/env -i -C "$image_workdir" "${image_env[@]}" "${image_argv[@]}" \
    >>"$work/server.log" 2>&1 &
  server_pid=$!
  # unshare's forked child: pid 1 inside, the server once it has exec'd.
  inner_pid=
  for _ in $(seq 1 100); do
    inner_pid="$(pgrep -P "$server_pid" | head -n1 || true)"
    [ -n "$inner_pid" ] && break
    sleep 0.1
  done
  [ -n "$inner_pid" ] || { cat "$work/server.log" >&2; fail "the server did not start"; }
  # The HEALTHCHECK command, as the engine would run it, until it passes.
  local deadline=$(($(date +%s) + 60))
  until nsenter --net="/proc/$inner_pid/ns/net" --mount="/proc/$inner_pid/ns/mnt" \
    chroot --userspec="$uid:$gid" --groups="$gid" "$root" \
    /usr/bin/env -i -C "$image_workdir" "${image_env[@]}" "${image_health[@]}" >/dev/null 2>&1; do
    kill -0 "$inner_pid" 2>/dev/null || { cat "$work/server.log" >&2; fail "the server exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$work/server.log" >&2; fail "the HEALTHCHECK never passed"; }
    sleep 0.2
  done
}

# Stops with the image's STOPSIGNAL; the server must exit 0 (graceful).
stop() {
  local sig="${image_stopsignal#SIG}"
  kill -s "$sig" "$inner_pid"
  local status=0
  wait "$server_pid" || status=$?
  server_pid=
  [ "$status" = 0 ] || { cat "$work/server.log" >&2; fail "exit status $status after SIG$sig (expected 0)"; }
}

# curl inside the container's network namespace, with the admin token the
# server wrote into the volume (token auth mode) on every request.
api() {
  local auth=(-H "Authorization: Bearer $(tr -d '[:space:]' <"$work/volume/admin.token")")
  nsenter --net="/proc/$inner_pid/ns/net" curl -sS --fail-with-body "${auth[@]}" "$@"
}

step "starting the image's command (${image_argv[*]}) as $image_user ($uid:$gid) under chroot and namespaces"
t0=$(date +%s)
start
start_secs=$(($(date +%s) - t0))
[ "$(awk '/^Uid:/ { print $2 }' "/proc/$inner_pid/status")" = "$uid" ] || fail "the server does not run as uid $uid"
[ -f "$work/volume/admin.token" ] || fail "no admin.token in the volume (token auth mode writes one on first start)"
step "token auth: $work/volume/admin.token is there; every request sends it"
[ "$(stat -c %a "$work/volume/admin.token")" = 600 ] || fail "admin.token is not mode 0600"
grep -q "admin.token" "$work/server.log" || fail "the server did not log where the admin token is"
code="$(nsenter --net="/proc/$inner_pid/ns/net" curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/files)"
[ "$code" = 401 ] || fail "a request without a token got $code (expected 401)"
api http://127.0.0.1:8080/healthz >/dev/null
api http://127.0.0.1:8080/readyz >/dev/null
head -c 3145728 /dev/urandom >"$work/upload.bin"
id="$(api --data-binary @"$work/upload.bin" "http://127.0.0.1:8080/api/files/upload?filename=upload.bin" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
[ -n "$id" ] || fail "the upload returned no id"
stop
grep -q "shutting down" "$work/server.log" || fail "no graceful shutdown in the log"

step "restarting over the same volume"
start
api -o "$work/download.bin" "http://127.0.0.1:8080/api/files/$id"
cmp "$work/upload.bin" "$work/download.bin" || fail "the download differs from the upload"
files="$(api http://127.0.0.1:8080/api/stats | python3 -c 'import json, sys; print(json.load(sys.stdin)["files"])')"
[ "$files" = 1 ] || fail "stats count $files files after the restart"
stop
[ "$(stat -c %u "$work/volume/meta")" = "$uid" ] || fail "the store in the volume is not owned by the image user"

[ -n "${DEPOT_CONTAINER_VERBOSE:-}" ] && cat "$work/server.log" >&2
[ -n "${DEPOT_CONTAINER_VERBOSE:-}" ] && "${podman[@]}" image ls "$tag" >&2
step "passed: podman build ${build_secs} s, start to healthy ${start_secs} s, total $(($(date +%s) - start_all)) s"
