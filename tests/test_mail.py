"""mona:sendMail (docs/lua/mail.rst) against a real SMTP server on loopback
(aiosmtpd), and against servers that refuse, are down or never answer."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

import trio_mona

from .helpers import Inbox, free_port, lua, lua_until, messages, wait_for_log, write_app

pytestmark = pytest.mark.trio

#: The root app: send(...) mails, and each onSent appends its error (or "sent").
SENDER = """
results = {}
function send(...)
  local mail = mona:sendMail(...)
  function mail:onSent(err) results[#results + 1] = err or "sent" end
  return mail
end
"""


def smtp(port: int, **more: str) -> dict[str, str]:
    return {"smtp.host": "127.0.0.1", "smtp.port": str(port), **more}


async def start(tmp_path: Path, settings: dict[str, str], engine: str = "lua54") -> Any:
    folder = write_app(tmp_path / "apps", SENDER)
    return trio_mona.open_runtime(folder, settings=settings, engine=engine, data=":memory:")


async def test_a_mail_reaches_the_server_with_its_envelope_and_utf8_text(
    tmp_path: Path, inbox: tuple[Inbox, int], engine: str
) -> None:
    received, port = inbox
    async with await start(tmp_path, smtp(port), engine) as runtime:
        await lua(runtime, """send("Mona <mona@example.com>", "héllo ✓", "bödy\\nline two",
                                   "a@example.org", "Bé <b@example.net>")""")  # fmt: skip
        await lua_until(runtime, "return #results == 1")
        assert await lua(runtime, "return results[1]") == b"sent"
    (envelope,) = received.envelopes
    assert envelope.mail_from == "mona@example.com"
    assert envelope.rcpt_tos == ["a@example.org", "b@example.net"]
    message = email.message_from_bytes(
        envelope.original_content or b"", policy=email.policy.default
    )
    assert message["Subject"] == "héllo ✓"
    assert message["From"] == "Mona <mona@example.com>"
    assert message["To"] == "a@example.org, Bé <b@example.net>"
    content = message.get_content()
    assert content.replace("\r\n", "\n") == "bödy\nline two\n"


async def test_a_refused_recipient_reaches_onsent(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    received, port = inbox
    async with await start(tmp_path, smtp(port)) as runtime:
        await lua(runtime, 'send("me@example.com", "s", "c", "nobody@example.org")')
        await lua_until(runtime, "return #results == 1")
        error = await lua(runtime, "return results[1]")
    assert error == b"recipient refused: nobody@example.org: 550 5.1.1 no such user here"
    assert received.envelopes == []


async def test_one_refused_recipient_of_two_is_reported_and_the_other_gets_it(
    tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    received, port = inbox
    async with await start(tmp_path, smtp(port)) as runtime:
        await lua(
            runtime, 'send("me@example.com", "s", "c", "nobody@example.org", "a@example.org")'
        )
        await lua_until(runtime, "return #results == 1")
        assert b"nobody@example.org: 550" in await lua(runtime, "return results[1]")
    assert [e.rcpt_tos for e in received.envelopes] == [["a@example.org"]]


async def test_a_server_that_is_down_reaches_onsent(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # (bound, never listening: refused)
        async with await start(tmp_path, smtp(port)) as runtime:
            await lua(runtime, 'send("me@example.com", "s", "c", "a@example.org")')
            await lua_until(runtime, "return #results == 1")
            error = await lua(runtime, "return results[1]")
    assert error == f"cannot reach 127.0.0.1:{port}: Connection refused".encode()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A server that accepts and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                pass

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


async def test_a_server_that_never_answers_times_out_while_the_loop_serves_on(
    tmp_path: Path, silent_server: int
) -> None:
    async with await start(tmp_path, smtp(silent_server, **{"smtp.timeout": "2"})) as runtime:
        await lua(runtime, 'send("me@example.com", "s", "c", "a@example.org")')
        for _ in range(20):  # (the executor serves while the mail waits)
            assert await lua(runtime, "return #results") == 0
        await lua_until(runtime, "return #results == 1")
        error = await lua(runtime, "return results[1]")
    assert error == f"127.0.0.1:{silent_server}: no answer within 2 s (smtp.timeout)".encode()


class Authenticator:
    def __call__(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"mona", b"secret")
        return AuthResult(success=ok, handled=False)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize(("password", "expected"), [("secret", b"sent"), ("wrong", b"auth")])
async def test_authentication(tmp_path: Path, password: str, expected: bytes) -> None:
    found = Inbox()
    port = free_port()
    controller = Controller(
        found, hostname="127.0.0.1", port=port, authenticator=Authenticator(),
        auth_required=True, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        settings = smtp(port, **{"smtp.username": "mona", "smtp.password": password})
        async with await start(tmp_path, settings) as runtime:
            await lua(runtime, 'send("me@example.com", "s", "c", "a@example.org")')
            await lua_until(runtime, "return #results == 1")
            result = await lua(runtime, "return results[1]")
    finally:
        controller.stop()
    if expected == b"sent":
        assert result == b"sent"
        assert len(found.envelopes) == 1
    else:
        assert result.startswith(f"authentication failed at 127.0.0.1:{port}: 535".encode())
        assert found.envelopes == []


@pytest.mark.parametrize(
    ("call", "why"),
    [
        ('"me@example.com", "s", "c"', "sendMail: no recipient"),
        (
            '"me@example.com\\r\\nBcc: x@evil.org", "s", "c", "a@example.org"',
            "a line break in the sender",
        ),
        (
            '"me@example.com", "hi\\r\\nBcc: x@evil.org", "c", "a@example.org"',
            "a line break in the subject",
        ),
        (
            '"me@example.com", "s", "c", "a@example.org\\nBcc: x@evil.org"',
            "a line break in the recipient",
        ),
        # (what the email package also ends a header line at: U+2028, NEL, \f, \v)
        (
            '"me@example.com", "a\\226\\128\\168b", "c", "a@example.org"',
            "a line break in the subject",
        ),
        ('"me@example.com", "a\\194\\133b", "c", "a@example.org"', "a line break in the subject"),
        ('"me@example.com", "a\\fb\\vc", "c", "a@example.org"', "a line break in the subject"),
        ('"me@example.com", "s", "c", "a@example.org, b@example.org"', "malformed recipient"),
        ('"not an address", "s", "c", "a@example.org"', "malformed sender"),
        (
            '"me@example.com", "s", "c", 42',
            "bad argument #4 to 'sendMail' (string expected, got number)",
        ),
        ('"me@example.com", "s", "\\255", "a@example.org"', "the content is not UTF-8 text"),
    ],
)
async def test_bad_mail_is_refused_at_once_and_nothing_is_sent(
    tmp_path: Path, inbox: tuple[Inbox, int], call: str, why: str
) -> None:
    received, port = inbox
    async with await start(tmp_path, smtp(port)) as runtime:
        ok, error = await lua(runtime, f"return pcall(send, {call})")
        assert ok is False
        assert why in error.decode()
        # (a good mail after it: its report is the only one, and it the only envelope)
        await lua(runtime, 'send("me@example.com", "after", "c", "a@example.org")')
        await lua_until(runtime, "return #results == 1")
        assert await lua(runtime, "return results[1]") == b"sent"
    assert len(received.envelopes) == 1


async def test_many_mails_each_report_once(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    received, port = inbox
    settings = smtp(port, **{"smtp.max_concurrent": "2"})
    async with await start(tmp_path, settings) as runtime:
        await lua(
            runtime, 'for i = 1, 20 do send("me@example.com", "n" .. i, "c", "a@example.org") end'
        )
        await lua_until(runtime, "return #results == 20")
        # (one more, sent after: a report twice of the others would not come after it)
        await lua(runtime, 'send("me@example.com", "last", "c", "a@example.org")')
        await lua_until(runtime, "return #results == 21")
        await lua(runtime, "results[21] = nil")
        assert await lua(runtime, "return #results") == 20
    contents = [e.original_content or b"" for e in received.envelopes]
    assert sorted(content.count(b"Subject: n") for content in contents) == [0] + [1] * 20


async def test_a_failure_without_onsent_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        async with await start(tmp_path, smtp(unused.getsockname()[1])) as runtime:
            await lua(runtime, 'mona:sendMail("me@example.com", "s", "c", "a@example.org")')
            await wait_for_log(caplog, "mail to a@example.org not sent")


async def test_a_mail_sent_by_onstop_is_delivered_and_reported(
    tmp_path: Path, inbox: tuple[Inbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    received, port = inbox
    folder = write_app(tmp_path / "apps", """
        function onStop()
          local mail = mona:sendMail("me@example.com", "bye", "c", "a@example.org")
          function mail:onSent(err) NOTE("at stop: ", err or "sent") end
        end
    """)  # fmt: skip
    async with trio_mona.open_runtime(folder, settings=smtp(port), data=":memory:"):
        pass
    assert len(received.envelopes) == 1
    assert "at stop: sent" in messages(caplog)


async def test_bad_smtp_settings_stop_the_start(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "")
    with pytest.raises(trio_mona.StartupError, match=r"smtp\.port must be 1 to 65535, got 0"):
        async with trio_mona.open_runtime(folder, settings={"smtp.port": "0"}):
            pass
