"""An HTTP/1.1 client for the tests, on h11 over a real loopback socket: keep-alive,
one request at a time, and the raw socket underneath for what h11 would refuse to
send."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import attrs
import h11
import trio

from trio_mona import Runtime


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]  # names in lower case (the last of a repeated one)
    body: bytes
    all_headers: tuple[tuple[str, str], ...] = ()

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.all_headers if key == name.lower()]


def http_port(runtime: Runtime) -> int:
    return next(a.port for a in runtime.bound_addresses if a.kind == "http")


class HTTPClient:
    """One connection (``async with await HTTPClient.open(port) as client``)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(
        cls, port: int, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> HTTPClient:  # fmt: skip
        """A connection (over TLS with *tls*, asking for *server_hostname*)."""
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_hostname=server_hostname or host,
                                    https_compatible=True)  # fmt: skip
            await stream.do_handshake()
        return cls(stream)

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stream.aclose()

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Response:
        names = {name.lower() for name, _ in headers}
        sent = [("Host", "127.0.0.1"), *headers]
        if (body or method == "POST") and "content-length" not in names:
            sent.append(("Content-Length", str(len(body))))
        request = h11.Request(method=method, target=target, headers=sent)
        data = self.h11.send(request) or b""
        if body:
            data += self.h11.send(h11.Data(data=body)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        return await self.response(head=method == "HEAD")

    async def response(self, *, head: bool = False) -> Response:
        """Read one response."""
        status, body = 0, bytearray()
        headers: tuple[tuple[str, str], ...] = ()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(bytes(await self.stream.receive_some(65536)))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = tuple((k.decode().lower(), v.decode("latin-1")) for k, v in event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return Response(status, dict(headers), bytes(body), headers)


async def get(port: int, target: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """One request on a connection of its own."""
    async with await HTTPClient.open(port) as client:
        return await client.request("GET", target, headers)


async def post(port: int, target: str, content_type: str, body: bytes) -> Response:
    async with await HTTPClient.open(port) as client:
        return await client.request("POST", target, [("Content-Type", content_type)], body)


async def raw_exchange(port: int, data: bytes, limit: float = 5.0) -> bytes:
    """Send *data* as is and read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        found = bytearray()
        with trio.fail_after(limit):
            while chunk := await stream.receive_some(65536):
                found += chunk
        return bytes(found)
