"""When what Lua sends is written (``Writes``): at the end of the executor's batch, or
at once for the last event it knows of. Whichever way, nothing is lost or reordered."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from trio_mona import Runtime, testing

from .helpers import (
    ENGINES,
    connect,
    lua,
    receive_exactly,
    receive_until_closed,
    running,
    tcp_port,
    wait_for_log,
    wait_until,
)

SERVER = """
clients = {}
server = mona:createTCPServer()
function server:onConnection(client)
  clients[#clients + 1] = client
  function client:onData(data)
    if data == "pieces" then
      for i = 1, 200 do self:send(string.format("%03d,", i)) end
    elseif data == "bye" then
      self:send("last words")
      self:disconnect()
    else
      self:send(data)
    end
  end
end
assert(server:start("127.0.0.1", 0))
"""

PIECES = b"".join(b"%03d," % i for i in range(1, 201))


async def test_many_sends_in_one_handler_arrive_whole_and_in_order(tmp_path: Path) -> None:
    async with running(tmp_path, SERVER) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"pieces")
        assert await receive_exactly(stream, len(PIECES)) == PIECES
        await stream.aclose()


async def test_send_then_disconnect_delivers_then_closes(tmp_path: Path) -> None:
    async with running(tmp_path, SERVER) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"bye")
        with trio.fail_after(5):
            assert await receive_until_closed(stream) == b"last words"


async def test_replies_to_a_burst_of_connections_all_arrive(tmp_path: Path) -> None:
    # Many connections ready at once make one batch; each gets its own reply.
    async with running(tmp_path, SERVER) as runtime:
        port = tcp_port(runtime)
        streams = [await connect(port) for _ in range(50)]
        await wait_until(lambda: runtime.statistics().tcp_connections == 50)
        for i, stream in enumerate(streams):
            await stream.send_all(b"message %d" % i)
        with trio.fail_after(5):
            for i, stream in enumerate(streams):
                expected = b"message %d" % i
                assert await receive_exactly(stream, len(expected)) == expected
        for stream in streams:
            await stream.aclose()


async def test_sends_outside_any_read_are_written_without_another_event(
    tmp_path: Path,
) -> None:
    # A timer and a chunk run by the executor (not a read) send: the bytes must leave
    # when the executor runs out of work, with nothing more arriving to push them.
    async with running(tmp_path, SERVER) as runtime:
        stream = await connect(tcp_port(runtime))
        await wait_until(lambda: runtime.statistics().tcp_connections == 1)
        await lua(runtime, "clients[1]:send('from a') clients[1]:send(' chunk')")
        assert await receive_exactly(stream, 12) == b"from a chunk"
        await lua(runtime, "mona:setTimer(function() clients[1]:send('from a timer') end, 10)")
        with trio.fail_after(5):
            assert await receive_exactly(stream, 12) == b"from a timer"
        await stream.aclose()


# Sends held during a job (docs/lua/tcp.rst, "Sending"): after a connection's first
# send in a job, later ones wait in Lua and go over together when the job ends.
HOLDING = """
clients = {}
server = mona:createTCPServer()
function server:onConnection(client)
  clients[#clients + 1] = client
  function client:onData(data)
    if data == "fan" then
      for i = 1, 3000 do
        for _, c in ipairs(clients) do c:send(i .. ",") end
      end
    elseif data == "then fail" then
      self:send("x") self:send("y")
      error("after two sends")
    elseif data == "then close" then
      self:send("a") self:send("b")
      self:disconnect()
      NOTE("after disconnect: ", tostring(self:send("c")))
    elseif data == "then wait" then
      self:send("a") self:send("b")
      self:send(pause("k"))
    elseif data:sub(1, 6) == "limit " then
      -- Connecting clients write nothing during this job: every byte counts.
      local port, targets, ok, err = tonumber(data:sub(7)), {}, 0, nil
      for i = 1, 2 do
        targets[i] = mona:createTCPClient()
        targets[i]:connect("127.0.0.1", port)
      end
      for i = 1, 40 do
        err = targets[i % 2 + 1]:send(string.rep("z", 1000))
        if err then break end
        ok = ok + 1
      end
      NOTE("sent ", ok, " then: ", err)
    end
  end
end
assert(server:start("127.0.0.1", 0))
"""

FAN = b"".join(b"%d," % i for i in range(1, 3001))


@pytest.mark.parametrize("engine", ENGINES)
async def test_held_sends_reach_every_connection_whole_and_in_order(
    tmp_path: Path, engine: str
) -> None:
    async with running(tmp_path, HOLDING, engine=engine) as runtime:
        first, second = await connect(tcp_port(runtime)), await connect(tcp_port(runtime))
        await wait_until(lambda: runtime.statistics().tcp_connections == 2)
        await first.send_all(b"fan")
        with trio.fail_after(5):
            assert await receive_exactly(first, len(FAN)) == FAN
            assert await receive_exactly(second, len(FAN)) == FAN


async def test_held_sends_leave_when_the_handler_fails(tmp_path: Path) -> None:
    async with running(tmp_path, HOLDING) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"then fail")
        with trio.fail_after(5):
            assert await receive_exactly(stream, 2) == b"xy"


async def test_held_sends_leave_before_a_disconnect_and_later_sends_fail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, HOLDING) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"then close")
        with trio.fail_after(5):
            assert await receive_until_closed(stream) == b"ab"
        await wait_for_log(caplog, "after disconnect: socket not connected")


async def test_held_sends_leave_before_the_handler_waits(tmp_path: Path) -> None:
    gate: dict[bytes, trio.Event] = {}

    async def pause(key: bytes) -> tuple[object, ...]:
        await gate.setdefault(key, trio.Event()).wait()
        return (b"c",)

    async with running(tmp_path, HOLDING) as runtime:
        testing.install_waiting(runtime, "pause", pause)
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"then wait")
        with trio.fail_after(5):
            assert await receive_exactly(stream, 2) == b"ab"
        gate.setdefault(b"k", trio.Event()).set()
        with trio.fail_after(5):
            assert await receive_exactly(stream, 1) == b"c"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        # 10 per connection, the two together well under the cap: 20 sends succeed.
        ({}, "sent 20 then: send queue full: 10000 bytes unsent, limit 10000"),
        # The cap over every connection binds first, at exactly 15 of them.
        (
            {"trio_mona__max_unsent": "15000"},
            "sent 15 then: send queue full: 15000 bytes unsent across connections, "
            "limit 15000 (trio_mona.max_unsent)",
        ),
    ],
)
async def test_held_sends_keep_the_limits_exact(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    engine: str,
    limits: dict[str, str],
    expected: str,
) -> None:
    settings = {"trio_mona__soft_limit": "5000", "trio_mona__hard_limit": "10000", **limits}
    with socket.create_server(("127.0.0.1", 0)) as target:
        async with running(tmp_path, HOLDING, engine=engine, **settings) as runtime:
            stream = await connect(tcp_port(runtime))
            await stream.send_all(b"limit %d" % target.getsockname()[1])
            await wait_for_log(caplog, expected)


UDP = """
udp = mona:createUDPSocket()
function udp:onPacket(data, address)
  if data == "close" then
    self:send("closing", address)
    self:close()
  elseif data == "switch" then
    self:connect(address)
    self:send("to the first peer")
    self:connect(mona.configs["other"])
    self:send("to the second peer")
  else
    self:send(data, address)
  end
end
assert(not udp:bind("127.0.0.1", 0))
"""


def _udp_port(runtime: Runtime) -> int:
    return next(a for a in runtime.bound_addresses if a.kind == "udp").port


def _peer() -> tuple[socket.socket, trio.socket.SocketType]:
    """A UDP peer: the plain socket sends without yielding, the Trio one receives."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, trio.socket.from_stdlib_socket(sock)


def _burst(sock: socket.socket, port: int, *datagrams: bytes) -> None:
    """Send without yielding to Trio: the runtime then reads them all as one batch, so
    the replies to all but the last wait for the end of the executor's batch."""
    for datagram in datagrams:
        sock.sendto(datagram, ("127.0.0.1", port))


async def _datagram(peer: trio.socket.SocketType) -> bytes:
    with trio.fail_after(5):
        return await peer.recv(100)


async def test_udp_datagrams_sent_before_connect_go_to_the_old_peer(tmp_path: Path) -> None:
    first, first_rx = _peer()
    second, second_rx = _peer()
    other = f"127.0.0.1:{second.getsockname()[1]}"
    async with running(tmp_path, UDP, other=other) as runtime:
        pings = [b"ping %d" % i for i in range(20)]
        _burst(first, _udp_port(runtime), *pings, b"switch")
        got = [await _datagram(first_rx) for _ in range(21)]
        assert got == [*pings, b"to the first peer"]
        assert await _datagram(second_rx) == b"to the second peer"
    first.close()
    second.close()


async def test_udp_datagrams_sent_before_close_go_out(tmp_path: Path) -> None:
    peer, peer_rx = _peer()
    async with running(tmp_path, UDP) as runtime:
        pings = [b"ping %d" % i for i in range(20)]
        _burst(peer, _udp_port(runtime), *pings, b"close", b"ping after close")
        got = [await _datagram(peer_rx) for _ in range(21)]
        assert got == [*pings, b"closing"]
    peer.close()


async def test_a_batched_datagram_the_kernel_refuses_is_logged_with_the_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A UDP socket connected to a port nobody listens on: its first datagram brings back
    # an ICMP "port unreachable" at once (loopback), and the kernel refuses the next
    # send. Both wait for the end of the batch, so the refusal can only be logged.
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    nobody = closed.getsockname()[1]
    closed.close()
    refused = 'if data == "refused" then doomed:send("first") doomed:send("second")\n  else'
    source = UDP.replace('if data == "close"', refused + 'if data == "close"') + (
        f'doomed = mona:createUDPSocket()\nassert(not doomed:connect("127.0.0.1", {nobody}))\n'
    )
    peer, peer_rx = _peer()
    async with running(tmp_path, source) as runtime:
        _burst(peer, _udp_port(runtime), b"refused", b"echo me")
        assert await _datagram(peer_rx) == b"echo me"
        await wait_for_log(caplog, "dropped: Connection refused")
    peer.close()
