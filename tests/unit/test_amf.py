"""The AMF0/AMF3 codec, sans I/O: byte-exact encodings from the specifications, reference
tables, and refusal of malformed input within bounded time and memory."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_mona._formats import amf
from trio_mona._formats.amf import AMFError, Node, decode, encode
from trio_mona._formats.tape import TooDeep


def amf3(value: Any) -> bytes:
    """*value* as toAMF writes it, without the AMF0 switch marker."""
    data = encode([value], amf0=False)
    assert data[0] == 0x11
    return data[1:]


# -- AMF3 (the AMF3 specification's U29 encoding and markers) --------------------------------
@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (0, "04 00"),
        (1, "04 01"),
        (127, "04 7f"),
        (128, "04 81 00"),
        (16383, "04 ff 7f"),
        (16384, "04 81 80 00"),
        (2097151, "04 ff ff 7f"),
        (2097152, "04 80 c0 80 00"),
        (268435455, "04 bf ff ff ff"),
        (-1, "04 ff ff ff ff"),
        (-268435456, "04 c0 80 80 00"),
    ],
)
def test_amf3_integers(number: int, expected: str) -> None:
    assert amf3(number) == bytes.fromhex(expected)
    assert decode(b"\x11" + bytes.fromhex(expected)) == [number]


def inside(value: Any) -> bytes:
    """*value* as written inside AMF3 (an array's one item)."""
    data = amf3(Node("array", items=[value]))
    assert data[:3] == b"\x09\x03\x01"
    return data[3:]


def test_amf3_scalars() -> None:
    assert inside(None) == b"\x01"
    assert inside(True) == b"\x03"
    assert inside(False) == b"\x02"
    assert inside(2.5) == b"\x05" + struct.pack(">d", 2.5)
    # (past 29 bits: a double; toAMF writes it in AMF0)
    assert encode([268435456], amf0=False) == b"\x00" + struct.pack(">d", 268435456)
    assert amf3(Node("array", items=[268435456])) == b"\x09\x03\x01\x05" + struct.pack(
        ">d", 268435456
    )
    assert amf3(b"hello") == b"\x06\x0bhello"
    assert amf3(b"") == b"\x06\x01"
    assert amf3(Node("date", value=0.0)) == b"\x08\x01" + bytes(8)
    assert amf3(Node("bytes", value=b"\x01\x02")) == b"\x0c\x05\x01\x02"


def test_amf3_string_and_object_references() -> None:
    shared = Node("array", items=[b"ab", b"ab", b"", b""])
    # the second "ab" is reference 0 (06 00); the empty string is never a reference
    assert amf3(shared) == bytes.fromhex("09 09 01 06 05 61 62 06 00 06 01 06 01")
    outer = Node("array", items=[shared, shared])
    data = amf3(outer)
    assert data.endswith(bytes.fromhex("09 02"))  # (the second is object reference 1)
    back = decode(b"\x11" + data)[0]
    assert back.items[0] is back.items[1]


def test_amf3_objects_arrays_dictionaries() -> None:
    typed = Node("object", type=b"Cat", fields=[(b"n", 1)])
    # 0A, traits 0B (inline, dynamic, no sealed member), class name, n=1, end of members
    assert amf3(typed) == bytes.fromhex("0a 0b 07 43 61 74 03 6e 04 01 01")
    mixed = Node("array", items=[1], fields=[(b"x", 2)])
    assert amf3(mixed) == bytes.fromhex("09 03 03 78 04 02 01 04 01")
    weak = Node("dictionary", fields=[(1, b"a")], weak=True)
    assert amf3(weak) == bytes.fromhex("11 03 01 04 01 06 03 61")
    back = decode(b"\x11" + amf3(weak))[0]
    assert (back.kind, back.weak, back.fields) == ("dictionary", True, [(1, b"a")])


def test_amf3_cycles_round_trip() -> None:
    node = Node("object", fields=[])
    node.fields.append((b"self", node))
    back = decode(encode([node], amf0=False))[0]
    assert back.fields[0][1] is back


def test_amf3_sealed_members_and_traits_references() -> None:
    # two objects of one class with a sealed member "a": the second uses traits ref 0
    data = bytes.fromhex("11 09 05 01 0a 13 07 43 61 74 03 61 04 01 0a 01 04 02")
    back = decode(data)[0]
    assert [(o.type, o.fields) for o in back.items] == [
        (b"Cat", [(b"a", 1)]),
        (b"Cat", [(b"a", 2)]),
    ]


# -- AMF0 (the AMF0 specification's markers) -------------------------------------------------
def test_amf0_scalars() -> None:
    assert encode([1.5], amf0=True) == b"\x00" + struct.pack(">d", 1.5)
    assert encode([2], amf0=True) == b"\x00" + struct.pack(">d", 2.0)  # (AMF0: all doubles)
    assert encode([True, False, None], amf0=True) == b"\x01\x01\x01\x00\x05"
    assert encode([b"foo"], amf0=True) == b"\x02\x00\x03foo"
    long = b"x" * 70000
    assert encode([long], amf0=True) == b"\x0c" + struct.pack(">I", 70000) + long
    assert encode([Node("date", value=1000.0)], amf0=True) == b"\x0b" + struct.pack(
        ">dh", 1000.0, 0
    )
    assert decode(b"\x06") == [None]  # undefined


def test_amf0_objects_arrays_references() -> None:
    obj = Node("object", fields=[(b"a", b"b")])
    assert encode([obj], amf0=True) == b"\x03\x00\x01a\x02\x00\x01b\x00\x00\x09"
    typed = Node("object", type=b"T", fields=[])
    assert encode([typed], amf0=True) == b"\x10\x00\x01T\x00\x00\x09"
    array = Node("array", items=[obj, obj])
    data = encode([array], amf0=True)
    assert data == b"\x0a\x00\x00\x00\x02" + encode([obj], amf0=True) + b"\x07\x00\x01"
    back = decode(data)[0]
    assert back.items[0] is back.items[1]
    # an ECMA array reads as an object
    ecma = b"\x08\x00\x00\x00\x01\x00\x01k\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\x00\x00\x09"
    assert decode(ecma)[0].fields == [(b"k", 1.0)]
    # mixed arrays, dictionaries and byte arrays switch to AMF3, as MonaServer's toAMF0
    assert encode([Node("bytes", value=b"")], amf0=True) == b"\x11\x0c\x01"


def test_to_amf_writes_as_monaserver() -> None:
    """toAMF: AMF0 numbers that are not 29-bit integers, booleans and null; the rest
    switches to AMF3 (MonaServer's AMFWriter with its AMF0 preference off)."""
    assert encode([7], amf0=False) == b"\x11\x04\x07"
    assert encode([2.5], amf0=False) == b"\x00" + struct.pack(">d", 2.5)
    assert encode([True, None], amf0=False) == b"\x01\x01\x05"
    assert encode([b"s"], amf0=False) == b"\x11\x06\x03s"
    # one AMF3 context for the whole message: the second "s" is a reference
    assert encode([b"s", b"s"], amf0=False) == b"\x11\x06\x03s\x11\x06\x00"


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x01", "8 bytes announced at byte 2, past the end"),
        (b"\x02\xff\xff", "65535 bytes announced"),
        (b"\x0c\x06\x00\x00\x00ab", "100663296 bytes announced"),  # (100 MB in 7 bytes)
        (b"\x07\x00\x05", "a reference to object 5, which does not exist"),
        (b"\x11\x06\x04", "a reference to string 2, which does not exist"),
        (b"\x11\x09\x02", "a reference to object 1, which does not exist"),
        (b"\x11\x0a\x01", "a reference to traits 0, which does not exist"),
        (b"\x11\x0a\x07\x01", "externalizable objects are not supported"),
        (b"\x11\x0d\x01", "AMF3 marker 0x0D is not supported"),
        (b"\x11\x12", "AMF3 marker 0x12 is not supported"),
        (b"\x04", "AMF0 marker 0x04 is not supported"),
        (b"\x09", "AMF0 marker 0x09 is not supported"),
        (b"\x0a\x7f\xff\xff\xff\x05", "an array of 2147483647 values announced in fewer bytes"),
        (b"\x03\x00\x00\x05", "an object's end marker is missing"),
        (b"\x11\x09\xff\xff\xff\xff", "truncated"),
        (b"\x03\x00\x01a", "truncated"),
    ],
)
def test_malformed_input(data: bytes, message: str) -> None:
    # (a size announced past the input is refused before anything is made for it)
    with pytest.raises(AMFError, match=message):
        decode(data)


def test_nesting_is_bounded() -> None:
    with pytest.raises(TooDeep):
        decode(b"\x11" + b"\x09\x03\x01" * 10_000)
    with pytest.raises(TooDeep):
        decode(b"\x0a\x00\x00\x00\x01" * 10_000)


# -- round trips -----------------------------------------------------------------------------
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(amf.MIN_INTEGER, amf.MAX_INTEGER)
    | st.floats(allow_nan=False)
    | st.binary(max_size=10)
)
_nodes = st.recursive(
    _scalars
    | st.builds(lambda ms: Node("date", value=ms), st.floats(-1e15, 1e15))
    | st.builds(lambda b: Node("bytes", value=b), st.binary(max_size=10)),
    lambda inner: (
        st.builds(
            lambda items, fields: Node("array", items=items, fields=fields),
            st.lists(inner, max_size=4),
            st.lists(st.tuples(st.binary(min_size=1, max_size=4), inner), max_size=3),
        )
        | st.builds(
            lambda kind, fields: Node("object", type=kind or None, fields=fields),
            st.binary(max_size=3),
            st.lists(st.tuples(st.binary(min_size=1, max_size=4), inner), max_size=3),
        )
        | st.builds(
            lambda fields, weak: Node("dictionary", fields=fields, weak=weak),
            st.lists(st.tuples(_scalars.filter(lambda v: v is not None), inner), max_size=3),
            st.booleans(),
        )
    ),
    max_leaves=15,
)


def _plain(value: Any) -> Any:
    if isinstance(value, Node):
        return (value.kind, value.type, [_plain(i) for i in value.items],
                [(_plain(k), _plain(v)) for k, v in value.fields], value.weak, value.value)  # fmt: skip
    return value


@given(st.lists(_nodes, max_size=4))
def test_amf3_round_trip(values: list[Any]) -> None:
    assert [_plain(v) for v in decode(encode(values, amf0=False))] == [_plain(v) for v in values]


@given(st.lists(_nodes, max_size=4))
def test_amf0_round_trip(values: list[Any]) -> None:
    """AMF0 numbers are doubles: integers come back as floats of the same value."""
    back = [_plain(v) for v in decode(encode(values, amf0=True))]
    assert back == [_plain(v) for v in values]
