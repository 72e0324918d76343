"""What a LuaSocket TCP client's ``send`` accepted and the kernel has not taken yet
(docs/lua/luasocket.rst, "How waiting works").

A ``send`` hands its bytes over at once, up to :data:`SEND_ROOM` queued per socket, and
the executor writes every queue when its batch of events ends (:class:`Writes`), so a
batch of replies leaves back to back as MonaServer-style sends do. Past the room the
sending coroutine waits until the queue drains. Closing flushes what is queued first
(within ``trio_mona.linger``), as the kernel does with what it buffered.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Final

import attrs
import trio
from trio.lowlevel import notify_closing

from .._core.sendqueue import SendQueue, Unsent
from .luasocket_options import error_text
from .writes import flush

if TYPE_CHECKING:
    from .sockets import Sockets

log = logging.getLogger("trio_mona")

#: Bytes a socket's sends may have queued before a send waits for them to drain.
SEND_ROOM: Final = 256 * 1024


@attrs.define(eq=False, repr=False)
class Outgoing:
    sockets: Sockets
    sock: socket.socket
    #: (Not counted in the runtime's ``max_unsent``: a send past SEND_ROOM waits.)
    out: SendQueue = attrs.field(factory=lambda: SendQueue(Unsent()))
    #: Why writing failed (the next ``send`` reports it).
    error: bytes | None = None
    _flushing: bool = False
    #: Set when the queue has room again (a waiting send goes on).
    drained: trio.Event | None = None
    #: ``shutdown`` came with bytes queued: done once they are written.
    _then_shutdown: int | None = None
    #: ``close`` came with bytes queued: the socket closes once they are written.
    _then_close: bool = False
    #: ``shutdown("send")`` or ``("both")`` was called: a later ``send`` is "closed".
    shut: bool = False
    _linger_scope: trio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<LuaSocket send queue {self.out.size} bytes>"

    @property
    def size(self) -> int:
        return self.out.size

    @property
    def room(self) -> int:
        return SEND_ROOM - self.out.size

    def add(self, chunk: bytes) -> None:
        """Queue *chunk*; it is written when the batch ends (at once for the last known
        event, which keeps a lone connection's latency)."""
        first = self.out.push(chunk)
        if not self._flushing:
            self.sockets.writes.schedule(self, first)

    def write_queued(self) -> None:
        """Write what the kernel takes now; a task writes the rest as it drains."""
        if self._flushing or not self.out.items:
            return
        self.write_some(self.sock)
        if self.out.items and self.error is None:
            self._flushing = True
            self.sockets.spawn(self, lambda: flush(self, self.sock, self.out, self.sockets.writes))
        elif self._then_shutdown is not None:
            self._after_flush()  # (all written at once: the FIN follows now)

    # -- the flusher's part (writes.Flushable) ---------------------------------------------
    def writes_to(self, sock: socket.socket) -> bool:
        return self.error is None

    def write_some(self, sock: socket.socket) -> None:
        if not self.sockets.writes.durable():
            return  # (held while commits fail: the flusher task waits for one to work)
        out = self.out
        try:
            while out.items:
                sent, full = out.write(sock)
                self.sockets.bytes_sent += sent
                if full:
                    break
        except BlockingIOError:
            pass
        except OSError as exc:
            self._fail(error_text(exc))
        if out.size < SEND_ROOM and self.drained is not None:
            self.drained.set()
            self.drained = None

    def flush_ended(self, failure: OSError | str | None) -> None:
        if failure is not None:
            self._fail(b"closed")
        self._flushing = False
        if self.drained is not None:
            self.drained.set()
            self.drained = None
        self._after_flush()

    def _fail(self, error: bytes) -> None:
        self.error = error
        self.out.clear()

    def crashed(self) -> None:
        self._fail(b"closed")

    def shutdown(self, how: int) -> None:
        """Shut down part of the connection, after what is queued for ``SHUT_WR``."""
        if how != socket.SHUT_RD:
            self.shut = True
        if self.out.items and how != socket.SHUT_RD:
            self._then_shutdown = how
            self.write_queued()
            return
        try:
            self.sock.shutdown(how)
        except OSError:
            pass  # (LuaSocket returns 1 whatever happened)

    def close(self) -> None:
        """Close the socket, once what is queued is written (within the linger time)."""
        self.write_queued()
        if not self.out.items or self.error is not None:
            _close(self.sock)
            return
        self._then_close = True
        linger = self.sockets.settings.linger

        async def give_up() -> None:
            with trio.CancelScope() as self._linger_scope:
                await trio.sleep(linger)
                if self._then_close:
                    log.warning("%r: closed after the linger time with bytes unsent", self)
                    self._fail(b"closed")
                    self._then_close = False
                    _close(self.sock)

        self.sockets.spawn(self, give_up)

    def _after_flush(self) -> None:
        if self._then_shutdown is not None and self.error is None:
            how, self._then_shutdown = self._then_shutdown, None
            self.shutdown(how)
        if self._then_close:
            self._then_close = False
            _close(self.sock)
            if self._linger_scope is not None:
                self._linger_scope.cancel()


def _close(sock: socket.socket) -> None:
    if sock.fileno() >= 0:
        notify_closing(sock)
        sock.close()
