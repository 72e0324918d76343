"""The runtime: one Lua state, one executor task, the socket tasks, the applications.

:func:`open_runtime` owns a nursery holding the executor task and every socket task;
leaving it stops listeners, runs ``onStop``, flushes and closes every connection
within the linger time, then cancels what is left (docs/design.rst).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, NoReturn

import attrs
import trio

from . import _host as host
from ._addresses import (
    HostName,
    IPAddress,
    SocketAddress,
)
from ._apps import Applications, discover
from ._blacklist import Blacklist
from ._config import ConfigError, ConfigValue, Settings, load_config, nest, typed
from ._endpoint import Writes, start_contained
from ._events import Call, DatagramReceived, DataReceived, Event, Reads
from ._executor import Executor, Suspension
from ._files import AppFiles
from ._hub import Hub
from ._lua import LuaBridge, LuaTable
from ._signals import stop_requested
from ._tcp import TCP_PROPERTIES, TCP_SERVER_PROPERTIES, TCPConnection, TCPServer
from ._udp import UDP_PROPERTIES, UDPSocket

__all__ = ["BoundAddress", "Runtime", "RuntimeStatistics", "StartupError", "open_runtime", "serve"]

log = logging.getLogger("trio_mona")

VERSION: Final = "0.1.0"
NOTE: Final = 25
TRACE: Final = 5
logging.addLevelName(NOTE, "NOTE")
logging.addLevelName(TRACE, "TRACE")


class StartupError(Exception):
    """The applications could not start. The message is one line naming file and line."""


@attrs.frozen
class BoundAddress:
    """An address one of the runtime's servers or sockets is bound to."""

    kind: str  #: ``"tcp"`` (a listening TCP server) or ``"udp"``
    host: str
    port: int
    app: str  #: path of the owning application (``""`` for the root)


@attrs.frozen
class RuntimeStatistics:
    """A snapshot of what the runtime is doing (:meth:`Runtime.statistics`)."""

    engine: str
    tcp_connections: int
    tcp_servers: int
    udp_sockets: int
    events_dispatched: int
    bytes_received: int
    bytes_sent: int
    #: Bytes handed to a flusher task because the kernel could not take them when they
    #: were written (or the socket was still connecting).
    bytes_queued: int
    #: Bytes the applications sent that are not written yet, over every connection.
    bytes_unsent: int
    lua_memory: int


def _wildcard() -> IPAddress:
    """``::`` when this host can listen dual-stack, else ``0.0.0.0``."""
    if socket.has_ipv6:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                probe.bind(("::", 0))
            return IPAddress.wildcard(ipv6=True)
        except OSError:
            pass
    return IPAddress.wildcard(ipv6=False)


class Runtime:
    """A running set of Lua applications. Get one from :func:`open_runtime` or :func:`serve`."""

    def __init__(
        self,
        apps_dir: Path,
        config: Mapping[str, ConfigValue],
        settings: Settings,
        nursery: trio.Nursery,
    ) -> None:
        self.apps_dir = apps_dir
        self.settings = settings
        self.nursery = nursery
        self.wildcard = _wildcard()
        self.bytes_received = 0
        self.bytes_sent = 0
        self.bytes_queued = 0
        #: Bytes sent by Lua and not written yet, over every connection (max_unsent).
        self.unsent = 0
        self._connections: set[TCPConnection] = set()
        self._connections_gone = trio.Event()
        self._bound: dict[object, BoundAddress] = {}
        self._udp_sockets: set[UDPSocket] = set()
        self._blacklist = Blacklist()
        self._send, receive = trio.open_memory_channel[Event](math.inf)
        #: The batch that reads join until another event is posted (see deliver).
        self._reads: Reads | None = None
        self.writes = Writes()
        self.hub = Hub()
        self._files = AppFiles(apps_dir, confined=settings.sandbox)
        self.bridge = LuaBridge(
            settings.engine,
            self._host(config),
            max_memory=settings.max_memory,
            sandbox=settings.sandbox,
            unsafe_native=settings.unsafe_native,
        )
        self._executor = Executor(self.bridge, receive, self.post, self.hub.poll, self.writes)
        self._tokens = itertools.count(1)
        self.applications = Applications(self, apps_dir)
        self._background_scope = trio.CancelScope()

    def _host(self, config: Mapping[str, ConfigValue]) -> dict[str, object]:
        """The Python functions and data the Lua prelude may call."""

        def new_tcp_client(owner: bytes) -> TCPConnection:
            return TCPConnection(self, owner)

        def new_tcp_server(owner: bytes) -> TCPServer:
            return TCPServer(self, owner)

        def new_udp_socket(owner: bytes, allow_broadcast: bool) -> UDPSocket:
            return UDPSocket(self, owner, allow_broadcast=allow_broadcast)

        def resolve_start(kind: bytes, first: object, second: object) -> tuple[int, Suspension]:
            return self._start_suspension(host.resolve, kind, first, second)

        return {
            "internal_error": host.internal_error,
            "stopping": stop_requested,
            "log": host.LuaLog(),
            "configs": _configs_table(config),
            "environment": self._environment(),
            "tcp_client_new": new_tcp_client,
            "tcp_connect": TCPConnection.connect,
            "tcp_send": TCPConnection.send,
            "tcp_send_held": TCPConnection.send_held,
            "tcp_disconnect": TCPConnection.disconnect,
            "tcp_get": lambda handle, name: TCP_PROPERTIES[name](handle),
            "tcp_server_new": new_tcp_server,
            "tcp_server_start": TCPServer.start,
            "tcp_server_stop": TCPServer.stop,
            "tcp_server_get": lambda handle, name: TCP_SERVER_PROPERTIES[name](handle),
            "udp_new": new_udp_socket,
            "udp_attach": UDPSocket.attach,
            "udp_bind": UDPSocket.bind,
            "udp_connect": UDPSocket.connect,
            "udp_disconnect": UDPSocket.disconnect,
            "udp_send": UDPSocket.send,
            "udp_close": UDPSocket.close,
            "udp_get": lambda handle, name: UDP_PROPERTIES[name](handle),
            "blacklist": self._blacklist.change,
            "resolve_start": resolve_start,
            "absolute_path": self._absolute_path,
            "digest": host.digest,
            "time_ms": lambda: int(time.time() * 1000),
            "hexdump": host.hexdump,
            "list_paths": lambda folder: self._files.list_paths(folder, self.bridge.sequence),
            "read_source": self._files.read_source,
            "load_child": lambda parent, name: self.applications.load_child(parent, name),
            "child_loaded": lambda path, ok, error: self.applications.child_loaded(path, ok, error),
            "set_timer": lambda owner, function, delay: self.applications.set_timer(
                owner, function, delay
            ),
            "addr_get": host.addr_get,
            "addr_compare": host.addr_compare,
            "parse_address": host.parse_address,
        }

    # -- public API -------------------------------------------------------------
    @property
    def engine(self) -> str:
        """The Lua engine running the applications, e.g. ``"Lua 5.4"``."""
        return self.bridge.version

    @property
    def bound_addresses(self) -> tuple[BoundAddress, ...]:
        """Where the applications' servers and sockets are bound, oldest first."""
        return tuple(self._bound.values())

    def statistics(self) -> RuntimeStatistics:
        """Counters and gauges, for monitoring and tests."""
        return RuntimeStatistics(
            engine=self.engine,
            tcp_connections=len(self._connections),
            tcp_servers=sum(1 for a in self._bound.values() if a.kind == "tcp"),
            udp_sockets=len(self._udp_sockets),
            events_dispatched=self._executor.events_dispatched,
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
            bytes_queued=self.bytes_queued,
            bytes_unsent=self.unsent,
            lua_memory=self.bridge.memory_used(),
        )

    # -- for the handles --------------------------------------------------------
    def post(self, event: Event) -> None:
        """Hand an event to the executor (never blocks: the channel is unbounded and
        each connection bounds what it has in flight)."""
        self._reads = None  # reads from now on go after this event
        try:
            self._send.send_nowait(event)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # shutting down: no Lua runs any more

    def deliver(self, read: DataReceived | DatagramReceived) -> None:
        """Hand a read to the executor: it joins the batch posted last, when the batch
        is still the newest thing on the channel, so events keep the order they
        happened in while a burst of reads costs one channel message."""
        batch = self._reads
        if batch is None or not batch.open:
            self.post(batch := Reads())
            self._reads = batch
        batch.items.append(read)

    def spawn_socket(self, conn: TCPConnection, target: SocketAddress | HostName | None) -> None:
        """Start *conn*'s own task: connect to *target* (None: accepted), serve, close."""
        self._connections.add(conn)
        start_contained(self.nursery, conn, lambda: conn._run(target))

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def connection_ended(self, conn: TCPConnection) -> None:
        self._connections.discard(conn)
        if conn.server is not None:  # (an accepted connection may connect again later)
            conn.server.open_connections -= 1
            conn.server = None
        if not self._connections:
            self._connections_gone.set()

    def bound(self, handle: object, kind: str, address: SocketAddress) -> None:
        owner = getattr(handle, "owner", b"").decode("utf-8", "replace")
        self._bound[handle] = BoundAddress(kind, address.host.value, address.port, owner)

    def unbound(self, handle: object) -> None:
        self._bound.pop(handle, None)

    def suspending(self, name: str, work: Callable[..., Awaitable[tuple[object, ...]]]) -> LuaTable:
        """A Lua function that suspends its calling handler while ``work(*args)`` runs
        in a Trio task; the handler resumes with the values *work* returns."""

        def start(*args: object) -> tuple[int, Suspension]:
            return self._start_suspension(work, *args)

        return self.bridge.api.suspending(name.encode(), start)

    def _start_suspension(
        self, work: Callable[..., Awaitable[tuple[object, ...]]], *args: object
    ) -> tuple[int, Suspension]:
        token = next(self._tokens)
        return token, Suspension(token, functools.partial(work, *args))

    def blacklisted(self, host: str) -> bool:
        """Whether a peer's IP (as ``accept``/``recvfrom`` give it) is blacklisted."""
        return host in self._blacklist

    def register_udp(self, udp: UDPSocket) -> None:
        self._udp_sockets.add(udp)

    def unregister_udp(self, udp: UDPSocket) -> None:
        self._udp_sockets.discard(udp)

    # -- lifecycle ----------------------------------------------------------------
    async def in_executor(self, call: Callable[[], Any]) -> Any:
        """Run *call* (which calls Lua) in the executor and wait for its result."""
        done = trio.Event()
        box: list[Any] = []

        def finish(result: Any) -> None:
            box.append(result)
            done.set()

        def start() -> None:
            try:
                result = call()
            except BaseException as exc:
                box.append(exc)
                done.set()
                raise
            self._executor.settle(result, (), finish)

        self.post(Call(start))
        await done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    async def _start(self) -> None:
        log.info("trio_mona %s: Lua engine %s", VERSION, self.bridge.version)
        self.bridge.set_log_threshold(logging.getLogger("trio_mona.app").getEffectiveLevel())
        self.bridge.api.set_handler_timeout(self.settings.handler_timeout)
        try:
            found = await trio.to_thread.run_sync(discover, self.apps_dir)
        except OSError as exc:
            raise StartupError(f"{self.apps_dir}: cannot read: {exc.strerror}") from None
        if "" not in found:
            main = self.apps_dir / "main.lua"
            raise StartupError(f"{main}: cannot read the root application: no such file")
        error = await self.applications.start(found)
        if error is not None:
            raise StartupError(error)
        self.nursery.start_soon(self._background)

    async def _background(self) -> None:
        """onManage and the reload watcher: both stop as soon as shutdown begins."""
        settings = self.settings
        with self._background_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.applications.manage, settings.manage_interval)
                if settings.reload_interval:
                    nursery.start_soon(self.applications.watch, settings.reload_interval)

    @property
    def _root_env(self) -> LuaTable | None:
        return self.applications.root.env

    def close_sockets(self, owner: bytes) -> None:
        """Close what the application *owner* opened (it is being unloaded): listeners
        and UDP sockets at once, connections after a flush, with no more Lua events."""
        for handle in list(self._bound):
            if isinstance(handle, TCPServer) and handle.owner == owner:
                handle.stop()
        for udp in [u for u in self._udp_sockets if u.owner == owner]:
            udp.close()
        for conn in [c for c in self._connections if c.owner == owner]:
            conn.abandon()

    def _absolute_path(self, path: bytes) -> bytes:
        relative = path.decode("utf-8", "replace").strip("/")
        folder = self.apps_dir / relative if relative else self.apps_dir
        return os.fsencode(folder) + b"/"

    def _environment(self) -> dict[str, str]:
        """``mona.environment``: the process environment; in sandbox mode only the
        variables ``trio_mona.sandbox_environment`` names."""
        if not self.settings.sandbox:
            return dict(os.environ)
        allowed = self.settings.sandbox_environment.replace(",", " ").split()
        return {name: os.environ[name] for name in allowed if name in os.environ}

    async def _shutdown(self) -> None:
        self._background_scope.cancel()
        for handle in list(self._bound):
            if isinstance(handle, TCPServer):
                handle.stop()
        with trio.move_on_after(self.settings.linger + 1):
            await self.applications.stop()
        self._executor.stop_lua()
        for udp in list(self._udp_sockets):
            udp.close()
        self._connections_gone = trio.Event()
        for conn in list(self._connections):
            conn.disconnect()
        if self._connections:
            with trio.move_on_after(self.settings.linger + 0.5):
                await self._connections_gone.wait()
        self._send.close()


def _applications_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise StartupError(f"{folder}: applications folder not found")
    return folder.resolve()


def _configs_table(config: Mapping[str, ConfigValue]) -> dict[str, object]:
    """``mona.configs``: every entry as a dotted key and nested (docs/configuration.rst)."""
    table: dict[str, object] = dict(config)
    table.update(nest(config))
    return table


def _full_config(
    config_file: str | os.PathLike[str] | None,
    settings: Mapping[str, str] | Iterable[str],
    arguments: Sequence[str],
) -> dict[str, ConfigValue]:
    config = load_config(config_file, settings)
    program = Path(sys.argv[0] or "trio-mona").resolve()
    config.setdefault("application.path", str(program))
    config.setdefault("application.dir", str(program.parent))
    config.setdefault("application.name", "trio_mona")
    config.setdefault("application.version", VERSION)
    for index, argument in enumerate(arguments, start=1):
        config[f"arguments.{index}"] = typed(argument)
    return config


@asynccontextmanager
async def open_runtime(
    apps_dir: str | os.PathLike[str],
    *,
    config_file: str | os.PathLike[str] | None = None,
    settings: Mapping[str, str] | Iterable[str] = (),
    engine: str | None = None,
    arguments: Sequence[str] = (),
) -> AsyncIterator[Runtime]:
    """Load the Lua applications in *apps_dir* and serve them while the block runs.

    Args:
      apps_dir: the applications folder; its ``main.lua`` is the root application.
      config_file: an INI file (MonaServer's format), read into ``mona.configs``.
      settings: overrides, as ``{"section.key": "value"}`` or ``["section.key=value"]``.
      engine: ``"lua54"`` (default) or ``"luajit21"``; overrides ``trio_mona.engine``.
      arguments: extra values for Lua as ``mona.configs["arguments.1"]``, ...

    Raises:
      StartupError: the folder, the configuration or the root ``main.lua`` is unusable
        (a syntax error, or an error while its main chunk runs).

    Leaving the block stops listeners, runs ``onStop``, flushes and closes every
    connection within ``trio_mona.linger`` seconds, and cancels what remains.
    """
    folder = Path(apps_dir)
    try:
        config = _full_config(config_file, settings, arguments)
        runtime_settings = Settings.from_config(config)
        if engine is not None:
            runtime_settings = attrs.evolve(runtime_settings, engine=engine)
            runtime_settings.check()
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    folder = _applications_folder(folder)
    failure: StartupError | None = None
    async with trio.open_nursery() as nursery:
        runtime = Runtime(folder, config, runtime_settings, nursery)
        nursery.start_soon(runtime.hub.run)
        await nursery.start(runtime._executor.run)
        try:
            try:
                await runtime._start()
            except StartupError as exc:
                failure = exc
            else:
                yield runtime
        finally:
            with trio.CancelScope(shield=True):
                await runtime._shutdown()
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def serve(
    apps_dir: str | os.PathLike[str],
    *,
    config_file: str | os.PathLike[str] | None = None,
    settings: Mapping[str, str] | Iterable[str] = (),
    engine: str | None = None,
    arguments: Sequence[str] = (),
    task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the applications in *apps_dir* until cancelled.

    Use it as ``runtime = await nursery.start(serve, apps_dir)``: the runtime is handed
    back once every ``onStart`` has run. Arguments are as for :func:`open_runtime`.
    """
    async with open_runtime(
        apps_dir, config_file=config_file, settings=settings, engine=engine, arguments=arguments
    ) as runtime:
        task_status.started(runtime)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover
