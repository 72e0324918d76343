"""What TCP connections and UDP sockets share: an owning application, the Lua object
while the socket is active, and the local and peer addresses."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import attrs

from .._core.addresses import SocketAddress
from .._core.events import Event, LuaObject

if TYPE_CHECKING:
    from .sockets import Sockets


@attrs.define(eq=False, repr=False)
class Endpoint:
    sockets: Sockets
    owner: bytes
    #: The Lua object, held only while the socket is active (no cycle outlives it).
    table: LuaObject | None = None
    #: Events held back while one of this socket's handlers is suspended.
    waiting: deque[Event] | None = None
    #: What the Lua side made of this socket's addresses (the same Lua object each
    #: time: _lua/bindings.py); dropped with the socket.
    memo: dict[object, Any] = attrs.field(factory=dict)
    _local: SocketAddress | None = None
    _peer: SocketAddress | None = None

    @property
    def local(self) -> SocketAddress | None:
        return self._local

    @property
    def peer(self) -> SocketAddress | None:
        return self._peer

    def _set_local(self, address: SocketAddress | None) -> None:
        self._local = address

    def _set_peer(self, address: SocketAddress | None) -> None:
        self._peer = address
