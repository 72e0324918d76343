"""TLS inside a transport (docs/clients/tls.rst): what the socket reads is decrypted before the
consumer sees it, and what the consumer sends is encrypted as it is queued, through
the standard library's ``ssl`` over memory buffers. No I/O happens here, so a handshake
never blocks the loop: it advances as the peer's bytes arrive, and its answers go out
through the transport's queue like any bytes.
"""

from __future__ import annotations

import functools
import ssl

#: How much plaintext one read of the TLS object may return.
_READ = 256 * 1024


class TLSError(Exception):
    """The connection cannot go on (a failed handshake, a bad record): the reason."""


class TLS:
    """One connection's TLS state (see the module docstring)."""

    def __init__(
        self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side,
            server_hostname=server_hostname,
        )  # fmt: skip
        #: The handshake is over: plaintext flows.
        self.established = False
        #: The peer ended the TLS session (close_notify, or its end of the stream).
        self.ended = False
        #: Plaintext sent before the handshake ended, sent when it does, and its size
        #: (counted against the send limits as if queued).
        self._held: list[bytes] = []
        self.held = 0

    @property
    def version(self) -> str | None:
        """The protocol the handshake chose (``TLSv1.3``), once it is over."""
        return self._object.version()

    def peer_der(self) -> bytes | None:
        """The peer's certificate (DER), once the handshake is over."""
        return self._object.getpeercert(binary_form=True) if self.established else None

    def peer_fields(self) -> dict[str, object]:
        """The peer's certificate as ``getpeercert`` reads it (empty unless verified)."""
        return dict(self._object.getpeercert() or {}) if self.established else {}

    def start(self) -> bytes:
        """A client's first flight (its ClientHello), to send."""
        self._handshake()
        return self._outgoing.read()

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """The socket read *data* (b"": its end): the plaintext it completes, and what
        is to be sent back (handshake messages, session tickets, alerts).

        Raises:
            TLSError: the handshake failed, or the peer sent what TLS refuses.
        """
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        plain: list[bytes] = []
        if not self.established:
            if not self._handshake():
                return b"", self._outgoing.read()
            for held in self._held:
                self._object.write(held)
            self._held.clear()
            self.held = 0
        read = self._object.read
        while not self.ended:
            try:
                chunk = read(_READ)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.ended = True
                break
            except ssl.SSLError as error:
                raise TLSError(_reason(error)) from None
            if not chunk:
                self.ended = True
                break
            plain.append(chunk)
        return b"".join(plain), self._outgoing.read()

    def encrypt(self, data: bytes) -> bytes:
        """*data* as records to send (b"" while the handshake goes on: it is held)."""
        if not self.established:
            self._held.append(bytes(data))
            self.held += len(data)
            return b""
        self._object.write(data)
        return self._outgoing.read()

    def goodbye(self) -> bytes:
        """The close_notify alert, to send before closing (b"" when there is none)."""
        if not self.established or self.ended:
            return b""
        try:
            self._object.unwrap()
        except ssl.SSLWantReadError:
            pass  # (our alert is written; the peer's answer is not awaited)
        except ssl.SSLError:
            return b""
        return self._outgoing.read()

    def _handshake(self) -> bool:
        try:
            self._object.do_handshake()
        except ssl.SSLWantReadError:
            if self._incoming.eof:
                raise TLSError("the peer closed during the TLS handshake") from None
            return False
        except ssl.SSLError as error:
            raise TLSError(_reason(error)) from None
        self.established = True
        return True


def _reason(error: ssl.SSLError) -> str:
    """A TLS failure as a log line or a Lua error says it."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {error.verify_message}"
    reason = error.reason or error.strerror or str(error)
    return f"TLS: {reason.lower().replace('_', ' ')}"


@functools.lru_cache(maxsize=32)
def client_context(ca: str | None, verify: bool) -> ssl.SSLContext:
    """The context of a TLS client socket: the system's CAs (or the file *ca*) and the
    host name checked, unless *verify* is false. (Kept: loading the CAs costs a few ms.)

    Raises:
        OSError: *ca* cannot be read.
        ssl.SSLError: *ca* holds no certificate.
    """
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
