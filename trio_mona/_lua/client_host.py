"""The host functions of Lua's ``Client`` and ``Writer`` objects (``_lua/clients.lua``):
what a request's job answers, what the writer writes, cookies, and the properties
Python keeps (docs/clients/http.rst)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from .._clients.client import Client
from .._clients.http_session import RUNNING, HTTPSession
from .._clients.replies import (
    Answer,
    CloseReply,
    ErrorReply,
    FileReply,
    Listing,
    Reply,
    Upgraded,
    public_message,
)
from .._clients.rtmp_session import RTMPSession
from .._proto.cookies import set_cookie

log = logging.getLogger("trio_mona")


def _session(client: Client) -> HTTPSession:
    return cast(HTTPSession, client.session)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _options(table: Any) -> dict[str, object] | None:
    """A cookie's options as Python values; None when one cannot be one."""
    found: dict[str, object] = {}
    for key, value in table.items():
        if not isinstance(key, bytes):
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif not isinstance(value, bool | int | float):
            return None
        found[key.decode("utf-8", "replace")] = value
    return found


class ClientHost:
    """See the module docstring. *apps_dir* is left out of the error messages a
    client is answered with (they name Lua files relative to it)."""

    def __init__(self, apps_dir: Path) -> None:
        self._apps_dir = str(apps_dir)

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {
            "http_answer": self.answer,
            "client_write": self.write,
            "client_close": self.close,
            "client_cookie": self.cookie,
            "client_get": self.get,
            "client_timeout": self.timeout,
        }

    def answer(self, client: Client, kind: bytes, first: object = None, second: Any = None) -> None:
        """What the job of the request in hand answered (Python sends it when the job
        ends: _http_requests.py)."""
        session = _session(client)
        if session.phase is not RUNNING:
            return
        found: Answer
        if kind == b"values":
            found = Reply(bytes(second), _text(first))
        elif kind == b"file":
            variables = None
            if second is not None:
                flat = [_text(v) for v in second.values()]
                variables = dict(zip(flat[::2], flat[1::2], strict=False))
            found = FileReply(_text(first), variables)
        elif kind == b"listing":
            found = Listing()
        elif kind == b"upgrade":
            values = list(second.values()) if second is not None else []
            info = {_text(key): _text(v) if isinstance(v, bytes) else v
                    for key, v in zip(values[::2], values[1::2], strict=False)}  # fmt: skip
            found = Upgraded(info)
        elif kind == b"refuse":  # (a stream event refused: onPublish, onSubscribe)
            found = ErrorReply(int(first), public_message(_text(second), self._apps_dir))  # type: ignore[call-overload]
        elif kind == b"close":
            found = CloseReply(int(first), public_message(_text(second), self._apps_dir))  # type: ignore[call-overload]
        else:  # error, reject
            message = public_message(_text(second), self._apps_dir)
            found = ErrorReply(int(first), message)  # type: ignore[call-overload]
            if kind == b"reject" and session.client is client:
                session.client = None  # (its next request tries onConnection again)
                client.table = None
        session.job_answer = found

    def write(
        self, client: Client, kind: bytes, content_type: bytes, body: bytes, reliable: bool
    ) -> bool:
        """A writer wrote (*kind*: ``message`` or ``raw``): False when the client is
        gone or was closed for it."""
        if not client.connected:
            return False
        session = client.session
        if isinstance(session, RTMPSession):
            return session.written(body, invocation=kind == b"invocation")
        assert isinstance(session, HTTPSession)
        websocket = session.websocket
        if websocket is not None:
            return websocket.send(body, text=kind != b"raw", reliable=bool(reliable))
        return session.write(Reply(body, content_type.decode("latin-1")))

    def close(self, client: Client, code: int) -> None:
        if not client.connected:
            return
        session = client.session
        if isinstance(session, HTTPSession) and session.websocket is not None:
            session.websocket.close(int(code))
        else:
            session.close()

    def cookie(self, client: Client, key: bytes, value: bytes, options: Any) -> bool:
        """Add a Set-Cookie to the client's next response; False for bad arguments."""
        chosen = None if options is None else _options(options)
        if options is not None and chosen is None:
            return False
        header = set_cookie(_text(key), _text(value), chosen)
        if header is None or not client.connected or not isinstance(client.session, HTTPSession):
            return False
        _session(client).cookies.append(header)
        return True

    def get(self, client: Client, name: bytes) -> object:
        if name == b"lastReceptionTime":
            return int(client.last_reception * 1000)
        session = client.session
        if isinstance(session, RTMPSession):
            return 0 if name != b"queueing" else session.queue.size
        websocket = _session(client).websocket
        if name == b"ping":
            return 0 if websocket is None else websocket.ping_ms
        if name == b"dropped":
            return 0 if websocket is None else websocket.dropped
        return _session(client).queue.size + _session(client).answer_bytes  # queueing

    def timeout(self, client: Client, seconds: float) -> None:
        client.timeout = float(seconds)
        _session(client).wake(always=True)
