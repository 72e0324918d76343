"""What answers an HTTP request, before it is bytes: a body the application gave
(:class:`Reply`), a file of its folder (:class:`FileReply`), the folder's listing
(:class:`Listing`), or an error (:class:`ErrorReply`, sent as MonaServer's HTML page).
"""

from __future__ import annotations

import html
import http
import re
from typing import Final, TypeAlias

import attrs


@attrs.frozen
class Reply:
    """A body the application wrote or returned."""

    body: bytes
    content_type: str = "application/json"
    status: int = 200


@attrs.frozen
class FileReply:
    """The file *name* of the client's application folder; with *variables*, a text
    file whose ``<% key %>`` marks are replaced by their values (unknown keys by
    nothing)."""

    name: str
    variables: dict[str, str] | None = None


@attrs.frozen
class Listing:
    """The client's application folder as an HTML listing."""


@attrs.frozen
class ErrorReply:
    """An error answered with an HTML page saying *message*."""

    status: int
    message: str


@attrs.frozen
class Upgraded:
    """onConnection accepted a client that is not HTTP's (a WebSocket upgrade, an RTMP
    connect); *info*: the fields of the table it returned (RTMP's success carries them)."""

    info: dict[str, object] = attrs.field(factory=dict)


@attrs.frozen
class CloseReply:
    """A WebSocket client is closed with *code* and *reason* (a method missing or
    failing: 1002, as MonaServer did)."""

    code: int
    reason: str


Answer: TypeAlias = Reply | FileReply | Listing | ErrorReply | Upgraded | CloseReply


def error_page(status: int, message: str) -> bytes:
    """MonaServer's error page: the status as title and heading, the message below."""
    title = f"{status} {http.HTTPStatus(status).phrase}"
    return (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{html.escape(message)}</p></body></html>\n"
    ).encode()


#: A Lua file as an error message names it: ``/abs/apps/chat/main.lua:3:``, or cut
#: short by Lua to its last characters, ``...apps/chat/main.lua:3:``.
_LUA_FILE: Final = re.compile(r"(\.\.\.)?(/?[^\s:]*\.lua):(\d+):")


def public_message(message: str, apps_dir: str) -> str:
    """*message* with the Lua files it names made relative to the applications folder
    *apps_dir* (an absolute path): an error page never shows the server's disk."""
    prefix = apps_dir.rstrip("/") + "/"

    def relative(match: re.Match[str]) -> str:
        path = match.group(2)
        if match.group(1) is None:
            shown = path[len(prefix) :] if path.startswith(prefix) else path.rsplit("/", 1)[-1]
        else:  # (the tail of a path: where does the folder's own tail end in it?)
            shown = path.rsplit("/", 1)[-1]
            for cut in range(len(path), 0, -1):
                if path[cut - 1] == "/" and prefix.endswith(path[:cut]):
                    shown = path[cut:]
                    break
        return f"{shown}:{match.group(3)}:"

    return _LUA_FILE.sub(relative, message)
