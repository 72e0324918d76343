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
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

if TYPE_CHECKING:
    from ._tcp import TCPConnection
    from ._udp import UDPSocket


@attrs.define(eq=False)
class DataReceived:
    """Bytes read from a connection, to go to its ``onData``."""

    conn: TCPConnection
    data: bytes


@attrs.define(eq=False)
class DatagramReceived:
    """One datagram and its sender's socket address, to go to ``onPacket``."""

    socket: UDPSocket
    data: bytes
    sender: tuple[object, ...]


@attrs.define(eq=False)
class Reads:
    """Reads in the order they happened. The batch grows while it is the newest event
    on the channel and the executor has not taken it (*open*)."""

    items: list[DataReceived | DatagramReceived] = attrs.field(factory=list)
    open: bool = True


@attrs.frozen
class Accepted:
    """A TCP server accepted *conn*; *server_table* is the server's Lua object."""

    server_table: Any
    owner: bytes
    conn: TCPConnection


@attrs.frozen
class Closed:
    """A connection (or connection attempt) ended: fire ``onDisconnection`` once."""

    conn: TCPConnection


@attrs.frozen
class Resumed:
    """A suspended handler's awaited work finished with *values*."""

    token: int
    values: tuple[object, ...]


@attrs.frozen
class Call:
    """Run *function* in the executor (lifecycle work that calls Lua)."""

    function: Callable[[], None]


Event: TypeAlias = DataReceived | DatagramReceived | Reads | Accepted | Closed | Resumed | Call
