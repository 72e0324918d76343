"""The read hub: one task that reads every connected socket for its handle.

Trio's ``wait_readable`` re-arms a one-shot epoll registration for every wait, and
parks and wakes the waiting task for every event. The hub instead registers each socket
once, edge-triggered, in a private epoll; it waits on that epoll's descriptor with one
``wait_readable`` per batch, and for each ready socket calls the handle's ``on_readable``,
which reads what the kernel has and posts it to the executor.

What the hub does *not* own: a socket's task still connects it, flushes and closes it,
and decides about back-pressure (a paused handle leaves data in the kernel and reads
again when it resumes). The hub only turns readiness into reads.
"""

from __future__ import annotations

import logging
import select
from typing import Final, Protocol

import trio

log = logging.getLogger("trio_mona")

#: epoll events the hub asks for: input and peer hang-up, edge-triggered.
EVENTS: Final = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
#: Any of these in a mask means the peer closed or the socket failed.
HANGUP: Final = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


class Readable(Protocol):
    def on_readable(self, mask: int) -> None:
        """Read what is available (the kernel will not report it again: edge-triggered)."""


class Hub:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._handles: dict[int, Readable] = {}

    def register(self, fd: int, handle: Readable) -> None:
        """Start reporting *fd*; if it is readable already, the next batch says so."""
        self._handles[fd] = handle
        self._epoll.register(fd, EVENTS)

    def unregister(self, fd: int) -> None:
        """Stop reporting *fd* (call it before closing the socket)."""
        if self._handles.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass  # already closed

    def poll(self) -> int:
        """Read every socket that is ready now, without waiting; return how many were."""
        handles = self._handles
        ready = self._epoll.poll(0)
        for fd, mask in ready:
            handle = handles.get(fd)
            if handle is not None:
                try:
                    handle.on_readable(mask)
                except Exception:
                    log.exception("internal error while reading %r", handle)
        return len(ready)

    async def run(self) -> None:
        """Dispatch readiness until cancelled."""
        epoll = self._epoll
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                self.poll()
        finally:
            epoll.close()
