"""The read hub: every connected socket registered once, read for its handle by the
executor itself.

Trio's ``wait_readable`` re-arms a one-shot epoll registration for every wait, and
parks and wakes the waiting task for every event. The hub instead registers each socket
once, edge-triggered, in a private epoll; the executor reads what is ready
(:meth:`Hub.poll`: each ready socket's handle ``on_readable`` reads what the kernel has
and posts it) between its batches, and when it has nothing to do it waits on that
epoll's descriptor (:meth:`Hub.wait`), so that a read is handled in the same task turn
as its wake-up (docs/performance.rst: one task switch fewer per event than a task of
its own). Other tasks that post an event while it waits wake it through an eventfd in
the same epoll (:meth:`Hub.wake`).

What the hub does *not* own: a socket's task still connects it, flushes and closes it,
and decides about back-pressure (a paused handle leaves data in the kernel and reads
again when it resumes). The hub only turns readiness into reads.
"""

from __future__ import annotations

import logging
import os
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


class _Wakeup:
    """The eventfd that :meth:`Hub.wake` writes: readiness for the waiting executor."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def on_readable(self, mask: int) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass  # (read already: two wake-ups, one wait)


class Hub:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._wakeup = _Wakeup()
        self._handles: dict[int, Readable] = {self._wakeup.fd: self._wakeup}
        self._epoll.register(self._wakeup.fd, select.EPOLLIN)
        #: True while the executor waits in :meth:`wait` (a post must wake it).
        self.waiting = False

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

    async def wait(self) -> None:
        """Until a socket is ready or :meth:`wake` is called (then :meth:`poll`)."""
        self.waiting = True
        try:
            await trio.lowlevel.wait_readable(self._epoll.fileno())
        finally:
            self.waiting = False

    def wake(self) -> None:
        """End :meth:`wait` (an event was posted while the executor waits)."""
        if self.waiting:
            self.waiting = False  # (one write per wait)
            os.eventfd_write(self._wakeup.fd, 1)

    def close(self) -> None:
        if not self._epoll.closed:
            self._epoll.close()
            os.close(self._wakeup.fd)
