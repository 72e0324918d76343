"""Which application a URL path names (``_proto/paths.py``), synchronously."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_mona._proto.paths import BadPath, NoApplication, Redirect, Target, resolve, segments

APPS = {"", "/chat", "/a", "/a/b"}


def test_the_folders_name_the_application_and_the_last_segment_the_rest() -> None:
    assert resolve("/a/b/page.html", APPS) == Target("/a/b", "page.html")
    assert resolve("//chat/x.html", APPS) == Target("/chat", "x.html")
    assert resolve("/chat/", APPS) == Target("/chat", "")
    assert resolve("/chat/send", APPS) == Target("/chat", "send")  # (a method, maybe)
    assert resolve("/", APPS) == Target("", "")
    assert resolve("/index.html", APPS) == Target("", "index.html")


def test_a_folder_without_its_slash_is_redirected_and_a_missing_one_is_named() -> None:
    assert resolve("/chat", APPS) == Redirect("/chat/")
    assert resolve("/a/b", APPS) == Redirect("/a/b/")
    assert resolve("/x/page.html", APPS) == NoApplication("/x")
    assert resolve("/a/c/", APPS) == NoApplication("/a/c")
    assert resolve("/page.html", {"/chat"}) == NoApplication("/")


def test_dots_and_encodings_resolve_inside_the_folder() -> None:
    assert resolve("/a/../chat/./x.html", APPS) == Target("/chat", "x.html")
    assert resolve("/../../etc/passwd", APPS) == NoApplication("/etc")
    assert resolve("/%2e%2e/%2e%2e/x", APPS) == Target("", "x")
    assert resolve("/chat/caf%C3%A9.html", APPS) == Target("/chat", "café.html")
    assert isinstance(resolve("/chat%2f..%2f..%2fx", APPS), BadPath)  # (an encoded /)
    assert isinstance(resolve("/a%00.html", APPS), BadPath)
    assert isinstance(resolve("/%ff.html", APPS), BadPath)  # (not UTF-8)
    assert isinstance(resolve("x.html", APPS), BadPath)


@given(st.lists(st.sampled_from(["..", ".", "", "a", "b", "%2e%2e", "%2E.", "x.lua", "%2f"])))
def test_no_path_names_a_place_outside_the_applications_folder(parts: list[str]) -> None:
    path = "/" + "/".join(parts)
    found = segments(path)
    if isinstance(found, BadPath):
        return
    # What comes out is plain names: none goes up, none holds a separator.
    assert all(s not in ("", ".", "..") and "/" not in s for s in found)
    result = resolve(path, {"", "/a", "/a/b"})
    if isinstance(result, Target):
        assert ".." not in result.app.split("/")
        assert result.name not in ("..", ".")


@given(st.text())
def test_any_text_resolves_or_is_refused_without_an_exception(path: str) -> None:
    result = resolve("/" + path, APPS)
    assert isinstance(result, Target | Redirect | NoApplication | BadPath)
