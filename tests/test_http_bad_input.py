"""Bad HTTP input on a raw socket: each refusal answered with its status and the
connection closed, counted, and the next client served (docs/clients/http.rst,
"Bad input")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from .helpers import running
from .http_client import get, http_port, raw_exchange

APP = "function onConnection(c) function c:ok() return 'fine' end end"

BAD = [
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: twelve\r\n\r\n", 400),
]


@pytest.mark.parametrize(("request_bytes", "status"), BAD)
async def test_bad_requests_are_refused_and_closed(
    tmp_path: Path, request_bytes: bytes, status: int
) -> None:
    async with running(
        tmp_path, APP, HTTP__port="0", HTTP__maxHeaders="4096", HTTP__maxBody="1000"
    ) as runtime:
        port = http_port(runtime)
        answer = await raw_exchange(port, request_bytes)  # (returns once the server closed)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"Connection: close" in answer
        assert runtime.statistics().http_refused == 1
        assert (await get(port, "/ok")).body == b'["fine"]'


async def test_a_body_too_large_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    async with running(tmp_path, APP, HTTP__port="0", HTTP__maxBody="1000") as runtime:
        stream = await trio.open_tcp_stream("127.0.0.1", http_port(runtime))
        async with stream:
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
            with trio.fail_after(5):
                answer = await stream.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 413 ")


async def test_a_body_sent_too_slowly_is_closed(tmp_path: Path) -> None:
    async with running(tmp_path, APP, HTTP__port="0", HTTP__timeout="0.3") as runtime:
        port = http_port(runtime)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            started = time.monotonic()
            with trio.fail_after(5):
                assert await stream.receive_some(65536) == b""
            assert time.monotonic() - started < 3
        assert (await get(port, "/ok")).body == b'["fine"]'


async def test_a_chunked_body_is_read(tmp_path: Path) -> None:
    source = "function onConnection(c) function c:onMessage(text) return #text end end"
    async with running(tmp_path, source, HTTP__port="0") as runtime:
        answer = await raw_exchange(
            http_port(runtime),
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain"
            b"\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert answer.endswith(b"\r\n\r\n11")
