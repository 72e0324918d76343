"""The runtime: one Lua state, one executor task, the socket tasks, the applications.

:func:`open_runtime` owns a nursery holding the executor task and every socket task;
leaving it stops listeners, runs ``onStop``, flushes and closes every connection
within the linger time, then cancels what is left (docs/design.rst).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, final

import attrs
import trio

from ._apps import Applications, discover
from ._clients.publications import Publications
from ._cluster.cluster import Cluster, send_to_servers
from ._core import levels  # noqa: F401  (NOTE and TRACE, by name, for the apps' records)
from ._core.addresses import IP_PROPERTIES, AddressError
from ._core.blacklist import Blacklist
from ._core.config import (
    ConfigError,
    ConfigValue,
    HTTPSettings,
    RTMPSettings,
    Settings,
    TLSSettings,
    WebSocketSettings,
    configs_table,
    full_config,
    load_raw_config,
)
from ._core.errors import StartupError, os_message
from ._core.events import Call
from ._core.mail import SMTPSettings
from ._data.persistence import NO_DATA, Persistence, open_store
from ._data.redis import RedisStore
from ._data.store import StoreError
from ._embedding import HostAPI, HostFunction
from ._executor import Executor
from ._formats import host as format_host
from ._formats.tape import Tapes
from ._groups import raise_single
from ._http_requests import HTTPRequests
from ._lua import host, media_host
from ._lua.bindings import SocketBindings
from ._lua.bridge import LuaBridge, LuaTable, check_host_table
from ._lua.client_host import ClientHost
from ._lua.files import AppFiles
from ._lua.socket_host import SocketHost
from ._net.certificates import CertificateError
from ._net.hub import Hub
from ._net.mail import Mailer
from ._net.sockets import BoundAddress, Sockets
from ._rtmp_requests import RTMPRequests
from ._signals import stop_requested
from ._version import VERSION
from ._waits import BY_TOKEN, Suspension, Waits

__all__ = ["BoundAddress", "Runtime", "RuntimeStatistics", "StartupError", "open_runtime", "serve"]

log = logging.getLogger("trio_mona")


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
    #: Paths of the applications running (``""`` is the root), parents first.
    applications: tuple[str, ...] = ()
    #: Paths of the applications in the tree that are down: failed to load, or below
    #: one that did.
    applications_down: tuple[str, ...] = ()
    #: LuaSocket objects (``require "socket"``) with a socket not closed yet.
    luasockets: int = 0
    #: Commits of ``data``; and, on Redis, the other processes' commits followed.
    data_commits: int = 0
    data_commits_heard: int = 0
    #: HTTP requests served, and refused as malformed or too large (400, 413, 431, 501).
    http_requests: int = 0
    http_refused: int = 0


@final
class Runtime:
    """A running set of Lua applications. Get one from :func:`open_runtime` or :func:`serve`."""

    def __init__(
        self,
        apps_dir: Path,
        config: Mapping[str, ConfigValue],
        settings: Settings,
        nursery: trio.Nursery,
        smtp: SMTPSettings | None = None,
        http: HTTPSettings | None = None,
        websocket: WebSocketSettings | None = None,
        rtmp: RTMPSettings | None = None,
        https: TLSSettings | None = None,
        rtmps: TLSSettings | None = None,
    ) -> None:
        self._apps_dir = apps_dir
        self._tls_ports = (https or TLSSettings("HTTPS"), rtmps or TLSSettings("RTMPS"))
        self._settings = settings
        self._nursery = nursery
        self._blacklist = Blacklist()
        self._files = AppFiles(apps_dir, confined=settings.sandbox)
        self._waits = Waits()
        self._sockets = sockets = Sockets(settings, nursery, self._blacklist)
        sockets.configured_files = frozenset(v for v in config.values() if isinstance(v, str))
        self._bindings = SocketBindings(sockets)
        self._persistence = Persistence(sockets.writes)
        self._cluster: Cluster | None = None
        self._mailer = Mailer(smtp or SMTPSettings(), nursery, self._mail_sent)
        self._client_host = ClientHost(apps_dir)
        #: How Python's readers hand documents to Lua (one crossing per document).
        self._tapes = Tapes()
        self._bridge = LuaBridge(
            settings.engine,
            self._host(config),
            max_memory=settings.max_memory,
            sandbox=settings.sandbox,
            unsafe_native=settings.unsafe_native,
        )
        self._bindings.wrap = self._bridge.wrap_socket_address
        self._executor = Executor(
            self._bridge,
            self._bindings.sender,
            sockets.receive,
            sockets.post,
            sockets.hub,
            sockets.writes,
            sockets.deliver,
            self._waits.parks,
        )
        self._waits.bind(self._executor.wake, self._executor.waits)
        self._applications = Applications(
            self._bridge, nursery, self._executor.call, self._close_owned, apps_dir
        )
        publications = Publications(gop_cache=(rtmp or RTMPSettings()).gopCache)
        self._http = HTTPRequests(
            http or HTTPSettings(), websocket or WebSocketSettings(), self._bridge,
            self._executor, self._applications, sockets, self._bindings, self._tapes,
            publications,
        )  # fmt: skip
        self._rtmp = RTMPRequests(
            rtmp or RTMPSettings(), self._bridge, self._executor, self._applications, sockets,
            self._http.make_client, self._tapes, publications,
        )  # fmt: skip
        self._host_api = HostAPI(
            self._bridge,
            self._applications,
            self._suspending,
            self._executor.call,
            lambda: self._executor.lua_enabled,
        )
        self._background_scope = trio.CancelScope()
        self._exit_code: int | None = None
        self._exit_requested = trio.Event()
        #: Shutdown has begun: a handler still running stops at the runaway hook's next
        #: call, as on a signal (a LuaSocket loop whose server just closed spins).
        self._shutting_down = False

    def _host(self, config: Mapping[str, ConfigValue]) -> dict[str, object]:
        """The Python functions and data the Lua prelude may call."""

        def resolve_start(kind: bytes, first: object, second: object) -> tuple[int, Suspension]:
            return self._start_suspension(host.resolve, kind, first, second)

        socket_host = SocketHost(
            self._sockets,
            self._waits,
            self._lua_table,
            lambda items: self._bridge.sequence(items),
        )
        table: dict[str, object] = {
            **socket_host.functions(),
            **self._bindings.functions(),
            **self._persistence.functions(),
            **self._client_host.functions(),
            "media_get": media_host.media_get,
            "media_set": media_host.media_set,
            "qos_get": media_host.qos_get,
            "media_handler": media_host.media_handler,
            "media_publish": lambda owner, name: self._rtmp.script_publish(owner, name),
            "media_push": lambda publication, kind, time, packet, ping: self._rtmp.script_push(
                publication, kind, time, packet, ping
            ),
            "media_properties": lambda publication, metadata: self._rtmp.script_properties(
                publication, metadata
            ),
            "media_listeners": lambda publication: self._rtmp.listeners_of(publication),
            "media_close": lambda publication, code, description: self._rtmp.script_close(
                publication, code, description
            ),
            "media_find": lambda name: self._rtmp.find(name),
            "media_names": lambda: self._rtmp.names(),
            "mail_send": self._mailer.send,
            "servers_send": lambda *call: send_to_servers(self._cluster, *call),
            "adopt": lambda token, request: self._executor.adopt(token, request),
            "by_token": BY_TOKEN,
            "exit": self._exit,
            "internal_error": host.internal_error,
            # (2: a stop signal, every handler ends; 1: shutdown, all but onStop end)
            "stopping": lambda: 2 if stop_requested() else 1 if self._shutting_down else 0,
            "log": host.LuaLog(),
            "configs": configs_table(config),
            "luasocket_debug": self._settings.luasocket_debug,
            "environment": self._environment(),
            "blacklist": self._blacklist.change,
            "resolve_start": resolve_start,
            "absolute_path": self._absolute_path,
            "digest": host.digest,
            "time_ms": lambda: int(time.time() * 1000),
            "monotonic": time.monotonic,
            "hexdump": host.hexdump,
            "list_paths": lambda folder: self._files.list_paths(folder, self._bridge.sequence),
            "read_source": self._files.read_source,
            "load_child": lambda parent, name: self._applications.load_child(parent, name),
            "child_loaded": lambda path, ok, error: self._applications.child_loaded(
                path, ok, error
            ),
            "set_timer": lambda owner, function, delay: self._applications.set_timer(
                owner, function, delay
            ),
            "addr_get": host.addr_get,
            "addr_compare": host.addr_compare,
            "parse_address": host.parse_address,
            **format_host.functions(self._tapes),
            "properties": {  # (the one list of each class's properties)
                "IPAddress": list(IP_PROPERTIES),
                "SocketAddress": list(host.SOCKET_ADDRESS_PROPERTIES),
                **self._bindings.property_names(),
                **media_host.property_names(),
            },
        }
        check_host_table(table)  # (the prelude names every one of them, and no other)
        return table

    # -- public API -------------------------------------------------------------
    @property
    def engine(self) -> str:
        """The Lua engine running the applications, e.g. ``"Lua 5.4"``."""
        return self._bridge.version

    @property
    def bound_addresses(self) -> tuple[BoundAddress, ...]:
        """Where the applications' servers and sockets are bound, oldest first."""
        return tuple(self._sockets.bound_addresses.values())

    @property
    def exit_code(self) -> int | None:
        """The code an application passed to ``os.exit``, or None (it did not)."""
        return self._exit_code

    async def wait_for_exit(self) -> int:
        """Wait until an application calls ``os.exit``; return its code. (The runtime
        goes on serving until the ``open_runtime`` block ends: :func:`serve` and the
        command line end it then.)"""
        await self._exit_requested.wait()
        assert self._exit_code is not None
        return self._exit_code

    def expose(self, name: str, function: HostFunction, *, text: bool = True) -> None:
        """Make *function* callable from every application as ``mona.host.<name>(...)``.

        A plain function runs at once, inside the executor (keep it quick); an ``async``
        one suspends only its Lua caller until it returns. Arguments and results
        convert as docs/embedding.rst says; strings arrive as ``str`` (UTF-8), or as
        ``bytes`` with ``text=False``. An exception becomes a Lua error with its text.

        Raises:
          ValueError: *name* is no Lua identifier, or is exposed already.
        """
        self._host_api.expose(name, function, text=text)

    async def call(self, app_path: str, name: str, *args: object, text: bool = True) -> Any:
        """Call the global function *name* of the application at *app_path* (``"/"``
        or ``""``: the root; ``"/chat"``) in the executor, inside a coroutine (so it may
        wait), and return its results: none as ``None``, one as is, several as a tuple.

        Raises:
          LuaError: the function raised an error (message and Lua traceback).
          LookupError: no such application, it is not running, or no such function.
          RuntimeError: the runtime is stopping, or stopped before the call ended.
          TypeError: an argument has no Lua form.
        """
        return await self._host_api.call(app_path, name, args, text)

    def _exit(self, code: int) -> None:
        if self._exit_code is None:
            log.info("an application called os.exit(%d): stopping", code)
            self._exit_code = int(code)
        self._exit_requested.set()

    def statistics(self) -> RuntimeStatistics:
        """Counters and gauges, for monitoring and tests."""
        sockets = self._sockets
        return RuntimeStatistics(
            engine=self.engine,
            tcp_connections=len(sockets.connections),
            tcp_servers=len(sockets.listeners()),
            udp_sockets=len(sockets.udp_sockets),
            events_dispatched=self._executor.events_dispatched,
            bytes_received=sockets.bytes_received,
            bytes_sent=sockets.bytes_sent,
            bytes_queued=sockets.bytes_queued,
            bytes_unsent=sockets.unsent.bytes,
            lua_memory=self._bridge.memory_used(),
            applications=tuple(a.path for a in self._applications.all() if a.env is not None),
            applications_down=tuple(a.path for a in self._applications.all() if a.env is None),
            luasockets=len(sockets.luasockets),
            data_commits=self._persistence.commits,
            data_commits_heard=self._cluster.commits_heard if self._cluster else 0,
            http_requests=self._http.requests,
            http_refused=sum(self._http.refused.values()),
        )

    def _suspending(
        self, name: str, work: Callable[..., Awaitable[tuple[object, ...]]]
    ) -> LuaTable:
        """A Lua function that suspends its calling handler while ``work(*args)`` runs
        in a Trio task; the handler resumes with the values *work* returns."""

        def start(*args: object) -> tuple[int, Suspension]:
            return self._start_suspension(work, *args)

        return self._bridge.suspending(name.encode(), start)

    def _start_suspension(
        self, work: Callable[..., Awaitable[tuple[object, ...]]], *args: object
    ) -> tuple[int, Suspension]:
        return self._waits.wait_for(b"", functools.partial(work, *args))

    # -- lifecycle ----------------------------------------------------------------
    async def _mail_sent(self, mail: LuaTable, error: bytes | None) -> bool:
        """Run the mail object's onSent(error); whether it had one."""
        if not self._executor.lua_enabled:
            return False
        on_event = self._bridge.on_event
        result = await self._executor.call(lambda: on_event(mail, b"onSent", error))
        return bool(result != self._bridge.no_handler)

    def _lua_table(self, data: Mapping[str, object]) -> LuaTable:
        return self._bridge.table(data)

    def _close_owned(self, owner: bytes) -> None:
        """The application *owner* unloads: its waiting coroutines never resume, and
        what it opened closes."""
        self._executor.drop_owner(owner)
        self._sockets.close_owned(owner)
        self._rtmp.close_owned(owner)

    async def _start(self) -> None:
        log.info("trio_mona %s: Lua engine %s", VERSION, self._bridge.version)
        self._bridge.set_log_threshold(logging.getLogger("trio_mona.app").getEffectiveLevel())
        self._bridge.set_handler_timeout(self._settings.handler_timeout)
        try:
            found = await trio.to_thread.run_sync(discover, self._apps_dir)
        except OSError as exc:
            raise StartupError(f"{self._apps_dir}: cannot read: {os_message(exc)}") from None
        if "" not in found:
            main = self._apps_dir / "main.lua"
            raise StartupError(f"{main}: cannot read the root application: no such file")
        self._load_data()
        error = await self._applications.start(found)
        if error is not None and self._exit_code is None:
            raise StartupError(error)
        for name, protocol in (("HTTP", self._http), ("RTMP", self._rtmp)):
            try:
                protocol.listen()
            except (OSError, AddressError) as exc:
                message = os_message(exc) if isinstance(exc, OSError) else str(exc)
                where = f"{protocol.settings.host} port {protocol.settings.port}"
                raise StartupError(f"{name}: cannot listen on {where}: {message}") from None
        https, rtmps = self._tls_ports
        served: tuple[tuple[TLSSettings, Callable[[TLSSettings], None]], ...] = (
            (https, self._http.listen_tls), (rtmps, self._rtmp.listen_tls))  # fmt: skip
        for tls, listen_tls in served:
            try:
                listen_tls(tls)
            except CertificateError as exc:
                raise StartupError(f"{tls.section}: {exc}") from None
            except (OSError, AddressError) as exc:
                message = os_message(exc) if isinstance(exc, OSError) else str(exc)
                where = f"{tls.host} port {tls.port}"
                raise StartupError(f"{tls.section}: cannot listen on {where}: {message}") from None
        self._nursery.start_soon(self._background)

    def reload_certificates(self) -> None:
        """Read the TLS ports' certificates again (the command line does on SIGHUP):
        new connections get them, open ones keep theirs; a set that fails to load is
        logged as an ERROR and the one in use stays (docs/clients/tls.rst)."""
        self._reload_certificates(changed_only=False)

    def _reload_certificates(self, *, changed_only: bool) -> None:
        for name, listener in (("HTTPS", self._http.tls_listener),
                               ("RTMPS", self._rtmp.tls_listener)):  # fmt: skip
            certificates = listener.certificates if listener is not None else None
            if certificates is None or (changed_only and not certificates.changed()):
                continue
            failure = None
            try:
                certificates.load()
            except CertificateError as exc:
                failure = str(exc)
            if failure is None:
                log.info("%s: certificates reloaded", name)
            else:
                log.error("%s: the certificates were not reloaded (the old ones stay): %s",
                          name, failure)  # fmt: skip

    async def _watch_certificates(self, interval: float) -> None:
        """Reload the certificates whose files changed."""
        while True:
            await trio.sleep(interval)
            self._reload_certificates(changed_only=True)

    def _load_data(self) -> None:
        """Open the store and load the ``data`` tree into Lua, before any application
        runs (so Lua is called here, outside the executor, while nothing else can)."""
        settings = self._settings
        if settings.data == NO_DATA:
            self._bridge.data_state[b"off"] = True
            log.info("data: none (the global `data` is an ordinary variable)")
            return
        store = open_store(settings.data, self._apps_dir, settings.data_sync, settings.cluster)
        try:
            if isinstance(store, RedisStore):  # (subscribed before the tree is read)
                self._cluster = Cluster(
                    store, self._persistence, self._bridge, self._executor,
                    self._sockets.post, self._applications, settings.max_servers,
                )  # fmt: skip
            count = self._persistence.load(store, self._bridge.data_load)
        except StoreError as exc:
            store.close()
            raise StartupError(str(exc)) from None
        log.info("data: %s (%d entries)", store.name, count)
        torn = getattr(store, "torn_bytes", 0)
        if torn:
            log.warning(
                "data: the last %d bytes of the change log were a commit cut short when the "
                "process died (never acknowledged): ignored",
                torn,
            )

    async def _background(self) -> None:
        """onManage, the reload watcher and the retry of failing commits: they stop as
        soon as shutdown begins."""
        settings = self._settings
        with self._background_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._applications.manage, settings.manage_interval)
                nursery.start_soon(self._http.websocket.manage)
                nursery.start_soon(self._persistence.retry_while_held, self._post_flush)
                if settings.reload_interval:
                    nursery.start_soon(self._applications.watch, settings.reload_interval)
                    nursery.start_soon(self._watch_certificates, settings.reload_interval)
                if self._cluster is not None:
                    nursery.start_soon(self._cluster.run)

    def _post_flush(self) -> None:
        """Have the executor end a batch: it commits, then writes (see Writes)."""
        self._sockets.post(Call(_nothing))

    def _absolute_path(self, path: bytes) -> bytes:
        relative = path.decode("utf-8", "replace").strip("/")
        folder = self._apps_dir / relative if relative else self._apps_dir
        return os.fsencode(folder) + b"/"

    def _environment(self) -> dict[str, str]:
        """``mona.environment``: the process environment; in sandbox mode only the
        variables ``trio_mona.sandbox_environment`` names."""
        if not self._settings.sandbox:
            return dict(os.environ)
        allowed = self._settings.sandbox_environment.replace(",", " ").split()
        return {name: os.environ[name] for name in allowed if name in os.environ}

    async def _shutdown(self) -> None:
        self._shutting_down = True
        self._background_scope.cancel()
        for listener in self._sockets.listeners():
            listener.unload()
        with trio.move_on_after(self._settings.linger + 1):
            await self._applications.stop()
        with trio.move_on_after(self._settings.linger):
            await self._mailer.drain()  # (their onSent still runs)
        if self._executor.running:  # (the __gc finalizers still pending, bounded)
            with trio.move_on_after(self._settings.linger + 1):
                try:
                    await self._executor.call(self._bridge.finalize_all)
                except RuntimeError:
                    pass  # (the executor stopped meanwhile: the block was cancelled)
        self._executor.stop_lua()
        self._host_api.stop()
        if self._cluster is not None:
            self._cluster.close()
        self._persistence.close()
        sockets = self._sockets
        for udp in [*sockets.udp_sockets, *sockets.luasockets.values()]:
            udp.unload()
        sockets.connections_gone = trio.Event()
        for conn in list(sockets.connections):
            conn.close()
        if sockets.connections:
            with trio.move_on_after(self._settings.linger + 0.5):
                await sockets.connections_gone.wait()
        sockets.close_channel()


def _nothing() -> None:
    pass


def _applications_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise StartupError(f"{folder}: applications folder not found")
    return folder.resolve()


@asynccontextmanager
async def open_runtime(
    apps_dir: str | os.PathLike[str],
    *,
    config_file: str | os.PathLike[str] | None = None,
    settings: Mapping[str, str] | Iterable[str] = (),
    engine: str | None = None,
    arguments: Sequence[str] = (),
    data: str | os.PathLike[str] | None = None,
    expose: Mapping[str, HostFunction] | None = None,
) -> AsyncIterator[Runtime]:
    """Load the Lua applications in *apps_dir* and serve them while the block runs.

    Args:
      apps_dir: the applications folder; its ``main.lua`` is the root application.
      config_file: an INI file (MonaServer's format), read into ``mona.configs``.
      settings: overrides, as ``{"section.key": "value"}`` or ``["section.key=value"]``.
      engine: ``"lua54"`` (default) or ``"luajit21"``; overrides ``trio_mona.engine``.
      arguments: extra values for Lua as ``mona.configs["arguments.1"]``, ...
      data: the SQLite file holding ``data``; overrides ``trio_mona.data``.
      expose: functions for ``mona.host``, there before any application loads (see
        :meth:`Runtime.expose`).

    Raises:
      StartupError: the folder, the configuration or the root ``main.lua`` is unusable
        (a syntax error, or an error while its main chunk runs).
      ValueError: a bad *expose* name (see :meth:`Runtime.expose`).
      InternalError: several errors at once inside the runtime; the cause is the
        ``ExceptionGroup`` that held them.

    An exception raised in the block comes out as itself, not in an ``ExceptionGroup``
    (``pytest.raises(ValueError)`` and ``sys.exit(0)`` in the block work as without
    the runtime): KeyboardInterrupt and SystemExit first, as Trio does.

    Leaving the block stops listeners, runs ``onStop``, flushes and closes every
    connection within ``trio_mona.linger`` seconds, and cancels what remains.
    """
    folder = Path(apps_dir)
    try:
        raw = load_raw_config(config_file, settings)
        config = full_config(raw, arguments)
        runtime_settings = Settings.from_config(config)
        if engine is not None:
            runtime_settings = attrs.evolve(runtime_settings, engine=engine)
        if data is not None:
            runtime_settings = attrs.evolve(runtime_settings, data=os.fspath(data))
        runtime_settings.check()
        smtp = SMTPSettings.from_config(raw)
        http = HTTPSettings.from_config(config)
        websocket = WebSocketSettings.from_config(config)
        rtmp = RTMPSettings.from_config(config)
        https = TLSSettings.from_config(config, "HTTPS")
        rtmps = TLSSettings.from_config(config, "RTMPS")
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    folder = _applications_folder(folder)
    failure: StartupError | None = None
    hubs: list[Hub] = []  # (closed once every task that reads through it has ended)
    try:
        async with trio.open_nursery() as nursery:
            runtime = Runtime(
                folder,
                config,
                runtime_settings,
                nursery,
                smtp,
                http,
                websocket,
                rtmp,
                https,
                rtmps,
            )
            hubs.append(runtime._sockets.hub)
            for name, function in (expose or {}).items():
                runtime.expose(name, function)
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
    except BaseExceptionGroup as group:
        raise_single(group)
    finally:
        for hub in hubs:
            hub.close()
    if failure is not None:
        raise failure


async def serve(
    apps_dir: str | os.PathLike[str],
    *,
    config_file: str | os.PathLike[str] | None = None,
    settings: Mapping[str, str] | Iterable[str] = (),
    engine: str | None = None,
    arguments: Sequence[str] = (),
    data: str | os.PathLike[str] | None = None,
    expose: Mapping[str, HostFunction] | None = None,
    task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Serve the applications in *apps_dir* until cancelled, or until an application
    calls ``os.exit``: then stop in order and return its exit code.

    Use it as ``runtime = await nursery.start(serve, apps_dir)``: the runtime is handed
    back once every ``onStart`` has run. Arguments are as for :func:`open_runtime`.
    """
    async with open_runtime(
        apps_dir,
        config_file=config_file,
        settings=settings,
        engine=engine,
        arguments=arguments,
        data=data,
        expose=expose,
    ) as runtime:
        task_status.started(runtime)
        code = await runtime.wait_for_exit()
    return code
