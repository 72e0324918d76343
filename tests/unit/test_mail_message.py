"""The mail's sans-I/O half (trio_mona/_core/mail.py): the [smtp] settings as written,
and the message built and checked before anything is sent."""

from __future__ import annotations

import pytest

from trio_mona._core.config import ConfigError
from trio_mona._core.mail import MailError, SMTPSettings, build_message


def test_settings_are_read_as_written() -> None:
    found = SMTPSettings.from_config(
        {"smtp.password": "0123", "smtp.port": "587", "smtp.starttls": "true", "smtp.timeout": "5"}
    )
    assert (found.password, found.port, found.starttls, found.timeout) == ("0123", 587, True, 5.0)
    assert SMTPSettings.from_config({}) == SMTPSettings()


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ({"smtp.port": "x"}, "smtp.port must be int"),
        ({"smtp.port": "70000"}, "smtp.port must be 1 to 65535"),
        ({"smtp.timeout": "nan"}, "smtp.timeout must be"),
        ({"smtp.tls": "true", "smtp.starttls": "true"}, "choose one"),
        ({"smtp.max_concurrent": "0"}, "smtp.max_concurrent must be 1 to 100"),
    ],
)
def test_impossible_settings_are_refused(entries: dict[str, str], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        SMTPSettings.from_config(entries)


def test_the_message_and_its_envelope() -> None:
    message, sender, recipients = build_message(
        b"Mona <mona@example.com>", "héllo".encode(), b"body", [b"a@x.org", b"B <b@y.org>"]
    )
    assert (sender, recipients) == ("mona@example.com", ["a@x.org", "b@y.org"])
    assert message["To"] == "a@x.org, B <b@y.org>"
    assert message["Subject"] == "héllo"
    assert message["Message-ID"].endswith("@example.com>")


@pytest.mark.parametrize(
    "sender", [b"", b"@x.org", b"x@", b"a b@c.d", b"<>", b"a@b.c, d@e.f", b"a@b.c\nBcc: e@f.g"]
)
def test_a_malformed_sender_is_refused(sender: bytes) -> None:
    with pytest.raises(MailError):
        build_message(sender, b"s", b"c", [b"a@x.org"])
