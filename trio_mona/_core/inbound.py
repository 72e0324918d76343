"""What a TCP connection has read and not yet handed to Lua, and what ``onData`` kept:
the Python half of the "rest" rule and of read-ahead, with no I/O (docs/lua/tcp.rst).

A connection reads into this (:meth:`Inbound.read`), the executor takes what ``onData``
is to get now (:meth:`Inbound.take`) and says what it left (:meth:`Inbound.keep`). When
the connection stopped reading for this (:attr:`Inbound.paused`: far enough ahead, or
at the end of the stream with reads not taken yet), whoever takes tells it after the
take (the transport's ``resume_reading``). A
job that stopped for its budget goes on at the connection's next *turn* (an empty read
posted behind every other socket's events); bytes read meanwhile wait for that turn,
so one connection takes one turn at a time however many reads it has queued.
"""

from __future__ import annotations

from typing import Final

import attrs

#: Unconsumed bytes (read but not yet given to Lua) above which reading pauses.
READ_AHEAD: Final = 256 * 1024
#: Bytes a connection asks of the kernel per read (so it reads at most this much past
#: READ_AHEAD).
RECV_SIZE: Final = 65536


@attrs.define(eq=False)
class Inbound:
    #: Bytes kept by the rest rule, prepended to the next delivery.
    kept: bytes = b""
    #: How many bytes at the end of ``kept`` onData has not seen yet (its job stopped
    #: for its budget; they are read but not consumed).
    unseen: int = 0
    #: Bytes read while such a turn is ahead: they wait for it (not consumed).
    later: list[bytes] = attrs.field(factory=list)
    #: Bytes read and not yet taken by the executor.
    unconsumed: int = 0
    #: The reader waits for takes (set and cleared by the reader): after a take, tell it.
    paused: bool = False

    def read(self, size: int) -> None:
        self.unconsumed += size

    @property
    def full(self) -> bool:
        """Read far enough ahead of Lua: reading pauses until the executor takes more."""
        return self.unconsumed >= READ_AHEAD

    def take(self, data: bytes) -> bytes | None:
        """One read (``b""``: the connection's turn) arrives at the executor: what
        ``onData`` is to get now, or None (it waits for the turn ahead, or is a turn
        made stale by a reconnection)."""
        if self.unseen:
            if data:
                self.later.append(data)
                return None
            later = b"".join(self.later)
            self.later.clear()
            self.unconsumed -= self.unseen + len(later)
            self.unseen = 0
            return self.kept + later
        if not data:
            return None
        self.unconsumed -= len(data)
        return self.kept + data if self.kept else data

    def keep(self, data: bytes, rest: int) -> bool:
        """What ``onData`` left of *data*, as the Lua side counted it: *rest* bytes at
        its end kept for the next delivery (0: nothing); negative when its job stopped
        for its budget with that many still to show. True: a turn is to be posted."""
        if rest >= 0:
            self.kept = data[-rest:] if rest else b""
            return False
        self.kept = data[rest:]
        self.unseen = -rest
        self.unconsumed += self.unseen
        return True

    def reset(self) -> None:
        """A new connection: nothing read, nothing kept."""
        self.kept = b""
        self.unseen = 0
        self.later.clear()
        self.unconsumed = 0
        self.paused = False
