"""WebSocket (RFC 6455) for the clients' server side, with no I/O: the upgrade of an
HTTP request (:func:`upgrade`), then bytes in, whole messages out
(:meth:`WebSocketServer.receive_data`, :meth:`WebSocketServer.next_event`), and
messages, pings and closes to bytes.

The frames are wsproto's (sans-I/O: masking, fragments, control frames, UTF-8
checked in text, permessage-deflate when the browser offers it). Here: the handshake
from a request the HTTP core parsed already, fragments reassembled into one message
within ``max_message`` bytes (characters, for text; past it: close 1009), a ping
answered at once, and each close with a valid code (1002 for a protocol error, 1007 for
text that is not UTF-8).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final, TypeAlias

import attrs
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake

from .http import Request, header
from .websocket_frames import (
    BINARY as BINARY_FRAME,
)
from .websocket_frames import (
    CLOSE,
    PING,
    PONG,
    FrameReader,
    ProtocolError,
    close_payload,
    frame,
    read_close,
)
from .websocket_frames import (
    TEXT as TEXT_FRAME,
)

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Close codes (RFC 6455 §7.4.1).
NORMAL: Final = 1000
GOING_AWAY: Final = 1001
POLICY: Final = 1008
TOO_BIG: Final = 1009


@attrs.frozen
class Accepted:
    """An upgrade to accept: send *response* (101), then speak through *server*."""

    response: bytes
    server: WebSocketServer


@attrs.frozen
class NotWebSocket:
    """A request that asks for an upgrade the server cannot make: answer *status*."""

    status: int
    reason: str


def is_upgrade(request: Request) -> bool:
    """Whether *request* asks to become a WebSocket."""
    upgrade = header(request, "Upgrade")
    return upgrade is not None and upgrade.strip().lower() == "websocket"


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + _GUID).digest()).decode()


def upgrade(
    request: Request, *, max_message: int, trailing: bytes = b"", compress: bool = True
) -> Accepted | NotWebSocket:
    """Check an upgrade request and make its 101 response and the connection's core;
    *trailing* is what the client sent after the request (its first frames)."""
    if request.method != "GET" or request.version != "1.1":
        return NotWebSocket(400, "a WebSocket upgrade is a GET over HTTP/1.1")
    connection = (header(request, "Connection") or "").lower()
    if "upgrade" not in (token.strip() for token in connection.split(",")):
        return NotWebSocket(400, "a WebSocket upgrade needs Connection: Upgrade")
    if (header(request, "Sec-WebSocket-Version") or "").strip() != "13":
        return NotWebSocket(426, "only WebSocket version 13 is served")
    key = (header(request, "Sec-WebSocket-Key") or "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        return NotWebSocket(400, "a WebSocket upgrade needs a Sec-WebSocket-Key of 16 bytes")
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    extensions: list[Extension] = []
    offered = header(request, "Sec-WebSocket-Extensions")
    if compress and offered:
        deflate = PerMessageDeflate()
        agreed = server_extensions_handshake(
            [offer.strip() for offer in offered.split(",")], [deflate]
        )
        if agreed is not None:
            lines.append(f"Sec-WebSocket-Extensions: {agreed.decode('ascii')}")
            extensions.append(deflate)
    response = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Accepted(response, WebSocketServer(extensions, max_message, trailing))


@attrs.frozen
class Text:
    """A whole text message."""

    text: str


@attrs.frozen
class Binary:
    """A whole binary message."""

    data: bytes


@attrs.frozen
class Pinged:
    """The peer answered a ping with *payload*."""

    payload: bytes


@attrs.frozen
class Closed:
    """The connection ends with *code* and *reason*: the peer closed it, or it broke a
    rule (then the close frame saying so is in :meth:`WebSocketServer.data_to_send`)."""

    code: int
    reason: str


#: The last frame :meth:`WebSocketServer.message` made: opcode, payload, frame.
_last_frame: tuple[int, bytes, bytes] = (0, b"", b"")


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()

Event: TypeAlias = Text | Binary | Pinged | Closed | _NeedData


class WebSocketServer:
    """One WebSocket connection's server side, after the handshake (see the module
    docstring). Bytes to send pile up in :meth:`data_to_send`."""

    def __init__(
        self, extensions: list[Extension], max_message: int, trailing: bytes = b""
    ) -> None:
        self.max_message = max_message
        self._connection = Connection(ConnectionType.SERVER, extensions)
        #: No extension: frames are read and made here (``websocket_frames.py``), not by
        #: wsproto.
        self._plain = not extensions
        self._frames = FrameReader(max_message)
        self._out: list[bytes] = []
        self._parts: list[str | bytes | bytearray] = []
        self._size = 0
        self._events: list[Text | Binary | Pinged | Closed] = []
        self.closed: Closed | None = None
        if trailing:
            self.receive_data(trailing)

    @property
    def open(self) -> bool:
        if self._plain:
            return self.closed is None
        return self._connection.state is ConnectionState.OPEN

    def receive_data(self, data: bytes) -> None:
        """Bytes the client sent (``b""``: it closed the connection)."""
        if self.closed is not None:
            return
        if not data:
            self._end(Closed(GOING_AWAY, "the connection was closed"))
            return
        if self._plain:
            self._receive_plain(data)
            return
        connection = self._connection
        connection.receive_data(data)
        for event in connection.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._message(event)
            elif isinstance(event, Ping):
                self._out.append(connection.send(event.response()))
            elif isinstance(event, Pong):
                self._events.append(Pinged(bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                if connection.state is not ConnectionState.CLOSED:  # (ours or theirs)
                    self._out.append(connection.send(event.response()))
                self._end(Closed(event.code, event.reason or ""))
            if self.closed is not None:
                return

    def _receive_plain(self, data: bytes) -> None:
        events, out = self._events, self._out
        try:
            for opcode, payload in self._frames.receive(data):
                if opcode == TEXT_FRAME:
                    events.append(Text(payload))  # type: ignore[arg-type]
                elif opcode == BINARY_FRAME:
                    events.append(Binary(payload))  # type: ignore[arg-type]
                elif opcode == PING:
                    out.append(frame(PONG, payload))  # type: ignore[arg-type]
                elif opcode == PONG:
                    events.append(Pinged(payload))  # type: ignore[arg-type]
                else:  # a close: answered with its code
                    code, reason = read_close(payload)  # type: ignore[arg-type]
                    out.append(frame(CLOSE, b"" if code == 1005 else close_payload(code, "")))
                    self._end(Closed(code, reason))
                    return
        except ProtocolError as error:
            out.append(frame(CLOSE, close_payload(error.code, error.reason)))
            self._end(Closed(error.code, error.reason))

    def next_event(self) -> Event:
        if self._events:
            return self._events.pop(0)
        return NEED_DATA

    def data_to_send(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    # -- sending ----------------------------------------------------------------------------
    def message(self, payload: bytes, *, text: bool) -> bytes:
        """One whole message (*payload*: UTF-8 for text, as the caller vouches). Without
        an extension a server's frame is its header and the payload, the same bytes for
        every client: made here (wsproto's general path costs ~10x), and the last one
        kept, so a broadcast frames its message once."""
        if self._plain and self.open:
            global _last_frame
            opcode = TEXT_FRAME if text else BINARY_FRAME
            last = _last_frame
            if last[0] == opcode and last[1] == payload:
                return last[2]
            made = frame(opcode, payload)
            _last_frame = (opcode, payload, made)
            return made
        if text:
            return self._send(TextMessage(data=payload.decode("utf-8", "replace")))
        return self._send(BytesMessage(data=payload))

    def ping(self, payload: bytes) -> bytes:
        if self._plain:
            return frame(PING, payload) if self.open else b""
        return self._send(Ping(payload=payload))

    def close(self, code: int = NORMAL, reason: str = "") -> bytes:
        """The close frame (nothing once closing); what arrives afterwards is dropped."""
        if not self.open:
            return b""
        if self._plain:
            data = frame(CLOSE, close_payload(code, reason))
        else:
            data = self._connection.send(CloseConnection(code=code, reason=reason[:120]))
        self._end(Closed(code, reason))
        return data

    def _send(self, event: TextMessage | BytesMessage | Ping) -> bytes:
        if not self.open:
            return b""
        return self._connection.send(event)

    # -- receiving -------------------------------------------------------------------------
    def _message(self, event: TextMessage | BytesMessage) -> None:
        data = event.data
        self._size += len(data)
        if self._size > self.max_message:
            self._out.append(self.close(TOO_BIG, f"a message over {self.max_message} bytes"))
            return
        if not event.message_finished:
            self._parts.append(data)
            return
        parts, self._parts, self._size = self._parts, [], 0
        if isinstance(event, TextMessage):
            text = event.data
            self._events.append(Text("".join([*parts, text]) if parts else text))  # type: ignore[list-item]
        else:
            whole = bytes(event.data)
            self._events.append(Binary(b"".join([*parts, whole]) if parts else whole))  # type: ignore[list-item]

    def _end(self, closed: Closed) -> None:
        if self.closed is None:
            self.closed = closed
            if closed not in self._events:
                self._events.append(closed)
