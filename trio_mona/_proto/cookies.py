"""The ``Set-Cookie`` header that ``client.properties(key, value[, options])`` adds to
the next response (docs: the clients over HTTP), with no I/O.

The options are MonaServer's: ``expires`` (seconds from now; negative deletes the
cookie), ``path``, ``domain``, ``secure``, ``httponly`` (``httpOnly`` too, as its docs
write it). The header is well-formed by RFC 6265 or not made at all: a name that is
not a token, a value or a path with a character a cookie cannot hold, a domain that is
not a host name: None (the Lua call returns nil). ``Expires`` is written in GMT beside
``Max-Age``.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Final

#: RFC 6265: a cookie's name is a token; its value cookie-octets, optionally quoted.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE: Final = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
#: A path may hold any printable character but ``;``.
_PATH: Final = re.compile(r"[\x20-\x3a\x3c-\x7e]+")
_DOMAIN: Final = re.compile(
    r"\.?[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?)*"
)
#: The option names, as Lua may spell them.
OPTIONS: Final = frozenset({"expires", "path", "domain", "secure", "httponly", "httpOnly"})


def set_cookie(
    name: str, value: str, options: Mapping[str, object] | None = None, *, now: float | None = None
) -> str | None:
    """The ``Set-Cookie`` header's value, or None when the arguments cannot make a
    well-formed one (an unknown option included)."""
    if not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(value):
        return None
    parts = [f"{name}={value}"]
    options = options or {}
    if not set(options) <= OPTIONS:
        return None
    expires = options.get("expires")
    if expires is not None:
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            return None
        seconds = int(expires)
        moment = (time.time() if now is None else now) + max(seconds, -1)
        parts.append(f"Expires={email.utils.formatdate(moment, usegmt=True)}")
        parts.append(f"Max-Age={max(seconds, 0)}")
    path = options.get("path")
    if path is not None:
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            return None
        parts.append(f"Path={path}")
    domain = options.get("domain")
    if domain is not None:
        if not isinstance(domain, str) or len(domain) > 254 or not _DOMAIN.fullmatch(domain):
            return None
        parts.append(f"Domain={domain}")
    for flag, label in (("secure", "Secure"), ("httponly", "HttpOnly"), ("httpOnly", "HttpOnly")):
        chosen = options.get(flag)
        if chosen is None:
            continue
        if not isinstance(chosen, bool):
            return None
        if chosen and label not in parts:
            parts.append(label)
    return "; ".join(parts)


def parse_cookies(header: str | None) -> list[tuple[str, str]]:
    """The cookies a ``Cookie`` header holds, in order (``a=1; b=2``); a part with no
    ``=`` or no name is skipped, a quoted value unquoted."""
    found: list[tuple[str, str]] = []
    for part in (header or "").split(";"):
        name, equals, value = part.strip().partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not name:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        found.append((name, value))
    return found
