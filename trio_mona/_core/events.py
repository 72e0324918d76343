"""What socket tasks hand to the executor: small events, never changed once posted
(a :class:`Reads` batch only grows until the executor takes it).

Socket tasks never call Lua. They turn what happens on the network into one of these
and post it on the runtime's memory channel; the executor task alone turns them into
Lua handler calls (``_executor.py``).

Reads are the hot path, so they are cheap: plain attrs classes (a frozen one costs
twice as much to build), and they travel in :class:`Reads` batches, one channel message
per batch instead of one per read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Generic, TypeAlias, TypeVar

import attrs

#: A Lua object as the layers below ``_lua`` hold it: opaque, only handed back to the
#: Lua bridge (a handle keeps its Lua object so that events reach its handlers).
LuaObject: TypeAlias = Any

# The handle an event is about (a TCP connection, a UDP socket). Generic, so that this
# module, imported by the handles, imports none of them.
Conn = TypeVar("Conn")
Socket = TypeVar("Socket")


@attrs.define(eq=False)
class DataReceived(Generic[Conn]):
    """Bytes read from a connection, to go to its ``onData``."""

    conn: Conn
    data: bytes


@attrs.define(eq=False)
class DatagramReceived(Generic[Socket]):
    """One datagram and its sender's socket address, to go to ``onPacket``."""

    socket: Socket
    data: bytes
    sender: tuple[object, ...]


@attrs.define(eq=False)
class SessionData(Generic[Conn]):
    """Bytes read by a protocol session (an HTTP connection), for its protocol core."""

    conn: Conn
    data: bytes


@attrs.define(eq=False)
class RTMPData(SessionData[Conn]):
    """Bytes read by an RTMP session."""


@attrs.define(eq=False)
class Reads:
    """Reads in the order they happened. The batch grows while it is the newest event
    on the channel and the executor has not taken it (*open*)."""

    #: (A Resumed among them: a coroutine a read woke, docs/lua/luasocket.rst.)
    items: list[DataReceived[Any] | DatagramReceived[Any] | SessionData[Any] | Resumed] = (
        attrs.field(factory=list)
    )
    open: bool = True


@attrs.frozen
class Accepted(Generic[Conn]):
    """A TCP server accepted *conn*; *server_table* is the server's Lua object."""

    server_table: Any
    owner: bytes
    conn: Conn


@attrs.frozen
class Closed(Generic[Conn]):
    """A connection (or connection attempt) ended: fire ``onDisconnection`` once."""

    conn: Conn


@attrs.frozen
class SessionClosed(Generic[Conn]):
    """A protocol session's connection ended: its client disconnects."""

    conn: Conn


@attrs.frozen
class RTMPClosed(SessionClosed[Conn]):
    """An RTMP session's connection ended."""


#: What a waiting coroutine resumes with when its deadline passes.
TIMED_OUT: Final = (b"timeout",)


@attrs.define(eq=False)  # (not frozen: one per wake-up, and a frozen init costs more)
class Resumed:
    """A suspended handler's awaited work finished with *values*."""

    token: int
    values: tuple[object, ...]


@attrs.frozen
class Call:
    """Run *function* in the executor (lifecycle work that calls Lua)."""

    function: Callable[[], None]


Event: TypeAlias = (
    DataReceived[Any]
    | DatagramReceived[Any]
    | SessionData[Any]
    | Reads
    | Accepted[Any]
    | Closed[Any]
    | SessionClosed[Any]
    | Resumed
    | Call
)
