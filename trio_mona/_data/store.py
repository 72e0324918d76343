"""What holds the ``data`` tree: one small interface (docs/lua/data.rst, "Storage").

A path names one entry: the keys from the root down, joined by a zero byte (keys
never contain one). An entry holds a string, a boolean, or a table (``None``: the
entries below it hold what it has). SQLite (``sqlite.py``) and Redis (``redis.py``,
shared by several processes) implement it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Protocol, TypeAlias

from .._core.errors import MonaError

#: What one entry holds: bytes or a boolean, or None for a table.
Value: TypeAlias = bytes | bool | None

#: Joins the keys of a path (a key never contains it).
SEPARATOR: Final = b"\x00"


class StoreError(MonaError):
    """The store cannot be opened or written; the message names it and says why."""


class Store(Protocol):
    """Entries by path. Changes take effect together at :meth:`commit`."""

    #: What the store is, for messages (a file's path).
    name: str

    def load(self) -> Iterator[tuple[bytes, Value]]:
        """Every entry, each table before the entries below it."""

    def put(self, path: bytes, value: Value) -> None:
        """Set the entry at *path* (its parent table exists)."""

    def delete(self, path: bytes) -> None:
        """Remove the entry at *path* and every entry below it."""

    def commit(self) -> None:
        """Make every change since the last commit durable, or none of them.

        Raises:
            StoreError: nothing was committed; the changes stay pending for the next
              commit.
        """

    def close(self) -> None:
        """Commit what is pending (if it can) and release the store."""


def parent_path(path: bytes) -> bytes:
    """The path of the table holding *path* (``b""`` is the root)."""
    cut = path.rfind(SEPARATOR)
    return b"" if cut < 0 else path[:cut]
