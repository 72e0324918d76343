"""One connection to Redis over a Trio socket, for the commits the executor awaits
(docs/scaling.rst, "Shared data"): commands are written here as RESP arrays of bulk
strings, replies are read by hiredis' parser.

Measured against redis-py in a worker thread: the thread waited for the GIL while the
loop ran (up to Python's 5 ms switch interval), so that each commit took several times
its round trip (numbers in docs/scaling.rst).
"""

from __future__ import annotations

import ssl
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import trio

#: Bytes read from the socket at most per call.
READ_SIZE: Final = 65536


class WireError(Exception):
    """Redis cannot be reached, closed the connection, or answered with an error."""


#: What a ``rediss://`` URL's query may say about TLS (as redis-py reads it too).
TLS_OPTIONS: Final = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


def options(url: str) -> dict[str, str]:
    """Where and how to connect: ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]``,
    ``rediss://`` the same over TLS (``?ssl_ca_certs=PEM`` and the other
    :data:`TLS_OPTIONS`), or ``unix://[[USER]:PASSWORD@]PATH[?db=DB]``."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    found = {"db": query.get("db", [""])[0] or parts.path.strip("/")}
    if parts.scheme == "rediss":
        found["tls"] = "yes"
        found.update((name, query[name][0]) for name in TLS_OPTIONS if name in query)
    if parts.scheme == "unix":
        found["path"] = parts.path
        found["db"] = parse_qs(parts.query).get("db", [""])[0]
    else:
        found["host"], found["port"] = parts.hostname or "localhost", str(parts.port or 6379)
    if parts.password is not None:
        found["password"] = unquote(parts.password)
    if parts.username:
        found["username"] = unquote(parts.username)
    return found


def tls_context(options: dict[str, str]) -> ssl.SSLContext:
    """The TLS settings of a ``rediss://`` URL: the system's CAs or ``ssl_ca_certs``, a
    client certificate if given; ``ssl_cert_reqs=none`` checks nothing (tests only)."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if "ssl_certfile" in options:
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    if options.get("ssl_cert_reqs") == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def encode(args: tuple[bytes, ...]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(parts)


class RedisWire:
    """Commands to the Redis at *url* (``redis://``, ``unix://``), one at a time, each
    within *timeout* seconds (the connection is made again after any failure)."""

    def __init__(self, url: str, *, connect_timeout: float, timeout: float) -> None:
        self._options = options(url)
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._stream: trio.abc.Stream | None = None
        self._reader = hiredis.Reader()
        self._lock = trio.Lock()

    async def call(self, *args: bytes) -> object:
        """The reply to the command *args*.

        Raises:
          WireError: no reply (the message says why), or Redis's error reply.
        """
        async with self._lock:
            try:
                with trio.fail_after(self._timeout):
                    if self._stream is None:
                        await self._connect()
                    return await self._exchange(args)
            except trio.TooSlowError:
                self.close()
                raise WireError(f"no answer within {self._timeout} s") from None
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.close()
                raise WireError(str(exc) or type(exc).__name__) from None
            except BaseException:
                self.close()  # (cancelled mid-command: what it would read is unknown)
                raise

    async def _exchange(self, args: tuple[bytes, ...]) -> object:
        stream = self._stream
        assert stream is not None
        await stream.send_all(encode(args))
        reader = self._reader
        while True:
            reply = reader.gets()
            if reply is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise WireError(str(reply))
                return reply
            data = await stream.receive_some(READ_SIZE)
            if not data:
                self.close()
                raise WireError("Redis closed the connection")
            reader.feed(bytes(data))

    async def _connect(self) -> None:
        options = self._options
        with trio.fail_after(self._connect_timeout):
            if "path" in options:
                self._stream = await trio.open_unix_socket(options["path"])
            elif "tls" in options:
                self._stream = await trio.open_ssl_over_tcp_stream(
                    options["host"], int(options["port"]), ssl_context=tls_context(options)
                )
            else:
                self._stream = await trio.open_tcp_stream(options["host"], int(options["port"]))
        self._reader = hiredis.Reader()
        password, username = options.get("password"), options.get("username")
        if password is not None:
            auth = (username.encode(), password.encode()) if username else (password.encode(),)
            await self._exchange((b"AUTH", *auth))
        if options.get("db"):
            await self._exchange((b"SELECT", str(options["db"]).encode()))

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if isinstance(stream, trio.SSLStream):  # (no goodbye: Redis needs none)
            stream = stream.transport_stream
        if isinstance(stream, trio.SocketStream):
            stream.socket.close()
