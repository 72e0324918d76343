"""The change log beside the SQLite file (docs/lua/data.rst, "Storage"): each commit
is one record appended with one ``write``, so that a commit costs a system call and
not an SQLite transaction (measured ~35 µs each here); the records are folded into
the database in bulk later, and replayed at start if the process died first.

A record is its length, its CRC-32 and the packed :class:`~.changes.Changes`. A
record cut short (the process died while writing it) or garbled ends the replay:
nothing after it was acknowledged, since no byte is sent before its commit returns.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Final

from .changes import Changes
from .store import StoreError

_HEADER: Final = struct.Struct("<II")


class ChangeLog:
    """The append-only file *path*; *sync*: an fsync after every record."""

    def __init__(self, path: Path, *, sync: bool) -> None:
        self.path = path
        self._sync = sync
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def read(self) -> tuple[list[Changes], int]:
        """The records in order, and how many bytes at the end were not a whole one."""
        data = Path(self.path).read_bytes()
        records: list[Changes] = []
        at = 0
        while at + _HEADER.size <= len(data):
            size, checksum = _HEADER.unpack_from(data, at)
            payload = data[at + _HEADER.size : at + _HEADER.size + size]
            if len(payload) < size or zlib.crc32(payload) != checksum:
                break
            try:
                records.append(Changes.unpack(payload))
            except StoreError:
                break
            at += _HEADER.size + size
        return records, len(data) - at

    def append(self, changes: Changes) -> None:
        """Raises OSError when the record could not be written whole; what was written
        of it is cut off again, so that the log ends on a whole record and a record
        appended later (once there is room) is replayed."""
        payload = changes.pack()
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        start = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, record)
            while written < len(record):  # (a short write: the rest, at the end)
                written += os.write(self._fd, record[written:])
            if self._sync:
                os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass  # (the replay stops at the cut record: nothing after it is lost)
            raise

    def clear(self) -> None:
        """Every record is in the database now."""
        os.ftruncate(self._fd, 0)
        if self._sync:
            os.fsync(self._fd)

    def close(self, *, remove: bool) -> None:
        os.close(self._fd)
        if remove:
            self.path.unlink(missing_ok=True)
