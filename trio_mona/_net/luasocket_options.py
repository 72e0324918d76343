"""LuaSocket's words and options for what the system says (``_net/luasocket.py``)."""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Final

#: A LuaSocket method's answer (see ``_net/luasocket.py``).
Answer = tuple[object, ...]


def error_text(exc: OSError | int) -> bytes:
    """LuaSocket's message for a system error (its own words for the common ones)."""
    code = exc if isinstance(exc, int) else (exc.errno or 0)
    if code in (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE):
        return b"closed"
    if code == errno.ETIMEDOUT:
        return b"timeout"
    known = _ERRORS.get(code)
    if known is not None:
        return known
    return (os.strerror(code) if code else str(exc)).encode()


_ERRORS: Final = {
    errno.EADDRINUSE: b"address already in use",
    errno.EISCONN: b"already connected",
    errno.EACCES: b"permission denied",
    errno.ECONNREFUSED: b"connection refused",
}


_OPTIONS: Final = {
    b"keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE, "bool"),
    b"linger": (socket.SOL_SOCKET, socket.SO_LINGER, "linger"),
    b"reuseaddr": (socket.SOL_SOCKET, socket.SO_REUSEADDR, "bool"),
    b"reuseport": (socket.SOL_SOCKET, socket.SO_REUSEPORT, "bool"),
    b"broadcast": (socket.SOL_SOCKET, socket.SO_BROADCAST, "bool"),
    b"dontroute": (socket.SOL_SOCKET, socket.SO_DONTROUTE, "bool"),
    b"tcp-nodelay": (socket.IPPROTO_TCP, socket.TCP_NODELAY, "bool"),
    b"tcp-keepidle": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, "int"),
    b"tcp-keepcnt": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, "int"),
    b"tcp-keepintvl": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, "int"),
    b"ipv6-v6only": (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, "bool"),
    b"ip-multicast-ttl": (socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, "int"),
    b"ip-multicast-loop": (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, "bool"),
    b"ipv6-unicast-hops": (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, "int"),
    b"ipv6-multicast-hops": (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, "int"),
    b"ipv6-multicast-loop": (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, "bool"),
    b"ip-multicast-if": (socket.IPPROTO_IP, socket.IP_MULTICAST_IF, "address"),
    b"ip-add-membership": (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, "membership"),
    b"ip-drop-membership": (socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, "membership"),
    b"ipv6-add-membership": (socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, "membership6"),
    b"ipv6-drop-membership": (socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, "membership6"),
}


#: What each option's value must be in Lua (``setoption`` checks it first, as
#: LuaSocket does): the one list of options is :data:`_OPTIONS`.
LUA_TYPES: Final = {
    name.decode(): {"bool": "boolean", "int": "number", "address": "string"}.get(kind, "table")
    for name, (_, _, kind) in _OPTIONS.items()
}


def _ipv4(text: object) -> bytes:
    """A packed IPv4 address (``*``: any), ``OSError`` when it is none."""
    value = text.decode() if isinstance(text, bytes) else str(text)
    return socket.inet_aton("0.0.0.0" if value == "*" else value)


def _packed(kind: str, value: object) -> bytes | int:
    """What ``setsockopt`` takes for an option of *kind* (tables come as tuples)."""
    if kind == "bool":
        return 1 if value else 0
    if kind == "linger":
        on, seconds = value if isinstance(value, tuple) else (False, 0)
        return struct.pack("ii", 1 if on else 0, int(seconds))
    if kind == "address":
        return _ipv4(value)
    if kind == "membership":
        group, interface = value if isinstance(value, tuple) else (value, "*")
        return _ipv4(group) + _ipv4(interface if interface is not None else "*")
    if kind == "membership6":
        group, interface = value if isinstance(value, tuple) else (value, 0)
        text = group.decode() if isinstance(group, bytes) else str(group)
        return socket.inet_pton(socket.AF_INET6, text) + struct.pack("@I", int(interface or 0))
    assert isinstance(value, int | float)
    return int(value)


def dissolve(sock: socket.socket) -> None:
    """Dissolve a UDP association (connect to AF_UNSPEC, as LuaSocket does)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    unspec = (ctypes.c_ubyte * 16)()  # sa_family 0 = AF_UNSPEC
    if libc.connect(sock.fileno(), unspec, 16) != 0:
        code = ctypes.get_errno()
        if code not in (0, errno.EAFNOSUPPORT):
            raise OSError(code, os.strerror(code))


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


#: What getaddrinfo's errors read as in LuaSocket (``socket_gaistrerror``).
GAI_ERRORS: Final = {
    socket.EAI_AGAIN: b"temporary failure in name resolution",
    socket.EAI_BADFLAGS: b"invalid value for ai_flags",
    socket.EAI_FAIL: b"non-recoverable failure in name resolution",
    socket.EAI_FAMILY: b"ai_family not supported",
    socket.EAI_MEMORY: b"memory allocation failure",
    socket.EAI_NONAME: b"host or service not provided, or not known",
    socket.EAI_SERVICE: b"service not supported for socket type",
    socket.EAI_SOCKTYPE: b"ai_socktype not supported",
}


def gai_text(exc: socket.gaierror) -> bytes:
    return GAI_ERRORS.get(exc.errno, str(exc).encode()) if exc.errno else str(exc).encode()


def port_number(text: str, udp: bool) -> int | None:
    """The port a LuaSocket port argument names, as getaddrinfo reads the service
    text: decimal digits (taken modulo 65536, as the C library does; none: 0), or a
    service name (``http``). None: no such service."""
    if text.isdigit() or not text:
        return int(text or "0") & 0xFFFF
    if not text.isascii() or not text.replace("-", "").replace("_", "").isalnum():
        return None
    try:
        return socket.getservbyname(text, "udp" if udp else "tcp")
    except OSError:
        return None


def address_of(sock: socket.socket | None, *, peer: bool) -> Answer:
    if sock is None:  # (no socket yet, or closed: what LuaSocket's system call says)
        return None, b"Transport endpoint is not connected" if peer else b"Bad file descriptor"
    try:
        address = sock.getpeername() if peer else sock.getsockname()
    except OSError as exc:
        return None, error_text(exc)
    family = b"inet6" if sock.family == socket.AF_INET6 else b"inet"
    # (LuaSocket 3.0 gives the peer's port as a number, its own as a string)
    return address[0].encode(), address[1] if peer else str(address[1]).encode(), family


def set_option(sock: socket.socket | None, name: bytes, value: object) -> Answer:
    """``setoption``: 1, or nil and an error (\"unsupported option\": Lua raises)."""
    option = _OPTIONS.get(name)
    if option is None or sock is None:  # (no socket yet, or closed: LuaSocket's words)
        return None, b"unsupported option" if option is None else b"setsockopt failed"
    level, number, kind = option
    try:
        sock.setsockopt(level, number, _packed(kind, value))
    except (OSError, ValueError, TypeError) as exc:
        return None, error_text(exc) if isinstance(exc, OSError) else b"invalid option value"
    return (1.0,)


def get_option(sock: socket.socket | None, name: bytes) -> Answer:
    """``getoption``: the value(s), or nil and an error."""
    if name == b"error":
        if sock is None:
            return None, b"closed"
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return (error_text(code) if code else None,)
    option = _OPTIONS.get(name)
    if option is None or sock is None:
        return None, b"unsupported option" if option is None else b"getsockopt failed"
    level, number, kind = option
    try:
        if kind == "linger":
            on, seconds = struct.unpack("ii", sock.getsockopt(level, number, 8))
            return bool(on), seconds
        if kind == "address":
            return (socket.inet_ntoa(sock.getsockopt(level, number, 4)).encode(),)
        if kind.startswith("membership"):
            return None, b"unsupported option"  # (set only, as in LuaSocket)
        raw = sock.getsockopt(level, number)
    except OSError as exc:
        return None, error_text(exc)
    return (bool(raw),) if kind == "bool" else (float(raw),)
