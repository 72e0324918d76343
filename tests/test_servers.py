"""``mona.servers`` (docs/scaling.rst): runtimes on one real ``redis-server`` see each
other, call each other's Server methods with their arguments intact, and hear when one
stops; bad calls are clear errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis
import trio

import trio_mona
from trio_mona import Runtime
from trio_mona.testing import run_lua

from .helpers import RedisServer, lua_until, messages, wait_for_log, write_app

pytestmark = pytest.mark.trio

APP = """
calls, gone = {}, {}
function onServerConnection(server)
  function server:note(...)
    local parts = { self.address }
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      parts[#parts + 1] = type(v) == "table" and ("{" .. tostring(v.x) .. "," .. tostring(v[1]) .. "}") or tostring(v)
    end
    calls[#calls + 1] = table.concat(parts, " ")
  end
  function server:fails() error("deliberately") end
end
function onServerDisconnection(server) gone[#gone + 1] = server.address end
"""


@asynccontextmanager
async def cluster(tmp_path: Path, url: str, source: str = APP) -> AsyncIterator[list[Runtime]]:
    folder = write_app(tmp_path / "apps", source)
    async with (
        trio_mona.open_runtime(folder, data=url) as a,
        trio_mona.open_runtime(folder, data=url) as b,
    ):
        await lua_until(a, "return #mona.servers == 1")
        await lua_until(b, "return mona.servers.count == 1")
        yield [a, b]


async def calls_of(runtime: Runtime, count: int) -> list[bytes]:
    await lua_until(runtime, f"return #calls >= {count}")
    found = await run_lua(runtime, "return table.concat(calls, '|')")
    return list(found.split(b"|"))


async def test_broadcast_and_send_call_the_peers_methods_with_their_arguments(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster(tmp_path, redis_server.url) as (a, b):
        a_address = await run_lua(b, "return mona.servers[1].address")
        b_address = await run_lua(a, "return mona.servers[1].address")
        assert a_address != b_address
        await run_lua(
            a, "mona.servers:broadcast('note', 'text', 42, 1.5, true, nil, { x = 'y', 'first' })"
        )
        assert await calls_of(b, 1) == [a_address + b" text 42 1.5 true nil {y,first}"]
        # By address, by index, with ipairs; send reaches only its server.
        await run_lua(b, f"mona.servers['{a_address.decode()}']:send('note', 'direct')")
        await run_lua(b, "for _, s in ipairs(mona.servers) do s:send('note', 'each') end")
        assert await calls_of(a, 2) == [b_address + b" direct", b_address + b" each"]
        assert await run_lua(a, "return #calls") == 2


async def test_bad_calls_are_clear_errors_and_the_runtime_goes_on(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with cluster(tmp_path, redis_server.url) as (a, b):
        with pytest.raises(RuntimeError, match=r"bad argument #1 to 'send' \(string expected"):
            await run_lua(a, "mona.servers[1]:send(42)")
        with pytest.raises(RuntimeError, match=r"broadcast: the handler's name must be"):
            await run_lua(a, "mona.servers:broadcast('two\\nlines')")
        with pytest.raises(RuntimeError, match=r"broadcast: the arguments are \d+ bytes, over"):
            await run_lua(a, "mona.servers:broadcast('note', string.rep('x', 2 * 1024 * 1024))")
        with pytest.raises(RuntimeError, match=r"read-only on mona.servers"):
            await run_lua(a, "mona.servers[2] = 1")
        await run_lua(a, "mona.servers:broadcast('missing', 1)")
        await wait_for_log(caplog, "a call of missing Server")
        assert "define it in onServerConnection" in " ".join(messages(caplog))
        await run_lua(a, "mona.servers:broadcast('fails')")
        await wait_for_log(caplog, "deliberately")
        await run_lua(a, "mona.servers:broadcast('note', 'still')")
        assert (await calls_of(b, 1))[0].endswith(b" still")


async def test_a_stopped_server_leaves_and_sending_to_it_fails(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    folder = write_app(tmp_path / "apps", APP)
    async with trio_mona.open_runtime(folder, data=redis_server.url) as a:
        async with trio_mona.open_runtime(folder, data=redis_server.url) as b:
            await lua_until(a, "return #mona.servers == 1")
            await run_lua(a, "kept = mona.servers[1]")
            # (b hears of a when a answers b's hello: a moment after a hears of b.)
            await lua_until(b, "return #mona.servers == 1")
        await lua_until(a, "return #gone == 1 and #mona.servers == 0")
        with pytest.raises(RuntimeError, match=r"this server has left the cluster"):
            await run_lua(a, "kept:send('note')")
        await run_lua(a, "mona.servers:broadcast('note')")  # (nobody to call: nothing)


async def test_without_redis_mona_servers_is_empty(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "")
    async with trio_mona.open_runtime(folder, data=":memory:") as runtime:
        assert await run_lua(runtime, "return #mona.servers, mona.servers.count") == (0, 0)
        await run_lua(runtime, "mona.servers:broadcast('x', 1)")
        # A broadcast to nobody does nothing at all, not even encode its arguments
        # (lua_apps/chat broadcasts every line: encoding it, and the call into Python
        # that wrote the held sends at once, made a burst of lines 6x slower).
        await run_lua(runtime, "mona.servers:broadcast('x', print)")


async def test_clusters_on_one_redis_are_apart(tmp_path: Path, redis_server: RedisServer) -> None:
    folder = write_app(tmp_path / "apps", APP)
    red, blue = {"trio_mona.cluster": "red"}, {"trio_mona.cluster": "blue"}
    async with (
        trio_mona.open_runtime(folder, data=redis_server.url, settings=red) as a,
        trio_mona.open_runtime(folder, data=redis_server.url, settings=blue) as b,
        trio_mona.open_runtime(folder, data=redis_server.url, settings=red) as c,
    ):
        await lua_until(a, "return #mona.servers == 1")
        await run_lua(a, "data.colour = 'red'")
        await run_lua(b, "data.colour = 'blue'")
        await lua_until(c, "return data.colour == 'red'")
        # (a commit on red's channel after blue's: were blue's there, c would hear it first)
        await run_lua(a, "data.after = 'x'")
        await lua_until(c, "return data.after == 'x'")
        assert await run_lua(c, "return data.colour, #mona.servers") == (b"red", 1)
        assert await run_lua(b, "return data.colour, #mona.servers") == (b"blue", 0)


async def test_a_call_from_a_server_not_known_yet_joins_it_and_bad_messages_are_ignored(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # (a process declared lost while it was too busy to beat is back with its next call)
    folder = write_app(tmp_path / "apps", APP)
    client = redis.Redis.from_url(redis_server.url)
    async with trio_mona.open_runtime(folder, data=redis_server.url) as runtime:
        channel = "trio_mona:default:servers"
        client.publish(channel, b"C" + b"x" * 30)  # (not a message of ours)
        client.publish(channel, b"Q")
        stranger = b"C" + b"0123456789abcdef" + b'{"address": "far:1", "host": "far", "pid": 7}'
        client.publish(channel, stranger + b"\nnote\n")  # (no arguments)
        assert await calls_of(runtime, 1) == [b"far:1"]
        code = "local s = mona.servers[1] return #mona.servers, s.host, s.pid, s.worker"
        assert await run_lua(runtime, code) == (1, b"far", 7, None)
        await wait_for_log(caplog, "a message that is not trio_mona's")
    client.close()


ECHO = (
    APP
    + """
server = mona:createTCPServer()
function server:onConnection(client) function client:onData(d) self:send(d) end end
server:start("127.0.0.1", 0)
"""
)


async def test_a_flood_of_made_up_peers_is_bounded_and_the_echo_goes_on(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Any client of the cluster's Redis can publish heartbeats with made-up ids:
    # 20,000 of them (and two crafted kinds) froze every worker for 11-17 s.
    folder = write_app(tmp_path / "apps", ECHO)
    client = redis.Redis.from_url(redis_server.url)
    settings = {"trio_mona.max_servers": "100"}
    async with trio_mona.open_runtime(folder, data=redis_server.url, settings=settings) as runtime:
        port = next(a for a in runtime.bound_addresses if a.kind == "tcp").port
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        channel = "trio_mona:default:servers"
        with client.pipeline(transaction=False) as pipe:
            for i in range(20_000):
                body = b'{"address": "fake:%d", "host": "fake", "pid": %d}' % (i, i)
                pipe.publish(channel, b"B" + b"%016d" % i + body)
            pipe.publish(channel, b"B" + b"x" * 16 + b"[" * 100_000)  # (too deep for json)
            pipe.publish(
                channel, b"B" + b"y" * 16 + b'{"address": "\\ud800", "host": "h", "pid": 1}'
            )
            overflow = b'{"address": "a", "host": "h", "pid": 1e400}'
            pipe.publish(channel, b"B" + b"z" * 16 + overflow)
            pipe.execute()
        with trio.fail_after(20):  # (served all along: each round trip while they arrive)
            for i in range(50):
                await stream.send_all(b"%03d" % i)
                received = b""
                while len(received) < 3:
                    received += await stream.receive_some(3 - len(received))
                assert received == b"%03d" % i
            await wait_for_log(caplog, "100 processes known already (trio_mona.max_servers)")
            await lua_until(runtime, "return #mona.servers == 100")
        found = messages(caplog)
        assert sum("trio_mona.max_servers" in m for m in found) == 1  # (once)
        assert sum(" joined" in m for m in found) <= 20  # (rate-limited, the rest counted)
        assert not [r for r in caplog.records if r.exc_info]  # (no traceback for any)
        await stream.aclose()
    client.close()
