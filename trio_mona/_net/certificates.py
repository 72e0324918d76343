"""A TLS port's certificates (docs/clients/tls.rst): one certificate and key, and/or a folder of
``NAME.pem``/``NAME.key`` pairs chosen by the name the client asks for (SNI); TLS 1.2
at least and the standard library's secure defaults. Re-read when their files change
or on demand (SIGHUP): connections open keep the context they started with, new ones
get the new one, and a set that fails to load leaves the old one in place.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from .tls import TLS


class CertificateError(Exception):
    """A certificate or key cannot be used: the message names the file."""


class Certificates:
    """See the module docstring."""

    def __init__(self, certificate: str | None, key: str | None, folder: str | None,
                 alpn: tuple[str, ...] = ()) -> None:  # fmt: skip
        self._pair = (Path(certificate), Path(key)) if certificate and key else None
        self._folder = Path(folder) if folder else None
        self._alpn = alpn
        #: The context new connections start with, and those chosen by name.
        self.context: ssl.SSLContext
        self._by_name: dict[str, ssl.SSLContext] = {}
        self._stamps: dict[Path, tuple[int, int]] = {}
        self.load()

    def session(self) -> TLS:
        """A new server-side TLS session with the current certificates."""
        return TLS(self.context, server_side=True)

    def load(self) -> None:
        """Read the certificates (again).

        Raises:
            CertificateError: one cannot be used (the ones in use stay).
        """
        pairs = self._pairs()
        by_name = {name: self._context(cert, key) for name, (cert, key) in pairs.items()}
        if self._pair is not None:
            default = self._context(*self._pair)
        elif by_name:
            default = by_name[min(by_name)]
        else:
            raise CertificateError(f"{self._folder}: no NAME.pem with its NAME.key")
        default.sni_callback = self._choose
        for context in by_name.values():
            context.sni_callback = self._choose
        self.context, self._by_name = default, by_name
        self._stamps = self._stamped()

    def changed(self) -> bool:
        """Whether a file (or the folder's list) changed since the last load."""
        try:
            return self._stamped() != self._stamps
        except CertificateError:
            return True

    def _choose(self, connection: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        chosen = self._by_name.get(name.lower()) if name else None
        if chosen is not None:
            connection.context = chosen

    def _pairs(self) -> dict[str, tuple[Path, Path]]:
        """The folder's NAME.pem files that have a NAME.key, by NAME."""
        if self._folder is None:
            return {}
        try:
            names = sorted(os.listdir(self._folder))
        except OSError as error:
            raise CertificateError(f"{self._folder}: {error.strerror}") from None
        return {
            name[:-4].lower(): (self._folder / name, self._folder / (name[:-4] + ".key"))
            for name in names
            if name.endswith(".pem") and (self._folder / (name[:-4] + ".key")).exists()
        }

    def _stamped(self) -> dict[Path, tuple[int, int]]:
        files = [*(self._pair or ()), *(p for pair in self._pairs().values() for p in pair)]
        stamps = {}
        for path in files:
            try:
                stat = path.stat()
            except OSError as error:
                raise CertificateError(f"{path}: {error.strerror}") from None
            stamps[path] = (stat.st_mtime_ns, stat.st_size)
        return stamps

    def _context(self, certificate: Path, key: Path) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self._alpn:
            context.set_alpn_protocols(list(self._alpn))
        for path in (certificate, key):
            if not path.is_file():
                raise CertificateError(f"{path}: no such file")
        try:
            context.load_cert_chain(certificate, key)
        except ssl.SSLError as error:
            what = (error.reason or str(error)).lower().replace("_", " ")
            raise CertificateError(f"{certificate} with {key}: {what}") from None
        except OSError as error:
            raise CertificateError(f"{certificate} with {key}: {error.strerror}") from None
        return context
