"""The one accept loop: a listening TCP socket, and what every accept goes through
(the blacklist, the connection limits, a refusal the client sees as a reset, a pause
when the process runs out of descriptors) before its owner gets the socket.

A listener's owner is a subclass: the Lua TCP server (``tcp_server.py``) makes each
accepted socket a Lua TCP client; protocol servers will make it a session. Either way
the connection is a transport (``transport.py``) that counts itself against the
listener's :attr:`Listener.open_connections` while it is open.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, ClassVar, Final

import attrs
import trio
from trio.lowlevel import notify_closing, wait_readable

from .._core.addresses import LOCALHOST, SocketAddress, parse_target
from .._core.errors import os_message

if TYPE_CHECKING:
    from .certificates import Certificates
    from .sockets import Sockets
    from .transport import Transport

log = logging.getLogger("trio_mona")

#: Connections accepted per wake-up before other tasks get a turn.
ACCEPT_BATCH: Final = 64
LISTEN_BACKLOG: Final = 1024
#: accept() errors that say the process or the system is out of something: the loop
#: pauses instead of spinning (the connection waits in the backlog meanwhile).
EXHAUSTED: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def configured_address(host: str, port: int) -> SocketAddress:
    """Where a protocol's port listens, from its ``host`` and ``port`` settings.

    Raises:
        AddressError: *host* is no IP address (names are not looked up here).
    """
    target = parse_target(host, port, default_host=LOCALHOST)
    assert isinstance(target, SocketAddress)  # (no names: allow_names is off)
    return target


@attrs.define(eq=False, repr=False)
class Listener:
    """A listening socket and its accept loop (see the module docstring)."""

    #: What the runtime reports it as (:class:`BoundAddress`): the Lua TCP server's
    #: ``"tcp"``, a protocol's name.
    kind: ClassVar[str] = "tcp"

    sockets: Sockets
    owner: bytes
    #: Its accepted connections still open (trio_mona.max_server_connections).
    open_connections: int = 0
    #: Its connections speak TLS with these (a TLS port, a Lua server started with a
    #: certificate; None: plain).
    certificates: Certificates | None = None
    _sock: socket.socket | None = None
    _address: SocketAddress | None = None
    _scope: trio.CancelScope | None = None
    #: Connections refused for a limit since the last log line about it, and when
    #: that line was written (at most one a second).
    _refused: int = 0
    _refusal_logged: float = 0.0

    def __repr__(self) -> str:
        where = self._address.value if self._address else "stopped"
        return f"<{self.__class__.__name__} {where}>"

    def accepted(self, sock: socket.socket, peer: SocketAddress) -> None:
        """A connection passed every check: serve it (the owner's part, through
        :meth:`serve`)."""
        raise NotImplementedError

    def serve(self, conn: Transport, sock: socket.socket, peer: SocketAddress) -> bool:
        """Serve the accepted *sock* with *conn* (over TLS when the listener has
        certificates), counted among its open connections; False if it failed at once."""
        if self.certificates is not None:
            conn.tls = self.certificates.session()
        if not conn.accepted(sock, peer):
            return False
        self.open_connections += 1
        return True

    @property
    def running(self) -> bool:
        return self._sock is not None

    @property
    def address(self) -> SocketAddress | None:
        """Where it listens (None: stopped)."""
        return self._address if self._sock is not None else None

    def listen(self, target: SocketAddress) -> None:
        """Bind to *target*, listen, and start accepting. Raises OSError."""
        sock = socket.socket(target.family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sockets.before_bind(sock)
            if target.is_ipv6 and target.host.is_wildcard:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(target.sockaddr())
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._address = SocketAddress.from_sockaddr(sock.getsockname())
        self.sockets.bound(self, self.kind, self._address)
        self.sockets.spawn(self, lambda: self._accept_loop(sock))

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
                            if exc.errno in EXHAUSTED:
                                log.error("%s: accept failed: %s", self, os_message(exc))  # noqa: TRY400
                                await trio.sleep(0.1)
                                break
                            continue  # the peer went away before we took it (ECONNABORTED...)
                        # The blacklist and the limits, then the owner's accepted().
                        if self.sockets.blacklisted(peer[0]):
                            log.debug("%s: refused blacklisted %s", self, peer[0])
                            client.close()
                            continue
                        limit = self._limit_reached()
                        if limit is not None:
                            self._refuse(client, limit)
                            continue
                        client.setblocking(False)
                        self.accepted(client, SocketAddress.from_sockaddr(peer))
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
            log.warning("%s: refused %d connection(s): %s", self, self._refused, limit)
            self._refused, self._refusal_logged = 0, now
