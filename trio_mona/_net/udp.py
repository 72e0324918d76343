"""UDP socket handles (``mona:createUDPSocket([allowBroadcast])``).

Like the TCP transports: a raw non-blocking socket that the read hub reads (no task
of its own; a flusher task only while the kernel buffer is full), methods that never
wait, and the Lua object held only while the socket is open. Datagrams keep their
boundaries (zero-length ones included); the sender reaches Lua as a SocketAddress
object, shared between datagrams from the same sender (_lua/bindings.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import socket
import time
from typing import Final

import attrs
from trio.lowlevel import notify_closing

from .._core.addresses import LOCALHOST, AddressError, IPAddress, SocketAddress, parse_target
from .._core.errors import os_message
from .._core.events import DatagramReceived, LuaObject
from .._core.sendqueue import DatagramQueue
from .endpoint import Endpoint
from .writes import flush

#: The largest UDP payload for each family (an IPv4 or IPv6 header plus 8 bytes of UDP).
MAX_DATAGRAM: Final[dict[int, int]] = {socket.AF_INET: 65507, socket.AF_INET6: 65527}
#: Datagrams read but not yet given to Lua, above which reading pauses (the kernel
#: buffer then holds, and past it drops, what arrives: UDP's own back-pressure).
READ_AHEAD: Final = 256
#: Bytes of datagrams waiting for kernel buffer room, past which ``send`` fails.
QUEUE_LIMIT: Final = 4 << 20
#: Sender address objects kept for reuse.
SENDER_CACHE: Final = 1024
#: Seconds the kernel's verdict on a destination (broadcast or not) is trusted.
BROADCAST_TTL: Final = 30.0
#: Errors a receive reports for an earlier send (an ICMP message): logged, not fatal.
SEND_ERRORS: Final = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.EMSGSIZE}
)

log = logging.getLogger("trio_mona")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class _BroadcastCheck:
    """Whether the kernel treats an IPv4 address as a broadcast destination (then a
    socket without ``allowBroadcast`` may not send there). Not only 255.255.255.255:
    every subnet's broadcast address (127.255.255.255 on the loopback) counts, which
    only the routing table knows. So the kernel is asked, once per address for
    BROADCAST_TTL seconds: a UDP ``connect`` there without SO_BROADCAST is refused."""

    def __init__(self) -> None:
        self._known: dict[bytes, bool] = {}
        self._since = time.monotonic()

    def __call__(self, host: IPAddress) -> bool:
        packed = host.packed
        if len(packed) == 16:
            if packed[:12] != _MAPPED:
                return False  # IPv6 has no broadcast
            packed = packed[12:]
        if packed == b"\xff\xff\xff\xff":
            return True
        now = time.monotonic()
        if now - self._since > BROADCAST_TTL or len(self._known) >= SENDER_CACHE:
            self._known.clear()
            self._since = now
        verdict = self._known.get(packed)
        if verdict is None:
            verdict = self._known[packed] = _kernel_says_broadcast(packed)
        return verdict


def _kernel_says_broadcast(packed: bytes) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((socket.inet_ntop(socket.AF_INET, packed), 9))
        except OSError as exc:
            return exc.errno == errno.EACCES
    return False


_MAPPED: Final = bytes(10) + b"\xff\xff"
broadcast_destination: Final = _BroadcastCheck()


def _dissolve(sock: socket.socket) -> None:
    """Undo ``connect`` on a UDP socket: connect to an AF_UNSPEC address (POSIX)."""
    unspec = (ctypes.c_ubyte * 16)()  # sa_family = AF_UNSPEC (0), rest zero
    if _libc.connect(sock.fileno(), ctypes.byref(unspec), ctypes.sizeof(unspec)) != 0:
        code = ctypes.get_errno()
        if code != errno.EAFNOSUPPORT:  # Linux reports this yet dissolves the association
            raise OSError(code, errno.errorcode.get(code, "connect failed"))


@attrs.define(eq=False, repr=False)
class UDPSocket(Endpoint):
    """The Python side of a Lua UDP socket object."""

    allow_broadcast: bool = False
    _sock: socket.socket | None = None
    _out: DatagramQueue = attrs.field(factory=DatagramQueue)
    #: A task waits for room in the kernel buffer to send what is queued.
    _flushing: bool = False
    _unconsumed: int = 0
    #: The hub reported datagrams not read yet (reading paused for back-pressure).
    _ready: bool = False
    #: Registered with the hub, which reads it (no task of its own: it would only wait).
    _in_hub: bool = False
    _closed: bool = False
    _family: int = socket.AF_INET

    def __repr__(self) -> str:
        return f"<UDPSocket {self._local.value if self._local else 'unbound'}>"

    # -- Lua methods ------------------------------------------------------------
    def bind(self, first: object, second: object) -> bytes | None:
        """Bind to a local address; None, or an error message."""
        if self._closed:
            return _CLOSED
        if self._peer is not None:
            return b"cannot bind a connected UDP socket"
        if self._local is not None:
            return f"UDP socket already bound to {self._local.value}".encode()
        try:
            target = _address(first, second, self.sockets.wildcard)
        except AddressError as exc:
            return f"cannot bind: {exc}".encode()
        sock = self._open(target.family)
        try:
            self.sockets.before_bind(sock)
            if target.is_ipv6 and target.host.is_wildcard:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(target.sockaddr())
        except OSError as exc:
            self._close_socket()
            return f"cannot bind to {target.value}: {os_message(exc)}".encode()
        self._started()
        return None

    def connect(self, first: object, second: object) -> bytes | None:
        """Fix the peer so that ``send`` needs no address; None, or an error message."""
        if self._closed:
            return _CLOSED
        target = _remote(first, second, "connect")
        if isinstance(target, bytes):
            return target
        if not self.allow_broadcast and broadcast_destination(target.host):
            return f"cannot connect to {target.host.value}: {_NO_BROADCAST}".encode()
        if self._sock is None:
            self._open(target.family)
        assert self._sock is not None
        self._write_batch()  # they were sent to the old peer
        sockaddr = self._sockaddr_for(target)
        if isinstance(sockaddr, bytes):
            return sockaddr
        try:
            self._sock.connect(sockaddr)
        except OSError as exc:
            return f"cannot connect to {target.value}: {os_message(exc)}".encode()
        self._set_peer(target)
        self._started()
        return None

    def disconnect(self) -> bytes | None:
        """Forget the peer fixed by ``connect``; the socket stays open."""
        if self._peer is None or self._sock is None:
            return None
        self._write_batch()  # they were sent to the peer being forgotten
        try:
            _dissolve(self._sock)
        except OSError as exc:
            return f"cannot disconnect: {os_message(exc)}".encode()
        self._set_peer(None)
        return None

    def send(self, data: bytes, first: object, second: object) -> bytes | None:
        """Send one datagram, to the connected peer or to the address given."""
        if self._closed:
            return _CLOSED
        destination: tuple[object, ...] | None = None  # None: the connected peer
        if first is None:
            if self._peer is None:
                return b"no destination: give an address or connect the socket first"
        else:
            target = _remote(first, second, "send")
            if isinstance(target, bytes):
                return target
            if not self.allow_broadcast and broadcast_destination(target.host):
                return f"cannot send to {target.host.value}: {_NO_BROADCAST}".encode()
            if self._peer is not None:
                peer = self._peer
                if (target.host.unmapped(), target.port) != (peer.host.unmapped(), peer.port):
                    return (
                        f"connected to {self._peer.value}: cannot send to {target.value}".encode()
                    )
            else:
                if self._sock is None:
                    self._open(target.family)
                    self._started()
                sockaddr = self._sockaddr_for(target)
                if isinstance(sockaddr, bytes):
                    return sockaddr
                destination = sockaddr
        sock = self._sock
        assert sock is not None
        limit = min(
            MAX_DATAGRAM.get(self._family, MAX_DATAGRAM[socket.AF_INET]),
            self.sockets.settings.max_datagram,
        )
        if len(data) > limit:
            return f"datagram of {len(data)} bytes is larger than the limit of {limit}".encode()
        out = self._out
        writes = self.sockets.writes
        if out.items or not (writes.immediate() or self._local is None):
            # Written with the executor's batch (Writes), or behind datagrams that
            # wait for room: the order of sends is kept either way.
            if out.size + len(data) > QUEUE_LIMIT:
                return f"send queue full: {out.size} bytes waiting".encode()
            if out.push(data, destination) and not self._flushing:
                writes.pending.append(self)
            return None
        # The executor's last known event, or a socket's first send (the kernel binds
        # it, and `address` must tell at once): written now, a failure returned.
        if not writes.durable():  # (held while commits fail: queued)
            out.push(data, destination)
            if not self._flushing:
                self._start_flusher()
            return None
        try:
            _transmit(sock, data, destination)
        except BlockingIOError:
            out.push(data, destination)
            self._start_flusher()
            return None
        except OSError as exc:
            return _send_error(exc)
        self.sockets.bytes_sent += len(data)
        if self._local is None:
            self._refresh_local()  # the kernel bound it on the first send
        return None

    def write_queued(self) -> None:
        """Write the datagrams sent during the executor's batch (see Writes)."""
        if self._flushing or self._sock is None:
            return
        self.write_some(self._sock)
        if self._out.items:
            self._start_flusher()

    def close(self) -> None:
        """Close the socket for good: later calls return an error."""
        self._closed = True
        self._write_batch()  # what was sent before close() still goes out
        self._close_socket()
        self.table = None

    unload = close

    def crashed(self) -> None:
        """One of this socket's tasks failed unexpectedly (logged already): close it."""
        self.close()

    def attach(self, table: LuaObject) -> None:
        """Keep the Lua object once the socket is used (until ``close``), to deliver
        ``onPacket``; Lua calls this before the first bind, connect or send."""
        self.table = table

    # -- properties -----------------------------------------------------------------
    @property
    def local(self) -> SocketAddress | None:
        """The local address, once bound (explicitly, or by the kernel at a send)."""
        if self._local is None:
            self._refresh_local()
        return self._local

    # -- executor side ------------------------------------------------------------
    def consumed(self) -> None:
        """The executor took a datagram: reading may go on."""
        self._unconsumed -= 1
        if self._ready:
            self._pump()

    def on_readable(self, mask: int) -> None:
        """The hub saw datagrams: read them (called in the hub's task)."""
        self._ready = True
        self._pump()

    def _pump(self) -> None:
        """Read datagrams until none is left or READ_AHEAD wait for Lua; never waits."""
        sock = self._sock
        if sock is None:
            return
        recvfrom = sock.recvfrom
        deliver = self.sockets.deliver
        blacklisted = self.sockets.blacklisted
        while self._unconsumed < READ_AHEAD:
            try:
                data, sender = recvfrom(65536)
            except BlockingIOError:
                self._ready = False
                return
            except OSError as exc:
                where = self._peer.value if self._peer is not None else "a peer"
                log.warning(
                    "%s: an earlier datagram to %s failed: %s", self, where, os_message(exc)
                )
                if exc.errno in SEND_ERRORS:
                    continue  # an ICMP error for an earlier send: UDP goes on
                self._ready = False
                return
            if blacklisted(sender[0]):
                log.debug("%s: dropped a datagram from blacklisted %s", self, sender[0])
                continue
            self._unconsumed += 1
            self.sockets.bytes_received += len(data)
            deliver(DatagramReceived(self, data, sender))

    # -- internals ------------------------------------------------------------------
    def _sockaddr_for(self, target: SocketAddress) -> tuple[object, ...] | bytes:
        """The destination in the socket's own family (IPv4 through IPv6 is mapped)."""
        if self._family == target.family:
            return target.sockaddr()
        if self._family == socket.AF_INET6:
            return (f"::ffff:{target.host.value}", target.port, 0, 0)
        return f"cannot reach IPv6 address {target.value} from an IPv4 socket".encode()

    def _open(self, family: socket.AddressFamily) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        self._family = int(family)
        if self.allow_broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self._sock = sock
        return sock

    def _refresh_local(self) -> None:
        """Learn the local address once the socket is bound (explicitly or by the kernel)."""
        if self._sock is None:
            return
        address = SocketAddress.from_sockaddr(self._sock.getsockname())
        if address.port:
            self._set_local(address)
            self.sockets.bound(self, "udp", address)

    def _started(self) -> None:
        """The socket exists and may receive: the hub reads it from now on."""
        self._refresh_local()
        self.sockets.register_udp(self)
        if not self._in_hub and self._sock is not None:
            self.sockets.hub.register(self._sock.fileno(), self)
            self._in_hub = True

    def _write_batch(self) -> None:
        """Write now what waits for the executor's batch to end (not for buffer room)."""
        if self._out.items and self._sock is not None and not self._flushing:
            self.write_some(self._sock)

    def _start_flusher(self) -> None:
        sock = self._sock
        assert sock is not None
        self._flushing = True
        self.sockets.spawn(self, lambda: flush(self, sock, self._out, self.sockets.writes))

    # -- the flusher's part (writes.Flushable) ---------------------------------------------
    def writes_to(self, sock: socket.socket) -> bool:
        return sock is self._sock

    def flush_ended(self, failure: OSError | str | None) -> None:
        self._flushing = False
        if failure is not None and self._sock is not None and not self._closed:
            # (the socket cannot be waited on: what is queued would never leave)
            reason = failure if isinstance(failure, str) else os_message(failure)
            log.warning("%s: closed, its datagrams cannot be written: %s", self, reason)
            self.close()

    def write_some(self, sock: socket.socket) -> None:
        """Send queued datagrams until none is left or the kernel buffer is full."""
        if not self.sockets.writes.durable():
            return  # (held while commits fail: the flusher task waits for one to work)
        written, _ = self._out.write(sock, self._dropped)
        self.sockets.bytes_sent += written

    def _dropped(self, data: bytes, destination: tuple[object, ...] | None, exc: OSError) -> None:
        where = self._describe(destination)
        log.warning("%s: datagram to %s dropped: %s", self, where, os_message(exc))

    def _describe(self, destination: tuple[object, ...] | None) -> str:
        if destination is not None:
            return SocketAddress.from_sockaddr(destination).value  # type: ignore[arg-type]
        return self._peer.value if self._peer is not None else "the peer"

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        self._in_hub = False
        if sock is not None:
            self.sockets.hub.unregister(sock.fileno())
            notify_closing(sock)
            sock.close()
        self._ready = False
        self._unconsumed = 0
        self.sockets.unbound(self)
        self.sockets.unregister_udp(self)
        self._set_local(None)
        self._set_peer(None)
        self.memo.clear()
        self._out.clear()


_CLOSED: Final = b"UDP socket closed"
_NO_BROADCAST: Final = "broadcast is not allowed (use mona:createUDPSocket(true))"


def _address(first: object, second: object, default: IPAddress) -> SocketAddress:
    target = parse_target(first, second, default_host=default)
    assert isinstance(target, SocketAddress)  # no names: allow_names is False
    return target


def _remote(first: object, second: object, verb: str) -> SocketAddress | bytes:
    """A destination for connect or send, or the error message for Lua."""
    try:
        target = _address(first, second, LOCALHOST)
    except AddressError as exc:
        return f"cannot {verb}: {exc}".encode()
    if target.port == 0:
        return f"cannot {verb} to port 0".encode()
    return target


def _transmit(sock: socket.socket, data: bytes, destination: tuple[object, ...] | None) -> None:
    """One datagram to the connected peer (None) or to *destination*."""
    if destination is None:
        sock.send(data)
    else:
        sock.sendto(data, destination)


def _send_error(exc: OSError) -> bytes:
    if exc.errno == errno.EACCES:
        return f"cannot send: {_NO_BROADCAST}".encode()
    if exc.errno == errno.EMSGSIZE:
        return b"cannot send: datagram too large"
    return f"cannot send: {os_message(exc)}".encode()
