"""LuaSocket on the event loop: a call that would block waits in its coroutine only
(docs/lua/luasocket.rst). What the real LuaSocket does too is in test_luasocket_compat."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

import trio_mona

from .helpers import (
    connect,
    lua,
    lua_until,
    messages,
    receive_exactly,
    running,
    tcp_port,
    wait_until,
)

LUASOCKET_ECHO = Path(__file__).resolve().parent.parent / "lua_apps" / "luasocket_echo"

#: LuaSocket's classic loop at the top of the main chunk, one coroutine per client.
ACCEPT_LOOP = """
local socket = require "socket"
local server = assert(socket.bind("127.0.0.1", 0))
started = false
function onStart() started = true end
while true do
  local client = server:accept()
  coroutine.wrap(function()
    while true do
      local line, err = client:receive()
      if not line then break end
      client:send(line .. "\\n")
    end
    client:close()
  end)()
end
"""


async def test_a_top_level_accept_loop_serves_many_clients_at_once(
    tmp_path: Path, engine: str
) -> None:
    async with running(tmp_path, ACCEPT_LOOP, engine=engine) as runtime:
        assert await lua(runtime, "return started") is True  # onStart ran, serve() returned
        port = tcp_port(runtime)
        clients = [await connect(port) for _ in range(20)]
        with trio.fail_after(5):
            # each client's coroutine waits in receive while the others are served
            for i, stream in enumerate(reversed(clients)):
                await stream.send_all(b"line %d\r\n" % i)
                assert await receive_exactly(stream, len(b"line %d\n" % i)) == b"line %d\n" % i
        for stream in clients:
            await stream.aclose()


async def test_a_waiting_receive_adds_no_latency_to_other_connections(
    tmp_path: Path, engine: str
) -> None:
    async with running(tmp_path, ACCEPT_LOOP, engine=engine) as runtime:
        port = tcp_port(runtime)
        idle = [await connect(port) for _ in range(50)]  # fifty coroutines wait in receive
        busy = await connect(port)
        # (served while they wait: the latency itself is measured in bench/, not here)
        with trio.fail_after(10):
            for _ in range(200):
                await busy.send_all(b"ping\n")
                assert await receive_exactly(busy, 5) == b"ping\n"
        for stream in [*idle, busy]:
            await stream.aclose()


SERVER = """
socket = require "socket"
server = assert(socket.bind("127.0.0.1", 0))
"""


async def test_timeouts_in_block_and_total_modes(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, SERVER, engine=engine) as runtime:
        port = tcp_port(runtime)
        await lua(runtime, "server:settimeout(1) result = nil")
        await lua(
            runtime,
            # a block timeout alone bounds the whole call, as LuaSocket's does; with a
            # total timeout too, it bounds each wait and the total bounds the call
            "coroutine.wrap(function() conn = server:accept() "
            "conn:settimeout(0.2) block = { conn:receive(10) } "
            "conn:settimeout(5, 't') both = { conn:receive(10) } "
            "conn:settimeout(-1) conn:settimeout(0.2, 't') total = { conn:receive(10) } end)()",
        )
        stream = await connect(port)
        with trio.fail_after(3):
            # a trickle that keeps each wait under 0.2 s but takes 0.4 s in all
            for _ in range(5):
                await stream.send_all(b"ab")
                await trio.sleep(0.08)
            await lua_until(runtime, "return block ~= nil")
            error, partial = await lua(runtime, "return block[2], block[3]")
            assert error == b"timeout"
            assert partial in (b"ab", b"abab", b"ababab")  # what came within the 0.2 s
            # (the rest of the trickle waits in the buffer; as many bytes again, one by
            # one, each wait under 0.2 s and the call under 5 s: it completes)
            for _ in range(len(partial)):
                await stream.send_all(b"x")
                await trio.sleep(0.08)
            await lua_until(runtime, "return both ~= nil")
            expected = (b"ab" * 5)[len(partial) :] + b"x" * len(partial)
            assert await lua(runtime, "return both[1]") == expected
            for _ in range(4):
                await stream.send_all(b"cd")
                await trio.sleep(0.08)
            await lua_until(runtime, "return total ~= nil")
            error, partial = await lua(runtime, "return total[2], total[3]")
            assert error == b"timeout"
            assert partial in (b"cd", b"cdcd", b"cdcdcd")  # what came within the 0.2 s
        await stream.aclose()


async def test_closing_a_socket_wakes_the_coroutine_waiting_on_it(
    tmp_path: Path, engine: str
) -> None:
    async with running(tmp_path, SERVER, engine=engine) as runtime:
        port = tcp_port(runtime)
        await lua(
            runtime,
            "coroutine.wrap(function() conn = server:accept() got = { conn:receive() } end)()",
        )
        stream = await connect(port)
        await lua_until(runtime, "return conn ~= nil")
        await stream.send_all(b"part")
        await wait_until(lambda: runtime.statistics().bytes_received >= 4)
        with trio.fail_after(2):
            await lua(runtime, "conn:close()")  # from another coroutine
            await lua_until(runtime, "return got ~= nil")
        assert await lua(runtime, "return got[1], got[2]") == (None, b"closed")
        await stream.aclose()


async def test_select_on_many_sockets(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, SERVER, engine=engine) as runtime:
        port = tcp_port(runtime)
        await lua(
            runtime,
            "conns = {} coroutine.wrap(function() "
            "for i = 1, 40 do conns[i] = server:accept() end end)()",
        )
        streams = [await connect(port) for _ in range(40)]
        await lua_until(runtime, "return #conns == 40")
        await lua(
            runtime,
            "coroutine.wrap(function() ready = { socket.select(conns, nil, 2) } end)()",
        )
        # (the coroutine ran to its first wait before lua() returned: nothing to read yet)
        assert await lua(runtime, "return ready") is None
        for index in (3, 17, 29):
            await streams[index].send_all(b"x")
        await lua_until(runtime, "return ready ~= nil")
        found = await lua(
            runtime,
            "local r = ready[1] local t = {} "
            "for i, c in ipairs(conns) do if r[c] then t[#t + 1] = i end end "
            "return table.concat(t, ',')",
        )
        # (all three if they arrived together; at least the first one)
        assert found in (b"4,18,30", b"4", b"4,18")
        for stream in streams:
            await stream.aclose()


POLLING = """
local socket = require "socket"
listener = assert(socket.bind("127.0.0.1", 0))
listener:settimeout(0)
polls = 0
echo = mona:createTCPServer()
function echo:onConnection(client)
  function client:onData(data) self:send(data) end
end
echo:start("127.0.0.1", 0)
while true do                     -- polls forever, as a LuaSocket script may
  local client = listener:accept()
  polls = polls + 1
  if client then client:close() end
  socket.sleep(0.01)
end
"""


async def test_a_polling_loop_never_starves_the_other_sockets(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, POLLING, engine=engine) as runtime:
        stream = await connect(runtime.bound_addresses[-1].port)  # (the newest: the echo)
        with trio.fail_after(3):
            for _ in range(50):
                await stream.send_all(b"hi")
                assert await receive_exactly(stream, 2) == b"hi"
        assert await lua(runtime, "return polls") > 0
        await stream.aclose()


async def test_names_resolve_through_trio_and_each_address_is_tried(
    tmp_path: Path, engine: str
) -> None:
    class Resolver(trio.abc.HostnameResolver):
        async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
            if host != b"twice.test":
                raise socket.gaierror(socket.EAI_NONAME, "unknown")
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
            ]

        async def getnameinfo(self, sockaddr, flags):  # type: ignore[no-untyped-def]
            return ("named.test", "0")

    previous = trio.socket.set_custom_hostname_resolver(Resolver())
    try:
        async with running(tmp_path, SERVER, engine=engine) as runtime:
            port = tcp_port(runtime)
            result = await lua(
                runtime,
                f"local c, err = socket.connect('twice.test', {port}) "
                "if not c then return err end return c:getpeername()",
            )
            assert result[0] == b"127.0.0.1"
            # (127.0.0.2 refuses: nothing listens there)
            assert await lua(runtime, "return (socket.dns.toip('twice.test'))") == b"127.0.0.2"
            assert await lua(runtime, "return select(2, socket.connect('nowhere.test', 1))") == (
                b"host not found"
            )
    finally:
        trio.socket.set_custom_hostname_resolver(previous)


async def test_shutdown_stops_a_main_chunk_that_serves_forever(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(5):
        async with running(tmp_path, ACCEPT_LOOP, engine=engine) as runtime:
            port = tcp_port(runtime)
            stream = await connect(port)
            await stream.send_all(b"x\n")
            assert await receive_exactly(stream, 2) == b"x\n"
    # the listener is closed: the port is free again
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    assert not [m for m in messages(caplog) if "internal error" in m]


async def test_luasocket_and_mona_objects_side_by_side(tmp_path: Path, engine: str) -> None:
    app = """
    socket = require "socket"
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(data) self:send(data:upper()) end
    end
    server:start("127.0.0.1", 0)
    """
    async with running(tmp_path, app, engine=engine) as runtime:
        port = tcp_port(runtime)
        reply = await lua(
            runtime,
            f"local c = assert(socket.connect('127.0.0.1', {port})) c:send('hello') "
            "local r = c:receive(5) c:close() return r",
        )
        assert reply == b"HELLO"


async def test_sockets_close_when_their_object_is_collected_or_the_app_unloads(
    tmp_path: Path,
    engine: str,
) -> None:
    async with running(tmp_path, SERVER, engine=engine) as runtime:
        assert runtime.statistics().luasockets == 1
        await lua(runtime, "for i = 1, 5 do socket.udp():setsockname('127.0.0.1', 0) end")
        assert runtime.statistics().luasockets == 6
        if runtime.engine == "Lua 5.4":  # (LuaJIT's tables have no __gc)
            await lua(runtime, "collectgarbage() collectgarbage()")
            await lua(runtime, "return 1")  # (closed when the next job ends)
            assert runtime.statistics().luasockets == 1
    assert runtime.statistics().luasockets == 0


async def test_connect_timeout_then_select_for_writing(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, SERVER, engine=engine) as runtime:
        port = tcp_port(runtime)
        result = await lua(
            runtime,
            f"local c = socket.tcp() c:settimeout(0) "
            f"local ok, err = c:connect('127.0.0.1', {port}) "
            "local _, w = socket.select(nil, { c }, 2) "
            f"local again = c:connect('127.0.0.1', {port}) "  # (says how it went)
            "return tostring(ok), tostring(err), w[c] ~= nil, again, (c:getpeername())",
        )
        # (on loopback the connect may finish at once: 1, or "timeout" then writable)
        assert result[0] in (b"1.0", b"nil")
        assert result[1] in (b"nil", b"timeout")
        assert result[2:] == (True, 1.0, b"127.0.0.1")


async def test_select_refuses_what_is_no_socket(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, SERVER, engine=engine) as runtime:
        code = "return select(2, pcall(function() local r = socket.select(%s) return r end))"
        message = await lua(runtime, code % "{ 1 }, nil, 0")
        assert b"bad argument #1 to 'select' (socket expected at index 1, got number)" in message
        assert message.startswith(b"test:1: ")  # (the application's line, as LuaSocket's)
        message = await lua(runtime, code % "'x'")
        assert b"bad argument #1 to 'select'" in message
        # (through pcall itself the function has no name, as with LuaSocket's C functions)
        message = await lua(runtime, "return select(2, pcall(socket.select, 'x'))")
        assert b"bad argument #1 to '?'" in message


async def test_a_wait_where_lua_cannot_wait_is_a_clear_error(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, SERVER, engine=engine) as runtime:
        message = await lua(
            runtime,
            "local ok, err = pcall(table.sort, { 2, 1 }, function(a, b) "
            "socket.sleep(0) return a < b end) return err",
        )
        assert b"'socket.sleep' has to wait" in message


async def test_hot_reload_stops_the_old_accept_loop_and_starts_the_new(
    tmp_path: Path, engine: str
) -> None:
    loop = ACCEPT_LOOP.replace('socket.bind("127.0.0.1", 0)', 'socket.bind("127.0.0.1", PORT)')
    async with running(tmp_path, "", trio_mona__reload_interval="0.05", engine=engine) as runtime:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        main = tmp_path / "apps" / "main.lua"
        main.write_text(f"PORT = {port}\n" + loop)
        with trio.fail_after(5):
            while True:
                try:
                    stream = await connect(port)
                    break
                except OSError:
                    await trio.sleep(0.02)
            await stream.send_all(b"one\n")
            assert await receive_exactly(stream, 4) == b"one\n"
            # the new version replies in capitals; the old loop and its sockets are gone
            main.write_text(
                f"PORT = {port}\n" + loop.replace('line .. "\\n"', 'line:upper() .. "\\n"')
            )
            while True:
                await trio.sleep(0.05)
                try:
                    other = await connect(port)
                except OSError:
                    continue
                await other.send_all(b"two\n")
                reply = await receive_exactly(other, 4)
                await other.aclose()
                if reply == b"TWO\n":
                    break
        # the old connection was closed with its application
        with trio.fail_after(2):
            assert await stream.receive_some(10) == b""
        # the new listener only (the last client's socket closes as its loop ends)
        await wait_until(lambda: runtime.statistics().luasockets == 1)


async def test_data_that_comes_while_the_coroutine_is_busy_between_receives(
    tmp_path: Path, engine: str
) -> None:
    # After each answer the next receive's wait is handed out ahead (docs: lua/luasocket,
    # "Speed"); what arrives before the coroutine parks on it, or when it asks with
    # another pattern or a timeout instead, must still reach it, in order.
    app = (
        SERVER
        + """
    got = {}
    coroutine.wrap(function()
      local conn = server:accept()
      while true do
        local line, err = conn:receive()
        if not line then got[#got + 1] = "end:" .. err break end
        got[#got + 1] = line
        if line == "sleep" then socket.sleep(0.1) end
        if line == "count" then got[#got + 1] = conn:receive(3) end
        if line == "timeout" then conn:settimeout(1) end
      end
    end)()
    """
    )
    async with running(tmp_path, app, engine=engine) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"sleep\n")
        # the coroutine sleeps (0.1 s) with the next wait handed out: "a" comes meanwhile
        await lua_until(runtime, "return got[1] == 'sleep'", limit=2)
        await stream.send_all(b"a\n")
        await lua_until(runtime, "return got[2] == 'a'", limit=2)  # (nothing else came)
        await stream.send_all(b"count\n")
        await lua_until(runtime, "return got[3] == 'count'", limit=2)  # (in receive(3))
        await stream.send_all(b"xyz")
        await lua_until(runtime, "return got[4] == 'xyz'", limit=2)
        await stream.send_all(b"timeout\nb\n")
        await lua_until(runtime, "return got[6] == 'b'", limit=2)
        await stream.send_all(b"c\n")
        await stream.aclose()
        await lua_until(runtime, "return got[#got] and got[#got]:sub(1, 4) == 'end:'")
        seen = await lua(runtime, "return table.concat(got, ',')")
        assert seen == b"sleep,a,count,xyz,timeout,b,c,end:closed"


async def test_dns_functions_go_through_trios_resolver(tmp_path: Path, engine: str) -> None:
    class Resolver(trio.abc.HostnameResolver):
        async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
            if host != b"box.test":
                raise socket.gaierror(socket.EAI_NONAME, "unknown")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.9", 0))]

        async def getnameinfo(self, sockaddr, flags):  # type: ignore[no-untyped-def]
            if sockaddr[0] != "127.0.0.9":
                raise socket.gaierror(socket.EAI_NONAME, "unknown")
            return ("box.test", str(sockaddr[1]))

    previous = trio.socket.set_custom_hostname_resolver(Resolver())
    try:
        async with running(tmp_path, SERVER, engine=engine) as runtime:
            ip, resolved = await lua(
                runtime,
                "local ip, r = socket.dns.toip('box.test') return ip, r.name .. ' ' .. r.ip[1]",
            )
            assert (ip, resolved) == (b"127.0.0.9", b"box.test 127.0.0.9")
            assert await lua(runtime, "return (socket.dns.tohostname('127.0.0.9'))") == b"box.test"
            assert (
                await lua(
                    runtime,
                    "local names, service = socket.dns.getnameinfo('127.0.0.9', 80) "
                    "return names[1] .. ' ' .. service",
                )
                == b"box.test 80"
            )
            assert await lua(
                runtime,
                "local t = socket.dns.getaddrinfo('box.test') return t[1].addr, t[1].family",
            ) == (b"127.0.0.9", b"inet")
            assert await lua(runtime, "return select(2, socket.dns.toip('gone.test'))") == (
                b"host not found"
            )
            assert await lua(runtime, "return type(socket.dns.gethostname())") == b"string"
    finally:
        trio.socket.set_custom_hostname_resolver(previous)


async def test_sources_sinks_and_the_small_methods(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, SERVER, engine=engine) as runtime:
        port = tcp_port(runtime)
        result = await lua(
            runtime,
            f"local c = socket.connect('127.0.0.1', {port}) local s = server:accept() "
            "local sink = socket.sink('close-when-done', c) sink('0123456789') sink(nil) "
            "local src = socket.source('by-length', s, 6) local a = src() "
            "local dirty = s:dirty() "  # (the rest was read with the first part)
            "local rest = s:receive('*a') "
            "return a, tostring(dirty), rest, s:getfd() > 0, c:getfd(), s:setfd(3)",
        )
        assert result[:5] == (b"012345", b"true", b"6789", True, -1.0)


async def test_a_socket_closed_between_two_receives(tmp_path: Path, engine: str) -> None:
    # (the second receive would park on the wait handed out with the first answer)
    app = (
        SERVER
        + """
    coroutine.wrap(function()
      conn = server:accept()
      first = conn:receive()
      socket.sleep(0.1)
      second = { conn:receive() }
    end)()
    """
    )
    async with running(tmp_path, app, engine=engine) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"one\n")
        await lua_until(runtime, "return first == 'one'")
        await lua(runtime, "conn:close()")
        with trio.fail_after(2):
            await lua_until(runtime, "return second ~= nil")
        assert await lua(runtime, "return second[1], second[2]") == (None, b"closed")
        await stream.aclose()


async def test_a_line_that_never_ends_is_bounded_and_the_others_are_served(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The stock example: it ends a connection whose receive fails ("line too long").
    limit = 65536
    settings = {"luasocket_echo.port": "0", "trio_mona.luasocket_max_buffer": str(limit)}
    async with trio_mona.open_runtime(LUASOCKET_ECHO, settings=settings, engine=engine) as runtime:
        port = runtime.bound_addresses[0].port
        flood, bystander = await connect(port), await connect(port)
        chunk, sent, cap = b"x" * 65536, 0, 256 * 1024 * 1024
        with trio.fail_after(20):
            try:
                while sent < cap:  # (no newline, ever)
                    await flood.send_all(chunk)
                    sent += len(chunk)
            except trio.BrokenResourceError:
                pass
            await bystander.send_all(b"still here\n")
            assert await receive_exactly(bystander, 11) == b"still here\n"
        assert sent < cap  # the server closed the connection
        # (it read at most the limit and one more read before it gave up on the line)
        assert runtime.statistics().bytes_received <= limit + 2 * 65536 + 11
        assert any("luasocket_echo: line too long" in m for m in messages(caplog))


async def test_receive_past_the_bound_fails_without_reading_it(tmp_path: Path) -> None:
    async with running(tmp_path, SERVER, trio_mona__luasocket_max_buffer="4096") as runtime:
        port = tcp_port(runtime)
        await lua(runtime, "coroutine.wrap(function() conn = server:accept() end)()")
        stream = await connect(port)
        await lua_until(runtime, "return conn ~= nil")
        assert await lua(runtime, "return conn:receive(5000)") == (None, b"receive too large", b"")
        await stream.send_all(b"y" * 5000)
        await lua(runtime, "conn:settimeout(2)")
        answer = await lua(runtime, "local a, b, c = conn:receive('*a') return a, b, #c")
        assert answer == (None, b"receive too large", 5000)  # (the bound and one read)
        await stream.aclose()


HOSTILE = """
local socket = require "socket"
local values = { 65536, -1, 1e300, 0/0, 2^63, "12345678901234567890", 1/0, -1/0 }
internal = {}
for _, v in ipairs(values) do
  local calls = {
    bind = function() return socket.tcp():bind("127.0.0.1", v) end,
    connect = function() local s = socket.tcp(); s:settimeout(0.01); return s:connect("127.0.0.1", v) end,
    listen = function() local s = socket.tcp(); s:bind("127.0.0.1", 0); return s:listen(v) end,
    sendto = function() return socket.udp():sendto("x", "127.0.0.1", v) end,
    settimeout = function() return socket.tcp():settimeout(v) end,
    receive = function() local s = socket.udp(); s:settimeout(0); return s:receive(v) end,
    getnameinfo = function() return socket.dns.getnameinfo("127.0.0.1", v) end,
    setstats = function() return socket.tcp():setstats(v, v, tonumber(v) or 0) end,
    gettime = function() return socket.gettime(v) end,
  }
  for name, call in pairs(calls) do
    local ok, err = pcall(call)
    if not ok and tostring(err):find("internal error") then
      internal[#internal + 1] = name .. "(" .. tostring(v) .. "): " .. tostring(err)
    end
  end
end
"""


async def test_hostile_numbers_get_luasockets_failures_never_internal_errors(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    # (ports 65536, -1, 1e300 and NaN, a backlog or a size of 1e300: internal errors)
    async with running(tmp_path, HOSTILE, engine=engine) as runtime:
        assert await lua(runtime, "return table.concat(internal, '; ')") == b""
    assert not [r for r in caplog.records if r.exc_info]
