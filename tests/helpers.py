"""Shared helpers: Lua apps written to a temporary folder, run by a real runtime,
talked to over real loopback sockets."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_mona
from trio_mona import Runtime, testing

ENGINES = ["lua54", "luajit21"]

#: An echo server that records, in ``ends``, each connection's ``error`` (or "clean")
#: when it ends.
RECORDING_ECHO = """
ends = {}
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data) self:send(data) end
  function client:onDisconnection() ends[#ends + 1] = self.error or "clean" end
end
server:start("127.0.0.1", 0)
"""


def write_app(folder: Path, source: str, name: str = "main.lua") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return folder


@asynccontextmanager
async def running(
    tmp_path: Path, source: str, *, engine: str | None = None, **settings: str
) -> AsyncIterator[Runtime]:
    """Write *source* as the root main.lua and run it until the block ends."""
    folder = write_app(tmp_path / "apps", source)
    overrides = {key.replace("__", "."): value for key, value in settings.items()}
    async with trio_mona.open_runtime(folder, settings=overrides, engine=engine) as runtime:
        yield runtime


async def lua(runtime: Runtime, code: str) -> Any:
    """Evaluate Lua *code* (a chunk; use ``return``) in the root application, inside
    the executor, and return what it returns."""
    return await testing.run_lua(runtime, code)


async def lua_until(runtime: Runtime, code: str, limit: float = 5.0) -> None:
    """Wait until the Lua chunk *code* returns a true value."""
    with trio.fail_after(limit):
        while not await lua(runtime, code):
            await trio.sleep(0.005)


def tcp_port(runtime: Runtime, index: int = 0) -> int:
    return [a for a in runtime.bound_addresses if a.kind == "tcp"][index].port


async def connect(port: int, host: str = "127.0.0.1") -> trio.SocketStream:
    return await trio.open_tcp_stream(host, port)


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def receive_until_closed(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def wait_until(predicate: Callable[[], object], limit: float = 5.0) -> None:
    """Poll *predicate* until true (fails the test after *limit* seconds)."""
    with trio.fail_after(limit):
        while not predicate():
            await trio.sleep(0.005)


def messages(caplog: pytest.LogCaptureFixture, level: int = 0) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, limit: float = 5.0) -> None:
    await wait_until(lambda: any(text in m for m in messages(caplog)), limit)
