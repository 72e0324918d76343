"""What socket tasks hand to the executor: small immutable events.

Socket tasks never call Lua. They turn what happens on the network into one of these
and post it on the runtime's memory channel; the executor task alone turns them into
Lua handler calls (``_executor.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

if TYPE_CHECKING:
    from ._tcp import TCPConnection
    from ._udp import UDPSocket


@attrs.frozen
class DataReceived:
    """Bytes read from a connection, to go to its ``onData``."""

    conn: TCPConnection
    data: bytes


@attrs.frozen
class DatagramReceived:
    """One datagram and its sender's socket address, to go to ``onPacket``."""

    socket: UDPSocket
    data: bytes
    sender: tuple[object, ...]


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


Event: TypeAlias = DataReceived | DatagramReceived | Accepted | Closed | Resumed | Call
