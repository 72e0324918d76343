"""FLV, as HTTP-FLV players read a live stream: the file header, then one tag per frame
(docs/clients/rtmp.rst, "HTTP-FLV"). No I/O."""

from __future__ import annotations

from typing import Final

#: "FLV", version 1, audio and video, a 9-byte header, then the first (empty) tag's
#: previous-size field.
HEADER: Final = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"


def tag(type_id: int, timestamp: int, payload: bytes) -> bytes:
    """One tag (audio 8, video 9, data 18) and the size field that follows it."""
    size = len(payload)
    head = bytes((type_id,)) + size.to_bytes(3, "big") + (timestamp & 0xFFFFFF).to_bytes(3, "big")
    head += bytes(((timestamp >> 24) & 0xFF, 0, 0, 0))
    return head + payload + (11 + size).to_bytes(4, "big")
