"""The TCP transport: one socket's I/O, whoever consumes its bytes.

A transport connects (or is given an accepted socket by a listener, ``listener.py``),
has the read hub (``hub.py``) report its socket, reads it when the hub says so and as
far as back-pressure allows, queues what its consumer sends (``_core/sendqueue.py``) and
writes it with the executor's batch or through the one flusher (``writes.py``), closes
an idle connection, flushes within the linger time when it closes, and reports the end
once. Its own Trio task connects it, waits while it is open, then flushes and closes it.

A consumer is a subclass. Its reads reach it as events of its class's
:attr:`Transport.read_event`, which the executor hands to it in its own task (in order,
behind a suspended handler); it takes what it read through the transport's
:class:`Inbound` and calls :meth:`Transport.resume_reading`; it is told of the end
(:meth:`Transport.closed`); and it decides what happens past the send limits (the Lua
client's ``send`` fails; a media listener will drop). The Lua TCP client (``tcp.py``)
is one; protocol sessions are the next. The socket is read here and nowhere else.

With :attr:`Transport.tls` set (``tls.py``) the same paths carry TLS: reads are
decrypted before the consumer sees them, sends encrypted as they are queued.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import socket
import time
from typing import Any, ClassVar, Final, Protocol

import attrs
import trio
from trio.lowlevel import notify_closing, wait_writable

from .._core.addresses import HostName, SocketAddress
from .._core.errors import os_message
from .._core.events import DataReceived
from .._core.inbound import READ_AHEAD, RECV_SIZE, Inbound
from .._core.sendqueue import SendQueue
from .dns import ResolveError, resolve_name
from .endpoint import Endpoint
from .hub import HANGUP
from .tasks import INTERNAL_ERROR
from .tls import TLS, TLSError
from .writes import flush

log = logging.getLogger("trio_mona")


class Accepting(Protocol):
    """The listener that accepted a connection, as the connection sees it."""

    open_connections: int


class State(enum.Enum):
    IDLE = "idle"  # never connected, or disconnected and reported
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"  # close() called or peer closed: flushing
    CLOSED = "closed"  # socket closed, the end not yet reported


# The states as plain names: Python 3.11 looks up an Enum's members through
# ``EnumType.__getattr__``, ~0.1 us each, several times per message (docs/performance.rst).
IDLE: Final = State.IDLE
CONNECTING: Final = State.CONNECTING
CONNECTED: Final = State.CONNECTED
CLOSING: Final = State.CLOSING
CLOSED: Final = State.CLOSED


def _queue(transport: Transport) -> SendQueue:
    return SendQueue(transport.sockets.unsent)


@attrs.define(eq=False, repr=False)
class Transport(Endpoint):
    """One TCP connection's socket (see the module docstring)."""

    #: What its reads become: events for the executor, which hands them to the
    #: consumer in its task, in order behind a suspended handler (the consumer's
    #: choice of class tells the executor which consumer it is).
    read_event: ClassVar[type[Any]] = DataReceived

    #: The listener that accepted it (None: it connects), to count its open connections.
    server: Accepting | None = None
    #: What it read and the consumer has not taken yet (read-ahead), and what the
    #: consumer kept (the Lua client's rest rule).
    inbound: Inbound = attrs.field(factory=Inbound)
    queue: SendQueue = attrs.field(default=attrs.Factory(_queue, takes_self=True))
    #: Its TLS session (``tls.py``), set before it connects or serves: the queue then
    #: holds records, and reads are decrypted before the consumer sees them.
    tls: TLS | None = None
    #: Read by the executor on every read: an attribute (a property costs a call).
    state: State = State.IDLE
    _sock: socket.socket | None = None
    _error: str | None = None
    _last_send: float = 0.0
    #: When data last arrived (for trio_mona.idle_timeout).
    _last_receive: float = 0.0
    _read_scope: trio.CancelScope | None = None
    _flush_scope: trio.CancelScope | None = None
    _flushing: bool = False
    _flushed: trio.Event | None = None
    #: Set when the task has something to do: end of stream, or all data consumed.
    _wake: trio.Event | None = None
    #: The hub reported data (or EOF) that has not been read yet (edge-triggered).
    _ready: bool = False
    #: The peer hung up: read to the end instead of stopping at a short read.
    _hangup: bool = False
    #: The task waits with no idle limit (:meth:`wake`).
    _unbounded: bool = False
    _eof: bool = False
    #: A task waited on the socket through Trio (connect, flusher): Trio is told before
    #: it closes (else there is nothing to tell, and telling costs a system call).
    _trio_waited: bool = False

    def __repr__(self) -> str:
        peer = self._peer.value if self._peer else "-"
        return f"<{self.__class__.__name__} {self.state.value} peer={peer}>"

    # -- the consumer's part -------------------------------------------------------
    def closed(self) -> None:
        """The socket is closed (:attr:`error` says why, when it failed): report it."""
        raise NotImplementedError

    def unfinished(self) -> bool:
        """Whether the consumer still has work with what it read (the peer closed its
        side: the connection closes once it has none); it calls :meth:`wake` when
        that ends. The Lua client's work ends when it has taken every byte."""
        return self.inbound.unconsumed > 0

    def idle_setting(self) -> str:
        """The setting :meth:`idle_limit` reads, as an idle close names it."""
        return "trio_mona.idle_timeout"

    def last_activity(self) -> float:
        """When the idle time counts from: the last byte either way."""
        return max(self._last_receive, self._last_send)

    def idled(self, why: str) -> None:
        """The idle limit passed: close (the consumer may say goodbye first)."""
        self._fail(why)

    def idle_limit(self) -> float:
        """Seconds without a byte either way before the connection is closed (0:
        never); asked again whenever the transport's task wakes (:meth:`wake`)."""
        return self.sockets.settings.idle_timeout

    # -- what consumers call -----------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.state is CONNECTED

    @property
    def error(self) -> str | None:
        """Why the connection failed or closed, if it did."""
        return self._error

    def idle_time(self) -> int:
        """Milliseconds since the last send (or since the connection began)."""
        if not self._last_send:
            return 0
        return int((time.monotonic() - self._last_send) * 1000)

    def open(self, target: SocketAddress | HostName) -> None:
        """Start connecting to *target* (the transport is idle)."""
        self._reset()
        self.state = CONNECTING
        self._spawn(target)

    def accepted(self, sock: socket.socket, peer: SocketAddress) -> bool:
        """Serve a socket a listener accepted (*peer* as accept() gave it: no
        getpeername); False if it failed at once (then it is closed)."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._established(sock, peer)
        except OSError:
            sock.close()
            return False
        self._spawn(None)
        return True

    def send(self, data: bytes) -> int | tuple[None, bytes]:
        """Queue *data* within the send limits and see that it is written soon
        (:class:`Writes`). Return the room left: how many bytes more may be queued
        within both limits (the Lua client lets the running job hold that much in Lua);
        or ``None`` and why nothing was queued (closed, or past a limit: the consumer's
        policy decides what that means)."""
        state = self.state
        if state is not CONNECTED and state is not CONNECTING:
            return None, b"socket not connected"
        settings = self.sockets.settings
        queue = self.queue
        size = len(data)
        if self.tls is not None:  # (what waits for the handshake counts as queued)
            size += self.tls.held
        room = settings.hard_limit - queue.size - size
        spare = settings.max_unsent - queue.total.bytes - size
        if room < 0 or spare < 0:
            refusal = queue.refusal(size, settings.hard_limit, settings.max_unsent)
            return None, (refusal or "send queue full").encode()
        if self.tls is not None:
            data = self.tls.encrypt(data)
            if not data:  # (held until the handshake ends)
                return room if room < spare else spare
        first = queue.push(data)
        if state is CONNECTED and not self._flushing:  # (enqueue's, on the hot path)
            self.sockets.writes.schedule(self, first)
            if self.state is not state:  # the write failed: closing
                return None, (self._error or "socket not connected").encode()
        return room if room < spare else spare

    def enqueue(self, data: bytes) -> None:
        """Queue *data* with no limit (what the consumer checked already, e.g. within
        the room :meth:`send` gave) and see that it is written soon."""
        if self.tls is not None:
            data = self.tls.encrypt(data)
            if not data:
                return
        self._enqueue_raw(data)

    def _enqueue_raw(self, data: bytes) -> None:
        first = self.queue.push(data)
        if self.state is CONNECTED and not self._flushing:
            self.sockets.writes.schedule(self, first)

    def queued(self) -> int:
        """The bytes still to be written."""
        return self.queue.size

    def send_or_close(self, data: bytes, peer: str) -> bool:
        """Queue *data* as :meth:`send` does; past a limit (*peer*, e.g. "a listener",
        does not read what it is sent) close the connection now. False when nothing was
        queued: closed already, or for this (a failed write closes it by itself).

        The fan-out's path (every frame to every player): with nothing queued and
        writes going out at once, the socket is tried first, without the queue."""
        sock = self._sock
        if (
            sock is not None
            and self.tls is None
            and not self.queue.items
            and self.state is CONNECTED
            and not self._flushing
            and self.sockets.writes.immediate()
        ):
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._fail(exc)
                return False
            if sent:
                self.sockets.bytes_sent += sent
                self._last_send = time.monotonic()
                if sent == len(data):
                    return True
                data = data[sent:]
        result = self.send(data)
        if result.__class__ is not tuple:
            return True
        if self.state is CONNECTED:
            log.warning("%r: %s does not read: %s; closed", self, peer, result[1].decode())
            self.close_now()
        return False

    def take(self, data: bytes) -> bytes | None:
        """A protocol session takes one of its reads (its bytes, or None: nothing new),
        letting reading go on if it waited for this (see :meth:`resume_reading`)."""
        inbound = self.inbound
        found = inbound.take(data)
        if inbound.paused:
            self.resume_reading()
        return found

    def resume_reading(self) -> None:
        """The consumer took what it read while reading waited for it
        (``inbound.paused``): reading may go on."""
        self.inbound.paused = False
        if self._ready:
            self.on_readable(0)
        if self._eof:
            if self.inbound.unconsumed:
                self.inbound.paused = True  # (the end waits for the last of them)
            else:
                self._wake_task()

    def close(self) -> None:
        """Stop reading, flush what is queued (within the linger time), then close.

        While still connecting with bytes queued, the attempt goes on (within the
        linger time) so that they are delivered; without any, it is abandoned."""
        state = self.state
        if state is CONNECTING or state is CONNECTED:
            self.state = CLOSING
            if state is CONNECTING and self.queue.items:
                return
            if self._read_scope is not None:
                self._read_scope.cancel()

    def unload(self) -> None:
        """Its application is unloading: flush and close, with no more events for it."""
        self.table = None
        self.close()

    def close_now(self) -> None:
        """Close without flushing (shutdown, or an accept nobody will see)."""
        self.state = CLOSING
        self.queue.clear()
        if self._read_scope is not None:
            self._read_scope.cancel()

    def crashed(self) -> None:
        """One of its tasks failed unexpectedly: close, reporting INTERNAL_ERROR (its
        own task then reports the end, as for any failure)."""
        self._fail(INTERNAL_ERROR)

    def ended(self) -> None:
        """The end was reported: the transport may connect again from now on."""
        self.state = IDLE

    # -- the executor's batch ----------------------------------------------------------
    def write_queued(self) -> None:
        """Write what is queued; what the kernel cannot take now goes to the flusher."""
        sock = self._sock
        if self._flushing or sock is None or not self.queue.items:
            return
        state = self.state
        if state is not CONNECTED and state is not CLOSING:
            return
        try:
            self.write_some(sock)
        except Exception:
            log.exception("internal error in %r: it is closed", self)
            self.crashed()
            return
        if self.queue.items:
            self._start_flusher()

    # -- the flusher's part (writes.Flushable) ---------------------------------------------
    def writes_to(self, sock: socket.socket) -> bool:
        return self._sock is sock and sock.fileno() >= 0

    def write_some(self, sock: socket.socket) -> None:
        """Write from the queue until it is empty or the kernel buffer is full."""
        sockets = self.sockets
        writes = sockets.writes
        if writes.commit is not None and not writes.durable():
            return  # (held while commits fail: the flusher task waits for one to work)
        queue = self.queue
        try:
            while queue.items:
                sent, full = queue.write(sock)
                sockets.bytes_sent += sent
                self._last_send = time.monotonic()
                if full:
                    break
        except BlockingIOError:
            pass
        except OSError as exc:
            self._fail(exc)
        if self._ready:
            self.on_readable(0)

    def flush_ended(self, failure: OSError | str | None) -> None:
        if failure is not None:
            self._fail(failure)
        self._flushing = False
        self._flush_scope = None
        if self._flushed is not None:
            self._flushed.set()

    # -- internals --------------------------------------------------------------------
    def _reset(self) -> None:
        self.inbound.reset()
        self._error = None
        self._set_local(None)
        self._set_peer(None)
        self._ready = self._hangup = self._eof = self._trio_waited = False
        self.queue.clear()

    def _start_flusher(self) -> None:
        sock = self._sock
        assert sock is not None
        self._flushing = True
        self._trio_waited = True
        self.sockets.bytes_queued += self.queue.size
        writes = self.sockets.writes

        async def flusher() -> None:
            with trio.CancelScope() as self._flush_scope:
                await flush(self, sock, self.queue, writes)

        self.sockets.spawn(self, flusher)

    def _fail(self, exc: OSError | str) -> None:
        """A socket error: record it and close without flushing."""
        if self._error is None:
            self._error = exc if isinstance(exc, str) else os_message(exc)
        self.queue.clear()
        if self.state is CONNECTED or self.state is CONNECTING:
            self.state = CLOSING
        if self._read_scope is not None:
            self._read_scope.cancel()

    def on_readable(self, mask: int) -> None:
        """Read until the kernel buffer is empty or back-pressure says stop.

        Called by the hub (new data or a hang-up in *mask*, in the executor's task), or
        with mask 0 while its last report is not read to the end (``_ready``): when the
        consumer took data, or when the queue drained. It never waits.
        """
        self._ready = True
        if mask & HANGUP:
            self._hangup = True
        if self.state is not CONNECTED:
            return
        sock = self._sock
        if sock is None:
            return
        recv = sock.recv
        tls = self.tls
        sockets = self.sockets
        deliver = sockets.deliver
        read_event = self.read_event
        soft_limit = sockets.settings.soft_limit
        inbound = self.inbound
        queue = self.queue
        # Back-pressure: a long send queue (the flusher resumes), or far enough ahead of
        # the consumer (its next take resumes).
        while queue.size <= soft_limit and inbound.unconsumed < READ_AHEAD:
            try:
                data = recv(RECV_SIZE)
            except BlockingIOError:
                self._ready = False
                return
            except OSError as exc:
                self._ready = False
                self._fail(exc)
                return
            size = len(data)
            if not size:
                self._ready = False
                self._eof = True
                self._wake_task()
                return
            if tls is None:
                inbound.unconsumed += size
                self._last_receive = time.monotonic()
                sockets.bytes_received += size
                deliver(read_event(self, data))
            elif not self._decrypt(tls, data):
                return
            # A short read emptied the kernel buffer: new data brings a new edge.
            if size < RECV_SIZE and not self._hangup:
                self._ready = False
                return
        if inbound.full:  # (else the send queue stopped it: the flusher resumes)
            inbound.paused = True

    def _decrypt(self, tls: TLS, data: bytes) -> bool:
        """Records read on a TLS connection: their plaintext to the consumer, TLS's
        answers out. False when reading stops (TLS failed, or the peer ended it)."""
        self._last_receive = time.monotonic()
        self.sockets.bytes_received += len(data)
        try:
            plain, reply = tls.receive(data)
        except TLSError as error:
            log.info("%r: %s; closed", self, error)
            self._ready = False
            self._fail(str(error))
            return False
        if reply:
            self._enqueue_raw(reply)
        if plain:
            self.inbound.unconsumed += len(plain)
            self.sockets.deliver(self.read_event(self, plain))
        if tls.ended:
            self._ready = False
            self._eof = True
            self._wake_task()
            return False
        return True

    def wake(self, *, always: bool = False) -> None:
        """The idle limit may have changed: have the transport's task look at it again
        if it waits with none (else its timer will; *always*: a limit made shorter)."""
        if always or self._unbounded:
            self._wake_task()

    def _wake_task(self) -> None:
        event = self._wake
        if event is not None:
            self._wake = None
            event.set()

    async def _sleep(self) -> None:
        """Park the transport's task until :meth:`_wake_task`."""
        self._wake = event = trio.Event()
        await event.wait()

    def _spawn(self, target: SocketAddress | HostName | None) -> None:
        """Start the transport's own task: connect to *target* (None: accepted), serve,
        close."""
        self.sockets.connection_started(self)
        self.sockets.spawn(self, lambda: self._run(target))

    async def _run(self, target: SocketAddress | HostName | None) -> None:
        """The transport's task: connect (unless accepted), read, then close and report."""
        try:
            with trio.CancelScope() as self._read_scope:
                if target is not None and self.state is CONNECTING:
                    await self._connect(target)  # (skipped if close() came first)
                elif target is not None and self.queue.items:
                    await self._connect_to_flush(target)
                if self.state is CONNECTED:
                    if self.queue.items and not self._flushing:
                        self._start_flusher()  # what was sent while connecting
                    await self._serve()
        except OSError as exc:
            self._fail(exc)
        finally:
            self._read_scope = None
            try:
                await self._finish()
            finally:
                if self.server is not None:  # (the transport may connect again later)
                    self.server.open_connections -= 1
                    self.server = None
                self.sockets.connection_ended(self)

    async def _connect_to_flush(self, target: SocketAddress | HostName) -> None:
        """close() came while connecting, with bytes queued: connect within the linger
        time; _finish flushes them then."""
        with trio.move_on_after(self.sockets.settings.linger):
            await self._connect(target)
        if self._sock is None and self._error is None:
            self._fail(f"closed with {self.queue.size} bytes unsent: not connected within "
                       "the linger time")  # fmt: skip

    async def _connect(self, target: SocketAddress | HostName) -> None:
        if isinstance(target, HostName):
            try:
                candidates = await resolve_name(target)
            except ResolveError as exc:
                self._fail(str(exc))
                return
        else:
            candidates = [target]
        failure = "no address to connect to"
        for candidate in candidates:
            sock = socket.socket(candidate.family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                code = sock.connect_ex(candidate.sockaddr())
                if code == errno.EINPROGRESS:
                    self._trio_waited = True
                    await wait_writable(sock)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    failure = f"connect to {candidate.value} failed: {os.strerror(code)}"
                    sock.close()
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._established(sock, candidate)
                if self.tls is not None:  # (a TLS client speaks first)
                    self._enqueue_raw(self.tls.start())
                return
            except BaseException:
                sock.close()
                raise
        self._fail(failure)

    def _established(self, sock: socket.socket, peer: SocketAddress | None = None) -> None:
        self._sock = sock
        self._set_local(SocketAddress.from_sockaddr(sock.getsockname()))
        self._set_peer(peer or SocketAddress.from_sockaddr(sock.getpeername()))
        self._last_send = time.monotonic()
        if self.state is CONNECTING or self.state is IDLE:
            self.state = CONNECTED

    async def _serve(self) -> None:
        """While connected: the hub reads; this task waits for the end of the stream."""
        sock = self._sock
        assert sock is not None
        hub = self.sockets.hub
        hub.register(sock.fileno(), self)
        self._last_receive = time.monotonic()
        try:
            while not self._eof:
                idle = self.idle_limit()
                if not idle:
                    self._unbounded = True
                    try:
                        await self._sleep()
                    finally:
                        self._unbounded = False
                    continue
                quiet = time.monotonic() - self.last_activity()
                if quiet >= idle:
                    self.idled(f"idle for {idle:g} s ({self.idle_setting()})")
                    return
                with trio.move_on_after(idle - quiet):
                    await self._sleep()
            # Peer closed: let the consumer see what was read (and answer it), then close.
            while self.state is CONNECTED and self.unfinished():
                if self.inbound.unconsumed > 0:
                    self.inbound.paused = True  # (its takes wake this task)
                self._unbounded = True  # (and so does wake())
                try:
                    await self._sleep()
                finally:
                    self._unbounded = False
            if self.state is CONNECTED:
                self.state = CLOSING
        finally:
            hub.unregister(sock.fileno())

    async def _finish(self) -> None:
        """Flush within the linger time, close the socket, report the end once."""
        sock = self._sock
        try:
            if sock is not None and self.tls is not None and self._error is None:
                goodbye = self.tls.goodbye()  # (close_notify: the peer sees a clean end)
                if goodbye:
                    self.queue.push(goodbye)
            if sock is not None and self.queue.items:
                with trio.move_on_after(self.sockets.settings.linger):
                    if not self._flushing:
                        self._start_flusher()
                    self._flushed = trio.Event()
                    if self._flushing:
                        await self._flushed.wait()
                if self.queue.items:
                    self._fail(f"closed with {self.queue.size} bytes unsent after the linger time")
        finally:
            try:
                if self._flush_scope is not None:
                    self._flush_scope.cancel()
                self._sock = None
                if sock is not None:
                    if self._trio_waited:
                        notify_closing(sock)
                    sock.close()
            finally:
                self._flushed = None
                self._wake = None
                self.queue.clear()
                self.state = CLOSED
                self.closed()
