"""Error pages never show the server's disk (_clients/replies.py)."""

from __future__ import annotations

from trio_mona._clients.replies import public_message


def test_error_messages_name_lua_files_relative_to_the_applications_folder() -> None:
    apps = "/srv/very/long/path/to/apps"
    assert public_message("/srv/very/long/path/to/apps/chat/main.lua:3: boom", apps) == (
        "chat/main.lua:3: boom"
    )
    assert public_message("...long/path/to/apps/chat/main.lua:3: boom", apps) == (
        "chat/main.lua:3: boom"
    )
    assert public_message("...o/apps/main.lua:3: x", apps) == "main.lua:3: x"
    assert public_message("/elsewhere/lib.lua:9: y", apps) == "lib.lua:9: y"
    assert public_message("no file here", apps) == "no file here"
