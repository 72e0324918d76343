"""What socket handles may use of the runtime, and the registry of live sockets.

Handles (``transport.py``, ``listener.py``, ``udp.py``, ``luasocket.py``) get this
object, not the :class:`Runtime`: the runtime's settings and services they need
(nursery, hub, writes, the blacklist, the executor's channel), the counters they keep,
and the bookkeeping of what is open, by owner, so that an unloading application's
sockets can be closed and shutdown can close everything. It knows no handle class:
only the small protocols below.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio

from .._core.addresses import IPAddress, SocketAddress
from .._core.blacklist import Blacklist
from .._core.config import Settings
from .._core.events import DatagramReceived, DataReceived, Event, Reads, Resumed, SessionData
from .._core.sendqueue import Unsent
from .hub import Hub
from .tasks import Crashable, start_contained
from .writes import Writes


@attrs.frozen
class BoundAddress:
    """An address one of the runtime's servers or sockets is bound to."""

    kind: str  #: ``"tcp"`` (a listening TCP server), ``"udp"``, ``"http"`` or ``"rtmp"``
    host: str
    port: int
    app: str  #: path of the owning application (``""`` for the root, and the HTTP port)


class Owned(Protocol):
    """A socket that belongs to an application (docs/design.rst, "One owner")."""

    @property
    def owner(self) -> bytes: ...

    def unload(self) -> None:
        """Its application is unloading: close it, with no more Lua events."""


class Numbered(Owned, Protocol):
    serial: int


class Connection(Owned, Protocol):
    def close(self) -> None:
        """Stop reading, flush within the linger time, close."""


def _wildcard() -> IPAddress:
    """Where a port alone binds: ``::`` when this host can listen dual-stack, else
    ``0.0.0.0``."""
    if socket.has_ipv6:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                probe.bind(("::", 0))
            return IPAddress.wildcard(ipv6=True)
        except OSError:
            pass
    return IPAddress.wildcard(ipv6=False)


class Sockets:
    """The socket side of one runtime (see the module docstring)."""

    def __init__(self, settings: Settings, nursery: trio.Nursery, blacklist: Blacklist) -> None:
        self.settings = settings
        self.nursery = nursery
        self.blacklist = blacklist
        #: The configuration's text values: in sandbox mode, the only TLS files an
        #: application may name (docs/lua/tcp.rst, "TLS").
        self.configured_files: frozenset[str] = frozenset()
        self.wildcard = _wildcard()
        self.hub = Hub()
        self.writes = Writes()
        self.bytes_received = 0
        self.bytes_sent = 0
        self.bytes_queued = 0
        #: Bytes sent by Lua and not written yet, over every connection (max_unsent).
        self.unsent = Unsent()
        self.connections: set[Connection] = set()
        self.udp_sockets: set[Owned] = set()
        #: LuaSocket objects not closed yet (``require "socket"``), by serial number.
        self.luasockets: dict[int, Owned] = {}
        self._serials = itertools.count(1)
        self.bound_addresses: dict[Owned, BoundAddress] = {}
        self.connections_gone = trio.Event()
        self._send, self.receive = trio.open_memory_channel[Event](math.inf)
        #: The batch that reads join until another event is posted (see deliver).
        self._reads: Reads | None = None

    # -- the executor's channel ---------------------------------------------------
    def post(self, event: Event) -> None:
        """Hand an event to the executor (never blocks: the channel is unbounded and
        each connection bounds what it has in flight)."""
        self._reads = None  # reads from now on go after this event
        try:
            self._send.send_nowait(event)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # shutting down: no Lua runs any more
        hub = self.hub
        if hub.waiting:
            hub.wake()

    def deliver(
        self, read: DataReceived[Any] | DatagramReceived[Any] | SessionData[Any] | Resumed
    ) -> None:
        """Hand a read to the executor: it joins the batch posted last, when the batch
        is still the newest thing on the channel, so events keep the order they
        happened in while a burst of reads costs one channel message."""
        batch = self._reads
        if batch is None or not batch.open:
            self.post(batch := Reads())
            self._reads = batch
        batch.items.append(read)

    def close_channel(self) -> None:
        self._send.close()
        self.hub.wake()

    # -- what is open ---------------------------------------------------------------
    def spawn(self, handle: Crashable, task: Callable[[], Awaitable[None]]) -> None:
        """Run one of *handle*'s tasks in the runtime's nursery, contained."""
        start_contained(self.nursery, handle, task)

    def before_bind(self, sock: socket.socket) -> None:
        """What every socket the applications bind takes first: SO_REUSEPORT when the
        runtime is one of several workers sharing the ports (docs/scaling.rst)."""
        if self.settings.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)

    def blacklisted(self, host: str) -> bool:
        return host in self.blacklist

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    def connection_started(self, conn: Connection) -> None:
        self.connections.add(conn)

    def connection_ended(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self.connections_gone.set()

    def bound(self, handle: Owned, kind: str, address: SocketAddress) -> None:
        # (an owner that is no application's path, the HTTP port's: none, shown as "")
        owner = "" if handle.owner.startswith(b"\x00") else handle.owner.decode("utf-8", "replace")
        self.bound_addresses[handle] = BoundAddress(kind, address.host.value, address.port, owner)

    def unbound(self, handle: Owned) -> None:
        self.bound_addresses.pop(handle, None)

    def register_udp(self, udp: Owned) -> None:
        self.udp_sockets.add(udp)

    def unregister_udp(self, udp: Owned) -> None:
        self.udp_sockets.discard(udp)

    def luasocket_opened(self, handle: Numbered) -> None:
        handle.serial = next(self._serials)
        self.luasockets[handle.serial] = handle

    def luasocket_closed(self, handle: Numbered) -> None:
        self.luasockets.pop(handle.serial, None)
        self.unbound(handle)

    def listeners(self) -> list[Owned]:
        return [h for h, a in self.bound_addresses.items() if a.kind in ("tcp", "http", "rtmp")]

    def close_owned(self, owner: bytes) -> None:
        """Close what the application *owner* opened (it is being unloading): listeners
        and UDP sockets at once, connections after a flush, with no more Lua events."""
        for handle in [
            *self.listeners(),
            *self.udp_sockets,
            *self.connections,
            *self.luasockets.values(),
        ]:
            if handle.owner == owner:
                handle.unload()


def tls_file_refused(sockets: Sockets, *paths: bytes | None) -> str | None:
    """Why a sandboxed application may not name one of *paths* (a TLS file): only the
    configuration's values may be named; None when every one may."""
    if not sockets.settings.sandbox:
        return None
    for path in paths:
        if path is not None and os.fsdecode(path) not in sockets.configured_files:
            return f"{os.fsdecode(path)} is not named by the configuration (sandbox mode)"
    return None
