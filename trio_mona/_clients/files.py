"""A file of an application's folder as an HTTP response: confined to the
applications folder, conditional and range requests, ``<% key %>`` templates, small
files read at once and larger ones streamed (docs/clients/http.rst, "Files").

Reading a small file (at most :data:`INLINE_MAX` bytes) happens in the executor: one
read from the page cache costs less than a hop to a thread. A larger file is a
:class:`Streamed` answer, which the session sends in chunks read in a worker thread,
as fast as the connection takes them.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Final, TypeAlias

import attrs

from .._proto import static
from .._proto.http import Request, header
from .replies import error_page

#: Files up to this size are read whole in the executor.
INLINE_MAX: Final = 64 * 1024
#: The largest text file ``onRead`` may fill in as a template.
TEMPLATE_MAX: Final = 1 << 20
_MARK: Final = re.compile(rb"<%\s*([^%\s]*)\s*%>")

Headers: TypeAlias = list[tuple[str, str]]


@attrs.frozen
class Whole:
    """A response whose body is at hand."""

    status: int
    headers: Headers
    body: bytes = b""


@attrs.frozen
class Streamed:
    """A response whose body is *length* bytes of the file at *path* from *start*."""

    status: int
    headers: Headers
    path: str
    start: int
    length: int


FileResponse: TypeAlias = Whole | Streamed


def error(status: int, message: str) -> Whole:
    return Whole(
        status, [("Content-Type", "text/html; charset=utf-8")], error_page(status, message)
    )


def confined(root: Path, path: Path) -> str | None:
    """*path* with its symbolic links resolved, if it is inside *root* (itself resolved);
    else None."""
    real = os.path.realpath(path)
    return real if real.startswith(os.fspath(root) + os.sep) else None


def _regular_file(root: Path, folder: Path, name: str) -> tuple[str, os.stat_result] | None:
    """The file *name* of *folder* (an application's folder: a real folder below
    *root*, as the application tree finds them) and its status, if it is a regular
    file inside *root*; a symbolic link is followed only to a file inside."""
    path = os.path.join(folder, name)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        real = confined(root, Path(path))
        if real is None:
            return None
        path, info = real, os.stat(real)
    return (path, info) if stat.S_ISREG(info.st_mode) else None


def file_response(
    root: Path, folder: Path, name: str, request: Request, variables: dict[str, str] | None
) -> FileResponse:
    """The response for the file *name* of *folder* (an application's folder below
    *root*, the applications folder)."""
    if (
        not name
        or "/" in name
        or "\x00" in name
        or name in (".", "..")
        or static.never_served(name)
    ):
        return error(404, f"File {name} doesn't exist")
    try:
        found = _regular_file(root, folder, name)
    except OSError:
        found = None
    if found is None:
        return error(404, f"File {name} doesn't exist")
    real, info = found
    headers: Headers = [("Content-Type", static.content_type(name))]
    if variables is not None:
        return _template(real, info.st_size, headers, variables)
    headers.append(("Last-Modified", static.last_modified(info.st_mtime)))
    if static.not_modified(header(request, "If-Modified-Since"), info.st_mtime):
        return Whole(304, headers)
    headers.append(("Accept-Ranges", "bytes"))
    size = info.st_size
    span = static.byte_range(header(request, "Range"), size)
    if isinstance(span, static.Unsatisfiable):
        return Whole(416, [("Content-Range", f"bytes */{span.size}")])
    status, start, length = 200, 0, size
    if span is not None:
        headers.append(("Content-Range", span.content_range))
        status, start, length = 206, span.start, span.end - span.start + 1
    if length > INLINE_MAX or request.method == "HEAD":  # (HEAD: the session sends no body)
        return Streamed(status, headers, real, start, length)
    try:
        body = _read(real, start, length)
    except OSError:
        return error(404, f"File {name} doesn't exist")
    return Whole(status, headers, body)


def _template(real: str, size: int, headers: Headers, variables: dict[str, str]) -> Whole:
    if size > TEMPLATE_MAX:
        return error(500, f"a template over {TEMPLATE_MAX} bytes")
    try:
        text = _read(real, 0, size)
    except OSError:
        return error(404, "File doesn't exist")
    encoded = {key.encode(): value.encode() for key, value in variables.items()}
    return Whole(200, headers, _MARK.sub(lambda m: encoded.get(m.group(1), b""), text))


def _read(path: str, start: int, length: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(start)
        return file.read(length)


def listing_response(root: Path, folder: Path, url_path: str) -> Whole:
    """The HTML listing of *folder* (an application's folder) at *url_path*."""
    real = confined(root, folder / ".") if folder != root else os.fspath(root)
    try:
        if real is None:
            raise FileNotFoundError
        with os.scandir(real) as entries:
            found = [(entry.name, entry.is_dir()) for entry in entries]
    except OSError:
        return error(404, "Folder doesn't exist")
    return Whole(
        200, [("Content-Type", "text/html; charset=utf-8")], static.listing(url_path, found)
    )
