"""The RTMP handshake, both roles, with no I/O (docs/clients/rtmp.rst, to come with the
RTMP session).

C0/S0 is the version byte (3), C1/S1 1,536 bytes (time, four bytes, random), C2/S2 the
echo of the other side's C1/S1. Two forms exist. The simple one has zeros in bytes 4-7
of S1, and the echo is plain: ffmpeg's player needs it (it checks the server's digests
only when S1's byte 4 is 3 or more). The digest form, which Flash Players of version 10
and later send and expect back, carries an HMAC-SHA256 of the packet at a position the
packet itself chooses; the server answers it in kind. Here the server answers the
digest form to a client whose C1 carries a valid digest and a version of 10 or more,
and the simple form to every other client (ffmpeg emulates Flash Player 9).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
from typing import Final

import attrs

VERSION: Final = 3
SIZE: Final = 1536

# The keys of the digest form: a public text and 32 bytes every implementation shares.
_SHARED: Final = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
PLAYER_KEY: Final = b"Genuine Adobe Flash Player 001" + _SHARED
SERVER_KEY: Final = b"Genuine Adobe Flash Media Server 001" + _SHARED
#: The version the server puts in a digest-form S1.
_SERVER_VERSION: Final = b"\x04\x05\x00\x01"


class HandshakeError(Exception):
    """The peer's handshake cannot be answered (a version other than 3)."""


def digest_position(packet: bytes, base: int) -> int:
    """Where the digest of a C1/S1 lies, in the scheme whose offset bytes are at *base*
    (8 or 772)."""
    return sum(packet[base : base + 4]) % 728 + base + 4


def digest(packet: bytes, position: int, key: bytes) -> bytes:
    """The HMAC-SHA256 of *packet* without the 32 bytes at *position*."""
    return hmac.digest(key, packet[:position] + packet[position + 32 :], hashlib.sha256)


def find_digest(packet: bytes, key: bytes) -> tuple[int, bytes] | None:
    """The position and value of a valid digest in *packet* (either scheme), or None."""
    for base in (8, 772):
        position = digest_position(packet, base)
        found = packet[position : position + 32]
        if hmac.compare_digest(found, digest(packet, position, key)):
            return position, found
    return None


def _packet(version: bytes) -> bytearray:
    packet = bytearray(os.urandom(SIZE))
    packet[0:4] = struct.pack("!I", int(time.monotonic() * 1000) & 0xFFFFFFFF)
    packet[4:8] = version
    return packet


def _with_digest(packet: bytearray, key: bytes) -> bytes:
    position = digest_position(bytes(packet), 8)
    packet[position : position + 32] = digest(bytes(packet), position, key)
    return bytes(packet)


def _echo_with_digest(peer_digest: bytes, key: bytes) -> bytes:
    """The digest form's C2/S2: random bytes whose last 32 are keyed by the peer's
    digest."""
    packet = os.urandom(SIZE - 32)
    answer_key = hmac.digest(key, peer_digest, hashlib.sha256)
    return packet + hmac.digest(answer_key, packet, hashlib.sha256)


@attrs.define
class ServerHandshake:
    """The server's side: feed it what the client sends until :attr:`done`; send what
    :meth:`receive_data` returns; what followed C2 is :attr:`rest`."""

    _buffer: bytes = b""
    _answered: bool = False
    done: bool = False
    #: The client used the digest form (and was answered in it).
    digest_form: bool = False
    rest: bytes = b""

    def receive_data(self, data: bytes) -> bytes:
        """Take the client's bytes; return what to send (S0 S1 S2, once C0 C1 are here).

        Raises:
            HandshakeError: C0 is not version 3.
        """
        if self.done:
            self.rest += data
            return b""
        self._buffer += data
        out = b""
        if not self._answered:
            if len(self._buffer) < 1 + SIZE:
                return b""
            if self._buffer[0] != VERSION:
                raise HandshakeError(f"RTMP version {self._buffer[0]}, not 3")
            c1 = self._buffer[1 : 1 + SIZE]
            self._buffer = self._buffer[1 + SIZE :]
            out = bytes([VERSION]) + self._answer(c1)
            self._answered = True
        if len(self._buffer) >= SIZE:  # C2: nothing to check in it (clients vary)
            self.rest, self._buffer = self._buffer[SIZE:], b""
            self.done = True
        return out

    def _answer(self, c1: bytes) -> bytes:
        found = find_digest(c1, PLAYER_KEY[:30]) if c1[4] >= 10 else None
        if found is None:
            return bytes(_packet(b"\x00\x00\x00\x00")) + c1  # (S2: C1 echoed)
        self.digest_form = True
        s1 = _with_digest(_packet(_SERVER_VERSION), SERVER_KEY[:36])
        return s1 + _echo_with_digest(found[1], SERVER_KEY)


@attrs.define
class ClientHandshake:
    """The client's side (the tests' and the benchmark's players and publishers): send
    :meth:`start`, feed it what the server sends until :attr:`done`, then send what the
    last :meth:`receive_data` returned (C2)."""

    #: Flash Player's version in C1 (bytes 4-7), with a digest when it is 10 or more;
    #: zeros: the simple form.
    version: bytes = b"\x00\x00\x00\x00"
    _c1: bytes = b""
    _buffer: bytes = b""
    done: bool = False
    rest: bytes = b""
    #: The server's S1 carried a valid digest.
    server_digest: bool = False

    def start(self) -> bytes:
        packet = _packet(self.version)
        self._c1 = _with_digest(packet, PLAYER_KEY[:30]) if self.version[0] >= 10 else bytes(packet)
        return bytes([VERSION]) + self._c1

    def receive_data(self, data: bytes) -> bytes:
        """Take the server's bytes; return C2 once S0 S1 S2 are here."""
        if self.done:
            self.rest += data
            return b""
        self._buffer += data
        if len(self._buffer) < 1 + 2 * SIZE:
            return b""
        if self._buffer[0] != VERSION:
            raise HandshakeError(f"RTMP version {self._buffer[0]}, not 3")
        s1, s2 = self._buffer[1 : 1 + SIZE], self._buffer[1 + SIZE : 1 + 2 * SIZE]
        self.rest, self.done = self._buffer[1 + 2 * SIZE :], True
        if s1[4] >= 3:
            found = find_digest(s1, SERVER_KEY[:36])
            if found is None:
                raise HandshakeError("the server's S1 digest does not check")
            self.server_digest = True
            mine = find_digest(self._c1, PLAYER_KEY[:30])
            assert mine is not None
            key = hmac.digest(SERVER_KEY, mine[1], hashlib.sha256)
            if not hmac.compare_digest(s2[-32:], hmac.digest(key, s2[:-32], hashlib.sha256)):
                raise HandshakeError("the server's S2 digest does not check")
            return _echo_with_digest(found[1], PLAYER_KEY)
        elif s2 != self._c1:
            raise HandshakeError("the server's S2 is not C1's echo")
        return s1
