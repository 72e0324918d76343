"""What answers an HTTP request, before it is bytes: a body the application gave
(:class:`Reply`), a file of its folder (:class:`FileReply`), the folder's listing
(:class:`Listing`), or an error (:class:`ErrorReply`, sent as MonaServer's HTML page).
"""

from __future__ import annotations

import html
import http
from typing import TypeAlias

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


Answer: TypeAlias = Reply | FileReply | Listing | ErrorReply


def error_page(status: int, message: str) -> bytes:
    """MonaServer's error page: the status as title and heading, the message below."""
    title = f"{status} {http.HTTPStatus(status).phrase}"
    return (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{html.escape(message)}</p></body></html>\n"
    ).encode()
