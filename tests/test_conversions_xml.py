"""XML and XML-RPC conversions (docs/lua/conversions.rst): MonaServer's layout and
tests, safety against entity tricks, bad input, and round trips of generated values."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .helpers import SAME_LUA, ThreadedRuntime, lua, lua_literal, messages, running

LAYOUT = (
    '<?xml version="1.0" ?><document ><article ><p >This is the first paragraph.</p>'
    '<h2 class="opt" >Title with opt style</h2></article><article ><p >Some<b >important</b>'
    "text.</p></article></document>"
)

#: MonaServer's own XML test, unchanged but for the document being a global.
MONA_XML_TEST = """
test = mona:fromXML(error,xml)
for index,value in ipairs(test) do
  assert(index <= #test) -- test infinite loop bug on ipairs
end
assert(test.xml.version == "1.0")
assert(test.document == test[1])
assert(test.document == test.__value)
assert(test.document.article == test[1][1])
assert(test.document.article == test[1].__value)
assert(test.document.article.p == test[1][1][1])
assert(test.document.article.p == test[1][1].__value)
assert(test.document.article.p.__value=="This is the first paragraph.")
test.document.article.p.__value="This is the changed paragraph."
assert(test.document.article.p.__value=="This is the changed paragraph.")
test.document.article.p.__value="This is the first paragraph."
assert(mona:toXML(error,test)==xml)
return true
"""


async def test_monaservers_xml_test(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, f"xml = {lua_literal(LAYOUT)}", engine=engine) as runtime:
        assert await lua(runtime, MONA_XML_TEST) is True


async def test_from_xml_layout(tmp_path: Path, engine: str) -> None:
    document = b"""<?xml version="1.0" encoding="UTF-8"?>
    <document>
      <article id="a1" lang="en"><p>One &amp; <![CDATA[two <raw>]]></p><!-- a comment --></article>
      <article/>
    </document>"""
    async with running(tmp_path, "", engine=engine) as runtime:
        got = await lua(
            runtime,
            f"""local x = mona:fromXML({lua_literal(document)})
            local a = x.document.article
            return x.xml.version, x.xml.encoding, #x.document, a.id, a.lang, a.__name,
              a.p[1], #a, x.document[2].__name, #x.document[2], x.document[2].__value""",
        )
        assert got == (b"1.0", b"UTF-8", 2, b"a1", b"en", b"article", b"One & two <raw>", 1,
                       b"article", 0, None)  # fmt: skip


async def test_to_xml(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, "", engine=engine) as runtime:
        assert await lua(runtime, "return mona:toXML({__name='a'})") == b"<a />"
        written = await lua(
            runtime,
            """return mona:toXML({__name="e", z="1", b=2, a=true, {__name="c", 'x<y & "q"'}, 5})""",
        )
        assert written == b'<e a="true" b="2" z="1" ><c >x&lt;y &amp; "q"</c>5</e>'
        # __value stands for the first child (MonaServer's SOAP example replaces it)
        replaced = await lua(
            runtime,
            """local x = mona:fromXML("<Add><Value>1</Value></Add>")
            local content = x.Add
            content.__name = "AddResponse"
            content.__value = {__name="AddResult",{__name="Value",2}}
            return mona:toXML(x)""",
        )
        assert replaced == b"<AddResponse ><AddResult ><Value >2</Value></AddResult></AddResponse>"


async def test_xml_failures(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, "") as runtime:
        bomb = (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(
                f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
                for i in range(1, 10)
            )
            + "]><lolz>&lol9;</lolz>"
        )
        cases = {
            bomb: "entity declarations and external entities are refused",
            '<!DOCTYPE x SYSTEM "file:///etc/passwd"><x>&xxe;</x>': "external entities are refused",
            '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>': "are refused",
            "<a><b></a>": "mismatched tag (line 1, column 9)",
            "<a>": "no element found",
            "": "no element found",
            "<a>\xff</a>": "not well-formed",
            "<x>" * 10_000: "elements nested deeper than 500",
        }
        for document, error in cases.items():
            got = await lua(
                runtime,
                f"local e local r = mona:fromXML(function(m) e = m end, {lua_literal(document.encode('latin-1'))}) return r, e",
            )
            assert got[0] is None, document[:40]
            assert error in got[1].decode(), (document[:40], got[1])
        assert await lua(runtime, "return mona:toXML({__name='bad name'})") is None
        assert any("toXML: an element name must be a name" in m for m in messages(caplog))
        assert await lua(runtime, "local t = {__name='a'} t[1] = t return mona:toXML(t)") is None
        assert any("toXML: a table contains itself" in m for m in messages(caplog))


# -- XML-RPC ----------------------------------------------------------------------------
#: MonaServer's own values (its conversion test), checked as its check() does.
MONA_VALUES = """
local _dateTime = {__time=1412082917000}
local _bytes = {__raw="\\xFF\\x00\\x14"}
local _array = {2.7,true,{__type="test",key="val"}}
local _map =  { map="map", __size=1 }
local _mixed =    { prop="prop", "elt1" }
Object = { key1 = "value1", key2 = 2.7, key3 = true, key4 = _dateTime, key5 = _bytes,
  key6 = _array, key7 = _map, key8 = { "value", _dateTime, _bytes, _array, _map },
  notmixed = _mixed }
"""


async def test_xmlrpc(tmp_path: Path, engine: str) -> None:
    async with running(tmp_path, MONA_VALUES + SAME_LUA, engine=engine) as runtime:
        empty = b'<?xml version="1.0"?><methodResponse><params></params></methodResponse>'
        assert await lua(runtime, "return mona:toXMLRPC()") == empty
        assert await lua(runtime, f"return select('#', mona:fromXMLRPC({lua_literal(empty)}))") == 0
        got = await lua(
            runtime,
            """local n = select("#", mona:fromXMLRPC(mona:toXMLRPC(3.7, Object, nil, "hello")))
            local a, b, c, d = mona:fromXMLRPC(mona:toXMLRPC(3.7, Object, nil, "hello"))
            return n, a, c, d, b.key1, b.key2, b.key3, b.key4.__time, b.key5.__raw,
              b.key6[3].__type, b.key6[3].key, b.key7.map, b.key8[4][1],
              b.notmixed[1].prop, b.notmixed[2]""",
        )
        assert got == (4, 3.7, None, b"hello", b"value1", 2.7, True, 1412082917000,
                       b"\xff\x00\x14", b"test", b"val", b"map", 2.7, b"prop", b"elt1")  # fmt: skip
        # Python's own XML-RPC reads what toXMLRPC writes
        text = await lua(runtime, "return mona:toXMLRPC(1, 2.5, 'x', true, {1, 2}, {a=1})")
        values, _method = xmlrpc.client.loads(text.decode(), use_builtin_types=True)
        assert values == (1, 2.5, "x", True, [1, 2], {"a": 1})
        # and toXMLRPC's reader reads Python's (a call: its method name first)
        call = xmlrpc.client.dumps((1, "two", [3.5], {"k": None}), "add", allow_none=True)
        got = await lua(
            runtime,
            f"""local name, a, b, c, d = mona:fromXMLRPC({lua_literal(call.encode())})
            return name, a, b, c[1], next(d) == nil""",
        )
        assert got == (b"add", 1, b"two", 3.5, True)
        dated = xmlrpc.client.dumps(
            (xmlrpc.client.DateTime("19980717T14:08:55"),), methodresponse=True
        )
        assert await lua(
            runtime, f"return mona:fromXMLRPC({lua_literal(dated.encode())}).__time"
        ) == (900684535000)


async def test_xmlrpc_failures(tmp_path: Path) -> None:
    async with running(tmp_path, "") as runtime:
        cases = {
            "<a/>": "not a methodResponse or methodCall",
            "<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>": "<int> holds 'x'",
            "<methodResponse><params><param><value><base64>!!</base64></value></param></params></methodResponse>": "<base64> is not base64",
            "<methodResponse><params><param><value><frob/></value></param></params></methodResponse>": "<frob> is no XML-RPC type",
            "<methodResponse><params><param/></params></methodResponse>": "a <param> holds one <value>",
            "<methodResponse><params><param><value><array/></value></param></params></methodResponse>": "an <array> needs its <data>",
            "<methodResponse><params>": "no element found",
            "<methodResponse>"
            + "<params><param><value><array><data><value>" * 600: "nested deeper than 500",
        }
        for document, error in cases.items():
            got = await lua(
                runtime,
                f"local e local r = mona:fromXMLRPC(function(m) e = m end, {lua_literal(document.encode())}) return r, e",
            )
            assert got[0] is None, document[:50]
            assert error in got[1].decode(), (document[:50], got[1])


# -- round trips ----------------------------------------------------------------------------
_xml_char = st.characters(codec="utf-8").filter(lambda c: c >= " " or c in "\t\n\r")
_names = st.text(_xml_char, max_size=8).filter(lambda s: not s.startswith("__"))
_scalars = (
    st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_xml_char, max_size=20)
)
_values = st.recursive(
    _scalars
    | st.builds(lambda ms: {"__time": ms}, st.integers(0, 253_402_300_799_999))
    | st.builds(lambda b: {"__raw": b}, st.binary(max_size=20)),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(_names, inner, max_size=5)
        | st.builds(
            lambda d, t: {**d, "__type": t},
            st.dictionaries(_names, inner, max_size=3),
            st.text(_xml_char, min_size=1, max_size=5),
        )
    ),
    max_leaves=20,
)


@given(st.lists(_values | st.none(), max_size=4))
def test_xmlrpc_round_trip(runner: ThreadedRuntime, values: list[object]) -> None:
    args = ", ".join(lua_literal(v) for v in values)
    code = f"""local values = table.pack({args})
    local back = table.pack(mona:fromXMLRPC(mona:toXMLRPC({args})))
    return back.n == values.n and same(values, back)"""
    assert runner.lua(code) is True


_tag = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)
_text = st.text(min_size=1, max_size=10).filter(
    lambda s: not s.isspace() and all(c >= " " for c in s)
)


def _escaped(text: str, attribute: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if attribute else text


@st.composite
def _element(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(_tag)
    attributes = draw(st.dictionaries(_tag, _text, max_size=3))
    start = f"<{name} " + "".join(
        f'{k}="{_escaped(v, True)}" ' for k, v in sorted(attributes.items())
    )
    children = draw(
        st.lists(
            _text.map(_escaped) | (_element(depth + 1) if depth < 3 else _text.map(_escaped)),
            max_size=3,
        )
    )
    # (two texts in a row are one text)
    merged: list[str] = []
    for child in children:
        if merged and not merged[-1].startswith("<") and not child.startswith("<"):
            continue
        merged.append(child)
    if not merged:
        return start + "/>"
    return start + ">" + "".join(merged) + f"</{name}>"


@given(_element())
def test_xml_round_trip_in_monaservers_layout(runner: ThreadedRuntime, element: str) -> None:
    document = '<?xml version="1.0" ?>' + element
    got = runner.lua(f"return mona:toXML(mona:fromXML({lua_literal(document.encode())}))")
    assert got == document.encode()
