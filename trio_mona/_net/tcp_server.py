"""The TCP server handle (``mona:createTCPServer()``): listen, accept, hand each
accepted connection to the executor as an ``Accepted`` event (docs/lua/tcp.rst)."""

from __future__ import annotations

import errno
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
from trio.lowlevel import notify_closing, wait_readable

from .._core.addresses import AddressError, SocketAddress, parse_target
from .._core.errors import os_message
from .._core.events import Accepted, LuaObject
from .tcp import TCPConnection

if TYPE_CHECKING:
    from .sockets import Sockets

log = logging.getLogger("trio_mona")

#: Connections accepted per wake-up before other tasks get a turn.
ACCEPT_BATCH: Final = 64
LISTEN_BACKLOG: Final = 1024


@attrs.define(eq=False, repr=False)
class TCPServer:
    """A TCP server (``mona:createTCPServer()``)."""

    sockets: Sockets
    owner: bytes
    table: LuaObject | None = None
    #: What the Lua side made of the address (see Endpoint.memo).
    memo: dict[object, Any] = attrs.field(factory=dict)
    _sock: socket.socket | None = None
    _address: SocketAddress | None = None
    _scope: trio.CancelScope | None = None
    #: Its accepted connections still open (trio_mona.max_server_connections).
    open_connections: int = 0
    #: Connections refused for a limit since the last log line about it, and when
    #: that line was written (at most one a second).
    _refused: int = 0
    _refusal_logged: float = 0.0

    def __repr__(self) -> str:
        return f"<TCPServer {self._address.value if self._address else 'stopped'}>"

    @property
    def running(self) -> bool:
        return self._sock is not None

    @property
    def address(self) -> SocketAddress | None:
        """Where it listens (None: stopped)."""
        return self._address if self._sock is not None else None

    def start(self, table: LuaObject, first: object, second: object) -> tuple[bool, bytes | None]:
        """Bind and listen; return ``(True, None)`` or ``(False, message)``."""
        if self._sock is not None:
            return False, f"TCPServer already running on {self._address.value}".encode()  # type: ignore[union-attr]
        try:
            target = parse_target(first, second, default_host=self.sockets.wildcard)
        except AddressError as exc:
            return False, f"cannot start TCPServer: {exc}".encode()
        assert isinstance(target, SocketAddress)
        sock = socket.socket(target.family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sockets.before_bind(sock)
            if target.is_ipv6 and target.host.is_wildcard:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(target.sockaddr())
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            return False, f"cannot start TCPServer on {target.value}: {os_message(exc)}".encode()
        self._sock = sock
        self._address = SocketAddress.from_sockaddr(sock.getsockname())
        self.memo.clear()
        self.table = table
        self.sockets.bound(self, "tcp", self._address)
        self.sockets.spawn(self, lambda: self._accept_loop(sock))
        return True, None

    def stop(self) -> None:
        """Stop listening; connections already accepted go on."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self.sockets.unbound(self)
        if self._scope is not None:
            self._scope.cancel()
        notify_closing(sock)
        sock.close()
        self.table = None

    def unload(self) -> None:
        self.stop()

    def crashed(self) -> None:
        """The accept loop failed unexpectedly: stop listening (logged already)."""
        self.stop()

    async def _accept_loop(self, sock: socket.socket) -> None:
        with trio.CancelScope() as self._scope:
            try:
                while self._sock is sock:
                    await wait_readable(sock)
                    for _ in range(ACCEPT_BATCH):
                        try:
                            client, peer = sock.accept()
                        except BlockingIOError:
                            break
                        except OSError as exc:
                            if self._sock is not sock:
                                return  # stop() closed it
                            if exc.errno in (
                                errno.EMFILE,
                                errno.ENFILE,
                                errno.ENOBUFS,
                                errno.ENOMEM,
                            ):
                                log.error("TCPServer %s: accept failed: %s", self, os_message(exc))  # noqa: TRY400
                                await trio.sleep(0.1)
                                break
                            continue  # the peer went away before we took it (ECONNABORTED...)
                        if self.sockets.blacklisted(peer[0]):
                            log.debug("TCPServer %s: refused blacklisted %s", self, peer[0])
                            client.close()
                            continue
                        limit = self._limit_reached()
                        if limit is not None:
                            self._refuse(client, limit)
                            continue
                        self._accepted(client, peer)
            except (trio.ClosedResourceError, OSError):
                pass  # stop() closed the socket
        self._scope = None

    def _limit_reached(self) -> str | None:
        """The connection limit an accept would pass, if any (docs: operations)."""
        settings = self.sockets.settings
        if settings.max_connections and (self.sockets.connection_count >= settings.max_connections):
            return f"{settings.max_connections} connections open (trio_mona.max_connections)"
        if settings.max_server_connections and (
            self.open_connections >= settings.max_server_connections
        ):
            return (
                f"{settings.max_server_connections} connections open on this server "
                "(trio_mona.max_server_connections)"
            )
        return None

    def _refuse(self, client: socket.socket, limit: str) -> None:
        """Close an accepted socket at once (the client sees a reset); say so in the log
        at most once a second, with how many were refused."""
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= 1.0:
            log.warning("TCPServer %s: refused %d connection(s): %s", self, self._refused, limit)
            self._refused, self._refusal_logged = 0, now

    def _accepted(self, client: socket.socket, peer: tuple[Any, ...]) -> None:
        client.setblocking(False)
        conn = TCPConnection(self.sockets, self.owner, server=self)
        if conn.accepted(client, SocketAddress.from_sockaddr(peer)):
            self.open_connections += 1
            self.sockets.post(Accepted(self.table, self.owner, conn))
