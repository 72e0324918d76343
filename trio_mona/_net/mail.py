"""``mona:sendMail`` (docs/lua/mail.rst): each mail goes out through the standard
library's ``smtplib`` in a worker thread, so the loop never waits on SMTP; at most
``smtp.max_concurrent`` at once, the others waiting their turn. When one is done, the
mail object's ``onSent(error)`` runs once, in the executor."""

from __future__ import annotations

import functools
import logging
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any, Final

import trio

from .._core.errors import os_message
from .._core.mail import MailError, SMTPSettings, build_message

log = logging.getLogger("trio_mona")

#: Mails accepted and not sent yet, past which ``sendMail`` refuses more.
MAX_WAITING: Final = 1000


class Mailer:
    """Sends what ``sendMail`` accepts. *report(mail, error)* calls the mail object's
    ``onSent`` (in the executor) and returns whether it had one."""

    def __init__(
        self,
        settings: SMTPSettings,
        nursery: trio.Nursery,
        report: Callable[[Any, bytes | None], Awaitable[bool]],
    ) -> None:
        self._settings = settings
        self._nursery = nursery
        self._report = report
        self._limiter = trio.CapacityLimiter(settings.max_concurrent)
        self.waiting = 0
        self._done = trio.Event()

    def send(
        self, mail: Any, sender: bytes, subject: bytes, content: bytes, *recipients: bytes
    ) -> bytes | None:
        """Accept a mail for sending; None, or why it is refused (nothing is sent)."""
        if self.waiting >= MAX_WAITING:
            return f"{MAX_WAITING} mails are waiting to be sent already".encode()
        try:
            message, envelope_from, envelope_to = build_message(
                sender, subject, content, recipients
            )
        except MailError as exc:
            return str(exc).encode()
        self.waiting += 1
        self._nursery.start_soon(self._deliver, mail, message, envelope_from, envelope_to)
        return None

    async def _deliver(
        self, mail: Any, message: EmailMessage, envelope_from: str, envelope_to: list[str]
    ) -> None:
        send = functools.partial(_send, self._settings, message, envelope_from, envelope_to)
        try:
            error = await trio.to_thread.run_sync(
                send, limiter=self._limiter, abandon_on_cancel=True
            )
            reported = await self._report(mail, None if error is None else error.encode())
            if error is not None and not reported:
                to = ", ".join(envelope_to)
                log.error("mail to %s not sent (and no onSent to tell): %s", to, error)
        finally:
            self.waiting -= 1
            if self.waiting == 0:
                self._done.set()
                self._done = trio.Event()

    async def drain(self) -> None:
        """Wait until every accepted mail is sent (or has failed) and reported."""
        while self.waiting:
            await self._done.wait()


def _send(
    settings: SMTPSettings, message: EmailMessage, envelope_from: str, envelope_to: list[str]
) -> str | None:
    """Send *message* (in a worker thread); None, or what went wrong, in words."""
    where = f"{settings.host}:{settings.port}"
    try:
        if settings.tls:
            server: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout,
                context=ssl.create_default_context(),
            )  # fmt: skip
        else:
            server = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        with server:
            if settings.starttls:
                server.starttls(context=ssl.create_default_context())
            if settings.username:
                server.login(settings.username, settings.password)
            refused = server.send_message(message, envelope_from, envelope_to)
    except smtplib.SMTPRecipientsRefused as exc:
        return _refused(exc.recipients)
    except smtplib.SMTPSenderRefused as exc:
        return f"sender {exc.sender} refused: {exc.smtp_code} {_said(exc.smtp_error)}"
    except smtplib.SMTPAuthenticationError as exc:
        return f"authentication failed at {where}: {exc.smtp_code} {_said(exc.smtp_error)}"
    except smtplib.SMTPResponseException as exc:
        return f"refused by {where}: {exc.smtp_code} {_said(exc.smtp_error)}"
    except smtplib.SMTPException as exc:
        if isinstance(exc.__context__, TimeoutError):  # (a reply that never came)
            return _timed_out(settings)
        return f"SMTP failure with {where}: {exc}"
    except TimeoutError:
        return _timed_out(settings)
    except ssl.SSLError as exc:
        return f"TLS with {where} failed: {exc.reason or exc}"
    except OSError as exc:
        return f"cannot reach {where}: {os_message(exc)}"
    if refused:
        return _refused(refused)
    return None


def _timed_out(settings: SMTPSettings) -> str:
    where = f"{settings.host}:{settings.port}"
    return f"{where}: no answer within {settings.timeout:g} s (smtp.timeout)"


def _said(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _refused(recipients: dict[str, tuple[int, bytes]]) -> str:
    each = "; ".join(f"{who}: {code} {_said(text)}" for who, (code, text) in recipients.items())
    return f"recipient refused: {each}"
