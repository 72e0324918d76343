"""RFC 6455 frames on a connection with no extension, server side, with no I/O: what
``_proto/websocket.py`` uses instead of wsproto when the browser offered no
compression (wsproto's general path cost ~10x per message; docs/performance.rst).

Client frames must be masked; reserved bits, unknown opcodes, fragmented or long
control frames, a continuation with no message, and a new message inside one are
protocol errors (1002); text that is not UTF-8 is 1007, a close frame's code must be
one a peer may send, and its reason UTF-8.
"""

from __future__ import annotations

from typing import Final

#: Opcodes.
CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

#: The close codes a peer may send (RFC 6455 §7.4; 1004-1006 and 1015 are never sent).
_SENDABLE: Final = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})


class ProtocolError(Exception):
    """The peer broke the protocol: close with *code*."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def frame(opcode: int, payload: bytes) -> bytes:
    """A whole server frame (unmasked, FIN set)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
    return head + payload


def close_payload(code: int, reason: str) -> bytes:
    return code.to_bytes(2, "big") + reason.encode()[:120]


def _unmask(mask: bytes, data: bytes) -> bytes:
    size = len(data)
    if not size:
        return b""
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")


class FrameReader:
    """Frames in, whole messages and control frames out (:meth:`receive`)."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._buffer = b""
        #: The message being reassembled: its opcode, parts and size (opcode 0: none).
        self._opcode = 0
        self._parts: list[bytes] = []
        self._size = 0

    def receive(self, data: bytes) -> list[tuple[int, bytes | str]]:
        """The whole messages (TEXT as a str, BINARY as bytes) and control frames
        (PING, PONG, CLOSE with their payload) *data* completes.

        Raises:
            ProtocolError: a frame breaks the protocol (what came before it is lost).
        """
        buffer = self._buffer + data if self._buffer else data
        found: list[tuple[int, bytes | str]] = []
        at, end = 0, len(buffer)
        while end - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            if first & 0x70:
                raise ProtocolError(1002, "reserved bits set with no extension agreed")
            if not second & 0x80:
                raise ProtocolError(1002, "a client frame must be masked")
            opcode, size, head = first & 0x0F, second & 0x7F, 6
            if size == 126:
                if end - at < 4:
                    break
                size, head = int.from_bytes(buffer[at + 2 : at + 4], "big"), 8
            elif size == 127:
                if end - at < 10:
                    break
                size, head = int.from_bytes(buffer[at + 2 : at + 10], "big"), 14
                if size >> 63:
                    raise ProtocolError(1002, "a frame length's top bit is set")
            if opcode >= CLOSE:
                if opcode > PONG:
                    raise ProtocolError(1002, f"unknown opcode {opcode}")
                if not first & 0x80 or size > 125:
                    raise ProtocolError(1002, "a control frame must be whole and short")
            elif opcode > BINARY:
                raise ProtocolError(1002, f"unknown opcode {opcode}")
            if self._size + size > self.max_message and opcode < CLOSE:
                raise ProtocolError(1009, f"a message over {self.max_message} bytes")
            if end - at < head + size:
                break
            mask = buffer[at + head - 4 : at + head]
            payload = _unmask(mask, buffer[at + head : at + head + size])
            at += head + size
            if opcode >= CLOSE:
                found.append((opcode, payload))
                if opcode == CLOSE:
                    break  # (nothing after a close is read)
                continue
            self._data(opcode, first & 0x80, payload, found)
        self._buffer = buffer[at:] if at < end else b""
        return found

    def _data(
        self, opcode: int, fin: int, payload: bytes, found: list[tuple[int, bytes | str]]
    ) -> None:
        if opcode == CONTINUATION:
            if not self._opcode:
                raise ProtocolError(1002, "a continuation frame with no message")
            opcode = self._opcode
        elif self._opcode:
            raise ProtocolError(1002, "a new message inside a fragmented one")
        if not fin:
            self._opcode = opcode
            self._parts.append(payload)
            self._size += len(payload)
            return
        if self._parts:
            payload = b"".join([*self._parts, payload])
            self._parts, self._size, self._opcode = [], 0, 0
        if opcode == TEXT:
            try:
                found.append((TEXT, payload.decode()))
            except UnicodeDecodeError:
                raise ProtocolError(1007, "text that is not UTF-8") from None
            return
        found.append((opcode, payload))


def read_close(payload: bytes) -> tuple[int, str]:
    """A close frame's code and reason (1005: none given).

    Raises:
        ProtocolError: a payload of one byte, a code no peer may send, a reason that is
            not UTF-8.
    """
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError(1002, "a close frame of one byte")
    code = int.from_bytes(payload[:2], "big")
    if code not in _SENDABLE and not 3000 <= code <= 4999:
        raise ProtocolError(1002, f"close code {code} may not be sent")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError(1007, "a close reason that is not UTF-8") from None
