"""The application tree: inheritance, lifecycle, timers, reload, utilities."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_mona
from trio_mona import Runtime, testing

from .helpers import (
    connect,
    lua,
    lua_until,
    messages,
    receive_until_closed,
    tcp_port,
    wait_for_log,
    wait_until,
    write_app,
)

APPS = Path(__file__).resolve().parent.parent / "lua_apps"


def tree(root: Path, files: dict[str, str]) -> Path:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


@asynccontextmanager
async def run_tree(root: Path, **settings: str) -> AsyncIterator[Runtime]:
    overrides = {"trio_mona.reload_interval": "0", **settings}
    async with trio_mona.open_runtime(root, settings=overrides) as runtime:
        yield runtime


async def in_app(runtime: Runtime, path: str, code: str) -> Any:
    """Evaluate *code* in the environment of the application at *path*."""
    return await testing.run_lua(runtime, code, app=path)


THREE_LEVELS = {
    "main.lua": """
        shared = "root value"
        order = {}
        function whoami() return "root function" end
        function onStart(p) order[#order + 1] = "start " .. p end
        function onStop(p) NOTE("stop '", p, "'") end
    """,
    "a/main.lua": """
        level = "a"
        function whoami() return "a function" end
    """,
    "a/b/main.lua": """
        level = "b"
        from_parent = super.level
    """,
}


async def test_three_level_tree_inheritance_and_navigation(tmp_path: Path) -> None:
    async with run_tree(tree(tmp_path, THREE_LEVELS)) as runtime:
        assert await in_app(runtime, "/a/b", "return shared") == b"root value"
        assert await in_app(runtime, "/a/b", "return whoami()") == b"a function"
        assert await in_app(runtime, "/a/b", "return from_parent") == b"a"
        assert await in_app(runtime, "/a/b", "return super.super.whoami()") == b"root function"
        assert await in_app(runtime, "/a/b", "return name, path") == (b"b", b"/a/b")
        assert await in_app(runtime, "", "return name, path, super") == (b"", b"", None)
        assert await in_app(runtime, "/a/b", "return this.level") == b"b"
        # children: by name as a global, through `children`, and children("a/b")
        assert await in_app(runtime, "", "return a.level, a.b.level") == (b"a", b"b")
        assert await in_app(runtime, "", "return children.a.level") == b"a"
        assert await in_app(runtime, "", "return children('a/b').level") == b"b"
        assert await in_app(runtime, "", "return children('a/nope')") is None
        assert await in_app(runtime, "/a", "return children('b') == b") is True
        message = await in_app(
            runtime, "", "local ok, e = pcall(function() children.x = 1 end) return e"
        )
        assert b"read-only" in message
        message = await in_app(
            runtime, "/a", "local ok, e = pcall(function() super = 1 end) return e"
        )
        assert b"'super' is read-only" in message
        # overriding and removing an override
        assert await in_app(runtime, "/a", "shared = 'mine' return shared") == b"mine"
        assert await in_app(runtime, "/a/b", "return shared") == b"mine"
        assert await in_app(runtime, "/a", "shared = nil return shared") == b"root value"
        # inherited onStart ran for every application, parents first
        order = await in_app(runtime, "", "return table.concat(order, ',')")
        assert order == b"start ,start /a,start /a/b"


async def test_on_stop_children_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with run_tree(tree(tmp_path, THREE_LEVELS)):
        pass
    stops = [m for m in messages(caplog) if m.startswith("stop ")]
    assert stops == ["stop '/a/b'", "stop '/a'", "stop ''"]


async def test_on_manage_and_timers(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    app = """
    managed, fired, stopped, once = 0, 0, 0, 0
    function onManage() managed = managed + 1 end
    mona:setTimer(function() fired = fired + 1 return 100 end, 50)
    mona:setTimer(function() stopped = stopped + 1 if stopped < 3 then return 10 end end, 10)
    mona.setTimer(function() once = once + 1 return 0 end, 200)
    """
    async with run_tree(write_app(tmp_path / "apps", app)) as runtime:
        start = trio.current_time()
        await trio.sleep(1.0 - (trio.current_time() - start) + 0.001)
        assert await lua(runtime, "return fired") == 10  # at 50, 150, ..., 950 ms
        assert await lua(runtime, "return stopped") == 3
        assert await lua(runtime, "return once") == 1
        assert await lua(runtime, "return managed") == 0
        await trio.sleep(1.5)
        assert await lua(runtime, "return managed") == 1  # at 2 s
        await trio.sleep(2.0)
        assert await lua(runtime, "return managed") == 2
    async with run_tree(
        write_app(tmp_path / "fast", app), **{"trio_mona.manage_interval": "0.5"}
    ) as runtime:
        await trio.sleep(1.6)
        assert await lua(runtime, "return managed") == 3


async def test_event_and_timer_errors_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    app = """
    function onStart() error("in onStart") end
    function onManage() error("in onManage") end
    function onStop() error("in onStop") end
    calls = 0
    mona:setTimer(function() calls = calls + 1 error("in timer") end, 10)
    """
    async with run_tree(write_app(tmp_path / "apps", app)) as runtime:
        await trio.sleep(2.5)
        assert await lua(runtime, "return calls") == 1  # a failing timer stops
    logged = "\n".join(messages(caplog, logging.ERROR))
    for what in ("onStart failed", "onManage failed", "onStop failed", "timer failed"):
        assert what in logged
    assert "main.lua:2: in onStart" in logged


@pytest.mark.parametrize("engine", ["lua54", "luajit21"])
async def test_children_asked_for_early_load_then(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = tree(
        tmp_path,
        {
            "main.lua": """
                started = {}
                function onStart(p) started[#started + 1] = p end
                greeting = "from root"
                local sub = children("sub")
                early = sub and sub.value
                same = children.sub == sub
                local deep = children("sub/deep")
                deep_value = deep and deep.value
                broken = children("broken")
                broken_again = children.broken
                missing = children("nothing")
            """,
            "sub/main.lua": """
                super.sub_loads = (super.sub_loads or 0) + 1
                value = 42
                inherited = greeting
            """,
            "sub/deep/main.lua": "value = 7",
            "broken/main.lua": "error('boom')",
        },
    )
    async with run_tree(root, **{"trio_mona.engine": engine}) as runtime:
        assert await in_app(runtime, "", "return early, same, deep_value") == (42, True, 7)
        assert await in_app(runtime, "", "return broken, broken_again, missing") == (
            None,
            None,
            None,
        )
        assert await in_app(runtime, "", "return sub_loads") == 1
        assert await in_app(runtime, "/sub", "return inherited") == b"from root"
        await lua_until(runtime, "return #started >= 3")  # (the root's globals)
        started = await in_app(runtime, "", "return table.concat(started, ',')")
        assert sorted(started.decode().split(",")) == ["", "/sub", "/sub/deep"]
        failures = [m for m in messages(caplog) if "'/broken' failed to load" in m]
        assert len(failures) == 1
        assert "boom" in failures[0]


async def test_require_dofile_loadfile(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tree(
        tmp_path,
        {
            "main.lua": "",
            "common.lua": "return { origin = 'root folder' }",
            "lib/util.lua": "return { twice = function(x) return 2 * x end }",
            "child/main.lua": """
                local common = require("common")
                local again = require("common.lua")
                same = common == again
                origin = common.origin
                local util = require("lib.util")
                doubled = util.twice(21)
                local own = require("own")
                own_value = own.value
                dofile("setup.lua")
                chunk = loadfile("setup.lua")
                missing = select(2, pcall(require, "no_such_module"))
                bad_dofile = select(2, pcall(dofile, "no_such_file.lua"))
                missing_loadfile = select(2, loadfile("no_such_file.lua"))
            """,
            "child/own.lua": "return { value = path }",
            "child/setup.lua": "setup_ran = (setup_ran or 0) + 1",
        },
    )
    async with run_tree(root) as runtime:
        assert await in_app(runtime, "/child", "return same, origin") == (True, b"root folder")
        assert await in_app(runtime, "/child", "return doubled") == 42
        assert await in_app(runtime, "/child", "return own_value") == b"/child"
        assert await in_app(runtime, "/child", "chunk() return setup_ran") == 2
        missing = await in_app(runtime, "/child", "return missing")
        assert b"module 'no_such_module' not found" in missing
        assert b"cannot open no_such_file.lua" in await in_app(
            runtime, "/child", "return bad_dofile"
        )
        assert b"cannot open" in await in_app(runtime, "/child", "return missing_loadfile")
        # a standard module still comes from the usual Lua paths
        assert await in_app(runtime, "", "return type(require('string'))") == b"table"


async def test_failing_child_is_logged_and_the_rest_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tree(
        tmp_path,
        {
            "main.lua": "ok = true",
            "bad/main.lua": "x = = 1",
            "bad/below/main.lua": "below = true",
            "good/main.lua": "good = true",
        },
    )
    async with run_tree(root) as runtime:
        assert await in_app(runtime, "/good", "return good") is True
        down = runtime.statistics().applications_down
        assert "/bad" in down
        assert "/bad/below" in down  # its parent is down
        assert await in_app(runtime, "", "return bad") is None
    errors = messages(caplog, logging.ERROR)
    assert any("application '/bad' failed to load" in m and "bad/main.lua:1:" in m for m in errors)


SERVER = """
NOTE("{tag} starting")
server = mona:createTCPServer()
function server:onConnection(client)
  client:send("{tag}")
  client:disconnect()
end
assert(server:start("127.0.0.1", {port}))
function onStop(p) NOTE("{tag} stopping") end
"""


async def ask(port: int) -> bytes:
    stream = await connect(port)
    with trio.fail_after(5):
        return await receive_until_closed(stream)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rewrite(path: Path, source: str) -> None:
    """Write *source* so that its stamp changes even within one mtime tick."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(source)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


@pytest.mark.parametrize("where", ["", "/child"])
async def test_reload_rebinds_the_same_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    port, other = free_port(), free_port()
    files = {
        "main.lua": SERVER.format(tag="root-v1", port=port if where == "" else other),
        "child/main.lua": SERVER.format(tag="child-v1", port=port if where else other),
    }
    root = tree(tmp_path, files)
    target = root / where.strip("/") / "main.lua"
    async with run_tree(root, **{"trio_mona.reload_interval": "0.05"}):
        version = "root" if where == "" else "child"
        assert await ask(port) == f"{version}-v1".encode()
        rewrite(target, SERVER.format(tag=f"{version}-v2", port=port))
        with trio.fail_after(2):
            while (answer := await ask_or_none(port)) != f"{version}-v2".encode():
                await trio.sleep(0.02)
        assert answer == f"{version}-v2".encode()
        assert f"{version}-v1 stopping" in messages(caplog)
        # A root reload restarts its children too; a child reload leaves the root alone.
        child_restarted = messages(caplog).count("child-v1 starting") == 2
        assert child_restarted == (where == "")
        assert messages(caplog).count("root-v1 starting") == 1


async def ask_or_none(port: int) -> bytes | None:
    try:
        return await ask(port)
    except OSError:
        return None


async def test_broken_reload_then_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    root = tree(tmp_path, {"main.lua": "", "svc/main.lua": SERVER.format(tag="v1", port=port)})
    main = root / "svc" / "main.lua"
    async with run_tree(root, **{"trio_mona.reload_interval": "0.05"}) as runtime:
        assert await ask(port) == b"v1"
        rewrite(main, "this is not lua")
        await wait_for_log(caplog, "application '/svc' failed to load")
        record = next(r for r in caplog.records if "'/svc' failed to load" in r.getMessage())
        assert "svc/main.lua:1:" in record.getMessage()
        assert "/svc" in runtime.statistics().applications_down
        assert await ask_or_none(port) is None  # down: its server closed
        assert await in_app(runtime, "", "return svc") is None
        rewrite(main, SERVER.format(tag="v3", port=port))
        await wait_until(lambda: "/svc" in runtime.statistics().applications, 3)
        assert await ask(port) == b"v3"


async def test_delete_and_add_applications(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    root = tree(tmp_path, {"main.lua": "", "gone/main.lua": SERVER.format(tag="gone", port=port)})
    async with run_tree(root, **{"trio_mona.reload_interval": "0.05"}) as runtime:
        assert await ask(port) == b"gone"
        (root / "gone" / "main.lua").unlink()
        await wait_for_log(caplog, "application '/gone' removed")
        assert "gone stopping" in messages(caplog)
        assert await ask_or_none(port) is None
        assert (
            "/gone"
            not in runtime.statistics().applications + runtime.statistics().applications_down
        )
        assert await in_app(runtime, "", "return gone") is None
        new = root / "new" / "deeper"
        new.mkdir(parents=True)
        (new / "main.lua").write_text(SERVER.format(tag="new", port=port))
        await wait_for_log(caplog, "loading new application '/new/deeper'")
        with trio.fail_after(5):
            while await ask_or_none(port) != b"new":
                await trio.sleep(0.02)
        assert await in_app(runtime, "", "return new.deeper.name") == b"deeper"
        assert await in_app(runtime, "", "return children('new/deeper').path") == b"/new/deeper"


async def test_utilities(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tree(tmp_path, {"main.lua": "", "files/a.txt": "hello", "files/sub/b": ""})
    async with run_tree(root) as runtime:
        absolute = await lua(runtime, "return mona:absolutePath(path)")
        assert absolute == os.fsencode(root.resolve()) + b"/"
        assert (
            await lua(runtime, "return mona:absolutePath('/x/y')")
            == os.fsencode(root.resolve() / "x" / "y") + b"/"
        )
        split = "return mona:split({0})"
        cases = {
            "'a,b,,c', ','": (b"a", b"b", b"", b"c"),
            "'a,b,,c', ',', 1": (b"a", b"b", b"c"),
            "' a , b ,, c ', ',', 2": (b"a", b"b", b"", b"c"),
            "' a , b ,, c ', ',', 3": (b"a", b"b", b"c"),
            "'a--b', '--'": (b"a", b"b"),
            "'a.b', '.'": (b"a", b"b"),
            "'abc', ','": b"abc",
            "'', ','": b"",
            "'abc', ''": b"abc",
        }
        for arguments, expected in cases.items():
            assert await lua(runtime, split.format(arguments)) == expected, arguments
        assert await lua(runtime, "return select('#', mona:split(',', ',', 1))") == 0
        digests = await lua(runtime, "return mona:md5('abc', '')")
        assert digests == (hashlib.md5(b"abc").digest(), hashlib.md5(b"").digest())
        assert await lua(runtime, "return mona:sha256('abc')") == hashlib.sha256(b"abc").digest()
        now = await lua(runtime, "return mona:time()")
        assert abs(now - time.time() * 1000) < 5000
        assert await lua(runtime, "return math.type(mona:time())") == b"integer"
        await lua(runtime, "mona:dump('hello\\0world, more than sixteen bytes', 7)")
        dump = next(m for m in messages(caplog) if m.startswith("dump of 7 bytes"))
        assert "68 65 6c 6c 6f 00 77" in dump
        assert "hello.w" in dump
        files = await lua(
            runtime,
            """
            local out = {}
            for _, f in ipairs(mona:listPaths('files')) do
              out[#out + 1] = table.concat({f.name, f.baseName, f.extension, tostring(f.size),
                tostring(f.isFolder), f.parent, f.value, type(f.lastModified)}, '|')
            end
            return table.concat(out, '\\n')
            """,
        )
        folder = str((root / "files").resolve())
        assert files.decode().splitlines() == [
            f"a.txt|a|txt|5|false|{folder}/|{folder}/a.txt|number",
            f"sub|sub||0|true|{folder}/|{folder}/sub/|number",
        ]
        missing = await lua(runtime, "return mona:listPaths('nope')")
        assert missing[0] is None
        assert b"cannot list 'nope'" in missing[1]
        assert any("listPaths: cannot list 'nope'" in m for m in messages(caplog, logging.WARNING))
        message = await lua(
            runtime,
            "local f = mona:listPaths('files')[1] local ok, e = pcall(function() f.size = 1 end) return e",
        )
        assert b"read-only on File" in message
        for bad in (
            "mona:split(1, ',')",
            "mona:setTimer('x', 5)",
            "mona:dump({})",
            "mona:listPaths()",
        ):
            error = await lua(runtime, f"local ok, e = pcall(function() {bad} end) return e")
            assert error is not None
            assert b"bad argument" in error, bad


async def test_included_file_deleted_while_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tree(
        tmp_path,
        {
            "main.lua": """
                server = mona:createTCPServer()
                function server:onConnection(client)
                  local ok, err = pcall(dofile, "reply.lua")
                  if not ok then ERROR(err) end
                  client:send(reply)
                  client:disconnect()
                end
                server:start("127.0.0.1", 0)
            """,
            "reply.lua": "reply = 'included'",
        },
    )
    async with run_tree(root) as runtime:
        port = tcp_port(runtime)
        assert await ask(port) == b"included"
        (root / "reply.lua").unlink()
        assert await ask(port) == b"included"  # the old value; the error is logged
        await wait_for_log(caplog, "cannot open reply.lua")


@pytest.mark.parametrize("sandbox", ["false", "true"])
async def test_tree_example(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock, sandbox: str
) -> None:
    greeter, status = free_port(), free_port()
    settings = {
        "tree.greeter_port": str(greeter),
        "tree.status_port": str(status),
        "trio_mona.sandbox": sandbox,
    }
    async with run_tree(APPS / "tree", **settings) as runtime:
        assert "tree: started /greeter" in messages(caplog)
        assert f"tree: the greeter answers on port {greeter}" in messages(caplog)
        stream = await connect(greeter)
        await stream.send_all(b"ann\r\nbob\n")
        data = b""
        with trio.fail_after(5):
            while data.count(b"\n") < 2:
                data += await stream.receive_some(1000)
        assert data == b"hello ann from /greeter (tree 1.0)\nhello bob from /greeter (tree 1.0)\n"
        await stream.aclose()
        await trio.sleep(4.5)
        answer = await ask(status)
        # (the autojump clock also jumps while the sockets wait, so only lower bounds)
        found = re.fullmatch(
            rb"/status \(tree 1.0\): ticks=(\d+) managed=(\d+) applications=greeter,status\n",
            answer,
        )
        assert found is not None, answer
        ticks, managed = int(found[1]), int(found[2])
        assert ticks >= 4
        assert managed >= 2
        assert "" in runtime.statistics().applications
    assert messages(caplog).index("tree: stopping /status") < messages(caplog).index(
        "tree: stopping /"
    )


@pytest.mark.parametrize("engine", ["lua54", "luajit21"])
async def test_failures_are_reported_with_a_file_and_line(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A root reload left broken is logged; errors raised without a position (level 0,
    not a string) are placed at the application frame of their traceback."""
    root = tree(
        tmp_path,
        {
            "main.lua": "x = 1\n",
            "nopos/main.lua": "local function f()\n  error('no position', 0)\nend\nf()\n",
            "table/main.lua": "\n\nerror({ code = 1 })\n",
        },
    )
    settings = {"trio_mona.reload_interval": "0.05", "trio_mona.engine": engine}
    async with run_tree(root, **settings):
        for app, line in (("nopos", 2), ("table", 3)):
            record = next(
                r
                for r in caplog.records
                if r.name == f"trio_mona.app.{app}" and "main chunk failed" in r.getMessage()
            )
            assert (record.filename, record.lineno) == ("main.lua", line), app
        rewrite(root / "main.lua", "this is not lua")
        await wait_for_log(caplog, "application '/' failed to load")
        assert "main.lua:1:" in next(m for m in messages(caplog) if "'/' failed to load" in m)
