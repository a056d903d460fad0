"""Downloads that resume and verify.

The bytes land in ``OUT.part`` and move to ``OUT`` once verified; an
existing ``OUT`` is refused unless ``force``. A partial ``OUT.part`` is
continued with ``Range`` and ``If-Range`` (the file's ETag): if the server's copy is not the one the partial came from it
answers the whole file and the download starts over. Every byte is checked:
the size always; the BLAKE3 of the whole content when the server knows it
(``content_hash``); and, with the native API, each chunk's BLAKE3 against the
file's manifest. With a manifest, the bytes already on disk are checked
chunk by chunk before resuming, and the download resumes from the first
chunk that does not match.

With seeds (``seeds=[...]``, or the existing ``OUT`` under ``force``) the
download is a delta download: the seed files are cut with the server's
chunker, every chunk of the manifest a seed holds is copied from it (and
checked against its BLAKE3 again as it is copied), and of each run of
chunks no seed holds only the bytes around the edit are fetched: the run's
edges are taken from the seed bytes around the chunks before and after it,
as far as probes show they hold (see :mod:`depot_client.probe`), and every
chunk put together is checked against its BLAKE3; one that does not match
is fetched whole.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import blake3
from tqdm import tqdm

import requests

from .api import Client, LocalFileError, ServerFailure, Unreachable, VerificationFailed
from .upload import BAR_FORMAT, bar_columns, short_bytes

READ_SIZE = 1 << 20


@dataclass
class DownloadResult:
    path: str
    size: int
    resumed_from: int = 0
    received_bytes: int = 0
    reused_bytes: int = 0  # copied from seeds
    checks: List[str] = field(default_factory=list)  # what was verified


def _body(r, received):
    """The response body in pieces; a connection that breaks off mid-body is
    an :class:`Unreachable` saying how to resume, not a traceback."""
    try:
        yield from r.iter_content(READ_SIZE)
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as e:
        raise Unreachable(
            f"the download broke off after {received()} bytes ({e}); run the same command again to resume"
        ) from e


class _Verifier:
    """Checks bytes fed in file order: per-chunk hashes from a manifest,
    and the whole-content hash."""

    def __init__(self, size: int, content_hash: Optional[str], manifest: Optional[Dict[str, Any]]):
        self.size = size
        self.content_hash = content_hash
        self.whole = blake3.blake3() if content_hash else None
        self.chunks = []
        if manifest is not None:
            self.chunks = [(int(c["offset"]), int(c["len"]), c["hash"]) for c in manifest["chunks"]]
            if sum(c[1] for c in self.chunks) != size:
                raise ServerFailure("the file's manifest does not add up to its size")
        self.index = 0
        self.chunk_hasher = blake3.blake3()
        self.chunk_fill = 0

    def update(self, data) -> Optional[int]:
        """Feeds bytes; returns the offset of a chunk that does not match
        its hash (the bytes up to it are good), else None."""
        if self.whole is not None:
            self.whole.update(data)
        view = memoryview(data)
        while self.chunks and len(view) and self.index < len(self.chunks):
            off, length, digest = self.chunks[self.index]
            take = min(length - self.chunk_fill, len(view))
            self.chunk_hasher.update(view[:take])
            self.chunk_fill += take
            view = view[take:]
            if self.chunk_fill == length:
                if self.chunk_hasher.hexdigest() != digest:
                    return off
                self.index += 1
                self.chunk_hasher = blake3.blake3()
                self.chunk_fill = 0
        return None

    def finish(self) -> List[str]:
        checks = ["size"]
        if self.chunks:
            # A zero-length chunk list only for an empty file.
            if self.index != len(self.chunks):
                raise VerificationFailed("the download ended inside a chunk")
            checks.append(f"{len(self.chunks)} chunk hashes")
        if self.whole is not None:
            if self.whole.hexdigest() != self.content_hash:
                raise VerificationFailed("the downloaded content does not match the file's content_hash")
            checks.append("content_hash")
        return checks


def _safe_name(name: str, fallback: str) -> str:
    base = os.path.basename(name.replace("\\", "/")).strip()
    base = re.sub(r"[\x00-\x1f]", "_", base)
    if base in ("", ".", ".."):
        return fallback
    return base


def download(client: Client, file_id: str, out: Optional[str] = None, *, resume: bool = True,
             progress: Optional[bool] = None, force: bool = False,
             seeds: Optional[List[str]] = None) -> DownloadResult:
    """Downloads ``file_id`` to ``out`` (default: its name, here). The
    bytes go to ``out + ".part"``, which a later run resumes, and are moved
    into place once verified. An existing ``out`` is never overwritten
    unless ``force`` (or it is named as a seed): :class:`LocalFileError`
    (exit code 3). ``seeds``: local files or directories that may hold some
    of the file's chunks; an existing ``out`` replaced under ``force`` is
    one too."""
    info = client.info(file_id)
    size = int(info["size"])
    etag = info.get("etag")
    if out is None:
        out = _safe_name(info.get("name", ""), file_id)
    elif os.path.isdir(out):
        out = os.path.join(out, _safe_name(info.get("name", ""), file_id))
    seeds = list(seeds or [])
    if os.path.lexists(out) and not force and out not in seeds:
        raise LocalFileError(f"{out} exists; use --force to overwrite it, or name another output file")
    if force and os.path.isfile(out) and out not in seeds:
        seeds.append(out)
    part = out + ".part"
    chunking = client.chunking()
    manifest = client.manifest(file_id) if chunking is not None else None
    if seeds and manifest is not None:
        result = _download_seeded(client, file_id, part, size, etag, chunking, manifest, seeds, progress)
        try:
            os.replace(part, out)
        except OSError as e:
            raise LocalFileError(f"cannot move {part} into place: {e.strerror}") from None
        result.path = out
        return result
    result = _download(client, file_id, part, size, etag, info.get("content_hash"), manifest, resume,
                       progress, retry_fresh=True)
    try:
        os.replace(part, out)
    except OSError as e:
        raise LocalFileError(f"cannot move {part} into place: {e.strerror}") from None
    result.path = out
    return result


def _download(client: Client, file_id: str, out: str, size: int, etag: Optional[str],
              content_hash: Optional[str], manifest: Optional[Dict[str, Any]], resume: bool,
              progress: Optional[bool], retry_fresh: bool) -> DownloadResult:
    try:
        return _download_once(client, file_id, out, size, etag, content_hash, manifest, resume,
                              progress, retry_fresh)
    except _Redo as redo:
        _note(f"{out}: bytes from {redo.offset} do not match the file; downloading from there")
        return _download_once(client, file_id, out, size, etag, content_hash, manifest, True,
                              progress, retry_fresh=False)


class _Redo(Exception):
    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


def _download_once(client: Client, file_id: str, out: str, size: int, etag: Optional[str],
                   content_hash: Optional[str], manifest: Optional[Dict[str, Any]], resume: bool,
                   progress: Optional[bool], retry_fresh: bool) -> DownloadResult:
    verifier = _Verifier(size, content_hash, manifest)
    result = DownloadResult(path=out, size=size)
    have = os.path.getsize(out) if resume and os.path.isfile(out) else 0
    if have > size:
        _note(f"{out} is larger than the file on the server; downloading it again")
        have = 0
    try:
        fh = open(out, "r+b" if have else "wb")
    except OSError as e:
        raise LocalFileError(f"cannot write {out}: {e.strerror}") from None
    with fh:
        if have:
            # Check what is there; with a manifest keep only whole good chunks.
            good = _check_existing(fh, have, verifier)
            if good < have:
                _note(f"{out}: bytes from {good} do not match the file; downloading from there")
                verifier = _Verifier(size, content_hash, manifest)
                fh.seek(0)
                fh.truncate(good)
                have = good
                if good:
                    _check_existing(fh, good, verifier)
            result.resumed_from = have
        fh.seek(have)
        label = os.path.basename(out)
        bar = tqdm(total=size, initial=have, desc=label if len(label) <= 14 else label[:13] + "~", unit="B",
                   unit_scale=True, unit_divisor=1024, disable=None if progress is None else not progress,
                   ncols=bar_columns(), bar_format=BAR_FORMAT)
        bar.set_postfix_str(f"got 0B kept {short_bytes(have)}", refresh=False)
        try:
            if have < size:
                headers = {"Accept-Encoding": "identity"}
                if have:
                    headers["Range"] = f"bytes={have}-"
                    if etag:
                        headers["If-Range"] = f'"{etag}"'
                r = client.open_download(file_id, headers)
                with r:
                    if have and r.status_code == 200:
                        # The file is not the one the partial came from.
                        _note(f"{out}: the server sent the whole file; starting over")
                        verifier = _Verifier(size, content_hash, manifest)
                        fh.seek(0)
                        fh.truncate(0)
                        have = 0
                        result.resumed_from = 0
                        bar.reset(total=size)
                    elif have:
                        want = f"bytes {have}-{size - 1}/{size}"
                        if r.headers.get("Content-Range") != want:
                            raise ServerFailure(
                                f"asked for bytes {have}- and got Content-Range {r.headers.get('Content-Range')!r}"
                            )
                    for data in _body(r, lambda: have):
                        if have + len(data) > size:
                            raise VerificationFailed(f"the server sent more than the {size} bytes of the file")
                        bad = verifier.update(data)
                        if bad is not None:
                            if bad < result.resumed_from and retry_fresh:
                                # The partial chunk on disk was not this file's.
                                fh.truncate(bad)
                                raise _Redo(bad)
                            raise VerificationFailed(
                                f"chunk at offset {bad} does not match its hash in the manifest"
                            )
                        fh.write(data)
                        have += len(data)
                        result.received_bytes += len(data)
                        bar.set_postfix_str(f"got {short_bytes(result.received_bytes)} kept "
                                            f"{short_bytes(result.resumed_from)}", refresh=False)
                        bar.update(len(data))
        finally:
            bar.close()
        fh.truncate(have)
    if have != size:
        raise VerificationFailed(f"got {have} bytes of {size}; run the same command again to resume")
    try:
        result.checks = verifier.finish()
    except VerificationFailed:
        if result.resumed_from and retry_fresh:
            # The partial file was not this file's beginning: start over.
            _note(f"{out}: the resumed file does not verify; downloading it whole")
            return _download_once(client, file_id, out, size, etag, content_hash, manifest, False,
                                  progress, retry_fresh=False)
        raise
    return result


def _check_existing(fh, have: int, verifier: _Verifier) -> int:
    """Feeds the first ``have`` bytes of ``fh`` to the verifier; returns how
    many of them are good (all, unless a chunk fails its hash)."""
    fh.seek(0)
    done = 0
    while done < have:
        data = fh.read(min(READ_SIZE, have - done))
        if not data:
            break
        bad = verifier.update(data)
        if bad is not None:
            return bad
        done += len(data)
    return done


def seed_files(paths: List[str], skip: str) -> List[str]:
    """The files under ``paths`` (directories walked, symlinked directories
    not followed), without ``skip``."""
    out: List[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, _dirs, files in os.walk(p):
                out.extend(os.path.join(root, f) for f in files)
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise LocalFileError(f"seed {p} does not exist")
    return sorted({f for f in out if os.path.abspath(f) != os.path.abspath(skip)})


def _download_seeded(client: Client, file_id: str, part: str, size: int, etag: Optional[str],
                     chunking: Dict[str, Any], manifest: Dict[str, Any], seeds: List[str],
                     progress: Optional[bool]) -> DownloadResult:
    from . import probe
    from .fastcdc import Params, iter_chunks

    chunks = [(int(c["offset"]), int(c["len"]), c["hash"]) for c in manifest["chunks"]]
    if sum(c[1] for c in chunks) != size:
        raise ServerFailure("the file's manifest does not add up to its size")
    params = Params(int(chunking["min"]), int(chunking["avg"]), int(chunking["max"]))
    wanted = {c[2] for c in chunks}
    found: Dict[str, tuple] = {}
    for path in seed_files(seeds, part):
        try:
            with open(path, "rb") as f:
                for offset, data in iter_chunks(f, params):
                    digest = blake3.blake3(data).hexdigest()
                    if digest in wanted and digest not in found:
                        found[digest] = (path, offset)
        except OSError:
            continue  # a seed only saves work; an unreadable one is skipped
    result = DownloadResult(path=part, size=size)
    try:
        fh = open(part, "w+b")
    except OSError as e:
        raise LocalFileError(f"cannot write {part}: {e.strerror}") from None
    label = os.path.basename(part)
    bar = tqdm(total=size, desc=label if len(label) <= 14 else label[:13] + "~", unit="B", unit_scale=True,
               unit_divisor=1024, disable=None if progress is None else not progress, ncols=bar_columns(),
               bar_format=BAR_FORMAT)
    handles: Dict[str, Any] = {}

    def read_seed(path: str, offset: int, n: int) -> Optional[bytes]:
        try:
            src = handles.get(path) or handles.setdefault(path, open(path, "rb"))
            src.seek(offset)
            return src.read(n)
        except OSError:
            return None

    def seed_len(path: str) -> int:
        try:
            return os.path.getsize(path)
        except OSError:
            return 0

    with fh:
        fh.truncate(size)
        # Where each chunk came from (None: not from a seed).
        sources: List[Optional[tuple]] = [None] * len(chunks)
        try:
            for i, (offset, length, digest) in enumerate(chunks):
                at = found.get(digest)
                if at is None:
                    continue
                data = read_seed(at[0], at[1], length)
                if data is None or len(data) != length or blake3.blake3(data).hexdigest() != digest:
                    continue  # the seed changed since it was cut: fetch it
                fh.seek(offset)
                fh.write(data)
                sources[i] = at
                result.reused_bytes += length
                bar.update(length)
            bar.set_postfix_str(f"got 0B seed {short_bytes(result.reused_bytes)}", refresh=False)
            # Runs with a seed on either side, long enough to be worth
            # probing, are put together from the seeds; the rest is fetched.
            whole, guessed = [], []
            for i, j in _holes(sources):
                start, end = chunks[i][0], chunks[j - 1][0] + chunks[j - 1][1]
                front = back = None
                if i > 0 and sources[i - 1] is not None:
                    front = (sources[i - 1][0], sources[i - 1][1] + chunks[i - 1][1])
                if j < len(chunks) and sources[j] is not None:
                    back = sources[j]
                if end - start >= probe.MIN_RUN and (front or back):
                    guessed.append((i, j, probe.Run(start, end - start, front, back)))
                else:
                    whole.append((i, j))
            if guessed:
                try:
                    plans, received = probe.locate(client, file_id, etag, [g[2] for g in guessed], read_seed,
                                                   seed_len)
                except probe.NoRanges:
                    whole.extend((i, j) for i, j, _ in guessed)  # a server without lists of ranges
                else:
                    result.received_bytes += received
                    for (i, j, run), plan in zip(guessed, plans):
                        _put_together(client, file_id, etag, chunks[i:j], run, plan, read_seed, fh, result, bar)
            for i, j in sorted(whole):
                _fetch_run(client, file_id, etag, chunks[i:j], fh, result, bar)
        finally:
            for h in handles.values():
                h.close()
        bar.close()
        fh.flush()
        os.fsync(fh.fileno())
    result.checks = ["size", f"{len(chunks)} chunk hashes"]
    return result


def _holes(sources: List[Optional[tuple]]):
    """(i, j): the runs of chunks with no source."""
    i = 0
    while i < len(sources):
        if sources[i] is not None:
            i += 1
            continue
        j = i
        while j < len(sources) and sources[j] is None:
            j += 1
        yield i, j
        i = j


def _put_together(client: Client, file_id: str, etag: Optional[str], run_chunks: List[tuple], run, plan,
                  read_seed, fh, result: DownloadResult, bar) -> None:
    """A run's guessed edges from the seeds, the bytes between them from the
    server; then every chunk checked, the ones that do not match fetched."""
    front, back = plan
    lo, hi = run.start + front, run.start + run.length - back
    copied = True
    for guess, to, n, first in ((run.front, run.start, front, True), (run.back, hi, back, False)):
        if guess is None or n == 0:
            continue
        path, at = guess
        src = at if first else at - n
        done = 0
        while done < n:
            data = read_seed(path, src + done, min(READ_SIZE, n - done))
            if not data:
                copied = False
                break
            fh.seek(to + done)
            fh.write(data)
            done += len(data)
    if hi > lo:
        _fetch_span(client, file_id, etag, lo, hi, fh, result, bar)
    fh.flush()
    bad = []
    for k, (off, length, digest) in enumerate(run_chunks):
        fh.seek(off)
        if copied and blake3.blake3(fh.read(length)).hexdigest() == digest:
            from_seed = length - max(0, min(hi, off + length) - max(lo, off))
            result.reused_bytes += from_seed
            bar.update(from_seed)
        else:
            bad.append(k)
    k = 0
    while k < len(bad):
        m = k
        while m + 1 < len(bad) and bad[m + 1] == bad[m] + 1:
            m += 1
        _fetch_run(client, file_id, etag, run_chunks[bad[k]:bad[m] + 1], fh, result, bar)
        k = m + 1


def _open_range(client: Client, file_id: str, etag: Optional[str], start: int, end: int):
    """The answer to ``GET`` of bytes ``start..end`` of the file (``Range``,
    with ``If-Range`` on ``etag``: a changed file answers 200, refused here),
    unencoded; a 206, else ``ServerFailure``. The caller closes it."""
    headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{end - 1}"}
    if etag:
        headers["If-Range"] = f'"{etag}"'
    r = client.open_download(file_id, headers)
    if r.status_code != 206:
        r.close()
        raise ServerFailure(f"asked for bytes {start}-{end - 1} and got {r.status_code}")
    return r


def _fetch_span(client: Client, file_id: str, etag: Optional[str], start: int, end: int, fh,
                result: DownloadResult, bar) -> None:
    """Bytes ``start..end`` with one ``Range`` request, written in place
    (checked afterwards, as parts of the chunks around them)."""
    with _open_range(client, file_id, etag, start, end) as r:
        fh.seek(start)
        pos = start
        for data in _body(r, lambda: pos - start):
            if pos + len(data) > end:
                raise VerificationFailed("the server sent more than the range asked for")
            fh.write(data)
            pos += len(data)
            result.received_bytes += len(data)
            bar.update(len(data))
    if pos != end:
        raise Unreachable(f"the range {start}-{end - 1} ended early; run the same command again")


def _fetch_run(client: Client, file_id: str, etag: Optional[str], run: List[tuple], fh,
               result: DownloadResult, bar) -> None:
    """Fetches consecutive chunks with one ``Range`` request, verifying each."""
    start = run[0][0]
    end = run[-1][0] + run[-1][1]
    if start == end:
        return
    with _open_range(client, file_id, etag, start, end) as r:
        fh.seek(start)
        k, fill, hasher, pos = 0, 0, blake3.blake3(), start
        for data in _body(r, lambda: pos - start):
            view = memoryview(data)
            while len(view):
                if k >= len(run):
                    raise VerificationFailed("the server sent more than the range asked for")
                off, length, digest = run[k]
                take = min(length - fill, len(view))
                hasher.update(view[:take])
                fill += take
                view = view[take:]
                if fill == length:
                    if hasher.hexdigest() != digest:
                        raise VerificationFailed(f"chunk at offset {off} does not match its hash in the manifest")
                    k, fill, hasher = k + 1, 0, blake3.blake3()
            fh.write(data)
            pos += len(data)
            result.received_bytes += len(data)
            bar.update(len(data))
            bar.set_postfix_str(f"got {short_bytes(result.received_bytes)} seed "
                                f"{short_bytes(result.reused_bytes)}", refresh=False)
    if k != len(run):
        raise Unreachable(f"the range {start}-{end - 1} ended early; run the same command again")


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)

