"""A WebSocket client for the tests, on wsproto over a real loopback socket."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import attrs
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate


@attrs.frozen
class Refused:
    status: int
    body: bytes


@attrs.frozen
class Closed:
    code: int
    reason: str


class WSClient:
    """One WebSocket connection (``client = await WSClient.open(port, "/chat/")``)."""

    def __init__(self, stream: trio.abc.Stream, connection: WSConnection) -> None:
        self.stream = stream
        self.connection = connection
        self.extensions: list[str] = []
        self.pending: list[object] = []
        self.pongs: list[bytes] = []
        #: The parts of a message still arriving.
        self.partial: list[str | bytes | bytearray] = []

    @classmethod
    async def open(
        cls,
        port: int,
        target: str = "/",
        *,
        compress: bool = False,
        headers: Sequence[tuple[str, str]] = (),
        first: bytes = b"",
        tls: ssl.SSLContext | None = None,
    ) -> WSClient:
        """Connect (over TLS with *tls*) and upgrade (raises :class:`RefusedError` when
        refused)."""
        stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_hostname="127.0.0.1")
        connection = WSConnection(ConnectionType.CLIENT)
        extensions = [PerMessageDeflate()] if compress else []
        request = Request(host="127.0.0.1", target=target, extensions=extensions,
                          extra_headers=[(k.encode(), v.encode()) for k, v in headers])  # fmt: skip
        await stream.send_all(connection.send(request) + first)
        client = cls(stream, connection)
        body = b""
        while True:
            for event in client.events():
                if isinstance(event, AcceptConnection):
                    client.extensions = [e.name for e in event.extensions]
                    return client
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise RefusedError(Refused(status, b""))
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise RefusedError(Refused(status, body))
            await client.read()

    def events(self) -> list[object]:
        return list(self.connection.events())

    async def read(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.connection.receive_data(bytes(data) or None)
        return bool(data)

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.connection.send(TextMessage(data=text)))

    async def send_bytes(self, data: bytes) -> None:
        await self.stream.send_all(self.connection.send(BytesMessage(data=data)))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def ping(self, payload: bytes = b"p") -> None:
        await self.stream.send_all(self.connection.send(Ping(payload=payload)))

    async def receive(self, limit: float = 5.0) -> str | bytes | Closed:
        """The next message (text as str, binary as bytes), or how it closed."""
        with trio.fail_after(limit):
            while True:
                while self.pending:
                    found = self.pending.pop(0)
                    if isinstance(found, TextMessage | BytesMessage):  # (parts joined)
                        self.partial.append(found.data)
                        if not found.message_finished:
                            continue
                        parts, self.partial = self.partial, []
                        if isinstance(found, TextMessage):
                            return "".join(str(part) for part in parts)
                        return b"".join(part for part in parts if not isinstance(part, str))
                    if isinstance(found, CloseConnection):
                        return Closed(found.code, found.reason or "")
                    if isinstance(found, Ping) and self.connection.state is ConnectionState.OPEN:
                        try:
                            await self.stream.send_all(self.connection.send(found.response()))
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass  # (the server closed; its close frame may follow)
                    if isinstance(found, Pong):
                        self.pongs.append(bytes(found.payload))
                self.pending += self.events()
                if self.pending:
                    continue
                try:
                    alive = await self.read()
                except trio.BrokenResourceError:
                    alive = False
                if not alive and not self.pending:
                    self.pending += self.events()
                    if not self.pending:
                        return Closed(1006, "connection closed without a close frame")

    async def close(self, code: int = 1000) -> None:
        try:
            await self.stream.send_all(self.connection.send(CloseConnection(code=code)))
        except Exception:  # (closed already)
            pass
        await self.stream.aclose()

    async def __aenter__(self) -> WSClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stream.aclose()


class RefusedError(Exception):
    def __init__(self, refused: Refused) -> None:
        super().__init__(f"refused: {refused.status}")
        self.refused = refused
