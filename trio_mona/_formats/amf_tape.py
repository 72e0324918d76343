"""toAMF/fromAMF's bridge: Lua's values as a tape (written by ``V.flatten`` in
``_formats/tape.lua``) become :class:`~trio_mona._formats.amf.Node` graphs, and decoded
graphs become the tape ``V.values`` builds (``tape.py``). Both keep shared and cyclic
tables (docs/lua/conversions.rst, "AMF").

The tape from Lua: plain values, and after :data:`~trio_mona._formats.tape.MARK` a tag:
``b"o"`` an object (its type or False, its field count, the pairs), ``b"a"`` an array
(its item count, the items, its field count, the pairs), ``b"d"`` a dictionary (weak
keys, the pair count, the pairs), ``b"t"`` a date (ms), ``b"b"`` a byte array (bytes),
``b"r"`` the k-th table of the tape again (k follows), ``b"n"`` a NaN.
"""

from __future__ import annotations

import binascii
import struct
from typing import Any, Final

from . import amf
from .tape import DATE, MARK, MAX_DEPTH, REF, WEAK, Tapes, TooDeep

_NAN: Final = float("nan")
_Node: Final = amf.Node


class _FromLua:
    def __init__(self, tape: list[Any]) -> None:
        self.next = iter(tape).__next__  # (a C method: the tape is read in order)
        self.made: list[amf.Node] = []

    def value(self, depth: int) -> Any:
        value = self.next()
        if value.__class__ is not float or value == value:
            return value
        tag = self.next()
        if tag == b"n":
            return _NAN
        if tag == b"r":
            return self.made[self.next() - 1]
        if depth > MAX_DEPTH:
            raise TooDeep
        node = amf.Node("object")
        self.made.append(node)
        if tag == b"t":
            node.kind, node.value = "date", float(self.next())
        elif tag == b"b":
            node.kind, node.value = "bytes", self.next()
        elif tag == b"d":
            node.kind, node.weak = "dictionary", bool(self.next())
            node.fields = [
                (self.value(depth + 1), self.value(depth + 1)) for _ in range(self.next())
            ]
        elif tag == b"o":
            node.type = self.next() or None
            node.fields = [
                (_name(self.value(depth + 1)), self.value(depth + 1)) for _ in range(self.next())
            ]
        else:
            node.kind = "array"
            node.items = [self.value(depth + 1) for _ in range(self.next())]
            node.fields = [
                (_name(self.value(depth + 1)), self.value(depth + 1)) for _ in range(self.next())
            ]
        return node


def _name(key: Any) -> bytes:
    """A field name as AMF has it: text (a number or boolean key as Lua writes it)."""
    if key.__class__ is bytes:
        return key
    if key is True or key is False:
        return b"true" if key else b"false"
    if key.__class__ is float and key.is_integer() and abs(key) < 2**53:
        return str(int(key)).encode()
    return str(key).encode()


def write(tapes: Tapes, amf0: bool, count: int, *chunk: Any) -> tuple[object, ...]:
    """toAMF / toAMF0: the AMF of the values the tape holds (its last chunk here, earlier
    ones pushed before), or ``(None, message)``."""
    tape = tapes.pushed(chunk)
    try:
        reader = _FromLua(tape)
        values = [reader.value(0) for _ in range(count)]
        return (amf.encode(values, amf0=amf0),)
    except amf.AMFError as exc:
        return None, str(exc).encode()
    except (TooDeep, RecursionError):
        return None, f"tables nested deeper than {MAX_DEPTH}".encode()


# -- fromAMF ----------------------------------------------------------------------------
class _ToLua:
    def __init__(self) -> None:
        self.out: list[object] = []
        self.made: dict[int, int] = {}  # id(node) -> its table's number in the tape

    def value(self, value: Any, depth: int) -> None:
        if value.__class__ is not _Node:
            self.out.append(value)
            return
        out = self.out
        known = self.made.get(id(value))
        if known is not None:
            out += (MARK, REF, known)
            return
        if depth > MAX_DEPTH:
            raise TooDeep
        if value.kind == "date":
            self.made[id(value)] = len(self.made) + 1
            out += (MARK, DATE, _milliseconds(value.value))
            return
        self.made[id(value)] = len(self.made) + 1
        if value.kind == "bytes":
            out += (MARK, 3, b"__raw", value.value)
            return
        fields = value.fields
        extra: list[tuple[bytes, object]] = []
        if value.kind == "dictionary":
            extra.append((b"__size", len(fields)))
            if value.weak:
                out += (MARK, WEAK)
        if value.type:
            extra.append((b"__type", value.type))
        out += (MARK, 2 * (len(value.items) + len(fields) + len(extra)) + 1)
        for index, item in enumerate(value.items, start=1):
            out.append(index)
            if item.__class__ is _Node:
                self.value(item, depth + 1)
            else:
                out.append(item)
        append = out.append
        for key, item in fields:
            if key.__class__ is bytes:
                append(key)
            else:
                self.value(key, depth + 1)
            if item.__class__ is _Node:
                self.value(item, depth + 1)
            else:
                append(item)
        for pair in extra:
            out += pair


def _milliseconds(ms: float) -> object:
    return int(ms) if ms == ms and abs(ms) < 2**62 else 0


def read(tapes: Tapes, data: bytes) -> tuple[object, ...]:
    """fromAMF: the values of *data* as a tape, or ``(None, message)``."""
    try:
        values = amf.decode(data)
        writer = _ToLua()
        for value in values:
            writer.value(value, 0)
    except amf.AMFError as exc:
        return None, str(exc).encode()
    except (TooDeep, RecursionError):
        return None, f"values nested deeper than {MAX_DEPTH}".encode()
    except (struct.error, binascii.Error, UnicodeError) as exc:  # (should not happen)
        return None, str(exc).encode()
    return tapes.first(len(values), writer.out)
