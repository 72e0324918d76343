"""Helpers for tests of Lua applications (and of trio_mona): reach into a running
:class:`~trio_mona.Runtime` the way a handler would, without private names.

Everything here runs Lua in the executor, as the runtime itself does, so it never runs
concurrently with a handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._runtime import Runtime

__all__ = ["blacklisted", "install_waiting", "run_lua"]


async def run_lua(runtime: Runtime, code: str, *, app: str = "") -> Any:
    """Run *code*, a Lua chunk, in the globals of the application at *app* (``""``:
    the root), inside a coroutine as a handler runs (so it may call a function that
    waits), and return what it returns: nothing as ``None``, one value as is, several
    as a tuple; strings as ``bytes``. Raises ``LookupError`` for a missing or stopped
    application, ``RuntimeError`` with the Lua error message when the chunk fails (the
    runtime logs it too, as for any chunk)."""
    found = runtime._applications.find(app)
    if found is None or found.env is None:
        raise LookupError(f"no application running at {app!r}")
    bridge = runtime._bridge
    chunk = bridge.load(code.encode(), "test", found.env)
    box = bridge.table()
    keeping = bridge.eval(_KEEPING)(chunk, box)
    error = await runtime._executor.call(lambda: bridge.call(keeping, b"test", app.encode(), None))
    if error is not None:
        raise RuntimeError(error.decode("utf-8", "replace"))
    values = tuple(box[index] for index in range(1, box[b"n"] + 1))
    return values[0] if len(values) == 1 else (values or None)


# A function that runs `chunk` and keeps what it returns in `box` (n = how many).
_KEEPING = """function(chunk, box)
  return function()
    local function keep(...)
      box.n = select("#", ...)
      for i = 1, box.n do box[i] = (select(i, ...)) end
    end
    keep(chunk())
  end
end"""


def install_waiting(
    runtime: Runtime, name: str, work: Callable[..., Awaitable[tuple[object, ...]]]
) -> None:
    """Make ``name(...)`` a global of the root application that suspends its Lua
    caller while ``await work(...)`` runs in a Trio task, then returns its values."""
    env = runtime._applications.root.env
    if env is None:
        raise LookupError("the root application is not running")
    env[name.encode()] = runtime._suspending(name, work)


def blacklisted(runtime: Runtime, host: str) -> bool:
    """Whether the blacklist refuses the peer address *host* (as ``accept`` gives it)."""
    return host in runtime._blacklist
