"""Handle tasks whose failures stay with their handle (:func:`start_contained`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import trio

log = logging.getLogger("trio_mona")

#: What Lua reads in ``error`` after a handle closed on an unexpected error.
INTERNAL_ERROR: Final = "internal error (logged by the runtime)"


class Crashable(Protocol):
    def crashed(self) -> None:
        """One of its tasks failed unexpectedly: close, reporting INTERNAL_ERROR."""


def start_contained(
    nursery: trio.Nursery, handle: Crashable, task: Callable[[], Awaitable[None]]
) -> None:
    """Start one of *handle*'s tasks so that an unexpected error in it stays with that
    handle: logged with its traceback, then the handle closes itself; the runtime's
    nursery (and so every other socket) never sees it."""
    nursery.start_soon(_contained, handle, task)


async def _contained(handle: Crashable, task: Callable[[], Awaitable[None]]) -> None:
    try:
        await task()
    except Exception:
        log.exception("internal error in %r: it is closed", handle)
        try:
            handle.crashed()
        except Exception:
            log.exception("internal error while closing %r", handle)
