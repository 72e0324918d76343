"""A Trio program embedding trio_mona (docs/embedding.rst): it serves a small HTTP
endpoint, runs the Lua application of this folder in the same event loop, gives it
an async ``lookup`` (a stand-in for a database query) and a plain ``greeting``, and
answers ``GET /stats`` with what the Lua function ``stats()`` returns, as JSON.

    python lua_apps/embedded/host.py [HTTP_PORT [LUA_PORT]]     (8080 and 1241)

then ``curl 127.0.0.1:8080/stats`` and ``printf 'who ada\\n' | nc 127.0.0.1 1241``.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import trio

import trio_mona

FOLDER = Path(__file__).resolve().parent
PEOPLE = {"ada": {"name": "Ada", "role": "engineer"}, "alan": {"name": "Alan", "role": "admin"}}


async def lookup(name: str) -> dict[str, str] | None:
    """What a query to a real database would answer (it takes a while)."""
    await trio.sleep(0.01)
    return PEOPLE.get(name.lower())


def greeting() -> str:
    return "embedded in a Trio program"


async def http(runtime: trio_mona.Runtime, stream: trio.SocketStream) -> None:
    request = b""
    with trio.move_on_after(5):
        while b"\r\n\r\n" not in request and len(request) < 8192:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            request += chunk
    path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
    if path == b"/stats":
        status, body = "200 OK", json.dumps(await runtime.call("/", "stats")).encode()
    else:
        status, body = "404 Not Found", b'{"error": "try /stats"}'
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    await stream.send_all(head.encode() + body)
    await stream.aclose()


async def serve(
    http_port: int = 8080,
    lua_port: int = 1241,
    *,
    task_status: trio.TaskStatus[tuple[int, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve both until cancelled; hands back the HTTP and Lua ports once listening."""
    settings = {"embedded.port": str(lua_port)}
    exposed = {"lookup": lookup, "greeting": greeting}
    async with (
        trio_mona.open_runtime(
            FOLDER, settings=settings, data=":memory:", expose=exposed
        ) as runtime,
        trio.open_nursery() as nursery,
    ):
        serving = functools.partial(trio.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serving, lambda stream: http(runtime, stream), http_port)
        lua = next(a.port for a in runtime.bound_addresses if a.kind == "tcp")
        task_status.started((listeners[0].socket.getsockname()[1], lua))
        await trio.sleep_forever()


if __name__ == "__main__":
    ports = [int(p) for p in sys.argv[1:3]]
    try:
        trio.run(serve, *ports)
    except KeyboardInterrupt:
        pass
