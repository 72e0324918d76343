"""LuaSec's ``require "ssl"`` over trio_mona's LuaSocket, against Python's ``ssl`` over
real loopback sockets, certificates by trustme (docs/lua/luasec.rst)."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest
import trio
import trustme

import trio_mona

from .helpers import lua, lua_until, running
from .test_luasocket_compat import PROLOGUE, integers
from .test_tls import certificate_files, client_context
from .test_tls_sockets import tls_echo_server

CLIENT = """
ssl = require "ssl"
socket = require "socket"
function exchange(port, params, sni)
  log = {}
  local sock = assert(socket.tcp())
  assert(sock:connect("127.0.0.1", port))
  local conn, err = ssl.wrap(sock, params)
  if not conn then log.wrap = err return end
  if sni then conn:sni(sni) end
  local ok, why = conn:dohandshake()
  log.handshake = tostring(ok) .. " " .. tostring(why)
  if not ok then conn:close() return end
  log.sent = conn:send(sni and "name?" or "hello\\n")
  log.line = conn:receive(sni and #("name:" .. sni) or "*l")
  log.verified = conn:getpeerverification()
  local cert = conn:getpeercertificate()
  log.pem = cert and cert:pem():sub(1, 27)
  local subject = cert and cert:subject() or {}
  log.subject = subject[1] and (subject[1].name .. "=" .. subject[1].value) or "none"
  log.notafter = cert and cert:notafter()
  log.tostring = tostring(conn):match("^SSL connection: ") ~= nil
  log.spent = select(2, sock:receive()) == "closed"
  conn:close()
end
"""


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def test_a_luasocket_script_speaks_tls_through_luasec(tmp_path: Path, ca: trustme.CA) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(tls_echo_server, ca, tmp_path / "server")
        async with running(tmp_path, CLIENT) as rt:
            params = f'{{mode = "client", protocol = "any", verify = "peer", cafile = "{tmp_path}/ca.pem"}}'
            await lua(rt, f"coroutine.wrap(exchange)({port}, {params})")
            await lua_until(rt, "return log.line ~= nil or log.handshake == 'false closed'")
            found = await lua(rt, "return log.handshake, log.sent, log.line, log.verified, log.pem, "
                                  "log.subject, log.tostring, log.spent")  # fmt: skip
            assert found[:5] == (b"true nil", 6, b"hello", True, b"-----BEGIN CERTIFICATE-----")
            assert found[5].startswith(b"organizationName=trustme")  # (the server's subject)
            assert found[6:] == (True, True)  # (its tostring; the wrapped socket is spent)
            # The system's CAs do not know ours: dohandshake fails with the reason.
            await lua(rt, f'coroutine.wrap(exchange)({port}, {{mode = "client", verify = "peer"}})')
            await lua_until(rt, "return log.handshake ~= nil")
            why = await lua(rt, "return log.handshake")
            assert why == b"false certificate verify failed"
            # verify "none": no check, and no verified fields; sni names the server.
            await lua(
                rt,
                f'coroutine.wrap(exchange)({port}, {{mode = "client", verify = "none"}}, "echo.test")',
            )
            await lua_until(rt, "return log.line ~= nil")
            assert await lua(rt, "return log.line, log.verified, log.subject") == (
                b"name:echo.test",
                False,
                b"none",
            )
        nursery.cancel_scope.cancel()


SCRIPTS = Path(__file__).parent / "luasec_scripts"


def _real_luasec() -> None:
    """Fail (not skip: CI installs them) unless the real LuaSocket and LuaSec are here."""
    if shutil.which("lua5.4") is None:
        pytest.fail("the comparison needs lua5.4, lua-socket and lua-sec (.ci/run installs them)")


@pytest.mark.parametrize("engine", ["lua54", "luajit21"])
@pytest.mark.parametrize("name", sorted(p.stem for p in SCRIPTS.glob("*.lua")))
async def test_same_output_as_the_real_luasec(
    name: str, engine: str, tmp_path: Path, ca: trustme.CA
) -> None:
    _real_luasec()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(tls_echo_server, ca, tmp_path / "server")
        globals_ = f'PORT = {port}\nCAFILE = "{tmp_path}/ca.pem"\n'
        script = SCRIPTS / f"{name}.lua"
        source = PROLOGUE + globals_ + script.read_text()
        real = await trio.run_process(
            ["lua5.4", "-"], stdin=(source + "\nprint(table.concat(OUTPUT, '\\n'))\n").encode(),
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
        assert real.returncode == 0, real.stderr.decode()
        expected = real.stdout.decode().splitlines()
        assert len(expected) > 10  # (the script ran to its end under lua5.4)
        apps = tmp_path / "apps"
        apps.mkdir()
        (apps / "main.lua").write_text(source + "\nDONE = true\n")
        async with trio_mona.open_runtime(apps, data=":memory:", engine=engine) as rt:
            await lua_until(rt, "return DONE", 20)
            ours = await lua(rt, "return table.concat(OUTPUT, '\\n')")
        found = ours.decode().splitlines()
        if engine == "luajit21":  # (LuaJIT writes whole floats without ".0")
            found, expected = integers(found), integers(expected)
        pairs = zip(found, expected, strict=False)
        assert found == expected, "\n".join(f"{a!r} | {b!r}" for a, b in pairs)
        nursery.cancel_scope.cancel()


SERVER = """
ssl = require "ssl"
socket = require "socket"
function serve(certificate, key)
  local server = assert(socket.bind("127.0.0.1", 0))
  port = select(2, server:getsockname())
  local client = server:accept()
  local conn = assert(ssl.wrap(client, {mode = "server", protocol = "any",
    certificate = certificate, key = key}))
  handshake = conn:dohandshake()
  local line = conn:receive("*l")
  conn:send("echo:" .. line .. "\\n")
  conn:close()
  server:close()
  done = true
end
"""


async def test_a_luasocket_server_serves_tls_through_luasec(tmp_path: Path, ca: trustme.CA) -> None:
    pem, key = certificate_files(ca, tmp_path / "tls")
    async with running(tmp_path, SERVER) as rt:
        await lua(rt, f'coroutine.wrap(serve)("{pem}", "{key}")')
        await lua_until(rt, "return port ~= nil")
        port = await lua(rt, "return port")
        stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", int(port)),
                                client_context(ca), server_hostname="127.0.0.1")  # fmt: skip
        with trio.fail_after(5):
            await stream.send_all(b"hi\n")
            assert await stream.receive_some(100) == b"echo:hi\n"
        await lua_until(rt, "return done")
        assert await lua(rt, "return handshake") is True


HTTPS_SCRIPT = """
local https = require "ssl.https"
local parts = {}
local ok, code, headers, status = https.request{
  url = URL, cafile = CAFILE, verify = "peer", protocol = "any",
  method = "POST", headers = {["content-type"] = "application/json", ["content-length"] = "13"},
  source = (function() local sent = false return function()
    if sent then return nil end sent = true return '["sum", 2, 3]' end end)(),
  sink = function(chunk) if chunk then parts[#parts + 1] = chunk end return 1 end,
}
emit(ok, code, headers and headers["content-type"], status)
emit(table.concat(parts))
parts = {}
local ok2, code2, headers2 = https.request{url = URL .. "file.txt", cafile = CAFILE,
  verify = "peer", sink = function(chunk) if chunk then parts[#parts + 1] = chunk end return 1 end}
emit(ok2, code2, headers2["content-length"], (table.concat(parts):gsub("\\n", "|")))
"""

SITE = """
function onConnection(client)
  function client:sum(a, b) return { sum = a + b } end
end
"""


async def test_https_request_as_the_real_luasec_makes_it(tmp_path: Path, ca: trustme.CA) -> None:
    _real_luasec()
    pem, key = certificate_files(ca, tmp_path / "tls")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "app").mkdir()
    (apps / "app" / "main.lua").write_text("-- (inherits onConnection)")
    (apps / "app" / "file.txt").write_text("a file\n")
    (apps / "main.lua").write_text(SITE + PROLOGUE)
    settings = {"HTTPS.port": "0", "HTTPS.certificate": str(pem), "HTTPS.key": str(key)}
    async with trio_mona.open_runtime(apps, settings=settings, data=":memory:") as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "https")
        globals_ = f'URL = "https://127.0.0.1:{port}/app/"\nCAFILE = "{tmp_path}/ca.pem"\n'
        real = await trio.run_process(
            ["lua5.4", "-"],
            stdin=(PROLOGUE + globals_ + HTTPS_SCRIPT
                   + "\nprint(table.concat(OUTPUT, '\\n'))\n").encode(),
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
        assert real.returncode == 0, real.stderr.decode()
        expected = real.stdout.decode().splitlines()
        await lua(
            rt, globals_ + "coroutine.wrap(function()\n" + HTTPS_SCRIPT + "\nDONE = true end)()"
        )
        await lua_until(rt, "return DONE")
        ours = (await lua(rt, "return table.concat(OUTPUT, '\\n')")).decode().splitlines()
        assert ours == expected, (ours, expected)
        assert expected[:2] == ["1 200 application/json HTTP/1.1 200 OK", '[{"sum":5}]']
        # Verification is on by default (LuaSec's is off): the system's CAs refuse ours.
        await lua(rt, "coroutine.wrap(function() refused = {require('ssl.https').request("
                      f"'https://127.0.0.1:{port}/app/file.txt')}} end)()")  # fmt: skip
        await lua_until(rt, "return refused ~= nil")
        assert await lua(rt, "return refused[1], refused[2]") == (
            None,
            b"certificate verify failed",
        )


async def test_https_request_reads_a_chunked_body(tmp_path: Path, ca: trustme.CA) -> None:
    """A body in chunks (a server that streams), read whole by https.request."""
    pem, key = certificate_files(ca, tmp_path / "tls")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem, key)

    async def answer(stream: trio.SocketStream) -> None:
        secure = trio.SSLStream(stream, context, server_side=True)
        request = b""
        while b"\r\n\r\n" not in request:
            request += await secure.receive_some(4096)
        await secure.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                              b"X-Seen: " + request.split(b" ", 2)[1] + b"\r\n\r\n"
                              b"5\r\nhello\r\n7\r\n, chunk\r\n0\r\n\r\n")  # fmt: skip
        await secure.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, answer, listeners)
        async with running(tmp_path, "x = 1") as rt:
            await lua(
                rt,
                f"""coroutine.wrap(function()
              local parts = {{}}
              got = {{require("ssl.https").request{{url = "https://127.0.0.1:{port}/a/b?c=d",
                cafile = "{tmp_path}/ca.pem",
                sink = function(chunk) parts[#parts + 1] = chunk return 1 end}}}}
              got.body = table.concat(parts)
            end)()""",
            )
            await lua_until(rt, "return got ~= nil")
            assert await lua(rt, "return got[1], got[2], got[3]['x-seen'], got.body") == (
                1,
                200,
                b"/a/b?c=d",
                b"hello, chunk",
            )
        nursery.cancel_scope.cancel()
