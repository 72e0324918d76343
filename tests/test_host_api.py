"""The host API (docs/embedding.rst): Runtime.expose / mona.host and Runtime.call,
over real applications."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

import trio_mona

from .helpers import connect, lua, receive_exactly, tcp_port, write_app

pytestmark = pytest.mark.trio

APP = """
function add(a, b) return a + b, "sum" end
function fails() error("boom") end
function echo(...) return ... end
function nothing() end
function returns_function() return print end
function doubled_slowly(n) return mona.host.slow(n) * 2 end
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data) self:send(data) end
end
server:start("127.0.0.1", 0)
"""


async def slow(n: int) -> int:
    await trio.sleep(0.05)
    return n + 1


def start(tmp_path: Path, engine: str = "lua54", source: str = APP, **expose: Any) -> Any:
    folder = write_app(tmp_path / "apps", source)
    return trio_mona.open_runtime(
        folder, engine=engine, data=":memory:", expose={"slow": slow, **expose}
    )


async def test_values_cross_with_their_types(tmp_path: Path, engine: str) -> None:
    seen: list[tuple[object, ...]] = []

    def record(*args: object) -> tuple[object, ...]:
        seen.append(args)
        return args

    async with start(tmp_path, engine, record=record) as runtime:
        found = await lua(
            runtime,
            "return mona.host.record(nil, true, 7, 2.5, 'text', {1, 2, {x = 'y'}}, {}, {[2] = 'b'})",
        )
    assert seen == [(None, True, 7, 2.5, "text", [1, 2, {"x": "y"}], [], {2: "b"})]
    assert found[:5] == (None, True, 7, 2.5, b"text")
    integral = 3.0 if engine == "lua54" else 3  # (LuaJIT has no integers: an integral float is one)
    async with start(tmp_path, engine, record=record) as runtime:
        await lua(runtime, "mona.host.record(3.0)")
    assert seen[-1] == (integral,)
    assert type(seen[-1][0]) is type(integral)


async def test_strings_as_bytes_when_declared(tmp_path: Path) -> None:
    async with start(tmp_path) as runtime:
        runtime.expose("raw", lambda data: (type(data).__name__, data), text=False)
        assert await lua(runtime, "return mona.host.raw('\\255\\0')") == (b"bytes", b"\xff\x00")
        ok, error = await lua(runtime, "return pcall(mona.host.slow, '\\255')")
    assert ok is False
    assert b"argument #1 to 'mona.host.slow' is not UTF-8 text" in error


async def test_results_tuple_none_and_nested(tmp_path: Path) -> None:
    exposed: dict[str, Any] = {
        "many": lambda: (1, "two", [3]),
        "none": lambda: None,
        "nested": lambda: {"list": [1, {"a": b"b"}], "big": 2**62, "pi": math.pi},
    }
    async with start(tmp_path, **exposed) as runtime:
        assert await lua(runtime, "local a, b, c = mona.host.many() return a, b, c[1]") == (
            1,
            b"two",
            3,
        )
        assert await lua(runtime, "return select('#', mona.host.none()), mona.host.none()") == (
            1,
            None,
        )
        code = "local t = mona.host.nested() return t.list[2].a, t.big, t.pi"
        assert await lua(runtime, code) == (b"b", 2**62, math.pi)


async def test_an_exception_is_a_lua_error_with_its_text(tmp_path: Path) -> None:
    def refuse(name: str) -> None:
        raise PermissionError(f"{name} may not do that")

    async def refuse_later() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyError("missing")

    async with start(tmp_path, refuse=refuse, refuse_later=refuse_later) as runtime:
        assert await lua(runtime, "return pcall(mona.host.refuse, 'bob')") == (
            False,
            b"bob may not do that",
        )
        assert await lua(runtime, "return pcall(mona.host.refuse_later)") == (False, b"'missing'")
        ok, error = await lua(runtime, "return pcall(function() mona.host.refuse('x') end)")
        assert ok is False
        assert error.startswith(b"test:1: x may not do that")  # (at the caller's line)


@pytest.mark.parametrize(
    ("argument", "why"),
    [
        ("print", "argument #1 to 'mona.host.slow' is a function, which has no Python form"),
        ("coroutine.create(print)", "argument #1 to 'mona.host.slow' is a"),
        ("cyclic", "argument #1 to 'mona.host.slow'['self'] is cyclic"),
        ("{[{}] = 1}", "has a table as a key"),
    ],
)
async def test_lua_values_with_no_python_form_are_a_lua_error(
    tmp_path: Path, argument: str, why: str
) -> None:
    async with start(tmp_path) as runtime:
        code = f"local cyclic = {{}} cyclic.self = cyclic return pcall(mona.host.slow, {argument})"
        ok, error = await lua(runtime, code)
    assert ok is False
    assert why in error.decode()


@pytest.mark.parametrize(
    ("value", "why"),
    [({1, 2}, "is a set"), (object(), "is a object"), ([1, {"k": 2**70}], "beyond 64 bits")],
)
async def test_python_values_with_no_lua_form_are_a_lua_error(
    tmp_path: Path, value: object, why: str
) -> None:
    async with start(tmp_path, give=lambda: value) as runtime:
        ok, error = await lua(runtime, "return pcall(mona.host.give)")
    assert ok is False
    assert why in error.decode()
    assert b"what mona.host.give returned" in error


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def unprintable() -> None:
    raise Unprintable


async def test_no_python_object_reaches_lua_whatever_the_host_returns(
    tmp_path: Path, engine: str
) -> None:
    """An int beyond 64 bits, an exception whose text fails, more values than a Lua
    call can return: each a Lua string error (lupa handed Lua a Python object for
    each, and with it the metatable every Python object shares)."""
    exposed: dict[str, Any] = {
        "huge": lambda: 2**70,
        "unprintable": unprintable,
        "too_many": lambda: tuple(range(600_000)),
    }
    async with start(tmp_path, engine, **exposed) as runtime:
        for name, why in [
            ("huge", b"what mona.host.huge returned is an integer beyond 64 bits"),
            ("unprintable", b"Unprintable"),
            ("too_many", b"mona.host.too_many returned 600000 values, more than one Lua call"),
        ]:
            code = f"local ok, e = pcall(mona.host.{name}) return ok, type(e), e"
            ok, kind, error = await lua(runtime, code)
            assert (ok, kind) == (False, b"string"), name
            assert error.startswith(why), error


async def test_an_async_function_suspends_only_its_caller(tmp_path: Path) -> None:
    release, entered = trio.Event(), trio.Event()

    async def held() -> str:
        entered.set()
        await release.wait()
        return "released"

    source = APP + "function wait_held() result = mona.host.held() end"
    async with start(tmp_path, source=source, held=held) as runtime:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runtime.call, "/", "wait_held")
            await entered.wait()
            stream = await connect(tcp_port(runtime))
            with trio.fail_after(10):  # (served while the call waits)
                for _ in range(20):
                    await stream.send_all(b"ping")
                    assert await receive_exactly(stream, 4) == b"ping"
            assert not release.is_set()
            assert await lua(runtime, "return result") is None
            release.set()
        assert await lua(runtime, "return result") == b"released"
        await stream.aclose()


async def test_a_pending_async_function_is_cancelled_at_shutdown(tmp_path: Path) -> None:
    cancelled, waiting = trio.Event(), trio.Event()

    async def forever() -> None:
        waiting.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    source = APP + "function start_forever() mona.host.forever() end"
    with trio.fail_after(5):
        async with (
            trio.open_nursery() as nursery,
            start(tmp_path, source=source, forever=forever) as runtime,
        ):
            nursery.start_soon(_expect_stopped, runtime)
            await waiting.wait()  # (the runtime stops while the call waits)
    assert cancelled.is_set()


async def _expect_stopped(runtime: trio_mona.Runtime) -> None:
    with pytest.raises(RuntimeError, match="the runtime stopped"):
        await runtime.call("/", "start_forever")


async def test_call_returns_results_and_may_wait(tmp_path: Path, engine: str) -> None:
    async with start(tmp_path, engine) as runtime:
        assert await runtime.call("/", "add", 2, 3) == (5, "sum")
        assert await runtime.call("", "echo", None, "s", b"b", [1, {"a": True}]) == (
            None,
            "s",
            "b",
            [1, {"a": True}],
        )
        assert await runtime.call("/", "echo", "x", text=False) == b"x"
        assert await runtime.call("/", "nothing") is None
        assert await runtime.call("/", "doubled_slowly", 4) == 10


async def test_call_failures_are_clear(tmp_path: Path) -> None:
    write_app(tmp_path / "apps" / "down", "error('cannot start')")
    async with start(tmp_path) as runtime:
        with pytest.raises(trio_mona.LuaError, match=r"main\.lua:3: boom") as raised:
            await runtime.call("/", "fails")
        assert "stack traceback" in raised.value.traceback
        with pytest.raises(LookupError, match="no application at '/missing'"):
            await runtime.call("/missing", "add")
        with pytest.raises(LookupError, match="the application '/down' is not running"):
            await runtime.call("/down", "add")
        with pytest.raises(LookupError, match="'/' has no function 'nope' \\(its global is nil\\)"):
            await runtime.call("/", "nope")
        with pytest.raises(LookupError, match="its global is table"):
            await runtime.call("/", "server")
        with pytest.raises(TypeError, match="argument #1 to 'echo' is a set"):
            await runtime.call("/", "echo", {1})
        with pytest.raises(trio_mona.LuaError, match="is a function, which has no Python form"):
            await runtime.call("/", "returns_function")
    with pytest.raises(RuntimeError, match="the runtime is not running"):
        await runtime.call("/", "add", 1, 2)


async def test_exposed_before_the_applications_load(tmp_path: Path) -> None:
    source = "started_with = mona.host.version()"
    async with start(tmp_path, source=source, version=lambda: "1.2") as runtime:
        assert await lua(runtime, "return started_with") == b"1.2"


async def test_names_are_checked(tmp_path: Path) -> None:
    async with start(tmp_path) as runtime:
        for bad in ("not-a-name", "end", "", "9x"):
            with pytest.raises(ValueError, match="a name is a Lua identifier"):
                runtime.expose(bad, print)
        with pytest.raises(ValueError, match=r"mona.host.slow exists already"):
            runtime.expose("slow", print)
        with pytest.raises(TypeError, match="is not callable"):
            runtime.expose("thing", 42)
        ok, error = await lua(runtime, "return pcall(function() mona.host.slow = print end)")
        assert ok is False
        assert b"'slow' is read-only on mona.host" in error
        assert await lua(runtime, "return mona.host ~= nil and mona.configs ~= nil") is True
