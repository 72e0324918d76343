"""Escape attempts: the ways an application might reach Python, leave the sandbox,
break the runtime for others, or crash it. A regression suite, run on both engines in
both modes: every probe must come back refused (docs: lua/safety)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from .helpers import ENGINES, lua, running, wait_for_log, write_app

MODES = ["normal", "sandbox"]

#: Each probe is the body of a Lua function that returns true when the escape worked.
#: Errors count as refused (the message itself is checked elsewhere).
EVERY_MODE: dict[str, str] = {
    "require ffi": "local ok, m = pcall(require, 'ffi') return ok and type(m) == 'table'",
    "package.preload.ffi": "return package.preload.ffi ~= nil",
    "package.loaded.ffi": "return package.loaded.ffi ~= nil",
    "require jit.util": "local ok, m = pcall(require, 'jit.util') return ok and m ~= nil",
    "require jit.profile": "local ok, m = pcall(require, 'jit.profile') return ok and m ~= nil",
    "jit.attach": "return jit ~= nil and jit.attach ~= nil",
    "python global": "return python ~= nil or package.loaded.python ~= nil",
    "debug internals": """
        if not debug then return false end
        return debug.getregistry or debug.getupvalue or debug.setupvalue or debug.sethook
          or debug.setmetatable or debug.getlocal or debug.upvalueid or debug.setlocal
    """,
    "runtime functions from debug.getinfo": """
        if not debug then return false end
        for _, thread in ipairs({ false, coroutine.running() }) do
          for level = 0, 40 do
            local info
            if thread then info = debug.getinfo(thread, level, 'fS')
            else info = debug.getinfo(level, 'fS') end
            if info and info.func and info.source:sub(1, 11) == '=trio_mona/' then
              return true
            end
          end
        end
        return false
    """,
    "binary chunk through load": """
        local dump = string.dump or function() return '\\27Lua' .. ('x'):rep(40) end
        local f = load(dump(function() return 1 end))
        return type(f) == 'function'
    """,
    "binary chunk through loadstring": """
        local dump = string.dump or function() return '\\27Lua' .. ('x'):rep(40) end
        return type(loadstring(dump(function() return 1 end))) == 'function'
    """,
    "binary chunk through the real globals": """
        local g = package.loaded._G
        if not g or not string.dump then return false end
        return type(g.load(string.dump(function() return 1 end))) == 'function'
    """,
    "binary module from package.path": """
        if not io or not string.dump then return false end
        local dir = os.tmpname()
        os.remove(dir)
        local f = io.open(dir .. '.lua', 'wb')
        f:write(string.dump(function() return 'bytecode ran' end))
        f:close()
        package.path = dir:match('^(.*)/') .. '/?.lua;' .. package.path
        local ok, value = pcall(require, dir:match('([^/]*)$'))
        os.remove(dir .. '.lua')
        return ok and value == 'bytecode ran'
    """,
    "rawset on an address": """
        local a = mona:createIPAddress('1.2.3.4')
        pcall(rawset, a, 'value', '9.9.9.9')
        return a.value ~= '1.2.3.4'
    """,
    "rawset on a socket address": """
        local a = mona:createSocketAddress('1.2.3.4:80')
        pcall(rawset, a, 'port', 1)
        return a.port ~= 80
    """,
    "rawset on mona": """
        pcall(rawset, mona, 'createTCPServer', 1)
        return mona.createTCPServer == 1
    """,
    "rawset on a socket": """
        local c = mona:createTCPClient()
        pcall(rawset, c, 'send', 1)
        pcall(rawset, c, 'connected', 1)
        return c.send == 1 or c.connected == 1
    """,
    "rawset on children": "pcall(rawset, children, 'x', 1) return children.x == 1",
    "setmetatable on an address": (
        "return (pcall(setmetatable, mona:createIPAddress('1.2.3.4'), nil))"
    ),
    "metatable of an object": (
        "return type(getmetatable(mona:createTCPClient())) == 'table'"
        " or type(getmetatable(mona)) == 'table'"
    ),
}

SANDBOX_ONLY: dict[str, str] = {
    "io": "return io ~= nil",
    "debug": "return debug ~= nil",
    "os.execute": "return os.execute ~= nil or os.getenv ~= nil or os.exit ~= nil",
    "os.remove": "return os.remove ~= nil or os.rename ~= nil or os.tmpname ~= nil",
    "require io": "local ok, m = pcall(require, 'io') return ok and m.open ~= nil",
    "require os": "local ok, m = pcall(require, 'os') return ok and m.execute ~= nil",
    "require debug": "local ok, m = pcall(require, 'debug') return ok and m.sethook ~= nil",
    "require package": """
        local ok, m = pcall(require, 'package')
        return ok and (m.loadlib ~= nil or m.loaded.io ~= nil or m.loaded._G ~= nil)
    """,
    "package.loaded.io/os": (
        "return package.loaded.io ~= nil or (package.loaded.os or {}).execute ~= nil"
    ),
    "package.loaded._G": "return package.loaded._G ~= nil",
    "package.loadlib": "return package.loadlib ~= nil or package.searchers ~= nil",
    "load sees the real globals": "local f = load('return io') return f and f() ~= nil",
    "loadstring sees the real globals": (
        "local f = loadstring('return os.execute') return f and f() ~= nil"
    ),
    "getfenv": "return getfenv ~= nil and getfenv(0) ~= _G",
    "_G is the application's": "return _G.io ~= nil or _G.os.execute ~= nil",
    "mona.environment": "return next(mona.environment) ~= nil",
    "listPaths outside": "return mona:listPaths('../../../../../../etc') ~= nil",
    "listPaths absolute": "return mona:listPaths('/../../../../../../etc') ~= nil",
    "dofile absolute": "pcall(dofile, OUTSIDE) return escaped == true",
    "loadfile absolute": "return loadfile(OUTSIDE) ~= nil",
    "dofile ../": "pcall(dofile, '../outside.lua') return escaped == true",
    "require ../": "pcall(require, '../outside') return escaped == true",
    "require through a symbolic link": "pcall(require, 'link') return escaped == true",
    "dofile through a symbolic link": "pcall(dofile, 'link.lua') return escaped == true",
    "syntax errors leak outside files": """
        local ok, err = pcall(dofile, SECRET)
        return not ok and tostring(err):find('TOPSECRET') ~= nil
    """,
    # last: in a runtime without the fix these break every later probe
    "string table writable": """
        pcall(function() string.gsub = nil end)
        return string.gsub == nil
    """,
    "string table through rawset": """
        pcall(rawset, string, 'upper', 1)
        return ('x').upper == 1
    """,
    "string metatable": """
        local mt = getmetatable('')
        if type(mt) ~= 'table' then return false end
        pcall(function() mt.__index = { rep = 1 } end)
        return ('x').rep == 1
    """,
    "string methods through the metatable's __index": """
        local mt = getmetatable('')
        if type(mt) ~= 'table' then return false end
        pcall(function() mt.__index.rep = 1 end)
        return ('x').rep == 1
    """,
    "table library writable": "pcall(function() table.insert = 1 end) return table.insert == 1",
}


def _layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """apps/ with a symbolic link to a file outside it, the outside file, a secret."""
    apps = tmp_path / "apps"
    write_app(apps, "")
    outside = tmp_path / "outside.lua"
    outside.write_text("escaped = true return true")
    secret = tmp_path / "secret.txt"
    secret.write_text("x TOPSECRET\n")
    os.symlink(outside, apps / "link.lua")
    return apps, outside, secret


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", ENGINES)
async def test_every_escape_is_refused(tmp_path: Path, engine: str, mode: str) -> None:
    _, outside, secret = _layout(tmp_path)
    probes = dict(EVERY_MODE)
    if mode == "sandbox":
        probes.update(SANDBOX_ONLY)
    settings = {"trio_mona__sandbox": "true"} if mode == "sandbox" else {}
    os.environ.setdefault("TRIO_MONA_TEST_VARIABLE", "1")
    async with running(tmp_path, "", engine=engine, **settings) as runtime:
        await lua(runtime, f"OUTSIDE, SECRET = {str(outside)!r}, {str(secret)!r}")
        escaped = []
        for name, body in probes.items():
            result = await lua(
                runtime,
                f"local ok, r = pcall(function() {body} end) return ok and r and true or false",
            )
            if result is not False:
                escaped.append(name)
        assert escaped == [], "; ".join(escaped)


@pytest.mark.parametrize("engine", ENGINES)
async def test_unsafe_native_lets_the_operator_opt_in(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine, trio_mona__unsafe_native="true") as runtime:
        assert await lua(runtime, "return type(load(string.dump(function() return 5 end)))") == (
            b"function"
        )
        if engine == "luajit21":
            assert await lua(runtime, "return type(require('ffi').cdef)") == b"function"
    async with running(
        tmp_path, "", engine=engine, trio_mona__unsafe_native="true", trio_mona__sandbox="true"
    ) as runtime:  # sandbox mode wins
        assert await lua(runtime, "return (pcall(require, 'ffi'))") is False


@pytest.mark.parametrize("engine", ENGINES)
async def test_sandbox_environment_allow_list(tmp_path: Path, engine: str) -> None:
    os.environ["TRIO_MONA_ALLOWED"] = "yes"
    os.environ["TRIO_MONA_HIDDEN"] = "no"
    async with running(
        tmp_path,
        "",
        engine=engine,
        trio_mona__sandbox="true",
        trio_mona__sandbox_environment="TRIO_MONA_ALLOWED, NOT_SET_ANYWHERE",
    ) as runtime:
        assert await lua(runtime, "return mona.environment.TRIO_MONA_ALLOWED") == b"yes"
        assert await lua(runtime, "return mona.environment.TRIO_MONA_HIDDEN") is None
        assert await lua(runtime, "return mona.environment.NOT_SET_ANYWHERE") is None


@pytest.mark.parametrize("engine", ENGINES)
async def test_sandbox_still_reads_its_own_files(tmp_path: Path, engine: str) -> None:
    apps = tmp_path / "apps"
    write_app(apps / "lib", "return { answer = 42 }", name="util.lua")
    write_app(apps / "child", "from_child = require('lib.util').answer")
    write_app(apps, "")
    async with running(tmp_path, "", engine=engine, trio_mona__sandbox="true") as runtime:
        assert await lua(runtime, "return require('lib.util').answer") == 42
        assert await lua(runtime, "return dofile(mona:absolutePath() .. 'lib/util.lua').answer")
        assert await lua(runtime, "return children.child.from_child") == 42
        listed = await lua(runtime, "return #mona:listPaths('lib')")
        assert listed == 1
        assert await lua(runtime, "return type(string.format)") == b"function"
        assert await lua(runtime, "local n = 0 for _ in pairs(string) do n = n + 1 end return n")


@pytest.mark.parametrize("engine", ENGINES)
async def test_runtime_coroutines_cannot_be_driven_by_applications(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    saved = coroutine.running()      -- the main chunk runs in a runtime coroutine
    mona:setTimer(function()
      resumed = { pcall(coroutine.resume, saved, function() return {} end) }
      if coroutine.close then closed = { pcall(coroutine.close, saved) } end
      return 0
    end, 1)
    mona:setTimer(function() coroutine.yield({}, {}) end, 5)
    mona:setTimer(function() return {} end, 5)
    """
    async with running(tmp_path, app, engine=engine) as runtime:
        await wait_for_log(caplog, "outside a suspending call")
        assert await lua(runtime, "return resumed[1]") is False
        assert b"belongs to the runtime" in await lua(runtime, "return resumed[2]")
        if engine == "lua54":
            assert await lua(runtime, "return closed[1]") is False
        # still serving: a handler runs and answers
        assert await lua(runtime, "return mona:time() > 0") is True


@pytest.mark.parametrize("engine", ENGINES)
async def test_replaced_standard_functions_do_not_break_the_runtime(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    for _, name in ipairs({ "gsub", "match", "format", "sub", "find", "gmatch", "rep" }) do
      string[name] = function() error("replaced") end
    end
    table.concat = function() error("replaced") end
    table.remove = function() error("replaced") end
    local G = package.loaded._G
    for _, name in ipairs({ "ipairs", "pairs", "tostring", "tonumber", "select", "xpcall" }) do
      G[name] = function() error("replaced") end
    end
    mona:setTimer(function() error("my own failure") end, 1)
    """
    async with running(tmp_path, app, engine=engine):
        await wait_for_log(caplog, "my own failure")
        record = next(r for r in caplog.records if "my own failure" in r.getMessage())
        assert record.filename == "main.lua"
        assert record.lineno == 11


#: Lua that fails, or takes a method's failure return, on bad input. Each line is
#: evaluated inside a pcall; what it raises or returns must be a plain Lua string (or
#: nil/false), free of any host-language text.
BAD_INPUT = [
    "return addr .. {}",
    "return {} .. addr",
    "return addr .. nil",
    "return addr .. true",
    "return addr .. print",
    "return saddr .. {}",
    "return addr .. mona:createTCPClient()",
    "return addr < {}",
    "return addr <= 1",
    "return {} < saddr",
    "return addr[{}]",
    "return addr[0/0]",
    "addr.value = 1",
    "saddr.host = 1",
    "mona.createTCPClient = 1",
    "children.x = 1",
    "return tostring(mona:createTCPServer()) .. tostring(mona:createUDPSocket())",
    "return mona.createTCPClient().send({}, 'x')",
    "return mona.createTCPClient():connect({})",
    "return mona:dump('abc', 0/0)",
    "return mona:dump('abc', 1/0)",
    "return mona:dump('abc', -1)",
    "return mona:createTCPServer():start('127.0.0.1', 'ht\\0tp')",
    "return mona:createTCPServer():start(1e300)",
    "return mona:createTCPClient():connect('127.0.0.1:' .. ('9'):rep(5000))",
    "return mona:createTCPClient():connect('127.0.0.1', 0/0)",
    "return mona:createUDPSocket():send('x', '127.0.0.1', 'ht\\0tp')",
    "return mona:createUDPSocket():bind('0.0.0.0', -1)",
    "return mona:createSocketAddress('127.0.0.1:' .. ('1'):rep(5000))",
    "return mona:createSocketAddress('127.0.0.1', 'ht\\0tp')",
    "return mona:createIPAddress(('1'):rep(5000))",
    "return mona:createIPAddress('\\0')",
    "return mona:md5({})",
    "return mona:split(1, {})",
    "return select(2, mona:listPaths('\\0'))",
    "return mona:addToBlacklist('\\0', {})",
    "return require('\\0')",
    "return dofile('\\0')",
    "return select(2, loadfile('\\0'))",
    "return children('\\0')",
    "return mona:setTimer(0/0, 0/0)",
    "return mona:createTCPClient():send(('x'):rep(10))",
]

#: What would show that a Python error or object crossed into Lua.
HOST_TEXT = (
    "Error:",
    "NoneType",
    "has no attribute",
    "Traceback",
    ".py",
    "<Lua ",
    "python",
    "lupa",
    "bytes",
    "embedded null",
    "object",
    "b'",
)


@pytest.mark.parametrize("engine", ENGINES)
async def test_errors_are_lua_strings_without_host_text(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        await lua(
            runtime,
            "addr, saddr = mona:createIPAddress('1.2.3.4'), mona:createSocketAddress('1.2.3.4:5')",
        )
        seen = []
        for code in BAD_INPUT:
            kind, value = await lua(
                runtime,
                f"local r = {{ pcall(function() {code} end) }}"
                " local v = r[1] and r[2] or r[2]"
                " if type(v) == 'string' or v == nil or type(v) == 'boolean' then"
                "   return type(v), v end"
                " return type(v), tostring(v)",
            )
            assert kind in (b"string", b"nil", b"boolean"), (code, kind, value)
            if isinstance(value, bytes):
                text = value.decode("utf-8", "replace")
                assert not any(marker in text for marker in HOST_TEXT), (code, text)
                seen.append(text)
        assert any("attempt to concatenate a table value" in t for t in seen)
        assert any("attempt to concatenate a nil value" in t for t in seen)
    assert not [m for m in caplog.messages if "internal error" in m]


@pytest.mark.parametrize("engine", ENGINES)
async def test_bad_values_take_the_documented_failure_return(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        assert await lua(runtime, "return mona:dump('abc', 0/0)") is None
        assert "dump of 3 bytes" in caplog.messages[-1]
        assert (
            await lua(runtime, "return mona:createTCPServer():start('127.0.0.1', 'ht\\0tp')")
            is False
        )
        assert "invalid port 'ht\\x00tp'" in caplog.messages[-1]
        refused = await lua(
            runtime, "return mona:createTCPClient():connect('127.0.0.1:' .. ('9'):rep(5000))"
        )
        assert refused.startswith(b"port 9999")
        assert refused.endswith(b"out of range 0-65535")
        assert len(refused) < 100
        assert b"invalid port" in await lua(
            runtime, "return mona:createUDPSocket():send('x', '127.0.0.1', 'ht\\0tp')"
        )
        code = "local a = mona:createSocketAddress('127.0.0.1:' .. ('1'):rep(5000)) return a"
        assert await lua(runtime, code) is None
        assert "out of range" in caplog.messages[-1]
        record = caplog.records[-1]
        assert record.levelno == logging.WARNING
        assert record.filename == "test"


@pytest.mark.parametrize("engine", ENGINES)
async def test_sandbox_bounds_pattern_matching(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine, trio_mona__sandbox="true") as runtime:
        refused = await lua(
            runtime,
            "local ok, e = pcall(function() return ('a'):rep(16):find(('a*'):rep(16) .. 'b') end)"
            " return e",
        )
        assert b"pattern too complex for a subject of 16 bytes: 16 repetitions" in refused
        assert await lua(runtime, "return #(('x'):rep(5000)):match('^%s*(.-)%s*$')") == 5000
        assert await lua(runtime, "return ('12:abc'):match('^(%d+):')") == b"12"
        assert await lua(runtime, "return ('a*b'):find('a*b', 1, true)") == (1, 3)
        assert await lua(runtime, "return (string.gsub('a-b-c', '%-', '+'))") == b"a+b+c"
        assert (
            await lua(
                runtime, "local n = 0 for w in ('a b c'):gmatch('%a+') do n = n + 1 end return n"
            )
            == 3
        )
