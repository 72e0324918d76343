"""The HTTP port: a listener (``_net/listener.py``) whose accepted sockets become
HTTP sessions (``http_session.py``), handed to the requests' way to Lua."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import ClassVar

import attrs

from .._core.addresses import SocketAddress
from .._core.config import HTTPSettings
from .._net.listener import Listener
from .http_session import HTTPSession

#: What a session belongs to before it serves a client (no application's: unloading
#: one leaves it alone).
NO_APPLICATION = b"\x00http"


@attrs.define(eq=False, repr=False)
class HTTPListener(Listener):
    """The ``[HTTP]`` port."""

    kind: ClassVar[str] = "http"

    http: HTTPSettings = attrs.field(factory=HTTPSettings)
    #: Called in the executor when a session has answered a request (it serves the next).
    on_answered: Callable[[HTTPSession], None] | None = None

    def accepted(self, sock: socket.socket, peer: SocketAddress) -> None:
        session = HTTPSession(
            self.sockets, NO_APPLICATION, server=self, http=self.http, on_answered=self.on_answered
        )
        self.serve(session, sock, peer)


@attrs.define(eq=False, repr=False)
class HTTPSListener(HTTPListener):
    """The ``[HTTPS]`` port: HTTP (and WebSocket) over TLS (docs/clients/tls.rst)."""

    kind: ClassVar[str] = "https"
