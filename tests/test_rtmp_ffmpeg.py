"""RTMP with Debian's ffmpeg as the encoder and the player (``.ci/run`` installs it):
a generated H.264 + AAC stream published, played back before and after the publisher
starts, both codecs found by ffprobe in what was received; the Lua side sees the
clients (docs/clients/rtmp.rst)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import trio_mona

from .helpers import lua, lua_until, write_app

pytestmark = pytest.mark.slow  # (starts ffmpeg processes)

FFMPEG = shutil.which("ffmpeg")
EXAMPLE = Path(__file__).resolve().parent.parent / "lua_apps" / "live"
FFPROBE = shutil.which("ffprobe")

LIVE = """
log = {}
function onConnection(client, ...)
  log[#log + 1] = client.protocol .. " " .. client.path .. " " .. tostring(client.app)
end
function onDisconnection(client) log[#log + 1] = "bye" end
"""


def _rtmp_port(runtime: trio_mona.Runtime) -> int:
    return next(a.port for a in runtime.bound_addresses if a.kind == "rtmp")


def _publish(port: int, seconds: float, name: str = "cam") -> list[str]:
    return [
        str(FFMPEG), "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
        "-c:a", "aac", "-t", str(seconds), "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{name}",
    ]  # fmt: skip


def _play(port: int, seconds: float, out: Path, *extra: str) -> list[str]:
    return [str(FFMPEG), "-hide_banner", "-loglevel", "error", *extra,
            "-i", f"rtmp://127.0.0.1:{port}/live/cam", "-t", str(seconds), "-c", "copy", "-y",
            str(out)]  # fmt: skip


def _codecs(path: Path) -> set[str]:
    found = subprocess.run(
        [str(FFPROBE), "-hide_banner", "-loglevel", "error", "-show_entries",
         "stream=codec_name", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(found.stdout.split())


async def _run(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    if FFMPEG is None or FFPROBE is None:
        pytest.fail("the RTMP tests need Debian's ffmpeg (.ci/run installs it)")
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", LIVE)
    return folder


async def test_ffmpeg_publishes_and_plays_back(apps: Path, tmp_path: Path) -> None:
    async with trio_mona.open_runtime(apps, settings={"RTMP.port": "0"}, data=":memory:") as rt:
        port = _rtmp_port(rt)
        results: dict[str, subprocess.CompletedProcess[bytes]] = {}

        async def run(key: str, command: list[str]) -> None:
            results[key] = await _run(command)

        async with trio.open_nursery() as nursery:
            # A player started before the publisher waits for it; one after joins it.
            nursery.start_soon(run, "early", _play(port, 2, tmp_path / "early.flv"))
            await trio.sleep(0.5)
            nursery.start_soon(run, "publisher", _publish(port, 5))
            await trio.sleep(2)
            nursery.start_soon(
                run, "late", _play(port, 2, tmp_path / "late.flv", "-rtmp_live", "live")
            )
        for key, result in results.items():
            assert result.returncode == 0, (key, result.stderr.decode())
        assert _codecs(tmp_path / "early.flv") == {"h264", "aac"}
        assert _codecs(tmp_path / "late.flv") == {"h264", "aac"}
        await lua_until(rt, "return #live.log == 6")
        entries = sorted((await lua(rt, "return table.concat(live.log, ',')")).decode().split(","))
        assert entries == ["RTMP /live live"] * 3 + ["bye"] * 3


async def test_a_name_in_use_cannot_be_published(apps: Path) -> None:
    async with trio_mona.open_runtime(apps, settings={"RTMP.port": "0"}, data=":memory:") as rt:
        port = _rtmp_port(rt)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_run, _publish(port, 4))
            await trio.sleep(1.5)
            second = await _run(_publish(port, 1))
        assert second.returncode != 0
        assert b"Server error: cam is already published" in second.stderr


async def test_a_missing_application_is_rejected(apps: Path) -> None:
    async with trio_mona.open_runtime(apps, settings={"RTMP.port": "0"}, data=":memory:") as rt:
        port = _rtmp_port(rt)
        command = _publish(port, 1)
        command[-1] = f"rtmp://127.0.0.1:{port}/nowhere/cam"
        refused = await _run(command)
        assert refused.returncode != 0
        assert b"Server error: Application /nowhere doesn't exist" in refused.stderr


async def test_an_error_in_onconnection_rejects_with_its_message(tmp_path: Path) -> None:
    if FFMPEG is None:
        pytest.fail("the RTMP tests need Debian's ffmpeg (.ci/run installs it)")
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", "function onConnection() error('no publishing today') end")
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}, data=":memory:") as rt:
        refused = await _run(_publish(_rtmp_port(rt), 1))
        assert refused.returncode != 0
        assert b"main.lua:1: no publishing today" in refused.stderr


GATED = """
log = {}
function onConnection(client)
  function client:onPublish(publication)
    log[#log + 1] = "publish " .. publication.name
    if publication.name == "secret" then error("no publishing of secrets") end
    if publication.name == "nope" then return false end
  end
  function client:onUnpublish(publication) log[#log + 1] = "unpublish " .. publication.name end
  function client:onSubscribe(listener) log[#log + 1] = "subscribe " .. listener.name end
  function client:onUnsubscribe(listener) log[#log + 1] = "unsubscribe " .. listener.name end
end
"""


async def test_onpublish_refuses_with_its_message(tmp_path: Path) -> None:
    if FFMPEG is None:
        pytest.fail("the RTMP tests need Debian's ffmpeg (.ci/run installs it)")
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", GATED)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}, data=":memory:") as rt:
        port = _rtmp_port(rt)
        secret = await _run(_publish(port, 1, "secret"))
        assert secret.returncode != 0
        assert b"main.lua:6: no publishing of secrets" in secret.stderr
        nope = await _run(_publish(port, 1, "nope"))
        assert b"Not allowed to publish nope" in nope.stderr
        fine = await _run(_publish(port, 1, "cam"))
        assert fine.returncode == 0, fine.stderr.decode()
        await lua_until(rt, "return #live.log == 4")
        assert await lua(rt, "return table.concat(live.log, ',')") == (
            b"publish secret,publish nope,publish cam,unpublish cam"
        )


async def test_http_flv_plays_a_publication(apps: Path, tmp_path: Path) -> None:
    settings = {"RTMP.port": "0", "HTTP.port": "0"}
    async with trio_mona.open_runtime(apps, settings=settings, data=":memory:") as rt:
        port = _rtmp_port(rt)
        http = next(a.port for a in rt.bound_addresses if a.kind == "http")
        out = tmp_path / "http.flv"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_run, _publish(port, 4))
            await trio.sleep(1.5)
            played = await _run([str(FFMPEG), "-hide_banner", "-loglevel", "error", "-i",
                                 f"http://127.0.0.1:{http}/live/cam.flv", "-t", "2", "-c", "copy",
                                 "-y", str(out)])  # fmt: skip
        assert played.returncode == 0, played.stderr.decode()
        assert _codecs(out) == {"h264", "aac"}


async def test_the_live_example(tmp_path: Path) -> None:
    if FFMPEG is None:
        pytest.fail("the RTMP tests need Debian's ffmpeg (.ci/run installs it)")
    example = EXAMPLE
    settings = {"RTMP.port": "0", "HTTP.port": "0"}
    async with trio_mona.open_runtime(example, settings=settings, data=":memory:") as rt:
        port = _rtmp_port(rt)
        http = next(a.port for a in rt.bound_addresses if a.kind == "http")
        refused = await _run(_publish(port, 1, "cam?token=wrong"))
        assert b"a token is needed to publish cam" in refused.stderr
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_run, _publish(port, 3, "cam?token=secret"))
            await trio.sleep(1.5)
            stream = await trio.open_tcp_stream("127.0.0.1", http)
            async with stream:
                await stream.send_all(
                    b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                answer = b""
                while chunk := await stream.receive_some(65536):
                    answer += chunk
        assert b'"name":"cam"' in answer


WATCHER = """
counts = { video = 0, audio = 0, keyframes = 0, data = 0 }
function onConnection(client)
  function client:onPublish(publication)
    function publication:onVideo(time, packet)
      counts.video = counts.video + 1
      if packet:byte(1) == 0x17 then counts.keyframes = counts.keyframes + 1 end
    end
    function publication:onAudio(time, packet) counts.audio = counts.audio + 1 end
    function publication:onData(time, data) counts.data = counts.data + 1 end
  end
end
"""


async def test_a_publications_media_events(tmp_path: Path) -> None:
    if FFMPEG is None:
        pytest.fail("the RTMP tests need Debian's ffmpeg (.ci/run installs it)")
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", WATCHER)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}, data=":memory:") as rt:
        published = await _run(_publish(_rtmp_port(rt), 2))
        assert published.returncode == 0, published.stderr.decode()
        video, audio, keys, data = await lua(
            rt, "local c = live.counts return c.video, c.audio, c.keyframes, c.data"
        )
        assert video >= 40  # (25 frames a second, 2 s, the AVC header too)
        assert audio >= 40
        assert keys >= 2
        assert data == 1  # (@setDataFrame onMetaData)


async def test_an_http_flv_player_waits_for_the_publication(apps: Path, tmp_path: Path) -> None:
    settings = {"RTMP.port": "0", "HTTP.port": "0", "HTTP.timeout": "10"}
    async with trio_mona.open_runtime(apps, settings=settings, data=":memory:") as rt:
        port = _rtmp_port(rt)
        http = next(a.port for a in rt.bound_addresses if a.kind == "http")
        out = tmp_path / "early-http.flv"
        results: dict[str, subprocess.CompletedProcess[bytes]] = {}

        async def play() -> None:
            results["play"] = await _run([
                str(FFMPEG), "-hide_banner", "-loglevel", "error", "-i",
                f"http://127.0.0.1:{http}/live/cam.flv", "-t", "2", "-c", "copy", "-y", str(out),
            ])  # fmt: skip

        async with trio.open_nursery() as nursery:
            nursery.start_soon(play)
            await trio.sleep(1)  # (the player first: it waits)
            nursery.start_soon(_run, _publish(port, 4))
        assert results["play"].returncode == 0, results["play"].stderr.decode()
        assert _codecs(out) == {"h264", "aac"}


async def test_an_http_flv_player_with_no_publication_gets_404(apps: Path) -> None:
    settings = {"RTMP.port": "0", "HTTP.port": "0", "HTTP.timeout": "0.3"}
    async with trio_mona.open_runtime(apps, settings=settings, data=":memory:") as rt:
        http = next(a.port for a in rt.bound_addresses if a.kind == "http")
        stream = await trio.open_tcp_stream("127.0.0.1", http)
        async with stream:
            await stream.send_all(b"GET /live/nothing.flv HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 404 ")
        assert b"No publication nothing within 0.3 s" in answer


async def test_the_live_examples_udp_ingest(tmp_path: Path) -> None:
    """An FLV file made by ffmpeg, sent by the example's send_flv.py to its UDP ingest,
    played by ffmpeg over RTMP: both codecs arrive."""
    if FFMPEG is None or FFPROBE is None:
        pytest.fail("the RTMP tests need Debian's ffmpeg (.ci/run installs it)")
    source, out = tmp_path / "source.flv", tmp_path / "from-udp.flv"
    made = await _run([
        str(FFMPEG), "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-t", "4",
        "-y", str(source),
    ])  # fmt: skip
    assert made.returncode == 0, made.stderr.decode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # (a free port)
        probe.bind(("127.0.0.1", 0))
        udp = probe.getsockname()[1]
    settings = {"RTMP.port": "0", "live.udp": str(udp)}
    async with trio_mona.open_runtime(EXAMPLE, settings=settings, data=":memory:") as rt:
        port = _rtmp_port(rt)
        results: dict[str, subprocess.CompletedProcess[bytes]] = {}

        async def play() -> None:
            command = _play(port, 2, out)
            command[command.index(f"rtmp://127.0.0.1:{port}/live/cam")] = (
                f"rtmp://127.0.0.1:{port}/live/udp"
            )
            results["play"] = await _run(command)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(play)  # (it waits for the publication)
                await trio.sleep(0.5)
                sent = await _run([sys.executable, str(EXAMPLE / "send_flv.py"), str(source),
                                   f"127.0.0.1:{udp}"])  # fmt: skip
                assert sent.returncode == 0, sent.stderr.decode()
        assert results["play"].returncode == 0, results["play"].stderr.decode()
        assert _codecs(out) == {"h264", "aac"}
        assert await lua(rt, "return mona.publications.udp.properties.width") == 320
