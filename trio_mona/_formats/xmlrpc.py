"""fromXMLRPC's Python half: the safe parser of ``xml.py``, then each param's value as
Lua holds it, as a tape (``tape.py``; docs/lua/conversions.rst)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final
from xml.parsers import expat

from .tape import DATE, MARK, MAX_DEPTH, Tapes, TooDeep, date_ms
from .xml import Element, Refused, expat_message, parse

_INTEGER: Final = re.compile(r"[-+]?\d+\Z")
#: The ISO 8601 forms a date may have: toXMLRPC's, and XML-RPC's own 19980717T14:08:55.
_DATE: Final = re.compile(r"(\d{4})-?(\d\d)-?(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,3})\d*)?Z?\Z")


class Malformed(Exception):
    """Not an XML-RPC document (the message says why)."""


def _elements(element: Element) -> list[Element]:
    return [child for child in element[2] if child.__class__ is tuple]


def _text(element: Element) -> str:
    return "".join(child for child in element[2] if child.__class__ is str)


def _value(value: Element, out: list[object], depth: int) -> None:
    """The Lua form of one <value>."""
    if depth > MAX_DEPTH:
        raise TooDeep
    inner = _elements(value)
    if not inner:
        out.append(_text(value).encode())  # (no type: a string)
        return
    kind, attributes, _ = typed = inner[0]
    text = _text(typed)
    if kind in ("int", "i4", "i8"):
        if not _INTEGER.match(text.strip()):
            raise Malformed(f"<{kind}> holds {text!r}")
        number = int(text)
        out.append(number if -(2**63) <= number < 2**63 else float(number))
    elif kind == "double":
        try:
            out.append(float(text))
        except ValueError:
            raise Malformed(f"<double> holds {text!r}") from None
    elif kind == "boolean":
        if text.strip() not in ("0", "1"):
            raise Malformed(f"<boolean> holds {text!r}")
        out.append(text.strip() == "1")
    elif kind == "string":
        out.append(text.encode())
    elif kind == "nil":
        out.append(None)
    elif kind == "dateTime.iso8601":
        found = _DATE.match(text.strip())
        ms = date_ms(found.groups(default="0")) if found else None
        if ms is None:
            raise Malformed(f"<dateTime.iso8601> holds {text!r}")
        out += (MARK, DATE, ms)
    elif kind == "base64":
        out += (MARK, 3, b"__raw", base64.b64decode("".join(text.split()), validate=True))
    elif kind == "struct":
        members = [m for m in _elements(typed) if m[0] == "member"]
        type_name = dict(attributes).get("type")
        out += (MARK, 2 * (len(members) + (type_name is not None)) + 1)
        if type_name is not None:
            out += (b"__type", type_name.encode())
        for member in members:
            parts = {child[0]: child for child in _elements(member)}
            if "name" not in parts or "value" not in parts:
                raise Malformed("a <member> needs a <name> and a <value>")
            out.append(_text(parts["name"]).encode())
            _value(parts["value"], out, depth + 1)
    elif kind == "array":
        data = next((d for d in _elements(typed) if d[0] == "data"), None)
        if data is None:
            raise Malformed("an <array> needs its <data>")
        values = [v for v in _elements(data) if v[0] == "value"]
        out += (MARK, 2 * len(values))
        for item in values:
            _value(item, out, depth + 1)
    else:
        raise Malformed(f"<{kind}> is no XML-RPC type")


def _values(top: list[Element | str]) -> tuple[int, list[object]]:
    roots = [node for node in top if node.__class__ is tuple]
    if len(roots) != 1 or roots[0][0] not in ("methodResponse", "methodCall"):
        raise Malformed("not a methodResponse or methodCall")
    root: Element = roots[0]
    out: list[object] = []
    count = 0
    parts = {child[0]: child for child in _elements(root)}
    if root[0] == "methodCall":  # (the method's name comes first)
        if "methodName" not in parts:
            raise Malformed("a methodCall needs its <methodName>")
        out.append(_text(parts["methodName"]).encode())
        count += 1
    if "fault" in parts:  # (a fault is one value: its struct)
        fault = [v for v in _elements(parts["fault"]) if v[0] == "value"]
        if not fault:
            raise Malformed("a <fault> needs its <value>")
        _value(fault[0], out, 1)
        return count + 1, out
    for param in _elements(parts["params"]) if "params" in parts else []:
        values = [v for v in _elements(param) if v[0] == "value"]
        if param[0] != "param" or len(values) != 1:
            raise Malformed("a <param> holds one <value>")
        _value(values[0], out, 1)
        count += 1
    return count, out


def read(tapes: Tapes, document: bytes) -> tuple[object, ...]:
    """The values of *document*'s params as a tape, or ``(None, message)``."""
    try:
        _, top = parse(document)
        count, out = _values(top)
    except expat.ExpatError as exc:
        return None, expat_message(exc)
    except Refused:
        return None, b"entity declarations and external entities are refused"
    except (TooDeep, RecursionError):
        return None, f"values nested deeper than {MAX_DEPTH}".encode()
    except Malformed as exc:
        return None, str(exc).encode()
    except binascii.Error:
        return None, b"<base64> is not base64"
    return tapes.first(count, out)
