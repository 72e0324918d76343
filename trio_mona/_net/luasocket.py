"""The handles behind ``require "socket"``: LuaSocket's TCP and UDP objects
(docs/lua/luasocket.rst).

A LuaSocket call never blocks the process. Each method tries its system call at once on
a non-blocking socket; when the kernel has nothing yet it answers "wait" and the Lua
side parks the calling coroutine (``_lua/socket.lua``). Reads and accepts wake through
the runtime's read hub (no task per wait, the hot path); writes, connects and timeouts
wait in a task of their own. Only the calling coroutine waits: every other socket goes
on being served.

Lua's half of the protocol: a method returns its results, or ``None, None, token,
request`` when it has to wait (the request is None for a park, which Python keeps by
its token); the coroutine yields them, and when it is woken with ``()`` it calls the
method again, with ``"timeout"`` it asks for the timeout's answer. A waiting
``receive`` is woken with its answer instead (the hub reads for it). Timeouts follow
LuaSocket: a *block* timeout bounds each wait, a *total* one the whole call, measured
from the method's first attempt.
"""

from __future__ import annotations

import errno
import math
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio
from trio.lowlevel import notify_closing, wait_writable

from .._core.addresses import SocketAddress
from .._core.events import TIMED_OUT
from . import luasec
from .hub import HANGUP
from .luasec import Secure
from .luasocket_options import (
    Answer,
    address_of,
    dissolve,
    error_text,
    family_of,
    get_option,
    set_option,
)
from .luasocket_send import SEND_ROOM, Outgoing
from .tls import TLSError

if TYPE_CHECKING:
    from .sockets import Sockets

#: Bytes one ``recv`` asks for (LuaSocket reads 8 KiB at a time; more costs nothing).
RECV_SIZE: Final = 65536
#: What a receive past ``trio_mona.luasocket_max_buffer`` returns.
LINE_TOO_LONG: Final = b"line too long"
TOO_LARGE: Final = b"receive too large"
#: The most one UDP ``receive`` reads (no datagram is larger).
DATAGRAM_MAX: Final = 65536


class Parker(Protocol):
    """How a handle parks the calling coroutine (the executor, through the runtime)."""

    def park(
        self, owner: bytes, deadline: float, parked: Callable[[int], None] | None = None
    ) -> tuple[int, object]:
        """A token and a suspension that waits until :meth:`wake` or *deadline*
        (*parked* is called with the token once a coroutine waits on it)."""

    def wait_for(
        self, owner: bytes, work: Callable[[], Awaitable[tuple[object, ...]]]
    ) -> tuple[int, object]:
        """A token and a suspension that waits for *work* (in a task of its own)."""

    def wake(self, token: int, values: tuple[object, ...] = ()) -> None:
        """Resume the coroutine parked with *token* with *values* (if it still waits)."""

    def forget(self, token: int) -> None:
        """A wait handed out by :meth:`park` will not be parked on."""

    def waits(self, token: int) -> bool:
        """Whether the coroutine parked with *token* still waits."""


@attrs.define(eq=False, repr=False)
class LuaSocket:
    """One LuaSocket object: a TCP master, client or server, or a UDP socket."""

    sockets: Sockets
    parker: Parker
    owner: bytes
    #: "master", "client", "server" (TCP), "unconnected", "connected" (UDP).
    kind: str
    family: int  #: AF_INET, AF_INET6, or AF_UNSPEC (a master that has no socket yet)
    #: A number for it while it is open (the key in ``Sockets.luasockets``).
    serial: int = 0
    sock: socket.socket | None = None
    closed: bool = False
    #: Read from the kernel, not yet returned by ``receive``.
    buffer: bytearray = attrs.field(factory=bytearray)
    #: How much of the buffer's start is known to hold no newline.
    _scanned: int = 0
    eof: bool = False
    received: float = 0.0
    sent: float = 0.0
    born: float = attrs.field(factory=time.monotonic)
    block: float = -1.0
    total: float = -1.0
    _started: float = 0.0
    _readers: list[int] = attrs.field(factory=list)
    #: The ``receive`` waiting for data: its token, mode and count.
    _receiving: tuple[int, bytes, int] | None = None
    #: The token of a wait handed out ahead of the next ``receive`` (see :meth:`_arm`).
    _armed: int | None = None
    #: The kernel may have bytes to read (False once a read found it empty while the
    #: hub watches the socket: the hub's next report sets it again).
    _ready: bool = True
    #: The peer hung up: a short read does not mean the end is not there yet.
    _hangup: bool = False
    _in_hub: bool = False
    _selects: list[trio.Event] = attrs.field(factory=list)
    #: What sends queued (a TCP client).
    _outgoing: Outgoing | None = None
    #: LuaSec's connection over this socket (``luasec.py``): set by ``ssl.wrap``; its
    #: session starts at ``dohandshake``.
    secure: Secure | None = None

    def __repr__(self) -> str:
        return f"<LuaSocket {self.kind}>"

    @property
    def is_udp(self) -> bool:
        return self.kind in ("unconnected", "connected")

    # -- timeouts -------------------------------------------------------------------
    def settimeout(self, value: float | None, mode: bytes) -> None:
        # (a negative value is no timeout, and is kept as given: gettimeout shows it)
        seconds = -1.0 if value is None or math.isnan(value) else float(value)
        if mode == b"t":
            self.total = seconds
        else:
            self.block = seconds

    def _deadline(self, first: bool) -> float:
        """When the current wait gives up (inf: never; <= now: at once). As LuaSocket's
        ``timeout_getretry``: a block timeout alone bounds the whole call (a peer that
        trickles bytes does not keep it waiting longer); with a total one too, each
        wait is bounded by the block and the call by the total."""
        if self.block < 0 and self.total < 0:
            return math.inf  # (the default: no clock to read)
        now = trio.current_time()
        if first:
            self._started = now
        if self.total < 0:
            return self._started + self.block
        deadline = self._started + self.total
        return deadline if self.block < 0 else min(deadline, now + self.block)

    def _park(self, deadline: float) -> tuple[int, object]:
        """Park until the hub reports data (or *deadline*)."""
        assert self.sock is not None
        if not self._in_hub:
            self.sockets.hub.register(self.sock.fileno(), self)
            self._in_hub = True
        return self.parker.park(self.owner, deadline)

    def _wait_readable(self, first: bool) -> Answer | None:
        """Park until the hub reports data (None: the deadline passed already); the
        call is made again then."""
        deadline = self._deadline(first)
        if deadline <= trio.current_time():
            return None
        token, suspension = self._park(deadline)
        self._readers = [t for t in self._readers if self.parker.waits(t)]
        self._readers.append(token)
        return None, None, token, suspension

    def _wait_writable(self, first: bool) -> Answer | None:
        sock = self.sock
        assert sock is not None

        async def writable() -> None:
            # (closed meanwhile, even before this task ran (its descriptor is then -1):
            # the call tries again and says so)
            try:
                await wait_writable(sock)
            except (trio.ClosedResourceError, OSError, ValueError):
                pass

        return self._wait_in_task(first, writable)

    def _wait_in_task(self, first: bool, until: Callable[[], Awaitable[object]]) -> Answer | None:
        """Wait in a task until *until* returns or the deadline passes (None: it has
        passed already); the call is made again then."""
        deadline = self._deadline(first)
        if deadline <= trio.current_time():
            return None

        async def work() -> tuple[object, ...]:
            with trio.move_on_at(deadline):
                await until()
                return ()
            return TIMED_OUT

        token, suspension = self.parker.wait_for(self.owner, work)
        return None, None, token, suspension

    def on_readable(self, mask: int) -> None:
        """The hub saw data (or a hang-up): answer a waiting ``receive`` (read here,
        so the coroutine resumes with its answer), or wake whoever waits to read."""
        self._ready = True
        if mask & HANGUP:
            self._hangup = True  # read on to the end of the stream
        if self._receiving is not None:
            self._answer_receiving()
        if self._readers:
            self._wake_readers()

    def _answer_receiving(self) -> None:
        assert self._receiving is not None
        token, mode, count = self._receiving
        if token == self._armed:
            return  # handed out, not parked on yet: parking answers (_armed_parked)
        if not self.parker.waits(token):
            self._receiving = None  # (it timed out, or its application unloaded)
            return
        before = len(self.buffer)
        answer = self._receive_now(mode, count)
        if answer is None:
            if self.block >= 0 and len(self.buffer) > before:
                # (with a block timeout, bytes that came start a new wait: ask again)
                self._receiving = None
                self.parker.wake(token, ())
            return
        self._receiving = None
        nothing_left = not self.buffer and not self.eof
        if answer[0] is not None and nothing_left and self.block < 0 and self.total < 0:
            answer = (*answer, self._arm(mode, count))
        self.parker.wake(token, answer)

    def _arm(self, mode: bytes, count: int) -> int:
        """The wait for the next ``receive`` of the same pattern, handed out with this
        answer (its token: Lua parks on it without a call; docs/lua/luasocket.rst,
        "Speed")."""
        token, _ = self.parker.park(self.owner, math.inf, self._armed_parked)
        self._receiving = (token, mode, count)
        self._armed = token
        return token

    def _armed_parked(self, token: int) -> None:
        """Lua parked on the wait handed out ahead: answer it if its data came."""
        if self._armed != token:
            return  # (forgotten: close() or another receive came first)
        self._armed = None
        if self._receiving is not None and (self._ready or self.buffer or self.eof):
            self._answer_receiving()

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
            sock = self.ensure(family_of(host))
            if not self.is_udp:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sockets.before_bind(sock)
            sock.bind((host, port))
        except OSError as exc:
            return None, error_text(exc)
        if self.is_udp:
            self._bound()
        return (1.0,)

    def _bound(self) -> None:
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
        client = LuaSocket(self.sockets, self.parker, self.owner, "client", sock.family, sock=sock)
        self.sockets.luasocket_opened(client)
        return (client,)

    def connect_start(self, host: str, port: int) -> Answer:
        """Begin a connect to one address; 1, an error, or a wait for its outcome. A
        connect that timed out leaves a client whose connect goes on: calling it
        again answers how that went (as LuaSocket 3 does)."""
        try:
            sock = self.ensure(family_of(host))
            code = sock.connect_ex((host, port))
        except OSError as exc:
            return None, error_text(exc)
        if code in (0, errno.EISCONN):
            self.kind = "connected" if self.is_udp else "client"
            return (1.0,)
        if code not in (errno.EINPROGRESS, errno.EALREADY):
            if self.kind == "master":
                self.drop_socket()  # the next address starts on a fresh socket
            return None, error_text(code)
        wait = self._wait_writable(True)
        if wait is None:
            self.kind = "client"
            return None, b"timeout"
        return wait

    def connect_failed(self) -> None:
        """Every address refused: the object is a client all the same (as LuaSocket
        sets its class whatever the connect did), with no socket: it reads "closed"."""
        if self.kind == "master":
            self.kind = "client"

    def connect_finish(self, timed_out: bool) -> Answer:
        if self.sock is None or self.closed:
            return None, b"closed"
        if timed_out:
            self.kind = "client"
            return None, b"timeout"
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            if self.kind == "master":
                self.drop_socket()
            return None, error_text(code)
        self.kind = "client"
        return (1.0,)

    def drop_socket(self) -> None:
        """Forget a socket that failed to connect (a master may try another family)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def receive(self, mode: bytes, size: float, first: bool, timed_out: bool) -> Answer:
        """``*l`` (mode ``l``), ``*a`` (``a``) or *count* bytes (``n``): the answer, or a
        wait whose wake-up carries the answer (the hub reads for it: :meth:`on_readable`).
        Called again with *timed_out* when the wait's deadline passed."""
        if self.closed or self.sock is None:
            return None, b"closed", b""
        count = int(size)  # (a float on LuaJIT)
        if mode == b"n" and count > self.sockets.settings.luasocket_max_buffer:
            return None, TOO_LARGE, b""
        if timed_out:
            self._receiving = None
            found = self._take(mode, count)
            return (
                (found, None, None)
                if found is not None
                else (None, b"timeout", self._take_partial(mode))
            )
        if self._armed is not None:  # (a wait handed out ahead is not used: this replaces it)
            self.parker.forget(self._armed)
            self._armed = self._receiving = None
        answer = self._receive_now(mode, count)
        if answer is not None:
            return answer
        deadline = self._deadline(first)
        if deadline < math.inf and deadline <= trio.current_time():
            if not self._ready:  # no wait: ask the kernel itself, not the hub
                self._ready = True
                answer = self._receive_now(mode, count)
                if answer is not None:
                    return answer
            return None, b"timeout", self._take_partial(mode)
        token, suspension = self._park(deadline)
        self._receiving = (token, mode, count)
        return None, None, token, suspension

    def _receive_now(self, mode: bytes, count: int) -> Answer | None:
        """The answer from what was read and what the kernel has, or None: wait. A line
        or ``"*a"`` that outgrows ``luasocket_max_buffer`` fails with what was read as
        the partial result (the connection stays open: the application decides)."""
        buffer = self.buffer
        limit = self.sockets.settings.luasocket_max_buffer
        while True:
            found = self._take(mode, count) if buffer else None
            if found is not None:
                return found, None, None
            if len(buffer) >= limit and mode != b"n":
                return None, LINE_TOO_LONG if mode == b"l" else TOO_LARGE, self._take_partial(mode)
            if self.eof:
                if mode == b"a" and buffer:
                    data = bytes(buffer)
                    buffer.clear()
                    self._scanned = 0
                    self.received += len(data)
                    return data, None, None
                return None, b"closed", self._take_partial(mode)
            if not self._ready:
                return None  # (the kernel had nothing at the last read: the hub says when)
            sock = self.sock
            assert sock is not None
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                self._ready = not self._in_hub
                return None
            except OSError as exc:
                message = error_text(exc)
                self.eof = message == b"closed"
                if not self.eof:
                    return None, message, self._take_partial(mode)
                continue
            if not data:
                self.eof = True
                continue
            size = len(data)
            self.sockets.bytes_received += size
            if size < RECV_SIZE and self._in_hub and not self._hangup:
                self._ready = False  # a short read emptied the kernel buffer
            if self.secure is not None:
                failed = self._decrypted(data)
                if failed is not None:
                    return None, failed, self._take_partial(mode)
                continue  # (the plaintext went to the buffer)
            if buffer:
                buffer += data
            elif (mode == b"n" and size == count) or (
                mode == b"l" and data.find(b"\n") == size - 1 and b"\r" not in data
            ):
                # One read that is exactly the answer (an echo's usual case): no copy.
                self.received += size
                return (data[:-1] if mode == b"l" else data), None, None
            else:
                self.buffer = buffer = bytearray(data)
                self._scanned = 0

    def _decrypted(self, data: bytes) -> bytes | None:
        """Records read on a LuaSec connection: their plaintext into the buffer, TLS's
        answers out; the error that ended it, if one did."""
        secure = self.secure
        assert secure is not None
        try:
            plain = secure.receive(data)
        except TLSError as error:
            self.eof = True
            return luasec.message(error)
        self._queue_raw(secure.take_output())
        if plain:
            self.buffer += plain
        if secure.ended:
            self.eof = True
        return None

    def _queue_raw(self, data: bytes) -> None:
        if data:
            if self._outgoing is None:
                assert self.sock is not None
                self._outgoing = Outgoing(self.sockets, self.sock)
            self._outgoing.add(data)

    def _take(self, mode: bytes, count: int) -> bytes | None:
        """(``received`` counts what leaves the buffer, as LuaSocket's getstats.)"""
        buffer = self.buffer
        if mode == b"l":
            end = buffer.find(b"\n", self._scanned)  # (not again over what had none)
            if end < 0:
                self._scanned = len(buffer)
                return None
            self._scanned = 0
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            self.received += end + 1
            return line.replace(b"\r", b"") if b"\r" in line else line
        if mode == b"n":
            if len(buffer) < count:
                return None
            data = bytes(buffer[:count])
            del buffer[:count]
            self._scanned = 0
            self.received += count
            return data
        return None  # "*a" ends only at the end of the stream

    def _take_partial(self, mode: bytes) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        self._scanned = 0
        self.received += len(data)
        return data.replace(b"\r", b"") if mode == b"l" else data

    def send(self, data: bytes, done: int, first: bool, timed_out: bool) -> Answer:
        """Queue ``data[done:]`` (docs: lua/luasocket): the bytes taken, an error with
        the bytes taken so far, or a wait while the queue is full."""
        if self.closed or self.sock is None:
            return None, b"closed", done
        outgoing = self._outgoing
        if outgoing is not None and outgoing.shut:  # (after shutdown("send"))
            return None, b"closed", done
        if outgoing is None:
            outgoing = self._outgoing = Outgoing(self.sockets, self.sock)
        size = len(data)
        if self.secure is not None:
            return self._send_secure(outgoing, data, done, first, timed_out)
        if done == 0 and outgoing.error is None and 0 < size <= SEND_ROOM - outgoing.size:
            outgoing.add(data)  # (the usual call: all of it fits)
            self.sent += size
            return (size,)
        while done < size:
            if outgoing.error is not None:
                return None, outgoing.error, done
            room = outgoing.room
            if room <= 0:
                outgoing.write_queued()
                if outgoing.room > 0 or outgoing.error is not None:
                    continue
                if timed_out:
                    return None, b"timeout", done
                wait = self._wait_drained(outgoing, first)
                return (*wait, done) if wait is not None else (None, b"timeout", done)
            take = min(room, size - done)
            outgoing.add(data if take == size else data[done : done + take])
            done += take
            self.sent += take
        return (done,)

    def _send_secure(self, outgoing: Outgoing, data: bytes, done: int, first: bool,
                     timed_out: bool) -> Answer:  # fmt: skip
        """A LuaSec connection's send: the rest of *data* as records, once the queue has
        room (LuaSec counts the plaintext)."""
        if outgoing.error is not None:
            return None, outgoing.error, done
        if outgoing.room <= 0:
            outgoing.write_queued()
            if outgoing.room <= 0 and outgoing.error is None:
                if timed_out:
                    return None, b"timeout", done
                wait = self._wait_drained(outgoing, first)
                return (*wait, done) if wait is not None else (None, b"timeout", done)
        secure = self.secure
        assert secure is not None
        self._queue_raw(secure.encrypt(data[done:]))
        self.sent += len(data) - done
        return (len(data),)

    def handshake(self, first: bool, timed_out: bool) -> Answer:
        """LuaSec's ``dohandshake``: true once the handshake is over, an error, or a wait
        for the peer's next bytes."""
        secure = self.secure
        if self.closed or self.sock is None or secure is None:
            return None, b"closed"
        self._queue_raw(secure.start())
        while not secure.established:
            if self.eof:
                return None, secure.failure or b"closed"
            if timed_out:
                return None, b"timeout"
            sock = self.sock
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                self._ready = not self._in_hub
                return self._wait_readable(first) or (None, b"timeout")
            except OSError as exc:
                return None, error_text(exc)
            if not data:
                self.eof = True
                continue
            self.sockets.bytes_received += len(data)
            failed = self._decrypted(data)
            if failed is not None:
                secure.failure = failed
                return None, failed
        return (True,)

    def _wait_drained(self, outgoing: Outgoing, first: bool) -> Answer | None:
        drained = outgoing.drained
        if drained is None:  # (one event for every send waiting on this socket)
            drained = outgoing.drained = trio.Event()
        return self._wait_in_task(first, drained.wait)

    def shutdown(self, how: bytes) -> Answer:
        modes = {b"both": socket.SHUT_RDWR, b"send": socket.SHUT_WR, b"receive": socket.SHUT_RD}
        if self.sock is not None:
            if self._outgoing is None:
                self._outgoing = Outgoing(self.sockets, self.sock)
            self._outgoing.shutdown(modes[how])
        return (1.0,)

    # -- UDP --------------------------------------------------------------------
    def send_datagram(self, data: bytes, host: str | None, port: int) -> Answer:
        try:
            sock = self.ensure(family_of(host) if host else socket.AF_INET)
            if not self.sockets.writes.durable():
                return None, b"not sent: a commit of data is failing"
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
            data, address = sock.recvfrom(max(0, min(size, DATAGRAM_MAX)))
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
                dissolve(self.sock)
            except OSError as exc:
                return None, error_text(exc)
        self.kind = "unconnected"
        return (1.0,)

    # -- either ---------------------------------------------------------------------
    def setoption(self, name: bytes, value: object) -> Answer:
        return set_option(self.sock, name, value)

    def getoption(self, name: bytes) -> Answer:
        return get_option(self.sock, name)

    def getsockname(self) -> Answer:
        return address_of(self.sock, peer=False)

    def getpeername(self) -> Answer:
        return address_of(self.sock, peer=True)

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
            if self._outgoing is not None:
                self._outgoing.close()  # (after what is queued)
            else:
                notify_closing(sock)
                sock.close()
        receiving, self._receiving = self._receiving, None
        if receiving is not None:
            self.parker.wake(receiving[0], (None, b"closed", self._take_partial(receiving[1])))
        if self._armed is not None:  # (parked on later, it ends at once: "closed" then)
            self.parker.forget(self._armed)
            self._armed = None
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
