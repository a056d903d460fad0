"""The probe search of delta downloads (depot_client.probe), without a
server: the file's bytes answer the probes, seeds are in memory."""

from __future__ import annotations

import random

from depot_client import probe
from depot_client.probe import FINE, Known, Run, Search, byteranges, boundary, merged, parse_content_range


def rnd(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def search(run: Run, file: bytes, seeds: dict):
    def read_seed(path, offset, n):
        s = seeds.get(path)
        return None if s is None or offset + n > len(s) else s[offset:offset + n]

    s = Search(run, lambda p: len(seeds.get(p, b"")))
    rounds = 0
    for _ in range(probe.ROUNDS):
        wanted = merged([(run.start + a, run.start + b) for a, b in s.probes()])
        if not wanted:
            break
        rounds += 1
        known = Known()
        for a, b in wanted:
            known.insert(a, file[a:b])
        s.update(known, read_seed)
    return s.plan(), rounds


def assemble(run: Run, plan, file: bytes, seeds: dict) -> bytes:
    front, back = plan
    out = bytearray(file[run.start:run.start + run.length])
    if run.front:
        path, at = run.front
        out[:front] = seeds[path][at:at + front]
    if run.back and back:
        path, at = run.back
        out[run.length - back:] = seeds[path][at - back:at]
    return bytes(out)


def test_an_insertion_costs_its_bytes_and_a_little_around_it():
    old = rnd(4 << 20, 1)
    new = old[:1_000_000] + rnd(300_000, 2) + old[1_000_000:]
    run = Run(900_000, 600_000, ("s", 900_000), ("s", 1_200_000))
    plan, rounds = search(run, new, {"s": old})
    front, back = plan
    assert front <= 100_000 <= front + FINE, plan
    assert 400_000 <= run.length - back <= 400_000 + FINE, plan
    assert rounds <= 5
    assert assemble(run, plan, new, {"s": old}) == new[900_000:1_500_000]


def test_a_changed_byte_is_found_only_where_a_probe_lands():
    old = rnd(1 << 20, 3)
    run = Run(200_000, 200_000, ("s", 200_000), ("s", 400_000))
    new = bytearray(old)
    new[300_010] ^= 1
    plan, _ = search(run, bytes(new), {"s": old})
    assert plan[0] <= 100_010 < run.length - plan[1], plan
    assert assemble(run, plan, bytes(new), {"s": old}) == bytes(new[200_000:400_000])
    # Between the probes: not seen, so the chunk's hash check must catch it.
    new = bytearray(old)
    new[300_500] ^= 1
    plan, _ = search(run, bytes(new), {"s": old})
    assert assemble(run, plan, bytes(new), {"s": old}) != bytes(new[200_000:400_000])


def test_failing_and_one_sided_guesses():
    old, new = rnd(1 << 20, 4), rnd(1 << 20, 5)
    run = Run(0, 500_000, ("s", 10), ("s", 600_000))
    plan, _ = search(run, new, {"s": old})
    assert plan[0] < FINE and plan[1] < FINE
    grown = old + rnd(100_000, 6)
    run = Run(800_000, 348_576, ("s", 800_000), None)
    plan, _ = search(run, grown, {"s": old})
    assert plan[0] <= 248_576 <= plan[0] + FINE and plan[1] == 0
    assert assemble(run, plan, grown, {"s": old}) == grown[800_000:]
    # An unreadable seed guesses nothing.
    plan, rounds = search(Run(0, 100_000, ("gone", 0), None), old, {"s": old})
    assert (plan, rounds) == ((0, 0), 0)


def test_ranges_merge_and_multipart_parses():
    assert merged([(10, 20), (0, 5), (5, 7), (15, 30), (40, 40), (50, 51)]) == [(0, 7), (10, 30), (50, 51)]
    b = "depot-0123"
    body = (f"\r\n--{b}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 10-13/100\r\n\r\n"
            f"ab\r\n\r\n--{b}\r\ncontent-range: bytes 50-50/100\r\n\r\nZ\r\n--{b}--\r\n").encode()
    assert byteranges(body, b) == [(10, b"ab\r\n"), (50, b"Z")]
    assert boundary('multipart/byteranges; boundary="depot-0123"') == "depot-0123"
    assert boundary("multipart/form-data; boundary=x") is None
    assert parse_content_range("bytes 5-9/10") == (5, 10)
    assert parse_content_range("bytes 9-5/10") is None
    for bad in (f"--{b}\r\nContent-Range: bytes 0-9/100\r\n\r\nshort", f"--{b}\r\nContent-Range: bytes 0-1/100\r\n\r\nabX--{b}--",
                f"--{b}\r\nContent-Type: x\r\n\r\nab\r\n--{b}--", "nothing"):
        assert byteranges(bad.encode(), b) is None, bad
