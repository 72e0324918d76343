"""The ``data`` tree in one SQLite file (docs/lua/data.rst, "Storage").

One table of ``(path, value)`` rows, a write-ahead log, and an exclusive lock held
while the runtime runs, so that a second process on the same file gets a clear error
instead of a database changed behind its in-memory copy. Changes wait in a list and
go in one transaction per :meth:`SQLiteStore.commit`, the last value of a key only
(measured: a row costs ~5 µs to write here, the rest of an assignment ~3 µs).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .store import SEPARATOR, StoreError, Value, parent_path

#: Marks a file as trio_mona's data (SQLite's application_id header field: "TMDA").
APPLICATION_ID: Final = 0x544D4441
SCHEMA_VERSION: Final = 1
SYNC_MODES: Final = ("normal", "full")

_PUT: Final = "INSERT OR REPLACE INTO data (path, value) VALUES (?, ?)"
_DELETE: Final = "DELETE FROM data WHERE path = ? OR (path >= ? AND path < ?)"


class SQLiteStore:
    """A :class:`~trio_mona._data.store.Store` in the SQLite file *path*.

    *sync* is ``"normal"`` (a commit survives the process being killed; the last ones
    may be lost if the machine loses power) or ``"full"`` (an fsync per commit).

    Raises:
      StoreError: the file cannot be used (locked by another process, not a database,
        not trio_mona's, unreadable, read-only), in one line naming it. Nothing in it
        is changed then.
    """

    def __init__(self, path: str | os.PathLike[str], *, sync: str = "normal") -> None:
        self.name = str(path)
        #: The changes since the last commit, in order: runs of puts (the last value per
        #: path) each followed by the subtrees deleted after them.
        self._changes: list[tuple[dict[bytes, Value], list[bytes]]] = [({}, [])]
        if sync not in SYNC_MODES:
            raise StoreError(f"unknown data_sync {sync!r}: choose one of {', '.join(SYNC_MODES)}")
        self._check_access(Path(path))
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            self._open(sync)
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(exc) from None
        except StoreError:
            self._db.close()
            raise

    def _check_access(self, path: Path) -> None:
        """The usual reasons first, in words (SQLite's would be "disk I/O error")."""
        if self.name == ":memory:":
            return
        folder = path.parent
        if not folder.is_dir():
            raise StoreError(f"{path}: cannot open the data file: its folder does not exist")
        if path.exists():
            if not os.access(path, os.R_OK):
                raise StoreError(f"{path}: cannot open the data file (permissions?)")
            if not os.access(path, os.W_OK):
                raise StoreError(f"{path}: the data file is read-only")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreError(f"{path}: its folder is read-only (SQLite writes a log beside it)")

    def _open(self, sync: str) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 0")
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id == 0 and tables == 0:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE data (path BLOB PRIMARY KEY, value) WITHOUT ROWID")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        elif application_id != APPLICATION_ID:
            raise StoreError(f"{self.name}: an SQLite database that is not trio_mona's data")
        else:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.name}: data written by another trio_mona version (schema "
                    f"{version}; this one reads {SCHEMA_VERSION})"
                )
            db.execute("PRAGMA journal_mode = WAL")
            # The write lock, now: a read-only file fails here, and from now on the
            # lock (kept: exclusive mode) keeps every other process out.
            db.execute("BEGIN IMMEDIATE")
            db.execute("COMMIT")
        db.execute(f"PRAGMA synchronous = {sync.upper()}")

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        why = {
            "database is locked": "in use by another process (one process per data file)",
            "file is not a database": "not an SQLite database (a corrupt or foreign file)",
            "unable to open database file": "cannot open the data file (permissions?)",
            "attempt to write a readonly database": "the data file is read-only",
        }.get(text, text)
        if "malformed" in text:
            why = f"the data file is corrupt ({text})"
        return StoreError(f"{self.name}: {why}")

    def load(self) -> Iterator[tuple[bytes, Value]]:
        tables = {b""}
        try:
            rows = self._db.execute("SELECT path, value FROM data ORDER BY path")
            for path, value in rows:
                if not isinstance(path, bytes) or not path or parent_path(path) not in tables:
                    raise StoreError(f"{self.name}: the data file is corrupt (an orphan entry)")
                if value is None:
                    tables.add(path)
                elif isinstance(value, int) and value in (0, 1):
                    value = bool(value)
                elif not isinstance(value, bytes):
                    kind = type(value).__name__
                    raise StoreError(f"{self.name}: the data file is corrupt (a {kind} value)")
                yield path, value
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def put(self, path: bytes, value: Value) -> None:
        puts, deleted = self._changes[-1]
        if deleted:  # (a put after a delete goes after it)
            puts, deleted = {}, []
            self._changes.append((puts, deleted))
        puts[path] = value

    def delete(self, path: bytes) -> None:
        self._changes[-1][1].append(path)

    def commit(self) -> None:
        changes = self._changes
        if len(changes) == 1 and not changes[0][0] and not changes[0][1]:
            return
        db = self._db
        try:
            db.execute("BEGIN")
            for puts, deleted in changes:
                db.executemany(_PUT, puts.items())
                db.executemany(_DELETE, map(_subtree, deleted))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise self._error(exc) from None
        self._changes = [({}, [])]

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()


def _subtree(path: bytes) -> tuple[bytes, bytes, bytes]:
    """The bounds of *path* and every path below it."""
    return path, path + SEPARATOR, path + b"\x01"
