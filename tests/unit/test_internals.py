"""Tests of the internals themselves, which reach private names on purpose: the rest
count in Lua, faults injected into a connection's task, the executor's turns, and that
no handle outlives its socket. Every other test outside tests/unit/ uses only the
public API and trio_mona.testing (tests/unit/test_layout.py checks that)."""

from __future__ import annotations

import gc
import logging
import os
import weakref
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_mona
import trio_mona._net.writes
from trio_mona import IPAddress, Runtime
from trio_mona._core.addresses import IP_PROPERTIES
from trio_mona._core.events import DataReceived
from trio_mona._core.inbound import READ_AHEAD, RECV_SIZE
from trio_mona._net.tcp import TCPConnection
from trio_mona._net.udp import UDPSocket

from ..helpers import (
    ENGINES,
    RECORDING_ECHO,
    connect,
    lua,
    receive_exactly,
    receive_until_closed,
    running,
    tcp_port,
    wait_until,
)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("value", "size", "rest"),
    [
        ("nil", 5, 0),
        ("0", 5, 0),
        ("-3", 5, 0),
        ("2", 5, 2),
        ("2.9", 5, 2),
        ("0.5", 5, 0),
        ("'3'", 5, 3),
        ("' 3 '", 5, 3),
        ("'x'", 5, 0),
        ("true", 5, 0),
        ("{}", 5, 0),
        ("5", 5, 5),
        ("99", 5, 5),
        ("1/0", 5, 5),
        ("0/0", 5, 0),
    ],
)
async def test_rest_count(tmp_path: Path, engine: str, value: str, size: int, rest: int) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        result = runtime._bridge.rest_count(runtime._bridge.eval(value), size)
        assert int(result) == rest


async def test_an_internal_error_closes_only_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Faults injected into one connection's own task and into its write path: that
    connection closes with ``error`` set and onDisconnection, the failure is logged with
    its traceback, and the runtime and every other connection go on."""
    serve, write_some = TCPConnection._serve, TCPConnection.write_some

    async def failing_serve(self: TCPConnection) -> None:
        raise RuntimeError("injected into the task")

    def failing_write(self: TCPConnection, sock: object) -> None:
        if any(bytes(chunk).startswith(b"boom") for chunk in self.queue.items):
            raise RuntimeError("injected into the write")
        write_some(self, sock)  # type: ignore[arg-type]

    async with running(tmp_path, RECORDING_ECHO) as runtime:
        port = tcp_port(runtime)
        monkeypatch.setattr(TCPConnection, "_serve", failing_serve)
        victim = await connect(port)
        await wait_until(lambda: crashes(caplog, "injected into the task"))
        monkeypatch.setattr(TCPConnection, "_serve", serve)
        monkeypatch.setattr(TCPConnection, "write_some", failing_write)
        assert await receive_until_closed(victim) == b""
        bystander, writer = await connect(port), await connect(port)
        await writer.send_all(b"boom")
        assert await receive_until_closed(writer) == b""
        await bystander.send_all(b"still here")
        assert await receive_exactly(bystander, 10) == b"still here"
        await wait_until(lambda: runtime.statistics().tcp_connections == 1)
        errors = await lua(runtime, "return table.concat(ends, '|')")
        assert (
            errors
            == b"internal error (logged by the runtime)|internal error (logged by the runtime)"
        )
    assert len(crashes(caplog, "injected")) == 2


def crashes(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    """The records logged with a traceback of an exception whose message has *text*."""
    return [r for r in caplog.records if r.exc_info and text in str(r.exc_info[1])]


async def test_connections_are_released(tmp_path: Path) -> None:
    async with running(tmp_path, RECORDING_ECHO) as runtime:
        port = tcp_port(runtime)
        refs: list[weakref.ref[TCPConnection]] = []
        for _ in range(20):
            stream = await connect(port)
            await stream.send_all(b"x")
            assert await receive_exactly(stream, 1) == b"x"
            refs.extend(weakref.ref(c) for c in connections(runtime))
            await stream.aclose()
        await wait_until(lambda: not connections(runtime))
        await trio.sleep(0.05)
        await lua(runtime, "collectgarbage() collectgarbage()")
        gc.collect()
        await lua(runtime, "collectgarbage() collectgarbage()")
        gc.collect()
        assert [r for r in refs if r() is not None] == []


TURNS = """
clients, seen, seen_first = {}, 0, nil
server = mona:createTCPServer()
function server:onConnection(client)
  clients[#clients + 1] = client
  function client:onData(data)
    if self ~= clients[1] then
      seen_first = seen
      return
    end
    seen = seen + 1
    local started = os.clock()
    repeat until os.clock() - started > 0.00002 -- 64 calls outlast the 1 ms budget
    return #data - 1 -- one byte per call: a long job, served in turns
  end
end
assert(server:start("127.0.0.1", 0))
"""


@pytest.mark.parametrize("engine", ["lua54", "luajit21"])
async def test_a_long_job_takes_one_turn_at_a_time(tmp_path: Path, engine: str) -> None:
    # Three reads for one connection, then one for another, all queued at once: the
    # first connection's job stops for its budget (its clock read every 64 calls, from
    # the 64th) and its later reads wait for its next turn, so the other is served
    # after one turn (128 calls), not after one turn per read (3 x 128 before).
    size = 1000
    async with running(tmp_path, TURNS, engine=engine) as runtime:
        first = await connect(tcp_port(runtime))
        await wait_until(lambda: runtime.statistics().tcp_connections == 1)
        second = await connect(tcp_port(runtime))
        await wait_until(lambda: runtime.statistics().tcp_connections == 2)
        port = await lua(runtime, "return clients[1].peerAddress.port")
        conns = {conn._peer.port: conn for conn in connections(runtime) if conn._peer}
        busy = conns.pop(port)
        (other,) = conns.values()
        for conn, data in [(busy, b"a" * size)] * 3 + [(other, b"x")]:
            conn.inbound.read(len(data))
            runtime._sockets.post(DataReceived(conn, data))
        with trio.fail_after(20):
            while await lua(runtime, "return seen") < 3 * size:  # every byte, once
                await trio.sleep(0.01)
        assert await lua(runtime, "return seen_first") <= 128
        await first.aclose()
        await second.aclose()


def connections(runtime: Runtime) -> set[TCPConnection]:
    """The runtime's open TCP connections: their private handles, for the two tests
    of the internals themselves (one turn at a time; no handle outlives its socket)."""
    return runtime._sockets.connections  # type: ignore[return-value]  # (each is one)


@pytest.mark.parametrize(
    "text", ["0.0.0.0", "192.168.1.255", "239.192.0.1", "ff02::1", "::ffff:1.2.3.4"]
)
async def test_every_predicate_reaches_lua(tmp_path: Path, text: str) -> None:
    address = IPAddress.parse(text)
    async with running(tmp_path, "") as runtime:
        for lua_name, attribute in IP_PROPERTIES.items():
            got = await lua(runtime, f"return mona:createIPAddress('{text}').{lua_name}")
            expected = getattr(address, attribute)
            assert got == (expected.encode() if isinstance(expected, str) else expected), lua_name


async def test_flow_control_bounds_memory_and_loses_nothing(tmp_path: Path) -> None:
    # The peer writes 8 MiB to the echo server and reads nothing for a while.
    settings = {"trio_mona__soft_limit": "65536", "trio_mona__hard_limit": "1048576"}
    payload = os.urandom(8 << 20)
    async with running(tmp_path, RECORDING_ECHO, **settings) as runtime:
        stream = await connect(tcp_port(runtime))
        peak = 0
        received = bytearray()

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, runtime.statistics().bytes_unsent)
                await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            nursery.start_soon(stream.send_all, payload)
            # The echo queue fills while nobody reads, and reading pauses: what was
            # received stops growing (for 0.1 s), short of the whole payload (what the
            # kernel buffers on both sides hold, a few MB on loopback, was read).
            stalled = -1
            with trio.fail_after(10):
                while runtime.statistics().bytes_received != stalled:
                    stalled = runtime.statistics().bytes_received
                    await trio.sleep(0.1)
            assert 0 < stalled < len(payload)
            with trio.fail_after(20):
                while len(received) < len(payload):
                    received += await stream.receive_some(1 << 20)
            nursery.cancel_scope.cancel()
        # The soft limit, plus what was already read and not yet handed to Lua, plus the
        # read Lua is handling (taken off the read-ahead before its echo is queued, so
        # one more read may come in meanwhile: measured 441,236 once in ~30 runs).
        assert 65536 < peak <= 65536 + READ_AHEAD + 2 * RECV_SIZE
        assert bytes(received) == payload


def test_several_errors_at_once_are_an_internal_error() -> None:
    from trio_mona._groups import single_exception

    group = BaseExceptionGroup("two", [ValueError("a"), KeyError("b")])
    found = single_exception(group)
    assert isinstance(found, trio_mona.InternalError)
    assert found.__cause__ is group
    # (a KeyboardInterrupt goes first, and cancellations with one error are dropped)
    interrupt = KeyboardInterrupt()
    assert single_exception(BaseExceptionGroup("", [ValueError(), interrupt])) is interrupt


async def test_a_call_posted_while_a_commit_is_awaited_is_run_after_it(tmp_path: Path) -> None:
    """The executor awaits a commit over the network (Redis) at the end of its batch;
    what other tasks post meanwhile does not wake the read hub (nobody waits on it
    then), so the executor must look at its channel again before it waits, or the call
    stays there until some later event (a stall of 5 s, seen in the cluster tests)."""
    gate = trio.Event()
    async with running(tmp_path, "") as runtime:
        writes = runtime._sockets.writes

        async def commit_async() -> None:
            await gate.wait()

        writes.commit, writes.commit_async = (lambda: None), commit_async  # (as Redis's)
        assert await lua(runtime, "return 1") == 1  # (its batch ends in the commit)
        answers: list[object] = []

        async def ask() -> None:
            answers.append(await lua(runtime, "return 2"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
            with trio.fail_after(1):
                await wait_until(lambda: bool(answers))
        assert answers == [2]


async def test_a_udp_socket_whose_flusher_fails_is_closed_not_left_with_a_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_: object) -> None:
        raise OSError(9, "Bad file descriptor")

    app = 'udp = mona:createUDPSocket() assert(udp:bind("127.0.0.1", 0) == nil)'
    async with running(tmp_path, app) as runtime:
        (found,) = runtime._sockets.udp_sockets
        assert isinstance(found, UDPSocket)
        udp = found
        monkeypatch.setattr(trio_mona._net.writes, "wait_writable", broken)
        udp._out.push(b"queued", ("127.0.0.1", 9))
        udp._start_flusher()
        await wait_until(lambda: udp._closed)
        assert "its datagrams cannot be written: Bad file descriptor" in caplog.text
        assert await lua(runtime, "return udp:send('x', '127.0.0.1', 9)") == b"UDP socket closed"
