#!/usr/bin/env python3
"""A plain HTTP server over a depot store's object directory: D1's layout
reference (benches/e2e/README.md, References).

It answers every GET with one file's bytes, read the way depot's cached
download reads them and nothing more: for each chunk of the manifest in
order, `openat` of its object below the object directory, one `preadv`
of the object's header and payload into one reused page-aligned buffer,
`close`, and a blocking `sendall` of the payload. No checks (depot checks each chunk's
CRC), no async runtime, one connection at a time, `TCP_NODELAY`. What it
reaches is what a server costs that reads one file per chunk and does
nothing else (docs/PERFORMANCE.md, D1, "What one file per chunk costs a
download").

    objserve.py OBJECT_DIR MANIFEST_JSON

MANIFEST_JSON is the file's manifest as `GET /api/files/{id}/manifest`
answers it. Every chunk's object must be raw (an object of exactly
HEADER_LEN + the chunk's length bytes): a store that compressed a chunk,
or an object format of another header length, is refused at start.
Prints `objserve listening on http://127.0.0.1:PORT` when ready.

A chunk with no loose object is looked for in the store's pack files
(`OBJECT_DIR/packs`, docs/PACKS.md; `storage.packs`): at start each pack
is scanned from its first record (a header, the payload, zeros to the next
4 KiB), and the chunk is then read from where its record is, by one
`preadv` on a descriptor kept open per pack (depot keeps them open too):
what the pack layout allows a server that does nothing else.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import sys

# The length of a chunk object's header (depot's `store::object::HEADER_LEN`:
# magic, codec, lengths, payload CRC, chunk id, header CRC).
HEADER_LEN = 56
# The header's first bytes, the codec byte of an uncompressed payload, and
# the boundary records in a pack start on (`MAGIC`, `Codec::Raw`,
# `store::objects::packs::PAGE`).
MAGIC = b"DPCK"
CODEC_RAW = 0
PAGE = 4096


def main() -> None:
    objects, manifest = sys.argv[1], sys.argv[2]
    with open(manifest) as f:
        man = json.load(f)
    dir_fd = os.open(objects, os.O_RDONLY | os.O_DIRECTORY)
    packed: dict[str, tuple[int, int, int]] | None = None
    chunks = []  # (loose object name or None, pack descriptor, offset, bytes to read)
    for c in man["chunks"]:
        h = c["hash"]
        name = f"{h[:2]}/{h[2:4]}/{h}"
        try:
            size = os.stat(name, dir_fd=dir_fd).st_size
            where = (name, -1, 0)
        except FileNotFoundError:
            if packed is None:
                packed = scan_packs(os.path.join(objects, "packs"))
            if h not in packed:
                sys.exit(f"objserve: chunk {h} is neither a loose object nor in a pack")
            fd, at, size = packed[h]
            where = (None, fd, at)
        if size != HEADER_LEN + c["len"]:
            sys.exit(f"objserve: object {h} has {size} bytes, not {HEADER_LEN} + {c['len']}: not a raw object")
        chunks.append((*where, HEADER_LEN + c["len"]))
    total = man["size"]
    # A page-aligned buffer (an anonymous mapping), as depot reads into:
    # every object starts at a page boundary of its file, and the kernel's
    # copy out of the page cache is several times slower on some CPUs into
    # a buffer 16 bytes past one, where a large `bytearray` starts
    # (docs/PERFORMANCE.md, D1, "Reads placed at the page offset of their
    # source").
    buf = memoryview(mmap.mmap(-1, max(max((n for *_, n in chunks), default=0), 1)))
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n".encode()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    print(f"objserve listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            req = b""
            while b"\r\n\r\n" not in req:
                got = conn.recv(4096)
                if not got:
                    break
                req += got
            if not req.startswith(b"GET "):
                continue
            conn.sendall(head)
            for name, pack_fd, at, n in chunks:
                if name is None:
                    if os.preadv(pack_fd, [buf[:n]], at) != n:
                        sys.exit(f"objserve: short read of a pack at {at}")
                else:
                    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
                    try:
                        if os.preadv(fd, [buf[:n]], 0) != n:
                            sys.exit(f"objserve: short read of {name}")
                    finally:
                        os.close(fd)
                conn.sendall(buf[HEADER_LEN:n])


def scan_packs(packs: str) -> dict[str, tuple[int, int, int]]:
    """Every record of every pack in `packs`: chunk id (hex) -> (an open
    descriptor of its pack, the record's offset, header + stored bytes;
    a raw record's stored bytes are the chunk's). Each pack is read from
    its start until a place that holds no record header (a torn tail)."""
    found: dict[str, tuple[int, int, int]] = {}
    if not os.path.isdir(packs):
        return found
    for name in sorted(os.listdir(packs)):
        fd = os.open(os.path.join(packs, name), os.O_RDONLY)
        end, at = os.fstat(fd).st_size, 0
        while at + HEADER_LEN <= end:
            head = os.pread(fd, HEADER_LEN, at)
            if head[:4] != MAGIC:
                break
            stored = int.from_bytes(head[12:16], "little")
            size = HEADER_LEN + stored if head[5] == CODEC_RAW else -1
            found[head[20:52].hex()] = (fd, at, size)
            at += (HEADER_LEN + stored + PAGE - 1) // PAGE * PAGE
    return found


if __name__ == "__main__":
    main()
