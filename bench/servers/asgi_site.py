"""The HTTP benchmark's site as an ASGI application, for uvicorn and hypercorn
(bench/suite.py): ``GET /file.txt`` reads and sends the same 1 KiB file as
trio_mona's site (http_site/), ``POST /`` with ``["sum", a, b]`` as JSON answers
``[{"sum": a + b, "ok": true}]``, as the Lua method does."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

FILE = Path(__file__).resolve().parent / "http_site" / "file.txt"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _sum(a: float, b: float) -> dict[str, Any]:
    return {"sum": a + b, "ok": True}


METHODS = {"sum": _sum}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            done = message["type"] + ".complete"
            await send({"type": done})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    if scope["method"] == "GET" and scope["path"] == "/file.txt":
        info = os.stat(FILE)
        # (read each time and in the loop, as trio_mona reads a small file)
        with open(FILE, "rb") as file:  # noqa: ASYNC230
            body = file.read()
        headers = [(b"content-type", b"text/plain; charset=utf-8"),
                   (b"last-modified", formatdate(info.st_mtime, usegmt=True).encode())]  # fmt: skip
        await _answer(send, 200, headers, body)
        return
    if scope["method"] == "POST":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        name, *args = json.loads(body)
        result = json.dumps([METHODS[name](*args)]).encode()
        await _answer(send, 200, [(b"content-type", b"application/json")], result)
        return
    await _answer(send, 404, [], b"")


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
