"""TLS ports: HTTPS and WSS, RTMPS, SNI, certificates reloaded, and the bad cases, over
real loopback sockets with certificates made by trustme (docs/clients/tls.rst)."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trustme

import trio_mona
from trio_mona import StartupError

from .helpers import write_app
from .http_client import HTTPClient
from .websocket_client import WSClient

SITE = """
function onConnection(client)
  function client:who() return client.protocol, client.properties.tls or "plain" end
  function client:echo(value) -- (GET: the query's table; WebSocket: the value)
    if type(value) == "table" then return value.text end
    return value
  end
end
"""


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def certificate_files(
    ca: trustme.CA, folder: Path, *names: str, stem: str = "server"
) -> tuple[Path, Path]:
    """A certificate for *names* signed by *ca*, as ``stem.pem`` and ``stem.key``."""
    folder.mkdir(parents=True, exist_ok=True)
    issued = ca.issue_cert(*(names or ("127.0.0.1", "localhost")))
    pem, key = folder / f"{stem}.pem", folder / f"{stem}.key"
    issued.private_key_pem.write_to_path(str(key))
    pem.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    return pem, key


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def port_of(runtime: trio_mona.Runtime, kind: str) -> int:
    return next(a.port for a in runtime.bound_addresses if a.kind == kind)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = write_app(tmp_path / "apps", SITE)
    write_app(folder / "app", "-- (inherits onConnection)")
    return folder


async def test_https_and_wss_serve_as_http_does(site: Path, tmp_path: Path, ca: trustme.CA) -> None:
    pem, key = certificate_files(ca, tmp_path / "tls")
    settings = {"HTTP.port": "0", "HTTPS.port": "0", "HTTPS.certificate": str(pem),
                "HTTPS.key": str(key)}  # fmt: skip
    async with trio_mona.open_runtime(site, settings=settings, data=":memory:") as rt:
        tls = client_context(ca)
        tls.set_alpn_protocols(["http/1.1"])
        with trio.fail_after(1):  # (the handshake's answers leave at once, not with a tick)
            client = await HTTPClient.open(port_of(rt, "https"), tls=tls)
        async with client:
            answer = await client.request("GET", "/app/who")
            assert answer.status == 200
            assert json.loads(answer.body) == ["HTTP", "TLSv1.3"]
            assert isinstance(client.stream, trio.SSLStream)
            assert client.stream.selected_alpn_protocol() == "http/1.1"
            again = await client.request("GET", "/app/echo?text=again")  # (keep-alive)
            assert json.loads(again.body) == ["again"]
        async with await HTTPClient.open(port_of(rt, "http")) as plain:  # (the plain port)
            assert json.loads((await plain.request("GET", "/app/who")).body) == ["HTTP", "plain"]
        websocket = await WSClient.open(port_of(rt, "https"), "/app/", tls=client_context(ca))
        await websocket.send_text(json.dumps(["who"]))
        assert json.loads(str(await websocket.receive())) == ["WebSocket", "TLSv1.3"]
        big = "x" * 300_000  # (many records both ways)
        await websocket.send_text(json.dumps(["echo", big]))
        assert json.loads(str(await websocket.receive())) == [big]
        await websocket.close()


async def test_a_client_that_is_not_tls_or_never_finishes_is_closed(
    site: Path, tmp_path: Path, ca: trustme.CA
) -> None:
    pem, key = certificate_files(ca, tmp_path / "tls")
    settings = {"HTTPS.port": "0", "HTTPS.certificate": str(pem), "HTTPS.key": str(key),
                "HTTP.timeout": "0.5"}  # fmt: skip
    async with trio_mona.open_runtime(site, settings=settings, data=":memory:") as rt:
        port = port_of(rt, "https")
        with trio.fail_after(5):
            plain = await trio.open_tcp_stream("127.0.0.1", port)
            await plain.send_all(b"GET /app/who HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await plain.receive_some(1000) == b""  # (closed: not TLS)
            silent = await trio.open_tcp_stream("127.0.0.1", port)  # (connects, says nothing)
            async with await HTTPClient.open(port, tls=client_context(ca)) as other:
                answer = await other.request("GET", "/app/who")  # (served meanwhile)
                assert json.loads(answer.body) == ["HTTP", "TLSv1.3"]
            assert await silent.receive_some(1000) == b""  # (closed at the timeout)
        wrong = ssl.create_default_context()  # (the system's CAs: ours is not among them)
        with pytest.raises(trio.BrokenResourceError):
            await HTTPClient.open(port, tls=wrong)


async def test_curl_gets_a_page_over_https(site: Path, tmp_path: Path, ca: trustme.CA) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("the TLS tests need curl (.ci/run installs it)")
    pem, key = certificate_files(ca, tmp_path / "tls")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    settings = {"HTTPS.port": "0", "HTTPS.certificate": str(pem), "HTTPS.key": str(key)}
    async with trio_mona.open_runtime(site, settings=settings, data=":memory:") as rt:
        url = f"https://127.0.0.1:{port_of(rt, 'https')}/app/echo?text=curl"
        done = await trio.run_process([curl, "-sS", "--cacert", str(tmp_path / "ca.pem"), url],
                                      capture_stdout=True, capture_stderr=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout) == ["curl"]
        refused = await trio.run_process([curl, "-sS", url], capture_stdout=True,
                                         capture_stderr=True, check=False)  # fmt: skip
        assert refused.returncode == 60  # (curl: the certificate cannot be verified)


async def test_sni_chooses_the_certificate_of_the_name_asked_for(
    site: Path, tmp_path: Path, ca: trustme.CA
) -> None:
    folder = tmp_path / "names"
    certificate_files(ca, folder, "a.test", stem="a.test")
    certificate_files(ca, folder, "b.test", stem="b.test")
    settings = {"HTTPS.port": "0", "HTTPS.certificates": str(folder)}
    async with trio_mona.open_runtime(site, settings=settings, data=":memory:") as rt:
        port = port_of(rt, "https")
        for name in ("a.test", "b.test"):
            async with await HTTPClient.open(port, tls=client_context(ca),
                                             server_hostname=name) as client:  # fmt: skip
                assert isinstance(client.stream, trio.SSLStream)
                certificate = client.stream.getpeercert()
                assert [value for _, value in certificate["subjectAltName"]] == [name]
                assert (await client.request("GET", "/app/who")).status == 200


async def test_certificates_are_reloaded_and_a_bad_set_keeps_the_old(
    site: Path, tmp_path: Path, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    pem, key = certificate_files(ca, tmp_path / "tls")
    settings = {"HTTPS.port": "0", "HTTPS.certificate": str(pem), "HTTPS.key": str(key)}
    async with trio_mona.open_runtime(site, settings=settings, data=":memory:") as rt:
        port = port_of(rt, "https")
        other_ca = trustme.CA()
        async with await HTTPClient.open(port, tls=client_context(ca)) as kept:
            certificate_files(other_ca, tmp_path / "tls")  # (the files replaced)
            rt.reload_certificates()
            # An open connection keeps its session; a new one gets the new certificate.
            assert (await kept.request("GET", "/app/who")).status == 200
            async with await HTTPClient.open(port, tls=client_context(other_ca)) as new:
                assert (await new.request("GET", "/app/who")).status == 200
        pem.write_text("not a certificate")
        with caplog.at_level(logging.ERROR, logger="trio_mona"):
            rt.reload_certificates()
        assert (
            f"HTTPS: the certificates were not reloaded (the old ones stay): {pem}" in caplog.text
        )
        async with await HTTPClient.open(port, tls=client_context(other_ca)) as still:
            assert (await still.request("GET", "/app/who")).status == 200


async def test_a_bad_certificate_stops_the_start_naming_the_file(
    site: Path, tmp_path: Path
) -> None:
    pem = tmp_path / "broken.pem"
    pem.write_text("not a certificate")
    settings = {"HTTPS.port": "0", "HTTPS.certificate": str(pem), "HTTPS.key": str(pem)}
    with pytest.raises(StartupError, match=rf"HTTPS: {pem} with {pem}: "):
        async with trio_mona.open_runtime(site, settings=settings, data=":memory:"):
            pass
    missing = {"RTMPS.port": "0", "RTMPS.certificate": str(tmp_path / "none.pem"),
               "RTMPS.key": str(pem)}  # fmt: skip
    with pytest.raises(StartupError, match=rf"RTMPS: {tmp_path / 'none.pem'}: no such file"):
        async with trio_mona.open_runtime(site, settings=missing, data=":memory:"):
            pass
    with pytest.raises(StartupError, match=r"HTTPS\.port needs HTTPS\.certificate"):
        async with trio_mona.open_runtime(site, settings={"HTTPS.port": "0"}, data=":memory:"):
            pass


@pytest.mark.slow  # (starts ffmpeg processes)
async def test_ffmpeg_publishes_over_rtmps_and_plays_over_https(
    site: Path, tmp_path: Path, ca: trustme.CA
) -> None:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        pytest.fail("the RTMPS test needs Debian's ffmpeg (.ci/run installs it)")
    pem, key = certificate_files(ca, tmp_path / "tls")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    write_app(site / "live", "-- (inherits onConnection)")
    settings = {"RTMPS.port": "0", "RTMPS.certificate": str(pem), "RTMPS.key": str(key),
                "HTTPS.port": "0", "HTTPS.certificate": str(pem), "HTTPS.key": str(key)}  # fmt: skip
    verify = ["-tls_verify", "1", "-ca_file", str(tmp_path / "ca.pem")]
    async with trio_mona.open_runtime(site, settings=settings, data=":memory:") as rt:
        rtmps, https = port_of(rt, "rtmps"), port_of(rt, "https")
        out = tmp_path / "over-https.flv"
        results: dict[str, subprocess.CompletedProcess[bytes]] = {}

        async def run(name: str, command: list[str]) -> None:
            results[name] = await trio.run_process(command, capture_stdout=True,
                                                   capture_stderr=True, check=False)  # fmt: skip

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, "publish", [
                    ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
                    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "25", "-c:a", "aac", "-t", "4", "-f", "flv", *verify,
                    f"rtmps://127.0.0.1:{rtmps}/live/cam",
                ])  # fmt: skip
                await trio.sleep(1.5)
                nursery.start_soon(run, "play", [
                    ffmpeg, "-hide_banner", "-loglevel", "error", *verify,
                    "-i", f"https://127.0.0.1:{https}/live/cam.flv", "-t", "1.5", "-c", "copy",
                    "-y", str(out),
                ])  # fmt: skip
        assert results["publish"].returncode == 0, results["publish"].stderr.decode()
        assert results["play"].returncode == 0, results["play"].stderr.decode()
        probe = await trio.run_process([ffprobe, "-v", "error", "-show_entries",
                                        "stream=codec_name", "-of", "csv=p=0", str(out)],
                                       capture_stdout=True)  # fmt: skip
        assert set(probe.stdout.decode().split()) == {"h264", "aac"}


async def test_certificates_whose_files_change_are_reloaded(
    site: Path, tmp_path: Path, ca: trustme.CA
) -> None:
    pem, key = certificate_files(ca, tmp_path / "tls")
    settings = {"HTTPS.port": "0", "HTTPS.certificate": str(pem), "HTTPS.key": str(key),
                "trio_mona.reload_interval": "0.1"}  # fmt: skip
    async with trio_mona.open_runtime(site, settings=settings, data=":memory:") as rt:
        port = port_of(rt, "https")
        other_ca = trustme.CA()
        certificate_files(other_ca, tmp_path / "tls")
        with trio.fail_after(5):
            while True:  # (until the watcher has read the new files)
                try:
                    client = await HTTPClient.open(port, tls=client_context(other_ca))
                except trio.BrokenResourceError:
                    await trio.sleep(0.05)
                    continue
                async with client:
                    assert (await client.request("GET", "/app/who")).status == 200
                break


@pytest.mark.slow  # (starts a trio-mona process)
def test_sighup_reloads_the_certificates(site: Path, tmp_path: Path, ca: trustme.CA) -> None:
    pem, key = certificate_files(ca, tmp_path / "tls")
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_mona", "run", str(site), "--https", "0", "--certificate",
         str(pem), "--key", str(key), "--set", "trio_mona.reload_interval=0", "--data",
         ":memory:"],
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = ""
        while "HTTPS: serving on 127.0.0.1:" not in line:
            line = process.stderr.readline()
            assert line, "the runtime ended before it listened"
        port = int(line.rsplit(":", 1)[1])
        other_ca = trustme.CA()
        certificate_files(other_ca, tmp_path / "tls")
        process.send_signal(signal.SIGHUP)
        while "HTTPS: certificates reloaded" not in line:
            line = process.stderr.readline()
            assert line, "the runtime ended"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            context = client_context(other_ca)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as secure:
                assert secure.version() == "TLSv1.3"
    finally:
        process.terminate()
        process.wait(timeout=10)
