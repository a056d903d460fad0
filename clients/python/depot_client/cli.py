"""``python -m depot_client [--server URL] upload FILE | download ID [OUT] |
list | delete ID`` (ID: a file's id, or its name when one file has it)."""

from __future__ import annotations

import argparse
import re
import sys
from typing import List, Optional

from . import __version__
from .api import EXIT_INTERRUPTED, Client, DepotError, Rejected, UsageError, server_from_env
from .download import download
from .upload import DEFAULT_PIECE_SIZE, PieceEvent, upload


def _size(text: str) -> int:
    units = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("kmgib")
    unit = t[len(num):]
    try:
        value = int(num) * units[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 262144, 256KiB, 1MiB)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return value


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def parser() -> argparse.ArgumentParser:
    # The common options go before or after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=argparse.SUPPRESS,
                        help=f"server URL (default: $DEPOT_SERVER or {server_from_env()})")
    common.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars (default: bars on a terminal)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="one line per piece on stderr")
    p = argparse.ArgumentParser(prog="python -m depot_client", parents=[common],
                                description="Upload to and download from a depot server.",
                                epilog="A server in token mode needs a token: set $DEPOT_TOKEN "
                                       "(sent as Authorization: Bearer).")
    p.add_argument("--version", action="version", version=f"depot_client {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("upload", parents=[common], help="upload a file; prints its id last")
    up.add_argument("file")
    up.add_argument("--method", choices=("auto", "native", "seed"), default="auto",
                    help="auto: the native dedup API when the server has it, else chunked pieces")
    up.add_argument("--piece-size", type=_size, default=DEFAULT_PIECE_SIZE,
                    help="piece size for chunked (seed) uploads (default 1MiB)")
    up.add_argument("--name", help="file name on the server (default: the file's own)")

    down = sub.add_parser("download", parents=[common],
                          help="download a file (resumes OUT.part; refuses to overwrite OUT without --force)")
    down.add_argument("id", help="the file's id, or its name when one file has it")
    down.add_argument("out", nargs="?", help="output path (default: the file's name, here)")
    down.add_argument("--no-resume", action="store_true", help="start over even if OUT.part exists")
    down.add_argument("-f", "--force", action="store_true",
                      help="overwrite OUT if it exists (it is then a seed: its chunks are not fetched again)")
    down.add_argument("--seed", action="append", default=[], metavar="PATH",
                      help="a local file or directory that may hold some of the file's chunks (an older "
                           "version): those are copied, not fetched; repeatable")

    ls = sub.add_parser("list", parents=[common], help="list files, newest first")
    ls.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")

    rm = sub.add_parser("delete", parents=[common], help="delete a file")
    rm.add_argument("id", help="the file's id, or its name when one file has it")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    for name, default in (("server", None), ("no_progress", False), ("verbose", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    progress = False if args.no_progress else None
    try:
        client = Client(args.server)
        if args.command == "upload":
            return _upload(client, args, progress)
        if args.command == "download":
            r = download(client, _resolve(client, args.id), args.out, resume=not args.no_resume, progress=progress,
                         force=args.force, seeds=args.seed)
            what = f"resumed at {r.resumed_from}, " if r.resumed_from else ""
            what += f"{r.reused_bytes} from seeds, " if r.reused_bytes else ""
            print(f"downloaded {r.path}: {r.size} bytes ({what}{r.received_bytes} received; "
                  f"verified: {', '.join(r.checks)})", file=sys.stderr)
            print(r.path)
            return 0
        if args.command == "list":
            return _list(client, args.limit)
        if args.command == "delete":
            file_id = _resolve(client, args.id)
            try:
                client.delete(file_id)
            except Rejected as e:
                if e.status == 404:
                    raise Rejected(f"no file with id {file_id}", 404) from None
                raise
            print(f"deleted {file_id}")
            return 0
        raise UsageError(f"unknown command {args.command}")
    except DepotError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1


# A depot file id: a ULID, 26 Crockford base32 characters (the Rust
# client's `FileId`).
_DEPOT_ID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-zILOilo]{25}$")


def _resolve(client: Client, arg: str, shown: int = 5) -> str:
    """The id of the file ``arg`` names, as ``depot get NAME`` finds it:
    ``arg`` when it is shaped like a depot file id or a file has that id
    (another server's ids are asked for), else the one file named exactly
    ``arg``. Several such files are a usage error listing their ids, newest
    first; none is 404."""
    if _DEPOT_ID.match(arg):
        return arg
    try:
        client.info(arg)
        return arg
    except UsageError:
        pass  # not shaped like any id: a name
    except Rejected as e:
        if e.status != 404:
            raise
    named: List[dict] = []
    # The server filters by name; the names are compared here too, for a
    # server that lists every file instead.
    for f in client.iter_files(limit=shown + 1, name=arg):
        if f.get("name") == arg:
            named.append(f)
            if len(named) > shown:
                break
    if not named:
        raise Rejected(f"no file has the id or the name {arg!r}", 404)
    if len(named) == 1:
        return named[0]["id"]
    lines = "".join(f"\n  {f['id']}  {f['created']}  {_human(f['size'])}" for f in named[:shown])
    more = "\n  ..." if len(named) > shown else ""
    raise UsageError(f"more than one file is named {arg!r}; give the id of the one you mean, newest first:"
                     f"{lines}{more}")


def _upload(client: Client, args, progress) -> int:
    def log(ev: PieceEvent) -> None:
        what = "chunk" if ev.total is None else "piece"
        of = f"/{ev.total}" if ev.total is not None else ""
        print(f"{what} {ev.number}{of} {ev.action} ({ev.size} bytes at {ev.offset})", file=sys.stderr, flush=True)

    r = upload(client, args.file, method=args.method, piece_size=args.piece_size, progress=progress,
               on_piece=log if args.verbose else None, name=args.name)
    print(r.summary(), file=sys.stderr)
    print(r.file_id)
    return 0


def _list(client: Client, limit: int) -> int:
    n = 0
    for f in client.iter_files(limit=min(limit, 1000) if limit > 0 else 200):
        if n == 0:
            print(f"{'ID':<26}  {'SIZE':>10}  {'CREATED':<24}  NAME")
        print(f"{f['id']:<26}  {_human(f['size']):>10}  {f['created']:<24}  {f['name']}")
        n += 1
        if limit and n >= limit:
            break
    if n == 0:
        print("no files", file=sys.stderr)
    return 0
