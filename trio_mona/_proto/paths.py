"""Which application a request's URL path names, and what it asks of it.

MonaServer's rule: the URL's folders name the application (``/a/b/page.html`` is the
application ``/a/b``, ``//chat/x.html`` is ``/chat``), and the last segment is a file,
a method of the client, or empty (the folder itself). Here each segment is
percent-decoded on its own (so an encoded ``/`` is a character of a name, refused, not
a separator), ``.`` and empty segments are dropped and ``..`` goes up a folder, never
above the applications folder. What comes out names no place outside it.
"""

from __future__ import annotations

import functools
from collections.abc import Container
from typing import Final, TypeAlias
from urllib.parse import unquote_to_bytes

import attrs

#: Bytes a decoded segment may not hold: a separator, NUL.
_FORBIDDEN: Final = (b"/", b"\x00")


@attrs.frozen
class Target:
    """The application *app* (``""``: the root), and *name*: the last segment (a file
    or a method), ``""`` for the folder itself."""

    app: str
    name: str


@attrs.frozen
class Redirect:
    """The path names an application's folder without its trailing slash: 301 to
    *location* (the query kept by the caller)."""

    location: str


@attrs.frozen
class NoApplication:
    """No application at *app*: 503 "Application *app* doesn't exist"."""

    app: str


@attrs.frozen
class BadPath:
    """A path that cannot name anything (400): *why*."""

    why: str


Resolved: TypeAlias = Target | Redirect | NoApplication | BadPath


@functools.lru_cache(maxsize=1024)
def segments(path: str) -> tuple[str, ...] | BadPath:
    """The path's segments, decoded, with ``.``, ``..`` and empty ones resolved."""
    if not path.startswith("/"):
        return BadPath("the path must begin with /")
    found: list[str] = []
    for raw in path.split("/"):
        decoded = unquote_to_bytes(raw)
        if any(forbidden in decoded for forbidden in _FORBIDDEN):
            return BadPath("an encoded / or NUL in the path")
        try:
            segment = decoded.decode("utf-8")
        except UnicodeDecodeError:
            return BadPath("the path is not UTF-8")
        if segment in ("", "."):
            continue
        if segment == "..":
            if found:
                found.pop()
            continue
        found.append(segment)
    return tuple(found)


def resolve(path: str, applications: Container[str]) -> Resolved:
    """What *path* (a request target's path, still percent-encoded, without its query)
    asks of the applications (their paths: ``""`` for the root, ``"/a/b"`` below)."""
    parts = segments(path)
    if isinstance(parts, BadPath):
        return parts
    if parts and not path.endswith("/"):
        whole = "/" + "/".join(parts)
        if whole in applications:
            return Redirect(whole + "/")
    folder_parts, name = (parts, "") if path.endswith("/") or not parts else (parts[:-1], parts[-1])
    app = "/" + "/".join(folder_parts) if folder_parts else ""
    if app not in applications:
        return NoApplication(app or "/")
    return Target(app, name)
