"""The Lua faces of the socket handles: the host functions that Lua's ``TCPClient``,
``TCPServer`` and ``UDPSocket`` classes call (``_lua/objects.lua``), their properties,
and their addresses as Lua ``SocketAddress`` objects.

The handles (``_net``) know no Lua: they hold plain values (:class:`SocketAddress`)
and an opaque slot per handle (``memo``) where this module keeps the Lua object made
for each address, so that ``client.peerAddress`` is the same object each time and a
datagram's sender costs one dictionary look-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from .._core.addresses import SocketAddress
from .._net.sockets import Sockets
from .._net.tcp import TCPConnection
from .._net.tcp_server import TCPServer
from .._net.udp import UDPSocket
from .bridge import LuaTable

#: Lua address objects kept per handle (a UDP socket's senders above all).
MEMO_MAX: Final = 1024


class _Memoed(Protocol):
    memo: dict[object, Any]


def _not_ready(address: SocketAddress) -> LuaTable:
    raise RuntimeError("no Lua state yet")  # (the bridge sets SocketBindings.wrap)


class SocketBindings:
    """The socket handles as Lua sees them (see the module docstring)."""

    def __init__(self, sockets: Sockets) -> None:
        self._sockets = sockets
        #: Makes a Lua SocketAddress object; set once the Lua state exists (the state
        #: is made with the host functions below).
        self.wrap: Callable[[SocketAddress], LuaTable] = _not_ready
        self.tcp: Final[dict[bytes, Callable[[TCPConnection], object]]] = {
            b"connected": lambda c: c.connected,
            b"address": lambda c: self.address(c, c.local),
            b"peerAddress": lambda c: self.address(c, c.peer),
            b"error": lambda c: None if c.error is None else c.error.encode(),
            b"idleTime": TCPConnection.idle_time,
        }
        self.tcp_server: Final[dict[bytes, Callable[[TCPServer], object]]] = {
            b"address": lambda s: self.address(s, s.address),
            b"port": lambda s: None if s.address is None else s.address.port,
            b"running": lambda s: s.running,
        }
        self.udp: Final[dict[bytes, Callable[[UDPSocket], object]]] = {
            b"address": lambda u: self.address(u, u.local),
            b"peerAddress": lambda u: self.address(u, u.peer),
        }

    def address(self, handle: _Memoed, address: SocketAddress | None) -> LuaTable | None:
        """*address* as a Lua object, the same one each time for *handle*."""
        if address is None:
            return None
        # (by identity: an address is hashed in Python, ~40 bytecodes; the Lua object
        # holds the address, so its id is not reused while the entry stands)
        memo = handle.memo
        key = id(address)
        found = memo.get(key)
        if found is not None and found[0] is address:
            return found[1]
        if len(memo) >= MEMO_MAX:
            memo.clear()
        table = self.wrap(address)
        memo[key] = (address, table)
        return table

    def sender(self, udp: UDPSocket, sockaddr: tuple[object, ...]) -> LuaTable:
        """A datagram's sender as a Lua object, shared between its datagrams."""
        memo = udp.memo
        table = memo.get(sockaddr)
        if table is None:
            if len(memo) >= MEMO_MAX:
                memo.clear()
            address = SocketAddress.from_sockaddr(sockaddr)  # type: ignore[arg-type]
            table = memo[sockaddr] = self.wrap(address)
        return table

    def functions(self) -> dict[str, object]:
        """The host functions of the three socket classes, and their property names."""
        sockets = self._sockets
        tcp, tcp_server, udp = self.tcp, self.tcp_server, self.udp

        def new_udp_socket(owner: bytes, allow_broadcast: bool) -> UDPSocket:
            return UDPSocket(sockets, owner, allow_broadcast=allow_broadcast)

        return {
            "tcp_client_new": lambda owner: TCPConnection(sockets, owner),
            "tcp_connect": TCPConnection.connect,
            "tcp_send": TCPConnection.send,  # (the transport's: limits, then the room)
            "tcp_send_held": TCPConnection.send_held,
            "tcp_disconnect": TCPConnection.disconnect,
            "tcp_get": lambda handle, name: tcp[name](handle),
            "tcp_server_new": lambda owner: TCPServer(sockets, owner),
            "tcp_server_start": TCPServer.start,
            "tcp_server_stop": TCPServer.stop,
            "tcp_server_get": lambda handle, name: tcp_server[name](handle),
            "udp_new": new_udp_socket,
            "udp_attach": UDPSocket.attach,
            "udp_bind": UDPSocket.bind,
            "udp_connect": UDPSocket.connect,
            "udp_disconnect": UDPSocket.disconnect,
            "udp_send": UDPSocket.send,
            "udp_close": UDPSocket.close,
            "udp_get": lambda handle, name: udp[name](handle),
        }

    def property_names(self) -> dict[str, list[bytes]]:
        return {"TCPClient": list(self.tcp), "TCPServer": list(self.tcp_server),
                "UDPSocket": list(self.udp)}  # fmt: skip
