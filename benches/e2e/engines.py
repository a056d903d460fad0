"""The scale-out engines for bench E1: a throwaway PostgreSQL and a one-node
Garage on free loopback ports, with durable settings (PostgreSQL's fsync on,
Garage's `data_fsync` and `metadata_fsync`), and the counters E1 reports:
S3 requests by API call from Garage's `/metrics` and committed transactions
from PostgreSQL's `pg_stat_database`.

The same recipe as the tests' harness (tests/common/postgres.rs,
tests/common/garage.rs): `initdb` + `pg_ctl` as the `postgres` user when run
as root, and `garage server --single-node --default-bucket`, which makes the
layout, an access key and the bucket from `GARAGE_DEFAULT_*` before its S3
port opens (Garage 2.5.0).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

GARAGE_VERSION = "2.5.0"


class EngineMissing(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineMissing(f"{what} exited {proc.returncode}: {log.read_text()[-400:] if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise EngineMissing(f"{what} did not open port {port} in {timeout:.0f} s")


def _pg_bin() -> Path:
    """The directory with `initdb`, `pg_ctl` and `psql`: Debian's versioned
    one (newest first), else wherever `initdb` is on PATH."""
    progs = ("initdb", "pg_ctl", "psql")
    root = Path("/usr/lib/postgresql")
    dirs = sorted(root.glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                  reverse=True) if root.is_dir() else []
    found = shutil.which("initdb")
    if found:
        dirs.append(Path(found).resolve().parent)
    for d in dirs:
        if all((d / p).is_file() for p in progs):
            return d
    raise EngineMissing("no initdb/pg_ctl/psql (Debian: apt-get install postgresql)")


def _garage_bin() -> str:
    for cand in (os.environ.get("GARAGE_BIN"), shutil.which("garage"),
                 str(Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo") / "bin" / "garage")):
        if cand and Path(cand).is_file():
            return cand
    raise EngineMissing(f"no garage binary (cargo install garage --locked --version {GARAGE_VERSION})")


class Postgres:
    """A PostgreSQL cluster in a temp dir; `database()` makes a fresh one.
    The directory is made in the system's temp dir, not the bench's private
    work dir, because the server runs as another user and must reach it."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="depot-bench-pg-"))
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = self.dir / "data"
        self.port = 0
        self.n = 0

    def _run(self, prog: str, *args: str) -> str:
        cmd = [str(self.bin / prog), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        r = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise EngineMissing(f"{prog} failed: {r.stderr.strip()[-400:]}")
        return r.stdout

    def start(self) -> Postgres:
        # Durable, as shipped: fsync and synchronous_commit stay on.
        self._run("initdb", f"-D{self.data}", "-Atrust", "-Udepot")
        self.port = _free_port()
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200"
        self._run("pg_ctl", "-w", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "start")
        return self

    def psql(self, db: str, sql: str) -> str:
        r = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", "depot", "-d", db, "-c", sql],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise EngineMissing(f"psql: {r.stderr.strip()[-300:]}")
        return r.stdout.strip()

    def database(self) -> tuple[str, str]:
        """A fresh database: (its name, its URL for `DEPOT_META`)."""
        self.n += 1
        name = f"bench{self.n}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return name, f"postgres://depot@127.0.0.1:{self.port}/{name}"

    def commits(self, db: str) -> int:
        """Transactions committed in `db` so far. The statistics are
        published when a backend goes idle (at most once a second), so this
        waits for them to settle first."""
        time.sleep(1.2)
        return int(self.psql(db, f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"))

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-m", "fast", "-D", str(self.data))
        except EngineMissing:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Garage:
    """A one-node Garage with its S3 API and admin API (for `/metrics`)."""

    def __init__(self, parent: Path) -> None:
        self.bin = _garage_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="garage-", dir=parent))
        self.proc: subprocess.Popen | None = None
        self.key_id = "GK" + secrets.token_hex(12)
        self.secret = secrets.token_hex(32)
        self.bucket = "depot"
        self.endpoint = ""
        self.admin = ""

    def start(self) -> Garage:
        rpc, s3, admin = _free_port(), _free_port(), _free_port()
        conf = self.dir / "garage.toml"
        conf.write_text(f"""metadata_dir = "{self.dir / 'meta'}"
data_dir = "{self.dir / 'data'}"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
block_size = "2M"
data_fsync = true
metadata_fsync = true
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secrets.token_hex(32)}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3}"
s3_region = "garage"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
""")
        log = self.dir / "garage.log"
        env = dict(os.environ, GARAGE_DEFAULT_ACCESS_KEY=self.key_id, GARAGE_DEFAULT_SECRET_KEY=self.secret,
                   GARAGE_DEFAULT_BUCKET=self.bucket, RUST_LOG="garage=warn")
        with open(log, "w") as f:
            self.proc = subprocess.Popen([self.bin, "-c", str(conf), "server", "--single-node", "--default-bucket"],
                                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f,
                                         start_new_session=True)
        _wait_port(s3, self.proc, "garage", log)
        _wait_port(admin, self.proc, "garage's admin API", log)
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.admin = f"http://127.0.0.1:{admin}"
        return self

    def env(self, prefix: str) -> dict:
        """What a depot process needs to keep its chunks here, under `prefix`."""
        return {
            "DEPOT_OBJECTS": "s3",
            "DEPOT_S3_ENDPOINT": self.endpoint,
            "DEPOT_S3_ALLOW_HTTP": "true",
            "DEPOT_S3_BUCKET": self.bucket,
            "DEPOT_S3_REGION": "garage",
            "DEPOT_S3_PREFIX": prefix,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
        }

    def requests(self) -> dict[str, int]:
        """S3 requests served so far, by API call (`PutObject`, `GetObject`,
        `HeadObject`, `ListObjectsV2`, …), from Garage's metrics."""
        with urllib.request.urlopen(self.admin + "/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, int] = {}
        for m in re.finditer(r'^api_s3_request_counter\{([^}]*)\}\s+(\d+(?:\.\d+)?)', text, re.M):
            ep = re.search(r'api_endpoint="([^"]+)"', m.group(1))
            if ep:
                out[ep.group(1)] = out.get(ep.group(1), 0) + int(float(m.group(2)))
        return out

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
