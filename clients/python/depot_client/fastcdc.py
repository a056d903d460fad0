"""FastCDC 2020 content-defined chunking, cut for cut as the server does it.

A port of the ``v2020`` module of the Rust crate ``fastcdc`` 3.2.1 (the
chunker depot's server uses), normalisation level 1, gear tables with seed 0.
Cut points depend only on the bytes: a cut is looked for once ``max`` bytes
are buffered or the input has ended, and FastCDC never looks further than
``max`` bytes ahead, so chunking a stream block by block gives exactly the
chunks of chunking the whole input at once.

The crate's ``cut_gear`` rolls two bytes per step with a left-shifted table,
which amounts to the plain gear recurrence ``H_p = (H_{p-1} << 1) + GEAR[b_p]``
(mod 2**64) started at ``H = 0`` on the byte at offset ``min`` of each chunk,
and a cut of length ``p`` (relative to the chunk start) at the first position
``p`` whose ``H_p & mask == 0``: ``mask_s`` before the normal size ``avg``,
``mask_l`` after it. Since ``GEAR[b] << 64 == 0``, ``H_p`` only depends on the
last 64 bytes, so with numpy the value for every position is six shifted
adds (log doubling), and the first 63 positions of a chunk, whose window
starts at ``min``, are corrected exactly:
``H_p = W[p] - (W[start - 1] << (p - start + 1))``.

:func:`cut_gear_reference` is the crate's loop transcribed line by line: slow,
for tests. :func:`self_check` runs the crate's golden vectors.
"""

from __future__ import annotations

import functools
import math
from typing import BinaryIO, Iterator, List, Optional, Tuple

import numpy as np

MINIMUM_MIN = 64
MINIMUM_MAX = 1_048_576
AVERAGE_MIN = 256
AVERAGE_MAX = 4_194_304
MAXIMUM_MIN = 1024
MAXIMUM_MAX = 16_777_216

# Masks for each number of bits (the crate's MASKS; 0..4 are padding).
MASKS = (
    0, 0, 0, 0, 0,
    0x0000000001804110,
    0x0000000001803110,
    0x0000000018035100,
    0x0000001800035300,
    0x0000019000353000,
    0x0000590003530000,
    0x0000D90003530000,
    0x0000D90103530000,
    0x0000D90303530000,
    0x0000D90313530000,
    0x0000D90F03530000,
    0x0000D90303537000,
    0x0000D90703537000,
    0x0000D90707537000,
    0x0000D91707537000,
    0x0000D91747537000,
    0x0000D91767537000,
    0x0000D93767537000,
    0x0000D93777537000,
    0x0000D93777577000,
    0x0000DB3777577000,
)

# The crate's GEAR table (seed 0): the high 8 bytes of MD5(0..255).
GEAR = (
    0x3b5d3c7d207e37dc, 0x784d68ba91123086, 0xcd52880f882e7298, 0xeacf8e4e19fdcca7,
    0xc31f385dfbd1632b, 0x1d5f27001e25abe6, 0x83130bde3c9ad991, 0xc4b225676e9b7649,
    0xaa329b29e08eb499, 0xb67fcbd21e577d58, 0x0027baaada2acf6b, 0xe3ef2d5ac73c2226,
    0x0890f24d6ed312b7, 0xa809e036851d7c7e, 0xf0a6fe5e0013d81b, 0x1d026304452cec14,
    0x03864632648e248f, 0xcdaacf3dcd92b9b4, 0xf5e012e63c187856, 0x8862f9d3821c00b6,
    0xa82f7338750f6f8a, 0x1e583dc6c1cb0b6f, 0x7a3145b69743a7f1, 0xabb20fee404807eb,
    0xb14b3cfe07b83a5d, 0xb9dc27898adb9a0f, 0x3703f5e91baa62be, 0xcf0bb866815f7d98,
    0x3d9867c41ea9dcd3, 0x1be1fa65442bf22c, 0x14300da4c55631d9, 0xe698e9cbc6545c99,
    0x4763107ec64e92a5, 0xc65821fc65696a24, 0x76196c064822f0b7, 0x485be841f3525e01,
    0xf652bc9c85974ff5, 0xcad8352face9e3e9, 0x2a6ed1dceb35e98e, 0xc6f483badc11680f,
    0x3cfd8c17e9cf12f1, 0x89b83c5e2ea56471, 0xae665cfd24e392a9, 0xec33c4e504cb8915,
    0x3fb9b15fc9fe7451, 0xd7fd1fd1945f2195, 0x31ade0853443efd8, 0x255efc9863e1e2d2,
    0x10eab6008d5642cf, 0x46f04863257ac804, 0xa52dc42a789a27d3, 0xdaaadf9ce77af565,
    0x6b479cd53d87febb, 0x6309e2d3f93db72f, 0xc5738ffbaa1ff9d6, 0x6bd57f3f25af7968,
    0x67605486d90d0a4a, 0xe14d0b9663bfbdae, 0xb7bbd8d816eb0414, 0xdef8a4f16b35a116,
    0xe7932d85aaaffed6, 0x08161cbae90cfd48, 0x855507beb294f08b, 0x91234ea6ffd399b2,
    0xad70cf4b2435f302, 0xd289a97565bc2d27, 0x8e558437ffca99de, 0x96d2704b7115c040,
    0x0889bbcdfc660e41, 0x5e0d4e67dc92128d, 0x72a9f8917063ed97, 0x438b69d409e016e3,
    0xdf4fed8a5d8a4397, 0x00f41dcf41d403f7, 0x4814eb038e52603f, 0x9dafbacc58e2d651,
    0xfe2f458e4be170af, 0x4457ec414df6a940, 0x06e62f1451123314, 0xbd1014d173ba92cc,
    0xdef318e25ed57760, 0x9fea0de9dfca8525, 0x459de1e76c20624b, 0xaeec189617e2d666,
    0x126a2c06ab5a83cb, 0xb1321532360f6132, 0x65421503dbb40123, 0x2d67c287ea089ab3,
    0x6c93bff5a56bd6b6, 0x4ffb2036cab6d98d, 0xce7b785b1be7ad4f, 0xedb42ef6189fd163,
    0xdc905288703988f6, 0x365f9c1d2c691884, 0xc640583680d99bfe, 0x3cd4624c07593ec6,
    0x7f1ea8d85d7c5805, 0x014842d480b57149, 0x0b649bcb5a828688, 0xbcd5708ed79b18f0,
    0xe987c862fbd2f2f0, 0x982731671f0cd82c, 0xbaf13e8b16d8c063, 0x8ea3109cbd951bba,
    0xd141045bfb385cad, 0x2acbc1a0af1f7d30, 0xe6444d89df03bfdf, 0xa18cc771b8188ff9,
    0x9834429db01c39bb, 0x214add07fe086a1f, 0x8f07c19b1f6b3ff9, 0x56a297b1bf4ffe55,
    0x94d558e493c54fc7, 0x40bfc24c764552cb, 0x931a706f8a8520cb, 0x32229d322935bd52,
    0x2560d0f5dc4fefaf, 0x9dbcc48355969bb6, 0x0fd81c3985c0b56a, 0xe03817e1560f2bda,
    0xc1bb4f81d892b2d5, 0xb0c4864f4e28d2d7, 0x3ecc49f9d9d6c263, 0x51307e99b52ba65e,
    0x8af2b688da84a752, 0xf5d72523b91b20b6, 0x6d95ff1ff4634806, 0x562f21555458339a,
    0xc0ce47f889336346, 0x487823e5089b40d8, 0xe4727c7ebc6d9592, 0x5a8f7277e94970ba,
    0xfca2f406b1c8bb50, 0x5b1f8a95f1791070, 0xd304af9fc9028605, 0x5440ab7fc930e748,
    0x312d25fbca2ab5a1, 0x10f4a4b234a4d575, 0x90301d55047e7473, 0x3b6372886c61591e,
    0x293402b77c444e06, 0x451f34a4d3e97dd7, 0x3158d814d81bc57b, 0x034942425b9bda69,
    0xe2032ff9e532d9bb, 0x62ae066b8b2179e5, 0x9545e10c2f8d71d8, 0x7ff7483eb2d23fc0,
    0x00945fcebdc98d86, 0x8764bbbe99b26ca2, 0x1b1ec62284c0bfc3, 0x58e0fcc4f0aa362b,
    0x5f4abefa878d458d, 0xfd74ac2f9607c519, 0xa4e3fb37df8cbfa9, 0xbf697e43cac574e5,
    0x86f14a3f68f4cd53, 0x24a23d076f1ce522, 0xe725cd8048868cc8, 0xbf3c729eb2464362,
    0xd8f6cd57b3cc1ed8, 0x6329e52425541577, 0x62aa688ad5ae1ac0, 0x0a242566269bf845,
    0x168b1a4753aca74b, 0xf789afefff2e7e3c, 0x6c3362093b6fccdb, 0x4ce8f50bd28c09b2,
    0x006a2db95ae8aa93, 0x975b0d623c3d1a8c, 0x18605d3935338c5b, 0x5bb6f6136cad3c71,
    0x0f53a20701f8d8a6, 0xab8c5ad2e7e93c67, 0x40b5ac5127acaa29, 0x8c7bf63c2075895f,
    0x78bd9f7e014a805c, 0xb2c9e9f4f9c8c032, 0xefd6049827eb91f3, 0x2be459f482c16fbd,
    0xd92ce0c5745aaa8c, 0x0aaa8fb298d965b9, 0x2b37f92c6c803b15, 0x8c54a5e94e0f0e78,
    0x95f9b6e90c0a3032, 0xe7939faa436c7874, 0xd16bfe8f6a8a40c9, 0x44982b86263fd2fa,
    0xe285fb39f984e583, 0x779a8df72d7619d3, 0xf2d79a8de8d5dd1e, 0xd1037354d66684e2,
    0x004c82a4e668a8e5, 0x31d40a7668b044e6, 0xd70578538bd02c11, 0xdb45431078c5f482,
    0x977121bb7f6a51ad, 0x73d5ccbd34eff8dd, 0xe437a07d356e17cd, 0x47b2782043c95627,
    0x9fb251413e41d49a, 0xccd70b60652513d3, 0x1c95b31e8a1b49b2, 0xcae73dfd1bcb4c1b,
    0x34d98331b1f5b70f, 0x784e39f22338d92f, 0x18613d4a064df420, 0xf1d8dae25f0bcebe,
    0x33f77c15ae855efc, 0x3c88b3b912eb109c, 0x956a2ec96bafeea5, 0x1aa005b5e0ad0e87,
    0x5500d70527c4bb8e, 0xe36c57196421cc44, 0x13c4d286cc36ee39, 0x5654a23d818b2a81,
    0x77b1dc13d161abdc, 0x734f44de5f8d5eb5, 0x60717e174a6c89a2, 0xd47d9649266a211e,
    0x5b13a4322bb69e90, 0xf7669609f8b5fc3c, 0x21e6ac55bedcdac9, 0x9b56b62b61166dea,
    0xf48f66b939797e9c, 0x35f332f9c0e6ae9a, 0xcc733f6a9a878db0, 0x3da161e41cc108c2,
    0xb7d74ae535914d51, 0x4d493b0b11d36469, 0xce264d1dfba9741a, 0xa9d1f2dc7436dc06,
    0x70738016604c2a27, 0x231d36e96e93f3d5, 0x7666881197838d19, 0x4a2a83090aaad40c,
    0xf1e761591668b35d, 0x7363236497f730a7, 0x301080e37379dd4d, 0x502dea2971827042,
    0xc2c5eb858f32625f, 0x786afb9edfafbdff, 0xdaee0d868490b2a4, 0x617366b3268609f6,
    0xae0e35a0fe46173e, 0xd1a07de93e824f11, 0x079b8b115ea4cca8, 0x93a99274558faebb,
    0xfb1e6e22e08a03b3, 0xea635fdba3698dd0, 0xcf53659328503a5c, 0xcde3b31e6fd5d780,
    0x8e3e4221d3614413, 0xef14d0d86bf1a22c, 0xe1d830d3f16c5ddb, 0xaabd2b2a451504e1,
)

_U64 = (1 << 64) - 1
_GEAR_NP = np.array(GEAR, dtype=np.uint64)

# The server's parameters (GET /api/chunking).
DEFAULT_MIN = 65_536
DEFAULT_AVG = 262_144
DEFAULT_MAX = 1_048_576


def logarithm2(value: int) -> int:
    """The crate's ``logarithm2``: log2 rounded to the nearest integer."""
    return int(round(math.log2(value)))


class Params:
    """FastCDC 2020 sizes with the level-1 masks derived from them."""

    def __init__(self, min_size: int, avg_size: int, max_size: int):
        if not MINIMUM_MIN <= min_size <= MINIMUM_MAX:
            raise ValueError(f"min_size {min_size} outside [{MINIMUM_MIN}, {MINIMUM_MAX}]")
        if not AVERAGE_MIN <= avg_size <= AVERAGE_MAX:
            raise ValueError(f"avg_size {avg_size} outside [{AVERAGE_MIN}, {AVERAGE_MAX}]")
        if not MAXIMUM_MIN <= max_size <= MAXIMUM_MAX:
            raise ValueError(f"max_size {max_size} outside [{MAXIMUM_MIN}, {MAXIMUM_MAX}]")
        if not min_size < avg_size < max_size:
            raise ValueError(f"need min < avg < max, got {min_size} / {avg_size} / {max_size}")
        self.min = min_size
        self.avg = avg_size
        self.max = max_size
        bits = logarithm2(avg_size)
        self.mask_s = MASKS[bits + 1]
        self.mask_l = MASKS[bits - 1]

    @property
    def chunker_id(self) -> str:
        """The id the server gives this chunker (``GET /api/chunking``)."""
        return f"fastcdc2020-n1-{self.min}-{self.avg}-{self.max}"

    def __repr__(self) -> str:
        return f"Params({self.min}, {self.avg}, {self.max})"


def cut_gear_reference(source: bytes, p: Params) -> int:
    """The crate's ``cut_gear`` line by line (pure Python, slow): the length
    of the next chunk of ``source``."""
    mask_s_ls = (p.mask_s << 1) & _U64
    mask_l_ls = (p.mask_l << 1) & _U64
    remaining = len(source)
    if remaining <= p.min:
        return remaining
    center = p.avg
    if remaining > p.max:
        remaining = p.max
    elif remaining < center:
        center = remaining
    index = p.min // 2
    h = 0
    while index < center // 2:
        a = index * 2
        h = ((h << 2) + ((GEAR[source[a]] << 1) & _U64)) & _U64
        if h & mask_s_ls == 0:
            return a
        h = (h + GEAR[source[a + 1]]) & _U64
        if h & p.mask_s == 0:
            return a + 1
        index += 1
    while index < remaining // 2:
        a = index * 2
        h = ((h << 2) + ((GEAR[source[a]] << 1) & _U64)) & _U64
        if h & mask_l_ls == 0:
            return a
        h = (h + GEAR[source[a + 1]]) & _U64
        if h & p.mask_l == 0:
            return a + 1
        index += 1
    return remaining


def chunk_lengths_reference(data: bytes, p: Params) -> List[int]:
    """The crate's ``FastCDC`` iterator over a whole input (slow)."""
    out = []
    offset = 0
    while offset < len(data):
        n = cut_gear_reference(data[offset:offset + p.max + 1], p)
        if n == 0:
            break
        out.append(n)
        offset += n
    return out


_SUB_BLOCK = 1 << 17  # positions per numpy pass: keeps the arrays in cache
_SHIFTS = tuple(np.uint64(1 << k) for k in range(6))


def _hits(buf: np.ndarray, begin: int, p: Params) -> Tuple[np.ndarray, np.ndarray]:
    """Positions ``q >= begin`` of ``buf`` whose 64-byte window hash
    ``W[q] = sum(GEAR[buf[j]] << (q - j) for q - 63 <= j <= q)`` (mod 2**64)
    has ``W & mask_s == 0``, and likewise for ``mask_l``.

    ``W[q]`` is the chunk's rolling hash at ``q`` once 63 bytes of the chunk
    precede ``q`` (older bytes are shifted out of the 64 bits). Computed by
    log doubling, six shifted adds, over cache-sized sub-blocks.
    """
    n = len(buf)
    mask_s = np.uint64(p.mask_s)
    mask_l = np.uint64(p.mask_l)
    # With level-1 masks from the crate's table, mask_l's bits are a subset
    # of mask_s's: the mask_s hits are among the mask_l hits.
    nested = (p.mask_l & p.mask_s) == p.mask_l
    size = min(_SUB_BLOCK, max(n - begin, 0)) + 63
    w = np.empty(size, dtype=np.uint64)
    t = np.empty(size, dtype=np.uint64)
    out_s, out_l = [], []
    for s in range(begin, n, _SUB_BLOCK):
        lo = max(0, s - 63)
        seg = buf[lo:s + _SUB_BLOCK]
        m = len(seg)
        ww, tt = w[:m], t[:m]
        np.take(_GEAR_NP, seg, out=ww)
        for k, shift in enumerate(_SHIFTS):
            d = 1 << k
            if d >= m:
                break
            np.left_shift(ww[:m - d], shift, out=tt[:m - d])
            np.add(ww[d:], tt[:m - d], out=ww[d:])
        off = s - lo
        np.bitwise_and(ww[off:], mask_l, out=tt[off:])
        hl = np.flatnonzero(tt[off:] == 0)
        if nested:
            hs = hl[(ww[off + hl] & mask_s) == 0]
        else:
            np.bitwise_and(ww[off:], mask_s, out=tt[off:])
            hs = np.flatnonzero(tt[off:] == 0)
        out_s.append(hs + s)
        out_l.append(hl + s)
    empty = np.empty(0, dtype=np.int64)
    return (
        np.concatenate(out_s) if out_s else empty,
        np.concatenate(out_l) if out_l else empty,
    )


def _first(hits: np.ndarray, lo: int, hi: int) -> int:
    """The first of the sorted ``hits`` in ``[lo, hi)``, or -1."""
    if lo >= hi:
        return -1
    i = int(np.searchsorted(hits, lo))
    if i < len(hits) and hits[i] < hi:
        return int(hits[i])
    return -1


def cut_block(
    buf: np.ndarray,
    p: Params,
    eof: bool,
    hits: Optional[Tuple[np.ndarray, np.ndarray]] = None,
) -> Tuple[List[int], int]:
    """Cuts ``buf`` (uint8, starting at a chunk boundary) into chunks.

    Returns the chunk lengths and the number of bytes they cover. Without
    ``eof`` a cut is only looked for while ``max`` bytes or more remain, so
    the bytes left over must be carried into the next block. ``hits`` are
    :func:`_hits` of ``buf`` when the caller has them.
    """
    n = len(buf)
    lengths: List[int] = []
    if n == 0:
        return lengths, 0
    hits_s, hits_l = hits if hits is not None else _hits(buf, 0, p)
    half_min = (p.min // 2) * 2
    c = 0
    while c < n:
        rem = n - c
        if rem < p.max and not eof:
            break
        if rem <= p.min:
            lengths.append(rem)
            c += rem
            continue
        center = p.avg
        limit = rem
        if limit > p.max:
            limit = p.max
        elif limit < center:
            center = limit
        start = c + half_min
        s_end = c + (center // 2) * 2  # positions [start, s_end) test mask_s
        l_end = c + (limit // 2) * 2  # positions [s_end, l_end) test mask_l
        cut = -1
        # The first 63 positions, while the hash holds fewer than 64 bytes
        # of the chunk (it starts from 0 at `start`): step by step.
        h = 0
        q = start
        for b in bytes(buf[start:min(start + 63, l_end)]):
            h = ((h << 1) + GEAR[b]) & _U64
            if h & (p.mask_s if q < s_end else p.mask_l) == 0:
                cut = q
                break
            q += 1
        if cut < 0:
            lo = start + 63
            cut = _first(hits_s, lo, s_end)
            if cut < 0:
                cut = _first(hits_l, max(lo, s_end), l_end)
        length = (cut - c) if cut >= 0 else limit
        lengths.append(length)
        c += length
    return lengths, c


def chunk_lengths(data: bytes, p: Params) -> List[int]:
    """Chunk lengths of a whole in-memory input."""
    lengths, _ = cut_block(np.frombuffer(data, dtype=np.uint8), p, eof=True)
    return lengths


def iter_chunks(f: BinaryIO, p: Params, block_size: int = 8 << 20) -> Iterator[Tuple[int, memoryview]]:
    """Streams ``f`` into chunks: yields ``(offset, data)``. Memory stays
    within about ``block_size + max`` bytes plus small per-block arrays.

    The bytes after the last cut of a block (fewer than ``max``) are carried
    into the next, with their hits: a hit depends only on the 64 bytes
    ending at it, and the carried bytes start at a chunk boundary.
    """
    block_size = max(block_size, p.max)
    tail = b""
    tail_hits = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    offset = 0
    eof = False
    while not eof:
        parts = [tail] if tail else []
        got = 0
        while got < block_size:
            more = f.read(block_size - got)
            if not more:
                eof = True
                break
            parts.append(more)
            got += len(more)
        buf = b"".join(parts) if len(parts) != 1 else parts[0]
        if not buf:
            break
        arr = np.frombuffer(buf, dtype=np.uint8)
        new_s, new_l = _hits(arr, len(tail), p)
        hits = (np.concatenate((tail_hits[0], new_s)), np.concatenate((tail_hits[1], new_l)))
        lengths, used = cut_block(arr, p, eof, hits)
        view = memoryview(buf)
        pos = 0
        for length in lengths:
            yield offset, view[pos:pos + length]
            pos += length
            offset += length
        tail = bytes(view[used:])
        tail_hits = tuple(h[h >= used] - used for h in hits)
    if tail:
        raise AssertionError("the chunker left bytes behind at the end of the input")


@functools.lru_cache(maxsize=2)
def xorshift_bytes(n: int, seed: int = 0x9E3779B97F4A7C15) -> bytes:
    """The golden vectors' input: xorshift64, one byte (bits 32..39) per step
    (plain Python: about a second for 4 MiB, so the result is cached)."""
    out = bytearray(n)
    x = seed
    mask = _U64
    for i in range(n):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        out[i] = (x >> 32) & 0xFF
    return bytes(out)


# (size, (min, avg, max), cumulative cut offsets) from the Rust test suite.
GOLDEN = (
    (
        65_536,
        (256, 1024, 4096),
        (866, 2054, 3292, 4428, 6082, 8549, 9295, 10876, 12502, 13490, 15356, 15633,
         17225, 18689, 20334, 21809, 24030, 28126, 29158, 30354, 32931, 33210, 34292,
         35684, 36725, 37755, 38305, 38854, 40119, 41006, 42606, 44883, 46032, 46425,
         48529, 49558, 50569, 51277, 52934, 54453, 55526, 56554, 57905, 59068, 59379,
         60994, 62030, 63777, 64167, 65536),
    ),
    (
        4_194_304,
        (65_536, 262_144, 1_048_576),
        (329_537, 873_798, 1_477_169, 2_141_508, 2_496_592, 2_803_379, 3_108_076,
         3_423_689, 3_781_079, 4_194_304),
    ),
)


def cumulative(lengths: List[int]) -> List[int]:
    out, total = [], 0
    for n in lengths:
        total += n
        out.append(total)
    return out


_checked: Optional[bool] = None


def self_check(full: bool = False) -> None:
    """Checks this port against the crate's golden vectors (the small one,
    or all with ``full``); raises ``AssertionError`` on any difference."""
    global _checked
    if _checked and not full:
        return
    for size, sizes, want in GOLDEN if full else GOLDEN[:1]:
        got = cumulative(chunk_lengths(xorshift_bytes(size), Params(*sizes)))
        if tuple(got) != want:
            raise AssertionError(f"FastCDC port differs from the golden vector {sizes}: {got}")
    _checked = True
