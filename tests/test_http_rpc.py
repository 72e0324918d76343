"""Method calls over HTTP on real loopback sockets: GET and POST in every format,
writers and long polling, cookies, CORS (docs/clients/http.rst)."""

from __future__ import annotations

import email.utils
import json
import time
from pathlib import Path

import pytest
import trio

from .helpers import lua, lua_until, messages, running
from .http_client import HTTPClient, get, http_port, post

RPC = """
function onConnection(client)
  function client:test(name, firstname) return "Hello " .. firstname .. " " .. name end
  function client:sum(a, b) return a + b, "sum" end
  function client:echo(...) return ... end
  function client:boom() error("exploded") end
  function client:onMessage(...) return "message", select("#", ...), ... end
  function client:quote() return 'say "hi"\\n\\\\ <tag>' end
end
"""

XMLRPC_CALL = (
    '<?xml version="1.0"?><methodCall><methodName>test</methodName><params>'
    "<param><value><string>Arouet</string></value></param>"
    "<param><value><string>François-Marie</string></value></param></params></methodCall>"
)


async def test_post_reads_the_body_by_its_content_type(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, RPC, engine=engine, HTTP__port="0") as runtime:
        port = http_port(runtime)
        answer = await post(
            port, "/", "application/json", b'["test", "Arouet", "Fran\\u00e7ois-Marie"]'
        )
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/json"
        assert json.loads(answer.body) == ["Hello François-Marie Arouet"]
        assert json.loads((await post(port, "/", "application/json", b'["sum", 2, 3]')).body) == [
            5,
            "sum",
        ]
        quoted = await post(port, "/", "application/json", b'["quote"]')
        assert json.loads(quoted.body) == ['say "hi"\n\\ <tag>']
        xml = await post(port, "/", "text/xml", XMLRPC_CALL.encode())
        assert xml.headers["content-type"].startswith("text/xml")
        assert b"<methodResponse>" in xml.body
        assert "Hello François-Marie Arouet".encode() in xml.body
        form = await post(port, "/", "application/x-www-form-urlencoded", b"a=1&b=two&flag")
        assert form.headers["content-type"] == "application/x-www-form-urlencoded"
        assert form.body.startswith(b"message&2&")
        assert sorted(form.body.split(b"&")[2:]) == [b"a=1", b"b=two", b"flag"]
        raw = await post(port, "/", "text/plain", b"just text")
        assert raw.headers["content-type"] == "text/plain; charset=utf-8"
        assert raw.body == b"message1just text"
        unreadable = await post(port, "/", "application/json", b"[not json")
        assert unreadable.body == b"message1[not json"
        values = await post(port, "/", "application/json", b"[1, 2]")
        assert json.loads(values.body) == ["message", 2, 1, 2]
        named = await post(port, "/echo", "application/json", b'[1, "x"]')
        assert json.loads(named.body) == [1, "x"]


async def test_amf_bodies_are_answered_in_amf(tmp_path: Path) -> None:
    async with running(tmp_path, RPC, HTTP__port="0") as runtime:
        body = await lua(runtime, 'return mona:toAMF0("sum", 20, 22)')
        answer = await post(http_port(runtime), "/", "application/x-amf", body)
        assert answer.headers["content-type"] == "application/x-amf"
        assert answer.body == await lua(runtime, 'return mona:toAMF0(42, "sum")')


async def test_get_calls_a_method_with_the_query_arguments(tmp_path: Path) -> None:
    async with running(tmp_path, RPC, HTTP__port="0") as runtime:
        port = http_port(runtime)
        answer = await get(port, "/echo?n=1&f=1.5&t=true&s=x%20y&bare&7")
        assert json.loads(answer.body) == [{"n": 1, "f": 1.5, "t": True, "s": "x y"}, "bare", 7]
        head = await HTTPClient.open(port)
        async with head:
            response = await head.request("HEAD", "/echo?x=1")
            assert response.status == 200
            assert response.body == b""
            assert int(response.headers["content-length"]) == len(b'[{"x":1}]')


async def test_errors_and_missing_methods(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(
        tmp_path,
        RPC.replace("function client:onMessage", "function client:x_onMessage"),
        HTTP__port="0",
    ) as runtime:
        port = http_port(runtime)
        boom = await post(port, "/", "application/json", b'["boom"]')
        assert boom.status == 500
        assert boom.headers["content-type"] == "text/html; charset=utf-8"
        assert b"<title>500 Internal Server Error</title>" in boom.body
        assert b"main.lua:6: exploded" in boom.body
        assert str(tmp_path).encode() not in boom.body
        missing = await post(port, "/", "application/json", b'["nothing", 1]')
        assert missing.status == 503
        assert b"Method &#x27;nothing&#x27; not found on application /" in missing.body
        no_message = await post(port, "/", "text/plain", b"hi")
        assert no_message.status == 503
        assert b"onMessage" in no_message.body
        assert any("boom failed" in m for m in messages(caplog))


WRITERS = """
waiting = {}
function onConnection(client)
  function client:poll() waiting[#waiting + 1] = client end
  function client:both()
    client.writer:writeMessage("written")
    return "returned"
  end
  function client:push(kind)
    if kind == "invocation" then client.writer:writeInvocation("onPush", 1, "two") end
    if kind == "raw" then client.writer:writeRaw("a", 1, "b") end
    if kind == "bad" then
      local ok, err = pcall(client.writer.writeRaw, client.writer, {})
      return ok, err
    end
    if kind == "close" then client.writer:close() end
  end
end
function notify(text)
  for _, client in ipairs(waiting) do client.writer:writeMessage(text) end
  waiting = {}
end
"""


async def test_writes_answer_waiting_requests_and_queue_for_the_next(tmp_path: Path) -> None:
    async with running(tmp_path, WRITERS, HTTP__port="0") as runtime:
        port = http_port(runtime)
        async with await HTTPClient.open(port) as client:
            async with trio.open_nursery() as nursery:
                answers: list[bytes] = []

                async def poll() -> None:
                    answers.append((await client.request("GET", "/poll")).body)

                nursery.start_soon(poll)
                await lua_until(runtime, "return #waiting == 1")
                await trio.sleep(0.05)
                assert answers == []  # (held)
                await lua(runtime, "notify('news')")
            assert answers == [b'["news"]']
            # Written and returned: the return values answer, the write waits.
            assert (await client.request("GET", "/both")).body == b'["returned"]'
            assert (await client.request("GET", "/poll")).body == b'["written"]'
            invocation = await client.request("GET", "/push?invocation")
            assert json.loads(invocation.body) == ["onPush", 1, "two"]
            raw = await client.request("GET", "/push?raw")
            assert (raw.body, raw.headers["content-type"]) == (b"a1b", "text/plain; charset=utf-8")
            bad = await client.request("GET", "/push?bad")
            ok, err = json.loads(bad.body)
            assert ok is False
            assert "bad argument #1 to 'writeRaw' (string expected, got table)" in err
            await client.stream.send_all(b"GET /push?close HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(5):
                assert await client.stream.receive_some(1000) == b""


async def test_a_request_nobody_answers_gets_204_after_the_timeout(tmp_path: Path) -> None:
    async with (
        running(tmp_path, WRITERS, HTTP__port="0", HTTP__timeout="0.3") as runtime,
        await HTTPClient.open(http_port(runtime)) as client,
    ):
        started = time.monotonic()
        response = await client.request("GET", "/poll")
        assert response.status == 204
        assert 0.25 < time.monotonic() - started < 3
        # The connection goes on: a write now queues for the next request.
        await lua(runtime, "notify('later')")
        assert (await client.request("GET", "/poll")).body == b'["later"]'


async def test_an_idle_connection_is_closed_after_the_timeout(tmp_path: Path) -> None:
    async with (
        running(tmp_path, WRITERS, HTTP__port="0", HTTP__timeout="0.2") as runtime,
        await HTTPClient.open(http_port(runtime)) as client,
    ):
        assert (await client.request("GET", "/push?raw")).body == b"a1b"
        with trio.fail_after(3):
            assert await client.stream.receive_some(100) == b""
        await lua_until(runtime, "return mona.clients.count == 0")


COOKIES = """
function onConnection(client)
  function client:login(args)
    return client.properties("session", "abc123", { expires = 300, path = "/", httponly = true }),
      client.properties("gone", "x", { expires = -1 }),
      client.properties("bad name", "x") == nil,
      client.properties("k", "v", { colour = "red" }) == nil,
      client.properties("k", "v", 5) == nil,
      client.session
  end
end
"""


async def test_cookies_are_set_and_read(tmp_path: Path) -> None:
    async with (
        running(tmp_path, COOKIES, HTTP__port="0") as runtime,
        await HTTPClient.open(http_port(runtime)) as client,
    ):
        response = await client.request("GET", "/login")
        assert json.loads(response.body) == ["abc123", "x", True, True, True, "abc123"]
        cookies = response.header_values("set-cookie")
        assert len(cookies) == 2
        session, gone = cookies
        assert session.startswith("session=abc123; Expires=")
        assert session.endswith("; Max-Age=300; Path=/; HttpOnly")
        expires = email.utils.parsedate_to_datetime(session.split("Expires=")[1].split(";")[0])
        assert abs(expires.timestamp() - (time.time() + 300)) < 5
        assert "Max-Age=0" in gone
        again = await client.request("GET", "/login")
        assert len(again.header_values("set-cookie")) == 2  # (each response its own)


async def test_cors(tmp_path: Path) -> None:
    async with (
        running(tmp_path, RPC, HTTP__port="0") as runtime,
        await HTTPClient.open(http_port(runtime)) as client,
    ):
        preflight = await client.request(
            "OPTIONS",
            "/",
            [("Origin", "http://app.test"), ("Access-Control-Request-Method", "POST"),
             ("Access-Control-Request-Headers", "content-type")],
        )  # fmt: skip
        assert preflight.status == 204
        assert preflight.headers["access-control-allow-origin"] == "http://app.test"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["access-control-allow-headers"] == "content-type"
        assert int(preflight.headers["access-control-max-age"]) > 0
        call = await client.request("GET", "/sum?1", [("Origin", "http://app.test")])
        assert call.headers["access-control-allow-origin"] == "http://app.test"
        assert "access-control-allow-origin" not in (await client.request("GET", "/sum")).headers
    async with running(tmp_path / "off", RPC, HTTP__port="0", HTTP__cors="false") as runtime:
        response = await get(http_port(runtime), "/", [("Origin", "http://app.test")])
        assert "access-control-allow-origin" not in response.headers
