"""The ``data`` tree in one SQLite file (docs/lua/data.rst, "Storage").

One table of ``(path, value)`` rows, and an exclusive lock held while the runtime
runs, so that a second process on the same file gets a clear error instead of a
database changed behind its in-memory copy. A commit appends the changes to the
change log beside it (``_data/log.py``); they are folded into the table in one
transaction once 2,000 rows wait or a second has passed, the last value per key only
(measured here: a row costs ~5 µs to write, an SQLite commit ~35 µs).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .changes import Changes
from .log import ChangeLog
from .store import SEPARATOR, StoreError, Value, parent_path

#: Marks a file as trio_mona's data (SQLite's application_id header field: "TMDA").
APPLICATION_ID: Final = 0x544D4441
SCHEMA_VERSION: Final = 1
SYNC_MODES: Final = ("normal", "full")
#: Rows waiting in the change log, or seconds since the last fold, past which a commit
#: folds the log into the table (the loop waits for a fold: ~10 ms per 2,000 rows).
FOLD_ROWS: Final = 2000
FOLD_SECONDS: Final = 1.0

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
        #: The changes since the last commit.
        self._changes = Changes()
        #: Committed (in the log) and not folded into the table yet.
        self._unfolded = Changes()
        self._folded_at = time.monotonic()
        self._log: ChangeLog | None = None
        if sync not in SYNC_MODES:
            raise StoreError(f"unknown data_sync {sync!r}: choose one of {', '.join(SYNC_MODES)}")
        self._check_access(Path(path))
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            self._open(sync)
            if self.name != ":memory:":
                self._replay(Path(f"{path}-log"), sync == "full")
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(exc) from None
        except StoreError:
            self._db.close()
            raise
        except OSError as exc:
            self._db.close()
            raise StoreError(
                f"{self.name}-log: cannot use the change log: {exc.strerror}"
            ) from None

    def _replay(self, path: Path, sync: bool) -> None:
        """Fold what the change log holds (the process died before it could)."""
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"{path}: cannot read and write the change log (permissions?)")
        self._log = ChangeLog(path, sync=sync)
        records, self.torn_bytes = self._log.read()
        for changes in records:
            self._unfolded.extend(changes)
        self._fold()

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

    #: Bytes at the end of the change log that were not a whole record when it was
    #: replayed (a commit the process died writing: never acknowledged).
    torn_bytes = 0
    #: The changes waiting to be folded hold some that are in neither the log nor the
    #: table (a fold that failed): a commit is not done until they are.
    _unsaved = False

    def put(self, path: bytes, value: Value) -> None:
        self._changes.put(path, value)

    def delete(self, path: bytes) -> None:
        self._changes.delete(path)

    def commit(self) -> None:
        changes = self._changes
        count = len(changes)
        if count == 0:
            if self._unsaved:  # (a fold that failed: they are in memory only)
                self._fold()
            return
        fold = (
            self._log is None
            or count + len(self._unfolded) >= FOLD_ROWS
            or time.monotonic() - self._folded_at >= FOLD_SECONDS
        )
        if not fold:
            assert self._log is not None
            try:
                self._log.append(changes)
            except OSError as exc:
                raise StoreError(f"{self._log.path}: cannot write: {exc.strerror}") from None
        self._changes = Changes()
        if len(self._unfolded) == 0:
            self._unfolded = changes
        else:
            self._unfolded.extend(changes)
        if fold:  # (the table's own commit makes them durable: no record needed)
            self._unsaved = True
            self._fold()

    def _fold(self) -> None:
        """Write the committed changes into the table, and empty the log.

        Raises:
          StoreError: they stay in the log, to be folded by a later commit.
        """
        self._folded_at = time.monotonic()
        unfolded = self._unfolded
        if len(unfolded) == 0:
            return
        db = self._db
        try:
            db.execute("BEGIN")
            for puts, deleted in unfolded.runs:
                if puts:
                    db.executemany(_PUT, puts.items())
                if deleted:
                    db.executemany(_DELETE, map(_subtree, deleted))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise self._error(exc) from None
        self._unfolded = Changes()
        self._unsaved = False
        if self._log is not None:
            self._log.clear()

    def close(self) -> None:
        """Commit and fold what is pending; the change log is removed once empty."""
        try:
            self.commit()
            self._fold()
        finally:
            self._db.close()
            if self._log is not None:
                self._log.close(remove=len(self._unfolded) == 0)


def _subtree(path: bytes) -> tuple[bytes, bytes, bytes]:
    """The bounds of *path* and every path below it."""
    return path, path + SEPARATOR, path + b"\x01"
