"""`data` on Redis (docs/scaling.rst, "Shared data"): several runtimes on one real
``redis-server`` share the tree; a reply leaves only once Redis has the assignment;
Redis down at start, lost while serving and back; a missed commit reloads the tree."""

from __future__ import annotations

import shutil
import ssl
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis
import trio
import trustme

import trio_mona
from trio_mona import Runtime
from trio_mona.testing import run_lua

from .helpers import (
    RedisServer,
    connect,
    free_port,
    messages,
    receive_exactly,
    wait_for_log,
    wait_until,
    write_app,
)

pytestmark = pytest.mark.trio

KV = Path(__file__).resolve().parent.parent / "lua_apps" / "kv"

#: Each line "key=value" is stored in data, then answered "ok <key>\n"; "ping" is
#: answered "pong" (it assigns nothing).
STORING = """
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(bytes)
    if bytes == "ping\\n" then self:send("pong\\n") return end
    for key, value in bytes:gmatch("(%w+)=(%w+)\\n") do
      data[key] = value
      self:send("ok " .. key .. "\\n")
    end
  end
end
server:start("127.0.0.1", 0)
"""


@asynccontextmanager
async def sharing(
    tmp_path: Path, url: str, count: int = 2, source: str = "", engine: str | None = None
) -> AsyncIterator[list[Runtime]]:
    """*count* runtimes of the same applications on the Redis at *url*."""
    folder = write_app(tmp_path / "apps", source)
    async with trio_mona.open_runtime(folder, data=url, engine=engine) as first:
        if count == 1:
            yield [first]
            return
        async with trio_mona.open_runtime(folder, data=url, engine=engine) as second:
            yield [first, second]


def tcp_port(runtime: Runtime) -> int:
    return next(a.port for a in runtime.bound_addresses if a.kind == "tcp")


async def seen_within(runtime: Runtime, code: str, limit: float = 5.0) -> float:
    """Seconds until the Lua expression *code* is true in *runtime*."""
    start = time.monotonic()
    with trio.fail_after(limit):
        while not await run_lua(runtime, f"return {code}"):
            await trio.sleep(0.001)
    return time.monotonic() - start


async def test_an_assignment_in_one_runtime_is_read_in_another(
    tmp_path: Path, redis_server: RedisServer, engine: str
) -> None:
    async with sharing(tmp_path, redis_server.url, engine=engine) as (a, b):
        delays = []
        for i in range(10):
            writer, reader = (a, b) if i % 2 else (b, a)
            await run_lua(
                writer, f"data.n = {i}; data.t = nil; data.t = {{ k = {i}, sub = {{ ok = true }} }}"
            )
            delays.append(await seen_within(reader, f"data.n == '{i}' and data.t.k == '{i}'"))
        # (seen soon: the delay itself, ~ms, is measured in bench/, not asserted here)
        assert statistics.median(delays) < 1.0, delays
        # MonaServer's rules hold across processes: numbers read back as strings,
        # booleans stay booleans, a table is a subtree, nil deletes it.
        assert await run_lua(a, "return data.t.sub.ok, data.t.count, data.t.k") == (True, 1, b"9")
        await run_lua(a, "data.t = nil")
        await seen_within(b, "data.t == nil")
        # A value over a table is refused as on SQLite, in each process.
        await run_lua(b, "data.u = { x = '1' }; data.u = 'flat'")
        await seen_within(a, "data.u and data.u.x == '1'")
    async with sharing(tmp_path, redis_server.url, count=1) as (fresh,):
        # A new process reads the whole tree from Redis.
        assert await run_lua(fresh, "return data.n, data.u.x, data.t") == (b"9", b"1", None)


async def test_a_reply_after_an_assignment_waits_for_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    async with sharing(tmp_path, redis_server.url, count=1, source=STORING) as (runtime,):
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"first=1\n")
        assert await receive_exactly(stream, 9) == b"ok first\n"
        # Redis holds the writes of every client for 600 ms: the reply waits for it.
        client.client_pause(600, all=False)
        paused = time.monotonic()
        await stream.send_all(b"second=2\n")
        assert await receive_exactly(stream, 10) == b"ok second\n"
        assert time.monotonic() - paused > 0.5
        assert client.hget("trio_mona:default:data", b"second") == b"S2"
        await stream.aclose()
    client.close()


async def test_redis_down_at_start_is_a_clear_error(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    folder = write_app(tmp_path / "apps", "")
    with pytest.raises(trio_mona.StartupError, match=r"cannot reach Redis: .*refused"):
        async with trio_mona.open_runtime(folder, data=url):
            pass


async def test_redis_lost_refuses_assignments_keeps_serving_and_comes_back(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    source = (
        STORING
        + "function tryStore(v) local ok, e = pcall(function() data.v = v end) return ok, e end"
    )
    async with sharing(tmp_path, redis_server.url, source=source) as (a, b):
        await run_lua(a, "data.before = 'kept'")
        await seen_within(b, "data.before == 'kept'")
        redis_server.stop()
        # The loss is seen within the link's poll (0.5 s) or at the first commit.
        await run_lua(a, "data.probe = 'x'")
        dispatched = a.statistics().events_dispatched
        await wait_for_log(caplog, "Redis is unreachable")
        with trio.fail_after(5):
            while True:
                ok, error = await run_lua(a, "return tryStore('lost')")
                if not ok:
                    break
                await trio.sleep(0.05)
        assert b"data: cannot store data.v: Redis is unreachable" in error
        assert await run_lua(a, "return data.before") == b"kept"  # (reading goes on)
        # The server reads on, but no reply leaves before data.probe is committed.
        stream = await connect(tcp_port(a))
        await stream.send_all(b"ping\n")
        await wait_until(lambda: a.statistics().events_dispatched > dispatched)
        redis_server.start()  # (its append-only file: what it held comes back)
        with trio.fail_after(15):
            assert await receive_exactly(stream, 5) == b"pong\n"
        assert "committed again" in " ".join(messages(caplog))  # (not before)
        # (a is back once it logs so; b, which only listens, may have been
        # resubscribed by redis-py before it saw the loss, or is still waiting)
        with trio.fail_after(15):
            while (await run_lua(a, "return tryStore('back')"))[0] is not True:
                await trio.sleep(0.05)
        assert "Redis is back" in " ".join(messages(caplog))
        await seen_within(b, "data.v == 'back' and data.probe == 'x'", limit=15)
        await stream.send_all(b"after=1\n")
        assert await receive_exactly(stream, 9) == b"ok after\n"
        await stream.aclose()


async def test_a_missed_commit_reloads_the_tree(tmp_path: Path, redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    async with sharing(tmp_path, redis_server.url) as (a, b):
        await run_lua(a, "data.x = 'one'")
        await seen_within(b, "data.x == 'one'")
        # A commit that was never published (as if b's subscription had missed it).
        client.hset("trio_mona:default:data", b"missed", b"Syes")
        client.zadd("trio_mona:default:paths", {b"missed": 0})
        client.incr("trio_mona:default:commits")
        await run_lua(b, "data.mine = 'pending'")  # (b's own change survives the reload)
        await run_lua(a, "data.x = 'two'")  # the next commit shows the gap
        await seen_within(b, "data.missed == 'yes' and data.x == 'two' and data.mine == 'pending'")
    client.close()


async def test_concurrent_changes_converge_to_what_redis_holds(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    script = """
    for i = 1, 40 do
      data.k = NAME .. i
      data.tree = { n = NAME .. i, deep = { v = i } }
      if i % 7 == 0 then data.tree = nil end
      if i % 5 == 0 then data.gone = nil else data.gone = NAME end
    end
    """
    async with sharing(tmp_path, redis_server.url) as (a, b):
        async with trio.open_nursery() as nursery:
            for runtime, name in ((a, "a"), (b, "b")):
                for _ in range(5):
                    nursery.start_soon(run_lua, runtime, f"NAME = '{name}'" + script)
        snapshot = (
            "return data.k, data.gone, data.tree and data.tree.n, data.tree and data.tree.deep.v"
        )
        async with sharing(tmp_path, redis_server.url, count=1) as (fresh,):
            truth = await run_lua(fresh, snapshot)
        # (each converges once it has heard the other's last commits)
        with trio.fail_after(5):
            while await run_lua(a, snapshot) != truth or await run_lua(b, snapshot) != truth:
                await trio.sleep(0.01)


async def test_bytes_a_flusher_holds_wait_for_the_commit_too(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # A client that reads nothing: its connection's queue waits for buffer room in a
    # flusher task, which must not write what was sent after an assignment before
    # Redis has it.
    source = """
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(d)
        if d:find("fill") then self:send(string.rep("x", 8 * 1024 * 1024)) end
        if d:find("mark") then data.x = "1"; self:send("MARK") end
      end
    end
    server:start("127.0.0.1", 0)
    """
    client = redis.Redis.from_url(redis_server.url)
    async with sharing(tmp_path, redis_server.url, count=1, source=source) as (runtime,):
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"fill\n")
        await trio.sleep(0.2)  # (the kernel's buffers are full: a flusher waits)
        client.client_pause(600, all=False)
        await stream.send_all(b"mark\n")
        received = b""
        with trio.fail_after(10):
            while not received.endswith(b"MARK"):
                received = received[-4:] + await stream.receive_some(1 << 20)
        assert client.hget("trio_mona:default:data", b"x") == b"S1"
        await stream.aclose()
    client.close()


async def test_kv_answers_an_error_while_redis_is_unreachable(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"kv.port": "0"}
    async with trio_mona.open_runtime(KV, data=redis_server.url, settings=settings) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"set a 1\n")
        assert await receive_exactly(stream, 3) == b"ok\n"
        redis_server.stop()
        # (a "set" made before the loss is seen would be answered once Redis is back)
        await wait_for_log(caplog, "Redis is unreachable")
        await stream.send_all(b"set b 2\n")
        with trio.fail_after(5):
            answer = await stream.receive_some(4096)
        assert answer.startswith(b"error cannot store data.store.b: Redis is unreachable"), answer
        await stream.send_all(b"get a\n")  # (reading goes on)
        assert await receive_exactly(stream, 2) == b"1\n"
        await stream.aclose()


async def test_after_redis_restarts_no_reply_leaves_before_its_commit(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Each "ok" of lua_apps/kv is read back from Redis itself: the first assignment
    after a restart went over the connection Redis had closed, and its "ok" left anyway."""
    client = redis.Redis.from_url(redis_server.url)
    settings = {"kv.port": "0"}
    async with trio_mona.open_runtime(KV, data=redis_server.url, settings=settings) as runtime:
        stream = await connect(tcp_port(runtime))
        for round_ in range(3):
            await stream.send_all(b"set before%d x\n" % round_)
            assert await receive_exactly(stream, 3) == b"ok\n"
            redis_server.stop()
            redis_server.start()  # (empty: no append-only file)
            await stream.send_all(b"set after%d y\n" % round_)
            with trio.fail_after(15):
                assert await receive_exactly(stream, 3) == b"ok\n"
            stored = client.hget("trio_mona:default:data", b"store\x00after%d" % round_)
            assert stored == b"Sy", round_
        await stream.aclose()
    client.close()


async def test_a_burst_larger_than_a_subscriber_may_hold_reaches_the_others(
    tmp_path: Path,
) -> None:
    # Redis cuts off a subscriber with more than 2 MiB unread here (32 MiB by
    # default): 5.5 MB of assignments in one handler still reach the other runtime.
    server = RedisServer(None, "--client-output-buffer-limit", "pubsub 2mb 2mb 0")
    try:
        async with sharing(tmp_path, server.url) as (a, b):
            await run_lua(
                a,
                "data.t = {}; local t, v = data.t, string.rep('v', 100); for i = 1, 50000 do t[i] = v end",
            )
            await seen_within(b, "data.t and data.t.count == 50000", limit=20)
            # (a's own subscription may be cut too, when its reader lags under load: each
            # runtime's assignments fail until it is back, a moment later)
            await seen_within(b, "pcall(function() data.b_back = true end)", limit=10)
            await seen_within(a, "pcall(function() data.a_back = true end)", limit=10)
            await seen_within(a, "data.b_back == true", limit=10)
            await run_lua(a, "data.after = 'x'")
            await seen_within(b, "data.after == 'x'")
    finally:
        server.stop()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    """A ``redis-server`` that speaks only TLS, with a certificate for 127.0.0.1 from a
    test CA (trustme), and the CA's file."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    authority.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    probe = ssl.create_default_context(cafile=str(files["ca"]))
    server = RedisServer(
        None, "--tls-cert-file", str(files["cert"]), "--tls-key-file", str(files["key"]),
        "--tls-ca-cert-file", str(files["ca"]), "--tls-auth-clients", "no", tls=probe,
    )  # fmt: skip
    yield server, files["ca"]
    server.stop()


async def test_data_and_servers_over_tls(
    tmp_path: Path, tls_redis: tuple[RedisServer, Path]
) -> None:
    server, ca = tls_redis
    url = f"{server.url}?ssl_ca_certs={ca}"
    async with sharing(tmp_path, url) as (a, b):
        await run_lua(a, "data.secret = 'kept'")
        await seen_within(b, "data.secret == 'kept'")
        await seen_within(b, "#mona.servers == 1")
    # Without the CA the certificate is refused, in one line.
    folder = write_app(tmp_path / "other", "")
    with pytest.raises(trio_mona.StartupError, match=r"rediss://.*cannot reach Redis: .*certif"):
        async with trio_mona.open_runtime(folder, data=server.url):
            pass


async def test_statistics_count_commits_made_and_heard(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with sharing(tmp_path, redis_server.url) as (a, b):
        for i in range(5):
            await run_lua(a, f"data.n = {i}")
            await seen_within(b, f"data.n == '{i}'")
        assert a.statistics().data_commits == 5
        assert b.statistics().data_commits_heard == 5
        assert (b.statistics().data_commits, a.statistics().data_commits_heard) == (0, 0)
