"""The Lua TCP server (``mona:createTCPServer()``): a listener (``listener.py``) whose
accepted sockets become Lua TCP clients, each handed to the executor as an
``Accepted`` event (docs/lua/tcp.rst)."""

from __future__ import annotations

import os
import socket
from typing import Any

import attrs

from .._core.addresses import AddressError, SocketAddress, parse_target
from .._core.errors import os_message
from .._core.events import Accepted, LuaObject
from .certificates import CertificateError, Certificates
from .listener import Listener
from .sockets import tls_file_refused
from .tcp import TCPConnection


@attrs.define(eq=False, repr=False)
class TCPServer(Listener):
    """A TCP server (``mona:createTCPServer()``)."""

    table: LuaObject | None = None
    #: What the Lua side made of the address (see Endpoint.memo).
    memo: dict[object, Any] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        return f"<TCPServer {self._address.value if self._address else 'stopped'}>"

    def start(self, table: LuaObject, first: object, second: object,
              certificate: bytes | None = None,
              key: bytes | None = None) -> tuple[bool, bytes | None]:  # fmt: skip
        """Bind and listen (its connections over TLS with *certificate* and *key*:
        docs/lua/tcp.rst, "TLS"); return ``(True, None)`` or ``(False, message)``."""
        if self._sock is not None:
            return False, f"TCPServer already running on {self._address.value}".encode()  # type: ignore[union-attr]
        self.certificates = None
        if certificate is not None or key is not None:
            refused = tls_file_refused(self.sockets, certificate, key)
            if refused is not None:
                return False, f"cannot start TCPServer: {refused}".encode()
            if certificate is None or key is None:
                return False, b"cannot start TCPServer: TLS needs both certificate and key"
            try:
                self.certificates = Certificates(os.fsdecode(certificate), os.fsdecode(key), None)
            except CertificateError as exc:
                return False, f"cannot start TCPServer: {exc}".encode()
        try:
            target = parse_target(first, second, default_host=self.sockets.wildcard)
        except AddressError as exc:
            return False, f"cannot start TCPServer: {exc}".encode()
        assert isinstance(target, SocketAddress)
        try:
            self.listen(target)
        except OSError as exc:
            return False, f"cannot start TCPServer on {target.value}: {os_message(exc)}".encode()
        self.memo.clear()
        self.table = table
        return True, None

    def stop(self) -> None:
        """Stop listening; connections already accepted go on."""
        super().stop()
        self.table = None

    def accepted(self, sock: socket.socket, peer: SocketAddress) -> None:
        conn = TCPConnection(self.sockets, self.owner, server=self)
        if self.serve(conn, sock, peer):
            self.sockets.post(Accepted(self.table, self.owner, conn))
