"""The RTMP port: a listener (``_net/listener.py``) whose accepted sockets become RTMP
sessions (``rtmp_session.py``)."""

from __future__ import annotations

import socket
from typing import ClassVar

import attrs

from .._core.addresses import SocketAddress
from .._core.config import RTMPSettings
from .._net.listener import Listener
from .http_listener import NO_APPLICATION
from .rtmp_session import RTMPSession


@attrs.define(eq=False, repr=False)
class RTMPListener(Listener):
    """The ``[RTMP]`` port."""

    kind: ClassVar[str] = "rtmp"

    rtmp: RTMPSettings = attrs.field(factory=RTMPSettings)

    def accepted(self, sock: socket.socket, peer: SocketAddress) -> None:
        session = RTMPSession(self.sockets, NO_APPLICATION, server=self, rtmp=self.rtmp)
        self.serve(session, sock, peer)


@attrs.define(eq=False, repr=False)
class RTMPSListener(RTMPListener):
    """The ``[RTMPS]`` port: RTMP over TLS (docs/clients/tls.rst)."""

    kind: ClassVar[str] = "rtmps"
