"""The runtime's side of ``data`` (docs/lua/data.rst): the Lua tree's changes go to
the store, and are committed before any byte sent after them is written.

The tree itself lives in Lua (``_lua/data.lua``), which reads it without calling
here. Each change calls :meth:`Persistence.put` or :meth:`Persistence.delete`; the
first change after a commit arms :attr:`Writes.commit`, so the next write to the
network (or the end of the executor's batch, whichever comes first) commits every
change made so far in one transaction.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

import trio

from .._core.errors import StartupError
from .._core.levels import NOTE
from .._net.writes import Writes
from .redis import RedisStore, is_redis_url
from .sqlite import SQLiteStore
from .store import Store, StoreError, Value

log = logging.getLogger("trio_mona")

#: Entries handed to Lua per call while the tree loads.
LOAD_CHUNK: Final = 32
#: Seconds between attempts while commits fail (the writes they hold wait meanwhile).
COMMIT_RETRY: Final = 0.25
#: Changes past which a handler's changes are committed while it runs: the commit's
#: time then counts toward its runaway bound, and what is left to commit when it is
#: stopped is small (a million changes committed after the stop held everyone for
#: seconds past the bound; docs/operations.rst, "Runaway code").
COMMIT_EARLY: Final = 10_000


def default_path(apps_dir: Path) -> Path:
    """Where ``data`` lives when no path is given: outside the applications folder
    (which hot reload watches), one file per applications folder, under
    ``$XDG_DATA_HOME/trio_mona`` (``~/.local/share/trio_mona``)."""
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    name = apps_dir.name or "root"
    digest = hashlib.sha256(os.fsencode(apps_dir)).hexdigest()[:12]
    return Path(base) / "trio_mona" / f"{name}-{digest}.sqlite"


#: ``trio_mona.data = none``: no store, and no ``data`` global (docs/lua/data.rst).
NO_DATA: Final = "none"


def open_store(setting: str, apps_dir: Path, sync: str, cluster: str = "default") -> Store:
    """The store that ``trio_mona.data`` names (a file or a Redis URL; empty:
    :func:`default_path`).

    Raises:
      StartupError: it cannot be used; the message names it and says why.
    """
    try:
        if is_redis_url(setting):
            return RedisStore(setting, cluster)
        if setting:
            return SQLiteStore(setting, sync=sync)
        path = default_path(apps_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path, sync=sync)
    except (StoreError, OSError) as exc:
        raise StartupError(str(exc)) from None


class Persistence:
    """Changes from Lua into the store, committed through the runtime's
    :class:`Writes` (see the module)."""

    def __init__(self, writes: Writes) -> None:
        self._writes = writes
        self.store: Store | None = None
        self._commit = self.commit  # (one bound method, armed on every change)
        #: Called with the reason when a commit over the network fails (the runtime
        #: refuses assignments until the store is back).
        self.on_failure: Callable[[str], None] = lambda reason: None
        #: Commits made (statistics: ``data_commits``).
        self.commits = 0
        #: Changes handed over since the last commit began (see COMMIT_EARLY).
        self._uncommitted = 0
        #: Set when commits start failing (what retry_while_held waits for).
        self._failing = trio.Event()

    def functions(self) -> dict[str, Callable[..., None]]:
        """The host functions ``_lua/data.lua`` calls."""
        return {"data_put": self.put, "data_delete": self.delete}

    def load(self, store: Store, into: Callable[..., None]) -> int:
        """Hand every stored entry to Lua (*into*: path, value pairs); returns how many."""
        self.store = store
        if isinstance(store, RedisStore):
            self._writes.commit_async = self.commit_async
        chunk: list[object] = []
        count = 0
        for path, value in store.load():
            chunk += (path, value)
            count += 1
            if len(chunk) >= 2 * LOAD_CHUNK:
                into(*chunk)
                chunk.clear()
        if chunk:
            into(*chunk)
        return count

    def put(self, *pairs: bytes | Value) -> None:
        store = self.store
        if store is None:
            return  # (no store: the runtime is stopping, or never started)
        put = store.put
        for index in range(0, len(pairs), 2):
            put(pairs[index], pairs[index + 1])  # type: ignore[arg-type]
        writes = self._writes
        writes.commit = self._commit
        self._uncommitted += len(pairs) // 2
        if self._uncommitted >= COMMIT_EARLY:
            writes.durable()

    def delete(self, path: bytes) -> None:
        if self.store is not None:
            self.store.delete(path)
            self._writes.commit = self._commit
            self._uncommitted += 1

    def commit(self) -> None:
        """Commit the changes made so far. When that fails they stay pending, the
        writes wait (:meth:`Writes.hold`) and the runtime tries again every
        :data:`COMMIT_RETRY` seconds (:meth:`retry_while_held`)."""
        if self.store is None:
            return
        self._uncommitted = 0
        try:
            self.store.commit()
        except StoreError as exc:
            self._failed(str(exc))
        else:
            self._worked()

    async def commit_async(self) -> None:
        """:meth:`commit` for a store over the network (Redis), awaited by the executor;
        not tried while Redis is known to be down (the cluster link commits on its
        return)."""
        store = self.store
        if not isinstance(store, RedisStore):
            return
        if store.down is not None:
            self._hold()
            return
        self._uncommitted = 0
        try:
            await store.commit_async()
        except StoreError as exc:
            self._failed(str(exc))
        else:
            self._worked()

    def _worked(self) -> None:
        self.commits += 1
        writes = self._writes
        if writes.held is not None:
            writes.release()
            log.log(NOTE, "data: committed again: the replies that waited are written")

    def _failed(self, failure: str) -> None:
        first = self._writes.held is None
        self._hold()
        if isinstance(self.store, RedisStore):
            if self.store.down is None:
                log.error(
                    "data: %s (the changes stay in memory and are committed when Redis is "
                    "back; replies written after them wait, and assignments fail until then)",
                    failure,
                )
            self.on_failure(failure)
        elif first:  # (once for a run of failures, not once per attempt)
            log.error(
                "data: cannot commit: %s (the changes stay in memory and are tried again; "
                "replies written after them wait until a commit works)",
                failure,
            )

    def _hold(self) -> None:
        """Nothing is written until a commit works; the retries begin."""
        self._writes.hold(self._commit)
        self._failing.set()

    async def retry_while_held(self, post_flush: Callable[[], None]) -> None:
        """(A task of the runtime.) While commits fail, have the executor try again
        every :data:`COMMIT_RETRY` seconds (*post_flush* asks it for a batch, whose end
        commits and then writes); asleep while they work."""
        writes = self._writes
        while True:
            await self._failing.wait()
            self._failing = trio.Event()
            while writes.held is not None:
                await trio.sleep(COMMIT_RETRY)
                post_flush()

    def close(self) -> None:
        """Commit what is pending and release the store. If that fails, the writes that
        waited for it are never written (they were never acknowledged)."""
        store, self.store = self.store, None
        writes = self._writes
        writes.commit = None
        if store is None:
            return
        try:
            store.close()
        except StoreError as exc:
            failure = str(exc)
        else:
            writes.release()
            return
        log.error(
            "data: the last changes are lost: %s (what was sent after them is not written)", failure
        )

        def never() -> None:
            writes.commit = never

        writes.hold(never)
