"""The TCP client/connection handle (servers: ``_tcp_server.py``).

Each handle is the private Python side of one Lua object (docs/design.rst). A connection's
own Trio task connects it, waits while it is open, then flushes and closes it; while it
is open the runtime's read hub (``hub.py``) reads its raw non-blocking socket for it.
Methods called from Lua (``send``, ``connect``, ``disconnect``, ``start``, ``stop``) are
synchronous and never wait: ``send`` writes at once when the kernel has room and queues
the rest for a flusher task driven by ``wait_writable``.

Links to the Lua object are held only while the socket is active and are broken
when it closes, so no cycle between the two garbage collectors outlives a connection.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import socket
import time
from collections import deque
from typing import Any, Final, Protocol

import attrs
import trio
from trio.lowlevel import notify_closing, wait_writable

from .._core.addresses import LOCALHOST, AddressError, HostName, SocketAddress, parse_target
from .._core.errors import os_message
from .._core.events import Closed, DataReceived, LuaObject
from .._core.inbound import READ_AHEAD, RECV_SIZE, Inbound
from .dns import ResolveError, resolve_name
from .endpoint import Endpoint
from .hub import HANGUP
from .tasks import INTERNAL_ERROR
from .writes import send_queued

log = logging.getLogger("trio_mona")


class Accepting(Protocol):
    """The server that accepted a connection, as the connection sees it."""

    open_connections: int


class State(enum.Enum):
    IDLE = "idle"  # never connected, or disconnected and reported
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"  # disconnect() called or peer closed: flushing
    CLOSED = "closed"  # socket closed, onDisconnection not yet fired


# The states as plain names: Python 3.11 looks up an Enum's members through
# ``EnumType.__getattr__``, ~0.1 us each, several times per message (docs/performance.rst).
IDLE: Final = State.IDLE
CONNECTING: Final = State.CONNECTING
CONNECTED: Final = State.CONNECTED
CLOSING: Final = State.CLOSING
CLOSED: Final = State.CLOSED


@attrs.define(eq=False, repr=False)
class TCPConnection(Endpoint):
    """A TCP client (``mona:createTCPClient()``) or an accepted connection."""

    #: The server that accepted it (None: a client), to count its open connections.
    server: Accepting | None = None
    #: What it read and Lua has not taken yet, and what onData kept (sans I/O).
    inbound: Inbound = attrs.field(factory=Inbound)
    _state: State = State.IDLE
    _sock: socket.socket | None = None
    _error: str | None = None
    _last_send: float = 0.0
    #: When data last arrived (for trio_mona.idle_timeout).
    _last_receive: float = 0.0
    _out: deque[bytes | memoryview] = attrs.field(factory=deque)
    _out_size: int = 0
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
    _eof: bool = False
    #: A task waited on the socket through Trio (connect, flusher): Trio is told before
    #: it closes (else there is nothing to tell, and telling costs a system call).
    _trio_waited: bool = False

    def __repr__(self) -> str:
        peer = self._peer.value if self._peer else "-"
        return f"<TCPConnection {self._state.value} peer={peer}>"

    # -- Lua methods (synchronous, never wait) -------------------------------------
    def connect(self, table: LuaObject, first: object, second: object) -> bytes | None:
        """Start connecting; return None, or an error message when it cannot start."""
        if self._state is not IDLE:
            return b"already connected" if self._state is CONNECTED else b"connection in progress"
        try:
            target = parse_target(first, second, default_host=LOCALHOST, allow_names=True)
        except AddressError as exc:
            return str(exc).encode()
        if target.port == 0:
            return b"cannot connect to port 0"
        limit = self.sockets.settings.max_connections
        if limit and self.sockets.connection_count >= limit:
            return f"too many connections: {limit} open (trio_mona.max_connections)".encode()
        self._reset(table)
        self._state = CONNECTING
        self._spawn(target)
        return None

    def send(self, data: bytes) -> int | tuple[None, bytes]:
        """Queue *data* and see that it is written soon (:class:`Writes`). Return how
        many bytes more the running job may hold in Lua for this connection before it
        asks again (sends held during a job: docs/lua/tcp.rst), or ``None`` and an
        error message (socket closed, or the queue past a limit)."""
        state = self._state
        if state is not CONNECTED and state is not CONNECTING:
            return None, b"socket not connected"
        sockets = self.sockets
        settings = sockets.settings
        size = self._out_size + len(data)
        if size > settings.hard_limit:
            message = f"send queue full: {self._out_size} bytes unsent, limit {settings.hard_limit}"
            return None, message.encode()
        unsent = sockets.unsent + len(data)
        if unsent > settings.max_unsent:
            message = (
                f"send queue full: {sockets.unsent} bytes unsent across connections, "
                f"limit {settings.max_unsent} (trio_mona.max_unsent)"
            )
            return None, message.encode()
        out = self._out  # _enqueue, inlined: the hot path
        out.append(data)
        self._out_size = size
        sockets.unsent = unsent
        if state is CONNECTED and not self._flushing:
            writes = sockets.writes
            if writes.now and writes.commit is None:  # (else with the commit: Writes)
                self.write_queued()
                if self._state is not state:  # the write failed: closing
                    return None, (self._error or "socket not connected").encode()
            elif len(out) == 1:
                writes.pending.append(self)
        room, spare = settings.hard_limit - size, settings.max_unsent - unsent
        return room if room < spare else spare

    def send_held(self, data: bytes) -> None:
        """Queue what Lua held at the end of a job, within the room :meth:`send` gave."""
        if self._state is CONNECTED or self._state is CONNECTING:
            self._enqueue(data)

    def _enqueue(self, data: bytes) -> None:
        out = self._out
        out.append(data)
        self._out_size += len(data)
        self.sockets.unsent += len(data)
        if self._state is CONNECTED and not self._flushing:
            writes = self.sockets.writes
            if writes.now and writes.commit is None:  # (else with the commit: Writes)
                self.write_queued()
            elif len(out) == 1:
                writes.pending.append(self)

    def disconnect(self) -> None:
        """Stop reading, flush what is queued (within the linger time), then close.

        While still connecting with bytes queued, the attempt goes on (within the
        linger time) so that they are delivered; without any, it is abandoned."""
        state = self._state
        if state is CONNECTING or state is CONNECTED:
            self._state = CLOSING
            if state is CONNECTING and self._out:
                return
            if self._read_scope is not None:
                self._read_scope.cancel()

    # -- properties ----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._state is CONNECTED

    @property
    def error(self) -> str | None:
        """Why the connection failed or closed, if it did."""
        return self._error

    def idle_time(self) -> int:
        """Milliseconds since the last send (or since the connection began)."""
        if not self._last_send:
            return 0
        return int((time.monotonic() - self._last_send) * 1000)

    # -- executor side ----------------------------------------------------------
    def attach(self, table: LuaObject) -> None:
        self.table = table

    def detach(self) -> LuaObject | None:
        """Closed is being reported: the object may connect again from now on."""
        table, self.table = self.table, None
        self._state = IDLE
        return table

    def forget(self) -> None:
        """After onDisconnection: drop what described the finished connection."""
        if self._state is IDLE:
            self._set_local(None)
            self._set_peer(None)
            self.memo.clear()

    def take(self, data: bytes) -> bytes | None:
        """A read reaches the executor: what onData is to get now (None: nothing yet;
        see :meth:`Inbound.take`). Reading may go on."""
        inbound = self.inbound
        if data and not inbound.unseen and not inbound.kept:  # (Inbound.take's usual case)
            inbound.unconsumed -= len(data)
            taken: bytes | None = data
        else:
            taken = inbound.take(data)
        if self._ready:
            self._pump()
        if self._eof and not inbound.unconsumed:
            self._wake_task()
        return taken

    def keep(self, data: bytes, rest: Any) -> None:
        """What onData left of *data*, as the Lua side of the rest rule counted it
        (``rest_count`` in _lua/objects.lua): see :meth:`Inbound.keep`."""
        if self.inbound.keep(data, int(rest) if rest else 0):
            self.sockets.post(DataReceived(self, b""))  # its next turn

    def on_readable(self, mask: int) -> None:
        """The hub saw data or a hang-up: read it (called in the executor's task)."""
        self._ready = True
        if mask & HANGUP:
            self._hangup = True
        self._pump()

    def abandon(self) -> None:
        """Its application is unloading: flush and close, with no more Lua events."""
        self.table = None
        self.disconnect()

    unload = abandon  # (the registry's name for it: docs/design.rst, "One owner")

    def _spawn(self, target: SocketAddress | HostName | None) -> None:
        """Start the connection's own task: connect to *target* (None: accepted), serve,
        close."""
        self.sockets.connection_started(self)
        self.sockets.spawn(self, lambda: self._run(target))

    def _ended(self) -> None:
        if self.server is not None:  # (an accepted connection may connect again later)
            self.server.open_connections -= 1
            self.server = None
        self.sockets.connection_ended(self)

    def crashed(self) -> None:
        """One of this connection's tasks failed unexpectedly: close it, reporting
        INTERNAL_ERROR (its own task then fires onDisconnection, as for any failure)."""
        self._fail(INTERNAL_ERROR)

    def close_now(self) -> None:
        """Close without flushing (shutdown, or an accept nobody will see)."""
        self._state = CLOSING
        self._drop_queue()
        if self._read_scope is not None:
            self._read_scope.cancel()

    # -- internals --------------------------------------------------------------
    def _reset(self, table: LuaObject | None) -> None:
        self.table = table
        self.inbound.reset()
        self._error = None
        self._set_local(None)
        self._set_peer(None)
        self._ready = self._hangup = self._eof = self._trio_waited = False
        self._drop_queue()

    def _drop_queue(self) -> None:
        self.sockets.unsent -= self._out_size
        self._out.clear()
        self._out_size = 0

    def write_queued(self) -> None:
        """Write what Lua sent; what the kernel cannot take now goes to the flusher."""
        sock = self._sock
        if self._flushing or sock is None or not self._out:
            return
        state = self._state
        if state is not CONNECTED and state is not CLOSING:
            return
        try:
            self._write_some(sock)
        except OSError as exc:
            self._fail(exc)
            return
        except Exception:
            log.exception("internal error in %r: it is closed", self)
            self.crashed()
            return
        if self._out:
            self._start_flusher()

    def _start_flusher(self) -> None:
        self._flushing = True
        self.sockets.bytes_queued += self._out_size
        self.sockets.spawn(self, self._flush)

    def _fail(self, exc: OSError | str) -> None:
        """A socket error: record it and close without flushing."""
        if self._error is None:
            self._error = exc if isinstance(exc, str) else os_message(exc)
        self._drop_queue()
        if self._state is CONNECTED or self._state is CONNECTING:
            self._state = CLOSING
        if self._read_scope is not None:
            self._read_scope.cancel()

    def _pump(self) -> None:
        """Read until the kernel buffer is empty or back-pressure says stop.

        Called by whichever task noticed that reading may go on, while the hub's last
        report is not read to the end (``_ready``): the hub (new data, in the
        executor's task), the executor (data taken) or the flusher (queue drained). It
        never waits.
        """
        if self._state is not CONNECTED:
            return
        sock = self._sock
        if sock is None:
            return
        recv = sock.recv
        sockets = self.sockets
        deliver = sockets.deliver
        soft_limit = sockets.settings.soft_limit
        inbound = self.inbound
        # Back-pressure: a long send queue, or far enough ahead of Lua.
        while self._out_size <= soft_limit and inbound.unconsumed < READ_AHEAD:
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
            inbound.unconsumed += size
            self._last_receive = time.monotonic()
            sockets.bytes_received += size
            deliver(DataReceived(self, data))
            # A short read emptied the kernel buffer: new data brings a new edge.
            if size < RECV_SIZE and not self._hangup:
                self._ready = False
                return

    def _wake_task(self) -> None:
        event = self._wake
        if event is not None:
            self._wake = None
            event.set()

    async def _sleep(self) -> None:
        """Park the handle's task until :meth:`_wake_task`."""
        self._wake = event = trio.Event()
        await event.wait()

    def _write_some(self, sock: socket.socket) -> None:
        """Send from the queue until it is empty or the kernel buffer is full."""
        sockets = self.sockets
        writes = sockets.writes
        if writes.commit is not None and not writes.durable():
            return  # (held while commits fail: the flusher task waits for one to work)
        out = self._out
        while out:
            try:
                sent, full = send_queued(sock, out)
            except BlockingIOError:
                break
            self._out_size -= sent
            sockets.unsent -= sent
            sockets.bytes_sent += sent
            self._last_send = time.monotonic()
            if full:
                break
        if self._ready:
            self._pump()

    async def _flush(self) -> None:
        """The handle's writer: drains the queue while the kernel takes it."""
        sock = self._sock
        self._trio_waited = True
        try:
            with trio.CancelScope() as self._flush_scope:
                while self._out and sock is not None and sock.fileno() >= 0:
                    await wait_writable(sock)
                    await self.sockets.writes.settled()  # (bytes sent after a commit in flight)
                    if self._sock is not sock:
                        break  # closed while this task was being woken
                    self._write_some(sock)
        except (OSError, trio.ClosedResourceError) as exc:
            self._fail(exc if isinstance(exc, OSError) else "socket closed")
        finally:
            self._flushing = False
            self._flush_scope = None
            if self._flushed is not None:
                self._flushed.set()

    async def _run(self, target: SocketAddress | HostName | None) -> None:
        """The handle's task: connect (unless accepted), read, then close and report."""
        try:
            with trio.CancelScope() as self._read_scope:
                if target is not None and self._state is CONNECTING:
                    await self._connect(target)  # (skipped if disconnect() came first)
                elif target is not None and self._out:
                    await self._connect_to_flush(target)
                if self._state is CONNECTED:
                    if self._out and not self._flushing:
                        self._start_flusher()  # what Lua sent while connecting
                    await self._serve()
        except OSError as exc:
            self._fail(exc)
        finally:
            self._read_scope = None
            try:
                await self._finish()
            finally:
                self._ended()

    async def _connect_to_flush(self, target: SocketAddress | HostName) -> None:
        """disconnect() came while connecting, with bytes queued: connect within the
        linger time; _finish flushes them then."""
        with trio.move_on_after(self.sockets.settings.linger):
            await self._connect(target)
        if self._sock is None and self._error is None:
            self._fail(f"closed with {self._out_size} bytes unsent: not connected within "
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
        if self._state is CONNECTING or self._state is IDLE:
            self._state = CONNECTED

    async def _serve(self) -> None:
        """While connected: the hub reads; this task waits for the end of the stream."""
        sock = self._sock
        assert sock is not None
        hub = self.sockets.hub
        hub.register(sock.fileno(), self)
        idle = self.sockets.settings.idle_timeout
        self._last_receive = time.monotonic()
        try:
            while not self._eof:
                if not idle:
                    await self._sleep()
                    continue
                quiet = time.monotonic() - max(self._last_receive, self._last_send)
                if quiet >= idle:
                    self._fail(f"idle for {idle:g} s (trio_mona.idle_timeout)")
                    return
                with trio.move_on_after(idle - quiet):
                    await self._sleep()
            # Peer closed: let Lua see the data already read (and answer it), then close.
            while self.inbound.unconsumed > 0 and self._state is CONNECTED:
                await self._sleep()
            if self._state is CONNECTED:
                self._state = CLOSING
        finally:
            hub.unregister(sock.fileno())

    async def _finish(self) -> None:
        """Flush within the linger time, close the socket, report ``Closed`` once."""
        sock = self._sock
        try:
            if sock is not None and self._out:
                with trio.move_on_after(self.sockets.settings.linger):
                    if not self._flushing:
                        self._start_flusher()
                    self._flushed = trio.Event()
                    if self._flushing:
                        await self._flushed.wait()
                if self._out:
                    self._fail(f"closed with {self._out_size} bytes unsent after the linger time")
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
                self._drop_queue()
                self._state = CLOSED
                self.sockets.post(Closed(self))
