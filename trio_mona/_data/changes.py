"""Changes to the ``data`` tree, in order, and their bytes in the change log
(docs/lua/data.rst, "Storage")."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from .store import StoreError, Value

_LENGTH: Final = struct.Struct("<I")
#: One byte per change: a string put, true, false, a table, a subtree deleted.
_STRING, _TRUE, _FALSE, _TABLE, _DELETE = b"S", b"T", b"F", b"N", b"D"


class Changes:
    """Puts and subtree deletions in the order made: runs of puts (the last value per
    path: a later put to the same path within a run replaces the earlier one), each
    followed by the deletions made after them."""

    def __init__(self) -> None:
        self.runs: list[tuple[dict[bytes, Value], list[bytes]]] = [({}, [])]

    def put(self, path: bytes, value: Value) -> None:
        puts, deleted = self.runs[-1]
        if deleted:  # (a put after a delete goes after it)
            puts = {}
            self.runs.append((puts, []))
        puts[path] = value

    def delete(self, path: bytes) -> None:
        self.runs[-1][1].append(path)

    def __len__(self) -> int:
        """How many rows applying them writes or deletes."""
        return sum(len(puts) + len(deleted) for puts, deleted in self.runs)

    def extend(self, later: Changes) -> None:
        for puts, deleted in later.runs:
            for path, value in puts.items():
                self.put(path, value)
            for path in deleted:
                self.delete(path)

    def paths(self) -> Iterator[bytes]:
        """Every path a put or a delete names, in order."""
        for puts, deleted in self.runs:
            yield from puts
            yield from deleted

    def split(self, limit: int) -> list[Changes]:
        """The same changes in the same order, in parts of about *limit* packed bytes."""
        parts = [Changes()]
        size = 0
        for puts, deleted in self.runs:
            for path, value in puts.items():
                if size > limit:
                    parts.append(Changes())
                    size = 0
                parts[-1].put(path, value)
                size += 9 + len(path) + (len(value) if isinstance(value, bytes) else 0)
            for path in deleted:
                if size > limit:
                    parts.append(Changes())
                    size = 0
                parts[-1].delete(path)
                size += 5 + len(path)
        return parts

    def pack(self) -> bytes:
        parts: list[bytes] = []
        length = _LENGTH.pack
        for puts, deleted in self.runs:
            for path, value in puts.items():
                if value is None:
                    parts += (_TABLE, length(len(path)), path)
                elif value is True or value is False:
                    parts += (_TRUE if value else _FALSE, length(len(path)), path)
                else:
                    parts += (_STRING, length(len(path)), path, length(len(value)), value)
            for path in deleted:
                parts += (_DELETE, length(len(path)), path)
        return b"".join(parts)

    @classmethod
    def unpack(cls, payload: bytes) -> Changes:
        """Raises StoreError when *payload* is not what :meth:`pack` makes."""
        changes = cls()
        at, end = 0, len(payload)
        values: dict[bytes, Value] = {_TRUE: True, _FALSE: False, _TABLE: None}

        def field() -> bytes:
            nonlocal at
            if at + 4 > end:
                raise StoreError("a change record ends early")
            (size,) = _LENGTH.unpack_from(payload, at)
            if at + 4 + size > end:
                raise StoreError("a change record ends early")
            at += 4 + size
            return payload[at - size : at]

        while at < end:
            kind = payload[at : at + 1]
            at += 1
            if kind == _DELETE:
                changes.delete(field())
            elif kind == _STRING:
                path = field()
                changes.put(path, field())
            elif kind in values:
                changes.put(field(), values[kind])
            else:
                raise StoreError(f"a change record holds an unknown kind {kind!r}")
        return changes
