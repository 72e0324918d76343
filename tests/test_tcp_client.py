"""mona:createTCPClient(): connecting, every address form, failures, reconnection."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from .helpers import (
    ENGINES,
    lua,
    lua_until,
    messages,
    receive_until_closed,
    running,
    wait_for_log,
    wait_until,
)

CLIENT = """
client = mona:createTCPClient()
received = ""
disconnections = 0
function client:onData(data)
  received = received .. data
end
function client:onDisconnection()
  disconnections = disconnections + 1
  NOTE("disconnected error=", self.error, " peer=", self.peerAddress)
end
"""


@asynccontextmanager
async def listener(
    family: socket.AddressFamily = socket.AF_INET,
) -> AsyncIterator[trio.socket.SocketType]:
    sock = trio.socket.socket(family)
    await sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "form",
    [
        '"127.0.0.1", {port}',
        '"127.0.0.1:{port}"',
        "{port}",
        '"localhost", {port}',
        '"127.0.0.1", "{port}"',
        'mona:createSocketAddress("127.0.0.1", {port})',
        'mona:createIPAddress("127.0.0.1"), {port}',
    ],
)
async def test_connect_forms_and_exchange(tmp_path: Path, engine: str, form: str) -> None:
    async with listener() as server, running(tmp_path, CLIENT, engine=engine) as runtime:
        port = server.getsockname()[1]
        args = form.format(port=port)
        # Data sent while connecting goes out once connected.
        result = await lua(
            runtime, f"local e = client:connect({args}) client:send('early') return e"
        )
        assert result is None
        peer, peer_address = await server.accept()
        assert await peer.recv(100) == b"early"
        await lua_until(runtime, "return client.connected")
        assert await lua(runtime, "return client.connected") is True
        assert await lua(runtime, "return client.peerAddress.value") == f"127.0.0.1:{port}".encode()
        assert await lua(runtime, "return client.address.port") == peer_address[1]
        assert await lua(runtime, "return client.address.host.isLoopback") is True
        assert await lua(runtime, "return client.peerAddress == client.peerAddress") is True
        assert await lua(runtime, "return rawequal(client.peerAddress, client.peerAddress)") is True
        await peer.send(b"from server")
        await wait_until(lambda: True)
        await lua_until(runtime, "return received == 'from server'")
        peer.close()
        await lua_until(runtime, "return disconnections == 1")
        assert await lua(runtime, "return client.connected") is False
        assert await lua(runtime, "return client.error") is None
        assert await lua(runtime, "return client.peerAddress") is None


async def test_connect_ipv6(tmp_path: Path) -> None:
    async with listener(socket.AF_INET6) as server, running(tmp_path, CLIENT) as runtime:
        port = server.getsockname()[1]
        assert await lua(runtime, f"return client:connect('[::1]:{port}')") is None
        peer, _ = await server.accept()
        await lua_until(runtime, "return client.connected")
        assert await lua(runtime, "return client.peerAddress.value") == f"[::1]:{port}".encode()
        assert await lua(runtime, "return client.peerAddress.isIPv6") is True
        assert await lua(runtime, "client:send('six') return nil") is None
        assert await peer.recv(10) == b"six"
        peer.close()


async def test_refused_sets_error_and_fires_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # bound, not listening: refused
        async with running(tmp_path, CLIENT) as runtime:
            assert await lua(runtime, f"return client:connect('127.0.0.1', {closed_port})") is None
            await wait_for_log(caplog, "disconnected")
            await trio.sleep(0.05)  # (time for a second onDisconnection, which must not come)
            assert await lua(runtime, "return disconnections") == 1
            error = await lua(runtime, "return client.error")
            assert b"Connection refused" in error
            assert f"127.0.0.1:{closed_port}".encode() in error
            assert await lua(runtime, "return client.connected") is False


class _Resolver(trio.abc.HostnameResolver):
    """Answers ``good.test`` with 127.0.0.1 and fails every other name."""

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name == "good.test":
            assert isinstance(port, int)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        raise NotImplementedError


@asynccontextmanager
async def resolver(custom: trio.abc.HostnameResolver) -> AsyncIterator[None]:
    previous = trio.socket.set_custom_hostname_resolver(custom)
    try:
        yield
    finally:
        trio.socket.set_custom_hostname_resolver(previous)


async def test_host_names_resolve_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        resolver(_Resolver()),
        listener() as server,
        running(tmp_path, CLIENT) as runtime,
    ):
        port = server.getsockname()[1]
        assert await lua(runtime, f"return client:connect('good.test', {port})") is None
        peer, _ = await server.accept()
        await lua_until(runtime, "return client.connected")
        peer.close()
        await wait_for_log(caplog, "disconnected")
        caplog.clear()
        assert await lua(runtime, "return client:connect('nowhere.test:80')") is None
        await wait_for_log(caplog, "disconnected")
        assert await lua(runtime, "return disconnections") == 2
        error = await lua(runtime, "return client.error")
        assert error.startswith(b"cannot resolve 'nowhere.test'")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ('"1.2.3.4x:80"', b"invalid IP address"),
        ('"127.0.0.1:"', b"missing port"),
        ('"127.0.0.1:70000"', b"out of range"),
        ('"[::1:80"', b"unbalanced brackets"),
        ('"127.0.0.1", -1', b"out of range"),
        ('"127.0.0.1"', b"missing port"),
        ("0", b"port 0"),
        ('"bad name!", 80', b"invalid host"),
    ],
)
async def test_connect_bad_values_return_message(tmp_path: Path, args: str, message: bytes) -> None:
    async with running(tmp_path, CLIENT) as runtime:
        result = await lua(runtime, f"return client:connect({args})")
        assert message in result
        assert await lua(runtime, "return client.connected") is False


async def test_connect_twice_and_reconnect_after_disconnection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with listener() as server, running(tmp_path, CLIENT) as runtime:
        port = server.getsockname()[1]
        second_call = await lua(
            runtime, f"assert(client:connect({port}) == nil) return client:connect({port})"
        )
        assert second_call == b"connection in progress"
        peer, _ = await server.accept()
        await lua_until(runtime, "return client.connected")
        assert await lua(runtime, f"return client:connect({port})") == b"already connected"
        await lua(runtime, "client:send('bye') client:disconnect()")
        assert await lua(runtime, "return client.connected") is False
        assert await lua(runtime, "return client:send('x')") == b"socket not connected"
        assert await peer.recv(10) == b"bye"  # flushed before closing
        assert await peer.recv(10) == b""
        await wait_for_log(caplog, "disconnected")
        assert await lua(runtime, f"return client:connect({port})") is None
        second, _ = await server.accept()
        await lua(runtime, "client:send('again')")
        assert await second.recv(10) == b"again"
        second.close()
        peer.close()
        await lua_until(runtime, "return disconnections == 2")


async def test_disconnect_while_connecting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = trio.Event()

    class SlowResolver(_Resolver):
        async def getaddrinfo(self, *args: object, **kwargs: object) -> list[Any]:
            await gate.wait()
            raise AssertionError("cancelled before")

    async with resolver(SlowResolver()), running(tmp_path, CLIENT) as runtime:
        assert await lua(runtime, "return client:connect('slow.test', 80)") is None
        await lua(runtime, "client:disconnect()")
        await wait_for_log(caplog, "disconnected")
        assert await lua(runtime, "return disconnections") == 1
        assert await lua(runtime, "return client.error") is None


async def test_idle_time(tmp_path: Path) -> None:
    async with listener() as server, running(tmp_path, CLIENT) as runtime:
        await lua(runtime, f"client:connect({server.getsockname()[1]})")
        peer, _ = await server.accept()
        await lua_until(runtime, "return client.connected")
        await trio.sleep(0.15)
        assert await lua(runtime, "return client.idleTime") >= 100
        await lua(runtime, "client:send('x')")
        assert await lua(runtime, "return client.idleTime") < 100
        peer.close()


async def test_peer_reset_sets_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with listener() as server, running(tmp_path, CLIENT) as runtime:
        await lua(runtime, f"client:connect({server.getsockname()[1]})")
        peer, _ = await server.accept()
        await lua_until(runtime, "return client.connected")
        # SO_LINGER 0 turns close() into a reset.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.close()
        await wait_for_log(caplog, "disconnected")
        assert b"reset" in (await lua(runtime, "return client.error")).lower()
        assert any("disconnected error=Connection reset" in m for m in messages(caplog))


async def test_disconnect_right_after_connect_never_connects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with listener() as server, running(tmp_path, CLIENT) as runtime:
        port = server.getsockname()[1]
        await lua(runtime, f"client:connect({port}) client:disconnect()")
        await wait_for_log(caplog, "disconnected error=nil")
        with trio.move_on_after(0.2):
            await server.accept()
            raise AssertionError("connected although disconnect() came first")
        assert await lua(runtime, "return disconnections") == 1


@pytest.mark.parametrize("engine", ENGINES)
async def test_send_then_disconnect_while_connecting_delivers_the_bytes(
    tmp_path: Path, engine: str
) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    refused = trio.socket.socket()
    await refused.bind(("127.0.0.1", 0))
    refused_port = refused.getsockname()[1]
    refused.close()
    app = f"""
    closed, errors = 0, {{}}
    local function watch(c)
      function c:onDisconnection()
        closed = closed + 1
        errors[#errors + 1] = self.error or "none"
      end
      return c
    end
    client = watch(mona:createTCPClient())
    client:connect("127.0.0.1", {port})
    client:send("hello")
    client:send(" world")
    client:disconnect()
    connected_after = client.connected
    late = client:send("late")
    doomed = watch(mona:createTCPClient())
    doomed:connect("127.0.0.1", {refused_port})
    doomed:send("lost")
    doomed:disconnect()
    """
    async with running(tmp_path, app, engine=engine) as runtime:
        conn, _ = await listener.accept()
        stream = trio.SocketStream(conn)
        assert await receive_until_closed(stream) == b"hello world"
        await lua_until(runtime, "return closed >= 2")
        assert await lua(runtime, "return connected_after") is False
        assert b"not connected" in await lua(runtime, "return late")
        errors = await lua(runtime, "return errors[1] .. '|' .. errors[2]")
        assert sorted(errors.split(b"|"))[0].startswith(b"connect to 127.0.0.1:")
        assert b"none" in errors
        await stream.aclose()
    listener.close()
