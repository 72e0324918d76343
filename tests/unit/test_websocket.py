"""The WebSocket core in memory, against wsproto's client: the upgrade, messages both
ways (fragmented, compressed), pings, the close codes, the message bound; the stream
split at random points (_proto/websocket.py)."""

from __future__ import annotations

import os
import struct

from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from trio_mona._proto.http import HTTPServer, Upgrade
from trio_mona._proto.http import Request as HTTPRequest
from trio_mona._proto.websocket import (
    NEED_DATA,
    Accepted,
    Binary,
    Closed,
    NotWebSocket,
    Pinged,
    Text,
    WebSocketServer,
    accept_key,
    upgrade,
)


def _pair(
    *, compress: bool = True, max_message: int = 1 << 20, first: bytes = b""
) -> tuple[WSConnection, WebSocketServer]:
    client = WSConnection(ConnectionType.CLIENT)
    extensions = [PerMessageDeflate()] if compress else []
    data = client.send(Request(host="x", target="/chat/", extensions=extensions)) + first
    parser = HTTPServer()
    parser.receive_data(data)
    event = parser.next_event()
    assert isinstance(event, Upgrade)
    accepted = upgrade(event.request, max_message=max_message, trailing=event.trailing)
    assert isinstance(accepted, Accepted)
    client.receive_data(accepted.response)
    assert isinstance(next(client.events()), AcceptConnection)
    return client, accepted.server


def _events(server: WebSocketServer) -> list[object]:
    found: list[object] = []
    while (event := server.next_event()) is not NEED_DATA:
        found.append(event)
    return found


def test_the_accept_key_of_rfc_6455() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_messages_both_ways_with_and_without_compression() -> None:
    for compress in (True, False):
        client, server = _pair(compress=compress)
        server.receive_data(client.send(TextMessage(data='["hello", 1]')))
        server.receive_data(client.send(BytesMessage(data=b"\x00\xff" * 1000)))
        assert _events(server) == [Text('["hello", 1]'), Binary(b"\x00\xff" * 1000)]
        client.receive_data(
            server.message("héllo".encode(), text=True) + server.message(b"\x01\x02", text=False)
        )
        assert [(type(e), getattr(e, "data", None)) for e in client.events()] == [
            (TextMessage, "héllo"),
            (BytesMessage, b"\x01\x02"),
        ]


def test_compression_is_negotiated_only_when_offered() -> None:
    client = WSConnection(ConnectionType.CLIENT)
    parser = HTTPServer()
    parser.receive_data(
        client.send(Request(host="x", target="/", extensions=[PerMessageDeflate()]))
    )
    event = parser.next_event()
    assert isinstance(event, Upgrade)
    accepted = upgrade(event.request, max_message=100)
    assert isinstance(accepted, Accepted)
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in accepted.response
    plain = upgrade(_upgrade_request(), max_message=100)
    assert isinstance(plain, Accepted)
    assert b"Sec-WebSocket-Extensions" not in plain.response


def _upgrade_request(**changes: str) -> HTTPRequest:
    headers = {
        "Host": "x",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    headers.update(changes)
    text = "GET /chat/ HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items() if v)
    parser = HTTPServer()
    parser.receive_data((text + "\r\n").encode())
    event = parser.next_event()
    assert isinstance(event, Upgrade)
    return event.request


def test_bad_upgrades_are_refused() -> None:
    assert isinstance(upgrade(_upgrade_request(), max_message=10), Accepted)
    for changes, status in [
        ({"Sec-WebSocket-Version": "8"}, 426),
        ({"Sec-WebSocket-Key": ""}, 400),
        ({"Sec-WebSocket-Key": "short"}, 400),
    ]:
        refused = upgrade(_upgrade_request(**changes), max_message=10)
        assert isinstance(refused, NotWebSocket)
        assert refused.status == status


def test_first_frames_sent_with_the_request_are_read() -> None:
    client = WSConnection(ConnectionType.CLIENT)
    handshake = client.send(Request(host="x", target="/"))
    # (a frame the client sends before it has the answer: masked text "hi")
    mask = b"\x01\x02\x03\x04"
    frame = b"\x81\x82" + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(b"hi"))
    parser = HTTPServer()
    parser.receive_data(handshake + frame)
    event = parser.next_event()
    assert isinstance(event, Upgrade)
    assert event.trailing == frame
    accepted = upgrade(event.request, max_message=10, trailing=event.trailing)
    assert isinstance(accepted, Accepted)
    assert _events(accepted.server) == [Text("hi")]


def test_fragments_are_reassembled_and_bounded() -> None:
    client, server = _pair(max_message=10)
    server.receive_data(client.send(TextMessage(data="abc", message_finished=False)))
    assert _events(server) == []
    server.receive_data(client.send(TextMessage(data="def", message_finished=True)))
    assert _events(server) == [Text("abcdef")]
    server.receive_data(client.send(BytesMessage(data=b"x" * 8, message_finished=False)))
    server.receive_data(client.send(BytesMessage(data=b"x" * 8, message_finished=True)))
    assert _events(server) == [Closed(1009, "a message over 10 bytes")]
    client.receive_data(server.data_to_send())
    [close] = list(client.events())
    assert isinstance(close, CloseConnection)
    assert close.code == 1009


def test_pings_are_answered_and_pongs_reported() -> None:
    client, server = _pair()
    server.receive_data(client.send(Ping(payload=b"are you there")))
    assert _events(server) == []
    client.receive_data(server.data_to_send())
    [pong] = list(client.events())
    assert isinstance(pong, Pong)
    assert pong.payload == b"are you there"
    client.receive_data(server.ping(b"\x00\x00\x01"))
    [ping] = list(client.events())
    assert isinstance(ping, Ping)
    server.receive_data(client.send(ping.response()))
    assert _events(server) == [Pinged(b"\x00\x00\x01")]


def _masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    head += bytes([0x80 | size]) if size < 126 else b"\xfe" + struct.pack("!H", size)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def test_protocol_errors_close_with_their_codes() -> None:
    for frame, code in [
        (_masked(0x1, b"\xff\xfe"), 1007),  # text that is not UTF-8
        (_masked(0x3, b"x"), 1002),  # a reserved opcode
        (b"\x81\x02hi", 1002),  # an unmasked client frame
    ]:
        _, server = _pair(compress=False)
        server.receive_data(frame)
        [closed] = _events(server)
        assert isinstance(closed, Closed)
        assert closed.code == code, frame
        assert server.data_to_send()[:1] == b"\x88"  # (the close frame, sent)


def test_a_close_is_answered_and_ends_it() -> None:
    client, server = _pair()
    server.receive_data(client.send(CloseConnection(code=1000, reason="bye")))
    assert _events(server) == [Closed(1000, "bye")]
    client.receive_data(server.data_to_send())
    assert isinstance(next(client.events()), CloseConnection)
    assert not server.open
    assert server.message(b"late", text=True) == b""
    _, ours = _pair()
    assert ours.close(1002, "Method 'x' not found")[:1] == b"\x88"
    assert _events(ours) == [Closed(1002, "Method 'x' not found")]


@given(st.lists(st.integers(min_value=1, max_value=200), max_size=10), st.booleans())
def test_any_split_of_the_stream_gives_the_same_messages(cuts: list[int], compress: bool) -> None:
    client, server = _pair(compress=compress)
    messages = [TextMessage(data="é" * n) for n in (1, 50, 300)] + [BytesMessage(data=b"b" * 70)]
    stream = b"".join(client.send(m) for m in messages)
    at = 0
    for cut in sorted(min(c, len(stream)) for c in cuts):
        if cut > at:  # (b"" would say the client closed)
            server.receive_data(stream[at:cut])
            at = cut
    if at < len(stream):
        server.receive_data(stream[at:])
    assert _events(server) == [Text("é" * n) for n in (1, 50, 300)] + [Binary(b"b" * 70)]


def test_frames_made_without_wsproto_are_what_wsproto_reads() -> None:
    client, server = _pair(compress=False)
    for size in (0, 5, 125, 126, 65535, 65536, 70000):
        payload = ("é" * (size // 2) + "x" * (size % 2)).encode()
        frame = server.message(payload, text=True)
        assert server.message(payload, text=True) is frame  # (a broadcast's frame, made once)
        client.receive_data(frame + server.message(payload, text=False))
        found = list(client.events())
        assert [type(e) for e in found] == [TextMessage, BytesMessage]
        assert found[0].data == payload.decode()  # type: ignore[attr-defined]
        assert found[1].data == payload  # type: ignore[attr-defined]
    compressed_client, compressed = _pair(compress=True)
    compressed_client.receive_data(compressed.message(b"[1]", text=True))
    assert next(compressed_client.events()).data == "[1]"  # type: ignore[attr-defined]


def test_the_frame_rules_without_extensions() -> None:
    for frames, code in [
        (_masked(0x0, b"x"), 1002),  # a continuation with no message
        (_masked(0x1, b"a", fin=False) + _masked(0x1, b"b"), 1002),  # a message inside one
        (_masked(0x9, b"p", fin=False), 1002),  # a fragmented ping
        (_masked(0x9, b"p" * 126), 1002),  # a long ping
        (b"\xc1\x81" + b"\x00" * 5, 1002),  # a reserved bit
        (_masked(0x8, b"\x03"), 1002),  # a close of one byte
        (_masked(0x8, (1005).to_bytes(2, "big")), 1002),  # a code no peer sends
        (_masked(0x8, (1000).to_bytes(2, "big") + b"\xff"), 1007),  # a reason not UTF-8
        (b"\x82\xff" + (1 << 63).to_bytes(8, "big") + b"\x00" * 4, 1002),  # a 64-bit length
    ]:
        _, server = _pair(compress=False)
        server.receive_data(frames)
        [closed] = _events(server)
        assert isinstance(closed, Closed)
        assert closed.code == code, frames
    _, server = _pair(compress=False)
    server.receive_data(_masked(0x8, (4001).to_bytes(2, "big") + b"bye"))
    assert _events(server) == [Closed(4001, "bye")]
    assert server.data_to_send() == b"\x88\x02" + (4001).to_bytes(2, "big")
    _, server = _pair(compress=False)
    server.receive_data(_masked(0x8, b""))
    assert _events(server) == [Closed(1005, "")]
    _, server = _pair(compress=False)
    server.receive_data(_masked(0x1, "é".encode()[:1], fin=False) + _masked(0x9, b"mid"))
    server.receive_data(_masked(0x0, "é".encode()[1:]))
    assert _events(server) == [Text("é")]  # (a ping between the fragments is answered)
    assert server.data_to_send() == b"\x8a\x03mid"
