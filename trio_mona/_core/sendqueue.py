"""What a socket was given to send and the kernel has not taken yet, with no I/O.

Every socket that writes has one (``_net/transport.py`` for TCP connections, LuaSocket's
TCP objects, UDP sockets with :class:`DatagramQueue`); one flusher writes any of them
(``_net/writes.py``). A stream's queue is chunks in order, trimmed by what a write took
(:meth:`SendQueue.advance`); its size counts toward a total shared by every connection
of the runtime (``trio_mona.max_unsent``). The limits are the consumer's policy: a Lua
``send`` past them fails (:meth:`SendQueue.refusal`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Final, Protocol

import attrs

#: Queued chunks handed to one gathering write (Linux allows 1,024).
GATHER_MAX: Final = 64


class Sink(Protocol):
    """Where a write goes: a non-blocking socket's send side (or a test's stand-in)."""

    def send(self, data: bytes | memoryview, /) -> int: ...

    def sendmsg(self, buffers: list[bytes | memoryview], /) -> int: ...


class DatagramSink(Protocol):
    """Where a datagram goes: a non-blocking UDP socket (or a test's stand-in)."""

    def send(self, data: bytes, /) -> int: ...

    def sendto(self, data: bytes, address: tuple[object, ...], /) -> int: ...


#: What a datagram queue is told of a datagram the sink refused for good.
Dropped = Callable[[bytes, "tuple[object, ...] | None", OSError], None]


@attrs.define(eq=False)
class Unsent:
    """Bytes queued and not written, over every connection of a runtime."""

    bytes: int = 0


@attrs.define(eq=False)
class SendQueue:
    """A stream's bytes waiting for the kernel (see the module docstring)."""

    total: Unsent
    #: The chunks, in order (empty: nothing to write; a queue is tested through this,
    #: in C, rather than a ``__bool__`` in Python on every send).
    items: deque[bytes | memoryview] = attrs.field(factory=deque)
    size: int = 0

    def push(self, chunk: bytes) -> bool:
        """Queue *chunk*; True when the queue was empty (a write is to be scheduled)."""
        items = self.items
        items.append(chunk)
        size = len(chunk)
        self.size += size
        self.total.bytes += size
        return len(items) == 1

    def write(self, sink: Sink) -> tuple[int, bool]:
        """One write from the front into *sink*: one chunk, or several gathered (no
        copy to join them); what *sink* raises goes through. Drops what it took;
        returns how much, and whether it took less than it was given (the kernel's
        buffer is full)."""
        items = self.items
        if len(items) == 1:  # (the usual reply: one chunk, no list to build)
            size = len(items[0])
            sent = sink.send(items[0])
            if sent == size:
                items.popleft()
                self.size -= sent
                self.total.bytes -= sent
                return sent, False
        else:
            front = list(islice(items, GATHER_MAX))
            size = sum(map(len, front))
            sent = sink.sendmsg(front)
        self.advance(sent)
        return sent, sent < size

    def advance(self, sent: int) -> None:
        """A write took *sent* bytes from the front: drop them, trimming a chunk it
        took part of (no copy)."""
        self.size -= sent
        self.total.bytes -= sent
        items = self.items
        while sent:
            chunk = items[0]
            if sent < len(chunk):
                items[0] = memoryview(chunk)[sent:]
                return
            sent -= len(chunk)
            items.popleft()

    def clear(self) -> None:
        """Drop everything (the socket failed or closed without flushing)."""
        self.total.bytes -= self.size
        self.items.clear()
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


@attrs.define(eq=False)
class DatagramQueue:
    """Datagrams waiting for the kernel, each with its destination (None: the
    connected peer); they keep their boundaries, so a write takes one or none."""

    items: deque[tuple[bytes, tuple[object, ...] | None]] = attrs.field(factory=deque)
    size: int = 0

    def push(self, data: bytes, destination: tuple[object, ...] | None) -> bool:
        """Queue a datagram; True when the queue was empty."""
        self.items.append((data, destination))
        self.size += len(data)
        return len(self.items) == 1

    def write(self, sink: DatagramSink, dropped: Dropped) -> tuple[int, bool]:
        """Write the datagrams in order into *sink* until none is left, or it raises
        ``BlockingIOError`` (the kernel's buffer is full). One it refuses otherwise goes
        to *dropped* and the rest go on (UDP: one undeliverable datagram does not stop
        the others). Returns the bytes written and whether the queue is empty."""
        items = self.items
        written = 0
        while items:
            data, destination = items[0]
            try:
                if destination is None:
                    sink.send(data)
                else:
                    sink.sendto(data, destination)
            except BlockingIOError:
                return written, False
            except OSError as exc:
                dropped(data, destination, exc)
            else:
                written += len(data)
            items.popleft()
            self.size -= len(data)
        return written, True

    def clear(self) -> None:
        self.items.clear()
        self.size = 0
