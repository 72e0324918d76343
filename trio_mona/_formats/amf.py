"""AMF0 and AMF3, sans I/O: :func:`encode` and :func:`decode` between bytes and
:class:`Node` graphs (shared and cyclic ones included), as toAMF, toAMF0 and fromAMF
need them (docs/lua/conversions.rst, "AMF").

One AMF3 context (string, object and traits tables) serves a whole message, however
many times the AMF0 stream switches to AMF3 (``0x11``), as MonaServer writes it.
Decoding never trusts a declared length or count: every read is checked against what is
there, so a short input with a huge length fails at once.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import attrs

from .tape import MAX_DEPTH, TooDeep

#: The largest AMF3 integer (29 bits, signed); wider integers are doubles.
MAX_INTEGER: Final = (1 << 28) - 1
MIN_INTEGER: Final = -(1 << 28)

_DOUBLE: Final = struct.Struct(">d")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_DATE0: Final = struct.Struct(">dh")
_MARKERS: Final = {"object": 0x0A, "array": 0x09, "dictionary": 0x11, "date": 0x08, "bytes": 0x0C}


@attrs.define(eq=False)
class Node:
    """A complex AMF value. *kind* is ``object`` (members in *fields*, class name in
    *type*), ``array`` (*items*, and an associative part in *fields*), ``dictionary``
    (key/value *fields*, *weak* keys), ``date`` (*value*: ms) or ``bytes`` (*value*)."""

    kind: str
    type: bytes | None = None
    items: list[Any] = attrs.field(factory=list)
    fields: list[tuple[Any, Any]] = attrs.field(factory=list)
    weak: bool = False
    value: Any = None


class AMFError(Exception):
    """Input that is not AMF this codec reads (the message says why)."""


# -- encoding ---------------------------------------------------------------------------
class _Writer:
    def __init__(self, amf0: bool) -> None:
        self.amf0 = amf0
        self.out = bytearray()
        self.strings: dict[bytes, int] = {}
        self.objects: dict[int, int] = {}  # id(node) -> AMF3 index
        self.objects0: dict[int, int] = {}  # id(node) -> AMF0 index

    # AMF3
    def u29(self, n: int) -> None:
        out = self.out
        if n < 0x80:
            out.append(n)
        elif n < 0x4000:
            out += bytes((n >> 7 | 0x80, n & 0x7F))
        elif n < 0x200000:
            out += bytes((n >> 14 | 0x80, n >> 7 & 0x7F | 0x80, n & 0x7F))
        else:
            out += bytes((n >> 22 | 0x80, n >> 15 & 0x7F | 0x80, n >> 8 & 0x7F | 0x80, n & 0xFF))

    def text3(self, value: bytes) -> None:
        strings = self.strings
        if value:
            index = strings.get(value)
            if index is not None:
                self.u29(index << 1)
                return
            strings[value] = len(strings)
        size = len(value)
        if size < 0x40:  # (the usual short string: one length byte)
            self.out.append(size << 1 | 1)
        elif size >= 1 << 28:
            raise AMFError("a string of 256 MiB or more has no AMF3 form")
        else:
            self.u29(size << 1 | 1)
        self.out += value

    def value3(self, value: Any, depth: int) -> None:
        out = self.out
        cls = value.__class__
        if cls is bytes:  # (the most common value first)
            out.append(0x06)
            self.text3(value)
        elif value is None:
            out.append(0x01)
        elif cls is bool:
            out.append(0x03 if value else 0x02)
        elif cls is int:
            if MIN_INTEGER <= value <= MAX_INTEGER:
                out.append(0x04)
                self.u29(value & 0x1FFFFFFF)
            else:
                out.append(0x05)
                out += _DOUBLE.pack(value)
        elif cls is float:
            out.append(0x05)
            out += _DOUBLE.pack(value)
        else:
            self.node3(value, depth)

    def node3(self, node: Node, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise TooDeep
        out = self.out
        out.append(_MARKERS[node.kind])
        index = self.objects.get(id(node))
        if index is not None:
            self.u29(index << 1)
            return
        self.objects[id(node)] = len(self.objects)
        if node.kind == "date":
            out.append(0x01)
            out += _DOUBLE.pack(node.value)
        elif node.kind == "bytes":
            self.u29(len(node.value) << 1 | 1)
            out += node.value
        elif node.kind == "object":
            out.append(0x0B)  # inline traits, dynamic, no sealed member
            self.text3(node.type or b"")
            for key, item in node.fields:
                if key:
                    self.text3(key)
                    self.value3(item, depth + 1)
            out.append(0x01)
        elif node.kind == "array":
            self.u29(len(node.items) << 1 | 1)
            for key, item in node.fields:
                if key:
                    self.text3(key)
                    self.value3(item, depth + 1)
            out.append(0x01)
            for item in node.items:
                self.value3(item, depth + 1)
        else:
            self.u29(len(node.fields) << 1 | 1)
            out.append(0x01 if node.weak else 0x00)
            for key, item in node.fields:
                self.value3(key, depth + 1)
                self.value3(item, depth + 1)

    # AMF0
    def value0(self, value: Any, depth: int) -> None:
        """A value in the AMF0 stream: AMF0 where toAMF (MonaServer) writes AMF0, else a
        switch to AMF3 (``0x11``)."""
        out = self.out
        cls = value.__class__
        if value is None:
            out.append(0x05)
        elif value is True or value is False:
            out += bytes((0x01, value))
        elif cls is float or (
            cls is int and (self.amf0 or not MIN_INTEGER <= value <= MAX_INTEGER)
        ):
            out.append(0x00)
            out += _DOUBLE.pack(value)
        elif self.amf0 and cls is bytes:
            if len(value) > 0xFFFF:
                out.append(0x0C)
                out += _U32.pack(len(value))
            else:
                out.append(0x02)
                out += _U16.pack(len(value))
            out += value
        elif self.amf0 and cls is Node and node_in_amf0(value):
            self.node0(value, depth)
        else:
            out.append(0x11)
            self.value3(value, depth)

    def node0(self, node: Node, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise TooDeep
        out = self.out
        if node.kind == "date":
            out.append(0x0B)
            out += _DATE0.pack(node.value, 0)
            return
        index = self.objects0.get(id(node))
        if index is not None:
            if index > 0xFFFF:
                raise AMFError("more than 65,535 AMF0 objects to refer to")
            out.append(0x07)
            out += _U16.pack(index)
            return
        self.objects0[id(node)] = len(self.objects0)
        if node.kind == "array":
            out.append(0x0A)
            out += _U32.pack(len(node.items))
            for item in node.items:
                self.value0(item, depth + 1)
            return
        if node.type:
            out.append(0x10)
            self.name0(node.type)
        else:
            out.append(0x03)
        for key, item in node.fields:
            if key:
                self.name0(key)
                self.value0(item, depth + 1)
        out += b"\x00\x00\x09"

    def name0(self, name: bytes) -> None:
        if len(name) > 0xFFFF:
            raise AMFError("an AMF0 name is at most 65,535 bytes")
        self.out += _U16.pack(len(name))
        self.out += name


def node_in_amf0(node: Node) -> bool:
    """Whether toAMF0 writes *node* in AMF0 (MonaServer switches to AMF3 for mixed
    arrays, dictionaries and byte arrays, which AMF0 does not have)."""
    return node.kind in ("object", "date") or (node.kind == "array" and not node.fields)


def encode(values: list[Any], *, amf0: bool) -> bytes:
    """*values* as one AMF0 stream (AMF3 inside where toAMF writes it; with *amf0*, as
    toAMF0 does, AMF0 wherever it has the type)."""
    writer = _Writer(amf0)
    for value in values:
        writer.value0(value, 0)
    return bytes(writer.out)


# -- decoding ---------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0
        self.strings: list[bytes] = []
        self.objects: list[Any] = []
        self.traits: list[tuple[bytes, list[bytes], bool]] = []
        self.objects0: list[Any] = []

    def take(self, size: int) -> bytes:
        end = self.at + size
        if end > len(self.data):
            raise AMFError(f"{size} bytes announced at byte {self.at + 1}, past the end")
        chunk = self.data[self.at : end]
        self.at = end
        return chunk

    def byte(self) -> int:
        at = self.at
        self.at = at + 1
        return self.data[at]  # (past the end: IndexError, "truncated" for decode)

    # AMF3
    def u29(self) -> int:
        data, at = self.data, self.at
        b = data[at]
        if b < 0x80:
            self.at = at + 1
            return b
        n = b & 0x7F
        for i in range(1, 3):
            b = data[at + i]
            if b < 0x80:
                self.at = at + i + 1
                return n << 7 | b
            n = n << 7 | (b & 0x7F)
        self.at = at + 4
        return n << 8 | data[at + 3]

    def text3(self) -> bytes:
        data, at = self.data, self.at
        n = data[at]
        if n < 0x80 and n & 1:  # (the usual short inline string)
            end = at + 1 + (n >> 1)
            if end > len(data):
                raise AMFError(f"{n >> 1} bytes announced at byte {at + 2}, past the end")
            self.at = end
            value = data[at + 1 : end]
            if value:
                self.strings.append(value)
            return value
        n = self.u29()
        if not n & 1:
            known: bytes = self.ref(self.strings, n >> 1, "string")
            return known
        value = self.take(n >> 1)
        if value:
            self.strings.append(value)
        return value

    @staticmethod
    def ref(table: list[Any], index: int, what: str) -> Any:
        if index >= len(table):
            raise AMFError(f"a reference to {what} {index}, which does not exist")
        return table[index]

    def value3(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise TooDeep
        marker = self.byte()
        if marker <= 0x01:
            return None
        if marker <= 0x03:
            return marker == 0x03
        if marker == 0x04:
            n = self.u29()
            return n - 0x20000000 if n & 0x10000000 else n
        if marker == 0x05:
            return _DOUBLE.unpack(self.take(8))[0]
        if marker == 0x06:
            return self.text3()
        if marker > 0x11 or 0x0D <= marker <= 0x10:
            raise AMFError(f"AMF3 marker 0x{marker:02X} is not supported")
        n = self.u29()
        if not n & 1:
            return self.ref(self.objects, n >> 1, "object")
        if marker in (0x07, 0x0B):  # XML: its text
            value = self.take(n >> 1)
            self.objects.append(value)
            return value
        if marker == 0x08:
            node = Node("date", value=_DOUBLE.unpack(self.take(8))[0])
            self.objects.append(node)
            return node
        if marker == 0x0C:
            node = Node("bytes", value=self.take(n >> 1))
            self.objects.append(node)
            return node
        if marker == 0x09:
            node = Node("array")
            self.objects.append(node)
            while name := self.text3():
                node.fields.append((name, self.value3(depth + 1)))
            for _ in range(n >> 1):
                node.items.append(self.value3(depth + 1))
            return node
        if marker == 0x11:
            node = Node("dictionary", weak=self.byte() == 0x01)
            self.objects.append(node)
            for _ in range(n >> 1):
                key = self.value3(depth + 1)
                node.fields.append((key, self.value3(depth + 1)))
            return node
        return self.object3(n, depth)

    def object3(self, n: int, depth: int) -> Node:
        if not n & 2:
            name, sealed, dynamic = self.ref(self.traits, n >> 2, "traits")
        else:
            if n & 4:
                raise AMFError("externalizable objects are not supported")
            dynamic = bool(n & 8)
            name = self.text3()
            sealed = [self.text3() for _ in range(n >> 4)]
            self.traits.append((name, sealed, dynamic))
        node = Node("object", type=name or None)
        self.objects.append(node)
        for member in sealed:
            node.fields.append((member, self.value3(depth + 1)))
        if dynamic:
            while member := self.text3():
                node.fields.append((member, self.value3(depth + 1)))
        return node

    # AMF0
    def value0(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise TooDeep
        marker = self.byte()
        if marker == 0x00:
            return _DOUBLE.unpack(self.take(8))[0]
        if marker == 0x01:
            return self.byte() != 0
        if marker == 0x02:
            return self.take(_U16.unpack(self.take(2))[0])
        if marker in (0x05, 0x06):
            return None
        if marker == 0x07:
            return self.ref(self.objects0, _U16.unpack(self.take(2))[0], "object")
        if marker in (0x0C, 0x0F):  # (a long string; an XML document: its text)
            return self.take(_U32.unpack(self.take(4))[0])
        if marker == 0x0B:
            return Node("date", value=_DATE0.unpack(self.take(10))[0])
        if marker == 0x11:
            return self.value3(depth)
        if marker == 0x0A:
            count = _U32.unpack(self.take(4))[0]
            if count > len(self.data) - self.at:
                raise AMFError(f"an array of {count} values announced in fewer bytes")
            node = Node("array")
            self.objects0.append(node)
            for _ in range(count):
                node.items.append(self.value0(depth + 1))
            return node
        if marker in (0x03, 0x08, 0x10):
            if marker == 0x08:
                self.take(4)  # (the count is only a hint)
            name = self.take(_U16.unpack(self.take(2))[0]) if marker == 0x10 else None
            node = Node("object", type=name or None)
            self.objects0.append(node)
            while True:
                key = self.take(_U16.unpack(self.take(2))[0])
                if not key:
                    if self.byte() != 0x09:
                        raise AMFError("an object's end marker is missing")
                    return node
                node.fields.append((key, self.value0(depth + 1)))
        raise AMFError(f"AMF0 marker 0x{marker:02X} is not supported")


def decode(data: bytes) -> list[Any]:
    """The values of an AMF0 stream (with AMF3 inside), or raise :class:`AMFError` /
    :class:`~trio_mona._formats.tape.TooDeep`."""
    reader = _Reader(data)
    values = []
    try:
        while reader.at < len(data):
            values.append(reader.value0(0))
    except RecursionError:  # (the caller's stack was deep already)
        raise TooDeep from None
    except IndexError:
        raise AMFError("truncated") from None
    return values
