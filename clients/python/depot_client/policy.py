"""What the server will accept, checked before anything is sent.

``GET /api/chunking`` carries the server's ``max_file_size`` and its
file-type policy (``types``). A file over the size limit, with an extension
the server does not allow, or whose first bytes contradict its extension
(an executable named ``.png``) is refused here, so a refused upload costs no
transfer and leaves nothing on the server. This is a port of the server's
``store/filetype.rs`` for the formats whose signature is unambiguous; for
anything it cannot tell, it lets the server decide.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from .api import Rejected

SNIFF_LEN = 8192

# Extension -> MIME type, as the server's BY_EXTENSION.
BY_EXTENSION = {
    "txt": "text/plain", "log": "text/plain", "md": "text/markdown", "csv": "text/csv",
    "tsv": "text/tab-separated-values", "html": "text/html", "htm": "text/html", "css": "text/css",
    "js": "text/javascript", "mjs": "text/javascript", "json": "application/json",
    "xml": "application/xml", "yaml": "application/yaml", "yml": "application/yaml",
    "toml": "application/toml", "svg": "image/svg+xml", "png": "image/png", "jpg": "image/jpeg",
    "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "bmp": "image/bmp",
    "ico": "image/vnd.microsoft.icon", "tif": "image/tiff", "tiff": "image/tiff", "avif": "image/avif",
    "heic": "image/heic", "pdf": "application/pdf", "zip": "application/zip", "gz": "application/gzip",
    "tgz": "application/gzip", "bz2": "application/x-bzip2", "xz": "application/x-xz",
    "zst": "application/zstd", "7z": "application/x-7z-compressed", "rar": "application/vnd.rar",
    "tar": "application/x-tar", "mp3": "audio/mpeg", "wav": "audio/x-wav", "ogg": "audio/ogg",
    "flac": "audio/x-flac", "mp4": "video/mp4", "m4a": "audio/m4a", "mov": "video/quicktime",
    "webm": "video/webm", "mkv": "video/x-matroska", "avi": "video/x-msvideo", "wasm": "application/wasm",
    "exe": "application/vnd.microsoft.portable-executable",
    "dll": "application/vnd.microsoft.portable-executable", "iso": "application/x-iso9660-image",
}

CONTAINER_OF = {
    "application/zip": {"docx", "xlsx", "pptx", "odt", "ods", "odp", "jar", "apk", "epub", "whl", "xpi",
                        "nupkg", "vsix", "ipa", "kmz"},
    "application/gzip": {"tgz", "gz", "crate"},
}

# Signatures the server's detector (the `infer` crate) reports the same way:
# (prefix, minimum length, MIME type, the detector's own extension).
SIGNATURES: List[Tuple[bytes, int, str, str]] = [
    (b"\x89PNG\r\n\x1a\n", 8, "image/png", "png"),
    (b"\xff\xd8\xff", 3, "image/jpeg", "jpg"),
    (b"GIF8", 4, "image/gif", "gif"),
    (b"%PDF", 4, "application/pdf", "pdf"),
    (b"\x1f\x8b\x08", 3, "application/gzip", "gz"),
    (b"\x7fELF", 53, "application/x-executable", "elf"),
]


def _extension(name: str) -> Optional[str]:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem or not ext:
        return None
    return ext.lower()


def _detect(head: bytes) -> Optional[Tuple[str, str]]:
    for prefix, minimum, mime, ext in SIGNATURES:
        if len(head) >= minimum and head.startswith(prefix):
            return mime, ext
    return None


def _mime_matches(pattern: str, mime: str) -> bool:
    p = pattern.strip().lower()
    if p in ("*", "*/*"):
        return True
    if p.endswith("/*"):
        return mime.split("/", 1)[0] == p[:-2]
    return p == mime


def check(name: str, size: int, head: bytes, info: Optional[Dict[str, Any]]) -> None:
    """Raises :class:`Rejected` (exit code 5) when the server described by
    ``info`` (its ``GET /api/chunking``) would refuse this file."""
    if not info:
        return
    limit = info.get("max_file_size")
    if isinstance(limit, int) and size > limit:
        raise Rejected(f"{name} is {size} bytes and the server accepts files of at most {limit} bytes "
                       "(limits.max_file_size); nothing was sent", 413, "too_large")
    types = info.get("types") or {}
    exts = [e.lstrip(".").lower() for e in types.get("allowed_extensions") or []]
    allowed_types = types.get("allowed_types") or []
    ext = _extension(name)
    detected = _detect(head[:SNIFF_LEN])

    def refuse(why: str) -> Rejected:
        return Rejected(f"the server would refuse {name}: {why}; nothing was sent", 415, "type_rejected")

    if detected and ext and detected[1] != ext:
        by_ext = BY_EXTENSION.get(ext)
        if by_ext and by_ext != detected[0] and ext not in CONTAINER_OF.get(detected[0], set()):
            raise refuse(f"content is {detected[0]} but the name says .{ext}")
    if exts and ext not in exts:
        raise refuse(f"extension .{ext} is not allowed" if ext else "files without an extension are not allowed")
    if allowed_types:
        mime = detected[0] if detected else BY_EXTENSION.get(ext or "")
        if mime is None and not detected:
            # Types the server decides from the bytes alone (text or not);
            # a signature this port does not know may still say otherwise.
            return
        if not any(_mime_matches(p, mime) for p in allowed_types):
            raise refuse(f"type {mime} is not allowed")


def read_head(f) -> bytes:
    """The first SNIFF_LEN bytes of an open file, leaving it at the start."""
    pos = f.tell()
    f.seek(0)
    head = f.read(SNIFF_LEN)
    f.seek(pos)
    return head


def name_of(path: str) -> str:
    return os.path.basename(os.path.abspath(path))
