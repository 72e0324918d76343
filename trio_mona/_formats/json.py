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


def _finite(text: str) -> float:
    """A JSON number as a float; one beyond the largest float (``1e999``) is refused,
    as toJSON could not write it back (infinity has no JSON form)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is beyond the largest float")
    return value


def _integer(text: str) -> int | float:
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        return _finite(text)  # (beyond 64 bits: a float, as the docs say, if one holds it)
    return value


_decoder: Final = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite, parse_int=_integer
)


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
            append(item)  # (within 64 bits: _integer made the others floats)
        elif cls is list or cls is dict:
            _walk(item, out, depth + 1)
        else:
            append(item)  # float, bool, None


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
    except (RecursionError, TooDeep):
        return None, f"tables nested deeper than {MAX_DEPTH}".encode()
    except binascii.Error:
        return None, b"__raw is not base64"
    except UnicodeEncodeError:
        return None, b"a lone surrogate (\\ud800-\\udfff) in a string"
    except ValueError as exc:
        return None, str(exc).encode()
