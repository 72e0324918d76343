"""The Lua TCP client (``mona:createTCPClient()``, and each connection a Lua TCP server
accepts): a consumer of the transport (``transport.py``).

Each handle is the private Python side of one Lua object (docs/design.rst). What it
adds to the transport: the methods Lua calls (synchronous, never waiting), reads handed
to the executor as ``DataReceived`` events in batches, the Python half of ``onData``'s
rest rule (through :class:`Inbound`), and its send policy: Lua's ``send`` is the
transport's, which fails past the limits (the error goes back to Lua), and within them
its room is how much more the running job may hold in Lua before asking again (sends
held during a job: docs/lua/tcp.rst; :meth:`TCPConnection.send_held`).

Links to the Lua object are held only while the socket is active and are broken
when it closes, so no cycle between the two garbage collectors outlives a connection.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import attrs

from .._core.addresses import LOCALHOST, AddressError, HostName, parse_target
from .._core.errors import os_message
from .._core.events import Closed, DataReceived, LuaObject
from .sockets import tls_file_refused
from .tls import TLS, client_context
from .transport import CONNECTED, CONNECTING, IDLE, Transport


@attrs.define(eq=False, repr=False)
class TCPConnection(Transport):
    """A TCP client (``mona:createTCPClient()``) or an accepted connection."""

    def __repr__(self) -> str:
        peer = self._peer.value if self._peer else "-"
        return f"<TCPConnection {self.state.value} peer={peer}>"

    # -- Lua methods (synchronous, never wait) -------------------------------------
    def connect(self, table: LuaObject, first: object, second: object, tls: bool = False,
                sni: bytes | None = None, verify: bool = True,
                ca: bytes | None = None) -> bytes | None:  # fmt: skip
        """Start connecting (over TLS with *tls*: docs/lua/tcp.rst, "TLS"); return None,
        or an error message when it cannot start."""
        if self.state is not IDLE:
            return b"already connected" if self.state is CONNECTED else b"connection in progress"
        try:
            target = parse_target(first, second, default_host=LOCALHOST, allow_names=True)
        except AddressError as exc:
            return str(exc).encode()
        if target.port == 0:
            return b"cannot connect to port 0"
        limit = self.sockets.settings.max_connections
        if limit and self.sockets.connection_count >= limit:
            return f"too many connections: {limit} open (trio_mona.max_connections)".encode()
        self.tls = None
        if tls:
            refused = tls_file_refused(self.sockets, ca)
            if refused is not None:
                return f"TLS: {refused}".encode()
            try:
                context = client_context(os.fsdecode(ca) if ca else None, verify)
            except (OSError, ssl.SSLError) as exc:
                why = os_message(exc) if not isinstance(exc, ssl.SSLError) else exc.reason
                return f"TLS: cannot use the CA file {os.fsdecode(ca or b'')}: {why}".encode()
            host = target.host if isinstance(target, HostName) else target.host.value
            name = sni.decode("utf-8", "replace") if sni else host
            self.tls = TLS(context, server_side=False, server_hostname=name)
        self.table = table
        self.open(target)
        return None

    def send_held(self, data: bytes) -> None:
        """Queue what Lua held at the end of a job, within the room :meth:`send` gave
        (``send`` is the transport's: its room is what the job may hold in Lua)."""
        if self.state is CONNECTED or self.state is CONNECTING:
            self.enqueue(data)

    def disconnect(self) -> None:
        """Stop reading, flush what is queued (within the linger time), then close."""
        self.close()

    # -- executor side ----------------------------------------------------------
    def closed(self) -> None:
        self.sockets.post(Closed(self))

    def attach(self, table: LuaObject) -> None:
        self.table = table

    def detach(self) -> LuaObject | None:
        """Closed is being reported: the object may connect again from now on."""
        table, self.table = self.table, None
        self.ended()
        return table

    def forget(self) -> None:
        """After onDisconnection: drop what described the finished connection."""
        if self.state is IDLE:
            self._set_local(None)
            self._set_peer(None)
            self.memo.clear()

    def keep(self, data: bytes, rest: Any) -> None:
        """What onData left of *data*, as the Lua side of the rest rule counted it
        (``rest_count`` in _lua/objects.lua): see :meth:`Inbound.keep`."""
        if self.inbound.keep(data, int(rest) if rest else 0):
            self.sockets.post(DataReceived(self, b""))  # its next turn
