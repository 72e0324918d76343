"""The Lua side: the onData rest rule, argument checks, logging, addresses, safety."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from .helpers import (
    ENGINES,
    SPINNER,
    connect,
    lua,
    lua_until,
    messages,
    receive_exactly,
    running,
    tcp_port,
    wait_for_log,
)

FRAMING = """
-- One message per call: "len:payload" frames, parsed with the rest rule.
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data)
    local header = data:match("^(%d+):")
    if not header then return #data end           -- keep everything: need more
    local need = #header + 1 + tonumber(header)
    if #data < need then return #data end          -- keep everything: need more
    self:send("[" .. data:sub(#header + 2, need) .. "]")
    return #data - need                            -- re-called at once with the rest
  end
end
server:start("127.0.0.1", 0)
"""


@pytest.mark.parametrize("engine", ENGINES)
async def test_rest_rule_framing_over_tcp(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, FRAMING, engine=engine) as runtime:
        stream = await connect(tcp_port(runtime))
        # Three messages in one packet, then one split across packets.
        await stream.send_all(b"3:abc5:hello1:x")
        assert await receive_exactly(stream, 15) == b"[abc][hello][x]"
        await stream.send_all(b"10:01234")
        await stream.send_all(b"56789")
        assert await receive_exactly(stream, 12) == b"[0123456789]"
        await stream.send_all(b"2")
        await stream.send_all(b":ok")
        assert await receive_exactly(stream, 4) == b"[ok]"


@pytest.mark.parametrize("engine", ENGINES)
async def test_framing_many_messages_in_one_buffer_in_order(tmp_path: Path, engine: str) -> None:
    """Messages from 1 byte to 5,000 (past the re-call window), 200,000 of them in a
    few buffers (past the job budget, so onData goes on at later turns): every one is
    parsed once, in order, and fast."""
    app = FRAMING.replace(
        'self:send("[" .. data:sub(#header + 2, need) .. "]")',
        "count = count + 1 sizes = sizes + tonumber(header)",
    ).replace(
        "server = mona:createTCPServer()", "count, sizes = 0, 0 server = mona:createTCPServer()"
    )
    sizes = [1 + (i * 7919) % 5000 if i % 1000 == 0 else 1 + i % 3 for i in range(200_000)]
    payload = b"".join(b"%d:%s" % (n, b"x" * n) for n in sizes)
    async with running(tmp_path, app, engine=engine) as runtime:
        stream = await connect(tcp_port(runtime))
        start = trio.current_time()
        await stream.send_all(payload)
        await lua_until(runtime, f"return count >= {len(sizes)}", 20)
        elapsed = trio.current_time() - start
        assert await lua(runtime, "return count, sizes") == (len(sizes), sum(sizes))
        assert elapsed < 5  # measured ~0.5 s; quadratic copying took minutes


async def test_wrong_argument_types_raise_lua_errors(tmp_path: Path) -> None:
    app = """
    client = mona:createTCPClient()
    server = mona:createTCPServer()
    function try(f) local ok, err = pcall(f) return err end
    """
    async with running(tmp_path, app) as runtime:
        cases = {
            "client:connect({})": "bad argument #1 to 'connect' (address expected, got table)",
            "client:connect('127.0.0.1', {})": "bad argument #2 to 'connect' (port expected, got table)",
            "client:connect(true)": "bad argument #1 to 'connect' (address expected, got boolean)",
            "client:send({})": "bad argument #1 to 'send' (string expected, got table)",
            "client:send()": "bad argument #1 to 'send' (string expected, got nil)",
            "client.send('x')": "bad self to 'send' (TCPClient expected, got string",
            "server:start(true)": "bad argument #1 to 'start' (address expected, got boolean)",
            "server:start(client)": "bad argument #1 to 'start' (address expected, got TCPClient)",
            "server.stop()": "bad self to 'stop' (TCPServer expected, got nil",
            "client:connect(server)": "bad argument #1 to 'connect' (address expected, got TCPServer)",
            "mona:createIPAddress(5)": "bad argument #1 to 'createIPAddress' (string expected, got number)",
            "mona:createSocketAddress({})": "bad argument #1 to 'createSocketAddress'",
            "client.connected = false": "'connected' is read-only on TCPClient",
            "server.running = 1": "'running' is read-only on TCPServer",
            "client.send = nil": "'send' is read-only on TCPClient",
            "mona.configs = 1": "'configs' is read-only on mona",
        }
        for code, expected in cases.items():
            message = await lua(runtime, f"return try(function() {code} end)")
            assert message is not None, code
            assert expected in message.decode(), (code, message)
            # The error points at the caller's line, not at the runtime's Lua.
            assert b"trio_mona/" not in message, code
        # The runtime goes on: a number is a valid payload (Lua converts it).
        assert await lua(runtime, "return client:send(42)") == b"socket not connected"
        assert await lua(runtime, "return client.nick") is None
        await lua(runtime, "client.nick = 'bob'")
        assert await lua(runtime, "return client.nick") == b"bob"


@pytest.mark.parametrize("engine", ENGINES)
async def test_logging_functions(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    addr = mona:createSocketAddress("127.0.0.1:80")
    FATAL("fatal ", 1)
    CRITIC("critic")
    ERROR("error ", nil, " ", true)
    WARN("warn ", {1, 2, x = "y"})
    NOTE("note ", addr)
    INFO("info ", 1.5)
    DEBUG("debug")
    TRACE("trace")
    print("printed", 42, nil)
    INFO("nested ", {a = {b = {c = {d = {}}}}})
    """
    async with running(tmp_path, app, engine=engine):
        pass
    records = {r.getMessage(): r for r in caplog.records if r.name == "trio_mona.app"}
    expected = {
        "fatal 1": logging.CRITICAL,
        "critic": logging.CRITICAL,
        "error nil true": logging.ERROR,
        "warn {1, 2, x=y}": logging.WARNING,
        "note 127.0.0.1:80": 25,
        "info 1.5": logging.INFO,
        "debug": logging.DEBUG,
        "trace": 5,
        "printed\t42\tnil": logging.INFO,
        "nested {a={b={c={...}}}}": logging.INFO,
    }
    for text, level in expected.items():
        assert text in records, (text, list(records))
        assert records[text].levelno == level
        assert records[text].filename == "main.lua"
    assert records["fatal 1"].lineno == 3
    assert records["printed\t42\tnil"].lineno == 11
    assert logging.getLevelName(25) == "NOTE"


async def test_log_level_threshold(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with running(tmp_path, "INFO('hidden') WARN('shown')"):
        pass
    assert "shown" in messages(caplog)
    assert "hidden" not in messages(caplog)


async def test_mona_functions_with_colon_or_dot(tmp_path: Path) -> None:
    async with running(tmp_path, "") as runtime:
        assert await lua(runtime, "return mona.createIPAddress('1.2.3.4').value") == b"1.2.3.4"
        assert await lua(runtime, "return mona:createIPAddress('1.2.3.4').value") == b"1.2.3.4"
        assert await lua(runtime, "return getmetatable(mona.createTCPClient())") == b"TCPClient"
        assert await lua(runtime, "return getmetatable(mona:createTCPServer())") == b"TCPServer"


@pytest.mark.parametrize("engine", ENGINES)
async def test_address_objects(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:

        async def ev(code: str) -> object:
            return await lua(runtime, "return " + code)

        assert await ev("mona:createSocketAddress('[::1]:80').value") == b"[::1]:80"
        assert await ev("mona:createSocketAddress('::1', 80).port") == 80
        assert await ev("mona:createSocketAddress('::1', 'http').port") == 80
        assert await ev("mona:createSocketAddress(1234).value") == b"0.0.0.0:1234"
        assert await ev("mona:createSocketAddress(mona:createIPAddress('::1'), 9).value") == (
            b"[::1]:9"
        )
        assert await ev("mona:createSocketAddress('1.2.3.4:5').host.value") == b"1.2.3.4"
        assert await ev("mona:createSocketAddress('1.2.3.4:5').isIPv6") is False
        assert await ev("mona:createIPAddress('::FFFF:1.2.3.4').value") == b"::ffff:1.2.3.4"
        assert await ev("mona:createIPAddress('fe80::1').isLinkLocal") is True
        assert await ev("mona:createIPAddress('10.0.0.1').isSiteLocal") is True
        assert await ev("tostring(mona:createIPAddress('10.0.0.1'))") == b"10.0.0.1"
        assert await ev("'from ' .. mona:createSocketAddress('1.2.3.4:5')") == b"from 1.2.3.4:5"
        assert await ev("mona:createSocketAddress('1.2.3.4:5') .. '!'") == b"1.2.3.4:5!"
        assert await ev("mona:createIPAddress('1.2.3.4') == mona:createIPAddress('1.2.3.4')")
        assert not await ev("mona:createIPAddress('1.2.3.4') == mona:createIPAddress('1.2.3.5')")
        assert not await ev("mona:createIPAddress('1.2.3.4') == '1.2.3.4'")
        assert await ev("mona:createIPAddress('1.2.3.4') < mona:createIPAddress('1.2.3.5')")
        assert await ev("mona:createIPAddress('9.9.9.9') < mona:createIPAddress('::1')")
        assert await ev(
            "mona:createSocketAddress('1.1.1.1:1') <= mona:createSocketAddress('1.1.1.1:1')"
        )
        assert await ev(
            "mona:createSocketAddress('1.1.1.1:2') > mona:createSocketAddress('1.1.1.1:1')"
        )
        sorted_values = await lua(
            runtime,
            """
            local t = {mona:createSocketAddress('[::1]:1'), mona:createSocketAddress('2.0.0.0:1'),
                       mona:createSocketAddress('1.0.0.0:2'), mona:createSocketAddress('1.0.0.0:1')}
            table.sort(t)
            local out = {}
            for i, a in ipairs(t) do out[i] = a.value end
            return table.concat(out, ' ')
            """,
        )
        assert sorted_values == b"1.0.0.0:1 1.0.0.0:2 2.0.0.0:1 [::1]:1"
        message = await lua(
            runtime,
            "local ok, e = pcall(function() local a = mona:createIPAddress('1.2.3.4'); a.value = 1 end) return e",
        )
        assert b"read-only" in message


async def test_address_factory_failures(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, "") as runtime:
        assert await lua(runtime, "local a = mona:createIPAddress('nope') return a") is None
        await wait_for_log(caplog, "invalid IP address 'nope'")
        record = next(r for r in caplog.records if "invalid IP address 'nope'" in r.getMessage())
        assert record.levelno == logging.WARNING
        assert (record.filename, record.lineno) == ("test", 1)  # the calling chunk
        got = await lua(
            runtime,
            "local got; local a = mona:createSocketAddress(function(e) got = e end, '1.2.3.4:') "
            "return a, got",
        )
        assert got[0] is None
        assert b"missing port" in got[1]
        got = await lua(
            runtime,
            "local got; local a = mona:createIPAddress(function(e) got = e end, '1.2.3.4x') return got",
        )
        assert b"invalid IP address" in got
        assert await lua(runtime, "return mona:createSocketAddress('host.test:80')") is None


@pytest.mark.parametrize("engine", ENGINES)
async def test_lua_cannot_reach_python(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:

        async def probe(code: str) -> object:
            """What *code* returns, or b"error" when it raises."""
            return await lua(
                runtime,
                f"local ok, r = pcall(function() {code} end) if ok then return r end return 'error'",
            )

        assert await lua(runtime, "return python") is None
        assert await lua(runtime, "return package.loaded.python") is None
        assert await probe("return require('python')") == b"error"
        assert await lua(runtime, "return debug.getregistry") is None
        assert await lua(runtime, "return debug.setmetatable") is None
        assert await lua(runtime, "return debug.sethook") is None
        assert await lua(runtime, "return debug.getupvalue") is None
        assert await lua(runtime, "return package.loaded.debug.getregistry") is None
        assert await lua(runtime, "return type(debug.traceback)") == b"function"
        # Handles are plain tables: nothing Python-side to walk.
        assert await probe("return mona:createTCPClient().__class__") is None
        assert await probe("return mona:createTCPClient().send.__globals__") in (None, b"error")
        assert await probe("return mona.createTCPClient.__globals__") in (None, b"error")
        assert (
            await lua(
                runtime,
                "local n = 0 for k in pairs(mona:createTCPClient()) do n = n + 1 end return n",
            )
            == 0
        )
        assert (
            await lua(runtime, "return getmetatable(mona:createIPAddress('1.1.1.1'))")
            == b"IPAddress"
        )
        assert await lua(
            runtime, "return debug.getmetatable(mona:createIPAddress('1.1.1.1')) ~= nil"
        )


@pytest.mark.parametrize("engine", ENGINES)
async def test_lua51_names_work_on_both_engines(tmp_path: Path, engine: str) -> None:
    app = """
    local a, b = unpack({1, 2})
    local c = table.unpack({3})
    local f = loadstring("return 4")
    result = a + b + c + f() + math.pow(2, 3) + table.getn({1, 2, 3})
    """
    async with running(tmp_path, app, engine=engine) as runtime:
        assert await lua(runtime, "return result") == 21
        assert runtime.engine.startswith("LuaJIT" if engine == "luajit21" else "Lua 5.4")


@pytest.mark.parametrize("mode", ["false", "true"])
@pytest.mark.parametrize("engine", ENGINES)
async def test_lua51_and_52_shims_on_both_engines(tmp_path: Path, engine: str, mode: str) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "greeter.lua").write_text(
        "module('greeter', package.seeall)\n"
        "function hello(who) return string.format('hello %s', who) end\n"
    )
    app = """
    local g = require("greeter")
    hello = g.hello("you")
    same = greeter == g and g._NAME == "greeter" and g._M == g
    packed = table.pack(1, nil, 3)
    count = select("#", table.unpack({ 1, 2, 3 })) + select("#", unpack({ 4, 5 }))
    words = {}
    for w in string.gfind("a b c", "%a") do words[#words + 1] = w end
    loaded = load("return 5", "=named chunk")() + loadstring("return 6", "other")()
    loaded_env = load("answer = 1")() == nil and answer == 1
    misc = table.getn({ 1, 2 }) + math.pow(2, 3) + table.maxn({ [7] = true }) + math.log10(100)
    """
    async with running(tmp_path, app, engine=engine, trio_mona__sandbox=mode) as runtime:
        assert await lua(runtime, "return hello, same") == (b"hello you", True)
        assert await lua(runtime, "return packed.n, packed[3], count") == (3, 3, 5)
        # (# counts to the last value as on Lua 5.4; LuaJIT's {...} stopped at the hole)
        lengths = "return #table.pack(1, nil, 3), #table.pack(nil, nil, 3), #table.pack(1, 2, nil)"
        assert await lua(runtime, lengths) == (3, 3, 2)
        assert await lua(runtime, "return table.concat(words)") == b"abc"
        assert await lua(runtime, "return loaded, loaded_env") == (11, True)
        assert await lua(runtime, "return misc") == 19


async def test_runaway_handler_is_stopped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, SPINNER, trio_mona__handler_timeout="0.2") as runtime:
        port = tcp_port(runtime)
        spinner, other = await connect(port), await connect(port)
        await spinner.send_all(b"spin")
        await wait_for_log(caplog, "handler ran for more than 0.2 s")
        record = next(r for r in caplog.records if "ran for more than" in r.getMessage())
        assert record.levelno == logging.ERROR
        assert record.filename == "main.lua"
        await other.send_all(b"fine")
        assert await receive_exactly(other, 4) == b"fine"
        await spinner.send_all(b"again")
        assert await receive_exactly(spinner, 5) == b"again"


@pytest.mark.parametrize(
    "spin",
    [
        "coroutine.wrap(function() while true do end end)()",
        "local co = coroutine.create(function() while true do end end) coroutine.resume(co)",
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, debug.traceback) end",
        "while true do local ok = pcall(error, 'x') end",
    ],
)
async def test_runaway_bound_cannot_be_escaped(
    tmp_path: Path, spin: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = f"""
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(data)
        if data == "spin" then {spin} end
        self:send(data)
      end
    end
    server:start("127.0.0.1", 0)
    """
    async with running(tmp_path, app, trio_mona__handler_timeout="0.2") as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"spin")
        await wait_for_log(caplog, "handler ran for more than 0.2 s")
        await stream.send_all(b"after")
        assert await receive_exactly(stream, 5) == b"after"
        assert await lua(runtime, "return (pcall(error, 'caught again'))") is False


async def test_memory_cap_is_a_logged_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    hoard = {}
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(data)
        if data == "hoard" then
          for i = 1, 1e9 do hoard[i] = string.rep("x", 1024 * 1024) .. i end
        end
        hoard = {}
        collectgarbage()
        self:send(data)
      end
    end
    server:start("127.0.0.1", 0)
    """
    limit = str(64 * 1024 * 1024)
    async with running(tmp_path, app, trio_mona__max_memory=limit) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"hoard")
        await wait_for_log(caplog, "not enough memory")
        record = next(r for r in caplog.records if "not enough memory" in r.getMessage())
        assert (record.filename, record.lineno) == ("main.lua", 5)  # where onData is defined
        await lua(runtime, "hoard = {} collectgarbage()")
        await stream.send_all(b"after")
        assert await receive_exactly(stream, 5) == b"after"
        assert runtime.statistics().lua_memory < 64 * 1024 * 1024


@pytest.mark.parametrize("engine", ENGINES)
async def test_sandbox_mode(tmp_path: Path, engine: str) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "helper.lua").write_text("return { ok = true }")
    async with running(tmp_path, "", engine=engine, trio_mona__sandbox="true") as runtime:

        async def probe(code: str) -> object:
            return await lua(
                runtime,
                f"local ok, r = pcall(function() {code} end) if ok then return r end return 'error: ' .. tostring(r)",
            )

        assert await probe("return io") is None
        assert await probe("return os.execute") is None
        assert await probe("return os.getenv") is None
        assert await probe("return type(os.time())") == b"number"
        assert await probe("return package.loadlib") is None
        assert await probe("return require('helper').ok") is True
        assert await probe("return type(require('string'))") == b"table"
        # the runtime's own LuaSocket is there; a C module of the system is not
        assert await probe("return require('socket')._VERSION") == b"LuaSocket 3.0.0"
        refused = await probe("return require('lfs')")
        assert isinstance(refused, bytes)
        assert b"sandbox" in refused
        binary = await probe("return select(2, load('\\27Lua' .. string.rep('x', 32)))")
        assert isinstance(binary, bytes)
        assert b"binary" in binary or b"mode" in binary  # Lua 5.4 or LuaJIT wording
        assert await probe("return load('return 7')()") == 7
        # the application's own sockets still work
        assert await probe("return getmetatable(mona:createTCPServer())") == b"TCPServer"
    async with running(tmp_path, "") as runtime:
        assert await lua(runtime, "return type(io.open)") == b"function"
