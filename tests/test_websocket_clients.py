"""WebSocket clients on the HTTP port, over real loopback sockets with wsproto as the
client: the upgrade, messages in and out, writers, errors and close codes, liveness and
back-pressure (docs/clients/websocket.rst)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import trio

import trio_mona

from .helpers import lua, lua_until, messages, running, wait_for_log, write_app
from .http_client import HTTPClient, http_port
from .websocket_client import Closed, RefusedError, WSClient

APP = """
log = {}
clients = {}
function onConnection(client, args)
  log[#log + 1] = "connect " .. client.protocol .. " " .. client.path
  clients[#clients + 1] = client
  function client:echo(...) return ... end
  function client:boom() error("exploded") end
  function client:onMessage(...)
    local first = ...
    if type(first) == "table" then return "table", first end
    return "message", select("#", ...), ...
  end
  function client:hi() return "hi over " .. client.protocol end
  function client:push(name, ...) client.writer:writeInvocation(name, ...) end
  function client:raw(...) client.writer:writeRaw(...) end
  function client:status() client.writer:writeStatusResponse("Call.Failed", "why") end
  function client:leave(code) client.writer:close(code) log[#log + 1] = "close returned" end
  function client:others(text)
    for _, other in ipairs(clients) do
      if other ~= client then other.writer:writeMessage(text) end
    end
  end
end
function onDisconnection(client)
  log[#log + 1] = "disconnect " .. client.protocol .. " " .. client.path
end
"""


async def test_messages_in_every_form(tmp_path: Path, engine: str) -> None:
    async with (
        running(tmp_path, APP, engine=engine, HTTP__port="0") as runtime,
        await WSClient.open(http_port(runtime), "/", compress=True) as ws,
    ):
        assert ws.extensions == ["permessage-deflate"]
        await ws.send_text('["echo", 1, "two", {"a": [3]}]')
        assert json.loads(await ws.receive()) == [1, "two", {"a": [3]}]  # type: ignore[arg-type]
        await ws.send_text('["echo", "x\\"y"]')
        assert json.loads(await ws.receive()) == ['x"y']  # type: ignore[arg-type]
        await ws.send_text("[1, 2]")
        assert json.loads(await ws.receive()) == ["message", 2, 1, 2]  # type: ignore[arg-type]
        await ws.send_text('{"a": 1}')
        assert json.loads(await ws.receive()) == ["table", {"a": 1}]  # type: ignore[arg-type]
        await ws.send_text("not json")
        assert json.loads(await ws.receive()) == ["message", 1, "not json"]  # type: ignore[arg-type]
        await ws.send_bytes(b"\x00\x01")
        assert json.loads(await ws.receive()) == ["message", 1, "\u0000\u0001"]  # type: ignore[arg-type]
        await ws.send_text('["hi"]')
        assert await ws.receive() == '["hi over WebSocket"]'
        assert await lua(runtime, "return mona.clients.count") == 1


async def test_a_fragmented_message_is_reassembled(tmp_path: Path) -> None:
    from wsproto.events import TextMessage

    async with (
        running(tmp_path, APP, HTTP__port="0") as runtime,
        await WSClient.open(http_port(runtime)) as ws,
    ):
        for part, last in [('["echo", ', False), ('"in ', False), ('parts"]', True)]:
            await ws.send_raw(ws.connection.send(TextMessage(data=part, message_finished=last)))
        assert await ws.receive() == '["in parts"]'


async def test_the_upgrade_at_paths_inside_an_application(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "chat", APP)
    async with trio_mona.open_runtime(folder, settings={"HTTP.port": "0"}) as runtime:
        port = http_port(runtime)
        for target in [
            "/chat/",
            "/chat",
            "/chat/websocket.html",
            "//chat/websocket.html",
            "/chat/?a=1",
        ]:
            async with await WSClient.open(port, target) as ws:
                await ws.send_text('["hi"]')
                assert await ws.receive() == '["hi over WebSocket"]', target
        with pytest.raises(RefusedError) as refused:
            await WSClient.open(port, "/nowhere/")
        assert refused.value.refused.status == 503
        assert b"Application /nowhere doesn" in refused.value.refused.body


async def test_an_error_in_onconnection_refuses_the_upgrade(tmp_path: Path) -> None:
    source = "function onConnection(client) error('not you') end"
    async with running(tmp_path, source, HTTP__port="0") as runtime:
        with pytest.raises(RefusedError) as refused:
            await WSClient.open(http_port(runtime))
        assert refused.value.refused.status == 500
        assert b"main.lua:1: not you" in refused.value.refused.body
        assert await lua(runtime, "return mona.clients.count") == 0


async def test_http_then_websocket_on_one_connection(tmp_path: Path) -> None:
    async with running(tmp_path, APP, HTTP__port="0") as runtime:
        async with await HTTPClient.open(http_port(runtime)) as http:
            assert (await http.request("GET", "/hi")).body == b'["hi over HTTP"]'
            # The same socket upgrades.
            from wsproto import ConnectionType, WSConnection
            from wsproto.events import AcceptConnection, Request, TextMessage

            connection = WSConnection(ConnectionType.CLIENT)
            await http.stream.send_all(connection.send(Request(host="x", target="/")))
            connection.receive_data(bytes(await http.stream.receive_some(65536)))
            assert isinstance(next(connection.events()), AcceptConnection)
            await http.stream.send_all(connection.send(TextMessage(data='["hi"]')))
            connection.receive_data(bytes(await http.stream.receive_some(65536)))
            assert next(connection.events()).data == '["hi over WebSocket"]'  # type: ignore[attr-defined]
        await lua_until(runtime, "return mona.clients.count == 0")
        assert await lua(runtime, "return table.concat(log, ',')") == (
            b"connect HTTP ,disconnect HTTP ,connect WebSocket ,disconnect WebSocket "
        )


async def test_writers_push_and_close(tmp_path: Path) -> None:
    async with running(tmp_path, APP, HTTP__port="0") as runtime:
        async with await WSClient.open(http_port(runtime)) as ws:
            await ws.send_text('["push", "onPush", 1, "two"]')
            assert json.loads(await ws.receive()) == ["onPush", 1, "two"]  # type: ignore[arg-type]
            await ws.send_text('["raw", "a", 2]')
            assert await ws.receive() == b"a"
            assert await ws.receive() == b"2"
            await ws.send_text('["status"]')
            status = {"code": "Call.Failed", "description": "why"}
            assert json.loads(await ws.receive()) == ["onStatus", status]  # type: ignore[arg-type]
            await ws.send_text('["leave", 4000]')
            assert await ws.receive() == Closed(4000, "")
        await lua_until(runtime, "return mona.clients.count == 0")
        assert await lua(runtime, "return table.concat(log, ',')") == (
            b"connect WebSocket ,close returned,disconnect WebSocket "
        )


async def test_a_write_to_another_client_leaves_at_once(tmp_path: Path) -> None:
    async with running(tmp_path, APP, HTTP__port="0") as runtime:
        port = http_port(runtime)
        async with await WSClient.open(port) as a, await WSClient.open(port) as b:
            await lua_until(runtime, "return mona.clients.count == 2")
            started = time.monotonic()
            await a.send_text('["others", "hello b"]')
            assert await b.receive() == '["hello b"]'
            assert time.monotonic() - started < 0.5  # (MonaServer: up to its 2 s tick)


async def test_method_errors_close_with_1002(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, APP, HTTP__port="0") as runtime:
        port = http_port(runtime)
        async with await WSClient.open(port) as ws:
            await ws.send_text('["boom"]')
            closed = await ws.receive()
            assert closed == Closed(1002, "main.lua:8: exploded")
        async with await WSClient.open(port) as ws:
            await ws.send_text('["nothing", 1]')
            assert await ws.receive() == Closed(1002, "Method 'nothing' not found on application /")
        assert any("Method 'nothing' not found" in m for m in messages(caplog))


async def test_protocol_errors_close_with_their_codes(tmp_path: Path) -> None:
    async with running(tmp_path, APP, HTTP__port="0", WebSocket__maxMessage="100") as runtime:
        port = http_port(runtime)
        async with await WSClient.open(port) as ws:
            await ws.send_text('["echo", "' + "x" * 200 + '"]')
            assert (await ws.receive()).code == 1009  # type: ignore[union-attr]
        async with await WSClient.open(port) as ws:
            await ws.send_raw(b"\x81\x82\x00\x00\x00\x00\xff\xfe")  # (text, not UTF-8)
            assert (await ws.receive()).code == 1007  # type: ignore[union-attr]
        async with await WSClient.open(port) as ws:
            await ws.send_raw(b"\x81\x02hi")  # (a client frame not masked)
            assert (await ws.receive()).code == 1002  # type: ignore[union-attr]
        await lua_until(runtime, "return mona.clients.count == 0")


async def test_pings_and_the_timeout(tmp_path: Path) -> None:
    async with running(
        tmp_path, APP, HTTP__port="0", WebSocket__ping="0.1", WebSocket__timeout="0.5"
    ) as runtime:
        async with await WSClient.open(http_port(runtime)) as ws:
            await ws.ping(b"hello")
            # (the server answers pings; it pings too, and the client's pong is its RTT)
            await ws.send_text('["echo", 1]')
            assert await ws.receive() == "[1]"
            await trio.sleep(0.3)
            await ws.send_text('["echo", 2]')
            assert await ws.receive() == "[2]"
            assert ws.pongs == [b"hello"]
            ping = await lua(runtime, "return clients[1].ping")
            assert 0 <= ping < 1000  # (the test client answers pings when it reads)
        async with await WSClient.open(http_port(runtime)) as silent:
            # A client that reads nothing answers no ping: silent, closed with 1001.
            started = time.monotonic()
            await trio.sleep(1.0)
            closed = await silent.receive(limit=5)
            assert isinstance(closed, Closed)
            assert closed.code == 1001
            assert "idle for 0.5 s (WebSocket.timeout)" in closed.reason
        assert time.monotonic() - started < 4


SLOW = """
function onConnection(client)
  function client:flood(n)
    for i = 1, n do
      if not client.writer:writeMessage(string.rep("x", 10000)) then return i end
    end
    return n
  end
  function client:lossy(n)
    client.writer.reliable = false
    for i = 1, n do client.writer:writeMessage(string.rep("y", 10000)) end
    return client.writer.dropped, client.writer.queueing > 0
  end
  function client:echo(x) return x end
end
"""


async def test_a_client_that_does_not_read_is_closed_at_the_hard_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"trio_mona__soft_limit": "65536", "trio_mona__hard_limit": "262144"}
    async with running(tmp_path, SLOW, HTTP__port="0", **settings) as runtime:
        port = http_port(runtime)
        async with await WSClient.open(port) as slow, await WSClient.open(port) as other:
            await slow.send_text('["flood", 10000]')
            started = time.monotonic()
            await other.send_text('["echo", "fast"]')
            assert await other.receive() == '["fast"]'
            assert time.monotonic() - started < 0.5
            await wait_for_log(caplog, "a WebSocket client does not read")
            await lua_until(runtime, "return mona.clients.count == 1")
        await lua_until(runtime, "return mona.clients.count == 0")


async def test_unreliable_messages_are_dropped_when_the_queue_is_long(tmp_path: Path) -> None:
    settings = {"trio_mona__soft_limit": "65536", "trio_mona__hard_limit": "1048576"}
    async with (
        running(tmp_path, SLOW, HTTP__port="0", **settings) as runtime,
        await WSClient.open(http_port(runtime)) as ws,
    ):
        await ws.send_text('["lossy", 3000]')
        answer = None
        with trio.fail_after(10):
            while not isinstance(answer, str) or not answer.startswith("[") or "y" in answer:
                answer = await ws.receive()
        dropped, queued = json.loads(answer)
        assert dropped > 0
        assert queued is True


WRITERS = """
ticks = 0
function onConnection(client)
  function client:open()
    extra = client.writer:newWriter()
    function extra:onManage()
      ticks = ticks + 1
      self:writeInvocation("tick", ticks)
    end
    return tostring(extra) ~= nil
  end
  function client:shut() extra:close() return "still here" end
end
"""


async def test_secondary_writers_manage_and_close_alone(tmp_path: Path) -> None:
    async with (
        running(tmp_path, WRITERS, HTTP__port="0") as runtime,
        await WSClient.open(http_port(runtime)) as ws,
    ):
        await ws.send_text('["open"]')
        assert await ws.receive() == "[true]"
        with trio.fail_after(5):
            assert json.loads(await ws.receive()) == ["tick", 1]  # type: ignore[arg-type]
        await ws.send_text('["shut"]')
        answer = await ws.receive()
        while answer != '["still here"]':
            answer = await ws.receive()
        ok, err = await lua(runtime, "return pcall(extra.writeMessage, extra, 1)")
        assert ok is False
        assert b"this writer is closed" in err
        assert await lua(runtime, "return mona.clients.count") == 1


MEMO = """
function onConnection(client)
  function client:many()
    local w = client.writer
    w:writeInvocation("a", "x")
    w:writeInvocation("a", "x")
    w:writeInvocation("a", "y")
    w:writeInvocation("b", "y")
    w:writeInvocation("b", 1)
    w:writeInvocation("b", "1")
    w:writeInvocation("b", "1", "2")
    w:writeInvocation("b", "1")
  end
end
"""


async def test_an_invocation_encoded_once_is_the_same_invocation(tmp_path: Path) -> None:
    async with (
        running(tmp_path, MEMO, HTTP__port="0") as runtime,
        await WSClient.open(http_port(runtime)) as ws,
    ):
        await ws.send_text('["many"]')
        found = [await ws.receive() for _ in range(8)]
        assert found == ['["a","x"]', '["a","x"]', '["a","y"]', '["b","y"]', '["b",1]',
                         '["b","1"]', '["b","1","2"]', '["b","1"]']  # fmt: skip
