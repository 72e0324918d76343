"""RTMP clients' calls and writers, over real loopback sockets with a client on
trio_mona's own RTMP cores (docs/clients/rtmp.rst)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import trio_mona

from .helpers import lua, lua_until, messages, write_app
from .rtmp_client import RTMPClient

LIVE = """
function onConnection(client, first)
  connected = client.protocol .. " " .. client.path .. " " .. tostring(first) .. " " ..
    tostring(client.flashVer)
  function client:add(a, b) return a + b, "sum" end
  function client:table(t) return { got = t.x, list = { 1, 2 } } end
  function client:boom() error("exploded") end
  function client:answer() client.writer:writeMessage("written") return "returned" end
  function client:push() client.writer:writeInvocation("onPush", 1, "two") end
end
function onDisconnection() disconnected = true end
"""


async def test_calls_and_writers(tmp_path: Path, engine: str) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", LIVE)
    settings = {"RTMP.port": "0"}
    async with trio_mona.open_runtime(folder, settings=settings, engine=engine) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as client:
            name, _, _, info = await client.connect("live", b"first argument")
            assert name == b"_result"
            assert info[b"code"] == b"NetConnection.Connect.Success"
            assert await lua(rt, "return live.connected") == b"RTMP /live first argument test"
            assert await client.call("add", 2.0, 3.0) == [b"_result", 3.0, None, 5.0, b"sum"]
            name, _, _, table = await client.call("table", {"x": "y"})
            assert table == {b"got": b"y", b"list": [1.0, 2.0]}
            failed = await client.call("boom")
            assert failed[0] == b"_error"
            assert failed[3][b"code"] == b"NetConnection.Call.Failed"
            assert failed[3][b"description"].endswith(b"main.lua:7: exploded")
            missing = await client.call("nothing")
            assert missing[3][b"description"] == b"Method 'nothing' not found on application /live"
            # writeMessage answers the call in hand; the return values then go nowhere.
            assert await client.call("answer") == [b"_result", 7.0, None, b"written"]
            await client.send("push", None)
            assert await client.command() == [b"onPush", 0.0, None, 1.0, b"two"]
            assert (await client.command())[0] == b"_result"
        await lua_until(rt, "return live.disconnected")


GATED = """
function onConnection(client)
  function client:onSubscribe(listener)
    if listener.name ~= "open" then error("not for you") end
    seen = tostring(listener) .. " " .. listener.name
  end
end
"""


async def test_onsubscribe_refuses_with_its_message(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", GATED)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as client:
            await client.connect("live")
            name, _, _, stream = await client.call("createStream")
            assert name == b"_result"
            await client.send("play", None, "closed", stream=int(stream))
            status = await client.command()
            assert status[0] == b"onStatus"
            assert status[3][b"code"] == b"NetStream.Play.Failed"
            assert status[3][b"description"].endswith(b"main.lua:4: not for you")
            await client.send("play", None, "open", stream=int(stream))
            codes = [(await client.command())[3][b"code"] for _ in range(2)]
            assert codes == [b"NetStream.Play.Reset", b"NetStream.Play.Start"]
            assert await lua(rt, "return live.seen") == b"Listener(open) open"


PUSHER = """
function onConnection(client)
  function client:start()
    publication = mona:publish("synthetic")
    return publication ~= nil, mona:publish("synthetic") == nil, mona.publications.count,
      mona.publications.synthetic == publication, tostring(publication)
  end
  function client:push()
    publication:pushVideo(0, "\\23\\0\\0\\0\\0header")      -- an AVC sequence header
    publication:pushAudio(0, "\\175\\0config")              -- an AAC configuration
    publication:pushVideo(40, "\\23\\1\\0\\0\\0keyframe")    -- a keyframe
    publication:pushAudio(45, "\\175\\1sound")
    publication:pushVideo(80, "\\39\\1\\0\\0\\0delta")
  end
  function client:stop() publication:close() return publication.running end
end
"""


async def test_an_application_publishes_media_of_its_own(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", PUSHER)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as owner, await RTMPClient.open(port) as player:
            await owner.connect("live")
            started = await owner.call("start")
            assert started[3:] == [True, True, 1.0, True, b"Publication(synthetic)"]
            await player.connect("live")
            _, _, _, stream = await player.call("createStream")
            await player.send("play", None, "synthetic", stream=int(stream))
            await owner.call("push")
            media: list[tuple[int, bytes]] = []
            while len(media) < 5:
                type_id, payload = await player.message()
                if type_id in (8, 9):
                    media.append((type_id, payload))
            assert media == [(9, b"\x17\x00\x00\x00\x00header"), (8, b"\xaf\x00config"),
                             (9, b"\x17\x01\x00\x00\x00keyframe"), (8, b"\xaf\x01sound"),
                             (9, b"\x27\x01\x00\x00\x00delta")]  # fmt: skip
            assert (await owner.call("stop"))[3] is False
            assert await lua(rt, "return mona.publications.count") == 0


FLOOD = """
function onConnection(client)
  function client:start() publication = mona:publish("flood") end
  sent = 0
  function client:push(count)
    local frame = string.rep("f", 5000)
    for _ = 1, count do
      local key = sent % 10 == 0 and "\\23\\1" or "\\39\\1"
      publication:pushVideo(sent * 40, key .. "\\0\\0\\0" .. frame)
      sent = sent + 1
    end
    return publication.droppedFrames
  end
end
"""


async def test_a_slow_listener_drops_frames_and_a_fast_one_gets_all(tmp_path: Path) -> None:
    import socket

    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", FLOOD)
    settings = {"RTMP.port": "0", "trio_mona.soft_limit": "65536"}
    async with trio_mona.open_runtime(folder, settings=settings) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with (
            await RTMPClient.open(port) as owner,
            await RTMPClient.open(port) as fast,
            await RTMPClient.open(port) as slow,
        ):
            slow.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for client in (owner, fast, slow):
                await client.connect("live")
            await owner.call("start")
            for client in (fast, slow):
                _, _, _, stream = await client.call("createStream")
                await client.send("play", None, "flood", stream=int(stream))
                while (await client.command())[3][b"code"] != b"NetStream.Play.Start":
                    pass
            count = 2000  # (10 MB: more than the kernel holds for the slow one)
            async with trio.open_nursery() as nursery:
                received: list[bytes] = []

                async def read_all() -> None:
                    while len(received) < count:
                        type_id, payload = await fast.message()
                        if type_id == 9:
                            received.append(payload)

                nursery.start_soon(read_all)
                for _ in range(count // 10):  # (10 frames a call: the fast one keeps up)
                    answer = await owner.call("push", 10)
            assert received[0][:2] == b"\x17\x01"
            assert len(received) == count  # (the fast one: every frame)
            assert answer[3] > 0  # (the slow one: dropped, counted)


async def test_a_player_that_leaves_is_not_taken_for_one_that_does_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", FLOOD)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0", "HTTP.port": "0"}) as rt:
        rtmp = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        http = next(a.port for a in rt.bound_addresses if a.kind == "http")
        async with await RTMPClient.open(rtmp) as owner:
            await owner.connect("live")
            await owner.call("start")
            player = await trio.open_tcp_stream("127.0.0.1", http)
            await player.send_all(b"GET /live/flood.flv HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            with trio.fail_after(5):
                while not head.endswith(b"\r\n\r\nFLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"):
                    head += await player.receive_some(65536)
            assert head.startswith(b"HTTP/1.1 200 ")
            await player.aclose()  # (it leaves, all read: the next writes meet its end)
            with trio.fail_after(5):
                while await lua(rt, "return mona.publications.flood.listeners.count") > 0:
                    await owner.call("push", 10)
        assert not [m for m in messages(caplog) if "does not read" in m]


CHOOSY = """
function onConnection(client)
  function client:start() publication = mona:publish("mixed") end
  function client:push()
    publication:pushVideo(0, "\\23\\1\\0\\0\\0key")
    publication:pushAudio(10, "\\175\\1sound")
    publication:pushVideo(40, "\\39\\1\\0\\0\\0delta")
    publication:pushAudio(50, "\\175\\1more")
  end
  return { motto = "welcome", version = 3 }
end
"""


async def test_connect_info_receive_video_and_publications_closed_on_unload(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", CHOOSY)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as owner, await RTMPClient.open(port) as player:
            _, _, _, info = await owner.connect("live")
            assert (info[b"motto"], info[b"version"]) == (b"welcome", 3.0)
            await owner.call("start")
            await player.connect("live")
            _, _, _, stream = await player.call("createStream")
            await player.send("play", None, "mixed", stream=int(stream))
            await player.send("receiveVideo", None, False, stream=int(stream))
            await owner.call("push")
            media: list[tuple[int, bytes]] = []
            while len(media) < 2:
                type_id, payload = await player.message()
                if type_id in (8, 9):
                    media.append((type_id, payload))
            assert media == [(8, b"\xaf\x01sound"), (8, b"\xaf\x01more")]
            assert await lua(rt, "return mona.publications.count") == 1
            (folder / "live" / "main.lua").write_text(CHOOSY + "\n-- changed")
            await lua_until(rt, "return mona.publications.count == 0")
