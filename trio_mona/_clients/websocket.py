"""A session's WebSocket side, after the upgrade (docs/clients/websocket.rst): messages
out within the send limits, pings and their round trip, the close.

It writes through its session's transport (:class:`Pipe`): a reliable message queues
up to ``trio_mona.hard_limit``, past which the client is closed with 1008 (others are
never slowed: each connection has its own queue); an unreliable one
(``writer.reliable = false``) is dropped, and counted, while the queue is over
``trio_mona.soft_limit``.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from .._core.config import WebSocketSettings
from .._core.sendqueue import SendQueue
from .._proto.websocket import GOING_AWAY, POLICY, WebSocketServer

log = logging.getLogger("trio_mona")


class Pipe(Protocol):
    """What the channel uses of its session (a transport)."""

    queue: SendQueue

    @property
    def connected(self) -> bool: ...

    def send(self, data: bytes) -> int | tuple[None, bytes]: ...

    def enqueue(self, data: bytes) -> None: ...

    def write_queued(self) -> None: ...

    def close(self) -> None: ...

    def close_now(self) -> None: ...


@attrs.define(eq=False)
class WebSocketChannel:
    """One WebSocket connection's outbound side (see the module docstring)."""

    pipe: Pipe
    core: WebSocketServer
    settings: WebSocketSettings
    soft_limit: int
    #: Messages dropped as unreliable while the queue was long.
    dropped: int = 0
    #: The last ping's round trip, in milliseconds.
    ping_ms: int = 0
    _pings: trio.CancelScope | None = None

    def send(self, message: bytes, *, text: bool = True, reliable: bool = True) -> bool:
        """Send one message (*message*: UTF-8 text, or binary); False when the client is
        gone or was closed for it (past the hard limit)."""
        core = self.core
        if not core.open:
            return False
        if not reliable and self.pipe.queue.size > self.soft_limit:
            self.dropped += 1
            return True
        result = self.pipe.send(core.message(message, text=text))
        if result.__class__ is tuple:
            if not self.pipe.connected:
                return False  # (it went away: its end is reported as any end is)
            refusal = result[1].decode()
            log.warning("a WebSocket client does not read: %s; closed (1008)", refusal)
            # (its queue is full and it does not read: the close frame would wait out the
            # linger time behind it, so the connection closes now, the frame made anyway)
            self.core.close(POLICY, "the client does not read what it is sent")
            self.pipe.close_now()
            return False
        return True

    def control(self) -> None:
        """Send what the core has to say on its own (a pong, a close in answer)."""
        data = self.core.data_to_send()
        if data:
            self.pipe.enqueue(data)

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame (once), then close the connection after it."""
        self.pipe.enqueue(self.core.close(code, reason))
        self.pipe.close()

    # -- liveness -----------------------------------------------------------------------------
    def start_pings(self, spawn: Callable[[Callable[[], object]], None]) -> None:
        """Ping every ``[WebSocket] ping`` seconds (the round trip: :attr:`ping_ms`)."""
        scope = self._pings = trio.CancelScope()

        async def pinging() -> None:
            with scope:
                while self.core.open:
                    await trio.sleep(self.settings.ping)
                    self.ping()

        spawn(pinging)

    def ping(self) -> None:
        if self.core.open:
            self.pipe.enqueue(self.core.ping(struct.pack("!d", time.monotonic())))
            self.pipe.write_queued()

    def pinged(self, payload: bytes) -> None:
        """A pong: its payload is the time the ping left."""
        if len(payload) == 8:
            (sent,) = struct.unpack("!d", payload)
            self.ping_ms = max(0, int((time.monotonic() - sent) * 1000))

    def ended(self) -> None:
        if self._pings is not None:
            self._pings.cancel()


#: The close code of a client silent past ``[WebSocket] timeout``.
SILENT = GOING_AWAY
