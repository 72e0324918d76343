"""What TCP connections and UDP sockets share: an owning application, the Lua object
while the socket is active, and the local and peer addresses as cached Lua objects."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import attrs

from .._core.addresses import SocketAddress
from .._core.events import Event

if TYPE_CHECKING:
    from .._lua.bridge import LuaTable
    from .sockets import Sockets


@attrs.define(eq=False, repr=False)
class Endpoint:
    sockets: Sockets
    owner: bytes
    #: The Lua object, held only while the socket is active (no cycle outlives it).
    table: LuaTable | None = None
    #: Events held back while one of this socket's handlers is suspended.
    waiting: deque[Event] | None = None
    _local: SocketAddress | None = None
    _peer: SocketAddress | None = None
    _lua_local: LuaTable | None = None
    _lua_peer: LuaTable | None = None

    def lua_address(self) -> LuaTable | None:
        """The local address as a Lua object, the same one each time."""
        if self._lua_local is None and self._local is not None:
            self._lua_local = self.sockets.bridge.wrap_socket_address(self._local)
        return self._lua_local

    def lua_peer_address(self) -> LuaTable | None:
        """The peer address as a Lua object, the same one each time."""
        if self._lua_peer is None and self._peer is not None:
            self._lua_peer = self.sockets.bridge.wrap_socket_address(self._peer)
        return self._lua_peer

    def _set_local(self, address: SocketAddress | None) -> None:
        self._local, self._lua_local = address, None

    def _set_peer(self, address: SocketAddress | None) -> None:
        self._peer, self._lua_peer = address, None
