"""The Python functions the Lua prelude calls that belong to no socket handle:
logging, address objects, name resolution, digests and dumps.

They take and return only what lupa converts plainly (bytes, numbers, booleans, None,
tuples for several values) and the private address values, which Lua keeps opaque.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Final

from .._core.addresses import (
    IP_PROPERTIES,
    AddressError,
    HostName,
    IPAddress,
    SocketAddress,
    parse_target,
)
from .._net.dns import ResolveError, resolve_name

log = logging.getLogger("trio_mona")


def internal_error(function: bytes, error: object) -> None:
    """A Python function called from Lua failed: log it here, with its traceback; Lua
    raises a plain string instead (the host boundary, ``_lua/prelude.lua``)."""
    name = function.decode("utf-8", "replace")
    if isinstance(error, BaseException):
        log.error("internal error in %s", name, exc_info=error)
    else:
        log.error("internal error in %s: %r", name, error)


def logger_name(owner: bytes) -> str:
    path = owner.decode("utf-8", "replace").strip("/").replace("/", ".")
    return f"trio_mona.app.{path}" if path else "trio_mona.app"


class LuaLog:
    """Turns a Lua logging call into a record with the Lua caller's file and line."""

    def __init__(self) -> None:
        self._loggers: dict[bytes, logging.Logger] = {}

    def __call__(self, level: int, owner: bytes, source: bytes, line: int, message: bytes) -> None:
        logger = self._loggers.get(owner)
        if logger is None:
            logger = self._loggers[owner] = logging.getLogger(logger_name(owner))
        if not logger.isEnabledFor(level):
            return
        filename = source[1:] if source[:1] in (b"@", b"=") else source
        record = logger.makeRecord(
            logger.name,
            level,
            filename.decode("utf-8", "replace"),
            int(line),
            message.decode("utf-8", "replace"),
            (),
            None,
        )
        logger.handle(record)


#: The properties of a SocketAddress object (read by :func:`addr_get`).
SOCKET_ADDRESS_PROPERTIES: Final = ("host", "port", "isIPv6", "value")


def addr_get(value: IPAddress | SocketAddress, name: bytes) -> object:
    if isinstance(value, SocketAddress):
        if name == b"host":
            return value.host
        if name == b"port":
            return value.port
        if name == b"isIPv6":
            return value.is_ipv6
        return value.value.encode()
    result = getattr(value, IP_PROPERTIES[name.decode()])
    return result.encode() if isinstance(result, str) else result


def addr_compare(a: object, b: object) -> int:
    key_a = a.sort_key() if isinstance(a, IPAddress | SocketAddress) else ()
    key_b = b.sort_key() if isinstance(b, IPAddress | SocketAddress) else ()
    return (key_a > key_b) - (key_a < key_b)


def digest(kind: bytes, *values: bytes) -> tuple[bytes, ...]:
    """``mona:md5(...)``/``mona:sha256(...)``: one raw binary digest per argument."""
    name = kind.decode()
    return tuple(hashlib.new(name, value).digest() for value in values)


def hexdump(data: bytes, size: float | None) -> bytes:
    """``mona:dump``: 16 bytes a line, offset, hex and printable characters."""
    if size is None or math.isnan(size) or size >= len(data):
        shown = data  # (NaN, like no size at all: everything)
    else:
        shown = data[: max(0, int(size))]
    lines = [
        f"dump of {len(shown)} bytes" + ("" if len(shown) == len(data) else f" (of {len(data)})")
    ]
    for offset in range(0, len(shown), 16):
        chunk = shown[offset : offset + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  {text}")
    return "\n".join(lines).encode()


async def resolve(kind: bytes, first: object, second: object) -> tuple[object, bytes | None]:
    """The work behind the ...WithDNS factories: resolve through Trio, never blocking."""
    try:
        wildcard = IPAddress.wildcard(ipv6=False)
        if kind == b"ip":
            assert isinstance(first, bytes)
            text = first.decode("utf-8", "replace").strip() or "<empty>"
            target = parse_target(text, 0, default_host=wildcard, allow_names=True)
        else:
            target = parse_target(first, second, default_host=wildcard, allow_names=True)
        if isinstance(target, SocketAddress):
            return (target.host if kind == b"ip" else target), None
        name: HostName = target
    except AddressError as exc:
        return None, str(exc).encode()
    try:
        address = (await resolve_name(name))[0]
    except ResolveError as exc:
        return None, str(exc).encode()
    return (address.host if kind == b"ip" else address), None


def parse_address(
    kind: bytes, first: object, second: object
) -> tuple[IPAddress | SocketAddress | None, bytes | None]:
    try:
        if kind == b"ip":
            assert isinstance(first, bytes)
            return IPAddress.parse(first.decode("utf-8", "replace").strip()), None
        target = parse_target(first, second, default_host=IPAddress.wildcard(ipv6=False))
    except AddressError as exc:
        return None, str(exc).encode()
    assert isinstance(target, SocketAddress)
    return target, None
