"""HTTP access to a depot server: one method per endpoint, errors mapped to
:class:`DepotError` subclasses that carry the command line's exit code."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import requests

try:  # optional (the `zstd` extra): without it, hash lists go as plain JSON
    import zstandard
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None  # type: ignore[assignment]

DEFAULT_SERVER = "http://localhost:8080"

# JSON request bodies shorter than this go plain even where the server takes
# zstd: a frame saves little on them. Lists of hashes are longer (about 130
# bytes of JSON per chunk), and compress to about half.
ZSTD_MIN_BODY = 1024

# Exit codes shared by the Python and the bash clients.
EXIT_USAGE = 2
EXIT_LOCAL = 3
EXIT_UNREACHABLE = 4
EXIT_REJECTED = 5
EXIT_SERVER = 6
EXIT_VERIFY = 7
EXIT_INTERRUPTED = 130


class DepotError(Exception):
    """A failure worth one line to the user."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(DepotError):
    exit_code = EXIT_USAGE


class LocalFileError(DepotError):
    exit_code = EXIT_LOCAL


class Unreachable(DepotError):
    exit_code = EXIT_UNREACHABLE


class Rejected(DepotError):
    """The server answered 4xx."""

    exit_code = EXIT_REJECTED

    def __init__(self, message: str, status: int, code: str = "", body: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body or {}


class ServerFailure(DepotError):
    """The server answered 5xx or something that is not the API."""

    exit_code = EXIT_SERVER


class VerificationFailed(DepotError):
    exit_code = EXIT_VERIFY


def server_from_env() -> str:
    return os.environ.get("DEPOT_SERVER", DEFAULT_SERVER)


TOKEN_ENV = "DEPOT_TOKEN"


def token_from_env() -> Optional[str]:
    """``DEPOT_TOKEN``, or None when it is unset or empty."""
    return os.environ.get(TOKEN_ENV, "").strip() or None


_TOKEN = re.compile(r"^[\x21-\x7e]+$")


def _check_token(token: str, source: str) -> str:
    """The token without surrounding whitespace; never echoed in errors."""
    t = token.strip()
    if not _TOKEN.match(t):
        raise UsageError(f"the token from {source} is empty or has characters a token never has "
                         "(is it one token on one line?)")
    return t


class Body:
    """A request body from byte slices, with a length (so requests sends
    Content-Length, not chunked encoding) and a progress callback."""

    def __init__(self, parts: List[bytes], on_bytes: Optional[Callable[[int], None]] = None,
                 step: int = 64 << 10):
        self.parts = parts
        self.on_bytes = on_bytes
        self.step = step
        self.length = sum(len(p) for p in parts)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            view = memoryview(part)
            for i in range(0, len(view), self.step):
                piece = view[i:i + self.step]
                yield bytes(piece)
                if self.on_bytes is not None:
                    self.on_bytes(len(piece))


def multipart(fields: List[Tuple[str, str]], file_field: str, filename: str, data: bytes,
              boundary: str, on_bytes: Optional[Callable[[int], None]] = None) -> Body:
    """A multipart/form-data body: text fields first, then the file part."""
    head = []
    for name, value in fields:
        head.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    safe = filename.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")
    head.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{safe}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    pre = "".join(head).encode("utf-8")
    post = f"\r\n--{boundary}--\r\n".encode("ascii")
    return Body([pre, data, post], on_bytes)


class Client:
    """One server. Connection failures, 5xx and 429 are retried a few times;
    other errors raise at once.

    ``token`` (default: ``$DEPOT_TOKEN``) goes on every request as
    ``Authorization: Bearer``. requests drops that header on a redirect to
    another host or from https to http, so the token goes nowhere else."""

    def __init__(self, server: Optional[str] = None, timeout: Tuple[float, float] = (10.0, 300.0),
                 retries: int = 3, token: Optional[str] = None):
        self.server = (server or server_from_env()).rstrip("/")
        if not re.match(r"^https?://", self.server):
            raise UsageError(f"server URL must start with http:// or https://: {self.server}")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "depot-client-python"
        if token is not None:
            self.token_source: Optional[str] = "the token= argument"
            token = _check_token(token, self.token_source)
        else:
            token = token_from_env()
            self.token_source = TOKEN_ENV if token else None
            if token:
                token = _check_token(token, TOKEN_ENV)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self.retries = retries
        # Set by chunking(): the server takes JSON bodies in zstd
        # (`request_encodings` in GET /api/chunking lists "zstd").
        self.zstd_json = False

    def __repr__(self) -> str:
        return f"Client({self.server!r}, token from {self.token_source or 'nowhere'})"

    # -- plumbing -------------------------------------------------------

    def url(self, path: str) -> str:
        return self.server + path

    def request(self, method: str, path: str, *, ok: Iterable[int] = (200,),
                body: Optional[Callable[[], Any]] = None, **kw) -> requests.Response:
        """Sends a request; ``body`` makes a fresh body for each attempt.
        Returns the response when its status is in ``ok``."""
        ok = tuple(ok)
        attempt = 0
        while True:
            attempt += 1
            if body is not None:
                kw["data"] = body()
            try:
                r = self.session.request(method, self.url(path), timeout=self.timeout, **kw)
            except requests.ConnectionError as e:
                if attempt <= self.retries and _worth_retrying(e):
                    time.sleep(min(0.2 * 2 ** attempt, 2.0))
                    continue
                raise Unreachable(f"cannot reach the server at {self.server}: {_reason(e)}") from None
            except requests.Timeout:
                if attempt <= self.retries:
                    continue
                raise Unreachable(f"the server at {self.server} did not answer in time") from None
            if r.status_code in ok:
                return r
            # 507 (out of space) is not retried: asking again will not help.
            transient = r.status_code == 429 or (r.status_code >= 500 and r.status_code != 507)
            if transient and attempt <= self.retries:
                wait = _retry_after(r, default=min(0.2 * 2 ** attempt, 2.0))
                r.close()
                time.sleep(wait)
                continue
            raise error_of(method, path, r, self.token_source)

    def send_json(self, method: str, path: str, body: Any, *, ok: Iterable[int] = (200,)) -> Any:
        """``json()`` with ``body`` as the request's JSON. Once ``chunking()``
        has seen the server take ``Content-Encoding: zstd`` (RFC 8878 §7.2)
        and the zstandard package is installed, a body of ``ZSTD_MIN_BODY``
        bytes or more goes as one zstd frame that declares its size (level
        3), made once and sent again as it is on a retry."""
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.zstd_json and zstandard is not None and len(data) >= ZSTD_MIN_BODY:
            data = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
            headers["Content-Encoding"] = "zstd"
        return self.json(method, path, ok=ok, data=data, headers=headers)

    def json(self, method: str, path: str, *, ok: Iterable[int] = (200,), **kw) -> Any:
        r = self.request(method, path, ok=ok, **kw)
        try:
            return r.json()
        except ValueError:
            raise ServerFailure(
                f"{method} {path}: the server answered {r.status_code} with something that is not JSON"
            ) from None

    # -- files ----------------------------------------------------------

    def info(self, file_id: str) -> Dict[str, Any]:
        return self.json("GET", f"/api/files/{_id(file_id)}/info")

    def list_page(self, limit: int = 100, cursor: Optional[str] = None,
                  name: Optional[str] = None) -> Dict[str, Any]:
        """One page of the listing, newest first; ``name``: only files with
        exactly that name (``?name=``; a server without it lists all)."""
        params: Dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        if name is not None:
            params["name"] = name
        return self.json("GET", "/api/files", params=params)

    def iter_files(self, limit: int = 100, name: Optional[str] = None) -> Iterator[Dict[str, Any]]:
        cursor = None
        while True:
            page = self.list_page(limit, cursor, name)
            yield from page.get("files", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def delete(self, file_id: str) -> None:
        self.request("DELETE", f"/api/files/{_id(file_id)}", ok=(200, 204))

    def stats(self) -> Dict[str, Any]:
        return self.json("GET", "/api/stats")

    def open_download(self, file_id: str, headers: Dict[str, str]) -> requests.Response:
        return self.request("GET", f"/api/files/{_id(file_id)}", ok=(200, 206), headers=headers,
                            stream=True)

    # -- the seed's chunked upload ----------------------------------------

    def test_piece(self, params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """The status when the server has the piece (skip it), else None."""
        r = self.request("GET", "/api/files/upload/chunked", ok=(200, 204), params=params)
        if r.status_code == 204:
            return None
        return r.json()

    def post_piece(self, params: Dict[str, Any], name: str, data: bytes,
                   on_bytes: Optional[Callable[[int], None]] = None) -> Dict[str, Any]:
        fields = [(k, str(v)) for k, v in params.items()]
        boundary = "depot-" + os.urandom(12).hex()
        r = self.request(
            "POST", "/api/files/upload/chunked", ok=(200, 201),
            body=lambda: multipart(fields, "file", name, data, boundary, on_bytes),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        return r.json()

    # -- the native dedup API ---------------------------------------------

    def chunking(self) -> Optional[Dict[str, Any]]:
        """The server's chunker, or None when it has no native API. Also
        notes whether the server takes JSON bodies in zstd (``send_json``)."""
        r = self.request("GET", "/api/chunking", ok=(200, 404))
        if r.status_code == 404:
            return None
        info = r.json()
        self.zstd_json = "zstd" in (info.get("request_encodings") or [])
        return info

    def missing(self, hashes: List[str]) -> List[str]:
        return self.send_json("POST", "/api/chunks/missing", {"hashes": hashes})["missing"]

    def put_chunk(self, digest: str, data: bytes, on_bytes: Optional[Callable[[int], None]] = None) -> bool:
        """Stores a chunk; True when it was new."""
        r = self.request("PUT", f"/api/chunks/{digest}", ok=(200, 201),
                         body=lambda: Body([data], on_bytes),
                         headers={"Content-Type": "application/octet-stream"})
        return r.status_code == 201

    def put_chunks(self, chunks: List[Tuple[str, bytes]],
                   on_bytes: Optional[Callable[[int], None]] = None) -> List[Dict[str, Any]]:
        """Stores several chunks in one request (``POST /api/chunks``: one
        multipart/form-data part of raw bytes per chunk, named by its hash),
        within the server's ``max_batch_chunks`` and ``max_batch_bytes``;
        one durability barrier on the server for all of them. Returns the
        server's ``{"hash", "len", "new"}`` per chunk, in order."""
        boundary = uuid.uuid4().hex

        def body() -> Body:
            parts: List[bytes] = []
            for digest, data in chunks:
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{digest}"\r\n\r\n'
                             .encode("ascii"))
                parts += [data, b"\r\n"]
            parts.append(f"--{boundary}--\r\n".encode("ascii"))
            return Body(parts, on_bytes)

        r = self.request("POST", "/api/chunks", body=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        stored = r.json()["chunks"]
        if [c["hash"] for c in stored] != [d for d, _ in chunks]:
            raise DepotError("the server acknowledged other chunks than those sent")
        return stored

    def commit(self, name: str, size: int, chunks: List[Dict[str, Any]]) -> Dict[str, Any]:
        return self.send_json("POST", "/api/files", {"name": name, "size": size, "chunks": chunks}, ok=(201,))

    # -- commits in parts (long chunk lists) -------------------------------

    def open_commit(self, name: str, size: int) -> Dict[str, Any]:
        """Opens a commit in parts: ``{id, max_entries, max_segments, expires_at}``."""
        return self.send_json("POST", "/api/commits", {"name": name, "size": size}, ok=(201,))

    def put_segment(self, commit_id: str, n: int, chunks: List[Dict[str, Any]]) -> Dict[str, Any]:
        """Sends segment ``n`` (the next chunks of the manifest, in order)."""
        return self.send_json("PUT", f"/api/commits/{_id(commit_id)}/segments/{int(n)}", {"chunks": chunks},
                              ok=(200, 201))

    def commit_status(self, commit_id: str) -> Dict[str, Any]:
        """Where a commit stands: ``segments`` received, ``state``, and ``file`` once finished."""
        return self.json("GET", f"/api/commits/{_id(commit_id)}")

    def finish_commit(self, commit_id: str) -> Dict[str, Any]:
        """The file (a commit finished before answers it again)."""
        return self.json("POST", f"/api/commits/{_id(commit_id)}/finish", ok=(200, 201))

    def cancel_commit(self, commit_id: str) -> None:
        self.request("DELETE", f"/api/commits/{_id(commit_id)}", ok=(204,))

    def manifest(self, file_id: str) -> Optional[Dict[str, Any]]:
        r = self.request("GET", f"/api/files/{_id(file_id)}/manifest", ok=(200, 404))
        if r.status_code == 404:
            return None
        return r.json()

    def metrics(self) -> str:
        return self.request("GET", "/metrics").text


def error_of(method: str, path: str, r: requests.Response,
             token_source: Optional[str] = None) -> DepotError:
    """The error for a response outside the expected statuses; a 401 says
    how to pass a token (``token_source``: where the one sent came from),
    a 403 which permission the server found missing."""
    body: Dict[str, Any] = {}
    try:
        parsed = r.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    message = body.get("message") or (r.text.strip()[:200] if r.text else "") or r.reason
    text = f"{method} {path.split('?')[0]}: {r.status_code} {message}"
    if r.status_code == 401:
        if token_source is None:
            text += f": the server needs a token: set {TOKEN_ENV}"
        else:
            text += (f": the server refused the token from {token_source} (unknown, expired or revoked); "
                     f"set {TOKEN_ENV} to a valid one")
    elif r.status_code == 403:
        text += ": the token lacks this permission; ask for a token that has it"
    if 400 <= r.status_code < 500:
        return Rejected(text, r.status_code, str(body.get("error", "")), body)
    return ServerFailure(text)


_ID = re.compile(r"^[0-9A-Za-z_-]{1,128}$")


def _id(file_id: str) -> str:
    if not _ID.match(file_id):
        raise UsageError(f"not a file id: {file_id!r}")
    return file_id


def _retry_after(r: requests.Response, default: float) -> float:
    try:
        return min(float(r.headers.get("Retry-After", default)), 10.0)
    except ValueError:
        return default


def _worth_retrying(e: requests.ConnectionError) -> bool:
    # Refused connections mean no server: fail at once rather than wait.
    return "refused" not in str(e).lower()


def _reason(e: Exception) -> str:
    text = str(e)
    if "refused" in text.lower():
        return "connection refused"
    m = re.search(r"(Name or service not known|Temporary failure in name resolution|"
                  r"No route to host|timed out|Connection reset by peer)", text)
    return m.group(1) if m else text.splitlines()[0][:200]
