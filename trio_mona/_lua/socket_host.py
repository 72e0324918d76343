"""The Python functions ``_lua/socket.lua`` calls: LuaSocket's module functions and
the doorway to its socket handles (``_net/luasocket.py``).

Lua gets back plain values (bytes, floats, booleans, None), handles it keeps opaque,
or ``None, None, token, suspension`` for a call that has to wait (docs/lua/luasocket.rst).
"""

from __future__ import annotations

import ipaddress
import math
import resource
import select
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import trio

from .._core.events import TIMED_OUT
from .._net import luasec
from .._net.luasocket import LuaSocket, Parker
from .._net.luasocket_options import LUA_TYPES, Answer, error_text, gai_text, port_number
from .._net.sockets import Sockets, tls_file_refused

#: The families a Lua call names.
FAMILIES: Final = {b"inet": socket.AF_INET, b"inet6": socket.AF_INET6, b"unspec": socket.AF_UNSPEC}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


GAI_SERVICE: Final = b"service not supported for socket type"


def _port(text: bytes, kind: bytes) -> Answer:
    """A port argument (Lua's text of it) as a number, or LuaSocket's failure: *kind*
    is ``tcp`` or ``udp``, ``sendto`` for the C library's own words (that path of
    LuaSocket reports them)."""
    value = _text(text)
    port = port_number(value, udp=kind != b"tcp")
    if port is not None:
        return (port,)
    if kind != b"sendto":
        return None, GAI_SERVICE
    unsigned = value.removeprefix("-")
    if value.startswith("-") and unsigned.isdigit():
        return None, b"Servname not supported for ai_socktype"
    return None, b"Name or service not known"


def _family_name(family: int) -> bytes:
    return b"inet6" if family == socket.AF_INET6 else b"inet"


class SocketHost:
    """Builds the ``ls_*`` entries of the host table for one runtime."""

    def __init__(
        self,
        sockets: Sockets,
        parker: Parker,
        table: Callable[[Mapping[str, object]], Any],
        sequence: Callable[[list[object]], Any],
    ) -> None:
        self._sockets = sockets
        self._parker = parker
        self._table = table
        self._sequence = sequence

    def functions(self) -> dict[str, object]:
        return {
            "ls_new": self.new,
            "ls_kind": lambda h: h.kind.encode(),
            "ls_family": lambda h: _family_name(h.family) if h.sock is not None else b"unspec",
            "ls_port": _port,
            "ls_option_types": LUA_TYPES,
            "ls_connect_failed": LuaSocket.connect_failed,
            "ls_gettimeout": lambda h: (h.block, h.total),
            "ls_close": LuaSocket.close,
            "ls_serial": lambda h: h.serial,
            "ls_close_collected": self.close_collected,
            "ls_getsockname": LuaSocket.getsockname,
            "ls_getpeername": LuaSocket.getpeername,
            "ls_settimeout": lambda h, value, mode: h.settimeout(value, mode),
            "ls_setoption": self.setoption,
            "ls_getoption": LuaSocket.getoption,
            "ls_getfd": LuaSocket.getfd,
            "ls_dirty": lambda h: bool(h.buffer),
            "ls_bind": lambda h, ip, port: h.bind(_text(ip), int(port)),
            "ls_listen": LuaSocket.listen,
            "ls_accept": lambda first, timed_out, h: h.accept(first, timed_out),
            "ls_connect_start": lambda h, ip, port: h.connect_start(_text(ip), int(port)),
            "ls_connect_finish": LuaSocket.connect_finish,
            "ls_receive": LuaSocket.receive,
            "ls_send": LuaSocket.send,
            "ls_shutdown": LuaSocket.shutdown,
            "ls_getstats": lambda h: (h.received, h.sent, time.monotonic() - h.born),
            "ls_setstats": self.setstats,
            "ls_disconnect": LuaSocket.disconnect,
            "ls_send_datagram": lambda h, data, ip, port: h.send_datagram(
                data, None if ip is None else _text(ip), int(port)
            ),
            "ls_receive_datagram": lambda h, size, first, timed_out: h.receive_datagram(
                int(size), first, timed_out
            ),
            "ls_resolve": self.resolve,
            "ls_select": self.select,
            "ls_deadline": lambda timeout: (
                math.inf if timeout is None or timeout < 0 else trio.current_time() + timeout
            ),
            "ls_sleep": self.sleep,
            "ls_gettime": lambda *_: time.time(),
            "ls_gethostname": lambda: socket.gethostname().encode(),
            "ls_setsize": lambda: float(resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
            "ls_dns": self.dns,
            "ls_tls_context": self.tls_context,
            "ls_tls_wrap": self.tls_wrap,
            "ls_tls_sni": self.tls_sni,
            "ls_tls_handshake": LuaSocket.handshake,
            "ls_tls_peer": lambda h: self._peer(h),
            "ls_tls_verified": lambda h: bool(
                h.secure is not None
                and h.secure.established
                and h.secure.context.verify_mode == ssl.CERT_REQUIRED
            ),
        }

    # -- LuaSec (require "ssl": docs/lua/luasec.rst) --------------------------------------
    def tls_context(self, mode: bytes, protocol: bytes, verify_peer: bool,
                    cafile: bytes | None, certificate: bytes | None,
                    key: bytes | None) -> ssl.SSLContext | tuple[None, bytes]:  # fmt: skip
        refused = tls_file_refused(self._sockets, cafile, certificate, key)
        if refused is not None:
            return None, refused.encode()
        try:
            return luasec.context(mode, protocol, verify_peer, cafile, certificate, key)
        except luasec.ContextError as error:
            return None, str(error).encode()

    def tls_wrap(self, handle: LuaSocket, made: ssl.SSLContext) -> bool | tuple[None, bytes]:
        """``ssl.wrap``: the connection speaks TLS from now on (after ``dohandshake``)."""
        if handle.kind != "client" or handle.closed or handle.sock is None:
            return None, b"closed"
        if handle.secure is not None:
            return None, b"already wrapped"
        handle.secure = luasec.Secure(made, server_side=made.protocol == ssl.PROTOCOL_TLS_SERVER)
        return True

    def tls_sni(self, handle: LuaSocket, name: bytes) -> None:
        if handle.secure is not None:
            handle.secure.sni = name.decode("utf-8", "replace")

    def _peer(self, handle: LuaSocket) -> Any:
        found = handle.secure.peer() if handle.secure is not None else None
        if found is None:
            return None
        return (found.pem, self._sequence(list(found.subject)), self._sequence(list(found.issuer)),
                found.not_before, found.not_after, found.serial)  # fmt: skip

    # -- sockets ------------------------------------------------------------------
    def new(self, owner: bytes, kind: bytes, family: bytes) -> LuaSocket | tuple[None, bytes]:
        handle = LuaSocket(
            self._sockets,
            self._parker,
            owner,
            "unconnected" if kind == b"udp" else "master",
            FAMILIES[family],
        )
        if family != b"unspec":
            try:
                handle.ensure(FAMILIES[family])
            except OSError as exc:
                return None, error_text(exc)
        handle.sockets.luasocket_opened(handle)
        return handle

    def close_collected(self, serial: int) -> None:
        """The Lua object of socket *serial* was collected: close the socket."""
        handle = self._sockets.luasockets.get(serial)
        if handle is not None:
            handle.unload()

    @staticmethod
    def setoption(handle: LuaSocket, name: bytes, value: object, extra: object) -> Answer:
        if name == b"linger":
            return handle.setoption(name, (bool(value), extra))
        if name.endswith(b"-membership"):
            return handle.setoption(name, (value, extra))
        return handle.setoption(name, value)

    @staticmethod
    def setstats(handle: LuaSocket, received: float, sent: float, age: float) -> float:
        handle.received, handle.sent = float(received), float(sent)
        handle.born = time.monotonic() - float(age)
        return 1.0

    def sleep(self, owner: bytes, seconds: float) -> tuple[int, object]:
        seconds = 0.0 if math.isnan(seconds) or seconds < 0 else seconds
        return self._parker.park(owner, trio.current_time() + seconds)

    # -- names ----------------------------------------------------------------------
    def resolve(self, address: bytes, family: bytes, passive: bool) -> Answer:
        """The addresses for *address*, at once for a literal or ``*``, else a wait
        whose answer they are (through ``trio.socket.getaddrinfo``)."""
        host = _text(address)
        if host == "*":
            return (b"::" if family == b"inet6" else b"0.0.0.0",)
        if _literal(host):
            return (host.encode(),)
        wanted = FAMILIES.get(family, socket.AF_UNSPEC)

        async def look_up() -> tuple[object, ...]:
            try:
                found = await trio.socket.getaddrinfo(
                    host, None, wanted, socket.SOCK_STREAM, 0, socket.AI_PASSIVE if passive else 0
                )
            except (socket.gaierror, UnicodeError):
                return None, b"host not found"
            ips: list[bytes] = []
            for *_, sockaddr in found:
                ip = str(sockaddr[0]).encode()
                if ip not in ips:
                    ips.append(ip)
            return tuple(ips) if ips else (None, b"host not found")

        token, suspension = self._parker.wait_for(b"", look_up)
        return None, None, token, suspension

    def dns(self, kind: bytes, name: object, extra: object) -> Answer:
        """``socket.dns.*``: always a wait (a look-up may take time)."""
        work: Callable[[], Awaitable[tuple[object, ...]]]
        host = _text(name) if name is not None else None

        async def toip() -> tuple[object, ...]:
            assert host is not None
            try:
                found = await trio.socket.getaddrinfo(
                    host, None, socket.AF_INET, socket.SOCK_STREAM
                )
            except (socket.gaierror, UnicodeError):
                return None, b"host not found"
            ips = list(dict.fromkeys(str(entry[4][0]).encode() for entry in found))
            resolved = {"name": host, "alias": [], "ip": ips}
            return ips[0], self._table(resolved)

        async def tohostname() -> tuple[object, ...]:
            assert host is not None
            try:
                ip = host if _literal(host) else (await toip())[0]
                if ip is None:
                    return None, b"host not found"
                name, _ = await trio.socket.getnameinfo((_text(ip), 0), 0)
            except (socket.gaierror, socket.herror, UnicodeError):
                return None, b"host not found"
            return name.encode(), self._table({"name": name, "alias": [], "ip": [_text(ip)]})

        async def getaddrinfo() -> tuple[object, ...]:
            assert host is not None
            try:
                found = await trio.socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
            except socket.gaierror as exc:
                return None, gai_text(exc)
            except UnicodeError:
                return None, b"host not found"
            entries = [
                self._table({"family": _family_name(entry[0]).decode(), "addr": str(entry[4][0])})
                for entry in found
            ]
            return (self._sequence(list(entries)),)

        async def getnameinfo() -> tuple[object, ...]:
            port = 0 if extra is None else port_number(_text(extra), udp=False)
            if port is None:
                return None, GAI_SERVICE
            try:
                names, service = await trio.socket.getnameinfo((host or "0.0.0.0", port), 0)
            except socket.gaierror as exc:
                return None, gai_text(exc)
            except (socket.herror, UnicodeError, OverflowError):
                return None, b"host not found"
            return self._sequence([names]), service.encode() if extra is not None else None

        work = {
            b"toip": toip,
            b"tohostname": tohostname,
            b"getaddrinfo": getaddrinfo,
            b"getnameinfo": getnameinfo,
        }[kind]
        token, suspension = self._parker.wait_for(b"", work)
        return None, None, token, suspension

    # -- select ---------------------------------------------------------------------
    def select(self, recv: Any, send: Any, deadline: float, timed_out: bool) -> Answer:
        """``socket.select``: which sockets are ready now, as two strings of ``0``/``1``
        in table order; a wait while none is and the deadline is ahead."""
        readers = [recv[i] for i in range(1, len(recv) + 1)]
        writers = [send[i] for i in range(1, len(send) + 1)]
        poll = _ready_now(readers, writers)
        if timed_out or b"1" in poll[0] or b"1" in poll[1] or deadline <= trio.current_time():
            return poll
        watched = [h for h in (*readers, *writers) if h.sock is not None and not h.closed]

        async def until_ready() -> tuple[object, ...]:
            event = trio.Event()
            for handle in watched:
                handle.watch_for_select(event)
            epoll = _epoll_for(readers, writers)
            try:
                with trio.move_on_at(deadline):
                    async with trio.open_nursery() as nursery:

                        async def first(wait: Callable[[], Awaitable[object]]) -> None:
                            await wait()
                            nursery.cancel_scope.cancel()

                        async def epoll_ready() -> None:
                            await trio.lowlevel.wait_readable(epoll)

                        nursery.start_soon(first, event.wait)
                        nursery.start_soon(first, epoll_ready)
                    return ()
                return TIMED_OUT
            finally:
                epoll.close()
                for handle in watched:
                    handle.unwatch(event)

        token, suspension = self._parker.wait_for(b"", until_ready)
        return None, None, token, suspension


def _masks(
    readers: list[LuaSocket], writers: list[LuaSocket], reading: int, writing: int
) -> dict[int, int]:
    """The events to watch per descriptor (closed sockets left out)."""
    masks: dict[int, int] = {}
    for handles, event in ((readers, reading), (writers, writing)):
        for handle in handles:
            if handle.sock is not None and not handle.closed:
                fd = handle.sock.fileno()
                masks[fd] = masks.get(fd, 0) | event
    return masks


def _ready_now(readers: list[LuaSocket], writers: list[LuaSocket]) -> tuple[bytes, bytes]:
    poller = select.poll()
    fds = _masks(readers, writers, select.POLLIN, select.POLLOUT)
    for fd, mask in fds.items():
        poller.register(fd, mask)
    ready = dict(poller.poll(0)) if fds else {}
    bad = select.POLLERR | select.POLLHUP

    def flags(handles: list[LuaSocket], wanted: int, buffered: bool) -> bytes:
        marks = bytearray()
        for handle in handles:
            sock = handle.sock
            live = sock is not None and not handle.closed
            mask = ready.get(sock.fileno(), 0) if live and sock is not None else 0
            hit = live and (bool(mask & (wanted | bad)) or (buffered and bool(handle.buffer)))
            marks += b"1" if hit else b"0"
        return bytes(marks)

    return flags(readers, select.POLLIN, True), flags(writers, select.POLLOUT, False)


def _epoll_for(readers: list[LuaSocket], writers: list[LuaSocket]) -> select.epoll:
    epoll = select.epoll()
    for fd, mask in _masks(readers, writers, select.EPOLLIN, select.EPOLLOUT).items():
        epoll.register(fd, mask)
    return epoll
