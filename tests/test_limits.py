"""Limits (docs: operations): each holds, its error is clear, and the runtime goes on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from .helpers import (
    RECORDING_ECHO,
    connect,
    lua,
    receive_exactly,
    receive_until_closed,
    running,
    tcp_port,
    wait_for_log,
    wait_until,
)


async def served(stream: trio.SocketStream) -> bool:
    """Whether the server echoes on *stream* (False: it was refused)."""
    try:
        await stream.send_all(b"ping")
        return await receive_exactly(stream, 4) == b"ping"
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False


async def connect_or_none(port: int) -> trio.SocketStream | None:
    """A connection, or None when a refusal reset it while it was being made."""
    try:
        return await connect(port)
    except OSError:
        return None


@pytest.mark.parametrize(
    "setting", ["trio_mona__max_connections", "trio_mona__max_server_connections"]
)
async def test_connection_limits_refuse_with_a_log_line(
    tmp_path: Path, setting: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, RECORDING_ECHO, **{setting: "3"}) as runtime:
        port = tcp_port(runtime)
        streams = [await connect(port) for _ in range(3)]
        assert [await served(stream) for stream in streams] == [True, True, True]
        for _ in range(2):
            extra = await connect_or_none(port)
            assert extra is None or not await served(extra)
        await wait_for_log(caplog, "refused")
        record = next(r for r in caplog.records if "refused" in r.getMessage())
        assert record.levelno == logging.WARNING
        assert setting.replace("__", ".") in record.getMessage()
        await streams[0].aclose()
        await wait_until(lambda: runtime.statistics().tcp_connections == 2)
        assert await served(await connect(port))


async def test_outgoing_connects_count_too(tmp_path: Path) -> None:
    async with running(tmp_path, RECORDING_ECHO, trio_mona__max_connections="2") as runtime:
        port = tcp_port(runtime)
        assert await lua(runtime, f"a = mona:createTCPClient() return a:connect({port})") is None
        await wait_until(lambda: runtime.statistics().tcp_connections == 2)  # both ends
        refused = await lua(runtime, f"return mona:createTCPClient():connect({port})")
        assert refused == b"too many connections: 2 open (trio_mona.max_connections)"


async def test_idle_connections_are_closed(tmp_path: Path) -> None:
    async with running(tmp_path, RECORDING_ECHO, trio_mona__idle_timeout="0.3") as runtime:
        port = tcp_port(runtime)
        idle, busy = await connect(port), await connect(port)
        with trio.fail_after(5):
            for _ in range(8):
                assert await served(busy)
                await trio.sleep(0.1)
        assert await receive_until_closed(idle) == b""
        assert await served(busy)
        assert await lua(runtime, "return ends[1]") == b"idle for 0.3 s (trio_mona.idle_timeout)"


async def test_unsent_bytes_are_capped_over_all_connections(tmp_path: Path) -> None:
    app = """
    clients, results = {}, {}
    server = mona:createTCPServer()
    function server:onConnection(client) clients[#clients + 1] = client end
    server:start("127.0.0.1", 0)
    function flood()
      local chunk = string.rep("x", 64 * 1024)
      for i, client in ipairs(clients) do
        for _ = 1, 4 do results[i] = client:send(chunk) or results[i] end
      end
    end
    """
    settings = {
        "trio_mona__soft_limit": str(64 * 1024),
        "trio_mona__hard_limit": str(1 << 20),
        "trio_mona__max_unsent": str(300 * 1024),
    }
    async with running(tmp_path, app, **settings) as runtime:
        port = tcp_port(runtime)
        readers = []
        for _ in range(3):  # they never read
            sock = trio.socket.socket()
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", port))
            readers.append(sock)
        await wait_until(lambda: runtime.statistics().tcp_connections == 3)
        await lua(runtime, "flood()")
        assert runtime.statistics().bytes_unsent <= 300 * 1024
        refused = await lua(runtime, "return results[3]")
        assert b"bytes unsent across connections" in refused
        assert b"trio_mona.max_unsent" in refused
        for sock in readers:
            sock.close()
        await wait_until(lambda: runtime.statistics().bytes_unsent == 0)


async def test_datagram_size_limit(tmp_path: Path) -> None:
    app = "udp = mona:createUDPSocket() udp:bind('127.0.0.1', 0)"
    async with running(tmp_path, app, trio_mona__max_datagram="100") as runtime:
        assert await lua(runtime, "return udp:send(('x'):rep(100), '127.0.0.1', 9)") is None
        refused = await lua(runtime, "return udp:send(('x'):rep(101), '127.0.0.1', 9)")
        assert refused == b"datagram of 101 bytes is larger than the limit of 100"
