"""Files over HTTP, on real loopback sockets: onRead and templates, folders and their
index, what is never served, conditional and range requests, large files streamed
(docs/clients/http.rst, "Files")."""

from __future__ import annotations

import email.utils
import json
import os
import socket
from pathlib import Path

import trio

import trio_mona

from .helpers import lua, write_app
from .http_client import HTTPClient, get, http_port

SITE = """
function onConnection(client)
  function client:onRead(file, args)
    if file == "secret.txt" then return nil end
    if file == "alias.txt" then return "page.txt" end
    if file == "hello.html" then return file, { name = args and args.name or "you", n = 3 } end
    if file == "broken.txt" then error("cannot read that") end
    if file == "custom.txt" then client.writer:writeRaw("made ", 2, " here") return nil end
    if file == "escape.txt" then return "../outside.txt" end
    if file == "source.txt" then return "main.lua" end
    return file
  end
  function client:api(args) return { ok = true, n = args and args.n } end
end
"""


def _site(tmp_path: Path) -> Path:
    folder = write_app(tmp_path / "apps", SITE)
    (folder / "page.txt").write_text("a page\n")
    (folder / "secret.txt").write_text("secret\n")
    (folder / "hello.html").write_text("<p>Hello <% name %>, <%n%> <% unknown %>!</p>")
    (folder / "image.png").write_bytes(b"\x89PNG....")
    (folder / "data.bin").write_bytes(bytes(range(256)) * 4)
    (folder / ".env").write_text("TOKEN=1\n")
    (folder / "lib.lua").write_text("return 1\n")
    (tmp_path / "outside.txt").write_text("outside\n")
    os.symlink(tmp_path / "outside.txt", folder / "link.txt")
    os.symlink(folder / "page.txt", folder / "inside-link.txt")
    write_app(folder / "sub", "x = 1")
    return folder


async def test_files_templates_and_onread(tmp_path: Path, engine: str) -> None:
    folder = _site(tmp_path)
    async with trio_mona.open_runtime(folder, settings={"HTTP.port": "0"}, engine=engine) as rt:
        port = http_port(rt)
        page = await get(port, "/page.txt")
        assert (page.status, page.body) == (200, b"a page\n")
        assert page.headers["content-type"] == "text/plain; charset=utf-8"
        assert (await get(port, "/image.png")).headers["content-type"] == "image/png"
        assert (await get(port, "/data.bin")).headers["content-type"] == "application/octet-stream"
        assert (await get(port, "/alias.txt")).body == b"a page\n"
        hello = await get(port, "/hello.html?name=robert")
        assert hello.body == b"<p>Hello robert, 3 !</p>"
        assert hello.headers["content-type"] == "text/html; charset=utf-8"
        assert (await get(port, "/secret.txt")).status == 403
        broken = await get(port, "/broken.txt")
        assert broken.status == 500
        assert b"<p>main.lua:7: cannot read that</p>" in broken.body
        assert str(tmp_path).encode() not in broken.body
        custom = await get(port, "/custom.txt")
        assert (custom.status, custom.body) == (200, b"made 2 here")
        assert custom.headers["content-type"] == "text/plain; charset=utf-8"
        assert (await get(port, "/missing.txt")).status == 404
        assert json.loads((await get(port, "/api?n=2")).body) == [{"n": 2, "ok": True}]


async def test_sources_dot_files_and_the_outside_are_never_served(tmp_path: Path) -> None:
    folder = _site(tmp_path)
    async with trio_mona.open_runtime(folder, settings={"HTTP.port": "0"}) as rt:
        port = http_port(rt)
        for target in ["/main.lua", "/lib.lua", "/LIB.LUA", "/.env", "/sub/main.lua",
                       "/link.txt", "/escape.txt", "/source.txt", "/%2e%2e/outside.txt",
                       "/../outside.txt"]:  # fmt: skip
            response = await get(port, target)
            assert response.status == 404, target
            assert b"TOKEN" not in response.body
            assert response.body != b"outside\n"
        assert (await get(port, "/inside-link.txt")).body == b"a page\n"
        listing = await get(port, "/")
        assert listing.status == 200
        for shown in [b"page.txt", b"hello.html", b'href="sub/"', b"inside-link.txt"]:
            assert shown in listing.body
        for hidden in [b"main.lua", b"lib.lua", b".env"]:
            assert hidden not in listing.body
        assert listing.body.index(b"data.bin") < listing.body.index(b"page.txt")
        sub = await get(port, "/sub/")
        assert b'href="../"' in sub.body


async def test_a_folder_answers_as_its_index_says(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "off", "function onConnection() return { index = false } end")
    write_app(folder / "file", "function onConnection() return { index = 'page.txt' } end")
    (folder / "file" / "page.txt").write_text("the index\n")
    write_app(
        folder / "method",
        "function onConnection(c) function c:home() return 'home' end return {index='home'} end",
    )
    async with trio_mona.open_runtime(folder, settings={"HTTP.port": "0"}) as rt:
        port = http_port(rt)
        assert (await get(port, "/off/")).status == 403
        assert (await get(port, "/file/")).body == b"the index\n"
        assert (await get(port, "/method/")).body == b'["home"]'
    async with trio_mona.open_runtime(
        folder, settings={"HTTP.port": "0", "HTTP.index": "false"}
    ) as rt:
        assert (await get(http_port(rt), "/")).status == 403


async def test_conditional_and_range_requests(tmp_path: Path) -> None:
    folder = _site(tmp_path)
    when = 1_700_000_000
    os.utime(folder / "data.bin", (when, when))
    async with (
        trio_mona.open_runtime(folder, settings={"HTTP.port": "0"}) as rt,
        await HTTPClient.open(http_port(rt)) as client,
    ):
        whole = await client.request("GET", "/data.bin")
        assert whole.headers["last-modified"] == email.utils.formatdate(when, usegmt=True)
        assert whole.headers["accept-ranges"] == "bytes"
        same = await client.request(
            "GET", "/data.bin", [("If-Modified-Since", whole.headers["last-modified"])]
        )
        assert (same.status, same.body) == (304, b"")
        older = email.utils.formatdate(when - 10, usegmt=True)
        assert (
            await client.request("GET", "/data.bin", [("If-Modified-Since", older)])
        ).status == 200
        part = await client.request("GET", "/data.bin", [("Range", "bytes=10-19")])
        assert (part.status, part.body) == (206, bytes(range(10, 20)))
        assert part.headers["content-range"] == "bytes 10-19/1024"
        tail = await client.request("GET", "/data.bin", [("Range", "bytes=-4")])
        assert tail.body == bytes(range(252, 256))
        past = await client.request("GET", "/data.bin", [("Range", "bytes=5000-")])
        assert (past.status, past.headers["content-range"]) == (416, "bytes */1024")
        head = await client.request("HEAD", "/data.bin")
        assert (head.status, head.headers["content-length"], head.body) == (200, "1024", b"")
        assert (await client.request("GET", "/page.txt")).body == b"a page\n"  # (still in step)


async def test_a_large_file_streams_with_back_pressure(tmp_path: Path) -> None:
    folder = _site(tmp_path)
    size = 24 * 1024 * 1024
    content = os.urandom(1 << 20) * 24
    (folder / "big.bin").write_bytes(content)
    async with trio_mona.open_runtime(folder, settings={"HTTP.port": "0"}) as rt:
        port = http_port(rt)
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        await sock.connect(("127.0.0.1", port))
        stream = trio.SocketStream(sock)
        async with stream:
            await stream.send_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            await trio.sleep(0.3)  # (the reader lags: the server must wait, not buffer)
            unsent = rt.statistics().bytes_unsent
            assert unsent < 4 * 1024 * 1024
            # Meanwhile the executor serves others.
            assert (await get(port, "/page.txt")).body == b"a page\n"
            assert await lua(rt, "return 1 + 1") == 2
            received = bytearray()
            with trio.fail_after(20):
                while len(received) < size + 100:
                    chunk = await stream.receive_some(1 << 20)
                    received += chunk
                    head, sep, body = bytes(received).partition(b"\r\n\r\n")
                    if sep and len(body) >= size:
                        break
            assert b"Content-Length: 25165824" in head
            assert body == content
            await stream.send_all(b"GET /page.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(5):
                tail = await stream.receive_some(65536)
            assert tail.endswith(b"a page\n")
