"""Small host functions the Lua writers call (``_formats/values.lua``)."""

from __future__ import annotations

import base64


def b64encode(data: bytes) -> bytes:
    return base64.b64encode(data)


def valid_utf8(data: bytes) -> bool:
    """(LuaJIT has no utf8 library; Lua 5.4 checks in Lua.)"""
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
