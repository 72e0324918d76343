"""fromJSON's Python half: Python's parser, then the values as a tape (``tape.py``).

Strict JSON in UTF-8: no NaN or Infinity, no lone surrogates. A string in the date
layout toJSON writes becomes a date, an object that is only ``{"__raw": base64}`` a
byte array (docs/lua/conversions.rst).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime
import json
import re
from typing import Any, Final

from .tape import DATE, MARK, MAX_DEPTH, Tapes, TooDeep

_DATE: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z\Z")
_INT64: Final = range(-(2**63), 2**63)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_decoder: Final = json.JSONDecoder(parse_constant=_no_constant)


def _date_ms(match: re.Match[str]) -> int | None:
    y, mo, d, h, mi, s, ms = (int(part) for part in match.groups())
    try:
        datetime.datetime(y, mo, d, h, mi, s)
    except ValueError:
        return None  # (not a real date: it stays a string)
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1000 + ms


def _walk(value: Any, out: list[object], depth: int) -> None:
    cls = value.__class__
    if cls is str:
        found = _DATE.match(value) if len(value) == 24 else None
        ms = _date_ms(found) if found else None
        if ms is None:
            out.append(value.encode())
        else:
            out += (MARK, DATE, ms)
    elif cls is list:
        if depth >= MAX_DEPTH:
            raise TooDeep
        out += (MARK, 2 * len(value))
        for item in value:
            _walk(item, out, depth + 1)
    elif cls is dict:
        if depth >= MAX_DEPTH:
            raise TooDeep
        raw = value.get("__raw") if len(value) == 1 else None
        if isinstance(raw, str):
            out += (MARK, 3, b"__raw", base64.b64decode(raw, validate=True))
            return
        out += (MARK, 2 * len(value) + 1)
        for key, item in value.items():
            out.append(key.encode())
            _walk(item, out, depth + 1)
    elif cls is int:
        out.append(value if value in _INT64 else float(value))
    else:
        out.append(value)  # float, bool, None


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
        if value.__class__ is list:
            for item in value:
                _walk(item, out, 1)
            return tapes.first(len(value), out)
        _walk(value, out, 0)
        return tapes.first(1, out)
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
