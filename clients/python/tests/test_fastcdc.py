"""The FastCDC 2020 port against the Rust crate's golden vectors and its
loop transcribed line by line."""

import io
import random

import numpy as np
import pytest

from depot_client import fastcdc
from depot_client.fastcdc import GOLDEN, Params, chunk_lengths, chunk_lengths_reference, cumulative, iter_chunks


def test_xorshift_generator_is_the_golden_input():
    # First bytes of the generator (x = 0x9E3779B97F4A7C15, xorshift 13/7/17,
    # byte = bits 32..39), computed independently with Python ints.
    x = 0x9E3779B97F4A7C15
    want = []
    for _ in range(16):
        x ^= (x << 13) & (2**64 - 1)
        x ^= x >> 7
        x ^= (x << 17) & (2**64 - 1)
        want.append((x >> 32) & 0xFF)
    assert list(fastcdc.xorshift_bytes(16)) == want


@pytest.mark.parametrize("size,sizes,want", GOLDEN, ids=["64KiB-256-1K-4K", "4MiB-64K-256K-1M"])
def test_golden_vectors_whole_input(size, sizes, want):
    data = fastcdc.xorshift_bytes(size)
    assert tuple(cumulative(chunk_lengths(data, Params(*sizes)))) == want


@pytest.mark.parametrize("size,sizes,want", GOLDEN, ids=["64KiB-256-1K-4K", "4MiB-64K-256K-1M"])
@pytest.mark.parametrize("block", [1, 3 * 4096 + 17, 1 << 20])
def test_golden_vectors_streaming(size, sizes, want, block):
    """Block by block (the block is at least max; the tail is carried), as
    the server cuts a stream."""
    p = Params(*sizes)
    data = fastcdc.xorshift_bytes(size)
    offsets = []
    for offset, chunk in iter_chunks(io.BytesIO(data), p, block_size=block):
        assert bytes(chunk) == data[offset:offset + len(chunk)]
        offsets.append(offset + len(chunk))
    assert tuple(offsets) == want


def test_reference_loop_matches_golden_vectors():
    for size, sizes, want in GOLDEN:
        data = fastcdc.xorshift_bytes(size)
        assert tuple(cumulative(chunk_lengths_reference(data, Params(*sizes)))) == want


class ShortReads(io.RawIOBase):
    """A pipe-like reader that returns at most `step` bytes per read."""

    def __init__(self, data: bytes, step: int):
        self.data, self.pos, self.step = data, 0, step

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.step if n is None or n < 0 else min(n, self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def test_vectorised_equals_reference_on_varied_inputs():
    """Odd min sizes, non-power-of-two averages (rounded log2), nested and
    non-nested masks, all-zero and low-entropy data, every size regime."""
    rng = random.Random(20250101)
    cases = 0
    for _ in range(60):
        mn = rng.choice([64, 65, 100, 256, 1000, 2048])
        avg = rng.choice([256, 512, 1024, 3000, 8192])
        mx = rng.choice([1024, 4096, 16384, 65536])
        try:
            p = Params(mn, avg, mx)
        except ValueError:
            continue
        n = rng.choice([0, 1, mn - 1, mn, mn + 1, avg, mx, mx + 1, rng.randrange(0, 150_000)])
        kind = rng.randrange(4)
        g = np.random.Generator(np.random.PCG64(rng.randrange(1 << 30)))
        if kind == 0:
            data = bytes(n)
        elif kind == 1:
            data = g.integers(0, 3, n, dtype=np.uint8).tobytes()
        else:
            data = g.bytes(n)
        want = chunk_lengths_reference(data, p)
        assert chunk_lengths(data, p) == want, (p, n, kind)
        streamed = [len(c) for _, c in iter_chunks(ShortReads(data, rng.choice([1000, 7777, 1 << 16])), p,
                                                   block_size=rng.choice([1, mx + 3, 5 * mx]))]
        assert streamed == want, (p, n, kind)
        assert sum(want) == n
        cases += 1
    assert cases >= 30


def test_server_default_parameters_and_id():
    p = Params(fastcdc.DEFAULT_MIN, fastcdc.DEFAULT_AVG, fastcdc.DEFAULT_MAX)
    assert p.chunker_id == "fastcdc2020-n1-65536-262144-1048576"
    # log2(262144) = 18: mask_s = MASKS[19], mask_l = MASKS[17].
    assert p.mask_s == 0x0000D91707537000 and p.mask_l == 0x0000D90703537000


def test_invalid_parameters_are_refused():
    for sizes in [(32, 256, 1024), (256, 128, 4096), (1024, 4096, 2048), (256, 1024, 1 << 25)]:
        with pytest.raises(ValueError):
            Params(*sizes)


def test_self_check_detects_a_broken_port(monkeypatch):
    fastcdc.self_check(full=True)
    broken = list(fastcdc.GOLDEN[0][2])
    broken[0] += 1
    monkeypatch.setattr(fastcdc, "GOLDEN", ((fastcdc.GOLDEN[0][0], fastcdc.GOLDEN[0][1], tuple(broken)),))
    monkeypatch.setattr(fastcdc, "_checked", None)
    with pytest.raises(AssertionError):
        fastcdc.self_check()


def test_empty_input_has_no_chunks():
    assert chunk_lengths(b"", Params(256, 1024, 4096)) == []
    assert list(iter_chunks(io.BytesIO(b""), Params(256, 1024, 4096))) == []
