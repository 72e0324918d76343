"""The conversions of the ``mona`` object (docs/lua/conversions.rst): JSON and query
strings, every rule over a real runtime on both engines, and round trips of generated
values (Hypothesis)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .helpers import (
    ThreadedRuntime,
    connect,
    lua,
    lua_literal,
    lua_until,
    messages,
    running,
    tcp_port,
)


# -- JSON: writing --------------------------------------------------------------------
async def test_to_json_wraps_its_arguments_in_one_array(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        assert await lua(runtime, 'return mona:toJSON(1, "a", {x=1})') == b'[1,"a",{"x":1}]'
        assert await lua(runtime, "return mona:toJSON()") == b"[]"
        assert await lua(runtime, "return mona:toJSON({})") == b"[[]]"
        assert await lua(runtime, "return mona:toJSON({{}})") == b"[[[]]]"
        # nil kept in position, also at the end of the arguments
        assert await lua(runtime, "return mona:toJSON(1, nil, 2, nil)") == b"[1,null,2,null]"
        assert await lua(runtime, "return mona.toJSON(true, false)") == b"[true,false]"


async def test_to_json_tables_arrays_maps_and_mixed(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        assert await lua(runtime, "return mona:toJSON({10,10,100,100})") == b"[[10,10,100,100]]"
        obj = await lua(runtime, "return mona:toJSON({x=10,y=10,width=100,height=100})")
        assert json.loads(obj) == [{"x": 10, "y": 10, "width": 100, "height": 100}]
        mixed = await lua(runtime, "return mona:toJSON({x=10,y=10,100,100})")
        assert json.loads(mixed) == [[{"x": 10, "y": 10}, 100, 100]]
        nested = await lua(runtime, "return mona:toJSON({a=1,b=2,3,4,x={{{1,2,3}}}})")
        assert json.loads(nested) == [[{"a": 1, "b": 2, "x": [[[1, 2, 3]]]}, 3, 4]]
        # a hole in the array part is null; number and boolean keys are names
        assert await lua(runtime, "return mona:toJSON({1, nil, 3})") == b"[[1,null,3]]"
        keyed = await lua(runtime, "return mona:toJSON({[10]='a', [true]='b'})")
        assert json.loads(keyed) == [{"10": "a", "true": "b"}]
        # functions are no values: left out of maps, null in arrays
        assert await lua(runtime, "return mona:toJSON({f=print, x=1})") == b'[{"x":1}]'
        assert await lua(runtime, "return mona:toJSON({print, 1})") == b"[[null,1]]"


async def test_to_json_numbers_strings_dates_bytes(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        numbers = await lua(runtime, "return mona:toJSON(3, -7, 2.5, 0.1, 1/3, 1e300, 2^53)")
        assert json.loads(numbers) == [3, -7, 2.5, 0.1, 1 / 3, 1e300, 2.0**53]
        assert json.loads(numbers)[4] == 1 / 3  # (the float reads back exactly)
        assert b",0.3333333333333333," in numbers  # (the fewest digits that do, as the docs say)
        integral = b"[10.0]" if engine == "lua54" else b"[10]"  # (LuaJIT has no integers)
        assert await lua(runtime, "return mona:toJSON(10.0)") == integral
        escaped = await lua(runtime, 'return mona:toJSON("q\\"b\\\\n\\n\\t\\0\\1é")')
        assert escaped == '["q\\"b\\\\n\\n\\t\\u0000\\u0001é"]'.encode()
        assert json.loads(escaped) == ['q"b\\n\n\t\x00\x01é']
        date = await lua(runtime, "return mona:toJSON({__time=1412082917000})")
        assert date == b'["2014-09-30T13:15:17.000Z"]'
        assert await lua(runtime, 'return mona:toJSON({__raw="\\255\\0\\20"})') == (
            b'[{"__raw":"/wAU"}]'
        )


async def test_to_json_objects_are_maps_of_their_properties(tmp_path: Path, engine: str) -> None:
    source = """
    server = mona:createTCPServer()
    function server:onConnection(client) seen = mona:toJSON(client) end
    server:start("127.0.0.1", 0)
    """
    async with running(tmp_path, source, engine=engine) as runtime:
        address = json.loads(
            await lua(runtime, 'return mona:toJSON(mona:createSocketAddress("127.0.0.1:80"))')
        )
        assert address[0]["value"] == "127.0.0.1:80"
        assert address[0]["port"] == 80
        assert address[0]["host"]["value"] == "127.0.0.1"
        assert address[0]["host"]["isLoopback"] is True
        server = json.loads(await lua(runtime, "return mona:toJSON(server)"))
        assert server[0]["running"] is True
        assert server[0]["address"]["host"]["value"] == "127.0.0.1"
        files = json.loads(await lua(runtime, 'return mona:toJSON(mona:listPaths(""))'))
        assert [f["name"] for f in files[0]] == ["main.lua"]
        udp = json.loads(
            await lua(
                runtime,
                "local u = mona:createUDPSocket() u:bind('127.0.0.1', 0) local s = mona:toJSON(u) u:close() return s",
            )
        )
        assert udp[0]["address"]["host"]["value"] == "127.0.0.1"
        stream = await connect(tcp_port(runtime))
        await lua_until(runtime, "return seen ~= nil")
        client = json.loads(await lua(runtime, "return seen"))[0]
        assert client["connected"] is True
        assert client["peerAddress"]["port"] == stream.socket.getsockname()[1]
        await stream.aclose()


async def test_to_json_failures(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        # a cycle: nil and a logged error naming the converter
        assert await lua(runtime, "local t = {} t.self = t return mona:toJSON(t)") is None
        assert any("toJSON: a table contains itself" in m for m in messages(caplog))
        # the error callback first: called with the message instead
        got = await lua(
            runtime,
            "local e local r = mona:toJSON(function(m) e = m end, 0/0) return r, e",
        )
        assert got == (None, b"toJSON: inf and nan have no JSON form")
        got = await lua(
            runtime, 'local e local r = mona:toJSON(function(m) e = m end, "\\255") return r, e'
        )
        assert got[0] is None
        assert b"not valid UTF-8" in got[1]
        deep = "local t = {} local c = t for i = 1, 600 do c[1] = {} c = c[1] end"
        assert await lua(runtime, deep + " return mona:toJSON(t)") is None
        assert any("nested deeper than 500" in m for m in messages(caplog))
        # Lua's own error() as the callback (MonaServer's tests do so) raises
        with pytest.raises(RuntimeError, match="toJSON: a table contains itself"):
            await lua(runtime, "local t = {} t[1] = t return mona:toJSON(error, t)")


# -- JSON: reading --------------------------------------------------------------------
async def test_from_json_returns_the_values(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        assert await lua(runtime, 'return mona:fromJSON("[1,2]")') == (1, 2)
        assert await lua(runtime, 'return select("#", mona:fromJSON("[]"))') == 0
        assert await lua(runtime, 'return #mona:fromJSON("[[]]"), next(mona:fromJSON("[{}]"))') == (
            0,
            None,
        )
        assert await lua(runtime, 'return select("#", mona:fromJSON("[1,null,null]"))') == 3
        assert await lua(runtime, "return mona:fromJSON('{\"a\": 5}').a") == 5
        assert await lua(runtime, 'return mona:fromJSON("  7 ")') == 7
        kinds = await lua(
            runtime,
            """local a, b, c, d = mona:fromJSON('[3, 2.5, 10.0, 123456789012]')
            return math.type and math.type(a) or "number", b, math.type and math.type(c) or "number", d""",
        )
        assert kinds == ((b"integer" if engine == "lua54" else b"number"), 2.5,
                         (b"float" if engine == "lua54" else b"number"), 123456789012)  # fmt: skip
        text = await lua(runtime, "return mona:fromJSON('[\"a\\\\u00e9\\\\ud83d\\\\ude00\\\\n\"]')")
        assert text == "aé😀\n".encode()


async def test_from_json_dates_and_bytes(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        date = await lua(
            runtime,
            """local d = mona:fromJSON('["2014-09-30T13:15:17.435Z"]')
            return d.__time, d.year, d.month, d.day, d.hour, d.min, d.sec, d.msec, d.wday, d.yday, d.isdst""",
        )
        assert date == (1412082917435, 2014, 9, 30, 13, 15, 17, 435, 3, 273, False)
        # not a real date, or another layout: a string
        assert await lua(runtime, "return mona:fromJSON('[\"2014-02-31T13:15:17.435Z\"]')") == (
            b"2014-02-31T13:15:17.435Z"
        )
        assert (
            await lua(runtime, 'return mona:fromJSON(\'[{"__raw":"/wAU"}]\').__raw')
            == b"\xff\x00\x14"
        )
        # (a name in the date layout is a name)
        assert await lua(
            runtime, "return next(mona:fromJSON('{\"2014-09-30T13:15:17.435Z\": 1}'))"
        ) == (b"2014-09-30T13:15:17.435Z", 1)
        # round trips
        assert (
            await lua(runtime, "return mona:fromJSON(mona:toJSON({__time=-86400000})).year") == 1969
        )


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (b"[1,", "Expecting value (at byte 4)"),
        (b"[1 2]", "Expecting ',' delimiter (at byte 4)"),
        (b'["abc', "Unterminated string"),
        (b"[NaN]", "NaN is not JSON"),
        (b"[Infinity]", "Infinity is not JSON"),
        (b"[1] x", "Extra data"),
        (b'["\xff"]', "not valid UTF-8 (at byte 3)"),
        (b'["\\ud800"]', "a lone surrogate"),
        (b'[{"__raw": "not base64!"}]', "__raw is not base64"),
        (b"[" * 10_000, "tables nested deeper than 500"),
        (b'{"a":' * 600 + b"1" + b"}" * 600, "tables nested deeper than 500"),
        (b"", "Expecting value (at byte 1)"),
        # (infinity, which toJSON could not write back)
        (b"[1e999]", "the number 1e999 is beyond the largest float"),
        (b"-1e400", "the number -1e400 is beyond the largest float"),
        (b"1" + b"0" * 400, "the number 10000000000"),
    ],
)
async def test_from_json_bad_input(
    tmp_path: Path, document: bytes, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, "") as runtime:
        assert await lua(runtime, f"return mona:fromJSON({lua_literal(document)})") is None
        assert any(f"fromJSON: {error}" in m for m in messages(caplog))
        # the error callback instead of the log
        called = await lua(
            runtime,
            f"local e local r = mona:fromJSON(function(m) e = m end, {lua_literal(document)}) return r, e",
        )
        assert called[0] is None
        assert error in called[1].decode()


async def test_from_json_refuses_what_is_not_a_string(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        with pytest.raises(
            RuntimeError, match=r"bad argument #1 to 'fromJSON' \(string expected, got table\)"
        ):
            await lua(runtime, "return mona:fromJSON({})")
        with pytest.raises(RuntimeError, match=r"bad argument #2 to 'fromJSON'"):
            await lua(runtime, "return mona:fromJSON(print, 5)")


async def test_from_json_large_document(tmp_path: Path, engine: str) -> None:
    """More values than one crossing hands over (the tape comes in chunks)."""
    async with running(tmp_path, "", engine=engine) as runtime:
        got = await lua(
            runtime,
            """local t = {} for i = 1, 120000 do t[i] = i % 7 == 0 and "s" .. i or {i} end
            local back = mona:fromJSON(mona:toJSON(t))
            for i = 1, 120000 do
              if (type(t[i]) == "table" and back[i][1] ~= t[i][1]) or (type(t[i]) ~= "table" and back[i] ~= t[i]) then return i end
            end
            return #back""",
        )
        assert got == 120000


async def test_from_json_too_many_top_values(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As many top values as one call can return (LuaJIT's stack has a bound)."""
    limit = 500_000 if engine == "lua54" else 7000
    async with running(tmp_path, "", engine=engine) as runtime:
        ok = f"return select('#', mona:fromJSON('[' .. string.rep('1,', {limit - 1}) .. '1]'))"
        assert await lua(runtime, ok) == limit
        too_many = f"return mona:fromJSON('[' .. string.rep('1,', {limit}) .. '1]')"
        assert await lua(runtime, too_many) is None
        assert any(
            f"values are more than one call returns ({limit})" in m for m in messages(caplog)
        )


# -- query strings ----------------------------------------------------------------------
async def test_query_strings(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        pairs = await lua(runtime, "return mona:toQuery({x=10,y=10,width=100,height=100})")
        assert sorted(pairs.split(b"&")) == [b"height=100", b"width=100", b"x=10", b"y=10"]
        assert await lua(runtime, "return mona:toQuery({10,10,100,100})") == b"10&10&100&100"
        assert await lua(runtime, 'return mona:toQuery("a b&c=d/é", true, nil, 2.5)') == (
            b"a%20b%26c%3Dd%2F%C3%A9&true&null&2.5"
        )
        assert await lua(runtime, "return mona:toQuery()") == b""
        split = await lua(
            runtime,
            """local a, x, b = mona:fromQuery("a=1&x&b=2")
            return a.a, x, b.b, select("#", mona:fromQuery("a=1&x&b=2"))""",
        )
        assert split == (1, b"x", 2, 3)
        typed = await lua(
            runtime,
            """local t = mona:fromQuery("t=true&f=false&n=-12&d=2.5&z=007&e=1e3&s=a+b%21&k%20y=v&empty=")
            return t.t, t.f, t.n, t.d, t.z, t.e, t.s, t["k y"], t.empty""",
        )
        assert typed == (True, False, -12, 2.5, b"007", b"1e3", b"a b!", b"v", b"")
        assert await lua(runtime, 'return select("#", mona:fromQuery("1&null&&x"))') == 3
        assert await lua(runtime, 'return mona:fromQuery("")') is None


async def test_query_failures(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, "") as runtime:
        assert await lua(runtime, "return mona:toQuery({x={1,2}})") is None
        assert any("toQuery: table in a field has no query form" in m for m in messages(caplog))
        got = await lua(
            runtime, "local e local r = mona:toQuery(function(m) e = m end, {{}}) return r, e"
        )
        assert got == (
            None,
            b"toQuery: table in an array has no query form (a query holds pairs and plain values)",
        )


# -- round trips of generated values ------------------------------------------------------
_names = st.text(max_size=8).filter(lambda s: not s.startswith("__"))
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars
    | st.builds(lambda ms: {"__time": ms}, st.integers(0, 253_402_300_799_999))
    | st.builds(lambda b: {"__raw": b}, st.binary(max_size=20)),
    # (no nil in arrays: a table with many holes is a map, docs/lua/conversions.rst)
    lambda inner: (
        st.lists(inner.filter(lambda v: v is not None), max_size=5)
        | st.dictionaries(_names, inner, max_size=5)
    ),
    max_leaves=20,
)


@given(st.lists(_json_values, max_size=4))
def test_json_round_trip(runner: ThreadedRuntime, values: list[object]) -> None:
    args = ", ".join(lua_literal(v) for v in values)
    code = f"""local values = table.pack({args})
    local back = table.pack(mona:fromJSON(mona:toJSON({args})))
    return back.n == values.n and same(values, back)"""
    assert runner.lua(code) is True


_query_text = st.text(min_size=1, max_size=10).filter(
    lambda s: s not in ("true", "false", "null") and not s.lstrip("-").replace(".", "", 1).isdigit()
)
_query_scalars = st.booleans() | st.integers(-(10**12), 10**12) | _query_text


@given(st.lists(st.dictionaries(st.text(max_size=6), _query_scalars, min_size=1, max_size=4)
                | _query_scalars, max_size=4).map(lambda items: [
                    item for i, item in enumerate(items)
                    if not (isinstance(item, dict) and i and isinstance(items[i - 1], dict))
                ]))  # fmt: skip
def test_query_round_trip(runner: ThreadedRuntime, values: list[object]) -> None:
    args = ", ".join(lua_literal(v) for v in values)
    code = f"""local values = table.pack({args})
    local back = table.pack(mona:fromQuery(mona:toQuery({args})))
    return back.n == values.n and same(values, back)"""
    assert runner.lua(code) is True


async def test_more_values_than_a_call_returns_is_a_clear_failure(
    tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    most = 500_000 if engine == "lua54" else 7000
    async with running(tmp_path, "", engine=engine) as runtime:
        code = f"""local parts = {{}}
        for i = 1, {most + 1} do parts[i] = tostring(i) end
        return mona:fromQuery(table.concat(parts, "&"))"""
        assert await lua(runtime, code) is None
        expected = f"fromQuery: {most + 1} values, more than one Lua call can return ({most})"
        assert any(expected in m for m in messages(caplog))
