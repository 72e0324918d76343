"""mona:createTCPServer() and accepted connections, over real loopback sockets."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
import trio

from .helpers import (
    ENGINES,
    connect,
    lua,
    lua_until,
    messages,
    receive_exactly,
    receive_until_closed,
    running,
    tcp_port,
    wait_for_log,
)

ECHO = """
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data)
    self:send(data)
    return 0
  end
  function client:onDisconnection()
    NOTE("gone ", self.peerAddress, " connected=", self.connected, " error=", self.error)
  end
end
assert(server:start("127.0.0.1", 0))
"""


@pytest.mark.parametrize("engine", ENGINES)
async def test_echo_and_properties(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, ECHO, engine=engine) as runtime:
        port = tcp_port(runtime)
        assert await lua(runtime, "return server.running") is True
        assert await lua(runtime, "return server.port") == port
        assert await lua(runtime, "return server.address.value") == f"127.0.0.1:{port}".encode()
        assert await lua(runtime, "return tostring(server.address)") == f"127.0.0.1:{port}".encode()
        assert await lua(runtime, "return server.address == server.address") is True
        assert await lua(runtime, "return rawequal(server.address, server.address)") is True
        stream = await connect(port)
        await stream.send_all(b"hello\x00world")
        assert await receive_exactly(stream, 11) == b"hello\x00world"
        assert runtime.statistics().tcp_connections == 1
        await stream.aclose()
        await wait_for_log(caplog_of(runtime), "gone")


def caplog_of(runtime: object) -> pytest.LogCaptureFixture:
    return _CAPLOG[0]


_CAPLOG: list[pytest.LogCaptureFixture] = []


@pytest.fixture(autouse=True)
def _remember_caplog(caplog: pytest.LogCaptureFixture) -> None:
    _CAPLOG[:] = [caplog]


async def test_client_properties_inside_handlers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    server = mona:createTCPServer()
    function server:onConnection(client)
      NOTE("connection ", client.connected, " ", client.peerAddress, " ", client.address,
           " idle<1s=", client.idleTime < 1000, " error=", client.error)
      function client:onData(data)
        if data == "bye" then
          self:send("ok")
          self:disconnect()
          NOTE("after disconnect connected=", self.connected, " send=", self:send("late"))
        end
      end
      function client:onDisconnection()
        NOTE("disconnected peer=", self.peerAddress, " address=", self.address,
             " error=", self.error)
      end
    end
    server:start("127.0.0.1", 0)
    """
    async with running(tmp_path, app) as runtime:
        port = tcp_port(runtime)
        stream = await connect(port)
        local_port = stream.socket.getsockname()[1]
        await wait_for_log(caplog, "connection ")
        text = next(m for m in messages(caplog) if m.startswith("connection "))
        assert text == (
            f"connection true 127.0.0.1:{local_port} 127.0.0.1:{port} idle<1s=true error=nil"
        )
        await stream.send_all(b"bye")
        assert await receive_until_closed(stream) == b"ok"
        await wait_for_log(caplog, "disconnected")
        assert "after disconnect connected=false send=socket not connected" in messages(caplog)
        assert (
            f"disconnected peer=127.0.0.1:{local_port} address=127.0.0.1:{port} error=nil"
            in messages(caplog)
        )
        # onDisconnection fires after the method call that caused it returned.
        logs = messages(caplog)
        assert logs.index("after disconnect connected=false send=socket not connected") < next(
            i for i, m in enumerate(logs) if m.startswith("disconnected")
        )


async def test_aliases_client_handler_on_reception_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    server = mona:createTCPServer()
    function server:clientHandler(client)
      function client:onReception(data) self:send(data:upper()) end
    end
    server:start(0)
    NOTE("port ", server.port)
    """
    async with running(tmp_path, app) as runtime:
        port = tcp_port(runtime)
        assert runtime.bound_addresses[0].host in ("::", "0.0.0.0")
        for host in ("127.0.0.1", "::1"):
            stream = await connect(port, host)
            await stream.send_all(b"abc")
            assert await receive_exactly(stream, 3) == b"ABC"
            await stream.aclose()
        assert f"port {port}" in messages(caplog)


async def test_newer_handler_name_wins(tmp_path: Path) -> None:
    app = """
    server = mona:createTCPServer()
    function server:clientHandler(client) client:send("old") end
    function server:onConnection(client) client:send("new") end
    server:start("127.0.0.1:0")
    """
    async with running(tmp_path, app) as runtime:
        stream = await connect(tcp_port(runtime))
        assert await receive_exactly(stream, 3) == b"new"


async def test_no_connection_handler_closes(tmp_path: Path) -> None:
    async with running(tmp_path, "s = mona:createTCPServer() s:start('127.0.0.1', 0)") as runtime:
        stream = await connect(tcp_port(runtime))
        with trio.fail_after(5):
            assert await receive_until_closed(stream) == b""


async def test_start_failures(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        app = f"""
        a = mona:createTCPServer()
        b = mona:createTCPServer()
        results = {{}}
        results.busy = b:start("127.0.0.1", {busy})
        results.first = a:start("127.0.0.1", 0)
        results.again = a:start("127.0.0.1", 0)
        results.bad = b:start("127.0.0.1:99999")
        results.garbage = b:start("1.2.3.4x:80")
        results.name = b:start("example.test", 80)
        """
        async with running(tmp_path, app) as runtime:
            assert await lua(runtime, "return results.busy") is False
            assert await lua(runtime, "return results.first") is True
            assert await lua(runtime, "return results.again") is False
            assert await lua(runtime, "return results.bad") is False
            assert await lua(runtime, "return results.garbage") is False
            assert await lua(runtime, "return results.name") is False
            assert await lua(runtime, "return b.running") is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    text = "\n".join(r.getMessage() for r in errors)
    assert "Address already in use" in text
    assert "already running" in text
    assert "out of range" in text
    assert "invalid IP address '1.2.3.4x'" in text
    assert "invalid IP address 'example.test'" in text
    # Logged against the Lua line that called start().
    assert all(r.filename == "main.lua" for r in errors)
    assert {r.lineno for r in errors} == {5, 7, 8, 9, 10}


async def test_stop_keeps_accepted_connections(tmp_path: Path) -> None:
    app = """
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(data)
        if data == "stop" then server:stop() end
        self:send(data)
      end
    end
    server:start("127.0.0.1", 0)
    """
    async with running(tmp_path, app) as runtime:
        port = tcp_port(runtime)
        stream = await connect(port)
        await stream.send_all(b"stop")
        assert await receive_exactly(stream, 4) == b"stop"
        assert runtime.bound_addresses == ()
        assert await lua(runtime, "return server.running") is False
        assert await lua(runtime, "return server.address") is None
        with pytest.raises(OSError, match=r"refused|connect"):
            await connect(port)
        await stream.send_all(b"still here")
        assert await receive_exactly(stream, 10) == b"still here"
        # and it can start again on the same port (SO_REUSEADDR)
        assert await lua(runtime, f"return server:start('127.0.0.1', {port})") is True


async def test_peer_close_delivers_remaining_data_and_flushes(tmp_path: Path) -> None:
    async with running(tmp_path, ECHO) as runtime:
        with socket.create_connection(("127.0.0.1", tcp_port(runtime))) as raw:
            payload = os.urandom(300_000)
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)  # EOF right behind the data
            received = bytearray()
            raw.settimeout(5)
            while chunk := await trio.to_thread.run_sync(raw.recv, 65536):
                received += chunk
            assert bytes(received) == payload


async def test_handler_error_is_logged_and_connection_survives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(data)
        if data == "boom" then
          local t = nil
          return t.field
        end
        self:send(data)
      end
    end
    server:start("127.0.0.1", 0)
    """
    async with running(tmp_path, app) as runtime:
        port = tcp_port(runtime)
        first, second = await connect(port), await connect(port)
        await first.send_all(b"boom")
        await wait_for_log(caplog, "onData failed")
        record = next(r for r in caplog.records if "onData failed" in r.getMessage())
        assert record.levelno == logging.ERROR
        assert record.filename == "main.lua"
        assert record.lineno == 7
        assert "attempt to index" in record.getMessage()
        assert "stack traceback" in record.getMessage()
        assert "trio_mona/" not in record.getMessage()  # (no runtime Lua file)
        await first.send_all(b"after")
        assert await receive_exactly(first, 5) == b"after"
        await second.send_all(b"other")
        assert await receive_exactly(second, 5) == b"other"


async def test_send_past_hard_limit_fails_and_keeps_queue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    app = f"""
    client = mona:createTCPClient()
    assert(client:connect("127.0.0.1", {port}) == nil)
    function fill()
      local chunk = string.rep("x", 65536)
      for i = 1, 100 do
        local err = client:send(chunk)
        if err then return i, err end
      end
      return 0
    end
    """
    settings = {"trio_mona__soft_limit": "65536", "trio_mona__hard_limit": "524288"}
    async with running(tmp_path, app, **settings) as runtime:
        peer, _ = await listener.accept()
        await lua_until(runtime, "return client.connected")
        failed_at, error = await lua(runtime, "return fill()")
        assert failed_at > 1
        assert b"send queue full" in error
        # Everything accepted before the failure arrives intact and in order.
        expected = (failed_at - 1) * 65536
        received = 0
        with trio.fail_after(10):
            while received < expected:
                chunk = await peer.recv(1 << 20)
                assert chunk.count(b"x") == len(chunk)
                received += len(chunk)
        await lua(runtime, "client:disconnect()")
        with trio.fail_after(10):
            while chunk := await peer.recv(1 << 20):
                received += len(chunk)
        peer.close()
    listener.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_failed_start_in_a_tail_call_names_the_lua_file(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    mona:setTimer(function()
      return mona:createTCPServer():start("127.0.0.1", 70000)
    end, 1)
    local function start_elsewhere()
      return mona:createTCPServer():start("127.0.0.1", 70001)
    end
    start_elsewhere()
    return mona:createTCPServer():start("127.0.0.1", 70002)
    """
    async with running(tmp_path, app, engine=engine):
        await wait_for_log(caplog, "70000")
        for port, line in (("70000", 2), ("70001", 8), ("70002", None)):
            record = next(r for r in caplog.records if port in r.getMessage())
            assert record.levelno == logging.ERROR
            assert record.filename == "main.lua", (port, record.filename)
            if line is not None:
                assert record.lineno == line, port
