"""fromJSON's Python half: Python's parser, then the values as a tape (``tape.py``).

Strict JSON in UTF-8: no NaN or Infinity, no lone surrogates. A string in the date
layout toJSON writes becomes a date, an object that is only ``{"__raw": base64}`` a
byte array (docs/lua/conversions.rst).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Final

from .tape import DATE, MARK, MAX_DEPTH, Tapes, TooDeep, date_ms

_DATE: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z\Z")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_decoder: Final = json.JSONDecoder(parse_constant=_no_constant)
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


class _BeyondFloats(Exception):
    """A number beyond the largest float (``1e999``): toJSON could not write it back
    (infinity has no JSON form). The walk finds it, so that the parser keeps reading
    numbers in C (a Python hook per number made fromJSON 1.5x slower)."""


def _beyond_floats(text: str) -> bytes:
    """The message for :class:`_BeyondFloats`, naming the number as the text has it."""
    for found in _NUMBER.finditer(text):
        if math.isinf(float(found.group())):
            return f"the number {found.group()[:40]} is beyond the largest float".encode()
    return b"a number is beyond the largest float"


def _walk(value: Any, out: list[object], depth: int) -> None:
    """Append *value* (a list or a dict) to *out*; scalars inline, tables recursively."""
    if depth >= MAX_DEPTH:
        raise TooDeep
    append = out.append
    if value.__class__ is list:
        append(MARK)
        append(2 * len(value))
        items = value
    else:
        raw = value.get("__raw") if len(value) == 1 else None
        if isinstance(raw, str):
            out += (MARK, 3, b"__raw", base64.b64decode(raw, validate=True))
            return
        append(MARK)
        append(2 * len(value) + 1)
        items = value.values()
        keys = iter(value)
    is_map = items is not value
    for item in items:
        if is_map:
            append(next(keys).encode())
        cls = item.__class__
        if cls is str:
            if len(item) == 24 and item[10] == "T" and (found := _DATE.match(item)):
                ms = date_ms(found.groups())
                if ms is not None:
                    out += (MARK, DATE, ms)
                    continue
            append(item.encode())
        elif cls is int:
            if _INT64_MIN <= item <= _INT64_MAX:
                append(item)
            else:  # (a float, as the docs say, if one holds it)
                try:
                    append(float(item))
                except OverflowError:
                    raise _BeyondFloats from None
        elif cls is float:
            if item - item:  # (nan for an infinity, 0.0 for any other: the cheapest test)
                raise _BeyondFloats
            append(item)
        elif cls is list or cls is dict:
            _walk(item, out, depth + 1)
        else:
            append(item)  # bool, None


def read(tapes: Tapes, document: bytes) -> tuple[object, ...]:
    """The values of *document* (its top array's items, or its one value) as a tape,
    or ``(None, message)``."""
    try:
        text = document.decode()
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 (at byte {exc.start + 1})".encode()
    try:
        value = _decoder.decode(text)
        out: list[object] = []
        cls = value.__class__
        if cls is list:
            _walk(value, out, 0)
            return tapes.first(len(value), out[2:])  # (its items, not the array)
        _walk([value], out, 0)
        return tapes.first(1, out[2:])
    except json.JSONDecodeError as exc:
        where = len(text[: exc.pos].encode()) + 1
        return None, f"{exc.msg} (at byte {where})".encode()
    except _BeyondFloats:
        return None, _beyond_floats(text)
    except (RecursionError, TooDeep):
        return None, f"tables nested deeper than {MAX_DEPTH}".encode()
    except binascii.Error:
        return None, b"__raw is not base64"
    except UnicodeEncodeError:
        return None, b"a lone surrogate (\\ud800-\\udfff) in a string"
    except ValueError as exc:
        return None, str(exc).encode()


def flat_values(document: bytes) -> tuple[object, ...] | None:
    """The items of *document* when it is an array of plain scalars (strings not in
    the date layout, 64-bit integers, finite floats, booleans, null), as Lua receives
    them (strings as bytes); else None, and fromJSON's reader does the work. A call's
    arguments are mostly such an array: they then reach Lua with no tape."""
    try:
        value = _decoder.decode(document.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if value.__class__ is not list:
        return None
    found: list[object] = []
    for item in value:
        cls = item.__class__
        if cls is str:
            if len(item) == 24 and item[10] == "T" and _DATE.match(item):
                return None
            found.append(item.encode())
        elif cls is int:
            if not _INT64_MIN <= item <= _INT64_MAX:
                return None
            found.append(item)
        elif cls is float:
            if item - item:
                return None
            found.append(item)
        elif cls is bool or item is None:
            found.append(item)
        else:
            return None
    return tuple(found)
