"""What a static file's response says (``_proto/static.py``), synchronously."""

from __future__ import annotations

import calendar

from hypothesis import given
from hypothesis import strategies as st

from trio_mona._proto.static import (
    DEFAULT_TYPE,
    Span,
    Unsatisfiable,
    byte_range,
    content_type,
    last_modified,
    listing,
    never_served,
    not_modified,
)


def test_sources_and_dot_files_are_never_served() -> None:
    assert never_served("main.lua")
    assert never_served("Helper.LUA")
    assert never_served(".env")
    assert never_served(".git")
    assert not never_served("index.html")
    assert not never_served("lua.html")


def test_content_types_come_from_the_table() -> None:
    assert content_type("logo.png") == "image/png"  # (MonaServer said text/png)
    assert content_type("INDEX.HTML") == "text/html; charset=utf-8"
    assert content_type("archive.tar.gz") == DEFAULT_TYPE
    assert content_type("README") == DEFAULT_TYPE
    assert content_type(".png") == DEFAULT_TYPE  # (a dot-file, not an extension)


def test_if_modified_since_answers_304_only_when_the_file_is_not_newer() -> None:
    mtime = calendar.timegm((2026, 12, 7, 10, 0, 0)) + 0.4
    stamp = last_modified(mtime)
    assert stamp == "Mon, 07 Dec 2026 10:00:00 GMT"
    assert not_modified(stamp, mtime)
    assert not not_modified("Mon, 07 Dec 2026 09:59:59 GMT", mtime)
    assert not_modified("Tue, 08 Dec 2026 00:00:00 GMT", mtime)
    assert not not_modified("yesterday", mtime)
    assert not not_modified(None, mtime)


def test_a_single_byte_range_is_a_span() -> None:
    assert byte_range("bytes=0-99", 1000) == Span(0, 99, 1000)
    assert byte_range("bytes=900-", 1000) == Span(900, 999, 1000)
    assert byte_range("bytes=-100", 1000) == Span(900, 999, 1000)
    assert byte_range("bytes=990-2000", 1000) == Span(990, 999, 1000)
    assert byte_range("bytes=-5000", 1000) == Span(0, 999, 1000)
    assert Span(0, 99, 1000).content_range == "bytes 0-99/1000"
    assert byte_range("bytes=1000-", 1000) == Unsatisfiable(1000)
    assert byte_range("bytes=-0", 1000) == Unsatisfiable(1000)
    # Whole file: no header, several ranges, other units, forms that cannot be read.
    for header in (None, "", "bytes=0-1,5-6", "items=0-1", "bytes=a-b", "bytes=5-1", "bytes=-"):
        assert byte_range(header, 1000) is None


@given(st.text(max_size=30), st.integers(min_value=0, max_value=10_000))
def test_any_range_header_is_a_span_inside_the_file_or_none(header: str, size: int) -> None:
    found = byte_range(header, size)
    if isinstance(found, Span):
        assert 0 <= found.start <= found.end < size


def test_a_listing_is_sorted_escaped_and_hides_what_is_never_served() -> None:
    page = listing("/chat/", [("b.html", False), ("main.lua", False), ("<img>", False),
                              (".git", True), ("images", True)])  # fmt: skip
    text = page.decode()
    assert '<a href="../">../</a>' in text
    assert "main.lua" not in text
    assert ".git" not in text
    assert text.index("&lt;img&gt;") < text.index("b.html") < text.index("images/")
    assert '<a href="%3Cimg%3E">' in text
    assert "../" not in listing("/", [("a", False)]).decode()
