"""A small RTMP client for the tests, written apart from trio_mona's cores (so the two
do not share a mistake): the simple handshake, chunks of 128 bytes out, any chunk
format in, AMF0 numbers, booleans, strings, null and objects."""

from __future__ import annotations

import os
import struct
from typing import Any

import trio

Object = dict[bytes, Any]


def amf(*values: Any) -> bytes:
    out = b""
    for value in values:
        if value is None:
            out += b"\x05"
        elif isinstance(value, bool):
            out += b"\x01" + bytes((value,))
        elif isinstance(value, int | float):
            out += b"\x00" + struct.pack(">d", value)
        elif isinstance(value, bytes | str):
            text = value.encode() if isinstance(value, str) else value
            out += b"\x02" + struct.pack(">H", len(text)) + text
        elif isinstance(value, dict):
            out += b"\x03"
            for key, item in value.items():
                name = key.encode() if isinstance(key, str) else key
                out += struct.pack(">H", len(name)) + name + amf(item)
            out += b"\x00\x00\x09"
        else:
            raise TypeError(value)
    return out


def parse_amf(data: bytes) -> list[Any]:
    values, at = [], 0

    def value() -> Any:
        nonlocal at
        marker = data[at]
        at += 1
        if marker == 0x00:
            at += 8
            return struct.unpack(">d", data[at - 8 : at])[0]
        if marker == 0x01:
            at += 1
            return data[at - 1] != 0
        if marker == 0x02:
            size = struct.unpack(">H", data[at : at + 2])[0]
            at += 2 + size
            return data[at - size : at]
        if marker in (0x05, 0x06):
            return None
        if marker in (0x03, 0x08):
            if marker == 0x08:
                at += 4
            found: Object = {}
            while True:
                size = struct.unpack(">H", data[at : at + 2])[0]
                at += 2
                if not size:
                    at += 1
                    return found
                key = data[at : at + size]
                at += size
                found[key] = value()
        if marker == 0x0A:
            count = struct.unpack(">I", data[at : at + 4])[0]
            at += 4
            return [value() for _ in range(count)]
        raise ValueError(f"AMF0 marker {marker:#x}")

    while at < len(data):
        values.append(value())
    return values


class RTMPClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.transaction = 1.0
        self.buffer = b""
        self.in_chunk_size = 128
        self.streams: dict[int, dict[str, Any]] = {}
        #: The timestamp of each message taken, in order.
        self.timestamps: list[int] = []

    @classmethod
    async def open(cls, port: int) -> RTMPClient:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        client = cls(stream)
        c1 = bytes(8) + os.urandom(1528)
        await stream.send_all(b"\x03" + c1)
        answer = b""
        with trio.fail_after(5):
            while len(answer) < 1 + 2 * 1536:
                answer += await stream.receive_some(65536)
        assert answer[0] == 3
        assert answer[1 + 1536 : 1 + 2 * 1536] == c1  # (S2: C1 echoed)
        await stream.send_all(answer[1 : 1 + 1536])  # (C2: S1 echoed)
        client.buffer = answer[1 + 2 * 1536 :]
        return client

    async def send(self, name: str, *values: Any, stream: int = 0) -> float:
        self.transaction += 1
        payload = amf(name, self.transaction, *values)
        header = bytes((3,)) + bytes(3) + len(payload).to_bytes(3, "big") + b"\x14"
        header += stream.to_bytes(4, "little")
        chunks = [header + payload[:128]]
        chunks += [b"\xc3" + payload[at : at + 128] for at in range(128, len(payload), 128)]
        await self.stream.send_all(b"".join(chunks))
        return self.transaction

    async def media(self, type_id: int, stream: int, timestamp: int, payload: bytes) -> None:
        """Send one audio (8), video (9) or data (18) message on *stream*."""
        header = bytes((4,)) + timestamp.to_bytes(3, "big") + len(payload).to_bytes(3, "big")
        header += bytes((type_id,)) + stream.to_bytes(4, "little")
        chunks = [header + payload[:128]]
        chunks += [b"\xc4" + payload[at : at + 128] for at in range(128, len(payload), 128)]
        await self.stream.send_all(b"".join(chunks))

    async def connect(self, app: str, *arguments: Any) -> list[Any]:
        await self.send("connect", {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}",
                                    "flashVer": "test"}, *arguments)  # fmt: skip
        return await self.command()

    async def call(self, name: str, *arguments: Any) -> list[Any]:
        await self.send(name, None, *arguments)
        return await self.command()

    async def message(self) -> tuple[int, bytes]:
        """The next whole message: its type and payload."""
        with trio.fail_after(5):
            while True:
                found = self.take()
                if found is not None:
                    return found
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("closed")
                self.buffer += data

    def take(self) -> tuple[int, bytes] | None:
        while True:
            buffer = self.buffer
            if not buffer:
                return None
            fmt, csid, at = buffer[0] >> 6, buffer[0] & 0x3F, 1
            if csid == 0:
                csid, at = 64 + buffer[1], 2
            elif csid == 1:
                csid, at = 64 + buffer[1] + 256 * buffer[2], 3
            state = self.streams.setdefault(
                csid, {"parts": b"", "length": 0, "type": 0, "time": 0, "delta": 0}
            )
            size = (11, 7, 3, 0)[fmt]
            if len(buffer) < at + size:
                return None
            if fmt <= 1:
                state["length"] = int.from_bytes(buffer[at + 3 : at + 6], "big")
                state["type"] = buffer[at + 6]
            stamp = int.from_bytes(buffer[at : at + 3], "big") if fmt <= 2 else 0
            if fmt <= 2 and stamp == 0xFFFFFF:
                if len(buffer) < at + size + 4:
                    return None
                stamp = int.from_bytes(buffer[at + size : at + size + 4], "big")
                size += 4
            if not state["parts"]:  # (a new message: its timestamp)
                if fmt == 0:
                    state["time"], state["delta"] = stamp, 0
                else:
                    if fmt <= 2:
                        state["delta"] = stamp
                    state["time"] += state["delta"]
            at += size
            take = min(self.in_chunk_size, state["length"] - len(state["parts"]))
            if len(buffer) < at + take:
                return None
            state["parts"] += buffer[at : at + take]
            self.buffer = buffer[at + take :]
            if len(state["parts"]) < state["length"]:
                continue
            payload, state["parts"] = state["parts"], b""
            self.timestamps.append(state["time"])
            if state["type"] == 1:
                self.in_chunk_size = int.from_bytes(payload[:4], "big")
                continue
            return state["type"], payload

    async def command(self) -> list[Any]:
        """The next command's values (its name first, as bytes)."""
        while True:
            type_id, payload = await self.message()
            if type_id == 20:
                return parse_amf(payload)

    async def __aenter__(self) -> RTMPClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stream.aclose()
