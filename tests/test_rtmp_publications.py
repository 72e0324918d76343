"""Publications, listeners and their quality of service as Lua sees them, the GOP
cache, and AMF3 answers: over real loopback sockets with the tests' own RTMP client
(docs/clients/rtmp.rst)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import trio_mona

from .helpers import lua, lua_until, write_app
from .rtmp_client import RTMPClient, parse_amf

HEADER, KEY, DELTA = b"\x17\x00\x00\x00\x00h", b"\x17\x01\x00\x00\x00k", b"\x27\x01\x00\x00\x00d"
SOUND = b"\xaf\x01s"

OBJECTS = """
function onConnection(client)
  function client:start()
    publication = mona:publish("cam")
    publication:writeProperties({ width = 320, title = "test" })
    function publication:onFlush() flushed = (flushed or 0) + 1 end
  end
  function client:onSubscribe(listener)
    subscribed = listener
    waiting = listener.publication == nil
    mine = listener.client == client
  end
  function client:push(what)
    if what == "key" then
      publication:pushVideo(40, "\\23\\1\\0\\0\\0k")
      publication:pushAudio(45, "\\175\\1s")
      publication:pushJSONData("onCue", { at = 1 })
      publication:pushData("raw", 1)
    elseif what == "muted" then
      subscribed.receiveAudio = false
      publication:pushAudio(60, "\\175\\1s")
      publication:pushVideo(80, "\\39\\1\\0\\0\\0d", 25)
    end
    publication:flush()
  end
end
"""


async def media(client: RTMPClient, count: int) -> list[tuple[int, bytes]]:
    """The next *count* audio, video and data messages."""
    found: list[tuple[int, bytes]] = []
    while len(found) < count:
        type_id, payload = await client.message()
        if type_id in (8, 9, 18) and not payload.startswith(b"\x02\x00\x11|RtmpSampleAccess"):
            found.append((type_id, payload))
    return found


async def play(client: RTMPClient, name: str) -> None:
    _, _, _, stream = await client.call("createStream")
    await client.send("play", None, name, stream=int(stream))


async def test_listener_publication_and_qos_objects(tmp_path: Path, engine: str) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", OBJECTS)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}, engine=engine) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as owner, await RTMPClient.open(port) as player:
            await owner.connect("live")
            await player.connect("live")
            await play(player, "cam?quality=low&n=2")
            await lua_until(rt, "return live.subscribed ~= nil")
            assert await lua(rt, "return live.waiting, live.mine, live.subscribed.parameters.quality,"
                             " live.subscribed.parameters.n") == (True, True, b"low", 2)  # fmt: skip
            await owner.call("start")
            # The properties reach the listener first, as onMetaData.
            [(type_id, payload)] = await media(player, 1)
            assert type_id == 18
            assert parse_amf(payload) == [b"onMetaData", {b"width": 320.0, b"title": b"test"}]
            assert await lua(
                rt,
                """
              local p, l = mona.publications.cam, live.subscribed
              local keys = {}
              for client, listener in pairs(p.listeners) do
                keys[#keys + 1] = client.protocol .. " " .. tostring(listener == l)
              end
              return l.publication == p, p.listeners.count, table.concat(keys, ","),
                p.properties.width, l.videoQOS == l.videoQOS, tostring(l.audioQOS)
            """,
            ) == (True, 1, b"RTMP true", 320, True, b"QualityOfService")
            await owner.call("push", "key")
            got = await media(player, 4)
            assert got[:2] == [(9, KEY), (8, SOUND)]
            assert parse_amf(got[2][1]) == [b"onCue", {b"at": 1.0}]
            assert parse_amf(got[3][1]) == [b"raw1"]
            await owner.call("push", "muted")
            assert await media(player, 1) == [(9, DELTA)]  # (no audio: receiveAudio false)
            qos = await lua(
                rt,
                """
              local v, l = mona.publications.cam.videoQOS, live.subscribed.videoQOS
              return v.latency, l.byteRate, l.lostRate, l.lastSendingTime, live.flushed,
                live.subscribed.receiveAudio
            """,
            )
            assert qos[0] == 25  # (the ping pushVideo gave)
            assert qos[1] > 0
            assert qos[2] == 0
            assert abs(qos[3] / 1000 - time.time()) < 5
            assert qos[4] == 2
            assert qos[5] is False
            # clearProperties: a new player gets no metadata, nor the data pushed before.
            await lua(rt, "mona.publications.cam:clearProperties()")
            assert await lua(rt, "return next(mona.publications.cam.properties)") is None
            async with await RTMPClient.open(port) as late:
                await late.connect("live")
                await play(late, "cam")
                await owner.call("push", "key")
                assert (await media(late, 1))[0] == (9, KEY)


async def test_listener_members_are_read_only_and_checked(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", OBJECTS)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as player:
            await player.connect("live")
            await play(player, "cam")
            await lua_until(rt, "return live.subscribed ~= nil")
            errors = await lua(
                rt,
                """
              local l = live.subscribed
              local a = select(2, pcall(function() l.receiveVideo = "yes" end))
              local b = select(2, pcall(function() l.publication = 1 end))
              local c = select(2, pcall(function() l.videoQOS.byteRate = 1 end))
              return a, b, c
            """,
            )
            assert [e.split(b": ", 1)[-1] for e in errors] == [
                b"'receiveVideo' must be a boolean, got string",
                b"'publication' is read-only on Listener",
                b"'byteRate' is read-only on QualityOfService",
            ]


PUBLISHED = """
function onConnection(client)
  function client:onPublish(publication)
    function publication:onFlush() flushes = (flushes or 0) + 1 end
    function publication:onVideo(time, packet) last_video = time end
    mine = publication
  end
end
"""


async def test_onflush_follows_a_publishers_reads(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", PUBLISHED)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as publisher:
            await publisher.connect("live")
            _, _, _, stream = await publisher.call("createStream")
            await publisher.send("publish", None, "cam", "live", stream=int(stream))
            assert (await publisher.command())[3][b"code"] == b"NetStream.Publish.Start"
            await publisher.media(9, int(stream), 0, KEY)
            await lua_until(rt, "return live.flushes == 1 and live.last_video == 0")
            await publisher.media(9, int(stream), 40, DELTA)
            await lua_until(rt, "return live.flushes == 2 and live.last_video == 40")
            # (data: the publication's properties when it is onMetaData)
            await publisher.media(18, int(stream), 0, b"\x02\x00\x0d@setDataFrame"
                                  b"\x02\x00\x0aonMetaData\x03\x00\x01w\x00@t\x00\x00\x00\x00\x00\x00"
                                  b"\x00\x00\x09")  # fmt: skip
            await lua_until(rt, "return live.mine.properties.w == 320")


GOP = """
function onConnection(client)
  function client:start()
    publication = mona:publish("cam")
    publication:pushVideo(0, "\\23\\0\\0\\0\\0h")
    publication:pushVideo(1000, "\\23\\1\\0\\0\\0k")
    publication:pushAudio(1010, "\\175\\1s")
    publication:pushVideo(1040, "\\39\\1\\0\\0\\0d")
  end
  function client:key() publication:pushVideo(2000, "\\23\\1\\0\\0\\0k") end
end
"""


@pytest.mark.parametrize("gop_cache", [True, False])
async def test_the_gop_cache_starts_a_new_listener_at_once(tmp_path: Path, gop_cache: bool) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", GOP)
    settings = {"RTMP.port": "0", "RTMP.gopCache": "true" if gop_cache else "false"}
    async with trio_mona.open_runtime(folder, settings=settings) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as owner, await RTMPClient.open(port) as player:
            await owner.connect("live")
            await owner.call("start")
            await player.connect("live")
            await play(player, "cam")
            if gop_cache:  # the header, then the frames since the keyframe, from 0
                got = await media(player, 4)
                assert got == [(9, HEADER), (9, KEY), (8, SOUND), (9, DELTA)]
                assert player.timestamps[-3:] == [0, 10, 40]
            else:  # the header, then nothing until the next keyframe
                assert await media(player, 1) == [(9, HEADER)]
                await owner.call("key")
                assert await media(player, 1) == [(9, KEY)]
                assert player.timestamps[-1] == 0


AMF3 = """
function onConnection(client)
  function client:table() return { a = 1, list = { "x" } } end
end
"""


async def test_a_client_that_chose_amf3_is_answered_in_amf3(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", AMF3)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as client:
            await client.send("connect", {"app": "live", "tcUrl": "rtmp://127.0.0.1/live",
                                          "objectEncoding": 3.0})  # fmt: skip
            info = (await client.command())[3]
            assert info[b"objectEncoding"] == 3.0
            await client.send("table", None)
            while True:
                type_id, payload = await client.message()
                if type_id in (17, 20):
                    break
            assert type_id == 17
            assert payload[0] == 0
            assert payload[1:].startswith(b"\x02\x00\x07_result")
            # The table as an AMF3 object (0x11: switch to AMF3, 0x0a: object), its 1 an
            # AMF3 integer (0x04 0x01).
            assert b"\x11\x0a" in payload
            assert b"\x03a\x04\x01" in payload


CLOSER = """
function onConnection(client)
  function client:onPublish(publication) published = publication end
  function client:onUnpublish(publication) unpublished = publication.name end
  function client:stop() published:close("Publish.Error", "stopped by the application") end
end
"""


async def test_closing_a_clients_publication_tells_its_publisher(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    write_app(folder / "live", CLOSER)
    async with trio_mona.open_runtime(folder, settings={"RTMP.port": "0"}) as rt:
        port = next(a.port for a in rt.bound_addresses if a.kind == "rtmp")
        async with await RTMPClient.open(port) as publisher:
            await publisher.connect("live")
            _, _, _, stream = await publisher.call("createStream")
            await publisher.send("publish", None, "cam", "live", stream=int(stream))
            assert (await publisher.command())[3][b"code"] == b"NetStream.Publish.Start"
            await publisher.send("stop", None)
            status = await publisher.command()
            assert status[0] == b"onStatus"
            assert (status[3][b"code"], status[3][b"description"], status[3][b"level"]) == (
                b"NetStream.Publish.Error",
                b"stopped by the application",
                b"error",
            )
            await lua_until(rt, "return live.unpublished == 'cam'")
            assert await lua(rt, "return mona.publications.count, live.published.running") == (
                0,
                False,
            )
