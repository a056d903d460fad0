"""Fixtures: the real depot server on an ephemeral port, deterministic data.

The server runs in ``token`` mode (``DEPOT_AUTH_MODE=token``) unless
``DEPOT_TEST_AUTH=local``: each server's admin token is read from
``<data-dir>/admin.token`` and a token of tenant ``pytest`` with scopes
read, write and delete is made through the admin API. Tests reach the
server through ``server.client()``, ``server.http`` (a requests session),
``run_cli(..., server=server)`` and ``server.env()``, which all carry that
token; ``server.admin`` carries the admin token (for ``/metrics`` and the
store-wide ``/api/stats``). ``DEPOT_TOKEN`` from the caller's environment
is dropped, so that nothing reaches a server by accident.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
import requests

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
START_TIMEOUT = 60.0
AUTH = os.environ.get("DEPOT_TEST_AUTH", "token")
if AUTH not in ("token", "local"):
    raise SystemExit(f"DEPOT_TEST_AUTH must be token or local, not {AUTH!r}")
TENANT = "pytest"
os.environ.pop("DEPOT_TOKEN", None)
# Tokens made for a data dir, reused when a test restarts a server on it
# (the same user after a restart).
_TOKENS: Dict[Path, str] = {}

import depot_client  # noqa: E402

# The package under test is this checkout's, not an installed copy.
assert Path(depot_client.__file__).resolve().parent == PYTHON_DIR / "depot_client", depot_client.__file__


def depot_bin() -> Path:
    explicit = os.environ.get("DEPOT_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "depot-target")
    return Path(target) / "debug" / "depot"


class Server:
    """A depot server process; ``url`` once it listens."""

    def __init__(self, data_dir: Path, env: Optional[Dict[str, str]] = None):
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.log: List[str] = []
        # The tenant token and the admin token (None in local mode).
        self.token: Optional[str] = None
        self.admin_token: Optional[str] = None
        self.http = requests.Session()
        self.admin = requests.Session()

    def start(self) -> "Server":
        binary = depot_bin()
        if not binary.is_file():
            pytest.fail(f"depot binary not found at {binary}: build it (cargo build) or set DEPOT_BIN")
        env = dict(os.environ)
        env.update({"DEPOT_RATE_LIMIT": "false", "DEPOT_LOG": "warn"})
        if AUTH == "token":
            env["DEPOT_AUTH_MODE"] = "token"
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def drain() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                self.stop()
                pytest.fail(f"depot did not say it was listening within {START_TIMEOUT}s: {self.log}")
            if line is None:
                pytest.fail(f"depot exited before listening (status {self.proc.wait()}): {self.log}")
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1).rstrip("/")
                if AUTH == "token":
                    self._tokens()
                return self

    def _tokens(self) -> None:
        """Reads the admin token the server wrote; makes (or reuses) the
        tenant token the tests use."""
        path = self.data_dir / "admin.token"
        if not path.is_file():
            self.stop()
            pytest.fail(f"token mode: the server wrote no {path} (a server without token mode? "
                        f"DEPOT_TEST_AUTH=local runs without tokens); log: {self.log}")
        mode = path.stat().st_mode & 0o777
        assert mode == 0o600, f"{path} has mode {mode:o}, not 600"
        self.admin_token = path.read_text().strip()
        self.admin.headers["Authorization"] = f"Bearer {self.admin_token}"
        token = _TOKENS.get(self.data_dir)
        if token is None:
            r = self.admin.post(self.url + "/api/admin/tokens", timeout=10, json={
                "tenant": TENANT, "scopes": ["read", "write", "delete"], "name": "pytest"})
            assert r.status_code == 201, f"POST /api/admin/tokens: {r.status_code} {r.text}"
            token = r.json()["token"]
            _TOKENS[self.data_dir] = token
        self.token = token
        self.http.headers["Authorization"] = f"Bearer {token}"

    def make_token(self, scopes: List[str], tenant: str = TENANT) -> str:
        """Another token (token mode only)."""
        r = self.admin.post(self.url + "/api/admin/tokens", timeout=10,
                            json={"tenant": tenant, "scopes": scopes, "name": "pytest-" + "-".join(scopes)})
        assert r.status_code == 201, f"POST /api/admin/tokens: {r.status_code} {r.text}"
        return r.json()["token"]

    def client(self, **kw) -> "depot_client.Client":
        """The Python client on this server, with the tests' token."""
        kw.setdefault("token", self.token)
        return depot_client.Client(self.url, **kw)

    def env(self, **extra: str) -> Dict[str, str]:
        """An environment for a client process: DEPOT_SERVER and DEPOT_TOKEN."""
        env = dict(os.environ, DEPOT_SERVER=self.url, **extra)
        if self.token:
            env["DEPOT_TOKEN"] = self.token
        return env

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # -- observations -----------------------------------------------------

    def metric(self, name: str) -> float:
        text = self.admin.get(self.url + "/metrics", timeout=10).text
        m = re.search(rf"^{re.escape(name)} ([0-9.eE+-]+)$", text, re.M)
        assert m, f"metric {name} not in /metrics"
        return float(m.group(1))

    def request_bytes(self) -> int:
        """Request body bytes the server has received so far."""
        return int(self.metric("depot_http_request_bytes_total"))

    def response_bytes(self) -> int:
        return int(self.metric("depot_http_response_bytes_total"))

    def native(self) -> bool:
        return self.http.get(self.url + "/api/chunking", timeout=10).status_code == 200


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("depot-data")).start()
    yield s
    s.stop()


@pytest.fixture
def fresh_server(tmp_path):
    """A server of its own (for restarts): stopped at the end."""
    s = Server(tmp_path / "data").start()
    yield s
    s.stop()


@pytest.fixture
def native_server(server):
    assert server.native(), "GET /api/chunking must answer 200: the native dedup API is part of depot"
    return server


def data(n: int, seed: int) -> bytes:
    """Deterministic incompressible bytes."""
    return np.random.Generator(np.random.PCG64(seed)).bytes(n)


@pytest.fixture
def make_file(tmp_path):
    counter = [0]

    def make(n: int, seed: int, name: Optional[str] = None) -> Path:
        counter[0] += 1
        p = tmp_path / (name or f"file{counter[0]}-{seed}.bin")
        p.write_bytes(data(n, seed))
        return p

    return make


def run_cli(*args: str, server: Optional[Server] = None, server_url: Optional[str] = None,
            check: bool = False, cwd: Optional[Path] = None,
            token: Optional[str] = None) -> subprocess.CompletedProcess:
    """``python -m depot_client ...`` as a user runs it: against ``server``
    with its token (``token`` instead, when given; ``""`` for none), or
    against ``server_url`` with no token."""
    env = server.env() if server is not None else dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    if server_url:
        env["DEPOT_SERVER"] = server_url
    if token is not None:
        env["DEPOT_TOKEN"] = token
    r = subprocess.run([sys.executable, "-m", "depot_client", *args], capture_output=True, text=True,
                       env=env, cwd=cwd, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"depot_client {args} exited {r.returncode}: {r.stderr}")
    return r
