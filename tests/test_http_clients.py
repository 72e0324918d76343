"""HTTP clients over real loopback sockets: the port, which application a URL names,
the client object, keep-alive (docs/clients/http.rst)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

import trio_mona

from .helpers import lua, lua_until, messages, running, wait_for_log, wait_until, write_app
from .http_client import HTTPClient, get, http_port, raw_exchange

CLIENTS = """
log = {}
function onConnection(client, ...)
  log[#log + 1] = "connect " .. client.path .. " " .. client.query
  local args = {...}
  function client:whoami()
    return { id = self.id, rawId = #self.rawId, path = self.path, protocol = self.protocol,
      query = self.query, address = tostring(self.address), version = self.properties.version,
      agent = self["User-Agent"], cookie = self.flavour, sameById = mona.clients[self.id] == self,
      sameByRaw = mona.clients(self.rawId) == self, count = mona.clients.count, len = #mona.clients,
      args = args, parameters = self.parameters.timeout, writer = tostring(self.writer) }
  end
end
function onDisconnection(client)
  log[#log + 1] = "disconnect " .. client.path .. " " .. client.query
end
"""


async def test_http_is_off_unless_configured(tmp_path: Path) -> None:
    async with running(tmp_path, "x = 1") as runtime:
        assert [a for a in runtime.bound_addresses if a.kind == "http"] == []


async def test_the_port_is_reported_and_the_client_object(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, CLIENTS, engine=engine, HTTP__port="0") as runtime:
        port = http_port(runtime)
        [bound] = [a for a in runtime.bound_addresses if a.kind == "http"]
        assert (bound.host, bound.app) == ("127.0.0.1", "")
        response = await get(
            port, "/whoami?x=1&tag", [("User-Agent", "tests/1"), ("Cookie", "flavour=mint; a=b")]
        )
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        [found] = json.loads(response.body)
        assert len(found["id"]) == 64
        assert int(found["id"], 16) >= 0
        assert found["rawId"] == 32
        assert found["path"] == ""
        assert found["protocol"] == "HTTP"
        assert found["query"] == "x=1&tag"
        assert found["address"].startswith("127.0.0.1:")
        assert (found["version"], found["agent"], found["cookie"]) == ("1.1", "tests/1", "mint")
        assert found["sameById"] is True
        assert found["sameByRaw"] is True
        assert found["count"] == 1
        assert found["len"] == (1 if engine == "lua54" else 0)  # (LuaJIT: no __len on tables)
        assert found["args"] == [{"x": 1}, "tag"]
        assert found["parameters"] == 7
        assert found["writer"].startswith("Writer(Client(HTTP / ")
        await lua_until(runtime, "return mona.clients.count == 0")
        assert await lua(runtime, "return table.concat(log, ',')") == (
            b"connect  x=1&tag,disconnect  x=1&tag"
        )


async def test_client_properties_are_read_only(tmp_path: Path) -> None:
    source = (
        CLIENTS
        + """
    function onConnection(client)
      function client:try(name)
        local ok, err = pcall(function() client[name] = 1 end)
        local ok2, err2 = pcall(function() client.properties.x = 1 end)
        return ok, err, ok2, err2
      end
    end
    """
    )
    async with running(tmp_path, source, HTTP__port="0") as runtime:
        response = await get(http_port(runtime), "/try?id")
        ok, err, ok2, err2 = json.loads(response.body)
        assert ok is False
        assert "'id' is read-only on Client" in err
        assert ok2 is False
        assert "read-only on client.properties" in err2


async def test_the_url_folders_name_the_application(tmp_path: Path) -> None:
    folder = write_app(
        tmp_path / "apps", "function onConnection(c) function c:where() return 'root' end end"
    )
    write_app(
        folder / "a" / "b", "function onConnection(c) function c:where() return c.path end end"
    )
    write_app(folder / "chat", "function onConnection(c) function c:where() return c.path end end")
    async with trio_mona.open_runtime(folder, settings={"HTTP.port": "0"}) as runtime:
        port = http_port(runtime)
        assert (await get(port, "/a/b/where")).body == b'["/a/b"]'
        assert (await get(port, "//chat/where")).body == b'["/chat"]'
        assert (await get(port, "/chat/../a/./b/where")).body == b'["/a/b"]'
        assert (await get(port, "/../../../where")).body == b'["root"]'
        assert (await get(port, "/%2e%2e/where")).body == b'["root"]'
        missing = await get(port, "/x/where")
        assert missing.status == 503
        assert b"Application /x doesn&#x27;t exist" in missing.body
        moved = await get(port, "/chat?a=1")
        assert moved.status == 301
        assert moved.headers["location"] == "/chat/?a=1"
        bad = await get(port, "/a%2fb/where")
        assert bad.status == 400


async def test_keep_alive_keeps_one_client_while_path_and_query_stay(tmp_path: Path) -> None:
    source = (
        CLIENTS
        + "function onConnection(c, ...) "
        + ("log[#log+1] = 'connect '..c.path..' '..c.query; function c:n() return c.id end end")
    )
    async with running(tmp_path, source, HTTP__port="0") as runtime:
        async with await HTTPClient.open(http_port(runtime)) as client:
            first = await client.request("GET", "/n?a=1")
            second = await client.request("GET", "/n?a=1")
            assert first.body == second.body
            third = await client.request("GET", "/n?a=2")
            assert third.body != first.body
            assert await lua(runtime, "return mona.clients.count") == 1
        await lua_until(runtime, "return mona.clients.count == 0")
        assert await lua(runtime, "return table.concat(log, ',')") == (
            b"connect  a=1,disconnect  a=1,connect  a=2,disconnect  a=2"
        )


async def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    source = """
    function onConnection(c)
      function c:echo(args) return args.n end
    end
    """
    async with running(tmp_path, source, HTTP__port="0") as runtime:
        requests = b"".join(
            f"GET /echo?n={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(20)
        )
        data = await raw_exchange(
            http_port(runtime),
            requests + b"GET /echo?n=99 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        bodies = [part.split(b"\r\n\r\n", 1)[1][:4] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
        assert [b.split(b"]")[0] + b"]" for b in bodies] == [
            f"[{n}]".encode() for n in [*range(20), 99]
        ]


async def test_an_error_in_onconnection_rejects_with_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = """
    tries = 0
    function onConnection(client, args)
      tries = tries + 1
      if args and args.password ~= "open" then error("wrong password") end
      function client:hi() return "in" end
      return { timeout = 30 }
    end
    """
    async with running(tmp_path, source, HTTP__port="0") as runtime:
        port = http_port(runtime)
        async with await HTTPClient.open(port) as client:
            refused = await client.request("GET", "/hi?password=no")
            assert refused.status == 500
            assert b"main.lua:5: wrong password" in refused.body
            assert str(tmp_path).encode() not in refused.body
            assert await lua(runtime, "return mona.clients.count") == 0
            again = await client.request("GET", "/hi?password=no")
            assert again.status == 500
            accepted = await client.request("GET", "/hi?password=open")
            assert accepted.body == b'["in"]'
        assert await lua(runtime, "return tries") == 3
        assert any("onConnection failed" in m for m in messages(caplog))


async def test_unloading_an_application_disconnects_its_clients(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "chat", "function onConnection(c) function c:hi() return 1 end end")
    async with trio_mona.open_runtime(folder, settings={"HTTP.port": "0"}) as runtime:
        async with await HTTPClient.open(http_port(runtime)) as client:
            assert (await client.request("GET", "/chat/hi")).body == b"[1]"
            assert await lua(runtime, "return mona.clients.count") == 1
            (folder / "chat" / "main.lua").write_text(
                "function onConnection(c) function c:hi() return 2 end end -- changed"
            )
            with trio.fail_after(5):
                assert await client.stream.receive_some(100) == b""  # closed
        await lua_until(runtime, "return mona.clients.count == 0")
        assert (await get(http_port(runtime), "/chat/hi")).body == b"[2]"


async def test_a_port_in_use_fails_the_start(tmp_path: Path) -> None:
    async with running(tmp_path, "x = 1", HTTP__port="0") as runtime:
        port = http_port(runtime)
        with pytest.raises(
            trio_mona.StartupError, match=f"HTTP: cannot listen on 127.0.0.1 port {port}"
        ):
            async with running(tmp_path / "b", "x = 1", HTTP__port=str(port)):
                pass


async def test_the_blacklist_applies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, "mona:addToBlacklist('127.0.0.1')", HTTP__port="0") as runtime:
        data = await raw_exchange(http_port(runtime), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert data == b""
    await wait_for_log(caplog, "blacklisted")


async def _refused(port: int) -> bool:
    """Whether a connection to *port* is reset at once (the connect, the write or the
    read fails, or reads nothing)."""
    with trio.fail_after(5):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
                return await stream.receive_some(100) == b""
        except (OSError, trio.BrokenResourceError):
            return True


async def test_the_connection_limits_apply(tmp_path: Path) -> None:
    async with running(
        tmp_path, CLIENTS, HTTP__port="0", trio_mona__max_server_connections="1"
    ) as runtime:
        port = http_port(runtime)
        async with await HTTPClient.open(port) as first:
            assert (await first.request("GET", "/whoami")).status == 200
            assert await _refused(port)
        await wait_until(lambda: runtime.statistics().tcp_connections == 0)
        assert (await get(port, "/whoami")).status == 200  # (the first one closed)


async def test_writes_no_request_takes_are_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = """
    function onConnection(client)
      function client:hi() return "hi" end
      keep = client
    end
    function flood()
      for _ = 1, 20 do keep.writer:writeRaw(string.rep("x", 1000)) end
    end
    """
    settings = {"trio_mona__soft_limit": "1024", "trio_mona__hard_limit": "8192"}
    async with running(tmp_path, source, HTTP__port="0", **settings) as runtime:
        async with await HTTPClient.open(http_port(runtime)) as client:
            assert (await client.request("GET", "/hi")).body == b'["hi"]'
            await lua(runtime, "flood()")
            with trio.fail_after(5):
                assert await client.stream.receive_some(100) == b""
        await wait_for_log(
            caplog, "bytes written that no request took (trio_mona.hard_limit): closed"
        )


async def test_requests_sent_before_the_client_closed_its_side_are_answered(tmp_path: Path) -> None:
    source = """
    local socket = require "socket"
    function onConnection(client)
      function client:slow(args) socket.sleep(0.2) return args.n end
    end
    """
    async with running(tmp_path, source, HTTP__port="0") as runtime:
        stream = await trio.open_tcp_stream("127.0.0.1", http_port(runtime))
        async with stream:
            await stream.send_all(
                b"GET /slow?n=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /slow?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            await stream.send_eof()
            answer = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    answer += chunk
        assert answer.count(b"HTTP/1.1 200 OK") == 2
        assert answer.endswith(b"[2]")
