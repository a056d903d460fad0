"""Uploads that skip what the server already has.

Two paths:

* native (when ``GET /api/chunking`` answers): the file is cut with the
  server's own chunker (FastCDC 2020, :mod:`depot_client.fastcdc`), the
  server is asked which chunk hashes it lacks, only those are sent
  (``PUT /api/chunks/{hash}``), and the file is committed as a list of chunks
  (``POST /api/files``; a list longer than one segment of 1024 entries in
  parts, ``/api/commits``, so that no request grows with the file). Content
  shared with any stored file is never sent.
* seed (the chunked protocol of resumable.js / flow.js): fixed-size pieces,
  each tested first with its BLAKE3 (``chunkHash``), sent only when absent.
  The session lives on the server, so re-running resumes.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import blake3
from tqdm import tqdm

from . import fastcdc, policy
from .api import Client, DepotError, LocalFileError, Rejected, ServerFailure, Unreachable

DEFAULT_PIECE_SIZE = 1 << 20
# A native upload asks about and sends chunks in batches of at most this
# many bytes (bounded memory; each batch is read from the file once).
BATCH_BYTES = 32 << 20
BATCH_CHUNKS = 1024
# A manifest longer than this is committed in parts (the server's segment).
SEGMENT_ENTRIES = 1024
# How often a commit in parts asks where it stands and goes on after a
# failure the request retries did not cure.
RESUMES = 3


@dataclass
class PieceEvent:
    """What happened to one piece (or chunk): ``action`` is ``sent`` or
    ``skipped``."""

    number: int
    total: Optional[int]
    offset: int
    size: int
    action: str


@dataclass
class UploadResult:
    file: Dict[str, Any]
    method: str  # "native" or "seed"
    pieces: int = 0
    sent_pieces: int = 0
    sent_bytes: int = 0
    skipped_pieces: int = 0
    skipped_bytes: int = 0
    notes: List[str] = field(default_factory=list)

    @property
    def file_id(self) -> str:
        return self.file["id"]

    def summary(self) -> str:
        what = "chunks" if self.method == "native" else "pieces"
        return (
            f"{self.method} upload: sent {self.sent_pieces} of {self.pieces} {what} "
            f"({self.sent_bytes} bytes), skipped {self.skipped_pieces} already on the server "
            f"({self.skipped_bytes} bytes)"
        )


OnPiece = Callable[[PieceEvent], None]


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def _open(path: str):
    if not os.path.exists(path):
        raise LocalFileError(f"no such file: {path}")
    if os.path.isdir(path):
        raise LocalFileError(f"is a directory, not a file: {path}")
    try:
        return open(path, "rb")
    except OSError as e:
        raise LocalFileError(f"cannot read {path}: {e.strerror}") from None


# At most 80 columns: tqdm shrinks the bar to fit what is left.
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {postfix} {rate_fmt} ETA {remaining}"


def bar_columns() -> int:
    """The width a bar may use: the terminal's, at most 80."""
    return min(80, shutil.get_terminal_size((80, 24)).columns)


def short_bytes(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1000 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


class _Bars:
    """An overall bar (bytes of the file confirmed: sent, or skipped because
    the server has them) and a per-piece bar (bytes of the piece in
    flight). ``disable=None``: only on a terminal."""

    def __init__(self, total: int, desc: str, disable: Optional[bool]):
        cols = bar_columns()
        label = desc if len(desc) <= 14 else desc[:13] + "~"
        self.overall = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                            disable=disable, position=0, ncols=cols, bar_format=BAR_FORMAT)
        self.piece = tqdm(total=0, desc="piece", unit="B", unit_scale=True, unit_divisor=1024,
                          disable=disable, position=1, leave=False, ncols=cols)
        self.sent = 0
        self.skipped = 0
        self.overall.set_postfix_str("sent 0B skip 0B", refresh=False)

    def start_piece(self, label: str, size: int) -> Callable[[int], None]:
        self.piece.reset(total=size)
        self.piece.set_description(label, refresh=False)
        return self.piece.update

    def done(self, n: int, sent: bool = True) -> None:
        if sent:
            self.sent += n
        else:
            self.skipped += n
        self.overall.set_postfix_str(f"sent {short_bytes(self.sent)} skip {short_bytes(self.skipped)}",
                                     refresh=False)
        self.overall.update(n)

    def close(self) -> None:
        self.piece.close()
        self.overall.close()


def upload(client: Client, path: str, *, method: str = "auto", piece_size: int = DEFAULT_PIECE_SIZE,
           progress: Optional[bool] = None, on_piece: Optional[OnPiece] = None,
           name: Optional[str] = None) -> UploadResult:
    """Uploads ``path``; ``method`` is ``auto``, ``native`` or ``seed``.
    ``progress``: True/False for bars on/off, None for only on a terminal.
    ``on_piece`` is called after each piece is sent or skipped. A file the
    server would refuse (size, type) raises :class:`Rejected` before
    anything is sent."""
    name = name or os.path.basename(os.path.abspath(path))
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        notes: List[str] = []
        info = client.chunking()  # the limits, for every method
        policy.check(name, size, policy.read_head(f), info)
        if method in ("auto", "native"):
            params, why = native_params(info)
            if params is not None:
                return _upload_native(client, f, size, name, params, info or {}, progress, on_piece)
            if method == "native":
                raise DepotError(f"cannot use the native upload API: {why}")
            if info is not None:
                _warn(f"not using the native upload API ({why}); using chunked pieces")
                notes.append(why)
        elif method != "seed":
            raise ValueError(f"unknown upload method {method!r}")
        result = _upload_seed(client, f, path, size, name, piece_size, progress, on_piece)
        result.notes.extend(notes)
        return result


def native_params(info: Optional[Dict[str, Any]]) -> Tuple[Optional[fastcdc.Params], str]:
    """This client's chunker for the server's ``GET /api/chunking``, or
    None and the reason it cannot reproduce it."""
    if info is None:
        return None, "the server has no native upload API (GET /api/chunking: 404)"
    try:
        if info.get("algorithm") != "fastcdc-2020":
            return None, f"unknown chunking algorithm {info.get('algorithm')!r}"
        if info.get("normalization") != 1:
            return None, f"unsupported normalization level {info.get('normalization')!r}"
        if info.get("hash") != "blake3":
            return None, f"unsupported chunk hash {info.get('hash')!r}"
        params = fastcdc.Params(int(info["min"]), int(info["avg"]), int(info["max"]))
    except (KeyError, TypeError, ValueError) as e:
        return None, f"unusable chunking parameters: {e}"
    if info.get("chunker_id") != params.chunker_id:
        return None, f"chunker id {info.get('chunker_id')!r} is not {params.chunker_id!r}"
    if params.max > int(info.get("max_chunk_size", params.max)):
        return None, "the server's max_chunk_size is below its own max chunk"
    try:
        fastcdc.self_check()
    except AssertionError as e:  # a broken port must never upload
        return None, str(e)
    return params, ""


def batch_limits(info: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    """The server's limits on one ``POST /api/chunks`` (parts, body bytes),
    or None when it has no such endpoint (send a PUT per chunk)."""
    try:
        return max(1, int(info["max_batch_chunks"])), int(info["max_batch_bytes"])
    except (KeyError, TypeError, ValueError):
        return None


# Multipart framing allowed for per part (boundary and headers: about 110
# bytes with a 64-hex name and a 32-hex boundary).
PART_FRAMING = 256


def _upload_native(client: Client, f, size: int, name: str, params: fastcdc.Params,
                   info: Dict[str, Any], progress: Optional[bool], on_piece: Optional[OnPiece]) -> UploadResult:
    max_query = max(1, int(info.get("max_missing_query", BATCH_CHUNKS)))
    # POST /api/chunks when the server has it: one durability barrier per
    # group of chunks instead of one per chunk.
    limits = batch_limits(info)

    def fits(group: List[Tuple[str, bytes]], n: int) -> bool:
        """Whether a chunk of ``n`` bytes joins ``group`` (one request)."""
        if limits is None:
            return False  # a PUT per chunk
        max_parts, max_bytes = limits
        total = sum(len(d) + PART_FRAMING for _, d in group) + n + 2 * PART_FRAMING
        return len(group) < max_parts and total <= max_bytes

    result = UploadResult(file={}, method="native")
    manifest: List[Dict[str, Any]] = []
    where: Dict[str, Tuple[int, int]] = {}  # hash -> (offset, len), first occurrence
    known: set = set()  # hashes the server has (asked, or sent by us)
    bars = _Bars(size, name, disable=None if progress is None else not progress)
    batch: List[Tuple[int, str, bytes]] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch, batch_bytes
        ask = list(dict.fromkeys(h for _, h, _ in batch if h not in known))
        missing: set = set()
        for i in range(0, len(ask), max_query):
            missing.update(client.missing(ask[i:i + max_query]))
        # Each chunk's event comes once it is acknowledged (skipped ones in
        # their place between them), so an event says what the server holds.
        events: List[Tuple[int, int, str]] = []  # offset, length, action; not reported yet
        group: List[Tuple[str, bytes]] = []

        def report() -> None:
            for offset, length, action in events:
                n = result.pieces = result.pieces + 1
                if action == "sent":
                    result.sent_pieces += 1
                    result.sent_bytes += length
                else:
                    result.skipped_pieces += 1
                    result.skipped_bytes += length
                bars.done(length, sent=action == "sent")
                if on_piece is not None:
                    on_piece(PieceEvent(n, None, offset, length, action))
            events.clear()

        def send() -> None:
            if len(group) == 1 and limits is None:
                client.put_chunk(group[0][0], group[0][1],
                                 bars.start_piece(f"chunk {result.pieces + len(events)}", len(group[0][1])))
            elif group:
                group_bytes = sum(len(d) for _, d in group)
                client.put_chunks(list(group), bars.start_piece(f"{len(group)} chunks", group_bytes))
            group.clear()
            report()

        for offset, digest, data in batch:
            if digest in missing and digest not in known:
                if group and not fits(group, len(data)):
                    send()
                group.append((digest, data))
                action = "sent"
            else:
                action = "skipped"
            known.add(digest)
            events.append((offset, len(data), action))
        send()
        batch = []
        batch_bytes = 0

    try:
        for offset, view in fastcdc.iter_chunks(f, params):
            data = bytes(view)
            digest = blake3.blake3(data).hexdigest()
            manifest.append({"hash": digest, "len": len(data)})
            where.setdefault(digest, (offset, len(data)))
            batch.append((offset, digest, data))
            batch_bytes += len(data)
            if batch_bytes >= BATCH_BYTES or len(batch) >= min(BATCH_CHUNKS, max_query):
                flush()
        flush()
        if sum(c["len"] for c in manifest) != size:
            raise LocalFileError(f"{name} changed while it was read; try again")

        def resend(lost: List[str]) -> None:
            # Chunks the server dropped since it said it had them (a lease
            # ran out): send them again from the file.
            for digest in lost:
                if digest not in where:
                    raise DepotError(f"the server asks for chunk {digest}, which {name} does not hold")
                off, length = where[digest]
                f.seek(off)
                data = f.read(length)
                client.put_chunk(digest, data, bars.start_piece("resend", length))
                result.sent_bytes += length

        if len(manifest) > SEGMENT_ENTRIES:
            result.file = commit_in_parts(client, name, size, manifest, resend)
        else:
            result.file = _resending(lambda: client.commit(name, size, manifest), resend)
        return result
    finally:
        bars.close()


def _resending(call: Callable[[], Dict[str, Any]], resend: Callable[[List[str]], None],
               attempts: int = 3) -> Dict[str, Any]:
    """``call()``; on a 409 that lists missing chunks, ``resend`` them and
    call again (at most ``attempts`` calls)."""
    for attempt in range(attempts):
        try:
            return call()
        except Rejected as e:
            lost = e.body.get("missing") if e.status == 409 else None
            if not lost or attempt == attempts - 1:
                raise
            resend(lost)
    raise AssertionError("unreachable")


def commit_in_parts(client: Client, name: str, size: int, manifest: List[Dict[str, Any]],
                    resend: Callable[[List[str]], None]) -> Dict[str, Any]:
    """Commits ``manifest`` in segments (``/api/commits``): open, send each
    segment, finish. A segment or finish that names chunks the server lost
    ``resend``s them and tries again; a failure the request retries did not
    cure (the server restarting, a broken connection) asks where the commit
    stands and sends only the segments it lacks. A server without commits in
    parts gets the one-shot commit."""
    try:
        session = client.open_commit(name, size)
    except Rejected as e:
        if e.status not in (404, 405):
            raise
        return _resending(lambda: client.commit(name, size, manifest), resend)
    cid = session["id"]
    per = max(1, int(session.get("max_entries", SEGMENT_ENTRIES)))
    sent: set = set()
    for attempt in range(RESUMES + 1):
        try:
            for n, start in enumerate(range(0, len(manifest), per)):
                if n in sent:
                    continue
                segment = manifest[start:start + per]
                _resending(lambda: client.put_segment(cid, n, segment), resend)  # noqa: B023
                sent.add(n)
            return _resending(lambda: client.finish_commit(cid), resend)
        except (Unreachable, ServerFailure):
            if attempt == RESUMES:
                raise
            status = client.commit_status(cid)
            if status.get("file"):
                return status["file"]
            sent = set(status.get("segments", []))
    raise AssertionError("unreachable")


def seed_identifier(path: str, size: int) -> str:
    """A stable upload identifier: the same file (path, size, mtime) resumes
    the same server-side session."""
    st = os.stat(path)
    key = f"{os.path.abspath(path)}\0{size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape")
    return "py-" + blake3.blake3(key).hexdigest()[:32]


def _upload_seed(client: Client, f, path: str, size: int, name: str, piece_size: int,
                 progress: Optional[bool], on_piece: Optional[OnPiece]) -> UploadResult:
    if piece_size <= 0:
        raise ValueError("piece size must be positive")
    total = max(1, math.ceil(size / piece_size))
    identifier = seed_identifier(path, size)
    result = UploadResult(file={}, method="seed", pieces=total)
    bars = _Bars(size, name, disable=None if progress is None else not progress)
    try:
        _seed_pieces(client, f, size, name, piece_size, total, identifier, result, bars, on_piece)
        return result
    finally:
        bars.close()


def _seed_pieces(client: Client, f, size: int, name: str, piece_size: int, total: int,
                 identifier: str, result: UploadResult, bars: _Bars, on_piece: Optional[OnPiece]) -> None:
    for number in range(1, total + 1):
        offset = (number - 1) * piece_size
        length = min(piece_size, size - offset)
        f.seek(offset)
        data = f.read(length)
        if len(data) != length:
            raise LocalFileError(f"{name} changed while it was read; try again")
        params = {
            "chunkNumber": number,
            "totalChunks": total,
            "chunkSize": piece_size,
            "currentChunkSize": length,
            "totalSize": size,
            "identifier": identifier,
            "filename": name,
            "chunkHash": blake3.blake3(data).hexdigest(),
        }
        status = client.test_piece(params)
        if status is not None:
            result.skipped_pieces += 1
            result.skipped_bytes += length
            action = "skipped"
        else:
            status = client.post_piece(params, name, data, bars.start_piece(f"piece {number}/{total}", length))
            result.sent_pieces += 1
            result.sent_bytes += length
            action = "sent"
        bars.done(length, sent=action == "sent")
        if on_piece is not None:
            on_piece(PieceEvent(number, total, offset, length, action))
        if status.get("status") == "complete" and status.get("file"):
            result.file = status["file"]
            # Finished (now, or in an earlier run): the rest is there too.
            rest = size - offset - length
            if rest > 0:
                result.skipped_pieces += total - number
                result.skipped_bytes += rest
                bars.done(rest, sent=False)
            return
    if not result.file:
        raise DepotError(
            f"all {total} pieces are on the server but it did not report the file as complete"
        )
