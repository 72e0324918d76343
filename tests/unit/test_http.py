"""The clients' HTTP core (``_proto/http.py``) in memory: requests split anywhere,
pipelined, refused; responses read back by a client-side parser."""

from __future__ import annotations

import httptools
from hypothesis import given
from hypothesis import strategies as st

from trio_mona._formats.json import flat_values
from trio_mona._proto.http import (
    CLOSED,
    NEED_DATA,
    HTTPServer,
    Refused,
    Request,
    cors_headers,
    header,
    response,
)

GET = (
    b"GET /chat/index.html?x=1&y HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Cookie: session=abc; theme=dark\r\nX-Mixed-Case: Yes\r\n\r\n"
)
POST = (
    b"POST /api/add HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
    b"Content-Length: 13\r\n\r\n" + b'["add", 1, 2]'
)


def events(server: HTTPServer) -> list[object]:
    found: list[object] = []
    while (event := server.next_event()) is not NEED_DATA:
        found.append(event)
        if event is CLOSED:
            break
    return found


def test_a_request_comes_out_whole_with_its_parts_as_sent() -> None:
    server = HTTPServer()
    server.receive_data(GET)
    (request,) = events(server)
    assert request == Request(
        method="GET",
        path="/chat/index.html",
        query="x=1&y",
        version="1.1",
        headers=(
            ("Host", "127.0.0.1"),
            ("Cookie", "session=abc; theme=dark"),
            ("X-Mixed-Case", "Yes"),
        ),
        body=b"",
        keep_alive=True,
    )


@given(st.lists(st.integers(min_value=1, max_value=len(GET + POST + GET) - 1), max_size=8))
def test_pipelined_requests_split_anywhere_come_out_in_order(cuts: list[int]) -> None:
    stream = GET + POST + GET
    server = HTTPServer()
    found: list[object] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        server.receive_data(stream[start:cut])
        found += events(server)
        start = cut
    assert [r.method for r in found if isinstance(r, Request)] == ["GET", "POST", "GET"]
    assert found[1] == Request(
        method="POST",
        path="/api/add",
        query="",
        version="1.1",
        headers=(("Host", "h"), ("Content-Type", "application/json"), ("Content-Length", "13")),
        body=b'["add", 1, 2]',
        keep_alive=True,
    )


def test_http_1_0_closes_unless_asked_and_the_end_of_input_is_closed() -> None:
    server = HTTPServer()
    server.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    (request,) = events(server)
    assert isinstance(request, Request)
    assert (request.version, request.keep_alive) == ("1.0", False)
    server.receive_data(b"")
    assert server.next_event() is CLOSED


def refusal(data: bytes, **limits: int) -> Refused:
    server = HTTPServer(**limits)
    server.receive_data(data)
    found = events(server)
    assert isinstance(found[0], Refused), found
    server.receive_data(GET)  # (nothing more is read after a refusal)
    assert server.next_event() is CLOSED
    return found[0]


def test_bad_input_is_refused_with_its_status() -> None:
    assert refusal(b"GARBAGE\r\n\r\n").status in (400, 501)
    assert refusal(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").status == 400
    assert refusal(b"BREW /pot HTTP/1.1\r\n\r\n").status == 501
    assert refusal(b"PUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status == 501
    assert refusal(b"POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n").status == 400
    big = b"GET / HTTP/1.1\r\nX: " + b"a" * 2000 + b"\r\n\r\n"
    assert refusal(big, max_headers=1024).status == 431
    # A declared body over the bound is refused before it is read; a chunked one as it comes.
    assert refusal(b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", max_body=1000).status == 413
    chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"a" * 2000
    assert refusal(chunked, max_body=1000).status == 413


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    class Found:
        def __init__(self) -> None:
            self.headers: dict[str, str] = {}
            self.body = b""

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.decode().lower()] = value.decode()

        def on_body(self, body: bytes) -> None:
            self.body += body

    found = Found()
    parser = httptools.HttpResponseParser(found)
    parser.feed_data(data)
    return parser.get_status_code(), found.headers, found.body


def test_a_response_says_its_exact_length_and_a_gmt_date() -> None:
    status, headers, body = parse_response(response(200, [("Content-Type", "text/plain")], b"hi"))
    assert (status, body, headers["content-length"]) == (200, b"hi", "2")
    assert headers["date"].endswith(" GMT")
    # HEAD: the length of what GET would send, and no body.
    head = response(200, [], b"x" * 10, head=True)
    assert head.endswith(b"\r\n\r\n")
    assert b"Content-Length: 10" in head
    assert b"Content-Length" not in response(204, [])
    assert b"Connection: close" in response(400, [], b"bad", close=True)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_any_bytes_give_requests_or_a_refusal_never_an_exception(
    first: bytes, second: bytes
) -> None:
    server = HTTPServer(max_headers=256, max_body=64)
    for data in (first, second, GET, b""):
        server.receive_data(data)
    found = events(server)
    assert found[-1] is CLOSED
    assert all(isinstance(event, Request | Refused) for event in found[:-1])
    assert sum(isinstance(event, Refused) for event in found) <= 1


def request(data: bytes) -> Request:
    server = HTTPServer()
    server.receive_data(data)
    found = server.next_event()
    assert isinstance(found, Request)
    return found


def test_cors_echoes_the_origin_and_answers_a_preflight() -> None:
    assert cors_headers(request(GET)) == []  # (no Origin: nothing said)
    plain = request(b"GET / HTTP/1.1\r\nOrigin: http://a.example\r\n\r\n")
    assert cors_headers(plain) == [
        ("Access-Control-Allow-Origin", "http://a.example"),
        ("Vary", "Origin"),
    ]
    preflight = request(
        b"OPTIONS /api/ HTTP/1.1\r\norigin: http://a.example\r\n"
        b"Access-Control-Request-Method: POST\r\n"
        b"Access-Control-Request-Headers: content-type\r\n\r\n"
    )
    assert dict(cors_headers(preflight)) == {
        "Access-Control-Allow-Origin": "http://a.example",
        "Vary": "Origin",
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS, POST",
        "Access-Control-Allow-Headers": "content-type",
        "Access-Control-Max-Age": "600",
    }
    assert header(preflight, "ORIGIN") == "http://a.example"
    assert header(preflight, "Cookie") is None


def test_flat_json_arrays_reach_lua_without_a_tape() -> None:
    assert flat_values(b'["sum", 2, 3.5, true, null, "caf\\u00e9"]') == (
        b"sum",
        2,
        3.5,
        True,
        None,
        "café".encode(),
    )
    # What only fromJSON's reader does right: nested values, dates, odd numbers, bad text.
    for document in [b'["a", [1]]', b'[{"a": 1}]', b'["2024-01-02T03:04:05.678Z"]',
                     b"[1e999]", b"[18446744073709551616]", b'{"a": 1}', b"[NaN]",
                     b"[not json", b'["\\xff"]']:  # fmt: skip
        assert flat_values(document) is None, document
