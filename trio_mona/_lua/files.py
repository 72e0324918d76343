"""The files applications reach: Lua sources for ``require``/``dofile``/``loadfile``,
and folder listings for ``mona:listPaths``.

In sandbox mode both stay inside the applications folder: every path is resolved
(``..`` and symbolic links included) before it is opened, and one that lands outside
is refused (docs: lua/safety).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import attrs

from .._core.errors import os_message

#: How a Lua table is made from a list of dicts (the bridge's ``sequence``).
MakeSequence = Callable[[list[dict[str, object]]], object]


@attrs.frozen
class AppFiles:
    """The files of the applications folder *apps_dir*; *confined* in sandbox mode."""

    apps_dir: Path
    confined: bool

    def _inside(self, path: str) -> str | None:
        """*path* resolved, or None when confinement refuses it."""
        if not self.confined:
            return path
        real = os.path.realpath(path)
        top = os.fspath(self.apps_dir)
        if real == top or real.startswith(top + os.sep):
            return real
        return None

    def read_source(self, *candidates: bytes) -> tuple[bytes, bytes] | tuple[None, bytes]:
        """The first candidate that is a readable file: its path and its bytes; or None
        and why nothing was found."""
        reason = "not in the application's folders"
        for candidate in candidates:
            path = self._inside(os.fsdecode(candidate))
            if path is None:
                reason = "outside the applications folder: sandbox mode"
                continue
            try:
                with open(path, "rb") as file:
                    return candidate, file.read()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
            except ValueError:  # a NUL in the name
                return None, b"invalid file name"
            except OSError as exc:
                return None, f"cannot read: {os_message(exc)}".encode()
        return None, reason.encode()

    def list_paths(
        self, directory: bytes, sequence: MakeSequence
    ) -> tuple[object, None] | tuple[None, bytes]:
        """``mona:listPaths``: File descriptions of a folder, relative to the apps folder."""
        name = directory.decode("utf-8", "replace")
        folder = self.apps_dir / name.lstrip("/")
        if "\0" in name:
            return None, b"listPaths: invalid folder name"
        if self._inside(os.fspath(folder)) is None:
            return None, f"listPaths: '{name}' is outside the applications folder".encode()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            return None, f"listPaths: cannot list '{name}': {os_message(exc)}".encode()
        files = []
        for entry in entries:
            try:
                info = entry.stat()
            except OSError:
                continue  # vanished meanwhile
            is_folder = entry.is_dir()
            base, dot, extension = entry.name.rpartition(".")
            if not dot or not base:
                base, extension = entry.name, ""
            files.append(
                {
                    "name": entry.name,
                    "baseName": base,
                    "extension": extension,
                    "parent": str(folder.resolve()) + "/",
                    "size": 0 if is_folder else info.st_size,
                    "lastModified": int(info.st_mtime),
                    "isFolder": is_folder,
                    "value": str(Path(entry.path).resolve()) + ("/" if is_folder else ""),
                }
            )
        return sequence(files), None
