"""The RTMP handshake and chunk stream in memory, in client/server pairs, the byte
stream split at random points (_proto/rtmp_handshake.py, _proto/rtmp_chunks.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_mona._proto.rtmp_chunks import (
    ACKNOWLEDGEMENT,
    AUDIO,
    COMMAND_AMF0,
    VIDEO,
    ChunkError,
    ChunkStream,
    Message,
)
from trio_mona._proto.rtmp_handshake import (
    PLAYER_KEY,
    SERVER_KEY,
    SIZE,
    ClientHandshake,
    HandshakeError,
    ServerHandshake,
    digest,
    digest_position,
    find_digest,
)


def _handshake(version: bytes, cuts: list[int] = ()) -> tuple[ClientHandshake, ServerHandshake]:  # type: ignore[assignment]
    client, server = ClientHandshake(version=version), ServerHandshake()
    stream = client.start()
    answer = b""
    at = 0
    for cut in sorted(min(c, len(stream)) for c in cuts):
        answer += server.receive_data(stream[at:cut])
        at = max(at, cut)
    answer += server.receive_data(stream[at:])
    c2 = client.receive_data(answer)
    assert client.done
    assert not server.done
    server.receive_data(c2 + b"first chunk")
    assert server.done
    assert server.rest == b"first chunk"
    return client, server


def test_the_simple_form_ffmpegs_player_needs() -> None:
    for version in (b"\x00\x00\x00\x00", b"\x09\x00\x7c\x02"):  # (zeros; ffmpeg's Flash 9)
        client, server = _handshake(version)
        assert not server.digest_form
        assert not client.server_digest


def test_the_digest_form_of_flash_players_10_and_later() -> None:
    client, server = _handshake(b"\x0a\x00\x2d\x02")
    assert server.digest_form
    assert client.server_digest  # (the client checked S1's and S2's digests)


def test_digests_are_where_the_packet_says() -> None:
    packet = bytes(range(256)) * 6
    position = digest_position(packet, 8)
    assert 12 <= position < 12 + 728
    assert digest_position(packet, 772) >= 776
    signed = bytearray(packet)
    signed[position : position + 32] = digest(packet, position, PLAYER_KEY[:30])
    assert find_digest(bytes(signed), PLAYER_KEY[:30]) == (
        position,
        bytes(signed[position : position + 32]),
    )
    assert find_digest(bytes(signed), SERVER_KEY[:36]) is None


def test_a_wrong_version_is_refused() -> None:
    with pytest.raises(HandshakeError, match="RTMP version 6"):
        ServerHandshake().receive_data(b"\x06" + bytes(SIZE))


@given(st.lists(st.integers(min_value=1, max_value=2 * SIZE), max_size=6))
def test_the_handshake_split_anywhere(cuts: list[int]) -> None:
    _handshake(b"\x0a\x00\x2d\x02", cuts)


def _messages(stream: ChunkStream) -> list[Message]:
    found = []
    while (message := stream.next_message()) is not None:
        found.append(message)
    return found


MESSAGES = [
    (3, 0, COMMAND_AMF0, 0, b"connect" * 40),
    (4, 0, VIDEO, 1, b"\x17" + b"v" * 300),
    (4, 40, VIDEO, 1, b"\x27" + b"v" * 300),  # (same size: format 2)
    (4, 80, VIDEO, 1, b"\x27" + b"w" * 300),  # (same step: format 3)
    (5, 10, AUDIO, 1, b"\xaf" + b"a" * 20),
    (5, 30, AUDIO, 1, b"\xaf" + b"b" * 21),  # (another size: format 1)
    (4, 0x1000000 + 5, VIDEO, 1, b"\x27" + b"x" * 500),  # (an extended timestamp)
    (4, 0x1000000 + 5 + 0x1000000, VIDEO, 1, b"\x27" + b"y" * 500),  # (an extended step)
    (400, 7, AUDIO, 1, b"far chunk stream"),  # (a 3-byte basic header)
    (70, 7, AUDIO, 1, b"mid chunk stream"),  # (a 2-byte basic header)
    (4, 5, VIDEO, 1, b"back in time"),  # (earlier than the last: format 0)
]


@given(
    st.lists(st.integers(min_value=1, max_value=6000), max_size=12),
    st.sampled_from([128, 100, 4096]),
)
def test_messages_through_chunks_split_anywhere(cuts: list[int], chunk_size: int) -> None:
    sender, receiver = ChunkStream(), ChunkStream()
    stream = sender.set_chunk_size(chunk_size) if chunk_size != 128 else b""
    for message in MESSAGES:
        stream += sender.send(*message)
    at = 0
    for cut in sorted(min(c, len(stream)) for c in cuts):
        receiver.receive_data(stream[at:cut])
        at = max(at, cut)
    receiver.receive_data(stream[at:])
    assert [(m.chunk_stream, m.timestamp, m.type_id, m.stream_id, m.payload)
            for m in _messages(receiver)] == MESSAGES  # fmt: skip
    assert receiver.in_chunk_size == chunk_size


def test_headers_shrink_as_the_rules_allow() -> None:
    sender = ChunkStream()
    first = sender.send(4, 0, VIDEO, 1, b"x" * 10)
    same_size = sender.send(4, 40, VIDEO, 1, b"x" * 10)
    same_step = sender.send(4, 80, VIDEO, 1, b"x" * 10)
    assert (len(first), len(same_size), len(same_step)) == (1 + 11 + 10, 1 + 3 + 10, 1 + 10)
    assert same_step[0] >> 6 == 3


def test_window_acknowledgements_are_sent() -> None:
    sender, receiver = ChunkStream(), ChunkStream()
    receiver.receive_data(sender.send(2, 0, 5, 0, (1000).to_bytes(4, "big")))  # window 1000
    assert receiver.window == 1000
    receiver.receive_data(sender.send(4, 0, VIDEO, 1, b"v" * 1200))
    acknowledgement = receiver.data_to_send()
    back = ChunkStream()
    back.receive_data(acknowledgement)
    assert back.acknowledged == receiver.received
    assert _messages(back) == []
    assert ACKNOWLEDGEMENT == 3


def test_an_abort_drops_the_partial_message() -> None:
    sender, receiver = ChunkStream(), ChunkStream()
    whole = sender.send(4, 0, VIDEO, 1, b"v" * 300)
    receiver.receive_data(whole[:140])  # (the first chunk and a bit)
    receiver.receive_data(ChunkStream().send(2, 0, 2, 0, (4).to_bytes(4, "big")))
    receiver.receive_data(ChunkStream().send(4, 0, VIDEO, 1, b"fresh"))
    assert [m.payload for m in _messages(receiver)] == [b"fresh"]


def test_bad_chunk_streams_are_refused() -> None:
    with pytest.raises(ChunkError, match="over 1000"):
        ChunkStream(max_message=1000).receive_data(ChunkStream().send(4, 0, VIDEO, 1, b"v" * 2000))
    with pytest.raises(ChunkError, match="begins with a format 3 header"):
        ChunkStream().receive_data(b"\xc4" + b"x" * 10)
    with pytest.raises(ChunkError, match="a chunk size of 0"):
        ChunkStream().receive_data(ChunkStream().send(2, 0, 1, 0, bytes(4)))


def test_connect_and_streams_through_the_command_core() -> None:
    from trio_mona._formats.amf import decode, encode
    from trio_mona._proto.rtmp import NEED_DATA, Command, Connect, Media, RTMPServer, obj

    server, client, chunks = RTMPServer(), ClientHandshake(), ChunkStream()
    server.receive_data(client.start())
    c2 = client.receive_data(server.data_to_send())
    connect = encode([b"connect", 1.0, obj(app="live", tcUrl="rtmp://h/live?k=1")], amf0=True)
    server.receive_data(c2 + chunks.send(3, 0, COMMAND_AMF0, 0, connect))
    event = server.next_event()
    assert isinstance(event, Connect)
    assert event.properties == {"app": "live", "tcUrl": "rtmp://h/live?k=1"}
    chunks.receive_data(server.accept(event.transaction, {"extra": "x"}))
    found = _messages(chunks)
    assert [m.type_id for m in found] == [COMMAND_AMF0]  # (window, bandwidth, size: taken)
    name, transaction, _, info = decode(found[0].payload)
    assert (name, transaction) == (b"_result", 1.0)
    fields = dict(info.fields)
    assert fields[b"code"] == b"NetConnection.Connect.Success"
    assert fields[b"extra"] == b"x"
    assert chunks.in_chunk_size == 4096
    publish = encode([b"publish", 5.0, None, b"cam", b"live"], amf0=True)
    server.receive_data(
        chunks.send(8, 0, COMMAND_AMF0, 1, publish) + chunks.send(6, 40, VIDEO, 1, b"\x17\x01")
    )
    assert server.next_event() == Command(1, "publish", 5.0, (b"cam", b"live"))
    assert server.next_event() == Media(1, VIDEO, 40, b"\x17\x01")
    assert server.next_event() is NEED_DATA
