"""IP and socket address values, and the parsing of every address argument form.

Sans-I/O: nothing here touches the network or resolves a name. The socket handles
call :func:`parse_target` with the arguments Lua gave them and either get a value to
use at once, a :class:`HostName` that ``connect`` resolves later, or an
:class:`AddressError` whose message becomes the method's documented failure return.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final

import attrs

from .errors import MonaError

__all__ = [
    "AddressError",
    "HostName",
    "IPAddress",
    "SocketAddress",
    "parse_port",
    "parse_target",
    "split_host_port",
]


class AddressError(MonaError, ValueError):
    """A malformed address, port or host name; the message names the cause."""


_HOSTNAME: Final = re.compile(
    r"(?=.{1,253}\.?$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?"
)
_ALL_DIGITS: Final = re.compile(r"[0-9]+")
#: What a service name (``"http"``) may look like: no NUL, no spaces, not too long.
_SERVICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}")
_IPV4_LIKE: Final = re.compile(r"[0-9]+(?:\.[0-9]+){3}")


@attrs.frozen(order=False, repr=False)
class IPAddress:
    """An IPv4 (4 bytes) or IPv6 (16 bytes) address, immutable."""

    packed: bytes

    @classmethod
    def parse(cls, text: str) -> IPAddress:
        """Parse a literal address; ``localhost`` is 127.0.0.1 and never looked up."""
        if text == "localhost":
            return cls(b"\x7f\x00\x00\x01")
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        if "%" in text:
            raise AddressError(f"invalid IP address '{text}' (zone indexes are not supported)")
        try:
            return cls(ipaddress.ip_address(text).packed)
        except ValueError:
            raise AddressError(f"invalid IP address '{text}'") from None

    @classmethod
    def wildcard(cls, ipv6: bool) -> IPAddress:
        return cls(bytes(16 if ipv6 else 4))

    def __repr__(self) -> str:
        return f"IPAddress({self.value!r})"

    # -- representation ---------------------------------------------------------
    @property
    def is_ipv6(self) -> bool:
        return len(self.packed) == 16

    @property
    def value(self) -> str:
        """IPv4 dotted; IPv6 RFC 5952 (lowercase, compressed), IPv4-mapped as ::ffff:a.b.c.d."""
        if not self.is_ipv6:
            return socket.inet_ntop(socket.AF_INET, self.packed)
        if self.packed[:12] == bytes(12) and self.packed[12:14] != bytes(2):
            # IPv4-compatible: inet_ntop would print the deprecated "::1.2.3.4"
            return str(ipaddress.IPv6Address(self.packed))
        return socket.inet_ntop(socket.AF_INET6, self.packed)

    def sort_key(self) -> tuple[int, bytes]:
        """Order: family first (IPv4 before IPv6), then the address bytes."""
        return (len(self.packed), self.packed)

    # -- predicates (docs/lua/addresses.rst) ------------------------------------
    @property
    def is_wildcard(self) -> bool:
        return not any(self.packed)

    @property
    def is_broadcast(self) -> bool:
        return self.packed == b"\xff\xff\xff\xff"

    @property
    def is_any_broadcast(self) -> bool:
        return not self.is_ipv6 and self.packed[3] == 0xFF

    @property
    def is_loopback(self) -> bool:
        if self.is_ipv6:
            return self.packed == _V6_LOOPBACK
        return self.packed[0] == 127

    @property
    def is_multicast(self) -> bool:
        if self.is_ipv6:
            return self.packed[0] == 0xFF
        return self.packed[0] & 0xF0 == 0xE0

    @property
    def is_unicast(self) -> bool:
        if self.is_ipv6:
            return not (self.is_wildcard or self.is_multicast)
        return not (self.is_wildcard or self.is_any_broadcast or self.is_multicast)

    @property
    def is_link_local(self) -> bool:
        p = self.packed
        if self.is_ipv6:
            return p[0] == 0xFE and p[1] & 0xC0 == 0x80
        return p[0] == 169 and p[1] == 254

    @property
    def is_site_local(self) -> bool:
        p = self.packed
        if self.is_ipv6:
            return p[0] == 0xFE and p[1] & 0xC0 == 0xC0
        return p[0] == 10 or (p[0] == 172 and p[1] & 0xF0 == 16) or (p[0] == 192 and p[1] == 168)

    @property
    def is_ipv4_compatible(self) -> bool:
        if not self.is_ipv6:
            return True
        return self.packed[:12] == bytes(12) and self.packed not in (bytes(16), _V6_LOOPBACK)

    @property
    def is_ipv4_mapped(self) -> bool:
        return not self.is_ipv6 or self.packed[:12] == _MAPPED_PREFIX

    def unmapped(self) -> IPAddress:
        """An IPv4-mapped IPv6 address as the IPv4 address it stands for; any other as is
        (a peer seen on a dual-stack socket is the same peer as over IPv4)."""
        if self.is_ipv6 and self.packed[:12] == _MAPPED_PREFIX:
            return IPAddress(self.packed[12:])
        return self

    def _v6_multicast_scope(self) -> int | None:
        return self.packed[1] & 0x0F if self.is_ipv6 and self.packed[0] == 0xFF else None

    @property
    def is_well_known_mc(self) -> bool:
        if self.is_ipv6:
            return self.packed[0] == 0xFF and self.packed[1] & 0xF0 == 0
        return self.packed[:3] == b"\xe0\x00\x00"

    @property
    def is_node_local_mc(self) -> bool:
        return self._v6_multicast_scope() == 0x1

    @property
    def is_link_local_mc(self) -> bool:
        if self.is_ipv6:
            return self._v6_multicast_scope() == 0x2
        return self.packed[:3] == b"\xe0\x00\x00"

    @property
    def is_site_local_mc(self) -> bool:
        if self.is_ipv6:
            return self._v6_multicast_scope() == 0x5
        return self.packed[:2] == b"\xef\xff"

    @property
    def is_org_local_mc(self) -> bool:
        if self.is_ipv6:
            return self._v6_multicast_scope() == 0x8
        return self.packed[0] == 239 and self.packed[1] & 0xFC == 192

    @property
    def is_global_mc(self) -> bool:
        if self.is_ipv6:
            return self._v6_multicast_scope() == 0xE
        return b"\xe0\x00\x01\x00" <= self.packed <= b"\xee\xff\xff\xff"

    @property
    def is_local(self) -> bool:
        return (
            self.is_wildcard
            or self.is_loopback
            or self.is_site_local
            or self.is_link_local
            or self.is_any_broadcast
            or self.is_node_local_mc
            or self.is_link_local_mc
            or self.is_site_local_mc
            or self.is_org_local_mc
        )


_MAPPED_PREFIX: Final = bytes(10) + b"\xff\xff"
_V6_LOOPBACK: Final = bytes(15) + b"\x01"

#: Where a port alone connects or sends to (docs/design.rst).
LOCALHOST: Final = IPAddress(b"\x7f\x00\x00\x01")

#: Lua property name -> IPAddress attribute, for the Lua bridge.
IP_PROPERTIES: Final[dict[str, str]] = {
    "value": "value",
    "isIPv6": "is_ipv6",
    "isWildcard": "is_wildcard",
    "isBroadcast": "is_broadcast",
    "isAnyBroadcast": "is_any_broadcast",
    "isLoopback": "is_loopback",
    "isMulticast": "is_multicast",
    "isUnicast": "is_unicast",
    "isLinkLocal": "is_link_local",
    "isSiteLocal": "is_site_local",
    "isIPv4Compatible": "is_ipv4_compatible",
    "isIPv4Mapped": "is_ipv4_mapped",
    "isWellKnownMC": "is_well_known_mc",
    "isNodeLocalMC": "is_node_local_mc",
    "isLinkLocalMC": "is_link_local_mc",
    "isSiteLocalMC": "is_site_local_mc",
    "isOrgLocalMC": "is_org_local_mc",
    "isGlobalMC": "is_global_mc",
    "isLocal": "is_local",
}


@attrs.frozen(repr=False)
class SocketAddress:
    """An IP address and a port, immutable."""

    host: IPAddress
    port: int
    #: The socket-module form, when known (kept to send back without formatting).
    _sockaddr: tuple[str, int] | tuple[str, int, int, int] | None = attrs.field(
        default=None, eq=False, repr=False
    )

    @classmethod
    def from_sockaddr(cls, sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> SocketAddress:
        """Build from what ``getsockname``/``getpeername``/``accept`` return."""
        host = sockaddr[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        packed = socket.inet_pton(family, host.partition("%")[0])
        return cls(IPAddress(packed), sockaddr[1], sockaddr)

    def __repr__(self) -> str:
        return f"SocketAddress({self.value!r})"

    @property
    def is_ipv6(self) -> bool:
        return self.host.is_ipv6

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if self.is_ipv6 else socket.AF_INET

    @property
    def value(self) -> str:
        if self.is_ipv6:
            return f"[{self.host.value}]:{self.port}"
        return f"{self.host.value}:{self.port}"

    def sockaddr(self) -> tuple[str, int] | tuple[str, int, int, int]:
        if self._sockaddr is not None:
            return self._sockaddr
        if self.is_ipv6:
            return (self.host.value, self.port, 0, 0)
        return (self.host.value, self.port)

    def sort_key(self) -> tuple[int, bytes, int]:
        return (*self.host.sort_key(), self.port)


@attrs.frozen
class HostName:
    """A host name and port still to be resolved (only ``connect`` accepts one)."""

    host: str
    port: int

    @property
    def value(self) -> str:
        return f"{self.host}:{self.port}"


def split_host_port(text: str) -> tuple[str, str | None]:
    """Split ``"host:port"`` at the last colon.

    IPv6 hosts must be bracketed to carry a port (``"[::1]:80"``); an unbracketed
    string with two or more colons is an IPv6 host with no port. A string of digits
    alone is a port.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"unbalanced brackets in address '{text}'")
        host, rest = text[1:end], text[end + 1 :]
        if "[" in host or "]" in rest:
            raise AddressError(f"unbalanced brackets in address '{text}'")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise AddressError(f"unexpected '{rest}' after ']' in address '{text}'")
        port = rest[1:]
        if not port:
            raise AddressError(f"missing port after ':' in address '{text}'")
        return host, port
    if "]" in text:
        raise AddressError(f"unbalanced brackets in address '{text}'")
    colons = text.count(":")
    if colons >= 2:
        return text, None
    if colons == 1:
        host, port = text.split(":")
        if not port:
            raise AddressError(f"missing port after ':' in address '{text}'")
        return host, port
    if _ALL_DIGITS.fullmatch(text):
        return "", text
    return text, None


def _shorten(text: str, limit: int = 40) -> str:
    """*text* for an error message: at most *limit* characters, control characters escaped."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    return shown.encode("unicode_escape").decode("ascii")


def parse_port(value: object) -> int:
    """A port from a number, a numeric string or a service name (``"http"``)."""
    if isinstance(value, bool):
        raise AddressError(f"invalid port {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise AddressError(f"port {value} is not an integer")
        value = int(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if _ALL_DIGITS.fullmatch(text):
            if len(text.lstrip("0")) > 5:
                raise AddressError(f"port {_shorten(text)} out of range 0-65535")
            value = int(text)
        else:
            if not _SERVICE.fullmatch(text):
                raise AddressError(f"invalid port '{_shorten(text)}'")
            try:
                return socket.getservbyname(text)
            except (OSError, UnicodeError):
                raise AddressError(f"invalid port '{text}'") from None
    if not isinstance(value, int):
        raise AddressError(f"invalid port {value!r}")
    if not 0 <= value <= 65535:
        raise AddressError(f"port {value} out of range 0-65535")
    return value


def _host_value(host: str, *, default: IPAddress, allow_names: bool) -> IPAddress | str:
    if not host:
        return default
    try:
        return IPAddress.parse(host)
    except AddressError:
        if not allow_names or _IPV4_LIKE.match(host):
            raise  # "1.2.3.4x" is a mistyped address, not a host name
    if not _HOSTNAME.fullmatch(host) or _ALL_DIGITS.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        raise AddressError(f"invalid host '{host}'")
    return host


def parse_target(
    first: object,
    second: object = None,
    *,
    default_host: IPAddress,
    allow_names: bool = False,
) -> SocketAddress | HostName:
    """Turn any address argument form (docs/design.rst) into an address.

    Forms: a port alone; ``"host:port"``; ``host, port`` (port a number or service
    name); a :class:`SocketAddress`; an :class:`IPAddress` and a port. Host names are
    returned as :class:`HostName` only when *allow_names* is true; otherwise only
    literal IPs and ``localhost`` are accepted.

    Raises:
        AddressError: the arguments do not form a valid address.
    """
    if isinstance(first, bytes):
        first = first.decode("utf-8", "replace")
    if isinstance(first, SocketAddress):
        if second is not None:
            raise AddressError("a SocketAddress takes no port argument")
        return first
    if isinstance(first, IPAddress):
        if second is None:
            raise AddressError("missing port after IPAddress")
        return SocketAddress(first, parse_port(second))
    if isinstance(first, int | float) and not isinstance(first, bool):
        if second is not None:
            raise AddressError("a port alone takes no second argument")
        return SocketAddress(default_host, parse_port(first))
    if not isinstance(first, str):
        raise AddressError(f"invalid address {first!r}")
    text = first.strip()
    if second is None:
        host, port_text = split_host_port(text)
        if port_text is None:
            raise AddressError(f"missing port in address '{text}'")
        port: int = parse_port(port_text)
    else:
        host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        port = parse_port(second)
    resolved = _host_value(host, default=default_host, allow_names=allow_names)
    if isinstance(resolved, str):
        return HostName(resolved, port)
    return SocketAddress(resolved, port)
