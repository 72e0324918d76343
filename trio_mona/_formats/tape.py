"""How a reader written in Python hands its values to Lua: as one flat *tape* of plain
values, built into tables by ``V.values`` in ``_formats/tape.lua``, so a document
costs one crossing instead of one per element (docs/lua/conversions.rst, "Speed").

A tape holds bytes, integers, floats, booleans and None (nil); :data:`MARK` (a NaN,
which no reader yields as a value) followed by a code starts a table or a date: code
``2n`` an array of the next n values, ``2n + 1`` a map of the next n key/value pairs,
``-1`` a date whose milliseconds follow, ``-2`` the same table as the k-th one the tape
made (k follows, counting from 1 in the order the tables start), so that one table can
be in several places (an XML element is its parent's child by index and by name, an AMF
graph may share and cycle), ``-3`` the next table has weak keys.
"""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Sequence
from typing import Final

MARK: Final = float("nan")
DATE: Final = -1
REF: Final = -2
WEAK: Final = -3
#: Tables nested deeper than this are refused (as by the Lua writers: values.lua).
MAX_DEPTH: Final = 500
#: Values handed over per crossing (the rest on request: :class:`Tapes`); LuaJIT takes
#: at most ~8,000 results from one call.
CHUNK: Final = 4_000


def date_ms(parts: Sequence[str]) -> int | None:
    """The milliseconds since 1970 (UTC) of a date's year, month, day, hour, minute,
    second and fraction (up to 3 digits), or None if it is not a real date."""
    y, mo, d, h, mi, s = (int(part) for part in parts[:6])
    try:
        datetime.datetime(y, mo, d, h, mi, s)
    except ValueError:
        return None
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1000 + int(parts[6].ljust(3, "0"))


class TooDeep(Exception):
    """A document nests tables deeper than :data:`MAX_DEPTH`."""


class Tapes:
    """Hands a long tape over in chunks (a Lua call takes its results on the Lua stack,
    which has a bound): the first with the reader's answer, the others on request."""

    def __init__(self) -> None:
        self._tape: list[object] = []
        self._at = 0
        self._pushed: list[object] = []

    def push(self, *chunk: object) -> None:
        """A chunk of a tape from Lua, before the call that hands over its last one."""
        self._pushed += chunk

    def pushed(self, last: tuple[object, ...]) -> list[object]:
        """The whole tape from Lua: what was pushed, then *last*."""
        tape, self._pushed = self._pushed, []
        tape += last
        return tape

    def first(self, count: int, tape: list[object]) -> tuple[object, ...]:
        """What a reader returns: the count of top values, the tape's length, and the
        tape's first chunk."""
        self._tape, self._at = (tape, CHUNK) if len(tape) > CHUNK else ([], 0)
        return (count, len(tape), *tape[:CHUNK])

    def more(self) -> tuple[object, ...]:
        """The next chunk of the tape being handed over, after its length."""
        chunk = self._tape[self._at : self._at + CHUNK]
        self._at += CHUNK
        if self._at >= len(self._tape):
            self._tape, self._at = [], 0
        return (len(chunk), *chunk)
