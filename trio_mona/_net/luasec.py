"""LuaSec's side of ``require "ssl"`` (docs/lua/luasec.rst): contexts made from its
parameters, and the TLS session of a wrapped LuaSocket connection (``luasocket.py``
feeds it; ``tls.py`` is the session itself).

LuaSec's semantics where they differ from a browser's: ``verify = "peer"`` checks the
certificate chain, not the host name (LuaSec leaves that to the application), and
``verify = "none"`` checks nothing.
"""

from __future__ import annotations

import os
import ssl
from typing import NamedTuple

from .tls import TLS, TLSError

#: LuaSec's protocol names: the least version each allows (``any``: TLS 1.2 and up
#: here, as the standard library's defaults allow nothing older).
PROTOCOLS = {
    b"any": ssl.TLSVersion.TLSv1_2,
    b"tlsv1_2": ssl.TLSVersion.TLSv1_2,
    b"tlsv1_3": ssl.TLSVersion.TLSv1_3,
}


class ContextError(Exception):
    """A LuaSec parameter or file that cannot be used: LuaSec's message."""


def context(mode: bytes, protocol: bytes, verify_peer: bool, cafile: bytes | None,
            certificate: bytes | None, key: bytes | None) -> ssl.SSLContext:  # fmt: skip
    """``ssl.newcontext``'s context.

    Raises:
        ContextError: a parameter or a file cannot be used (LuaSec's error text).
    """
    if mode not in (b"client", b"server"):
        raise ContextError("invalid mode")
    version = PROTOCOLS.get(protocol)
    if version is None:
        raise ContextError(f"invalid protocol ({protocol.decode('utf-8', 'replace')})")
    purpose = ssl.PROTOCOL_TLS_CLIENT if mode == b"client" else ssl.PROTOCOL_TLS_SERVER
    made = ssl.SSLContext(purpose)
    made.minimum_version = version
    made.check_hostname = False  # (LuaSec's "peer" checks the chain only)
    made.verify_mode = ssl.CERT_REQUIRED if verify_peer else ssl.CERT_NONE
    try:
        if cafile is not None:
            made.load_verify_locations(cafile=os.fsdecode(cafile))
        elif verify_peer and mode == b"client":
            made.load_default_certs()
    except (ssl.SSLError, OSError) as error:
        why = error.reason if isinstance(error, ssl.SSLError) else error.strerror
        raise ContextError(f"error loading CA locations ({why})") from None
    try:
        if certificate is not None:
            made.load_cert_chain(os.fsdecode(certificate), os.fsdecode(key) if key else None)
    except (ssl.SSLError, OSError) as error:
        why = error.reason if isinstance(error, ssl.SSLError) else error.strerror
        raise ContextError(f"error loading certificate ({why})") from None
    return made


def message(error: TLSError) -> bytes:
    """A TLS failure as LuaSec words it (``certificate verify failed``, OpenSSL's
    reason), without the transport's ``TLS:`` and verification detail."""
    text = str(error).removeprefix("TLS: ")
    if text.startswith("certificate verify failed"):
        return b"certificate verify failed"
    return text.encode()


class Secure:
    """The TLS of one wrapped connection: made at the first ``dohandshake`` (or send),
    with the name ``sni`` set before it."""

    def __init__(self, made: ssl.SSLContext, server_side: bool) -> None:
        self.context = made
        self.server_side = server_side
        self.sni: str | None = None
        self._session: TLS | None = None
        self._output: list[bytes] = []
        self._started = False
        #: Why the handshake failed (what later calls report).
        self.failure: bytes | None = None

    @property
    def session(self) -> TLS:
        if self._session is None:
            self._session = TLS(self.context, server_side=self.server_side,
                                server_hostname=self.sni)  # fmt: skip
        return self._session

    @property
    def established(self) -> bool:
        return self._session is not None and self._session.established

    @property
    def ended(self) -> bool:
        return self._session is not None and self._session.ended

    def start(self) -> bytes:
        """A client's first flight, once (b"" afterwards, and for a server)."""
        if self._started or self.server_side:
            self._started = True
            return b""
        self._started = True
        return self.session.start()

    def receive(self, data: bytes) -> bytes:
        """Records read: their plaintext (TLS's answers wait in :meth:`take_output`).

        Raises:
            TLSError: the handshake or a record failed.
        """
        plain, reply = self.session.receive(data)
        if reply:
            self._output.append(reply)
        return plain

    def take_output(self) -> bytes:
        output, self._output = self._output, []
        return b"".join(output)

    def encrypt(self, data: bytes) -> bytes:
        """Plaintext as records (a client not yet started says hello first)."""
        first = self.start()
        return first + self.session.encrypt(data)

    def peer(self) -> Peer | None:
        """The peer's certificate for ``getpeercertificate`` (None: there is none)."""
        if not self.established:
            return None
        session = self.session
        der = session.peer_der()
        if der is None:
            return None
        fields = session.peer_fields()
        return Peer(
            ssl.DER_cert_to_PEM_cert(der).encode(),
            _flat_name(fields.get("subject", ())),
            _flat_name(fields.get("issuer", ())),
            str(fields.get("notBefore", "")).encode(),
            str(fields.get("notAfter", "")).encode(),
            str(fields.get("serialNumber", "")).encode(),
        )


class Peer(NamedTuple):
    """A peer's certificate: its PEM text, and what Python reads of a verified one
    (subject and issuer as name, value, ...; empty when it was not verified)."""

    pem: bytes
    subject: list[bytes]
    issuer: list[bytes]
    not_before: bytes
    not_after: bytes
    serial: bytes


#: The OIDs of the attribute names Python's ``getpeercert`` gives (LuaSec shows both).
OIDS = {
    "countryName": "2.5.4.6",
    "stateOrProvinceName": "2.5.4.8",
    "localityName": "2.5.4.7",
    "organizationName": "2.5.4.10",
    "organizationalUnitName": "2.5.4.11",
    "commonName": "2.5.4.3",
    "serialNumber": "2.5.4.5",
    "emailAddress": "1.2.840.113549.1.9.1",
    "domainComponent": "0.9.2342.19200300.100.1.25",
    "userId": "0.9.2342.19200300.100.1.1",
}


def _flat_name(name: object) -> list[bytes]:
    """A distinguished name as Python's ``getpeercert`` gives it, as name, value, OID,
    name, value, OID..."""
    flat: list[bytes] = []
    for part in name if isinstance(name, tuple) else ():
        for key, value in part:
            flat += (str(key).encode(), str(value).encode(), OIDS.get(str(key), "").encode())
    return flat
