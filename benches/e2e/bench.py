#!/usr/bin/env python3
"""End-to-end benchmark of depot against real peers.

Run through run.sh, which installs the peers first; see README.md for what
each scenario measures. Every figure is the median of --runs measured rounds
after --warmup discarded ones, with the min-max beside it; within a scenario
depot and its references are measured alternately, round after round
(A B A B ...), and the ratio is the ratio of the medians. Nothing here
asserts a time: the result is a table, with every round's value and the
per-round ratios under it, printed and written to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import http.client
import json
import os
import platform
import pwd
import queue
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# S1's corpus: successive releases of two npm packages, as uncompressed tar.
CORPUS = [
    ("typescript", ["5.4.2", "5.4.3", "5.4.4", "5.4.5", "5.5.2", "5.5.3", "5.5.4"]),
    ("prettier", ["3.3.0", "3.3.1", "3.3.2", "3.3.3", "3.4.0", "3.4.1", "3.4.2"]),
]
RESTIC_PASSWORD = "depot-bench"
# ext4 without a journal does not reuse an inode freed less than 60 s ago, or
# 360 s while its inode table block is dirty (fs/ext4/ialloc.c,
# recently_deleted: RECENTCY_MIN + RECENTCY_DIRTY); it scans past them, and a
# cold upload's one file per chunk pays for it. Cold uploads start this long
# after the last removal of stores (by this run or the one before).
INODE_SETTLE = 360
# Touched whenever stores are removed: set from the cache dir in main().
REMOVED_MARK: Path | None = None

# S2: small chunks, so that ~128 MiB of random data makes > 100k chunks.
S2_CHUNKING = {"min": 256, "avg": 1024, "max": 4096}
S2_BYTES = 128 * MiB
S2_MIN_CHUNKS = 100_000
S2_QUERY = 10_000  # half present, half absent

# 10,000 ranges take about 1 s against depot: 1,000 (0.1 s, the first
# definition) moved the ratio between 0.50× and 0.75× from run to run.
D2_REQUESTS = 10_000
D2_RANGE = 64 * KiB
D2_CONNECTIONS = 4

C1_CLIENTS = 32
M1_FACTOR = 8
M1_LIMIT_MIB = 128


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- sizes, stats


def parse_size(s: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {s!r} (e.g. 1G, 128M, 512MiB)")
    mult = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1 << 40}[m.group(2).lower()]
    n = int(float(m.group(1)) * mult)
    if n < MiB:
        raise argparse.ArgumentTypeError("the size must be at least 1 MiB")
    return n


def human(n: float) -> str:
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= div:
            v = n / div
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.2f} {unit}"
    return f"{n:.0f} B"


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


@dataclass
class Stat:
    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, f: Callable[[float], str] = fmt) -> str:
        lo, hi = min(self.values), max(self.values)
        return f"{f(self.median)} ({f(lo)}–{f(hi)})"


class Samples:
    def __init__(self) -> None:
        self.d: dict[str, list[float]] = {}

    def add(self, key: str, v: float) -> None:
        self.d.setdefault(key, []).append(v)

    def get(self, key: str) -> Stat | None:
        v = self.d.get(key)
        return Stat(v) if v else None


@dataclass
class Row:
    id: str
    figure: str
    depot: str
    reference: str = "—"
    ratio: str = "—"
    goal: str = "—"
    met: str = "—"


# ---------------------------------------------------------------- processes


class Cleanup:
    """Everything to stop or delete, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.paths: list[Path] = []

    def proc(self, p: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(p)
        return p

    def path(self, p: Path) -> Path:
        self.paths.append(p)
        return p

    def stop(self, p: subprocess.Popen, grace: float = 20.0) -> None:
        """SIGTERM to the process group we started, then SIGKILL."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def all(self) -> None:
        for p in list(self.procs):
            try:
                self.stop(p, grace=5.0)
            except Exception:  # noqa: BLE001 - best effort while tearing down
                pass
        for path in reversed(self.paths):
            shutil.rmtree(path, ignore_errors=True)
        if self.paths:
            mark_removed()
        self.paths.clear()


CLEANUP = Cleanup()


def rm(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        # rm(1) is much faster than shutil.rmtree on a store of 100k objects.
        if subprocess.run(["rm", "-rf", "--", str(path)], stdin=subprocess.DEVNULL).returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
        mark_removed()
    else:
        path.unlink(missing_ok=True)


def mark_removed() -> None:
    """Records that directories of files (stores) were just removed."""
    if REMOVED_MARK is not None:
        REMOVED_MARK.touch()


def filesystem(path: Path) -> list[str]:
    """`path`'s device, filesystem type and size in bytes (`df`); fewer
    fields when `df` cannot say."""
    out = subprocess.run(["df", "-B1", "--output=source,fstype,size", str(path)], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL).stdout
    return out.splitlines()[-1].split() if out.strip() else []


def skips_recent_inodes(path: Path) -> bool:
    """Whether `path` is on ext4 without a journal (see INODE_SETTLE)."""
    fs = filesystem(path)
    if len(fs) < 2 or fs[1] != "ext4":
        return False
    task = Path("/sys/fs/ext4") / Path(fs[0]).name / "journal_task"
    return task.exists() and task.read_text().strip() == "<none>"


def run(cmd: list[str], timeout: float, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{Path(cmd[0]).name} timed out after {timeout:.0f} s") from e
    if r.returncode != 0:
        tail = (r.stderr or r.stdout or "").strip().splitlines()[-3:]
        raise BenchError(f"{' '.join(map(str, cmd[:3]))}… exited {r.returncode}: {' | '.join(tail)}")
    return r


def timed(cmd: list[str], timeout: float, **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one command, after a sync so that nobody pays for the
    previous step's dirty pages."""
    os.sync()
    t = time.perf_counter()
    r = run(cmd, timeout, **kw)
    return time.perf_counter() - t, r


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (nginx's master and its workers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def set_threads_affinity(pids: list[int], cpus: set[int]) -> None:
    """Every thread of `pids` and of the processes below them on `cpus`
    (sched_setaffinity(2) of each task: a thread started later inherits its
    creator's)."""
    for pid in pids:
        for p in process_tree(pid):
            try:
                tids = [int(t.name) for t in Path(f"/proc/{p}/task").iterdir()]
            except OSError:
                continue
            for tid in tids:
                try:
                    os.sched_setaffinity(tid, cpus)
                except OSError:
                    pass  # the thread ended meanwhile


class CpuEach:
    """The clients on one CPU and the servers on another, for a step: what
    D1's verified download does when neither side takes the other's core.
    With `pinned` false both methods leave everything where the kernel puts
    it, so one step serves both placements."""

    def __init__(self) -> None:
        self.every = os.sched_getaffinity(0)
        cpus = sorted(self.every)
        self.ok = len(cpus) >= 2 and shutil.which("taskset") is not None
        self.client_cpu, self.server_cpu = (cpus[0], cpus[1]) if self.ok else (0, 0)

    def client(self, pinned: bool) -> list[str]:
        """The prefix of a client's command (`taskset`)."""
        return ["taskset", "-c", str(self.client_cpu)] if pinned else []

    @contextlib.contextmanager
    def servers(self, pids: list[int], pinned: bool) -> Iterator[None]:
        """`pids` on the server CPU for the block, every CPU again after."""
        if not pinned:
            yield
            return
        set_threads_affinity(pids, {self.server_cpu})
        try:
            yield
        finally:
            set_threads_affinity(pids, self.every)


def child_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have
    ended and been waited for, their own children included: taken before
    and after a client command, the command's CPU time."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no JSON line in output: {text[-200:]!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Server:
    """A server process in its own process group, its stderr drained."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.p: subprocess.Popen | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.tail: list[str] = []

    def _spawn(self, cmd: list[str], env: dict | None = None, cwd: Path | None = None, ready: str | None = None,
               stream: str = "stderr", timeout: float = 60) -> re.Match | None:
        self.p = CLEANUP.proc(subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
            stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stream == "stderr" else subprocess.STDOUT))
        pipe = self.p.stdout if stream == "stdout" else self.p.stderr

        def drain() -> None:
            for line in pipe:
                self.lines.put(line)
                self.tail = (self.tail + [line.rstrip()])[-20:]
            self.lines.put("")

        threading.Thread(target=drain, daemon=True).start()
        if ready is None:
            return None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name} did not start in {timeout:.0f} s: {self.tail[-3:]}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line == "" and self.p.poll() is not None:
                raise BenchError(f"{self.name} exited {self.p.returncode}: {' | '.join(self.tail[-3:])}")
            m = re.search(ready, line)
            if m:
                return m

    def stop(self) -> None:
        if self.p is not None:
            CLEANUP.stop(self.p)
            self.p = None

    def cpu_s(self) -> float:
        """The CPU seconds so far of the process this started, all its
        threads (`/proc/PID/stat` utime + stime); not of its children, so
        not of nginx's workers."""
        fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def depot_put(ctx: Ctx, url: str, path: Path, timeout: float) -> tuple[float, dict]:
    """`depot put --json` of `path` to `url`: seconds and its report, whose
    size must be the file's."""
    secs, r = timed([ctx.depot, "--server", url, "put", "--json", str(path)], timeout)
    rep = last_json(r.stdout)
    if rep.get("size") != path.stat().st_size:
        raise BenchError(f"depot put reported size {rep.get('size')} for {path.stat().st_size} bytes")
    return secs, rep


class Depot(Server):
    def __init__(self, ctx: Ctx, data: Path, env: dict | None = None, config: Path | None = None) -> None:
        super().__init__("depot")
        self.ctx, self.data, self.extra, self.config = ctx, data, env or {}, config
        self.url = ""
        # The last `put`'s CPU seconds: the client's, the server's.
        self.last_cpu = (0.0, 0.0)

    def start(self) -> Depot:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
        env.update({"DEPOT_RATE_LIMIT": "false", "DEPOT_LOG": "warn"})
        env.update(self.ctx.depot_env)
        env.update(self.extra)
        cmd = [self.ctx.depot, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data)]
        if self.config:
            cmd += ["--config", str(self.config)]
        m = self._spawn(cmd, env=env, ready=r"depot listening on (http://\S+)")
        self.url = m.group(1)
        return self

    def vmhwm_mib(self) -> float:
        status = Path(f"/proc/{self.p.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def bytes_in(self) -> int:
        text = http_get(self.url + "/metrics").decode()
        return int(re.search(r"^depot_http_request_bytes_total (\d+)", text, re.M).group(1))

    def stats(self) -> dict:
        return json.loads(http_get(self.url + "/api/stats"))

    def chunking(self) -> dict:
        return json.loads(http_get(self.url + "/api/chunking"))

    def put(self, path: Path, timeout: float) -> tuple[float, dict, int]:
        """`depot put --json`: seconds, its report, request bytes the server received."""
        b0 = self.bytes_in()
        c0, s0 = child_cpu(), self.cpu_s()
        secs, rep = depot_put(self.ctx, self.url, path, timeout)
        self.last_cpu = (child_cpu() - c0, self.cpu_s() - s0)
        return secs, rep, self.bytes_in() - b0

    def expect(self, files: int, logical: int) -> None:
        st = self.stats()
        if st["files"] != files or st["logical_bytes"] != logical:
            raise BenchError(f"the server holds {st['files']} files / {st['logical_bytes']} bytes, "
                             f"expected {files} / {logical}")


class Cluster:
    """`n` depot nodes on one shared store (`DEPOT_SHARED=true`, the same
    metadata and bucket in `env`) behind an nginx load balancer: `url`,
    `put`, `stats` and `expect` as a single `Depot`'s, through the balancer,
    so a `depot put`'s requests spread over the nodes round robin."""

    def __init__(self, ctx: Ctx, data: Path, env: dict, n: int) -> None:
        self.nodes = [Depot(ctx, data / f"node{i}", dict(env, DEPOT_SHARED="true")) for i in range(n)]
        self.ctx, self.lb, self.url = ctx, None, ""

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        self.lb = Nginx(self.ctx, self.ctx.work, [node.url for node in self.nodes]).start()
        self.url = self.lb.url
        return self

    def put(self, path: Path, timeout: float) -> tuple[float, dict, int]:
        """As `Depot.put`, through the balancer (no byte count: see `bytes_in`)."""
        secs, rep = depot_put(self.ctx, self.url, path, timeout)
        return secs, rep, 0

    def stats(self) -> dict:
        return self.nodes[0].stats()

    def expect(self, files: int, logical: int) -> None:
        self.nodes[0].expect(files, logical)

    def bytes_in(self) -> list[int]:
        """Request body bytes each node has received so far."""
        return [node.bytes_in() for node in self.nodes]

    def stop(self) -> None:
        if self.lb is not None:
            self.lb.stop()
        for node in self.nodes:
            node.stop()


class ObjServe(Server):
    """D1's layout reference: `objserve.py`, a plain server that reads one
    file's chunks from a depot store's object directory (pack records or
    a file per chunk), as depot's cached download reads them, and checks
    nothing."""

    def __init__(self, objects: Path, manifest: Path) -> None:
        super().__init__("objserve")
        self.objects, self.manifest = objects, manifest
        self.url = ""

    def start(self) -> ObjServe:
        m = self._spawn([sys.executable, str(HERE / "objserve.py"), str(self.objects), str(self.manifest)],
                        ready=r"objserve listening on (http://\S+)", stream="stdout")
        self.url = m.group(1)
        return self


class Nginx(Server):
    """nginx serving `root`, or, given `upstreams` (base URLs), a load
    balancer in front of them: round robin, request and response buffering
    off (as docs/DEPLOY.md asks), keep-alive connections to the nodes."""

    def __init__(self, ctx: Ctx, root: Path, upstreams: list[str] | None = None) -> None:
        super().__init__("nginx")
        self.ctx, self.root, self.upstreams = ctx, root, upstreams or []
        self.url = ""

    def _http(self, port: int) -> str:
        """The `server` block (and the `upstream` a balancer needs)."""
        if not self.upstreams:
            return f"""server {{
        listen 127.0.0.1:{port};
        root {self.root};
        location / {{ }}
    }}"""
        servers = " ".join(f"server {u.split('://', 1)[1]};" for u in self.upstreams)
        return f"""upstream depot {{ {servers} keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://depot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
            client_max_body_size 0;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }}
    }}"""

    def start(self) -> Nginx:
        d = CLEANUP.path(Path(tempfile.mkdtemp(prefix="nginx-", dir=self.ctx.work)))
        for attempt in range(5):
            port = free_port()
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
            conf = d / "nginx.conf"
            conf.write_text(f"""{user}
daemon off;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    # sendfile for speed; no tcp_nopush: with it, random 64 KiB ranges over
    # keep-alive connections wait ~40 ms each for delayed ACKs (D2).
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    {self._http(port)}
}}
""")
            self._spawn([self.ctx.nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)])
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.p.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        return self
                except OSError:
                    time.sleep(0.1)
            err = (d / "error.log").read_text() if (d / "error.log").exists() else ""
            self.stop()
            if "Address already in use" not in err:
                raise BenchError(f"nginx did not start: {err.strip()[-300:]}")
        raise BenchError("nginx found no free port")


class TusPeer(Server):
    def __init__(self, ctx: Ctx, directory: Path) -> None:
        super().__init__("tus server")
        self.ctx, self.dir = ctx, directory
        self.url = ""

    def start(self) -> TusPeer:
        m = self._spawn(["node", str(HERE / "tus-server.mjs"), str(self.dir)], cwd=HERE,
                        ready=r"tus listening on (http://\S+)", stream="stdout")
        self.url = m.group(1)
        return self


# ---------------------------------------------------------------- context


@dataclass
class Ctx:
    size: int
    runs: int
    warmup: int
    only: list[str]
    work: Path
    cache: Path
    depot: str = ""
    limits: str | None = None
    nginx: str = "nginx"
    fsync_never: bool = False
    # `--depot-env`: variables every depot server gets (a scenario's own win).
    depot_env: dict[str, str] = field(default_factory=dict)
    deferring: bool = False
    deferred: list[Path] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    samples: Samples = field(default_factory=Samples)
    notes: list[str] = field(default_factory=list)
    elapsed: dict[str, float] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)  # sample keys the rows read, in order (with repeats)
    pairs: list[tuple[str, str, str, str, Callable[[float], bool] | None]] = field(default_factory=list)
    _base: Path | None = None
    _main: tuple[Depot, str] | None = None
    _nginx: Nginx | None = None

    def timeout(self, nbytes: int) -> float:
        """Bound for one command moving nbytes: never faster than 2 MB/s."""
        return 120 + nbytes / 2e6

    def rounds(self, label: str, steps: list[tuple[str, Callable[[bool], None]]], warmup: int | None = None) -> None:
        """Warm-up rounds, then measured rounds; each round runs every step
        in order, so the variants alternate."""
        warmup = self.warmup if warmup is None else warmup
        total = warmup + self.runs
        for r in range(total):
            keep = r >= warmup
            tag = f"{label} {'warm-up' if not keep else f'run {r - warmup + 1}/{self.runs}'}"
            for name, step in steps:
                t = time.perf_counter()
                step(keep)
                log(f"{tag}: {name} ({time.perf_counter() - t:.1f} s)")

    def discard(self, d: Path) -> None:
        """Deletes a store now, or at the end of the loop while deferring."""
        if self.deferring:
            self.deferred.append(d)
        else:
            rm(d)

    def settle(self, label: str) -> None:
        """Waits until INODE_SETTLE seconds after the last removal of
        stores, on a disk where that matters, and says so in the notes."""
        if REMOVED_MARK is None or not skips_recent_inodes(self.work):
            return
        try:
            since = time.time() - REMOVED_MARK.stat().st_mtime
        except FileNotFoundError:
            return
        if since >= INODE_SETTLE:
            return
        wait = INODE_SETTLE - since
        log(f"{label}: waiting {wait:.0f} s: stores were removed {since:.0f} s ago on ext4 without a journal")
        time.sleep(wait)
        self.notes.append(f"{label}: started {wait:.0f} s late, {INODE_SETTLE} s after stores were last removed "
                          "(ext4 without a journal skips inodes freed in the last minutes; a cold upload "
                          "allocates one per chunk).")

    def fresh(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=prefix + "-", dir=self.work))

    @property
    def base(self) -> Path:
        """The pseudo-random file of --size bytes that most scenarios use."""
        if self._base is None:
            self._base = self.work / "base.bin"
            make_random(self._base, self.size, seed=1)
        return self._base

    def main(self) -> tuple[Depot, str]:
        """A server holding the base file (for U2, U3, D1, D2): its id."""
        if self._main is None:
            srv = Depot(self, self.work / "main-data").start()
            _, rep, _ = srv.put(self.base, self.timeout(self.size))
            self._main = (srv, rep["id"])
        elif self._main[0].p is None or self._main[0].p.poll() is not None:
            self._main[0].stop()
            self._main[0].start()  # after a failed scenario
        return self._main

    def restart_main(self) -> Depot:
        srv, _ = self.main()
        srv.stop()
        srv.start()
        return srv

    def web(self) -> Nginx:
        if self._nginx is None:
            self.base  # noqa: B018 - make sure it exists
            self._nginx = Nginx(self, self.work).start()
        return self._nginx

    def release(self, later: set[str]) -> None:
        """Stops the shared servers once no later scenario needs them."""
        if self._main and not later & {"U2", "U3", "D1", "D2"}:
            self._main[0].stop()
            rm(self._main[0].data)
            self._main = None
        if self._nginx and not later & {"D1", "D2"}:
            self._nginx.stop()
            self._nginx = None

    def mbps(self, nbytes: int, secs: float) -> float:
        return nbytes / 1e6 / secs

    def stat(self, key: str) -> Stat | None:
        """A key's measured rounds; rows read their samples only through
        here, which records the key for the report's Rounds section."""
        s = self.samples.get(key)
        if s:
            self.used.append(key)
        return s


def random_blocks(size: int, seed: int, block: int = 8 * MiB):
    """Deterministic incompressible bytes in blocks: numpy's SFC64 when numpy
    is there (installed with the Python client; ~3 GB/s), else Python's
    Mersenne Twister (~0.3 GB/s)."""
    try:
        import numpy as np

        bits = np.random.SFC64(seed)

        def make(n: int) -> bytes:
            return bits.random_raw((n + 7) // 8).tobytes()[:n]
    except ImportError:
        make = random.Random(seed).randbytes
    left = size
    while left:
        n = min(left, block)
        yield make(n)
        left -= n


def make_random(path: Path, size: int, seed: int, quiet: bool = False) -> None:
    t = time.perf_counter()
    with open(path, "wb") as f:
        for b in random_blocks(size, seed):
            f.write(b)
    if not quiet:
        log(f"generated {path.name} ({human(size)}) in {time.perf_counter() - t:.1f} s")


def add_cpu(ctx: Ctx, key: str, nbytes: int, client: float, server: float) -> None:
    """One round's CPU seconds per GiB of the client and of the server."""
    ctx.samples.add(f"{key}.cpu.client", client / (nbytes / GiB))
    ctx.samples.add(f"{key}.cpu.server", server / (nbytes / GiB))


def cpu_row(ctx: Ctx, id: str, what: str, key: str) -> None:
    """A row of the client's and the server's CPU seconds per GiB, so that
    a gain in speed is not just work moved to the other side."""
    c, s = ctx.stat(f"{key}.cpu.client"), ctx.stat(f"{key}.cpu.server")
    if c and s:
        ctx.rows.append(Row(id, f"… CPU seconds per GiB, {what}: client + server", f"{c.show()} + {s.show()}"))


def ratio_row(ctx: Ctx, id: str, figure: str, key: str, ref_label: str, ref_key: str | None,
              goal: str = "—", test: Callable[[float], bool] | None = None, unit: Callable[[float], str] = fmt) -> None:
    a = ctx.stat(key)
    if a is None:
        ctx.rows.append(Row(id, figure, "not measured"))
        return
    b = ctx.stat(ref_key) if ref_key else None
    if b is None:
        ctx.rows.append(Row(id, figure, a.show(unit), goal=goal))
        return
    r = a.median / b.median
    ctx.pairs.append((id, key, ref_key, goal, test))
    met = "—" if test is None else ("yes" if test(r) else "**no**")
    ctx.rows.append(Row(id, figure, a.show(unit), f"{ref_label}: {b.show(unit)}", f"{r:.2f}×", goal, met))


# ---------------------------------------------------------------- scenarios


def uploads(ctx: Ctx, with_u1: bool, with_u4: bool, with_c1: bool) -> None:
    """U1, U4 and C1: cold uploads, each on a fresh server (or into a fresh
    directory), alternated in one loop so that they share their references:
    the tus peer (U1, U4) and one `depot put` of the base file (U1, C1)."""
    f, n = ctx.base, ctx.size

    def fresh_depot(key: str, cmd: Callable[[Depot], list[str]] | None, env: dict | None = None,
                    cwd: Path | None = None):
        def step(keep: bool) -> None:
            d = ctx.fresh("upload")
            srv = Depot(ctx, d, env).start()
            try:
                if cmd is None:
                    secs, _, wire = srv.put(f, ctx.timeout(n))
                    if keep and key == "u1":
                        add_cpu(ctx, "u1", n, *srv.last_cpu)
                else:
                    b0 = srv.bytes_in()
                    secs, _ = timed(cmd(srv), ctx.timeout(n), cwd=cwd)
                    wire = srv.bytes_in() - b0
                srv.expect(1, n)
                hwm = srv.vmhwm_mib()
            finally:
                srv.stop()
                ctx.discard(d)
            if keep:
                ctx.samples.add(key, ctx.mbps(n, secs))
                ctx.samples.add(key + ".wire", wire / n)
                if key == "u1":
                    ctx.samples.add("m1.up.1x", hwm)
        return step

    def disk(keep: bool) -> None:
        dest = ctx.work / "copy.bin"
        try:
            secs, _ = timed(["sh", "-c", 'cp "$1" "$2" && sync', "sh", str(f), str(dest)], ctx.timeout(n))
        finally:
            rm(dest)
        if keep:
            ctx.samples.add("disk", ctx.mbps(n, secs))

    def tus_peer(keep: bool) -> None:
        d = ctx.fresh("tus-peer")
        peer = TusPeer(ctx, d).start()
        try:
            secs, _ = timed(["node", str(HERE / "tus-upload.mjs"), peer.url, str(f)], ctx.timeout(n), cwd=HERE)
            stored = [p for p in d.iterdir() if not p.name.endswith(".json")]
            if len(stored) != 1 or stored[0].stat().st_size != n:
                raise BenchError(f"the tus peer stored {[(p.name, p.stat().st_size) for p in stored]}")
        finally:
            peer.stop()
            rm(d)
        if keep:
            ctx.samples.add("tus.peer", ctx.mbps(n, secs))

    steps: list[tuple[str, Callable[[bool], None]]] = []
    if with_u1 or with_c1:
        steps.append(("depot put, fresh server", fresh_depot("u1", None)))
    if with_u1:
        steps.append(("cp && sync", disk))
    if with_u1 or with_u4:
        steps.append(("tus-js-client → tus peer", tus_peer))
    if with_u1 and ctx.fsync_never:
        steps.append(("depot put, DEPOT_FSYNC=never", fresh_depot("u1.never", None, {"DEPOT_FSYNC": "never"})))
    if with_u4:
        steps += [
            ("U4 seed chunked (Python client)", fresh_depot(
                "u4.seed", lambda s: [sys.executable, "-m", "depot_client", "--server", s.url, "--no-progress",
                                      "upload", str(f), "--method", "seed", "--piece-size", "8MiB"])),
            ("U4 tus-js-client → depot", fresh_depot(
                "u4.tus", lambda s: ["node", str(HERE / "tus-upload.mjs"), s.url + "/api/tus/", str(f)], cwd=HERE)),
            ("U4 regular (curl)", fresh_depot(
                "u4.regular", lambda s: ["curl", "-sS", "-f", "-o", "/dev/null", "-X", "POST", "-T", str(f),
                                         f"{s.url}/api/files/upload?filename={f.name}"])),
        ]
    errors = [0]
    files, each = c1_files(ctx)
    if with_c1:
        steps.append((f"C1 {C1_CLIENTS} concurrent depot put", c1_step(ctx, errors)))
    label = "+".join(k for k, on in (("U1", with_u1), ("U4", with_u4), ("C1", with_c1)) if on)
    # Stores are kept until the loop ends when the disk has room: ext4 skips
    # inodes freed in the last minute when it allocates new ones, so deleting
    # a store of thousands of chunk files right before the next cold upload
    # makes that upload's one-file-per-chunk writes measurably costlier than
    # on a server whose disk has not just lost thousands of files.
    stores = sum(1 for name, _ in steps if not name.startswith(("cp", "tus-js-client → tus")))
    need = int((ctx.warmup + ctx.runs) * stores * n * 1.05)
    free = shutil.disk_usage(ctx.work).free
    ctx.deferring = free - need > max(10 * GiB, 0.05 * shutil.disk_usage(ctx.work).total)
    if not ctx.deferring:
        ctx.notes.append(f"{label}: not enough free disk ({human(free)}) to keep every round's store "
                         f"({human(need)}) until the end, so each store was deleted right after its step.")
    try:
        if with_c1:
            t = time.perf_counter()
            for k, path in enumerate(files):
                make_random(path, each, seed=2000 + k, quiet=True)
            log(f"generated {len(files)} files of {human(each)} for C1 in {time.perf_counter() - t:.1f} s")
        ctx.settle(label)
        ctx.rounds(label, steps)
    finally:
        for path in files:
            rm(path)
        ctx.deferring = False
        if ctx.deferred:
            t = time.perf_counter()
            for d in ctx.deferred:
                rm(d)
            log(f"{label}: removed {len(ctx.deferred)} stores in {time.perf_counter() - t:.1f} s")
            ctx.deferred.clear()

    tus = "tus peer (@tus/server ← tus-js-client)"
    if with_u1:
        ratio_row(ctx, "U1", f"cold upload of {human(n)}, `depot put`, MB/s", "u1", "disk limit `cp && sync`", "disk",
                  "≥ 0.6× disk", lambda r: r >= 0.6)
        ratio_row(ctx, "U1", f"cold upload of {human(n)}, `depot put`, MB/s", "u1", tus, "tus.peer",
                  "≥ 1.3× tus peer", lambda r: r >= 1.3)
        if ctx.fsync_never:
            ratio_row(ctx, "U1", "the same with `DEPOT_FSYNC=never` (extra), MB/s", "u1.never",
                      "disk limit `cp && sync`", "disk")
        ctx.rows.append(Row("U1", "bytes on the wire / file size", ctx.stat("u1.wire").show(lambda v: f"{v:.4f}")))
        cpu_row(ctx, "U1", "`depot put`", "u1")
    if with_u4:
        for key, what in (("u4.seed", "seed chunked API (Python client `--method seed`, 8 MiB pieces)"),
                          ("u4.tus", "tus (tus-js-client → depot /api/tus/)"),
                          ("u4.regular", "regular (`curl -X POST -T FILE`, streamed)")):
            ratio_row(ctx, "U4", f"cold upload of {human(n)}, {what}, MB/s", key, tus, "tus.peer")
        for key, what in (("u4.seed", "seed"), ("u4.tus", "tus"), ("u4.regular", "regular")):
            ctx.rows.append(Row("U4", f"… {what}: bytes on the wire / file size",
                                ctx.stat(key + ".wire").show(lambda v: f"{v:.4f}")))
    if with_c1:
        ratio_row(ctx, "C1", f"{C1_CLIENTS} clients × {human(each)} at once, aggregate MB/s", "c1",
                  f"one `depot put` of {human(n)}", "u1", "≥ 1× one put", lambda r: r >= 1)
        ctx.rows.append(Row("C1", "failed uploads (all rounds)", str(errors[0]), goal="0",
                            met="yes" if errors[0] == 0 else "**no**"))


def u2(ctx: Ctx) -> None:
    srv, _ = ctx.main()
    f, n = ctx.base, ctx.size
    if not ctx.limits:
        ctx.notes.append("U2: the CPU limit (`cargo bench --bench limits`) was not available, so no ratio.")

    def reput(keep: bool) -> None:
        secs, rep, wire = srv.put(f, ctx.timeout(n))
        if keep:
            add_cpu(ctx, "u2", n, *srv.last_cpu)
            ctx.samples.add("u2", ctx.mbps(n, secs))
            ctx.samples.add("u2.wire", wire / n * 100)
            ctx.samples.add("u2.sent", rep["sent_bytes"])

    def limits(keep: bool) -> None:
        env = dict(os.environ, LIMITS_MIB=str(max(1, n // MiB)), LIMITS_RUNS="1")
        _, r = timed([ctx.limits], ctx.timeout(n), env=env)
        lim = last_json(r.stdout)
        if keep:
            for k in ("blake3", "fastcdc", "both"):
                ctx.samples.add(f"cpu.{k}", lim[f"{k}_mbps"])

    ctx.rounds("U2", [("depot put again", reput)] + ([("CPU limit", limits)] if ctx.limits else []))
    ratio_row(ctx, "U2", f"re-upload of the same {human(n)}, `depot put`, MB/s", "u2",
              "CPU limit, 1 thread FastCDC+BLAKE3", "cpu.both", "≥ 0.8× CPU limit", lambda r: r >= 0.8)
    cpu_row(ctx, "U2", "`depot put` again", "u2")
    s = ctx.stat("u2.wire")
    ctx.rows.append(Row("U2", "bytes on the wire / file size, %", s.show(lambda v: f"{v:.4f}%"),
                        f"chunk bytes sent: {ctx.stat('u2.sent').show(lambda v: human(v))}",
                        "—", "≤ 0.1%", "yes" if s.median <= 0.1 else "**no**"))
    for k, label in (("blake3", "BLAKE3"), ("fastcdc", "FastCDC"), ("both", "FastCDC+BLAKE3")):
        s = ctx.stat(f"cpu.{k}")
        if s:
            ctx.rows.append(Row("L", f"CPU limit: one thread of {label} over {human(max(MiB, n // MiB * MiB))}, MB/s",
                                s.show()))


def u3(ctx: Ctx) -> None:
    srv, _ = ctx.main()
    f, n = ctx.base, ctx.size
    avg = srv.chunking()["avg"]
    # The goal of the project's benchmark plan: each insert's bytes and the
    # chunks astride its two seams, one average chunk each.
    goal = 3 * MiB + 6 * avg
    count = [0]

    def edited(keep: bool) -> None:
        i = count[0] = count[0] + 1
        rng = random.Random(1000 + i)
        offsets = sorted(rng.randrange(n) for _ in range(3))
        inserts = [rng.randbytes(MiB) for _ in range(3)]
        e = ctx.work / "edited.bin"
        try:
            with open(f, "rb") as src, open(e, "wb") as dst:
                at = 0
                for off, ins in zip(offsets, inserts):
                    copy_range(src, dst, off - at)
                    dst.write(ins)
                    at = off
                copy_range(src, dst, n - at)
            secs, rep, wire = srv.put(e, ctx.timeout(n))
        finally:
            rm(e)
        if keep:
            ctx.samples.add("u3.wire", wire)
            ctx.samples.add("u3.sent", rep["sent_bytes"])
            ctx.samples.add("u3.pct", wire / (n + 3 * MiB) * 100)
            ctx.samples.add("u3.mbps", ctx.mbps(n + 3 * MiB, secs))

    ctx.rounds("U3", [("depot put of an edited copy", edited)])
    w = ctx.stat("u3.wire")
    r = w.median / goal
    ctx.rows.append(Row("U3", "upload after 3 inserts of 1 MiB, bytes on the wire", w.show(human),
                        f"goal 3 MiB + 6 chunks of {human(avg)}: {human(goal)}", f"{r:.2f}×",
                        f"≤ {human(goal)}", "yes" if w.median <= goal else "**no**"))
    ctx.rows.append(Row("U3", "… of which chunk bytes (`sent_bytes`)", ctx.stat("u3.sent").show(human)))
    ctx.rows.append(Row("U3", "bytes on the wire / file size, %", ctx.stat("u3.pct").show(lambda v: f"{v:.3f}%")))
    ctx.rows.append(Row("U3", "its speed, MB/s", ctx.stat("u3.mbps").show()))


def copy_range(src, dst, n: int) -> None:
    while n > 0:
        b = src.read(min(n, 8 * MiB))
        if not b:
            raise BenchError("short read while editing")
        dst.write(b)
        n -= len(b)


def curl_get(url: str, n: int, timeout: float, prefix: tuple[str, ...] | list[str] = ()) -> float:
    secs, r = timed([*prefix, "curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}", url], timeout)
    if int(float(r.stdout.strip())) != n:
        raise BenchError(f"curl received {r.stdout.strip()} bytes of {n} from {url}")
    return secs


def same_bytes(url: str, path: Path, timeout: float) -> bool:
    """Whether a GET of `url` answers exactly the bytes of `path`, compared
    piece by piece as they arrive."""
    with urllib.request.urlopen(url, timeout=timeout) as r, open(path, "rb") as f:
        while True:
            got = r.read(MiB)
            if got != f.read(len(got)):
                return False
            if not got:
                return f.read(1) == b""


def range_ms(url: str, n: int, count: int, seed: int, timeout: float) -> float:
    """The median milliseconds of `count` random 64 KiB `Range` requests
    to `url` (a file of `n` bytes), one after the other on one curl
    connection, each checked for its 206 and its length."""
    rnd = random.Random(seed)
    cfg = "".join(f'url = "{url}"\nrange = "{o}-{o + 65535}"\noutput = "/dev/null"\n'
                  for o in (rnd.randrange(0, n - 65536) for _ in range(count)))
    r = subprocess.run(["curl", "-sS", "-K", "-", "-w", "%{http_code} %{size_download} %{time_total}\n"],
                       input=cfg, capture_output=True, text=True, timeout=timeout)
    rows = [line.split() for line in r.stdout.splitlines()]
    if r.returncode != 0 or len(rows) != count or any(row[:2] != ["206", "65536"] for row in rows):
        raise BenchError(f"range requests to {url} failed: {r.stderr.strip()[-200:]} {rows[:3]}")
    return statistics.median(float(row[2]) for row in rows) * 1000


def d1(ctx: Ctx) -> None:
    main_srv, fid = ctx.main()
    n = ctx.size
    web = ctx.web()
    cur: list[Depot] = []
    # nginx and `depot get -o -` run twice a round: where the kernel puts
    # them, then with the clients on one CPU and the servers (depot; nginx's
    # master and workers) on another. `depot get` checks every chunk's
    # BLAKE3, which on two shared cores competes with the server for its
    # core, where nginx's sendfile leaves curl most of one.
    each = CpuEach()

    def depot_curl(keep: bool) -> None:
        srv = ctx.restart_main()  # a fresh process per round, for M1
        cur[:] = [srv]
        c0, s0 = child_cpu(), srv.cpu_s()
        secs = curl_get(f"{srv.url}/api/files/{fid}", n, ctx.timeout(n))
        hwm = srv.vmhwm_mib()
        if keep:
            add_cpu(ctx, "d1.curl", n, child_cpu() - c0, srv.cpu_s() - s0)
            ctx.samples.add("d1.curl", ctx.mbps(n, secs))
            ctx.samples.add("m1.down.1x", hwm)

    def nginx(key: str, pinned: bool) -> Callable[[bool], None]:
        def step(keep: bool) -> None:
            with each.servers([web.p.pid], pinned):
                secs = curl_get(f"{web.url}/{ctx.base.name}", n, ctx.timeout(n), each.client(pinned))
            if keep:
                ctx.samples.add(key, ctx.mbps(n, secs))
        return step

    # The same chunks through a server that does nothing but read each
    # object and send its payload: what the store's layout allows. Its bytes
    # are checked once against the base file, so that a reference that sent
    # the wrong ones (a header, a misplaced slice) could not be counted.
    manifest = ctx.work / "manifest.json"
    manifest.write_bytes(http_get(f"{main_srv.url}/api/files/{fid}/manifest"))
    plain = ObjServe(main_srv.data / "objects", manifest).start()
    if not same_bytes(plain.url, ctx.base, ctx.timeout(n)):
        plain.stop()
        raise BenchError("the plain server over depot's objects did not send the base file's bytes")

    def objects_curl(keep: bool) -> None:
        c0, s0 = child_cpu(), plain.cpu_s()
        secs = curl_get(plain.url, n, ctx.timeout(n))
        if keep:
            ctx.samples.add("d1.objects", ctx.mbps(n, secs))
            add_cpu(ctx, "d1.objects", n, child_cpu() - c0, plain.cpu_s() - s0)

    def depot_get_null(key: str, pinned: bool) -> Callable[[bool], None]:
        # The same conditions as curl's: nothing written to disk. depot get
        # checks the length and every chunk's hash itself, and exits non-zero
        # (an error here) on any shortfall.
        def step(keep: bool) -> None:
            with each.servers([cur[0].p.pid], pinned):
                c0, s0 = child_cpu(), cur[0].cpu_s()
                secs, _ = timed(each.client(pinned) + ["sh", "-c", '"$1" --server "$2" get "$3" -o - >/dev/null', "sh",
                                                       str(ctx.depot), cur[0].url, fid], ctx.timeout(n))
                c1, s1 = child_cpu(), cur[0].cpu_s()
            if keep:
                add_cpu(ctx, key, n, c1 - c0, s1 - s0)
                ctx.samples.add(key, ctx.mbps(n, secs))
        return step

    def depot_get(keep: bool) -> None:
        out = ctx.work / "download.bin"
        try:
            secs, _ = timed([ctx.depot, "--server", cur[0].url, "get", fid, "-o", str(out), "--json"], ctx.timeout(n))
            if out.stat().st_size != n:
                raise BenchError(f"depot get wrote {out.stat().st_size} bytes of {n}")
        finally:
            rm(out)
            rm(out.with_name(out.name + ".part"))
        if keep:
            ctx.samples.add("d1.get", ctx.mbps(n, secs))

    def nginx_file(keep: bool) -> None:
        # What `depot get -o FILE` promises (the bytes on disk, fsynced),
        # from nginx with curl.
        out = ctx.work / "download.bin"
        try:
            secs, _ = timed(["sh", "-c", 'curl -sS -f -o "$1" "$2" && sync', "sh", str(out),
                             f"{web.url}/{ctx.base.name}"], ctx.timeout(n))
            if out.stat().st_size != n:
                raise BenchError(f"curl wrote {out.stat().st_size} bytes of {n}")
        finally:
            rm(out)
        if keep:
            ctx.samples.add("nginx.file", ctx.mbps(n, secs))

    try:
        ctx.rounds("D1", [("curl from depot (fresh process)", depot_curl), ("curl from nginx", nginx("nginx", False)),
                          ("curl from a plain server over depot's objects", objects_curl),
                          ("depot get -o - (to /dev/null)", depot_get_null("d1.get.null", False)),
                          ("depot get -o FILE", depot_get), ("curl -o FILE && sync from nginx", nginx_file)]
                   + ([("curl from nginx, client and server on a CPU each", nginx("nginx.each", True)),
                       ("depot get -o -, client and server on a CPU each", depot_get_null("d1.get.each", True))]
                      if each.ok else []))
    finally:
        plain.stop()
    ratio_row(ctx, "D1", f"download of {human(n)}, `curl -o /dev/null`, MB/s", "d1.curl", "nginx, curl", "nginx",
              "≥ 0.9× nginx", lambda r: r >= 0.9)
    ratio_row(ctx, "D1", f"download of {human(n)}, `depot get -o -` to /dev/null (verifies every chunk), MB/s",
              "d1.get.null", "nginx, curl", "nginx", "≥ 0.8× nginx", lambda r: r >= 0.8)
    ratio_row(ctx, "D1", f"download of {human(n)}, `depot get -o FILE` (verified, fsynced, renamed), MB/s", "d1.get",
              "nginx, `curl -o FILE && sync`", "nginx.file", "—", None)
    cpu_row(ctx, "D1", "`curl` from depot", "d1.curl")
    packs = main_srv.data / "objects" / "packs"
    layout = "pack files" if packs.is_dir() and any(packs.iterdir()) else "one file per chunk"
    ratio_row(ctx, "D1", f"download of {human(n)}, `curl -o /dev/null` from a plain server reading depot's objects "
              f"({layout}, nothing checked: the layout's limit), MB/s", "d1.objects", "nginx, curl", "nginx")
    ratio_row(ctx, "D1", f"download of {human(n)}, `curl -o /dev/null` from depot against that plain server, MB/s",
              "d1.curl", "plain server over depot's objects", "d1.objects")
    cpu_row(ctx, "D1", "`curl` from the plain server over depot's objects", "d1.objects")
    cpu_row(ctx, "D1", "`depot get -o -`", "d1.get.null")
    if each.ok:
        ratio_row(ctx, "D1", f"download of {human(n)}, `depot get -o -` to /dev/null, the clients on CPU "
                  f"{each.client_cpu} and the servers on CPU {each.server_cpu} (`sched_setaffinity`), MB/s", "d1.get.each",
                  "nginx, curl, the same CPUs", "nginx.each")
        cpu_row(ctx, "D1", "`depot get -o -`, on a CPU each", "d1.get.each")


def token_copy(ctx: Ctx, srv: Depot) -> tuple[Depot, str]:
    """A copy of the main server's store (made while it is stopped; it is
    started again) served in `token` mode, as a deployment serves, and a read
    token for the tenant its file belongs to (`default`)."""
    data = ctx.work / "d2-token-data"
    rm(data)
    srv.stop()
    shutil.copytree(srv.data, data)
    srv.start()
    _, r = timed([ctx.depot, "token", "create", "--data-dir", str(data), "--tenant", "default", "--scope", "read",
                  "--json"], 60)
    token = last_json(r.stdout)["token"]
    return Depot(ctx, data, {"DEPOT_AUTH_MODE": "token"}).start(), token


def d2(ctx: Ctx) -> None:
    srv, fid = ctx.main()
    web = ctx.web()
    guarded, token = token_copy(ctx, srv)
    n = ctx.size
    seed = [0]

    def wrk(url: str, key: str, headers: tuple[str, ...] = ()):
        def step(keep: bool) -> None:
            cmd = ["wrk", "-t1", f"-c{D2_CONNECTIONS}", "-d60s", "--timeout", "10s", "-s", str(HERE / "range.lua"),
                   *[a for h in headers for a in ("-H", h)],
                   url, "--", str(n), str(D2_REQUESTS), str(seed[0]), str(D2_RANGE)]
            _, r = timed(cmd, 120)
            res = last_json(r.stdout)
            if res["bad"] or res["errors"] or res["requests"] < D2_REQUESTS:
                raise BenchError(f"wrk against {url}: {res}")
            if keep:
                ctx.samples.add(f"{key}.rps", res["rps"])
                ctx.samples.add(f"{key}.p50", res["p50_us"] / 1000)
                ctx.samples.add(f"{key}.p99", res["p99_us"] / 1000)
        return step

    def next_seed(keep: bool) -> None:
        seed[0] += 1

    bearer = (f"Authorization: Bearer {token}",)
    try:
        ctx.rounds("D2", [("new offsets", next_seed),
                          ("wrk → depot", wrk(f"{srv.url}/api/files/{fid}", "d2.depot")),
                          ("wrk → depot in token mode", wrk(f"{guarded.url}/api/files/{fid}", "d2.token", bearer)),
                          ("wrk → nginx", wrk(f"{web.url}/{ctx.base.name}", "d2.nginx"))])
    finally:
        guarded.stop()
        rm(guarded.data)
    what = f"{D2_REQUESTS:,} random Range requests of {human(D2_RANGE)}, {D2_CONNECTIONS} connections"
    ratio_row(ctx, "D2", f"{what}, requests/s", "d2.depot.rps", "nginx", "d2.nginx.rps", "≥ 0.6× nginx",
              lambda r: r >= 0.6)
    ratio_row(ctx, "D2", "… p50 latency, ms", "d2.depot.p50", "nginx", "d2.nginx.p50", "≤ 3× nginx", lambda r: r <= 3)
    ratio_row(ctx, "D2", "… p99 latency, ms", "d2.depot.p99", "nginx", "d2.nginx.p99")
    token_mode = "the same, depot in `token` mode with a bearer token on every request"
    ratio_row(ctx, "D2", f"{token_mode}, requests/s", "d2.token.rps", "nginx", "d2.nginx.rps")
    ratio_row(ctx, "D2", "… p50 latency, ms (token mode)", "d2.token.p50", "nginx", "d2.nginx.p50")
    ratio_row(ctx, "D2", "… p99 latency, ms (token mode)", "d2.token.p99", "nginx", "d2.nginx.p99")


def m1(ctx: Ctx) -> None:
    n = ctx.size
    nb = n * M1_FACTOR
    need_base_up = ctx.stat("m1.up.1x") is None
    need_base_down = ctx.stat("m1.down.1x") is None

    def put_generated(srv: Depot, size: int, seed: int) -> tuple[float, dict]:
        """`depot put -` fed from the generator: no 8× file on disk."""
        errf = tempfile.TemporaryFile(dir=ctx.work)
        os.sync()
        t = time.perf_counter()
        p = subprocess.Popen([ctx.depot, "--server", srv.url, "put", "-", "--name", "big.bin", "--json"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
        err: list[BaseException] = []

        def feed() -> None:
            try:
                for b in random_blocks(size, seed):
                    p.stdin.write(b)
                p.stdin.close()
            except BaseException as e:  # noqa: BLE001 - reported below
                err.append(e)

        th = threading.Thread(target=feed, daemon=True)
        killer = threading.Timer(ctx.timeout(size), p.kill)
        th.start()
        killer.start()
        try:
            out = p.stdout.read()
            p.wait()
        finally:
            killer.cancel()
            if p.poll() is None:
                p.kill()
                p.wait()
        secs = time.perf_counter() - t
        th.join(10)
        errf.seek(0)
        errout = errf.read().decode(errors="replace")
        errf.close()
        if p.returncode != 0 or err:
            raise BenchError(f"depot put - exited {p.returncode}: {errout.strip()[-200:]} {err}")
        rep = last_json(out.decode())
        if rep.get("size") != size:
            raise BenchError(f"depot put - reported size {rep.get('size')} for {size} bytes")
        return secs, rep

    def measure(size: int, tag: str, up: bool, down: bool):
        def step(keep: bool) -> None:
            d = ctx.fresh("m1")
            srv = Depot(ctx, d)
            try:
                srv.start()
                if tag == "1x":
                    secs, rep, _ = srv.put(ctx.base, ctx.timeout(size))
                else:
                    secs, rep = put_generated(srv, size, seed=8)
                if keep and up:
                    ctx.samples.add(f"m1.up.{tag}", srv.vmhwm_mib())
                    ctx.samples.add(f"m1.mbps.{tag}", ctx.mbps(size, secs))
                if down:
                    srv.stop()
                    srv.start()
                    curl_get(f"{srv.url}/api/files/{rep['id']}", size, ctx.timeout(size))
                    if keep:
                        ctx.samples.add(f"m1.down.{tag}", srv.vmhwm_mib())
            finally:
                srv.stop()
                rm(d)
        return step

    steps = [(f"{human(nb)} from a generator: upload, restart, download", measure(nb, f"{M1_FACTOR}x", True, True))]
    if need_base_up or need_base_down:
        steps.insert(0, (f"{human(n)}: upload, restart, download", measure(n, "1x", need_base_up, need_base_down)))
    # No warm-up round here: each round is a fresh server process (peak
    # RSS does not warm up), the machine is warm from the scenarios
    # before, and an 8× round is the costliest of the whole run.
    ctx.rounds("M1", steps, warmup=0)
    for kind, what in (("up", "upload"), ("down", "download")):
        a, b = ctx.stat(f"m1.{kind}.{M1_FACTOR}x"), ctx.stat(f"m1.{kind}.1x")
        r = a.median / b.median
        ok = abs(r - 1) <= 0.10 and a.median < M1_LIMIT_MIB and b.median < M1_LIMIT_MIB
        ctx.rows.append(Row("M1", f"server peak RSS (VmHWM), {what} of {human(nb)}, MiB", a.show(),
                            f"{what} of {human(n)}: {b.show()}", f"{r:.2f}×",
                            f"flat (within 10%) and < {M1_LIMIT_MIB} MiB", "yes" if ok else "**no**"))
    s = ctx.stat(f"m1.mbps.{M1_FACTOR}x")
    ctx.rows.append(Row("M1", f"(the {human(nb)} cold upload's speed, `depot put -` from a generator, MB/s)", s.show()))


def c1_files(ctx: Ctx) -> tuple[list[Path], int]:
    each = max(MiB, ctx.size // C1_CLIENTS)
    return [ctx.work / f"c1-{k:02}.bin" for k in range(C1_CLIENTS)], each


def c1_step(ctx: Ctx, errors: list[int]) -> Callable[[bool], None]:
    """C1: 32 `depot put` processes at once on a fresh server."""
    files, each = c1_files(ctx)
    total = each * C1_CLIENTS

    def step(keep: bool) -> None:
        d = ctx.fresh("c1")
        srv = Depot(ctx, d).start()
        procs: list[subprocess.Popen] = []
        bad = 0
        try:
            os.sync()
            t = time.perf_counter()
            for p in files:
                procs.append(subprocess.Popen([ctx.depot, "--server", srv.url, "put", "--json", str(p)],
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                              stdin=subprocess.DEVNULL))
            for p, path in zip(procs, files):
                out, err = p.communicate(timeout=ctx.timeout(total))
                try:
                    ok = p.returncode == 0 and last_json(out).get("size") == each
                except (BenchError, ValueError):
                    ok = False
                if not ok:
                    bad += 1
                    log(f"C1: {path.name}: exit {p.returncode}: {err.strip()[-200:]}")
            secs = time.perf_counter() - t
            bad = max(bad, C1_CLIENTS - srv.stats()["files"])
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            srv.stop()
            ctx.discard(d)
        if keep:
            errors[0] += bad
            ctx.samples.add("c1", ctx.mbps(total, secs))

    return step


def corpus(ctx: Ctx) -> list[Path]:
    """Successive releases as uncompressed tar, cached under BENCH_CACHE."""
    d = ctx.cache / "corpus"
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for pkg, versions in CORPUS:
        for v in versions:
            tar = d / f"{pkg}-{v}.tar"
            if not tar.exists():
                tmp = Path(tempfile.mkdtemp(prefix="npm-pack-", dir=d))
                try:
                    run(["npm", "pack", f"{pkg}@{v}", "--pack-destination", str(tmp), "--silent"], 600, cwd=tmp)
                    (tgz,) = tmp.glob("*.tgz")
                    with gzip.open(tgz, "rb") as src, open(tmp / "x.tar", "wb") as dst:
                        shutil.copyfileobj(src, dst, 8 * MiB)
                    os.replace(tmp / "x.tar", tar)
                    log(f"S1 corpus: {tar.name} ({human(tar.stat().st_size)})")
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            out.append(tar)
    return out


def du(path: Path) -> int:
    return int(run(["du", "-sb", str(path)], 600).stdout.split()[0])


def s1(ctx: Ctx) -> None:
    files = corpus(ctx)
    logical = sum(p.stat().st_size for p in files)
    renv = dict(os.environ, RESTIC_PASSWORD=RESTIC_PASSWORD)

    def depot(keep: bool) -> None:
        d = ctx.fresh("s1-depot")
        srv = Depot(ctx, d).start()
        try:
            secs = sum(srv.put(p, ctx.timeout(p.stat().st_size))[0] for p in files)
            srv.expect(len(files), logical)
            stored = srv.stats()["stored_bytes"]
        finally:
            srv.stop()
        try:
            on_disk = du(d)
        finally:
            rm(d)
        if keep:
            ctx.samples.add("s1.depot", stored)
            ctx.samples.add("s1.depot.du", on_disk)
            ctx.samples.add("s1.depot.mbps", ctx.mbps(logical, secs))

    def restic(keep: bool) -> None:
        d = ctx.fresh("s1-restic")
        repo, cache = d / "repo", d / "cache"
        try:
            run(["restic", "-r", str(repo), "--cache-dir", str(cache), "init", "--quiet"], 120, env=renv)
            secs = 0.0
            for p in files:
                secs += timed(["restic", "-r", str(repo), "--cache-dir", str(cache), "backup", "--quiet",
                               "--host", "bench", str(p)], ctx.timeout(p.stat().st_size), env=renv)[0]
            stored = du(repo)
            # restic's fixed cost per invocation: open the repository (key derivation).
            opened = timed(["restic", "-r", str(repo), "--cache-dir", str(cache), "cat", "config"], 120, env=renv)[0]
        finally:
            rm(d)
        if keep:
            ctx.samples.add("s1.restic.open", opened)
            ctx.samples.add("s1.restic", stored)
            ctx.samples.add("s1.restic.mbps", ctx.mbps(logical, secs))

    ctx.rounds("S1", [("depot put of each release", depot), ("restic backup of each release", restic)])
    names = ", ".join(f"{pkg} {vs[0]}…{vs[-1]} ({len(vs)})" for pkg, vs in CORPUS)
    ctx.notes.append(f"S1 corpus: {len(files)} npm releases as uncompressed tar, {human(logical)} in all: {names}.")
    mib = lambda v: f"{v / MiB:.1f} MiB"  # noqa: E731
    ratio_row(ctx, "S1", f"stored bytes after {len(files)} releases ({human(logical)}), `/api/stats` stored_bytes",
              "s1.depot", "restic, `du -sb` repo", "s1.restic", "≤ 1× restic", lambda r: r <= 1.0, mib)
    ratio_row(ctx, "S1", "… depot's whole data dir, `du -sb` (objects + RocksDB), for comparison",
              "s1.depot.du", "restic, `du -sb` repo", "s1.restic", unit=mib)
    ratio_row(ctx, "S1", "… speed over all releases, MB/s", "s1.depot.mbps", "restic", "s1.restic.mbps",
              "≥ 1× restic", lambda r: r >= 1.0)
    ctx.rows.append(Row("S1", f"(restic's fixed cost per invocation, `restic cat config`, s; "
                        f"{len(files)} invocations above)", ctx.stat("s1.restic.open").show()))


def s2(ctx: Ctx) -> None:
    d = ctx.fresh("s2")
    cfg = d / "depot.toml"
    cfg.write_text("[chunking]\n" + "".join(f"{k} = {v}\n" for k, v in S2_CHUNKING.items()))
    data = d / "data"
    srv = Depot(ctx, data, config=cfg)
    src = ctx.work / "s2.bin"
    try:
        srv.start()
        hashes: list[str] = []
        k = 0
        while len(hashes) < S2_MIN_CHUNKS:
            k += 1
            make_random(src, S2_BYTES, seed=3000 + k)
            secs, r = timed(["curl", "-sS", "-f", "-X", "POST", "-T", str(src),
                             f"{srv.url}/api/files/upload?filename=s2-{k}.bin"], ctx.timeout(S2_BYTES))
            rm(src)
            fid = json.loads(r.stdout)["id"]
            man = json.loads(http_get(f"{srv.url}/api/files/{fid}/manifest", timeout=300))
            hashes += [c["hash"] for c in man["chunks"]]
            log(f"S2: stored {len(man['chunks']):,} chunks of {human(S2_BYTES)} in {secs:.1f} s")
            ctx.samples.add("s2.ingest", ctx.mbps(S2_BYTES, secs))
        stored = srv.stats()["unique_chunks"]
        rng = random.Random(7)
        host, port = srv.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        count = [0]

        def query(keep: bool) -> None:
            count[0] += 1
            present = rng.sample(hashes, S2_QUERY // 2)
            absent = [rng.randbytes(32).hex() for _ in range(S2_QUERY - S2_QUERY // 2)]
            q = present + absent
            rng.shuffle(q)
            body = json.dumps({"hashes": q}).encode()
            t = time.perf_counter()
            conn.request("POST", "/api/chunks/missing", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            secs = time.perf_counter() - t
            if resp.status != 200:
                raise BenchError(f"POST /api/chunks/missing: {resp.status} {raw[:200]!r}")
            if set(json.loads(raw)["missing"]) != set(absent):
                raise BenchError("POST /api/chunks/missing answered a wrong set")
            if keep:
                ctx.samples.add("s2", secs * 1000)

        ctx.rounds("S2", [(f"missing query of {S2_QUERY:,} hashes", query)])
        conn.close()
    finally:
        t = time.perf_counter()
        srv.stop()
        log(f"S2: server stopped in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        rm(src)
        rm(d)
        log(f"S2: data removed in {time.perf_counter() - t:.1f} s")
    ratio_row(ctx, "S2", f"`POST /api/chunks/missing`, {S2_QUERY:,} hashes (half present) against {stored:,} chunks, ms",
              "s2", "", None)
    ctx.rows.append(Row("S2", f"(setup: regular upload with {S2_CHUNKING['avg']}-byte average chunks, MB/s)",
                        ctx.stat("s2.ingest").show()))


def e1(ctx: Ctx) -> None:
    """E1: one node on the scale-out engines (chunks in Garage, metadata in
    PostgreSQL, both durable) and three nodes on them behind nginx (E3),
    against one node on the embedded default (L1: RocksDB + the object
    directory), alternated: a new upload, the same again (every chunk
    known), a download with curl. Also S3 requests and PostgreSQL
    transactions per GiB, PUTs per new chunk, and Garage's raw PUT and GET
    rates (the ceilings)."""
    import engines  # noqa: PLC0415 - only E1 needs it

    f, n = ctx.base, ctx.size
    pg = gar = None
    try:
        pg = engines.Postgres().start()
        gar = engines.Garage(ctx.work).start()
    except engines.EngineMissing as e:
        for x in (pg, gar):
            if x is not None:
                x.stop()
        raise BenchError(f"E1 needs PostgreSQL and Garage: {e}") from e
    rounds = [0]
    lists = [0]

    def one(kind: str, keep: bool) -> None:
        d = ctx.fresh(f"e1-{kind}")
        env, db = {}, None
        if kind in ("e1", "e3"):
            rounds[0] += 1
            db, url = pg.database()
            env = dict(gar.env(f"r{rounds[0]}/"), DEPOT_META=url)
        srv = Cluster(ctx, d, env, 3).start() if kind == "e3" else Depot(ctx, d, env).start()
        try:
            def counters() -> tuple[dict, int]:
                return (gar.requests(), pg.commits(db)) if db else ({}, 0)

            c0 = counters()
            secs, rep, _ = srv.put(f, ctx.timeout(n))
            c1 = counters()
            new_chunks = srv.stats()["unique_chunks"]
            secs_re, _, _ = srv.put(f, ctx.timeout(n))
            c2 = counters()
            secs_down = curl_get(f"{srv.url}/api/files/{rep['id']}", n, ctx.timeout(n))
            c3 = counters()
            ms_range = range_ms(f"{srv.url}/api/files/{rep['id']}", n, 200, rounds[0], ctx.timeout(n))
            srv.expect(2, 2 * n)
            if kind == "e3":
                # Every node took part of the upload, or the balancer did not balance.
                spread = srv.bytes_in()
                if min(spread) < n // 10:
                    raise BenchError(f"request bytes per node {spread}: the balancer did not spread the upload")
        finally:
            srv.stop()
            rm(d)
        if db:
            lists[0] += c3[0].get("ListObjectsV2", 0) + c3[0].get("ListObjects", 0) - c0[0].get("ListObjectsV2", 0) \
                - c0[0].get("ListObjects", 0)
        if not keep:
            return
        ctx.samples.add(f"e1.{kind}.up", ctx.mbps(n, secs))
        ctx.samples.add(f"e1.{kind}.re", ctx.mbps(n, secs_re))
        ctx.samples.add(f"e1.{kind}.down", ctx.mbps(n, secs_down))
        ctx.samples.add(f"e1.{kind}.range", ms_range)
        if db:
            kind_ = "" if kind == "e1" else ".e3"
            gib = n / GiB
            for tag, (a, b) in (("up", (c0, c1)), ("re", (c1, c2)), ("down", (c2, c3))):
                req = {k: b[0].get(k, 0) - a[0].get(k, 0) for k in b[0]}
                ctx.samples.add(f"e1.s3.{tag}{kind_}", sum(req.values()) / gib)
                ctx.samples.add(f"e1.pg.{tag}{kind_}", (b[1] - a[1]) / gib)
                if tag == "up":
                    ctx.samples.add(f"e1.put_per_chunk{kind_}", req.get("PutObject", 0) / max(new_chunks, 1))
                    ctx.samples.add(f"e1.head.up{kind_}", req.get("HeadObject", 0) / gib)

    def ceiling(keep: bool) -> None:
        # Garage's own PUT rate through depot's S3 client (the limits
        # bench with LIMITS_S3=1): 256 MiB of distinct 256 KiB objects.
        rounds[0] += 1
        env = dict(os.environ, **gar.env(f"c{rounds[0]}/"), LIMITS_S3="1", LIMITS_MIB="256", LIMITS_RUNS="1")
        _, r = timed([ctx.limits], ctx.timeout(n), env=env)
        if keep:
            out = last_json(r.stdout)
            ctx.samples.add("e1.ceiling", out["s3_put_mbps"])
            ctx.samples.add("e1.ceiling.get", out["s3_get_mbps"])

    steps = [("1 node, RocksDB + object directory (L1)", lambda k: one("l1", k)),
             ("1 node, PostgreSQL + Garage (E1)", lambda k: one("e1", k)),
             ("3 nodes behind nginx, PostgreSQL + Garage (E3)", lambda k: one("e3", k))]
    if ctx.limits:
        steps.append(("Garage raw PUT and GET ceilings", ceiling))
    try:
        ctx.rounds("E1", steps)
    finally:
        gar.stop()
        pg.stop()
    for tag, what, goal in (("up", "new upload, `depot put`", 0.5), ("re", "re-upload (every chunk known)", 0.7),
                            ("down", "download, curl", 0.5)):
        ratio_row(ctx, "E1", f"1 node on PostgreSQL + Garage: {what}, MB/s", f"e1.e1.{tag}", "L1 (RocksDB + directory)",
                  f"e1.l1.{tag}", f"≥ {goal}× L1", lambda r, g=goal: r >= g)
    for tag, what in (("up", "new upload"), ("re", "re-upload"), ("down", "download")):
        ratio_row(ctx, "E1", f"… S3 requests per GiB, {what}", f"e1.s3.{tag}", "", None)
        ratio_row(ctx, "E1", f"… PostgreSQL transactions per GiB, {what}", f"e1.pg.{tag}", "", None)
    ratio_row(ctx, "E1", "… new upload against Garage's raw PUT rate (256 KiB objects, depot's S3 client, 32 in "
              "flight), MB/s", "e1.e1.up", "raw PUT ceiling", "e1.ceiling")
    ratio_row(ctx, "E1", "… download against Garage's raw GET rate (the same objects, 16 in flight), MB/s",
              "e1.e1.down", "raw GET ceiling", "e1.ceiling.get")
    ratio_row(ctx, "E1", "… 64 KiB `Range` requests one after another, p50 ms", "e1.e1.range",
              "L1 (RocksDB + directory)", "e1.l1.range", unit=lambda v: f"{v:.2f}")
    ratio_row(ctx, "E1", "… S3 HEAD requests per GiB, new upload", "e1.head.up", "", None)
    ratio_row(ctx, "E1", "… S3 PUTs per new chunk", "e1.put_per_chunk", "", None, "1.00")
    for tag, what in (("up", "new upload, `depot put`"), ("re", "re-upload"), ("down", "download, curl")):
        ratio_row(ctx, "E1", f"3 nodes behind nginx (E3): {what}, MB/s", f"e1.e3.{tag}", "L1 (RocksDB + directory)",
                  f"e1.l1.{tag}")
    ratio_row(ctx, "E1", "… E3 64 KiB `Range` requests one after another, p50 ms", "e1.e3.range",
              "L1 (RocksDB + directory)", "e1.l1.range", unit=lambda v: f"{v:.2f}")
    for tag, what in (("up", "new upload"), ("re", "re-upload"), ("down", "download")):
        ratio_row(ctx, "E1", f"… E3 S3 requests per GiB, {what}", f"e1.s3.{tag}.e3", "", None)
        ratio_row(ctx, "E1", f"… E3 PostgreSQL transactions per GiB, {what}", f"e1.pg.{tag}.e3", "", None)
    ratio_row(ctx, "E1", "… E3 S3 HEAD requests per GiB, new upload", "e1.head.up.e3", "", None)
    ratio_row(ctx, "E1", "… E3 S3 PUTs per new chunk", "e1.put_per_chunk.e3", "", None, "1.00")
    ctx.rows.append(Row("E1", "… S3 LIST requests, whole scenario", str(lists[0]), goal="0 in steady state",
                        met="yes" if lists[0] == 0 else "**no**"))


RUNNERS = {"U2": u2, "U3": u3, "D1": d1, "D2": d2, "M1": m1, "S1": s1, "S2": s2, "E1": e1}
UPLOADS = ["U1", "U4", "C1"]  # run together, in one alternation
ORDER = ["U1", "U4", "C1", "U2", "U3", "D1", "D2", "M1", "S1", "S2", "E1"]


# ---------------------------------------------------------------- build, machine, report


def build(ctx: Ctx, need_limits: bool) -> None:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "depot-target")
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    if os.environ.get("DEPOT_BIN"):
        ctx.depot = os.environ["DEPOT_BIN"]
    else:
        # The profiling profile: release code with line tables and symbols,
        # so that perf can attribute samples (the shipped release binary is
        # stripped).
        log(f"building the profiling binary (cargo build --profile profiling --bin depot, CARGO_TARGET_DIR={target})")
        r = subprocess.run(["cargo", "build", "--profile", "profiling", "--bin", "depot"], cwd=REPO, env=env)
        if r.returncode != 0:
            raise BenchError("cargo build --profile profiling failed")
        ctx.depot = str(target / "profiling" / "depot")
    if not os.access(ctx.depot, os.X_OK):
        raise BenchError(f"no depot binary at {ctx.depot}")
    if not need_limits:
        return
    if os.environ.get("LIMITS_BIN"):
        ctx.limits = os.environ["LIMITS_BIN"]
        return
    log("building the CPU-limit bench (cargo bench --bench limits --no-run)")
    r = subprocess.run(["cargo", "bench", "--bench", "limits", "--no-run", "--message-format=json-render-diagnostics"],
                       cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    for line in r.stdout.splitlines():
        try:
            m = json.loads(line)
        except json.JSONDecodeError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "limits" and m.get("executable"):
            ctx.limits = m["executable"]
    if r.returncode != 0 or not ctx.limits:
        log("warning: the limits bench did not build; U2 gets no CPU-limit ratio")
        ctx.limits = None


def sh(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine(ctx: Ctx) -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) * 1024
    df = filesystem(ctx.work)
    dev = df[0] if df else "?"
    rot = ""
    name = Path(dev).name
    for cand in (name, re.sub(r"p?\d+$", "", name)):
        f = Path(f"/sys/block/{cand}/queue/rotational")
        if f.exists():
            rot = ", rotational" if f.read_text().strip() == "1" else ", non-rotational"
            break
    osname = "?"
    if Path("/etc/os-release").exists():
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        osname = m.group(1) if m else "?"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable)",
        f"- RAM: {human(mem)}",
        f"- Disk: {dev}, {df[1] if len(df) > 1 else '?'}, {human(int(df[2])) if len(df) > 2 else '?'}{rot}"
        f" (bench files, servers' data and peers all on it)",
        f"- Kernel: Linux {platform.release()} ({osname})",
    ]


def versions(ctx: Ctx) -> str:
    def first(s: str) -> str:
        return s.splitlines()[0] if s else "?"

    def npm_version(pkg: str) -> str:
        try:
            return json.loads((HERE / "node_modules" / pkg / "package.json").read_text())["version"]
        except OSError:
            return "?"

    commit = sh(["git", "-C", str(REPO), "describe", "--always", "--dirty"]) or "?"
    wrk_v = re.search(r"wrk \S+", sh(["wrk", "-v"]))
    return "; ".join([
        f"depot {commit} ({first(sh([ctx.depot, '--version']))}, "
        + ("the binary given in DEPOT_BIN)" if os.environ.get("DEPOT_BIN")
           else "profiling build: release with line tables)"),
        first(sh([ctx.nginx, "-v"])).replace("nginx version: ", ""),
        first(sh(["restic", "version"])).split(" compiled")[0],
        wrk_v.group(0) if wrk_v else "wrk ?",
        first(sh(["curl", "--version"])).split(" (")[0],
        f"node {first(sh(['node', '--version']))}",
        f"@tus/server {npm_version('@tus/server')}, @tus/file-store {npm_version('@tus/file-store')}, "
        f"tus-js-client {npm_version('tus-js-client')}",
        f"Python {platform.python_version()}",
    ])


DISPLAY = ["U1", "U2", "L", "U3", "U4", "D1", "D2", "M1", "C1", "S1", "S2", "E1"]


def table(rows: list[Row]) -> str:
    rows = sorted(rows, key=lambda r: DISPLAY.index(r.id) if r.id in DISPLAY else len(DISPLAY))
    head = ["id", "figure", "depot: median (min–max)", "reference: median (min–max)", "ratio", "goal", "met"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.id, r.figure, r.depot, r.reference, r.ratio, r.goal, r.met]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def rounds_section(ctx: Ctx) -> list[str]:
    """Every measured round of each key the rows used, and each ratio row's
    per-round ratios: round i of the figure over round i of its reference,
    measured in the same alternation."""
    if not ctx.used:
        return []
    out = ["Rounds (each key's values in the order measured; for ratio rows, the ratio of the two steps of each",
           "round, with how many rounds meet the goal):", ""]
    out += [f"- `{k}`: " + ", ".join(fmt(v) for v in ctx.samples.d[k]) for k in dict.fromkeys(ctx.used)]
    for rid, key, ref, goal, test in ctx.pairs:
        a, b = ctx.samples.d[key], ctx.samples.d[ref]
        line = f"- {rid} `{key}` / `{ref}`: "
        if len(a) != len(b):
            out.append(line + f"the lengths differ ({len(a)} and {len(b)} rounds), no per-round ratios")
            continue
        rs = [x / y if y else float("nan") for x, y in zip(a, b)]
        line += ", ".join(f"{r:.2f}×" for r in rs)
        if test is not None:
            line += f"; {sum(1 for r in rs if test(r))} of {len(rs)} meet {goal}"
        out.append(line)
    return out + [""]


def report(ctx: Ctx, started: datetime.datetime, argv: list[str], load0: tuple, failed: dict[str, str]) -> str:
    load1 = os.getloadavg()
    total = time.perf_counter() - ctx.elapsed.pop("_start")
    lines = [
        "# depot end-to-end benchmarks",
        "",
        f"Measured {started.strftime('%Y-%m-%d %H:%M UTC')} with `benches/e2e/run.sh {' '.join(argv)}` "
        f"(base size {human(ctx.size)}, {ctx.runs} measured runs after {ctx.warmup} warm-up), "
        f"in {total / 60:.1f} min.",
        "",
        "Machine:",
        "",
        *machine(ctx),
        f"- Load average (1 min) at start {load0[0]:.2f}, at end {load1[0]:.2f}: the machine is shared, so",
        "  absolute figures are noisy; the ratios to references measured alternately in the same run are the figures to read.",
        "",
        f"Software: {versions(ctx)}.",
        "",
        f"Each figure is the median of {ctx.runs} measured runs with the min–max in brackets; depot and its references",
        f"ran alternately, round after round, after {ctx.warmup} discarded warm-up round(s) (none for M1's 8× rounds).",
        "Ratio = depot's median / the reference's median. MB/s = 10^6 bytes per second of file size; sizes in",
        "KiB/MiB/GiB (2^10…). Servers run with the default configuration (fsync policy `batch`), rate limits off"
        + ("." if not ctx.depot_env else
           "; every depot server also with " + ", ".join(f"`{k}={v}`" for k, v in ctx.depot_env.items()) + "."),
        "Scenario details: `benches/e2e/README.md`.",
        "",
        table(ctx.rows),
        "",
    ]
    if failed:
        lines += ["Scenarios that failed (no figure):", ""]
        lines += [f"- {k}: {v}" for k, v in failed.items()]
        lines.append("")
    if ctx.notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in ctx.notes] + [""]
    lines += rounds_section(ctx)
    lines += ["Time per scenario: " + ", ".join(f"{k} {v:.0f} s" for k, v in ctx.elapsed.items()) + ".", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


# Sections of the report that other commands measure (delta downloads, by
# tests/delta_get.rs) follow this marker; a rewrite keeps them.
KEPT_MARK = "<!-- Sections below this line are measured by other commands"


def keep_other_sections(out: Path, text: str) -> str:
    try:
        old = out.read_text()
    except OSError:
        return text
    at = old.find(KEPT_MARK)
    return text if at < 0 else text.rstrip("\n") + "\n\n" + old[at:]


def main() -> int:
    p = argparse.ArgumentParser(description="depot end-to-end benchmarks (see benches/e2e/README.md)")
    p.add_argument("--size", type=parse_size, default=GiB, help="base file size (default 1G)")
    p.add_argument("--runs", type=int, default=5, help="measured runs per figure (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="discarded warm-up rounds (default 1)")
    p.add_argument("--only", default="", help=f"comma-separated scenario ids, of {','.join(ORDER)}")
    p.add_argument("--fsync-never", action="store_true",
                   help="U1: also measure the upload with DEPOT_FSYNC=never (an extra row)")
    p.add_argument("--depot-env", action="append", default=[], metavar="NAME=VALUE",
                   help="a DEPOT_* variable for every depot server (repeatable), e.g. DEPOT_PACKS=true")
    p.add_argument("--out", default=str(REPO / "docs" / "BENCHMARKS.md"),
                   help="where to write the table (default docs/BENCHMARKS.md; '-' for stdout only)")
    args = p.parse_args()
    argv = sys.argv[1:]
    only = [s.strip().upper() for s in args.only.split(",") if s.strip()] or ORDER
    unknown = [s for s in only if s not in ORDER]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}; known: {','.join(ORDER)}")
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be ≥ 1 and --warmup ≥ 0")

    cache = Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "depot-bench")
    global REMOVED_MARK
    REMOVED_MARK = cache / "stores-removed"
    work_parent = Path(os.environ.get("BENCH_WORK") or cache / "work")
    work_parent.mkdir(parents=True, exist_ok=True)
    work = CLEANUP.path(Path(tempfile.mkdtemp(prefix="run-", dir=work_parent)))
    ctx = Ctx(size=args.size, runs=args.runs, warmup=args.warmup, only=only, work=work, cache=cache)
    ctx.nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ctx.fsync_never = args.fsync_never
    for kv in args.depot_env:
        name, eq, value = kv.partition("=")
        if not eq or not name.startswith("DEPOT_"):
            p.error(f"--depot-env wants DEPOT_NAME=VALUE, not {kv!r}")
        ctx.depot_env[name] = value

    def on_signal(sig, _frame):
        log(f"{signal.Signals(sig).name}; cleaning up")
        raise SystemExit(128 + sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    failed: dict[str, str] = {}
    try:
        build(ctx, need_limits="U2" in only or "E1" in only)
        started = datetime.datetime.now(datetime.timezone.utc)
        load0 = os.getloadavg()
        ctx.elapsed["_start"] = time.perf_counter()
        log(f"work dir {work}; base size {human(ctx.size)}; {ctx.runs} runs after {ctx.warmup} warm-up; {','.join(only)}")
        for sid in ORDER:
            if sid not in only:
                continue
            t = time.perf_counter()
            n_rows, n_used, n_pairs = len(ctx.rows), len(ctx.used), len(ctx.pairs)
            label = sid
            if sid in UPLOADS:
                group = [u for u in UPLOADS if u in only]
                if sid != group[0]:
                    continue
                label = "+".join(group)
            try:
                if sid in UPLOADS:
                    uploads(ctx, "U1" in group, "U4" in group, "C1" in group)
                else:
                    RUNNERS[sid](ctx)
            except Exception as e:  # noqa: BLE001 - one failed scenario must not lose the others
                traceback.print_exc()
                failed[label] = str(e)
                del ctx.rows[n_rows:], ctx.used[n_used:], ctx.pairs[n_pairs:]
                log(f"{label} failed: {e}")
            ctx.elapsed[label] = time.perf_counter() - t
            ctx.release(set(ORDER[ORDER.index(sid) + 1:]) & set(only))
        text = report(ctx, started, argv, load0, failed)
        print(text)
        if args.out != "-":
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(keep_other_sections(out, text))
            log(f"wrote {out}")
        return 1 if failed else 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        CLEANUP.all()


if __name__ == "__main__":
    sys.exit(main())
