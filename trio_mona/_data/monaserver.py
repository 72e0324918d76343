"""``trio-mona import-data``: a MonaServer ``data/`` folder into the store
(docs/lua/data.rst, "Moving from MonaServer").

MonaServer keeps one folder per key, the root folder being the root table; a key's
value is a file in its folder named by the MD5 (lowercase hex) of its content, and a
folder with sub-folders is a table. It wrote booleans as ``true``/``false`` and read
them back as booleans, and so does this import. A value file whose name is not its
content's MD5 is a write that never finished: MonaServer dropped those, and so does
this (reported).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Final

import attrs

from .store import SEPARATOR, Store, Value

_MD5_NAME: Final = re.compile(r"[0-9a-f]{32}")


@attrs.define
class Imported:
    """What a MonaServer folder holds, parents first, and what was left out."""

    entries: list[tuple[bytes, Value]] = attrs.field(factory=list)
    skipped: list[str] = attrs.field(factory=list)


def read_folder(root: Path) -> Imported:
    """Read MonaServer's data folder *root* (no store involved).

    Raises:
      OSError: *root* cannot be read.
    """
    found = Imported()
    _read(root, b"", found, top=True)
    return found


def _read(folder: Path, path: bytes, found: Imported, *, top: bool = False) -> bool:
    """Add what *folder* holds at *path*; whether it held anything."""
    values: list[tuple[float, bytes]] = []
    subfolders: list[Path] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            subfolders.append(Path(entry.path))
        elif entry.is_file(follow_symlinks=False) and _MD5_NAME.fullmatch(entry.name):
            content = Path(entry.path).read_bytes()
            if hashlib.md5(content, usedforsecurity=False).hexdigest() == entry.name:
                values.append((entry.stat().st_mtime, content))
            else:
                found.skipped.append(f"{entry.path}: its name is not its content's MD5")
        else:
            found.skipped.append(f"{entry.path}: not a value file")
    if subfolders or top:
        if values:
            found.skipped.append(f"{folder}: a value beside sub-keys (the table is kept)")
        mark = len(found.entries)
        if not top:
            found.entries.append((path, None))
        held = False
        for sub in subfolders:
            key = os.fsencode(sub.name)
            held = _read(sub, path + SEPARATOR + key if path else key, found) or held
        if not held and not top:
            del found.entries[mark:]  # (MonaServer drops empty folders too)
        return held
    if not values:
        return False
    if len(values) > 1:
        found.skipped.append(f"{folder}: {len(values)} values, the newest kept")
    content = max(values)[1]
    found.entries.append((path, _BOOLEANS.get(content, content)))
    return True


_BOOLEANS: Final[dict[bytes, Value]] = {b"true": True, b"false": False}


def import_into(store: Store, imported: Imported) -> int:
    """Merge *imported* into *store* and commit: a value replaces what is at its key
    (a table included), a table merges with a table there. Returns how many entries
    were written."""
    existing = dict(store.load())
    written = 0
    for path, value in imported.entries:
        old = existing.get(path, ...)
        if value is None and old is None:
            continue  # a table there already: merged
        if old is not ...:
            store.delete(path)
            _forget_below(existing, path)
        store.put(path, value)
        existing[path] = value
        written += 1
    store.commit()
    return written


def _forget_below(existing: dict[bytes, Value], path: bytes) -> None:
    prefix = path + SEPARATOR
    for other in [p for p in existing if p == path or p.startswith(prefix)]:
        del existing[other]
