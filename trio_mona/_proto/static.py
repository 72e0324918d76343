"""What a static file's response says, with no I/O: which names are never served, the
content type, conditional and range requests, a folder's listing.

MonaServer served every file of an application's folder, its Lua sources included, and
typed unknown extensions ``text/<ext>`` (``text/png``). Here ``*.lua`` files and
dot-files are never served or listed, types come from an explicit table (unknown:
``application/octet-stream``), ``If-Modified-Since`` answers 304 and a single ``Range``
206 (a browser's ``<video>`` needs it).
"""

from __future__ import annotations

import email.utils
import functools
import html
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

import attrs

CONTENT_TYPES: Final[dict[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".pdf": "application/pdf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".flv": "video/x-flv",
    ".swf": "application/x-shockwave-flash",
}
DEFAULT_TYPE: Final = "application/octet-stream"


def never_served(name: str) -> bool:
    """A file or folder name that is neither served nor listed: an application's Lua
    source, or a dot-file (``.git``, ``.env``)."""
    return name.startswith(".") or name.lower().endswith(".lua")


def content_type(name: str) -> str:
    dot = name.rfind(".")
    return CONTENT_TYPES.get(name[dot:].lower(), DEFAULT_TYPE) if dot > 0 else DEFAULT_TYPE


@functools.lru_cache(maxsize=256)
def last_modified(mtime: float) -> str:
    """A file's time as ``Last-Modified`` says it (GMT)."""
    return email.utils.formatdate(mtime, usegmt=True)


def not_modified(if_modified_since: str | None, mtime: float) -> bool:
    """Whether a conditional GET is answered 304: the file has not changed since the
    date the client names (to the second, as HTTP dates go). A date that cannot be
    read is ignored (the file is sent)."""
    if not if_modified_since:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError):
        return False
    return int(mtime) <= since.timestamp()


@attrs.frozen
class Span:
    """Bytes *start* to *end* included of a file of *size* bytes (a 206's part)."""

    start: int
    end: int
    size: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


@attrs.frozen
class Unsatisfiable:
    """A range wholly past the end: 416, ``Content-Range: bytes */size``."""

    size: int


def byte_range(header: str | None, size: int) -> Span | Unsatisfiable | None:
    """The single byte range a ``Range`` header asks of a file of *size* bytes, or None
    (no header, several ranges, another unit, or a form that cannot be read: the whole
    file is sent, as RFC 9110 allows)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":  # the last N bytes
        if last == "":
            return None
        count = int(last)
        if count == 0:
            return Unsatisfiable(size)
        return Span(max(0, size - count), size - 1, size) if size else Unsatisfiable(size)
    start = int(first)
    if start >= size:
        return Unsatisfiable(size)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if end < start:
        return None
    return Span(start, end, size)


def listing(path: str, entries: Iterable[tuple[str, bool]]) -> bytes:
    """A folder's HTML listing: *path* is its URL path (ending in ``/``), *entries* its
    (name, is a folder) pairs; sorted, what is never served left out, names escaped,
    with a link up."""
    shown = sorted((name, folder) for name, folder in entries if not never_served(name))
    title = html.escape(path)
    rows = ['<li><a href="../">../</a></li>'] if path != "/" else []
    for name, folder in shown:
        label = name + "/" if folder else name
        rows.append(f'<li><a href="{quote(label)}">{html.escape(label)}</a></li>')
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of {title}'
        f"</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
        + "\n".join(rows)
        + "\n</ul>\n</body></html>\n"
    )
    return page.encode("utf-8")
