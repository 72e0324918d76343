"""The RTMP chunk stream, both directions, with no I/O: bytes in, messages out
(:meth:`ChunkStream.receive_data`, :meth:`ChunkStream.next_message`), messages in,
bytes out (:meth:`ChunkStream.send`).

A message travels in chunks of at most the sender's chunk size, interleaved with other
chunk streams' chunks; each chunk's header is as short as what it repeats of the last
one on its chunk stream allows (formats 0 to 3), timestamps beyond 24 bits carry an
extended field. The protocol control messages that concern the chunk layer are handled
here: Set Chunk Size (1), Abort (2), Acknowledgement (3, counted), Window
Acknowledgement Size (5: an acknowledgement is sent each time that many bytes have
arrived) and Set Peer Bandwidth (6); every other message comes out whole, within
``max_message`` bytes.
"""

from __future__ import annotations

import struct
from typing import Final

import attrs

#: Protocol control message types.
SET_CHUNK_SIZE: Final = 1
ABORT: Final = 2
ACKNOWLEDGEMENT: Final = 3
USER_CONTROL: Final = 4
WINDOW_ACK_SIZE: Final = 5
SET_PEER_BANDWIDTH: Final = 6
AUDIO: Final = 8
VIDEO: Final = 9
DATA_AMF3: Final = 15
COMMAND_AMF3: Final = 17
DATA_AMF0: Final = 18
COMMAND_AMF0: Final = 20

DEFAULT_CHUNK_SIZE: Final = 128
_EXTENDED: Final = 0xFFFFFF


class ChunkError(Exception):
    """The peer broke the chunk stream's rules: the connection ends."""


@attrs.frozen
class Message:
    """One whole message: its chunk stream, timestamp (ms, 32 bits), type, message
    stream and payload."""

    chunk_stream: int
    timestamp: int
    type_id: int
    stream_id: int
    payload: bytes


@attrs.define
class _Incoming:
    """What a chunk stream's last header said, and the message being read on it."""

    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    parts: list[bytes] = attrs.field(factory=list)
    have: int = 0
    started: bool = False


@attrs.define
class _Outgoing:
    timestamp: int = 0
    delta: int = 0
    length: int = -1
    type_id: int = -1
    stream_id: int = -1


class ChunkStream:
    """One connection's chunk layer (see the module docstring)."""

    def __init__(self, *, max_message: int = 32 << 20) -> None:
        self.max_message = max_message
        self.in_chunk_size = DEFAULT_CHUNK_SIZE
        self.out_chunk_size = DEFAULT_CHUNK_SIZE
        #: The peer's window: acknowledge every this many bytes received (0: never).
        self.window = 0
        #: The peer's acknowledgement of what it received from us, last seen.
        self.acknowledged = 0
        self.peer_bandwidth = 0
        self.received = 0
        self._acked_at = 0
        self._buffer = b""
        self._incoming: dict[int, _Incoming] = {}
        self._outgoing: dict[int, _Outgoing] = {}
        self._messages: list[Message] = []
        self._out: list[bytes] = []

    # -- receiving ---------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """The peer's bytes.

        Raises:
            ChunkError: a message over ``max_message``, a chunk size out of range, a
                chunk continuing a message that never began.
        """
        self.received += len(data)
        buffer = self._buffer + data if self._buffer else data
        at = 0
        while True:
            used = self._chunk(buffer, at)
            if not used:
                break
            at += used
        self._buffer = buffer[at:]
        if self.window and self.received - self._acked_at >= self.window:
            self._acked_at = self.received
            self._control(ACKNOWLEDGEMENT, struct.pack("!I", self.received & 0xFFFFFFFF))

    def next_message(self) -> Message | None:
        return self._messages.pop(0) if self._messages else None

    def _chunk(self, buffer: bytes, at: int) -> int:
        """Read one chunk at *at*; return its size (0: not whole yet)."""
        end = len(buffer)
        if end - at < 1:
            return 0
        first = buffer[at]
        fmt, csid, head = first >> 6, first & 0x3F, 1
        if csid == 0:
            if end - at < 2:
                return 0
            csid, head = buffer[at + 1] + 64, 2
        elif csid == 1:
            if end - at < 3:
                return 0
            csid, head = buffer[at + 1] + buffer[at + 2] * 256 + 64, 3
        sizes = (11, 7, 3, 0)
        if end - at < head + sizes[fmt]:
            return 0
        state = self._incoming.get(csid)
        if state is None:
            if fmt != 0:
                raise ChunkError(f"chunk stream {csid} begins with a format {fmt} header")
            state = self._incoming[csid] = _Incoming()
        if fmt <= 2 and state.started:
            raise ChunkError(f"chunk stream {csid}: a new header inside a message")
        h = at + head
        # (the header's values are committed only once the whole chunk is here: a chunk
        # cut short is read again from its start)
        field = 0
        length, type_id, stream_id = state.length, state.type_id, state.stream_id
        if fmt <= 2:
            field = int.from_bytes(buffer[h : h + 3], "big")
        if fmt <= 1:
            length, type_id = int.from_bytes(buffer[h + 3 : h + 6], "big"), buffer[h + 6]
            if length > self.max_message:
                raise ChunkError(f"a message of {length} bytes, over {self.max_message}")
        if fmt == 0:
            stream_id = int.from_bytes(buffer[h + 7 : h + 11], "little")
        head += sizes[fmt]
        extended = field == _EXTENDED if fmt <= 2 else state.extended
        value = field
        if extended:
            if end - at < head + 4:
                return 0
            value = int.from_bytes(buffer[at + head : at + head + 4], "big")
            head += 4
        timestamp, delta = state.timestamp, state.delta
        if fmt == 0:  # (its field is what a format 3 header repeats: as ffmpeg reads it)
            timestamp = delta = value
        elif fmt <= 2:
            delta, timestamp = value, (timestamp + value) & 0xFFFFFFFF
        elif not state.started:  # a format 3 header beginning a message: the same step
            timestamp = (timestamp + delta) & 0xFFFFFFFF
        size = min(self.in_chunk_size, length - state.have)
        if end - at < head + size:
            return 0
        state.length, state.type_id, state.stream_id = length, type_id, stream_id
        state.timestamp, state.delta, state.extended = timestamp, delta, extended
        state.parts.append(buffer[at + head : at + head + size])
        state.have += size
        state.started = True
        if state.have >= length:
            payload = b"".join(state.parts)
            state.parts, state.have, state.started = [], 0, False
            self._whole(Message(csid, timestamp, type_id, stream_id, payload))
        return head + size

    def _whole(self, message: Message) -> None:
        kind, payload = message.type_id, message.payload
        if kind == SET_CHUNK_SIZE:
            size = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF if len(payload) >= 4 else 0
            if not 1 <= size <= 0xFFFFFF:
                raise ChunkError(f"a chunk size of {size}")
            self.in_chunk_size = size
        elif kind == ABORT and len(payload) >= 4:
            state = self._incoming.get(int.from_bytes(payload[:4], "big"))
            if state is not None:
                state.parts, state.have, state.started = [], 0, False
        elif kind == ACKNOWLEDGEMENT and len(payload) >= 4:
            self.acknowledged = int.from_bytes(payload[:4], "big")
        elif kind == WINDOW_ACK_SIZE and len(payload) >= 4:
            self.window = int.from_bytes(payload[:4], "big")
        elif kind == SET_PEER_BANDWIDTH and len(payload) >= 4:
            self.peer_bandwidth = int.from_bytes(payload[:4], "big")
        else:
            self._messages.append(message)

    # -- sending -----------------------------------------------------------------------------
    def send(self, chunk_stream: int, timestamp: int, type_id: int, stream_id: int,
             payload: bytes) -> bytes:  # fmt: skip
        """A message in chunks, its headers as short as the last one on *chunk_stream*
        allows; with what was waiting to go out (acknowledgements) first."""
        state = self._outgoing.get(chunk_stream)
        timestamp &= 0xFFFFFFFF
        length = len(payload)
        if state is None:
            state = self._outgoing[chunk_stream] = _Outgoing()
            fmt = 0
        elif stream_id != state.stream_id or timestamp < state.timestamp:
            fmt = 0
        elif length != state.length or type_id != state.type_id:
            fmt = 1
        elif timestamp - state.timestamp != state.delta:
            fmt = 2
        else:
            fmt = 3
        value = timestamp if fmt == 0 else timestamp - state.timestamp
        extended = value >= _EXTENDED if fmt <= 2 else state.delta >= _EXTENDED
        if fmt <= 2:
            state.delta = value  # (a format 3 header repeats this field)
        state.timestamp, state.length, state.type_id, state.stream_id = (
            timestamp, length, type_id, stream_id)  # fmt: skip
        header = _basic(fmt, chunk_stream)
        field = _EXTENDED if extended else value
        # (one int for the message header's fields: timestamp, length, type)
        if fmt <= 1:
            header += (field << 32 | length << 8 | type_id).to_bytes(7, "big")
            if fmt == 0:
                header += stream_id.to_bytes(4, "little")
        elif fmt == 2:
            header += field.to_bytes(3, "big")
        extension = b""
        if extended:
            extension = (value if fmt <= 2 else state.delta).to_bytes(4, "big")
            header += extension
        body = _chunked(payload, self.out_chunk_size, chunk_stream, extension)
        if self._out:
            out, self._out = self._out, []
            return b"".join((*out, header, body))
        return header + body

    def set_chunk_size(self, size: int) -> bytes:
        """Our chunk size from now on, and the message saying so."""
        data = self._control_message(SET_CHUNK_SIZE, struct.pack("!I", size))
        self.out_chunk_size = size
        return data

    def data_to_send(self) -> bytes:
        """What the layer has to say on its own (acknowledgements)."""
        out, self._out = self._out, []
        return b"".join(out)

    def _control(self, type_id: int, payload: bytes) -> None:
        self._out.append(self._control_message(type_id, payload))

    def _control_message(self, type_id: int, payload: bytes) -> bytes:
        out, self._out = self._out, []
        data = self.send(2, 0, type_id, 0, payload)
        self._out = out
        return data


#: The one-byte basic headers, by format and chunk stream (2 to 63).
_BASIC: Final = [[bytes(((fmt << 6) | stream,)) for stream in range(64)] for fmt in range(4)]


def _basic(fmt: int, chunk_stream: int) -> bytes:
    if chunk_stream < 64:
        return _BASIC[fmt][chunk_stream]
    if chunk_stream < 320:
        return bytes((fmt << 6, chunk_stream - 64))
    value = chunk_stream - 64
    return bytes(((fmt << 6) | 1, value & 0xFF, value >> 8))


#: The last payload :func:`_chunked` cut, with its cut: a frame fanned out to many
#: players is cut once (the same object, chunk size and chunk stream give the same
#: bytes; only each connection's first header differs).
_last_cut: list[object] = [None, 0, 0, b"", b""]


def _chunked(payload: bytes, size: int, chunk_stream: int, extension: bytes) -> bytes:
    """*payload* as it follows a message's first header: cut in chunks of *size*,
    each after a format 3 header."""
    if len(payload) <= size:
        return payload
    last = _last_cut
    if last[0] is payload and last[1] == size and last[2] == chunk_stream and last[3] == extension:
        return last[4]  # type: ignore[return-value]
    continuation = _basic(3, chunk_stream) + extension
    parts = [payload[:size]]
    for start in range(size, len(payload), size):
        parts += (continuation, payload[start : start + size])
    body = b"".join(parts)
    last[:] = (payload, size, chunk_stream, extension, body)
    return body
