"""Shared helpers: Lua apps written to a temporary folder, run by a real runtime,
talked to over real loopback sockets."""

from __future__ import annotations

import math
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from aiosmtpd.smtp import Envelope, Session

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


#: An echo server whose handler spins for ever on "spin" (the runaway bound's subject);
#: it logs its port.
SPINNER = """
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data)
    if data == "spin" then while true do end end
    self:send(data)
  end
end
server:start("127.0.0.1", 0)
NOTE("listening on ", server.address.port)
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


class ThreadedRuntime:
    """A runtime on its own thread, so that Hypothesis (synchronous) can run Lua in it."""

    def __init__(self, engine: str, folder: Path) -> None:
        self.ready = threading.Event()
        self.stop: trio.Event | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.runtime: Runtime | None = None
        self.thread = threading.Thread(target=trio.run, args=(self.main, engine, folder))
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the runtime did not start")

    async def main(self, engine: str, folder: Path) -> None:
        async with trio_mona.open_runtime(folder, engine=engine) as runtime:
            self.runtime, self.stop = runtime, trio.Event()
            self.token = trio.lowlevel.current_trio_token()
            self.ready.set()
            await self.stop.wait()

    def lua(self, code: str) -> Any:
        assert self.runtime is not None
        return trio.from_thread.run(lua, self.runtime, code, trio_token=self.token)

    def close(self) -> None:
        assert self.stop is not None
        trio.from_thread.run_sync(self.stop.set, trio_token=self.token)
        self.thread.join()


#: same(a, b): deep equality of Lua values, integer and float told apart (Lua 5.4), dates
#: by their time; same_value(a, b): numbers by value only.
SAME_LUA = """
function same(a, b, by_value)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" and not by_value and math.type and math.type(a) ~= math.type(b) then
    return false
  end
  if type(a) ~= "table" then return a == b end
  if a.__time ~= nil then return a.__time == b.__time end -- (a date read back has its fields)
  for k, v in pairs(a) do if not same(v, b[k], by_value) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
function same_value(a, b) return same(a, b, true) end
"""


def lua_literal(value: object) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "(1/0)" if value > 0 else "(-1/0)"
        assert math.isfinite(value)
        return f"({value!r})"  # (repr has a "." or an exponent: a float in Lua 5.4)
    if isinstance(value, bytes):
        return '"' + "".join(f"\\{byte}" for byte in value) + '"'
    if isinstance(value, str):
        return lua_literal(value.encode())
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"


class Inbox:
    """What the SMTP server received; recipients named in *refuse* are refused."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.envelopes: list[Envelope] = []
        self.refuse = refuse

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A ``redis-server`` process on a free loopback port; :meth:`stop` and
    :meth:`start` again on the same port (Redis lost and back). It keeps what it
    holds across that in *folder* (an append-only file written at every command),
    else nothing is written to disk."""

    def __init__(
        self, folder: Path | None = None, *options: str, tls: ssl.SSLContext | None = None
    ) -> None:
        """*tls*: the server speaks only TLS on its port (*options* say with which
        certificate), and this is how to reach it."""
        self.port = free_port()
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}/0"
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.keep = (
            ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(folder)]
            if folder is not None
            else ["--appendonly", "no"]
        ) + list(options)
        self.start()

    def start(self) -> None:
        port = (
            ["--port", "0", "--tls-port", str(self.port)]
            if self.tls
            else ["--port", str(self.port)]
        )
        arguments = [*port, "--bind", "127.0.0.1", "--save", "", *self.keep]
        self.process = subprocess.Popen(
            ["redis-server", *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                    probe = (
                        self.tls.wrap_socket(raw, server_hostname="127.0.0.1") if self.tls else raw
                    )
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class Server:
    """``trio-mona run`` (a real process) with its log in a file, read as it grows."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        self.output = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trio_mona", "run", *args],
            stdout=self.output,
            stderr=self.output,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # (a process group of its own, as in a terminal)
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, count: int = 1, limit: float = 20.0) -> list[Any]:
        """What ``re.findall`` finds once it finds *count* (strings, or tuples of groups)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            found = re.findall(pattern, self.text())
            if len(found) >= count:
                return found
            assert self.process.poll() is None, self.text()
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} x{count} not in the log:\n{self.text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.output.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.output.close()
