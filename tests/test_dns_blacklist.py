"""The ...WithDNS factories (resolution that never blocks) and the blacklist."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_mona import testing

from .helpers import (
    ENGINES,
    connect,
    lua,
    messages,
    receive_exactly,
    receive_until_closed,
    running,
    tcp_port,
    wait_for_log,
)


class Resolver(trio.abc.HostnameResolver):
    """``*.test`` names on loopback; ``slow.test`` answers only when released."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.asked: list[str] = []

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        self.asked.append(name)
        number = int(port or 0)
        if name == "slow.test":
            await self.release.wait()
        if name in ("good.test", "slow.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", number))]
        if name == "six.test":
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", number, 0, 0))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def getnameinfo(self, *args: Any) -> tuple[str, str]:
        raise NotImplementedError


@asynccontextmanager
async def resolver() -> AsyncIterator[Resolver]:
    custom = Resolver()
    previous = trio.socket.set_custom_hostname_resolver(custom)
    try:
        yield custom
    finally:
        trio.socket.set_custom_hostname_resolver(previous)


@pytest.mark.parametrize("engine", ENGINES)
async def test_with_dns_factories(tmp_path: Path, engine: str) -> None:
    async with resolver() as names, running(tmp_path, "", engine=engine) as runtime:

        async def call(code: str) -> Any:
            # (a chunk runs in a coroutine, as a handler: it may wait for the resolver)
            return await lua(
                runtime,
                f"local result = {{{code}}} return result[1] and result[1].value, result[2]",
            )

        assert await call("mona:createIPAddressWithDNS('good.test')") == (b"127.0.0.1", None)
        assert await call("mona:createIPAddressWithDNS('six.test')") == (b"::1", None)
        assert await call("mona:createSocketAddressWithDNS('good.test:80')") == (
            b"127.0.0.1:80",
            None,
        )
        assert await call("mona:createSocketAddressWithDNS('good.test', 'http')") == (
            b"127.0.0.1:80",
            None,
        )
        asked = len(names.asked)
        # literals and localhost need no DNS
        assert await call("mona:createIPAddressWithDNS('10.1.2.3')") == (b"10.1.2.3", None)
        assert await call("mona.createSocketAddressWithDNS('localhost', 5)") == (
            b"127.0.0.1:5",
            None,
        )
        assert len(names.asked) == asked
        # failures: nil and the error callback, or nil and a warning
        value, err = await call(
            "mona:createIPAddressWithDNS(function(e) failure = e end, 'bad.test'), failure"
        )
        assert value is None
        assert err.startswith(b"cannot resolve 'bad.test'")
        value, err = await call(
            "mona:createSocketAddressWithDNS(function(e) failure = e end, 'x.test:'), failure"
        )
        assert value is None
        assert b"missing port" in err
        assert await call("mona:createSocketAddressWithDNS('bad name!', 5)") == (None, None)


async def test_with_dns_failure_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = "a = mona:createIPAddressWithDNS('nothing.test')"
    async with resolver(), running(tmp_path, app) as runtime:
        assert await lua(runtime, "return a") is None
    record = next(r for r in caplog.records if "cannot resolve 'nothing.test'" in r.getMessage())
    assert record.levelno == logging.WARNING
    assert record.filename == "main.lua"
    assert record.lineno == 1


async def test_lookup_does_not_delay_other_sockets(tmp_path: Path) -> None:
    app = """
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(data)
        if data == "lookup" then
          local address = mona:createSocketAddressWithDNS("slow.test", 7)
          self:send("resolved " .. tostring(address))
        else
          self:send(data)
        end
      end
    end
    server:start("127.0.0.1", 0)
    """
    async with resolver() as names, running(tmp_path, app) as runtime:
        port = tcp_port(runtime)
        waiting, other = await connect(port), await connect(port)
        await waiting.send_all(b"lookup")
        while "slow.test" not in names.asked:
            await trio.sleep(0.001)
        # The lookup is held back; the other connection is served meanwhile (every
        # echo comes back before the lookup is released).
        with trio.fail_after(10):
            for i in range(50):
                await other.send_all(b"%03d" % i)
                assert await receive_exactly(other, 3) == b"%03d" % i
        assert not names.release.is_set()
        names.release.set()
        answer = b"resolved 127.0.0.1:7"
        assert await receive_exactly(waiting, len(answer)) == answer


async def test_blacklist_tcp_and_udp(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = """
    connections = 0
    server = mona:createTCPServer()
    function server:onConnection(client)
      connections = connections + 1
      function client:onData(data) self:send(data) end
    end
    server:start("127.0.0.1", 0)
    udp = mona:createUDPSocket()
    packets = 0
    function udp:onPacket(data, address) packets = packets + 1 self:send(data, address) end
    udp:bind("127.0.0.1", 0)
    """
    async with running(tmp_path, app) as runtime:
        tcp = tcp_port(runtime)
        udp = next(a.port for a in runtime.bound_addresses if a.kind == "udp")
        peer = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await peer.bind(("127.0.0.1", 0))

        await lua(runtime, "mona:addToBlacklist('127.0.0.1')")
        stream = await connect(tcp)
        with trio.fail_after(5):
            assert await receive_until_closed(stream) == b""
        await peer.sendto(b"dropped", ("127.0.0.1", udp))
        await wait_for_log(caplog, "dropped a datagram from blacklisted 127.0.0.1")
        assert await lua(runtime, "return connections") == 0
        assert await lua(runtime, "return packets") == 0
        assert any("refused blacklisted 127.0.0.1" in m for m in messages(caplog, logging.DEBUG))

        await lua(runtime, "mona:removeFromBlacklist(mona:createIPAddress('127.0.0.1'))")
        stream = await connect(tcp)
        await stream.send_all(b"back")
        assert await receive_exactly(stream, 4) == b"back"
        await peer.sendto(b"let in", ("127.0.0.1", udp))
        with trio.fail_after(5):
            assert (await peer.recvfrom(100))[0] == b"let in"

        # several at once, IPv4-mapped forms count as IPv4
        await lua(runtime, "mona.addToBlacklist('10.0.0.1', '::ffff:127.0.0.1')")
        refused = await connect(tcp)
        with trio.fail_after(5):
            assert await receive_until_closed(refused) == b""
        await lua(runtime, "mona:removeFromBlacklist('127.0.0.1')")
        peer.close()


async def test_blacklist_bad_input(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, "") as runtime:
        await lua(runtime, "mona:addToBlacklist('1.2.3.4', 'not-an-ip')")
        await wait_for_log(caplog, "addToBlacklist: invalid IP address 'not-an-ip'")
        message = await lua(runtime, "local ok, e = pcall(mona.addToBlacklist, 5) return e")
        assert b"bad argument #1 to 'addToBlacklist' (IP address expected, got number)" in message
        assert testing.blacklisted(runtime, "1.2.3.4")
        assert not testing.blacklisted(runtime, "1.2.3.5")
