"""Mail without I/O (docs/lua/mail.rst): the ``[smtp]`` settings, and the message
``mona:sendMail`` sends, refused before anything is sent when it is malformed."""

from __future__ import annotations

import email.errors
import email.utils
from collections.abc import Mapping, Sequence
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from typing import Final

import attrs

from .config import ConfigError, read_section
from .errors import MonaError


class MailError(MonaError, ValueError):
    """A mail that cannot be sent as given (the message says why); nothing was sent."""


@attrs.frozen
class SMTPSettings:
    """The ``[smtp]`` section: where mail goes, and how."""

    host: str = "localhost"
    port: int = 25
    #: Seconds any one exchange with the server may take.
    timeout: float = 60.0
    #: Log in with these when a username is given.
    username: str = ""
    password: str = ""
    #: Upgrade the connection with STARTTLS before anything else.
    starttls: bool = False
    #: Speak TLS from the start (usually port 465).
    tls: bool = False
    #: Mails sent at once (each in a worker thread); the others wait their turn.
    max_concurrent: int = 4

    @classmethod
    def from_config(cls, raw: Mapping[str, str]) -> SMTPSettings:
        """Read and check the ``smtp.*`` keys of the configuration as written.

        Raises:
          ConfigError: a setting has the wrong type or an impossible value.
        """
        settings = cls(**read_section(cls, raw, "smtp"))
        if not 1 <= settings.port <= 65535:
            raise ConfigError(f"smtp.port must be 1 to 65535, got {settings.port}")
        if not 0.1 <= settings.timeout <= 3600:  # (NaN is never within)
            raise ConfigError(f"smtp.timeout must be 0.1 to 3600, got {settings.timeout}")
        if not 1 <= settings.max_concurrent <= 100:
            raise ConfigError(
                f"smtp.max_concurrent must be 1 to 100, got {settings.max_concurrent}"
            )
        if settings.tls and settings.starttls:
            raise ConfigError("smtp.tls and smtp.starttls: choose one")
        return settings


#: Characters that would end a header line and start another (header injection): what
#: Python's str.splitlines splits at (the email package refuses each), and NUL.
_LINE_BREAKS: Final = (
    "\r", "\n", "\x00", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
)  # fmt: skip


def _text(what: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MailError(f"the {what} is not UTF-8 text") from None


def _address(what: str, raw: bytes) -> Address:
    text = _text(what, raw).strip()
    if any(c in text for c in _LINE_BREAKS):
        raise MailError(f"a line break in the {what} {text!r} (refused: header injection)")
    malformed = MailError(f"malformed {what} {text!r} (expected name@domain or Name <name@domain>)")
    try:
        header = _HEADERS("To", text)
    except (ValueError, IndexError, email.errors.HeaderParseError):
        raise malformed from None
    found: tuple[Address, ...] = getattr(header, "addresses", ())
    if header.defects or len(found) != 1 or not found[0].username or not found[0].domain:
        raise malformed
    return found[0]


_HEADERS: Final = HeaderRegistry()


def build_message(
    sender: bytes, subject: bytes, content: bytes, recipients: Sequence[bytes]
) -> tuple[EmailMessage, str, list[str]]:
    """The message, its envelope sender and its recipients.

    Raises:
      MailError: no recipient, a malformed address, a line break in a header, text
        that is not UTF-8.
    """
    if not recipients:
        raise MailError("no recipient")
    from_ = _address("sender", sender)
    to = [_address("recipient", r) for r in recipients]
    title = _text("subject", subject)
    if any(c in title for c in _LINE_BREAKS):
        raise MailError("a line break in the subject (refused: header injection)")
    message = EmailMessage()
    message["From"] = from_
    message["To"] = to
    message["Subject"] = title
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=from_.domain)
    message.set_content(_text("content", content))
    return message, from_.addr_spec, [r.addr_spec for r in to]
