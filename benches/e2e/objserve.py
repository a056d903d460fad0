#!/usr/bin/env python3
"""A plain HTTP server over a depot store's object directory: D1's layout
reference (benches/e2e/README.md, References).

It answers every GET with one file's bytes, read the way depot's cached
download reads them and nothing more: for each chunk of the manifest in
order, `openat` of its object below the object directory, one `preadv`
of the object's header and payload into one reused buffer, `close`, and
a blocking `sendall` of the payload. No checks (depot checks each chunk's
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
"""

from __future__ import annotations

import json
import os
import socket
import sys

# The length of a chunk object's header (depot's `store::object::HEADER_LEN`:
# magic, codec, lengths, payload CRC, chunk id, header CRC).
HEADER_LEN = 56


def main() -> None:
    objects, manifest = sys.argv[1], sys.argv[2]
    with open(manifest) as f:
        man = json.load(f)
    dir_fd = os.open(objects, os.O_RDONLY | os.O_DIRECTORY)
    chunks = []
    for c in man["chunks"]:
        h = c["hash"]
        name = f"{h[:2]}/{h[2:4]}/{h}"
        size = os.stat(name, dir_fd=dir_fd).st_size
        if size != HEADER_LEN + c["len"]:
            sys.exit(f"objserve: object {h} has {size} bytes, not {HEADER_LEN} + {c['len']}: not a raw object")
        chunks.append((name, HEADER_LEN + c["len"]))
    total = man["size"]
    buf = memoryview(bytearray(max((n for _, n in chunks), default=0)))
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
            for name, n in chunks:
                fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
                try:
                    if os.preadv(fd, [buf[:n]], 0) != n:
                        sys.exit(f"objserve: short read of {name}")
                finally:
                    os.close(fd)
                conn.sendall(buf[HEADER_LEN:n])


if __name__ == "__main__":
    main()
