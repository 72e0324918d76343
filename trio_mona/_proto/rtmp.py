"""RTMP's NetConnection and NetStream commands, server side, with no I/O: the handshake
(``rtmp_handshake.py``) and chunk stream (``rtmp_chunks.py``) below, AMF0 commands
(``_formats/amf.py``) turned into events (:meth:`RTMPServer.next_event`), and the
answers a server sends made into bytes.

Stream 0 carries the connection's commands (``connect``, ``createStream``, calls);
each created stream its own (``publish``, ``play``, ``deleteStream``...), its media
(audio 8, video 9) and data (``@setDataFrame``/``onMetaData``). Commands encoded in
AMF3 (type 17: a byte 0, then AMF0 values with AMF3 switches inside) are read the same;
a client that connected with ``objectEncoding`` 3 is answered so (:attr:`amf3`).
"""

from __future__ import annotations

import struct
from typing import Any, Final, TypeAlias

import attrs

from .._formats.amf import AMFError, Node, decode, encode
from .._formats.tape import TooDeep
from .rtmp_chunks import (
    AUDIO,
    COMMAND_AMF0,
    COMMAND_AMF3,
    DATA_AMF0,
    DATA_AMF3,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkError,
    ChunkStream,
)
from .rtmp_handshake import HandshakeError, ServerHandshake

#: The chunk streams the server writes on: commands, data, audio, video.
_COMMANDS, _DATA, _AUDIO, _VIDEO = 3, 5, 4, 6
#: User control events.
STREAM_BEGIN: Final = 0
STREAM_EOF: Final = 1
PING_REQUEST: Final = 6
PING_RESPONSE: Final = 7
#: The server's chunk size, window and peer bandwidth (what ffmpeg and OBS expect).
CHUNK_SIZE: Final = 4096
WINDOW: Final = 2_500_000


def obj(**fields: Any) -> Node:
    """An AMF object from keyword fields (str values as bytes)."""
    return Node("object", fields=[(k.encode(), _plain(v)) for k, v in fields.items()])


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return obj(**value)
    return value


def amf_string(text: bytes) -> bytes:
    """A short AMF0 string (a command's name)."""
    return b"\x02" + len(text).to_bytes(2, "big") + text


def command_header(transaction: float) -> bytes:
    """What follows a command's name: its transaction, and a null command object."""
    return b"\x00" + struct.pack(">d", transaction) + b"\x05"


def split_name(values: bytes) -> tuple[bytes, bytes]:
    """AMF0 values that begin with a short string: that string's bytes, and the rest."""
    if values[:1] != b"\x02" or len(values) < 3:
        return amf_string(b"onMessage"), values
    end = 3 + int.from_bytes(values[1:3], "big")
    return values[:end], values[end:]


def fields_of(value: Any) -> dict[str, Any]:
    """An AMF object's fields by name (str), its text values as str; {} if not one."""
    if not isinstance(value, Node):
        return {}
    return {
        key.decode("utf-8", "replace"): v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        for key, v in value.fields
        if isinstance(key, bytes)
    }


@attrs.frozen
class Connect:
    transaction: float
    #: The command object (tcUrl, app, flashVer, swfUrl, pageUrl, objectEncoding...).
    properties: dict[str, Any]
    arguments: tuple[Any, ...]


@attrs.frozen
class Command:
    """Any other command: *name* on *stream* (0: the connection's)."""

    stream: int
    name: str
    transaction: float
    arguments: tuple[Any, ...]


@attrs.frozen
class Media:
    """Audio (8), video (9) or data (18) on a stream."""

    stream: int
    type_id: int
    timestamp: int
    payload: bytes


@attrs.frozen
class Failed:
    """The peer broke the protocol: the connection ends (*reason*)."""

    reason: str


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()
Event: TypeAlias = Connect | Command | Media | Failed | _NeedData


class RTMPServer:
    """One RTMP connection's server side (see the module docstring)."""

    def __init__(self, *, max_message: int = 32 << 20) -> None:
        self.handshake = ServerHandshake()
        self.chunks = ChunkStream(max_message=max_message)
        self._events: list[Connect | Command | Media | Failed] = []
        self._out: list[bytes] = []
        self.failed: Failed | None = None
        #: The client chose AMF3 (``objectEncoding`` 3): commands go as type 17 and the
        #: values Lua writes carry AMF3 objects.
        self.amf3 = False

    # -- receiving ---------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self.failed is not None:
            return
        try:
            if not self.handshake.done:
                self._out.append(self.handshake.receive_data(data))
                if not self.handshake.done:
                    return
                data, self.handshake.rest = self.handshake.rest, b""
                if not data:
                    return
            chunks = self.chunks
            chunks.receive_data(data)
            while (message := chunks.next_message()) is not None:
                self._message(message.type_id, message.stream_id, message.timestamp,
                              message.payload)  # fmt: skip
            ack = chunks.data_to_send()
            if ack:
                self._out.append(ack)
        except (HandshakeError, ChunkError) as error:
            self._fail(str(error))

    def next_event(self) -> Event:
        return self._events.pop(0) if self._events else NEED_DATA

    def data_to_send(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    def _fail(self, reason: str) -> None:
        self.failed = Failed(reason)
        self._events.append(self.failed)

    def _message(self, type_id: int, stream: int, timestamp: int, payload: bytes) -> None:
        if type_id in (AUDIO, VIDEO, DATA_AMF0, DATA_AMF3):
            if type_id == DATA_AMF3:
                payload, type_id = payload[1:], DATA_AMF0
            self._events.append(Media(stream, type_id, timestamp, payload))
            return
        if type_id == USER_CONTROL:
            if len(payload) >= 6 and int.from_bytes(payload[:2], "big") == PING_REQUEST:
                self._out.append(self._user_control(PING_RESPONSE, payload[2:6]))
            return
        if type_id not in (COMMAND_AMF0, COMMAND_AMF3):
            return  # (shared objects, aggregates: not served)
        if type_id == COMMAND_AMF3:
            payload = payload[1:]
        try:
            values = decode(payload)
        except (AMFError, TooDeep) as error:
            self._fail(f"a command that is not AMF: {error}")
            return
        if len(values) < 2 or not isinstance(values[0], bytes):
            self._fail("a command without a name")
            return
        name = values[0].decode("utf-8", "replace")
        transaction = values[1] if isinstance(values[1], float) else 0.0
        if name == "connect" and stream == 0:
            properties = fields_of(values[2] if len(values) > 2 else None)
            self._events.append(Connect(transaction, properties, tuple(values[3:])))
            return
        # (a command's third value is its command object, null for all but connect)
        self._events.append(Command(stream, name, transaction, tuple(values[3:])))

    # -- sending -----------------------------------------------------------------------------
    def accept(self, transaction: float, info: dict[str, Any], *, amf3: bool = False) -> bytes:
        """The answers to ``connect``: window, bandwidth, chunk size, then ``_result``
        with ``NetConnection.Connect.Success`` (*info*: more of its fields)."""
        chunks = self.chunks
        out = chunks.send(2, 0, WINDOW_ACK_SIZE, 0, WINDOW.to_bytes(4, "big"))
        out += chunks.send(2, 0, SET_PEER_BANDWIDTH, 0, WINDOW.to_bytes(4, "big") + b"\x02")
        out += chunks.set_chunk_size(CHUNK_SIZE)
        status = {"level": "status", "code": "NetConnection.Connect.Success",
                  "description": "Connection succeeded.", "objectEncoding": 3.0 if amf3 else 0.0,
                  **info}  # fmt: skip
        server = obj(fmsVer="FMS/3,5,7,7009", capabilities=31.0, mode=1.0)
        out += self.command(0, "_result", transaction, server, obj(**status))
        self.amf3 = amf3  # (from its next command on)
        return out

    def reject(self, transaction: float, description: str) -> bytes:
        info = obj(level="error", code="NetConnection.Connect.Rejected", description=description)
        return self.command(0, "_error", transaction, None, info)

    def command(self, stream: int, name: str, transaction: float, *values: Any) -> bytes:
        payload = encode([name.encode(), float(transaction), *values], amf0=True)
        return self.command_payload(stream, payload)

    def raw_command(self, stream: int, name: bytes, transaction: float, values: bytes) -> bytes:
        """A command whose values are AMF0 already (what Lua wrote)."""
        return self.command_payload(stream, amf_string(name) + command_header(transaction) + values)

    def command_payload(self, stream: int, payload: bytes) -> bytes:
        if self.amf3:
            return self.chunks.send(_COMMANDS, 0, COMMAND_AMF3, stream, b"\x00" + payload)
        return self.chunks.send(_COMMANDS, 0, COMMAND_AMF0, stream, payload)

    def status(self, stream: int, code: str, description: str, level: str = "status",
               **more: Any) -> bytes:  # fmt: skip
        """``onStatus`` on a stream."""
        info = obj(level=level, code=code, description=description, **more)
        return self.command(stream, "onStatus", 0.0, None, info)

    def stream_begin(self, stream: int) -> bytes:
        return self._user_control(STREAM_BEGIN, stream.to_bytes(4, "big"))

    def stream_eof(self, stream: int) -> bytes:
        return self._user_control(STREAM_EOF, stream.to_bytes(4, "big"))

    def media(self, stream: int, type_id: int, timestamp: int, payload: bytes) -> bytes:
        chunk_stream = _VIDEO if type_id == VIDEO else _AUDIO if type_id == AUDIO else _DATA
        return self.chunks.send(chunk_stream, timestamp, type_id, stream, payload)

    def _user_control(self, event: int, data: bytes) -> bytes:
        return self.chunks.send(2, 0, USER_CONTROL, 0, event.to_bytes(2, "big") + data)
