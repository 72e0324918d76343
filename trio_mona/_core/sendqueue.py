"""What a socket was given to send and the kernel has not taken yet, with no I/O.

Every socket that writes has one (``_net/transport.py`` for TCP connections, LuaSocket's
TCP objects, UDP sockets with :class:`DatagramQueue`); one flusher writes any of them
(``_net/writes.py``). A stream's queue is chunks in order, trimmed by what a write took
(:meth:`SendQueue.advance`); its size counts toward a total shared by every connection
of the runtime (``trio_mona.max_unsent``). The limits are the consumer's policy: a Lua
``send`` past them fails (:meth:`SendQueue.refusal`), its "room" is what it may hold
before asking again (:meth:`SendQueue.room`).
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Final

import attrs

#: Queued chunks handed to one gathering write (Linux allows 1,024).
GATHER_MAX: Final = 64


@attrs.define(eq=False)
class Unsent:
    """Bytes queued and not written, over every connection of a runtime."""

    bytes: int = 0


@attrs.define(eq=False)
class SendQueue:
    """A stream's bytes waiting for the kernel (see the module docstring)."""

    total: Unsent
    chunks: deque[bytes | memoryview] = attrs.field(factory=deque)
    size: int = 0

    def __bool__(self) -> bool:
        return bool(self.chunks)

    def push(self, chunk: bytes) -> bool:
        """Queue *chunk*; True when the queue was empty (a write is to be scheduled)."""
        chunks = self.chunks
        chunks.append(chunk)
        size = len(chunk)
        self.size += size
        self.total.bytes += size
        return len(chunks) == 1

    def front(self) -> list[bytes | memoryview]:
        """The chunks one gathering write takes from the front."""
        return list(islice(self.chunks, GATHER_MAX))

    def advance(self, sent: int) -> None:
        """A write took *sent* bytes from the front: drop them, trimming a chunk it
        took part of (no copy)."""
        self.size -= sent
        self.total.bytes -= sent
        chunks = self.chunks
        while sent:
            chunk = chunks[0]
            if sent < len(chunk):
                chunks[0] = memoryview(chunk)[sent:]
                return
            sent -= len(chunk)
            chunks.popleft()

    def clear(self) -> None:
        """Drop everything (the socket failed or closed without flushing)."""
        self.total.bytes -= self.size
        self.chunks.clear()
        self.size = 0

    def refusal(self, extra: int, hard_limit: int, max_unsent: int) -> str | None:
        """Why *extra* more bytes may not be queued, or None (they may)."""
        if self.size + extra > hard_limit:
            return f"send queue full: {self.size} bytes unsent, limit {hard_limit}"
        if self.total.bytes + extra > max_unsent:
            return (
                f"send queue full: {self.total.bytes} bytes unsent across connections, "
                f"limit {max_unsent} (trio_mona.max_unsent)"
            )
        return None

    def room(self, hard_limit: int, max_unsent: int) -> int:
        """How many bytes more may be queued within both limits."""
        return min(hard_limit - self.size, max_unsent - self.total.bytes)


@attrs.define(eq=False)
class DatagramQueue:
    """Datagrams waiting for the kernel, each with its destination (None: the
    connected peer); they keep their boundaries, so a write takes one or none."""

    datagrams: deque[tuple[bytes, tuple[object, ...] | None]] = attrs.field(factory=deque)
    size: int = 0

    def __bool__(self) -> bool:
        return bool(self.datagrams)

    def push(self, data: bytes, destination: tuple[object, ...] | None) -> bool:
        """Queue a datagram; True when the queue was empty."""
        self.datagrams.append((data, destination))
        self.size += len(data)
        return len(self.datagrams) == 1

    def advance(self) -> None:
        """The first datagram is done with (written, or dropped for an error)."""
        data, _ = self.datagrams.popleft()
        self.size -= len(data)

    def clear(self) -> None:
        self.datagrams.clear()
        self.size = 0
