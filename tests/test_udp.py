"""mona:createUDPSocket() over real loopback sockets (127.0.0.1 and ::1)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
import trio

from trio_mona import Runtime

from .helpers import ENGINES, lua, lua_until, messages, running, wait_for_log

ECHO = """
udp = mona:createUDPSocket()
packets = 0
function udp:onPacket(data, address)
  packets = packets + 1
  last_sender = address
  self:send(data, address)
end
"""


def udp_peer(family: socket.AddressFamily = socket.AF_INET) -> trio.socket.SocketType:
    return trio.socket.socket(family, socket.SOCK_DGRAM)


async def receive(sock: trio.socket.SocketType) -> tuple[bytes, tuple[object, ...]]:
    with trio.fail_after(5):
        data, sender = await sock.recvfrom(70000)
    return data, sender


def udp_port(runtime: Runtime) -> int:
    return next(a.port for a in runtime.bound_addresses if a.kind == "udp")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("bind", "host", "family"),
    [
        ("'127.0.0.1', 0", "127.0.0.1", socket.AF_INET),
        ("'127.0.0.1:0'", "127.0.0.1", socket.AF_INET),
        ("0", "127.0.0.1", socket.AF_INET),  # wildcard, dual-stack
        ("0", "::1", socket.AF_INET6),
        ("'[::1]:0'", "::1", socket.AF_INET6),
        ("mona:createSocketAddress('127.0.0.1', 0)", "127.0.0.1", socket.AF_INET),
    ],
)
async def test_echo_keeps_datagram_boundaries(
    tmp_path: Path, engine: str, bind: str, host: str, family: socket.AddressFamily
) -> None:
    async with running(tmp_path, ECHO, engine=engine) as runtime:
        assert await lua(runtime, "return udp.address") is None
        assert await lua(runtime, f"return udp:bind({bind})") is None
        port = udp_port(runtime)
        assert await lua(runtime, "return udp.address.port") == port
        assert await lua(runtime, "return udp.peerAddress") is None
        peer = udp_peer(family)
        await peer.bind((host, 0))
        datagrams = [b"one", b"", os.urandom(1000), b"\x00\xff" * 30000]
        for datagram in datagrams:
            await peer.sendto(datagram, (host, port))
        for datagram in datagrams:
            data, sender = await receive(peer)
            assert data == datagram
            assert sender[1] == port
        sender_value = await lua(runtime, "return last_sender.value")
        assert str(peer.getsockname()[1]).encode() in sender_value
        assert await lua(runtime, "return packets") == 4
        peer.close()


async def test_sender_address_object_is_shared(tmp_path: Path) -> None:
    app = (
        ECHO
        + """
    senders = {}
    function udp:onPacket(data, address) senders[#senders + 1] = address end
    """
    )
    async with running(tmp_path, app) as runtime:
        await lua(runtime, "udp:bind('127.0.0.1', 0)")
        peer = udp_peer()
        for _ in range(3):
            await peer.sendto(b"x", ("127.0.0.1", udp_port(runtime)))
        await lua_until(runtime, "return #senders >= 3")
        assert await lua(runtime, "return rawequal(senders[1], senders[3])") is True
        assert await lua(runtime, "return senders[1].host.isLoopback") is True
        peer.close()


async def test_alias_on_reception_and_newer_name_wins(tmp_path: Path) -> None:
    app = """
    old = mona:createUDPSocket()
    function old:onReception(data, address) self:send("old:" .. data, address) end
    both = mona:createUDPSocket()
    function both:onReception(data, address) self:send("old", address) end
    function both:onPacket(data, address) self:send("new", address) end
    old:bind("127.0.0.1", 0)
    both:bind("127.0.0.1", 0)
    """
    async with running(tmp_path, app) as runtime:
        ports = [a.port for a in runtime.bound_addresses if a.kind == "udp"]
        peer = udp_peer()
        await peer.sendto(b"a", ("127.0.0.1", ports[0]))
        assert (await receive(peer))[0] == b"old:a"
        await peer.sendto(b"a", ("127.0.0.1", ports[1]))
        assert (await receive(peer))[0] == b"new"
        peer.close()


async def test_connect_send_disconnect(tmp_path: Path) -> None:
    async with running(tmp_path, ECHO) as runtime:
        peer = udp_peer()
        await peer.bind(("127.0.0.1", 0))
        port = peer.getsockname()[1]
        assert await lua(runtime, f"return udp:connect('127.0.0.1', {port})") is None
        assert await lua(runtime, "return udp.peerAddress.value") == f"127.0.0.1:{port}".encode()
        local = await lua(runtime, "return udp.address.port")
        assert local > 0
        assert await lua(runtime, "return udp:send('hello')") is None
        data, sender = await receive(peer)
        assert data == b"hello"
        assert sender[1] == local
        # replies reach the connected socket
        await peer.sendto(b"reply", ("127.0.0.1", local))
        assert (await receive(peer))[0] == b"reply"  # echoed back by onPacket
        assert await lua(runtime, "return udp:send('x', '127.0.0.1', 9)") == (
            f"connected to 127.0.0.1:{port}: cannot send to 127.0.0.1:9".encode()
        )
        assert await lua(runtime, "return udp:bind(0)") == b"cannot bind a connected UDP socket"
        assert await lua(runtime, "return udp:disconnect()") is None
        assert await lua(runtime, "return udp.peerAddress") is None
        assert b"no destination" in await lua(runtime, "return udp:send('x')")
        assert await lua(runtime, f"return udp:send('free', '127.0.0.1', {port})") is None
        assert (await receive(peer))[0] == b"free"
        peer.close()


async def test_send_without_bind_binds_implicitly(tmp_path: Path) -> None:
    async with running(tmp_path, ECHO) as runtime:
        peer = udp_peer()
        await peer.bind(("127.0.0.1", 0))
        port = peer.getsockname()[1]
        assert await lua(runtime, f"return udp:send('hi', '127.0.0.1:{port}')") is None
        data, sender = await receive(peer)
        assert data == b"hi"
        assert await lua(runtime, "return udp.address.port") == sender[1]
        await peer.sendto(b"back", sender)
        assert (await receive(peer))[0] == b"back"
        assert runtime.statistics().udp_sockets == 1
        peer.close()


async def test_bind_failures(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        async with running(tmp_path, ECHO) as runtime:
            assert b"Address already in use" in await lua(
                runtime, f"return udp:bind('127.0.0.1', {busy})"
            )
            assert await lua(runtime, "return udp.address") is None
            assert await lua(runtime, "return udp:bind('127.0.0.1', 0)") is None
            assert b"already bound" in await lua(runtime, "return udp:bind('127.0.0.1', 0)")
            for bad, cause in [
                ("'1.2.3.4x:80'", b"invalid IP address"),
                ("'127.0.0.1:99999'", b"out of range"),
                ("'127.0.0.1:'", b"missing port"),
                ("'[::1:5'", b"unbalanced brackets"),
                ("'example.test', 5", b"invalid IP address"),
            ]:
                other = await lua(runtime, f"return mona:createUDPSocket():bind({bad})")
                assert cause in other, bad


async def test_send_failures(tmp_path: Path) -> None:
    async with running(tmp_path, ECHO) as runtime:
        cases = {
            "udp:send('x')": b"no destination",
            "udp:send('x', '127.0.0.1:')": b"missing port",
            "udp:send('x', '127.0.0.1', 70000)": b"out of range",
            "udp:send('x', '127.0.0.1', 0)": b"port 0",
            "udp:send('x', 'name.test', 5)": b"invalid IP address",
            "udp:send(string.rep('x', 65508), '127.0.0.1', 9)": b"larger than the limit of 65507",
            "udp:send('x', '255.255.255.255', 9)": b"broadcast is not allowed",
            "udp:send('x', '127.255.255.255', 9)": b"broadcast is not allowed",
        }
        for code, cause in cases.items():
            result = await lua(runtime, f"return {code}")
            assert result is not None, code
            assert cause in result, (code, result)
        await lua(runtime, "udp:close()")
        assert await lua(runtime, "return udp:send('x', '127.0.0.1', 9)") == b"UDP socket closed"
        assert await lua(runtime, "return udp:bind(0)") == b"UDP socket closed"
        assert await lua(runtime, "return udp:connect(9)") == b"UDP socket closed"
        assert await lua(runtime, "return udp.address") is None


async def test_broadcast_when_allowed(tmp_path: Path) -> None:
    receiver = udp_peer()
    await receiver.bind(("0.0.0.0", 0))
    port = receiver.getsockname()[1]
    app = "caster = mona:createUDPSocket(true)"
    async with running(tmp_path, app) as runtime:
        assert await lua(runtime, f"return caster:send('all', '127.255.255.255', {port})") is None
        assert (await receive(receiver))[0] == b"all"
    receiver.close()


async def test_wrong_types(tmp_path: Path) -> None:
    async with running(tmp_path, ECHO) as runtime:
        cases = {
            "mona:createUDPSocket('yes')": "bad argument #1 to 'createUDPSocket' (boolean expected, got string)",
            "udp:send({})": "bad argument #1 to 'send' (string expected, got table)",
            "udp:send('x', true)": "bad argument #2 to 'send' (address expected, got boolean)",
            "udp:bind({})": "bad argument #1 to 'bind' (address expected, got table)",
            "udp:connect()": "bad argument #1 to 'connect' (address expected, got nil)",
            "udp.close()": "bad self to 'close' (UDPSocket expected, got nil",
            "udp.address = 1": "'address' is read-only on UDPSocket",
        }
        for code, expected in cases.items():
            message = await lua(runtime, f"local ok, e = pcall(function() {code} end) return e")
            assert message is not None, code
            assert expected in message.decode(), (code, message)


async def test_handler_error_keeps_socket_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    udp = mona:createUDPSocket()
    function udp:onPacket(data, address)
      if data == "boom" then error("bad packet") end
      self:send(data, address)
    end
    udp:bind("127.0.0.1", 0)
    """
    async with running(tmp_path, app) as runtime:
        peer = udp_peer()
        await peer.sendto(b"boom", ("127.0.0.1", udp_port(runtime)))
        await wait_for_log(caplog, "onPacket failed")
        record = next(r for r in caplog.records if "onPacket failed" in r.getMessage())
        assert record.levelno == logging.ERROR
        assert record.lineno == 4
        await peer.sendto(b"fine", ("127.0.0.1", udp_port(runtime)))
        assert (await receive(peer))[0] == b"fine"
        peer.close()


async def test_ipv6_and_ipv4_mapped_destinations(tmp_path: Path) -> None:
    async with running(tmp_path, ECHO) as runtime:
        await lua(runtime, "udp:bind(0)")  # dual-stack wildcard
        v4, v6 = udp_peer(), udp_peer(socket.AF_INET6)
        await v4.bind(("127.0.0.1", 0))
        await v6.bind(("::1", 0))
        assert (
            await lua(runtime, f"return udp:send('to4', '127.0.0.1', {v4.getsockname()[1]})")
            is None
        )
        assert await lua(runtime, f"return udp:send('to6', '::1', {v6.getsockname()[1]})") is None
        assert (await receive(v4))[0] == b"to4"
        assert (await receive(v6))[0] == b"to6"
        v4.close()
        v6.close()
        four = await lua(
            runtime,
            "local s = mona:createUDPSocket() s:bind('127.0.0.1', 0) return s:send('x', '::1', 9)",
        )
        assert b"cannot reach IPv6" in four


async def test_udp_closed_on_shutdown_and_listed(tmp_path: Path) -> None:
    async with running(tmp_path, ECHO) as runtime:
        await lua(runtime, "udp:bind('127.0.0.1', 0)")
        bound = [a for a in runtime.bound_addresses if a.kind == "udp"]
        assert len(bound) == 1
        assert bound[0].host == "127.0.0.1"
        port = bound[0].port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # free again: the runtime closed it


async def test_unbound_udp_messages(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, "u = mona:createUDPSocket() NOTE(tostring(u))"):
        pass
    assert "UDPSocket(unbound)" in messages(caplog)


@pytest.mark.parametrize("engine", ENGINES)
async def test_send_refuses_broadcast_in_every_situation(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    udp = mona:createUDPSocket()
    udp:bind("127.0.0.1", 0)
    results = {}
    results.main = udp:send("x", "127.255.255.255", 9)
    results.connect = mona:createUDPSocket():connect("127.255.255.255", 9)
    results.mapped = udp:send("x", "::ffff:127.255.255.255", 9)
    mona:setTimer(function() results.timer = udp:send("x", "127.255.255.255", 9) return 0 end, 1)
    function udp:onPacket(data, from)
      results["batch" .. data] = udp:send("x", "127.255.255.255", 9)
      self:send(data, from)
    end
    """
    async with running(tmp_path, app, engine=engine) as runtime:
        peer = udp_peer()
        await peer.bind(("127.0.0.1", 0))
        for index in range(5):  # a burst: handled as one batch of reads
            await peer.sendto(str(index).encode(), ("127.0.0.1", udp_port(runtime)))
        for _ in range(5):
            await receive(peer)
        names = ["main", "connect", "mapped", "timer", *(f"batch{i}" for i in range(5))]
        for name in names:
            await lua_until(runtime, f"return results.{name} ~= nil")
            result = await lua(runtime, f"return results.{name}")
            assert b"broadcast is not allowed" in result, name
        peer.close()
    assert not [m for m in messages(caplog, logging.WARNING) if "dropped" in m]


@pytest.mark.parametrize("engine", ENGINES)
async def test_icmp_error_on_a_connected_socket_is_logged_and_reading_goes_on(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now: the kernel answers with ICMP
    app = f"""
    udp = mona:createUDPSocket()
    udp:bind("127.0.0.1", 0)
    udp:connect("127.0.0.1", {port})
    udp:send("ping")
    function udp:onPacket(data) got = data end
    """
    async with running(tmp_path, app, engine=engine) as runtime:
        await wait_for_log(caplog, f"earlier datagram to 127.0.0.1:{port} failed")
        record = next(r for r in caplog.records if "earlier datagram" in r.getMessage())
        assert record.levelno == logging.WARNING
        peer = udp_peer()
        await peer.bind(("127.0.0.1", port))
        assert await lua(runtime, "return udp:send('again')") is None
        data, sender = await receive(peer)
        assert data == b"again"
        await peer.sendto(b"pong", sender)
        await lua_until(runtime, "return got == 'pong'")
        peer.close()
