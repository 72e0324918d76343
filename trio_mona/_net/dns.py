"""Name resolution: the one place trio_mona turns a host name into addresses.

Always through ``trio.socket.getaddrinfo``, so it never blocks the loop and a host
program (or a test) can install its own resolver with
``trio.socket.set_custom_hostname_resolver``. Used by TCP ``connect`` and the
``...WithDNS`` factories; nothing else resolves (docs/design.rst, "Sockets").
"""

from __future__ import annotations

import socket

import trio

from .._core.addresses import HostName, SocketAddress
from .._core.errors import MonaError, os_message


class ResolveError(MonaError):
    """A name did not resolve; the message is the one Lua sees."""


async def resolve_name(name: HostName) -> list[SocketAddress]:
    """Every IPv4 and IPv6 address of *name*, in the resolver's order (never empty)."""
    try:
        infos = await trio.socket.getaddrinfo(name.host, name.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ResolveError(f"cannot resolve '{name.host}': {os_message(exc)}") from None
    addresses = [
        SocketAddress.from_sockaddr(sockaddr)  # type: ignore[arg-type]  # no AF_INET6 bytes
        for family, *_, sockaddr in infos
        if family in (socket.AF_INET, socket.AF_INET6)
    ]
    if not addresses:
        raise ResolveError(f"cannot resolve '{name.host}': no IP address")
    return addresses
