"""One HTTP connection: a consumer of the TCP transport (``_net/transport.py``) that
feeds the HTTP core (``_proto/http.py``) and answers each request in order.

It knows no Lua. Its reads reach the executor as :class:`SessionData` events, where
the requests' way to Lua (``_http_requests.py``) takes them. One request is
served at a time, as HTTP/1.1 requires its answers to go in order: while one is
served (a handler runs or waits, the answer waits for a write, a file streams), the
reads after it wait here (:attr:`HTTPSession.backlog`), unread by the parser, so
read-ahead bounds them.

What the client's writer writes answers the request waiting for it; with none
waiting, it queues for the next (MonaServer's long polling), within the send limit.
A request nobody answers is held up to the timeout, then answered 204.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from typing import Any, ClassVar, Final

import attrs
import trio

from .._core.config import HTTPSettings
from .._core.events import Call, SessionClosed, SessionData
from .._net.transport import CONNECTED, Transport
from .._proto import flv
from .._proto.http import HTTPServer, Request, cors_headers, response, response_head
from .client import Client
from .files import FileResponse, Streamed, Whole
from .publications import Listener
from .replies import ErrorReply, Reply, error_page
from .websocket import SILENT, WebSocketChannel

log = logging.getLogger("trio_mona")

#: Bytes of a file read per chunk while it streams.
CHUNK: Final = 256 * 1024


class Phase(enum.Enum):
    IDLE = "idle"  # no request in hand
    RUNNING = "running"  # the request's handler runs, or waits
    HELD = "held"  # the request waits for a write (long polling)
    SENDING = "sending"  # a file streams


IDLE: Final = Phase.IDLE
RUNNING: Final = Phase.RUNNING
HELD: Final = Phase.HELD
SENDING: Final = Phase.SENDING


@attrs.define(eq=False, repr=False)
class HTTPSession(Transport):
    """One HTTP connection (see the module docstring)."""

    read_event: ClassVar[type[Any]] = SessionData

    http: HTTPSettings = attrs.field(factory=HTTPSettings)
    parser: HTTPServer = attrs.field(
        default=attrs.Factory(
            lambda s: HTTPServer(max_headers=s.http.maxHeaders, max_body=s.http.maxBody),
            takes_self=True,
        )
    )
    #: The client it serves now, and the request in hand (None: none).
    client: Client | None = None
    request: Request | None = None
    phase: Phase = IDLE
    #: Reads that came while a request was served: fed to the parser after it.
    #: (Lists, not deques: they are short, and an empty deque costs ~700 bytes a connection.)
    backlog: list[SessionData[HTTPSession]] = attrs.field(factory=list)
    #: What the writer wrote with no request to answer, oldest first, and their bytes.
    answers: list[Reply] = attrs.field(factory=list)
    answer_bytes: int = 0
    #: Set-Cookie values for the next response.
    cookies: list[str] = attrs.field(factory=list)
    #: What the running handler's job answered (its return values, a file, an error).
    job_answer: Any = None
    #: Called in the executor when a request is answered, to serve the next.
    on_answered: Callable[[HTTPSession], None] | None = None
    #: Its WebSocket side once the connection was upgraded (the HTTP part is over).
    websocket: WebSocketChannel | None = None
    #: The publication it plays as HTTP-FLV (the connection is the player's from then on).
    flv: Listener | None = None
    _hold_scope: trio.CancelScope | None = None
    #: The HTTP-FLV answer has begun (its head sent).
    _flv_started: bool = False
    _drained: trio.Event | None = None

    def __repr__(self) -> str:
        peer = self._peer.value if self._peer else "-"
        return f"<HTTPSession {self.state.value} {self.phase.value} peer={peer}>"

    # -- the transport's consumer -------------------------------------------------------
    def closed(self) -> None:
        if self._hold_scope is not None:
            self._hold_scope.cancel()
        if self.websocket is not None:
            self.websocket.ended()
        self.sockets.post(SessionClosed(self))

    def upgraded(self, channel: WebSocketChannel) -> None:
        """The connection speaks WebSocket from now on."""
        self.websocket = channel
        self.request = None
        self.phase = IDLE
        channel.start_pings(lambda task: self.sockets.spawn(self, task))  # type: ignore[arg-type]
        self.wake(always=True)  # (its idle limit is the WebSocket one)

    def idle_setting(self) -> str:
        return "HTTP.timeout" if self.websocket is None else "WebSocket.timeout"

    def last_activity(self) -> float:
        if self.websocket is not None:
            return self._last_receive  # (a WebSocket client is silent when it sends nothing)
        return super().last_activity()

    def idled(self, why: str) -> None:
        if self.websocket is not None:
            self.websocket.close(SILENT, why)
            return
        super().idled(why)

    def unload(self) -> None:
        if self.client is not None:
            self.client.silent = True
        super().unload()

    def unfinished(self) -> bool:
        # (requests read before the peer closed its side are answered first)
        return (
            self.inbound.unconsumed > 0
            or self.phase is not IDLE
            or bool(self.backlog)
            or self.parser.pending
        )

    def idle_limit(self) -> float:
        if self.websocket is not None:
            return self.websocket.settings.timeout
        if self.phase is not IDLE:
            return 0.0  # (a request in hand has its own bound, or streams)
        return self.timeout

    @property
    def timeout(self) -> float:
        """Seconds of silence before the connection closes, and the most a request
        waits for an answer (the client's ``timeout``, else ``[HTTP] timeout``)."""
        client = self.client
        if client is not None and client.timeout is not None:
            return client.timeout
        return self.http.timeout

    def flush_ended(self, failure: OSError | str | None) -> None:
        super().flush_ended(failure)
        drained = self._drained
        if drained is not None:
            self._drained = None
            drained.set()

    # -- answering ------------------------------------------------------------------------
    def begin(self, request: Request) -> None:
        """A request is in hand: its handler runs."""
        self.request = request
        self.phase = RUNNING

    def write(self, reply: Reply) -> bool:
        """The writer wrote *reply*: it answers the request waiting for a write, or
        queues for the next one. False: past the send limit (the client is closed)."""
        if self.phase is HELD and self.request is not None:
            self._end_hold()
            self.respond(reply)
            return True
        size = len(reply.body)
        if self.answer_bytes + self.queue.size + size > self.sockets.settings.hard_limit:
            log.warning(
                "%r: %d bytes written that no request took (trio_mona.hard_limit): closed",
                self,
                self.answer_bytes + size,
            )
            self.close()
            return False
        self.answers.append(reply)
        self.answer_bytes += size
        return True

    def job_ended(self) -> Any:
        """The request's handler ended: what it answered (its job's answer), else the
        oldest write; None: the request waits for a write, up to the timeout."""
        answer, self.job_answer = self.job_answer, None
        if answer is not None:
            return answer
        if self.answers:
            reply = self.answers.pop(0)
            self.answer_bytes -= len(reply.body)
            return reply
        self._hold()
        return None

    def respond(self, reply: Reply | ErrorReply) -> None:
        """Answer the request in hand with *reply*."""
        if isinstance(reply, ErrorReply):
            body = error_page(reply.status, reply.message)
            self.send_response(reply.status, [("Content-Type", "text/html; charset=utf-8")], body)
        else:
            self.send_response(reply.status, [("Content-Type", reply.content_type)], reply.body)

    def send_response(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Answer the request in hand with a whole response, then serve the next."""
        request = self.request
        if request is None:
            return
        close = not request.keep_alive
        self.enqueue(response(status, self._headers(request, headers), body,
                              head=request.method == "HEAD", close=close))  # fmt: skip
        self._answered(close)

    def send_file(self, answer: FileResponse) -> None:
        """Answer the request in hand with a file: at once, or streamed."""
        request = self.request
        if request is None:
            return
        if isinstance(answer, Whole):
            self.send_response(answer.status, answer.headers, answer.body)
            return
        close = not request.keep_alive
        headers = self._headers(request, answer.headers)
        self.enqueue(response_head(answer.status, headers, answer.length, close=close))
        if request.method == "HEAD" or not answer.length:
            self._answered(close)
            return
        self.phase = SENDING
        self.sockets.spawn(self, lambda: self._stream(answer, close))

    def refuse(self, status: int, reason: str) -> None:
        """A request that cannot be served: answer *status* and close."""
        page = error_page(status, reason)
        self.enqueue(
            response(status, [("Content-Type", "text/html; charset=utf-8")], page, close=True)
        )
        self.phase = IDLE
        self.request = None
        self.close()

    def _headers(self, request: Request, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if self.cookies:
            headers = headers + [("Set-Cookie", cookie) for cookie in self.cookies]
            self.cookies.clear()
        if self.http.cors:
            headers = headers + cors_headers(request)
        return headers

    def _answered(self, close: bool) -> None:
        self.request = None
        self.phase = IDLE
        if close:
            self.close()
            return
        self.wake()  # (the idle bound counts again; or the peer has closed its side)
        if self.on_answered is not None:
            self.on_answered(self)

    # -- HTTP-FLV ---------------------------------------------------------------------------
    def play_flv(self, listener: Listener, *, waiting: bool = False) -> None:
        """Answer the request in hand with a live FLV stream: no length, the connection
        closes at its end; the frames follow as the publication sends them. *waiting*:
        the publication has not started: the answer waits for it up to the timeout
        (then 404)."""
        self.phase = SENDING
        self.flv = listener
        if not waiting:
            self._flv_head()
            return
        request = self.request
        scope = self._hold_scope = trio.CancelScope()

        async def expire() -> None:
            with scope:
                await trio.sleep(self.timeout)
                self.sockets.post(Call(lambda: self._flv_expired(request)))

        self.sockets.spawn(self, expire)

    def _flv_head(self) -> None:
        request = self.request
        headers = [("Content-Type", "video/x-flv"), ("Cache-Control", "no-cache")]
        if request is not None and self.http.cors:
            headers += cors_headers(request)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        head = f"HTTP/1.1 200 OK\r\n{lines}Connection: close\r\n\r\n".encode("latin-1")
        self.enqueue(
            head if request is not None and request.method == "HEAD" else head + flv.HEADER
        )
        self._flv_started = True

    def _flv_expired(self, request: Request | None) -> None:
        if self.request is request and not self._flv_started and self.state is CONNECTED:
            name = self.flv.name if self.flv is not None else ""
            self.refuse(404, f"No publication {name} within {self.timeout:g} s")

    def deliver(self, stream: int, type_id: int, timestamp: int, payload: bytes) -> bool:
        """A frame of the publication it plays, as an FLV tag: False when dropped."""
        if not self._flv_started:
            return False
        if self.state is not CONNECTED or self.queue.size > self.sockets.settings.soft_limit:
            return False
        if self.request is not None and self.request.method == "HEAD":
            return True
        return self.send_or_close(flv.tag(type_id, timestamp, payload), "an HTTP-FLV player")

    def published(self, listener: Listener) -> None:
        if not self._flv_started and self.state is CONNECTED:  # (it waited for it)
            self._end_hold()
            self._flv_head()

    def unpublished(self, listener: Listener) -> None:
        self.close()  # (the stream has ended: the player sees the end of the body)

    # -- a request waiting for a write --------------------------------------------------
    def _hold(self) -> None:
        self.phase = HELD
        request = self.request
        scope = self._hold_scope = trio.CancelScope()

        async def expire() -> None:
            with scope:
                await trio.sleep(self.timeout)
                self.sockets.post(Call(lambda: self._expired(request)))

        self.sockets.spawn(self, expire)

    def _end_hold(self) -> None:
        if self._hold_scope is not None:
            self._hold_scope.cancel()
            self._hold_scope = None

    def _expired(self, request: Request | None) -> None:
        if self.phase is HELD and self.request is request and self.state is CONNECTED:
            self._hold_scope = None
            self.send_response(204, [], b"")

    # -- a file streaming ------------------------------------------------------------------
    async def _stream(self, answer: Streamed, close: bool) -> None:
        """Send the file in chunks read in a worker thread, each once the connection
        has taken most of the last (back-pressure); then serve the next request."""
        soft_limit = self.sockets.settings.soft_limit
        try:
            fd = await trio.to_thread.run_sync(os.open, answer.path, os.O_RDONLY)
        except OSError as exc:
            log.warning("%r: cannot read %s: %s", self, answer.path, exc)
            self.close()
            return
        try:
            offset, left = answer.start, answer.length
            while left > 0 and self.state is CONNECTED:
                chunk = await trio.to_thread.run_sync(os.pread, fd, min(CHUNK, left), offset)
                if not chunk:
                    break  # (the file shrank meanwhile: the response cannot be whole)
                offset += len(chunk)
                left -= len(chunk)
                self.enqueue(chunk)
                self.write_queued()
                while self.queue.size > soft_limit and self.state is CONNECTED:
                    self._drained = trio.Event()
                    await self._drained.wait()
            if left:
                self.close()
                return
        finally:
            os.close(fd)
        self.sockets.post(Call(lambda: self._answered(close)))
