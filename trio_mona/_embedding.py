"""The host API (docs/embedding.rst): a Trio program's functions callable from Lua as
``mona.host.<name>(...)``, and Lua functions callable from the program with
:meth:`Runtime.call`. Values cross as plain data (``_lua/values.py``)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from ._core.errors import LuaError
from ._lua.values import ValueFormError, from_lua, to_lua

if TYPE_CHECKING:
    from ._apps import Applications
    from ._lua.bridge import LuaBridge, LuaTable

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LUA_KEYWORDS: Final = frozenset({
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
})  # fmt: skip

#: Values that cross as they are (no conversion to make, nothing to check).
_SCALARS: Final = frozenset({type(None), bool, int, float})

#: What an exposed function may be: plain (runs at once in the executor) or async
#: (suspends only its Lua caller).
HostFunction = Callable[..., Any]


class HostAPI:
    """What :meth:`Runtime.expose` and :meth:`Runtime.call` do."""

    def __init__(
        self,
        bridge: LuaBridge,
        applications: Applications,
        suspending: Callable[[str, Callable[..., Awaitable[tuple[object, ...]]]], LuaTable],
        in_executor: Callable[[Callable[[], Any]], Awaitable[Any]],
        running: Callable[[], bool],
    ) -> None:
        self._bridge = bridge
        self._applications = applications
        self._suspending = suspending
        self._in_executor = in_executor
        self._running = running
        self._calls: set[trio.CancelScope] = set()
        self.names: set[str] = set()

    def stop(self) -> None:
        """Lua runs no more: calls still waiting for it raise RuntimeError."""
        for scope in self._calls:
            scope.cancel()

    def expose(self, name: str, function: HostFunction, *, text: bool = True) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in _LUA_KEYWORDS:
            raise ValueError(f"cannot expose {name!r}: a name is a Lua identifier")
        if name in self.names:
            raise ValueError(f"cannot expose {name!r}: mona.host.{name} exists already")
        if not callable(function):
            raise TypeError(f"cannot expose {name!r}: {function!r} is not callable")
        bridge = self._bridge
        new_table = bridge.table
        where = f"mona.host.{name}"

        scalars = _SCALARS

        def arguments(args: tuple[object, ...]) -> list[Any]:
            found = list(args)
            for index, value in enumerate(found):
                cls = value.__class__
                if cls in scalars:
                    continue
                if cls is bytes and not text:
                    continue
                found[index] = from_lua(
                    value, bridge, text=text, where=f"argument #{index + 1} to '{where}'"
                )
            return found

        most = bridge.max_results

        def results(found: object) -> tuple[object, ...]:
            if found.__class__ in scalars and found.__class__ is not int:
                return True, found
            values = found if isinstance(found, tuple) else (found,)
            if len(values) > most:
                raise ValueFormError(
                    f"{where} returned {len(values)} values, more than one Lua call can "
                    f"return ({most})"
                )
            return (True, *(to_lua(new_table, v, f"what {where} returned") for v in values))

        if inspect.iscoroutinefunction(function):

            async def work(*args: object) -> tuple[object, ...]:
                try:
                    return results(await function(*arguments(args)))
                except Exception as exc:
                    return False, _message(exc)

            lua_function = self._suspending(where, work)
        else:

            def lua_function(*args: object) -> tuple[object, ...]:
                try:
                    return results(function(*arguments(args)))
                except Exception as exc:
                    return False, _message(exc)

        self._bridge.expose(name.encode(), lua_function)
        self.names.add(name)

    async def call(self, app_path: str, name: str, args: tuple[object, ...], text: bool) -> Any:
        if not self._running():
            raise RuntimeError(f"cannot call {name!r}: the runtime is not running")
        app = self._applications.find("" if app_path == "/" else app_path.rstrip("/"))
        if app is None:
            raise LookupError(f"no application at {app_path!r}")
        if app.env is None:
            raise LookupError(f"the application {app_path!r} is not running (failed, or reloading)")
        bridge = self._bridge
        lua_args = bridge.table()
        for index, value in enumerate(args, start=1):
            lua_args[index] = to_lua(bridge.table, value, f"argument #{index} to {name!r}")
        lua_args[b"n"] = len(args)
        box = bridge.table()
        box[b"args"] = lua_args
        env = app.env
        with trio.CancelScope() as scope:  # (cancelled by stop(): a call still waiting)
            self._calls.add(scope)
            try:
                await self._in_executor(lambda: bridge.host_call(env, name.encode(), box))
            finally:
                self._calls.discard(scope)
        if scope.cancelled_caught:
            raise RuntimeError(f"{name!r} did not finish: the runtime stopped")
        if box[b"missing"] is not None:
            kind = box[b"missing"].decode()
            raise LookupError(f"{app_path!r} has no function {name!r} (its global is {kind})")
        error = box[b"error"]
        if error is not None:
            trace = box[b"traceback"]
            raise LuaError(
                error.decode("utf-8", "replace"), (trace or b"").decode("utf-8", "replace")
            )
        try:
            values = tuple(
                from_lua(box[i], bridge, text=text, where=f"what {name!r} returned")
                for i in range(1, (box[b"n"] or 0) + 1)
            )
        except ValueFormError as exc:
            raise LuaError(str(exc)) from None
        if len(values) == 1:
            return values[0]
        return values or None


def _message(exc: Exception) -> bytes:
    """What the Lua caller reads for a Python exception: its text (its type's name when
    it has none, or when making the text fails)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return (text or type(exc).__name__).encode("utf-8", "replace")
