"""The application tree: loading, lifecycle events, hot reload, timers.

(docs/lua/applications.rst)

Every ``main.lua`` below the applications folder is an application; ``main.lua`` at the
top is the root (path ``""``), ``a/b/main.lua`` is ``/a/b``. A folder on the way with no
``main.lua`` of its own is an empty application, so the tree always mirrors the folders.
Applications load parents first and stop children first. The watcher polls the
``main.lua`` files (the package list is fixed to trio, lupa and attrs, so no
file-watching library) and reloads the subtree of whatever changed.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from ._core.errors import os_message
from ._lua.bridge import LuaBridge, LuaLoadError, LuaTable

log = logging.getLogger("trio_mona")

#: What identifies one version of a main.lua: modification time and size.
Stamp = tuple[int, int]
#: Errors that say nothing about the files, only that the process is short of something.
_TRANSIENT: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


@attrs.define(eq=False, repr=False)
class Application:
    path: str
    directory: Path
    parent: Application | None
    children: dict[str, Application] = attrs.field(factory=dict)
    #: The Lua globals, or None while the application is down (failed or unloaded).
    env: LuaTable | None = None
    #: The main.lua version last loaded (or that failed); None: no main.lua of its own.
    stamp: Stamp | None = None
    #: The environment while its main chunk runs (children may load from it then).
    loading_env: LuaTable | None = None
    #: A load was attempted since the application was last unloaded (at start, on
    #: reload, or early because its parent asked for it).
    tried: bool = False

    def __repr__(self) -> str:
        return f"<Application {self.path or '/'}>"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def owner(self) -> bytes:
        return self.path.encode()

    @property
    def main(self) -> Path:
        return self.directory / "main.lua"

    def subtree(self) -> Iterator[Application]:
        """This application and every descendant, parents first."""
        yield self
        for child in self.children.values():
            yield from child.subtree()


def discover(apps_dir: Path) -> dict[str, Stamp]:
    """Every application path with a main.lua, and that file's stamp (blocking I/O).

    Raises:
        OSError: a folder could not be read (out of file descriptors, say): what was
            found is incomplete, and must not be taken for deleted applications.
    """
    found: dict[str, Stamp] = {}

    def fail(error: OSError) -> None:
        # A folder that cannot be read for good (permissions) holds no application;
        # running out of resources, or the top folder failing, makes the look void.
        if error.errno in _TRANSIENT or os.fspath(error.filename) == os.fspath(apps_dir):
            raise error

    for folder, dirs, files in os.walk(apps_dir, onerror=fail):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "main.lua" in files:
            try:
                info = os.stat(os.path.join(folder, "main.lua"))
            except OSError as exc:
                if exc.errno in _TRANSIENT:
                    raise
                continue  # deleted while we looked
            relative = os.path.relpath(folder, apps_dir)
            path = "" if relative == "." else "/" + relative.replace(os.sep, "/")
            found[path] = (info.st_mtime_ns, info.st_size)
    return found


@attrs.define(eq=False)
class Timer:
    """``mona:setTimer(fn, ms)``: calls *function* until it returns 0 (or nothing)."""

    owner: bytes
    function: LuaTable
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)


class Applications:
    """The tree of applications of one runtime, and the tasks that drive it."""

    def __init__(
        self,
        bridge: LuaBridge,
        nursery: trio.Nursery,
        in_executor: Callable[..., Awaitable[Any]],
        close_owned: Callable[[bytes], None],
        apps_dir: Path,
    ) -> None:
        self._bridge = bridge
        self._nursery = nursery
        self._in_executor = in_executor
        self._close_owned = close_owned
        self.apps_dir = apps_dir
        self.root = Application("", apps_dir, None)
        self.timers: set[Timer] = set()
        #: The main.lua files found last (start, or the watcher's latest look).
        self._found: dict[str, Stamp] = {}
        #: The start is over: a failing root is logged like any application from now on.
        self._started_once = False

    def find(self, path: str) -> Application | None:
        app: Application | None = self.root
        for part in path.strip("/").split("/") if path.strip("/") else []:
            app = app.children.get(part) if app is not None else None
        return app

    def all(self) -> list[Application]:
        """Every application, parents first."""
        return list(self.root.subtree())

    # -- start and stop -----------------------------------------------------------
    async def start(self, found: dict[str, Stamp]) -> str | None:
        """Load every application; return the root's error, if it failed."""
        self._found = found
        self._build(self.root, found)
        for app in self.all():
            error = await self._load(app, found)
            if app is self.root and error is not None:
                return error
        self._started_once = True
        return None

    async def stop(self) -> None:
        """``onStop`` for every application, children first (sockets still open)."""
        for app in reversed(self.all()):
            if app.env is not None:
                await self._event(app, b"onStop", app.path.encode())

    # -- timers and onManage ------------------------------------------------------
    def set_timer(self, owner: bytes, function: LuaTable, delay_ms: float) -> None:
        timer = Timer(owner, function)
        self.timers.add(timer)
        self._nursery.start_soon(self._run_timer, timer, delay_ms)

    async def _run_timer(self, timer: Timer, delay_ms: float) -> None:
        call_timer = self._bridge.call_timer
        try:
            with timer.scope:
                while delay_ms > 0:
                    await trio.sleep(delay_ms / 1000)
                    result = await self._in_executor(
                        lambda: call_timer(timer.function, timer.owner)
                    )
                    # Only a number continues it: nothing Lua hands back is trusted.
                    number = isinstance(result, int | float) and not isinstance(result, bool)
                    delay_ms = result if number else 0
        except Exception:
            log.exception("internal error in a timer of '%s'; the timer stopped", timer.owner)
        finally:
            self.timers.discard(timer)

    async def manage(self, interval: float) -> None:
        """Call the root's ``onManage()`` every *interval* seconds."""
        app_logger = logging.getLogger("trio_mona.app")
        while True:
            await trio.sleep(interval)
            # Follow changes to the log level made since the start (cheap, and Lua then
            # skips building messages that would be dropped).
            self._bridge.set_log_threshold(app_logger.getEffectiveLevel())
            if self.root.env is not None:
                await self._event(self.root, b"onManage", None)

    # -- hot reload -----------------------------------------------------------------
    async def watch(self, interval: float) -> None:
        """Poll the main.lua files and reload what changed, appeared or disappeared."""
        while True:
            await trio.sleep(interval)
            try:
                found = await trio.to_thread.run_sync(discover, self.apps_dir)
            except OSError as exc:
                # Not "every main.lua was deleted": keep every application, look again.
                log.warning("hot reload: cannot look at %s: %s", self.apps_dir, os_message(exc))
                continue
            try:
                await self.apply(found)
            except Exception:
                log.exception("internal error in hot reload; the applications stay as they are")

    async def apply(self, found: dict[str, Stamp]) -> None:
        """Bring the tree in line with *found*: reload changed or deleted applications
        with their subtrees, then load new ones."""
        self._found = found
        known = {app.path: app for app in self.all()}
        changed = [path for path, app in known.items() if found.get(path) != app.stamp]
        for path in _top_most(changed):
            await self.reload(path, found)
        known = {app.path: app for app in self.all()}
        for path in _top_most([p for p in found if p not in known]):
            ancestor = path
            while ancestor not in known:
                ancestor = ancestor.rsplit("/", 1)[0]
            parent = known[ancestor]
            self._build(parent, found)
            for app in parent.subtree():
                if app.path not in known:
                    log.info("loading new application '%s'", app.path)
                    await self._load(app, found)

    async def reload(self, path: str, found: dict[str, Stamp]) -> None:
        """Unload the application at *path* and its subtree, then load it again (or
        drop it, when nothing is left in its folder)."""
        app = self.find(path)
        if app is None:
            return
        await self._unload(app)
        if app.parent is not None and not any(p == path or p.startswith(path + "/") for p in found):
            log.info("application '%s' removed", path)
            del app.parent.children[app.name]
            return
        log.info("reloading application '%s'", path or "/")
        self._build(app, found)
        for member in list(app.subtree()):
            await self._load(member, found)

    # -- internals ----------------------------------------------------------------------
    def _build(self, app: Application, found: dict[str, Stamp]) -> None:
        """Make *app*'s children mirror the folders that hold applications."""
        prefix = app.path + "/"
        names = {p[len(prefix) :].split("/")[0] for p in found if p.startswith(prefix)}
        for name in list(app.children):
            if name not in names:  # an empty folder left behind: nothing runs there
                if app.env is not None:
                    self._bridge.set_child(app.env, name.encode(), None)
                del app.children[name]
        for name in sorted(names):
            if name not in app.children:
                app.children[name] = Application(prefix + name, app.directory / name, app)
            self._build(app.children[name], found)

    async def _load(self, app: Application, found: dict[str, Stamp]) -> str | None:
        """Create the environment, run main.lua, call onStart. Returns an error or None
        (also when the application was loaded already, early: see load_child)."""
        if app.tried:
            return None
        prepared = self._prepare(app, found)
        if isinstance(prepared, str):
            return prepared
        env, chunk = prepared
        if chunk is not None:
            error = await self._in_executor(
                lambda: self._bridge.call(chunk, b"main chunk", app.owner, None), until_waits=True
            )
            if error is not None:
                return self._failed(app, _first_line(error))
        self._started(app, env)
        await self._event(app, b"onStart", app.path.encode())
        return None

    def _prepare(
        self, app: Application, found: dict[str, Stamp]
    ) -> tuple[LuaTable, LuaTable | None] | str:
        """The environment and compiled main chunk (None: no main.lua) of *app*, or an
        error. Reading is blocking: a main.lua is small, and a child loaded early must
        be ready within the Lua call that asked for it."""
        app.tried = True
        app.stamp = found.get(app.path)
        parent = app.parent
        parent_env = None if parent is None else parent.env or parent.loading_env
        if parent is not None and parent_env is None:
            return "parent application is down"
        bridge = self._bridge
        env = bridge.new_app_env(
            app.path.encode(), app.name.encode(), os.fsencode(app.directory), parent_env
        )
        app.loading_env = env
        for name in app.children:
            bridge.set_child(env, name.encode(), False)  # loads when first asked for
        if app.stamp is None:
            return env, None
        try:
            source = app.main.read_bytes()
        except OSError as exc:
            return self._failed(app, f"{app.main}: cannot read: {os_message(exc)}")
        try:
            return env, bridge.load(source, str(app.main), env)
        except LuaLoadError as exc:
            return self._failed(app, str(exc))

    def _started(self, app: Application, env: LuaTable) -> None:
        app.env, app.loading_env = env, None
        if app.parent is not None:
            parent_env = app.parent.env or app.parent.loading_env
            self._bridge.set_child(parent_env, app.name.encode(), env)

    def _failed(self, app: Application, error: str) -> str:
        """*app* failed to load: logged, except for the root at start (the start
        fails with the error then)."""
        app.loading_env = None
        if app.parent is not None:
            parent_env = app.parent.env or app.parent.loading_env
            if parent_env is not None:
                self._bridge.set_child(parent_env, app.name.encode(), None)
        if app.parent is not None or self._started_once:
            log.error("application '%s' failed to load: %s", app.path or "/", error)
        return error

    # -- children loaded early (called from Lua, see _lua/applications.lua) ------------------
    def load_child(
        self, parent_path: bytes, name: bytes
    ) -> tuple[LuaTable | None, LuaTable | None]:
        """A parent asked for a child that has not loaded yet: the child's environment
        and main chunk, for Lua to run at once; nothing when it cannot load now."""
        parent = self.find(parent_path.decode("utf-8", "replace"))
        child = None if parent is None else parent.children.get(name.decode("utf-8", "replace"))
        if child is None or child.tried:
            return None, None
        prepared = self._prepare(child, self._found)
        return (None, None) if isinstance(prepared, str) else prepared

    def child_loaded(self, path: bytes, ok: bool, error: bytes) -> None:
        """The main chunk of a child loaded early has run: it is up (its onStart comes
        next, after the event that asked for it), or it failed."""
        app = self.find(path.decode("utf-8", "replace"))
        if app is None or app.loading_env is None:
            return
        if not ok:
            self._failed(app, _first_line(error))
            return
        self._started(app, app.loading_env)
        self._nursery.start_soon(self._event, app, b"onStart", app.path.encode())

    async def _unload(self, app: Application) -> None:
        """onStop children first, then close their sockets and timers."""
        for member in reversed(list(app.subtree())):
            if member.env is not None:
                await self._event(member, b"onStop", member.path.encode())
            self._close_owned(member.owner)
            for timer in [t for t in self.timers if t.owner == member.owner]:
                timer.scope.cancel()
            if member.parent is not None and member.parent.env is not None:
                self._bridge.set_child(member.parent.env, member.name.encode(), None)
            member.env = member.loading_env = None
            member.tried = False

    async def _event(self, app: Application, name: bytes, argument: Any) -> None:
        """Call an application event; an inherited handler runs for the child too."""
        env = app.env
        handler = env[name] if env is not None else None
        if handler is None:
            return
        try:
            await self._in_executor(lambda: self._bridge.call(handler, name, app.owner, argument))
        except Exception:
            log.exception("internal error in %s of '%s'", name.decode(), app.path)


def _top_most(paths: list[str]) -> list[str]:
    """The paths that are not below another one of them (the root is above all)."""
    result: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(top == "" or path == top or path.startswith(top + "/") for top in result):
            result.append(path)
    return result


def _first_line(error: bytes | str) -> str:
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
