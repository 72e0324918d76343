"""toAMF, toAMF0 and fromAMF over a real runtime on both engines (docs/lua/conversions.rst):
MonaServer's own conversion check, shared and cyclic tables, dictionaries, bad input,
round trips of generated values."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .helpers import ThreadedRuntime, lua, lua_literal, messages, running

#: MonaServer's conversion test values (cyclic and mixed, as its AMF checks use them).
VALUES = """
local _dateTime = {__time=1412082917000}
local _bytes = {__raw="\\xFF\\x00\\x14"}
local _array = {2.7,true,{__type="test",key="val"}}
local _map =  { map="map", __size=1 }
setmetatable(_map,{__mode="v"})
local _mixed =    { prop="prop", "elt1" }
Object = { key1 = "value1", key2 = 2.7, key3 = true, key4 = _dateTime, key5 = _bytes,
  key6 = _array, key7 = _map, key8 = { "value", _dateTime, _bytes, _array, _map },
  mixed = _mixed }
Object.cyclic = Object
function check(...)
  local args = table.pack(...)
  assert(args.n == 4 and args[1] == 3.7 and args[3] == nil and args[4] == "hello")
  local b = args[2]
  assert(b.key1 == "value1" and b.key2 == 2.7 and b.key3 == true)
  assert(b.key4.__time == 1412082917000 and b.key4.year == 2014)
  assert(b.key5.__raw == "\\xFF\\x00\\x14")
  assert(b.key6[1] == 2.7 and b.key6[2] == true and b.key6[3].__type == "test" and b.key6[3].key == "val")
  assert(b.key7.map == "map" and b.key7.__size == 1)
  assert(b.key8[1] == "value" and b.key8[4] == b.key6 and b.key8[5] == b.key7)
  assert(b.cyclic == b)
  assert(b.mixed.prop == "prop" and b.mixed[1] == "elt1")
  return b
end
"""


async def test_monaservers_amf_checks(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, VALUES, engine=engine) as runtime:
        # (AMF3 keeps a date shared; AMF0 has no reference to a date)
        shared_date = await lua(
            runtime,
            'local b = check(mona:fromAMF(mona:toAMF(3.7, Object, nil, "hello"))) return b.key8[2] == b.key4',
        )
        assert shared_date is True
        assert (
            await lua(
                runtime,
                'local b = check(mona:fromAMF(mona:toAMF0(3.7, Object, nil, "hello"))) return b.key8[2].__time',
            )
            == 1412082917000
        )


async def test_amf_tables(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        got = await lua(
            runtime,
            """local weak = setmetatable({__size = 2}, {__mode = "k"})
            local key = {1}
            weak[key] = "t" weak[5] = "five"
            local back = mona:fromAMF(mona:toAMF(weak, {}, {x = 1}, {1, 2}))
            local k = next(back, nil)
            local found
            for k, v in pairs(back) do if type(k) == "table" then found = k[1] .. v end end
            local a, b, c, d = mona:fromAMF(mona:toAMF(weak, {}, {x = 1}, {1, 2}))
            return getmetatable(a).__mode, a.__size, a[5], found, next(b) == nil, c.x, #d""",
        )
        assert got == (b"k", 2, b"five", b"1t", True, 1, 2)
        # a table with weak keys and no __size is a (weak) dictionary too
        weak = await lua(
            runtime,
            """local t = setmetatable({}, {__mode = "k"}) t.a = 1
            local back = mona:fromAMF(mona:toAMF(t))
            return getmetatable(back).__mode, back.__size, back.a""",
        )
        assert weak == (b"k", 1, 1)
        kinds = await lua(
            runtime,
            """local a, b, c = mona:fromAMF(mona:toAMF(7, 7.5, 2^40))
            local x, y = mona:fromAMF(mona:toAMF0(7, 7.5))
            return math.type and math.type(a) or "number", b, c, x, y""",
        )
        assert kinds[1:] == (7.5, 2.0**40, 7, 7.5)
        assert kinds[0] == (b"integer" if engine == "lua54" else b"number")
        # the date of the AMF conversion table, field by field
        date = await lua(
            runtime,
            """local d = mona:fromAMF(mona:toAMF({__time=905989690435}))
            return d.year, d.month, d.day, d.yday, d.wday, d.hour, d.min, d.sec, d.msec, d.isdst, d.__time""",
        )
        assert date == (1998, 9, 16, 259, 4, 23, 48, 10, 435, False, 905989690435)
        # the dictionary of that table: {10="test","test"=10,__size=2}
        dictionary = await lua(
            runtime,
            """local d = mona:fromAMF(mona:toAMF({[10]="test", test=10, __size=2}))
            return d[10], d.test, d.__size""",
        )
        assert dictionary == (b"test", 10, 2)
        # a table whose __index converts another value while it is written
        nested = await lua(
            runtime,
            """local inner = setmetatable({1, 2}, {__index = function(t, k)
              if k == "__raw" then mona:toAMF({9, 9, 9}, "x") end
            end})
            local back = mona:fromAMF(mona:toAMF({inner, "after"}))
            return back[1][2], back[2]""",
        )
        assert nested == (2, b"after")
        # a Lua-visible object: a map of its properties
        assert (
            await lua(
                runtime,
                'return mona:fromAMF(mona:toAMF(mona:createSocketAddress("127.0.0.1:80"))).port',
            )
            == 80
        )


async def test_amf_bad_input(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, "") as runtime:
        cases = {
            b"\x11\x0a": "truncated",
            b"\x0c\x06\x00\x00\x00ab": "100663296 bytes announced",
            b"\x07\x00\x05": "a reference to object 5, which does not exist",
            b"\x11\x0d\x01": "AMF3 marker 0x0D is not supported",
            b"\x11" + b"\x09\x03\x01" * 10_000: "nested deeper than 500",
        }
        for data, error in cases.items():
            got = await lua(
                runtime,
                f"local e local r = mona:fromAMF(function(m) e = m end, {lua_literal(data)}) return r, e",
            )
            assert got[0] is None
            assert error in got[1].decode(), (data[:10], got[1])
        assert await lua(runtime, "return mona:fromAMF('\\4')") is None
        assert any("fromAMF: AMF0 marker 0x04 is not supported" in m for m in messages(caplog))
        deep = (
            "local t = {} local c = t for i = 1, 600 do c[1] = {} c = c[1] end return mona:toAMF(t)"
        )
        assert await lua(runtime, deep) is None
        assert any("toAMF: tables nested deeper than 500" in m for m in messages(caplog))


async def test_amf_long_tape(tmp_path: Path) -> None:
    """A value larger than one crossing carries goes over in chunks both ways."""
    async with running(tmp_path, "") as runtime:
        got = await lua(
            runtime,
            """local t = {} for i = 1, 30000 do t[i] = {i, "s" .. i} end
            local back = mona:fromAMF(mona:toAMF(t))
            for i = 1, 30000 do if back[i][1] ~= i or back[i][2] ~= "s" .. i then return i end end
            return #back""",
        )
        assert got == 30000


_names = st.binary(min_size=1, max_size=6).filter(lambda s: not s.startswith(b"__"))
_values = st.recursive(
    st.none()
    | st.booleans()
    # (an integer past AMF3's 29 bits is a double, so it comes back a float: tested above)
    | st.integers(-(2**28), 2**28 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=12)
    | st.builds(lambda ms: {"__time": ms}, st.integers(-(10**14), 10**14))
    | st.builds(lambda b: {"__raw": b}, st.binary(max_size=12)),
    lambda inner: (
        st.lists(inner.filter(lambda v: v is not None), max_size=4)
        | st.dictionaries(_names, inner, max_size=4)
    ),
    max_leaves=15,
)


@given(st.lists(_values, max_size=4), st.booleans())
def test_amf_round_trip(runner: ThreadedRuntime, values: list[object], amf0: bool) -> None:
    args = ", ".join(lua_literal(v) for v in values)
    writer = "toAMF0" if amf0 else "toAMF"
    # (AMF0 numbers are doubles: compared by value there, not by integer or float)
    same = "same_value" if amf0 else "same"
    code = f"""local values = table.pack({args})
    local back = table.pack(mona:fromAMF(mona:{writer}({args})))
    return back.n == values.n and {same}(values, back)"""
    assert runner.lua(code) is True
