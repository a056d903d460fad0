"""Delta downloads below the chunk, as ``depot get --seed`` does them.

A run of chunks no seed holds is, more often than not, an edit inside
content the seeds do hold: bytes inserted into an older copy change the
chunk they land in and the chunk after it, but most of those chunks' bytes
are still the seed's, on either side of the edit. The chunk just before the
run came from a seed, so the run's first bytes are guessed to follow it
there (a *front* guess); the chunk just after it came from a seed, so the
run's last bytes are guessed to precede it there (a *back* guess).

How far each guess holds is found with probes: short byte ranges of the
file, many per request (``Range`` with a list, answered as
``multipart/byteranges``), compared with the guessed seed bytes and narrowed
round by round around the first byte that differs. What lies between the
two edges is fetched. Nothing here is trusted: the caller puts each chunk
together, checks it against its BLAKE3 in the manifest and fetches whole
any chunk that does not match.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

PROBE = 32  # bytes per probe
PROBES = 7  # probes per gap per round: a gap shrinks to an eighth a round
FINE = 2 << 10  # a gap this small is fetched rather than probed further
ROUNDS = 12
MIN_RUN = 16 << 10  # shorter runs are fetched whole
MAX_RANGES = 64  # the server answers at most 64 ranges in one multipart

# (seed path, offset): for a front guess the seed offset of the run's first
# byte, for a back guess the seed offset just past the run's last byte.
Guess = Tuple[str, int]
ReadSeed = Callable[[str, int, int], Optional[bytes]]


class NoRanges(Exception):
    """The server did not answer a list of ranges as asked."""


@dataclass
class Run:
    start: int
    length: int
    front: Optional[Guess] = None
    back: Optional[Guess] = None


class Known:
    """The file's bytes fetched so far, by offset."""

    def __init__(self) -> None:
        self.starts: List[int] = []
        self.parts: Dict[int, bytes] = {}

    def insert(self, start: int, data: bytes) -> None:
        if start not in self.parts:
            bisect.insort(self.starts, start)
        self.parts[start] = data

    def get(self, start: int, end: int) -> Optional[bytes]:
        i = bisect.bisect_right(self.starts, start) - 1
        if i < 0:
            return None
        s = self.starts[i]
        data = self.parts[s]
        if end > s + len(data):
            return None
        return data[start - s:end - s]


class Edge:
    """How far one guess holds, counted from its end of the run: the first
    ``lo`` bytes match as far as probes show; the first byte that differs
    is at most ``hi`` bytes in."""

    def __init__(self, front: bool, guess: Guess, run_len: int, seed_len: int):
        self.front = front
        self.seed, self.at = guess
        self.lo = 0
        self.hi = max(0, min(run_len, seed_len - self.at if front else self.at))

    def is_open(self) -> bool:
        return self.hi - self.lo > FINE

    def probes(self) -> List[Tuple[int, int]]:
        if not self.is_open():
            return []
        gap = self.hi - self.lo
        out = []
        for i in range(1, PROBES + 1):
            d = self.lo + gap * i // (PROBES + 1)
            out.append((d, min(PROBE, self.hi - d)))
        return out

    def in_run(self, run_len: int, d: int, n: int) -> Tuple[int, int]:
        return (d, d + n) if self.front else (run_len - d - n, run_len - d)

    def distance(self, run_len: int, start: int, end: int) -> Tuple[int, int]:
        return (start, end - start) if self.front else (run_len - end, end - start)

    def update(self, run: Run, probes: List[Tuple[int, int]], known: Known, read_seed: ReadSeed) -> None:
        mine = []
        for start, end in probes:
            d, n = self.distance(run.length, start, end)
            a, b = max(d, self.lo), min(d + n, self.hi)
            if a < b:
                mine.append((a, b - a))
        for d, n in sorted(mine):
            if d < self.lo:
                continue
            s, e = self.in_run(run.length, d, n)
            got = known.get(run.start + s, run.start + e)
            if got is None:
                return
            offset = self.at + s if self.front else self.at + s - run.length
            want = read_seed(self.seed, offset, n)
            same = 0
            if want is not None and len(want) == n:
                pairs = list(zip(got, want))
                if not self.front:
                    pairs.reverse()
                for x, y in pairs:
                    if x != y:
                        break
                    same += 1
            if same == n:
                self.lo = d + n
                continue
            self.hi = d + same
            if same:
                self.lo = d + same
            return


class Search:
    def __init__(self, run: Run, seed_len: Callable[[str], int]):
        self.run = run
        self.edges = []
        if run.front is not None:
            self.edges.append(Edge(True, run.front, run.length, seed_len(run.front[0])))
        if run.back is not None:
            self.edges.append(Edge(False, run.back, run.length, seed_len(run.back[0])))

    def probes(self) -> List[Tuple[int, int]]:
        """This round's probes, relative to the run."""
        out = []
        for e in self.edges:
            for d, n in e.probes():
                out.append(e.in_run(self.run.length, d, n))
        return out

    def update(self, known: Known, read_seed: ReadSeed) -> None:
        probes = self.probes()
        for e in self.edges:
            e.update(self.run, probes, known, read_seed)

    def plan(self) -> Tuple[int, int]:
        """(bytes from the front guess, bytes from the back guess)."""
        front = next((e.lo for e in self.edges if e.front), 0)
        back = next((e.lo for e in self.edges if not e.front), 0)
        return front, min(back, self.run.length - front)


def merged(ranges: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Ascending, disjoint and not adjacent, as the server would coalesce them."""
    out: List[List[int]] = []
    for a, b in sorted(r for r in ranges if r[0] < r[1]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def locate(client, file_id: str, etag: Optional[str], runs: List[Run], read_seed: ReadSeed,
           seed_len: Callable[[str], int]) -> Tuple[List[Tuple[int, int]], int]:
    """Searches every run's edges; returns a plan per run and the bytes the
    probes' answers took. Raises :class:`NoRanges` when the server does not
    answer lists of ranges (the caller then fetches the runs whole)."""
    searches = [Search(r, seed_len) for r in runs]
    received = 0
    for _ in range(ROUNDS):
        wanted = merged([(s.run.start + a, s.run.start + b) for s in searches for a, b in s.probes()])
        if not wanted:
            break
        known = Known()
        for i in range(0, len(wanted), MAX_RANGES):
            batch = wanted[i:i + MAX_RANGES]
            received += fetch_ranges(client, file_id, etag, batch, known)
        for s in searches:
            s.update(known, read_seed)
    return [s.plan() for s in searches], received


def fetch_ranges(client, file_id: str, etag: Optional[str], ranges: List[Tuple[int, int]],
                 known: Known) -> int:
    """Fetches ``ranges`` (start, end) in one request into ``known``;
    returns the bytes of the answer."""
    headers = {"Accept-Encoding": "identity",
               "Range": "bytes=" + ",".join(f"{a}-{b - 1}" for a, b in ranges)}
    if etag:
        headers["If-Range"] = f'"{etag}"'
    r = client.open_download(file_id, headers)
    with r:
        if r.status_code != 206:
            raise NoRanges(f"the server answered {r.status_code} to a list of ranges")
        body = r.content
        content_range = r.headers.get("Content-Range")
        if content_range:
            span = parse_content_range(content_range)
            if span is None or span[1] - span[0] != len(body):
                raise NoRanges("the answer to a range request does not parse")
            parts = [(span[0], body)]
        else:
            b = boundary(r.headers.get("Content-Type", ""))
            parts = byteranges(body, b) if b else None
            if parts is None:
                raise NoRanges("the answer to a range request does not parse")
    for start, data in parts:
        known.insert(start, data)
    if any(known.get(a, b) is None for a, b in ranges):
        raise NoRanges("the server left out some of the ranges asked for")
    return len(body)


def boundary(content_type: str) -> Optional[str]:
    kind, *params = content_type.split(";")
    if kind.strip().lower() != "multipart/byteranges":
        return None
    for p in params:
        k, _, v = p.partition("=")
        if k.strip().lower() == "boundary":
            return v.strip().strip('"')
    return None


def parse_content_range(value: str) -> Optional[Tuple[int, int]]:
    """``bytes a-b/size`` as (a, b + 1)."""
    value = value.strip()
    if not value.startswith("bytes "):
        return None
    span, _, _size = value[6:].partition("/")
    a, _, b = span.partition("-")
    try:
        a, b = int(a), int(b)
    except ValueError:
        return None
    return (a, b + 1) if b >= a else None


def byteranges(body: bytes, boundary_: str) -> Optional[List[Tuple[int, bytes]]]:
    """The parts of a ``multipart/byteranges`` body: (start, bytes), each as
    long as its ``Content-Range`` says."""
    delim = b"--" + boundary_.encode()
    at = body.find(delim)
    if at < 0:
        return None
    at += len(delim)
    parts = []
    while True:
        if body[at:at + 2] == b"--":
            return parts
        head_end = body.find(b"\r\n\r\n", at)
        if head_end < 0:
            return None
        span = None
        for line in body[at:head_end].decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-range":
                span = parse_content_range(value)
        if span is None:
            return None
        start = head_end + 4
        end = start + span[1] - span[0]
        if end > len(body):
            return None
        parts.append((span[0], body[start:end]))
        nxt = b"\r\n" + delim
        if body[end:end + len(nxt)] != nxt:
            return None
        at = end + len(nxt)
