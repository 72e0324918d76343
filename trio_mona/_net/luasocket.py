"""The handles behind ``require "socket"``: LuaSocket's TCP and UDP objects
(docs/lua/luasocket.rst).

A LuaSocket call never blocks the process. Each method tries its system call at once on
a non-blocking socket; when the kernel has nothing yet it answers "wait" and the Lua
side parks the calling coroutine (``_lua/socket.lua``). Reads and accepts wake through
the runtime's read hub (no task per wait, the hot path); writes, connects and timeouts
wait in a task of their own. Only the calling coroutine waits: every other socket goes
on being served.

Lua's half of the protocol: a method returns its results, or ``None, None, token,
suspension`` when it has to wait; the coroutine yields the suspension, and when it is
woken (``()``) it calls the method again, or with ``"timeout"`` it asks for the timeout
result. Timeouts follow LuaSocket: a *block* timeout bounds each wait, a *total* one
the whole call, measured from the method's first attempt.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio
from trio.lowlevel import notify_closing, wait_writable

from .hub import HANGUP

if TYPE_CHECKING:
    from .sockets import Sockets

#: What a waiting coroutine is resumed with when its deadline passes.
TIMED_OUT: Final = (b"timeout",)
#: Bytes one ``recv`` asks for (LuaSocket reads 8 KiB at a time; more costs nothing).
RECV_SIZE: Final = 65536
#: Largest datagram ``receive``/``receivefrom`` return without a size (LuaSocket's).
DATAGRAM_SIZE: Final = 8192

#: A method's answer when it has to wait: None, None, token, suspension.
Answer = tuple[object, ...]


class Parker(Protocol):
    """How a handle parks the calling coroutine (the executor, through the runtime)."""

    def park(self, owner: bytes, deadline: float) -> tuple[int, object]:
        """A token and a suspension that waits until :meth:`wake` or *deadline*."""

    def wait_for(
        self, owner: bytes, work: Callable[[], Awaitable[tuple[object, ...]]]
    ) -> tuple[int, object]:
        """A token and a suspension that waits for *work* (in a task of its own)."""

    def wake(self, token: int) -> None:
        """Resume the coroutine parked with *token* (if it still waits)."""


def error_text(exc: OSError | int) -> bytes:
    """LuaSocket's message for a system error (its own words for the common ones)."""
    code = exc if isinstance(exc, int) else (exc.errno or 0)
    if code in (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE):
        return b"closed"
    if code == errno.ETIMEDOUT:
        return b"timeout"
    known = _ERRORS.get(code)
    if known is not None:
        return known
    return (os.strerror(code) if code else str(exc)).encode()


_ERRORS: Final = {
    errno.EADDRINUSE: b"address already in use",
    errno.EISCONN: b"already connected",
    errno.EACCES: b"permission denied",
    errno.ECONNREFUSED: b"connection refused",
}


@attrs.define(eq=False, repr=False)
class LuaSocket:
    """One LuaSocket object: a TCP master, client or server, or a UDP socket."""

    sockets: Sockets
    parker: Parker
    owner: bytes
    #: "master", "client", "server" (TCP), "unconnected", "connected" (UDP).
    kind: str
    family: int  #: AF_INET, AF_INET6, or AF_UNSPEC (a master that has no socket yet)
    sock: socket.socket | None = None
    closed: bool = False
    #: Read from the kernel, not yet returned by ``receive``.
    buffer: bytearray = attrs.field(factory=bytearray)
    eof: bool = False
    received: float = 0.0
    sent: float = 0.0
    born: float = attrs.field(factory=time.monotonic)
    block: float = -1.0
    total: float = -1.0
    _started: float = 0.0
    _readers: list[int] = attrs.field(factory=list)
    _in_hub: bool = False
    _selects: list[trio.Event] = attrs.field(factory=list)

    def __repr__(self) -> str:
        return f"<LuaSocket {self.kind}>"

    @property
    def is_udp(self) -> bool:
        return self.kind in ("unconnected", "connected")

    # -- timeouts -------------------------------------------------------------------
    def settimeout(self, value: float | None, mode: bytes) -> None:
        seconds = -1.0 if value is None or value < 0 else float(value)
        if mode == b"t":
            self.total = seconds
        else:
            self.block = seconds

    def _deadline(self, first: bool) -> float:
        """When the current wait gives up (inf: never; <= now: at once)."""
        now = trio.current_time()
        if first:
            self._started = now
        deadline = math.inf if self.block < 0 else now + self.block
        if self.total >= 0:
            deadline = min(deadline, self._started + self.total)
        return deadline

    def _wait_readable(self, first: bool) -> Answer | None:
        """Park until the hub reports data (None: the deadline passed already)."""
        deadline = self._deadline(first)
        if deadline <= trio.current_time():
            return None
        assert self.sock is not None
        if not self._in_hub:
            self.sockets.hub.register(self.sock.fileno(), self)
            self._in_hub = True
        token, suspension = self.parker.park(self.owner, deadline)
        self._readers.append(token)
        return None, None, token, suspension

    def _wait_writable(self, first: bool) -> Answer | None:
        deadline = self._deadline(first)
        if deadline <= trio.current_time():
            return None
        sock = self.sock
        assert sock is not None

        async def writable() -> tuple[object, ...]:
            with trio.move_on_at(deadline):
                try:
                    await wait_writable(sock)
                except (trio.ClosedResourceError, OSError):
                    pass  # closed meanwhile: the call tries again and says so
                return ()
            return TIMED_OUT

        token, suspension = self.parker.wait_for(self.owner, writable)
        return None, None, token, suspension

    def on_readable(self, mask: int) -> None:
        """The hub saw data (or a hang-up): wake whoever waits to read."""
        if mask & HANGUP:
            pass  # the next recv returns b"" or the error
        self._wake_readers()

    def _wake_readers(self) -> None:
        readers, self._readers = self._readers, []
        for token in readers:
            self.parker.wake(token)

    # -- creating the socket --------------------------------------------------------
    def ensure(self, family: int) -> socket.socket:
        """The system socket, made now for a master created without a family."""
        if self.sock is None:
            kind = socket.SOCK_DGRAM if self.is_udp else socket.SOCK_STREAM
            sock = socket.socket(family, kind)
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            self.sock, self.family = sock, family
        return self.sock

    # -- TCP --------------------------------------------------------------------
    def bind(self, host: str, port: int) -> Answer:
        try:
            sock = self.ensure(_family_of(host))
            if not self.is_udp:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            return None, error_text(exc)
        if self.is_udp:
            self._bound()
        return (1.0,)

    def _bound(self) -> None:
        from .._core.addresses import SocketAddress

        assert self.sock is not None
        kind = "udp" if self.is_udp else "tcp"
        self.sockets.bound(self, kind, SocketAddress.from_sockaddr(self.sock.getsockname()))

    def listen(self, backlog: int) -> Answer:
        if self.sock is None:
            return None, b"Bad file descriptor"
        try:
            self.sock.listen(backlog)
        except OSError as exc:
            return None, error_text(exc)
        self.kind = "server"
        self._bound()
        return (1.0,)

    def accept(self, first: bool, timed_out: bool) -> Answer:
        if self.closed or self.sock is None:
            return None, b"closed"
        if timed_out:
            return None, b"timeout"
        try:
            sock, _ = self.sock.accept()
        except BlockingIOError:
            return self._wait_readable(first) or (None, b"timeout")
        except OSError as exc:
            return None, error_text(exc)
        sock.setblocking(False)
        client = LuaSocket(self.sockets, self.parker, self.owner, "client", sock.family, sock)
        self.sockets.luasocket_opened(client)
        return (client,)

    def connect_start(self, host: str, port: int) -> Answer:
        """Begin a connect to one address; 1, an error, or a wait for its outcome."""
        try:
            sock = self.ensure(_family_of(host))
            code = sock.connect_ex((host, port))
        except OSError as exc:
            return None, error_text(exc)
        if code == 0:
            self.kind = "connected" if self.is_udp else "client"
            return (1.0,)
        if code not in (errno.EINPROGRESS, errno.EALREADY):
            return None, error_text(code)
        return self._wait_writable(True) or (None, b"timeout")

    def connect_finish(self, timed_out: bool) -> Answer:
        if self.sock is None or self.closed:
            return None, b"closed"
        if timed_out:
            return None, b"timeout"
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.drop_socket()  # the next address starts on a fresh socket
            return None, error_text(code)
        self.kind = "client"
        return (1.0,)

    def drop_socket(self) -> None:
        """Forget a socket that failed to connect (a master may try another family)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def receive(self, mode: bytes, count: int, first: bool, timed_out: bool) -> Answer:
        """``*l`` (mode ``l``), ``*a`` (``a``) or *count* bytes (``n``)."""
        if self.closed:
            return None, b"closed", b""
        while True:
            found = self._take(mode, count)
            if found is not None:
                return (found,)
            if timed_out:
                return None, b"timeout", self._take_partial(mode)
            if self.eof:
                if mode == b"a" and self.buffer:
                    data = bytes(self.buffer)
                    self.buffer.clear()
                    return (data,)
                return None, b"closed", self._take_partial(mode)
            sock = self.sock
            assert sock is not None
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                wait = self._wait_readable(first)
                if wait is None:
                    return None, b"timeout", self._take_partial(mode)
                return wait
            except OSError as exc:
                message = error_text(exc)
                self.eof = message == b"closed"
                if not self.eof:
                    return None, message, self._take_partial(mode)
                continue
            if not data:
                self.eof = True
                continue
            self.received += len(data)
            self.sockets.bytes_received += len(data)
            self.buffer += data

    def _take(self, mode: bytes, count: int) -> bytes | None:
        buffer = self.buffer
        if mode == b"l":
            end = buffer.find(b"\n")
            if end < 0:
                return None
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            return line.replace(b"\r", b"") if b"\r" in line else line
        if mode == b"n":
            if len(buffer) < count:
                return None
            data = bytes(buffer[:count])
            del buffer[:count]
            return data
        return None  # "*a" ends only at the end of the stream

    def _take_partial(self, mode: bytes) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data.replace(b"\r", b"") if mode == b"l" else data

    def send(self, data: bytes, done: int, first: bool, timed_out: bool) -> Answer:
        """Send ``data[done:]``; the number sent so far, an error with it, or a wait."""
        if self.closed or self.sock is None:
            return None, b"closed", done
        if timed_out:
            return None, b"timeout", done
        view = memoryview(data)
        while done < len(data):
            try:
                sent = self.sock.send(view[done:])
            except BlockingIOError:
                wait = self._wait_writable(first)
                return (*wait, done) if wait is not None else (None, b"timeout", done)
            except OSError as exc:
                return None, error_text(exc), done
            done += sent
            self.sent += sent
            self.sockets.bytes_sent += sent
        return (done,)

    def shutdown(self, how: bytes) -> Answer:
        modes = {b"both": socket.SHUT_RDWR, b"send": socket.SHUT_WR, b"receive": socket.SHUT_RD}
        if self.sock is not None:
            try:
                self.sock.shutdown(modes[how])
            except OSError:
                pass  # (LuaSocket returns 1 whatever happened)
        return (1.0,)

    # -- UDP --------------------------------------------------------------------
    def send_datagram(self, data: bytes, host: str | None, port: int) -> Answer:
        try:
            sock = self.ensure(_family_of(host) if host else socket.AF_INET)
            sent = sock.send(data) if host is None else sock.sendto(data, (host, port))
        except BlockingIOError:
            return None, b"timeout"
        except OSError as exc:
            return None, error_text(exc)
        self.sent += sent
        self.sockets.bytes_sent += sent
        return (float(sent),)

    def receive_datagram(self, size: int, first: bool, timed_out: bool) -> Answer:
        """One datagram: ``data, host, port`` (host None when connected)."""
        if self.closed:
            return None, b"closed"
        if timed_out:
            return None, b"timeout"
        sock = self.ensure(socket.AF_INET)
        try:
            data, address = sock.recvfrom(size)
        except BlockingIOError:
            return self._wait_readable(first) or (None, b"timeout")
        except OSError as exc:
            return None, error_text(exc)
        self.received += len(data)
        self.sockets.bytes_received += len(data)
        return data, address[0].encode(), address[1]

    def disconnect(self) -> Answer:
        """``setpeername("*")``: connect to AF_UNSPEC, which dissolves the association."""
        if self.sock is not None:
            try:
                _dissolve(self.sock)
            except OSError as exc:
                return None, error_text(exc)
        self.kind = "unconnected"
        return (1.0,)

    # -- either ---------------------------------------------------------------------
    def setoption(self, name: bytes, value: object) -> Answer:
        option = _OPTIONS.get(name)
        if option is None or self.sock is None:
            return None, b"unsupported option" if option is None else b"closed"
        level, number, kind = option
        try:
            if kind == "linger":
                on, seconds = value if isinstance(value, tuple) else (False, 0)
                packed = struct.pack("ii", 1 if on else 0, int(seconds))
                self.sock.setsockopt(level, number, packed)
            elif kind == "bool":
                self.sock.setsockopt(level, number, 1 if value else 0)
            else:
                assert isinstance(value, int | float)
                self.sock.setsockopt(level, number, int(value))
        except OSError as exc:
            return None, error_text(exc)
        return (1.0,)

    def getoption(self, name: bytes) -> Answer:
        if name == b"error":
            if self.sock is None:
                return None, b"closed"
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            return (error_text(code) if code else None,)
        option = _OPTIONS.get(name)
        if option is None or self.sock is None:
            return None, b"unsupported option" if option is None else b"closed"
        level, number, kind = option
        try:
            if kind == "linger":
                on, seconds = struct.unpack("ii", self.sock.getsockopt(level, number, 8))
                return bool(on), seconds
            raw = self.sock.getsockopt(level, number)
        except OSError as exc:
            return None, error_text(exc)
        return (bool(raw),) if kind == "bool" else (float(raw),)

    def getsockname(self) -> Answer:
        return _name(self.sock, peer=False)

    def getpeername(self) -> Answer:
        return _name(self.sock, peer=True)

    def getfd(self) -> float:
        return float(self.sock.fileno()) if self.sock is not None and not self.closed else -1.0

    def close(self) -> None:
        """Close now (idempotent); waiters wake and find the socket closed."""
        if self.closed:
            return
        self.closed = True
        self.sockets.luasocket_closed(self)
        sock, self.sock = self.sock, None
        if sock is not None:
            if self._in_hub:
                self.sockets.hub.unregister(sock.fileno())
                self._in_hub = False
            notify_closing(sock)
            sock.close()
        self._wake_readers()
        for event in self._selects:
            event.set()

    unload = close  # (the registry's name for it: docs/design.rst, "One owner")

    def crashed(self) -> None:
        self.close()

    def watch_for_select(self, event: trio.Event) -> None:
        self._selects.append(event)

    def unwatch(self, event: trio.Event) -> None:
        if event in self._selects:
            self._selects.remove(event)


_OPTIONS: Final = {
    b"keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE, "bool"),
    b"linger": (socket.SOL_SOCKET, socket.SO_LINGER, "linger"),
    b"reuseaddr": (socket.SOL_SOCKET, socket.SO_REUSEADDR, "bool"),
    b"reuseport": (socket.SOL_SOCKET, socket.SO_REUSEPORT, "bool"),
    b"broadcast": (socket.SOL_SOCKET, socket.SO_BROADCAST, "bool"),
    b"dontroute": (socket.SOL_SOCKET, socket.SO_DONTROUTE, "bool"),
    b"tcp-nodelay": (socket.IPPROTO_TCP, socket.TCP_NODELAY, "bool"),
    b"tcp-keepidle": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, "int"),
    b"tcp-keepcnt": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, "int"),
    b"tcp-keepintvl": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, "int"),
    b"ipv6-v6only": (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, "bool"),
    b"ip-multicast-ttl": (socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, "int"),
    b"ip-multicast-loop": (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, "bool"),
    b"ipv6-unicast-hops": (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, "int"),
    b"ipv6-multicast-hops": (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, "int"),
    b"ipv6-multicast-loop": (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, "bool"),
}


def _dissolve(sock: socket.socket) -> None:
    """Dissolve a UDP association (connect to AF_UNSPEC, as LuaSocket does)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    unspec = (ctypes.c_ubyte * 16)()  # sa_family 0 = AF_UNSPEC
    if libc.connect(sock.fileno(), unspec, 16) != 0:
        code = ctypes.get_errno()
        if code not in (0, errno.EAFNOSUPPORT):
            raise OSError(code, os.strerror(code))


def _family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _name(sock: socket.socket | None, *, peer: bool) -> Answer:
    if sock is None:
        return None, b"closed"
    try:
        address = sock.getpeername() if peer else sock.getsockname()
    except OSError as exc:
        return None, error_text(exc)
    family = b"inet6" if sock.family == socket.AF_INET6 else b"inet"
    return address[0].encode(), str(address[1]).encode(), family  # (the port as a string)
