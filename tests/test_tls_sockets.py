"""TLS for Lua's TCP sockets: ``client:connect(host, port, {tls = true, ...})`` and
``server:start(address, {certificate =, key =})``, against Python's ``ssl`` over real
loopback sockets, with certificates made by trustme (docs/lua/tcp.rst, "TLS")."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme

from .helpers import lua, lua_until, running
from .test_tls import certificate_files, client_context

CLIENT = """
client = mona:createTCPClient()
received, closed_with = "", nil
function client:onData(data) received = received .. data end
function client:onDisconnection() closed_with = self.error or "clean" end
"""


async def tls_echo_server(ca: trustme.CA, folder: Path,
                          task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
    """A TLS echo server on Python's ssl (trio.SSLStream), with a certificate of *ca*
    for 127.0.0.1; it answers ``name:`` with the name the client asked for (SNI)."""
    pem, key = certificate_files(ca, folder, "127.0.0.1", "echo.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem, key)
    asked: list[str | None] = []  # (one client at a time: the last name is its)
    context.sni_callback = lambda connection, name, _: asked.append(name)

    async def echo(stream: trio.SocketStream) -> None:
        secure = trio.SSLStream(stream, context, server_side=True)
        try:
            async for data in secure:
                if data == b"name?":
                    await secure.send_all(f"name:{asked[-1]}".encode())
                else:
                    await secure.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(echo, listeners)


async def test_a_lua_client_speaks_tls_and_verifies(tmp_path: Path, ca: trustme.CA) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(tls_echo_server, ca, tmp_path / "server")
        async with running(tmp_path, CLIENT) as rt:
            await lua(
                rt, f'client:connect("127.0.0.1", {port}, {{tls = true, ca = "{tmp_path}/ca.pem"}})'
            )
            await lua(rt, 'client:send("hello over TLS")')
            await lua_until(rt, 'return received == "hello over TLS"')
            assert await lua(rt, "return client.connected") is True
            await lua(rt, "client:disconnect()")
            await lua_until(rt, "return closed_with ~= nil")
            # The system's CAs do not know ours: the handshake fails, onDisconnection says why.
            await lua(rt, 'received, closed_with = "", nil')
            await lua(rt, f'client:connect("127.0.0.1:{port}", {{tls = true}})')
            await lua_until(rt, "return closed_with ~= nil")
            why = await lua(rt, "return closed_with")
            assert why.startswith(b"TLS: certificate verify failed: ")
            # verify = false: no check; sni: the name asked for.
            await lua(rt, "closed_with = nil")
            await lua(
                rt,
                f'client:connect("127.0.0.1", {port}, {{tls = true, verify = false, sni = "echo.test"}})',
            )
            await lua(rt, 'client:send("name?")')
            await lua_until(rt, 'return received == "name:echo.test"')
            await lua(rt, "client:disconnect()")
        nursery.cancel_scope.cancel()


async def test_bad_tls_options_are_refused_by_name(tmp_path: Path) -> None:
    async with running(tmp_path, CLIENT) as rt:
        errors = await lua(
            rt,
            """
          local a = select(2, pcall(client.connect, client, "127.0.0.1", 1, {tls = true, verfy = false}))
          local b = select(2, pcall(client.connect, client, "127.0.0.1", 1, {tls = "yes"}))
          local c = client:connect("127.0.0.1", 1, {tls = true, ca = "/nonexistent/ca.pem"})
          return a, b, c
        """,
        )
        assert errors[0].endswith(b"bad option 'verfy' to 'connect'")
        assert errors[1].endswith(b"bad option 'tls' to 'connect' (boolean expected, got string)")
        assert errors[2].startswith(b"TLS: cannot use the CA file /nonexistent/ca.pem: ")


SERVER = """
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data) client:send("echo:" .. data) end
end
"""


async def test_a_lua_server_serves_tls(tmp_path: Path, ca: trustme.CA) -> None:
    pem, key = certificate_files(ca, tmp_path / "tls")
    async with running(tmp_path, SERVER) as rt:
        ok = await lua(
            rt, f'return server:start("127.0.0.1", 0, {{certificate = "{pem}", key = "{key}"}})'
        )
        assert ok is True
        port = await lua(rt, "return server.port")
        stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), client_context(ca),
                                server_hostname="127.0.0.1")  # fmt: skip
        with trio.fail_after(5):
            await stream.send_all(b"hi")
            assert await stream.receive_some(100) == b"echo:hi"
        await stream.aclose()
        await lua(rt, "server:stop()")
        refused = await lua(rt, f'return server:start("127.0.0.1", 0, {{certificate = "{pem}"}})')
        assert refused is False
        missing = await lua(
            rt, 'return server:start("127.0.0.1", 0, {certificate = "/no.pem", key = "/no.key"})'
        )
        assert missing is False


async def test_sandboxed_apps_name_only_the_tls_files_the_configuration_names(
    tmp_path: Path, ca: trustme.CA
) -> None:
    pem, key = certificate_files(ca, tmp_path / "tls")
    settings = {"trio_mona__sandbox": "true", "site__certificate": str(pem), "site__key": str(key)}
    async with running(tmp_path, CLIENT + SERVER, **settings) as rt:
        refused = await lua(
            rt,
            'return client:connect("127.0.0.1", 1, {tls = true, ca = "/etc/ssl/certs/ca-certificates.crt"})',
        )
        assert (
            refused
            == b"TLS: /etc/ssl/certs/ca-certificates.crt is not named by the configuration (sandbox mode)"
        )
        assert (
            await lua(rt, 'return server:start("127.0.0.1", 0, {certificate = "a", key = "b"})')
            is False
        )
        started = await lua(
            rt,
            """return server:start("127.0.0.1", 0, {
          certificate = mona.configs["site.certificate"], key = mona.configs["site.key"]})""",
        )
        assert started is True
        port = await lua(rt, "return server.port")
        stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), client_context(ca),
                                server_hostname="127.0.0.1")  # fmt: skip
        with trio.fail_after(5):
            await stream.send_all(b"sandboxed")
            assert await stream.receive_some(100) == b"echo:sandboxed"
        await stream.aclose()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def test_what_waits_for_the_handshake_counts_against_the_limits(tmp_path: Path) -> None:
    """A peer that never answers the handshake: sends wait for it, within the hard
    limit like queued bytes (not held without bound)."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    app = (
        CLIENT
        + f"""
    assert(client:connect("127.0.0.1", {port}, {{tls = true, verify = false}}) == nil)
    function fill()
      local chunk = string.rep("x", 65536)
      for i = 1, 100 do
        local err = client:send(chunk)
        if err then return i, err end
      end
      return 0
    end
    """
    )
    settings = {"trio_mona__soft_limit": "65536", "trio_mona__hard_limit": "524288"}
    async with running(tmp_path, app, **settings) as rt:
        peer, _ = await listener.accept()  # (it reads nothing, answers nothing)
        await lua_until(rt, "return client.connected")
        failed_at, error = await lua(rt, "return fill()")
        assert 1 < failed_at <= 9
        assert b"send queue full" in error
        peer.close()
    listener.close()


def written(issued: trustme.LeafCert, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pem, key = folder / "bad.pem", folder / "bad.key"
    issued.private_key_pem.write_to_path(str(key))
    pem.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    return pem, key


async def tls_server_with(issued: trustme.LeafCert, folder: Path,
                          task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
    """A TLS server with the certificate *issued* (that accepts and says nothing)."""
    pem, key = await trio.to_thread.run_sync(written, issued, folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem, key)

    async def hold(stream: trio.SocketStream) -> None:
        secure = trio.SSLStream(stream, context, server_side=True)
        try:
            await secure.do_handshake()
            await secure.receive_some(100)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(hold, listeners)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("expired", b"TLS: certificate verify failed: certificate has expired"),
     ("wrong host", b"TLS: certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'.")],
)  # fmt: skip
async def test_an_expired_or_misnamed_certificate_is_refused(
    tmp_path: Path, ca: trustme.CA, kind: str, reason: bytes
) -> None:
    import datetime

    if kind == "expired":
        past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
        issued = ca.issue_cert("127.0.0.1", not_before=past - datetime.timedelta(days=2),
                               not_after=past)  # fmt: skip
    else:
        issued = ca.issue_cert("other.test")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(tls_server_with, issued, tmp_path / "server")
        async with running(tmp_path, CLIENT) as rt:
            await lua(
                rt, f'client:connect("127.0.0.1", {port}, {{tls = true, ca = "{tmp_path}/ca.pem"}})'
            )
            await lua_until(rt, "return closed_with ~= nil")
            assert await lua(rt, "return closed_with") == reason
        nursery.cancel_scope.cancel()
