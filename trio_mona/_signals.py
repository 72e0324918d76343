"""SIGINT and SIGTERM for the command line.

Trio's signal receiver only learns of a signal when its task runs, which it cannot
while a Lua handler runs. These handlers record the signal where the runaway hook
(``_lua/jobs.lua``) looks every 100,000 Lua instructions, so a handler that never
returns is stopped within a fraction of a second, and wake Trio to shut down.

A Python signal handler runs only when the main thread runs Python: a LuaJIT loop
compiled to machine code (normal mode) calls no hook and never returns to it, nor
does one long C call. So a watchdog thread hears each signal too (through the
wakeup fd, passed on to Trio's), and if the handler has not run within
:data:`STUCK_SECONDS`, the process exits at once, saying why (docs/operations.rst).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

import trio

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
#: Seconds a stop signal may wait for the main thread before the process exits at once.
STUCK_SECONDS: Final = 0.75

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
    heard, told = os.pipe()
    os.set_blocking(told, False)
    trios = signal.set_wakeup_fd(told, warn_on_full_buffer=False)
    watchdog = threading.Thread(
        target=_watch, args=(heard, trios), name="trio_mona signal watchdog", daemon=True
    )
    watchdog.start()
    try:
        yield _received
    finally:
        signal.set_wakeup_fd(trios, warn_on_full_buffer=False)
        os.close(told)  # (the watchdog reads the end of the pipe, and ends)
        watchdog.join()
        os.close(heard)
        for number, old in previous.items():
            signal.signal(number, old)
        _received.clear()


def _watch(heard: int, trios: int) -> None:
    """(A thread.) Pass every signal byte on to Trio's wakeup fd; exit the process if a
    stop signal's handler has not run in the main thread after STUCK_SECONDS."""
    while chunk := os.read(heard, 64):
        if trios >= 0:
            try:
                os.write(trios, chunk)
            except OSError:
                pass  # (its buffer is full: Trio is awake already)
        if any(number in SIGNALS for number in chunk) and not _received:
            deadline = time.monotonic() + STUCK_SECONDS
            while not _received and time.monotonic() < deadline:
                time.sleep(0.01)
            if not _received:
                sys.stderr.write(
                    "trio-mona: a handler did not let the stop signal through within "
                    f"{STUCK_SECONDS:g} s (a LuaJIT loop compiled to machine code, or one "
                    "long C call): exiting at once\n"
                )
                sys.stderr.flush()
                os._exit(1)
