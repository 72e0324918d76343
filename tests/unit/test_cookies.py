"""The Set-Cookie writer (``_proto/cookies.py``), synchronously."""

from __future__ import annotations

import calendar
from http.cookies import SimpleCookie

from hypothesis import given
from hypothesis import strategies as st

from trio_mona._proto.cookies import set_cookie

NOW = float(calendar.timegm((2026, 12, 7, 10, 0, 0)))


def test_a_cookie_with_every_option() -> None:
    options = {
        "expires": 300,
        "path": "/",
        "domain": "192.168.0.1",
        "secure": False,
        "httpOnly": True,
    }  # fmt: skip  (MonaServer's own example)
    assert set_cookie("test", "value1", options, now=NOW) == (
        "test=value1; Expires=Mon, 07 Dec 2026 10:05:00 GMT; Max-Age=300; Path=/; "
        "Domain=192.168.0.1; HttpOnly"
    )
    assert set_cookie("a", "", {"secure": True}) == "a=; Secure"
    assert set_cookie("a", "b") == "a=b"


def test_a_negative_expires_deletes_the_cookie() -> None:
    assert set_cookie("a", "b", {"expires": -1}, now=NOW) == (
        "a=b; Expires=Mon, 07 Dec 2026 09:59:59 GMT; Max-Age=0"
    )


def test_bad_arguments_make_no_header() -> None:
    cases: list[tuple[str, str, dict[str, object]]] = [
        ("a b", "v", {}),  # (a name is a token)
        ("", "v", {}),
        ("a", "v;w", {}),  # (no ; in a value)
        ("a", 'v"', {}),
        ("a", "v\r\nSet-Cookie: x=y", {}),  # (no header injection)
        ("a", "v", {"expires": "soon"}),
        ("a", "v", {"expires": True}),
        ("a", "v", {"path": "/x;Domain=evil"}),
        ("a", "v", {"domain": "evil.com; Secure"}),
        ("a", "v", {"domain": "a" + "-" * 5000 + "!"}),  # (bounded before the pattern)
        ("a", "v", {"secure": "yes"}),
        ("a", "v", {"samesite": "Strict"}),  # (not an option here)
    ]
    for name, value, options in cases:
        assert set_cookie(name, value, options) is None, (name, value, options)


@given(st.text(max_size=12), st.text(max_size=12))
def test_a_header_made_reads_back_as_its_cookie(name: str, value: str) -> None:
    header = set_cookie(name, value, {"path": "/", "httponly": True})
    if header is None:
        return
    assert "\r" not in header
    assert "\n" not in header
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(header)
    if name in parsed:  # (SimpleCookie refuses some names RFC 6265 allows)
        assert parsed[name].value == value
        assert parsed[name]["path"] == "/"
