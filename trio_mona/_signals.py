"""SIGINT and SIGTERM for the command line.

Trio's signal receiver only learns of a signal when its task runs, which it cannot
while a Lua handler runs. These handlers record the signal where the runaway hook
(``_lua/prelude.lua``) looks every million Lua instructions, so a handler that never
returns is stopped within a fraction of a second, and wake Trio to shut down.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

import trio

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

#: The stop signals received while :func:`catching_stop_signals` is active.
_received: list[int] = []


def stop_requested() -> bool:
    """A stop signal arrived: every Lua handler should end now."""
    return bool(_received)


@contextmanager
def catching_stop_signals(on_signal: Callable[[int], None]) -> Iterator[list[int]]:
    """Catch SIGINT and SIGTERM until the block ends; *on_signal(signum)* runs in Trio
    for each. Yields the list of signals received. (A KeyboardInterrupt raised while
    Lua runs would be swallowed by Lua's pcall, so none is raised.)"""
    token = trio.lowlevel.current_trio_token()

    def handler(signum: int, frame: FrameType | None) -> None:
        _received.append(signum)
        token.run_sync_soon(on_signal, signum)

    previous = {number: signal.signal(number, handler) for number in SIGNALS}
    try:
        yield _received
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
        _received.clear()
