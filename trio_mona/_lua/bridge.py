"""The one typed doorway to lupa.

lupa's stubs are incomplete and its objects are untyped, so everything that touches
``LuaRuntime`` lives here, behind :class:`LuaBridge`. Lua strings are ``bytes``
end to end (``encoding=None``); Python hands Lua ``bytes`` only, never ``str``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from .._core.config import ENGINES
from .._core.errors import MonaError

__all__ = ["LuaBridge", "LuaLoadError", "LuaTable"]

#: A Lua table or function as lupa hands it to Python (opaque here).
LuaTable = Any


class LuaLoadError(MonaError):
    """A Lua chunk failed to load or run; the message carries Lua's file and line."""


def _deny_attributes(obj: object, name: object, is_setting: bool) -> object:
    # Lua never receives Python objects it could inspect; refuse every attribute
    # access so that `obj.__class__`, `f.__globals__` etc. lead nowhere.
    raise AttributeError("access to Python attributes is denied")


def _source(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath(name).read_bytes()


_STDLIB: Final = _source("stdlib.lua")
#: The prelude's files, run in this order (see the head of prelude.lua).
_PRELUDE: Final = tuple(
    (name, _source(name))
    for name in (
        "prelude.lua",
        "jobs.lua",
        "objects.lua",
        "data.lua",
        "servers.lua",
        "applications.lua",
        "socket.lua",
        "luasec.lua",
        "clients.lua",
        "media.lua",
    )
)

#: The conversions (docs/lua/conversions.rst): the shared rules, the tapes (which add to
#: them), then one file per format, each run with the real globals and the host table.
_FORMATS: Final = tuple(
    (name, importlib.resources.files("trio_mona._formats").joinpath(f"{name}.lua").read_bytes())
    for name in ("values", "tape", "json", "query", "xml", "xmlrpc", "amf")
)

#: The host functions and values the prelude names (``host.x``): the contract with the
#: table the runtime builds, checked when a bridge is made.
HOST_NAMES: Final = frozenset(
    name.decode()
    for _, source in (*_PRELUDE, *_FORMATS)
    for name in re.findall(rb"\bhost(?:_functions)?\.([A-Za-z_]\w*)", source)
)


#: The host functions that keep a Lua object they are handed (a table or a function), by
#: the positions of those arguments. lupa ties the Python wrapper of a Lua object to the
#: Lua thread it crossed in, and releases it through that thread: one an application's
#: own coroutine ran, and the collector may have freed since (docs/architecture.rst,
#: "Lua objects kept by Python"). These arguments are handed back to Python once more
#: from the main thread, which lives as long as the runtime.
KEEPS_LUA_OBJECTS: Final = {
    "tcp_connect": (1,),
    "tcp_server_start": (1,),
    "udp_attach": (1,),
    "set_timer": (1,),
    "mail_send": (0,),
}


def check_host_table(host: Mapping[str, object]) -> None:
    """Raise ``ValueError`` unless *host* has exactly the names the prelude uses."""
    if set(host) != HOST_NAMES:
        missing, unused = sorted(HOST_NAMES - set(host)), sorted(set(host) - HOST_NAMES)
        raise ValueError(f"host table: missing {missing}, not used by the prelude {unused}")


#: Loads the runtime's own Lua files with no globals at all: each takes what it uses
#: from the real globals it is handed, before any application runs (docs: lua/safety).
_SEALED_LOADER: Final = """
function(source, chunkname)
  local function refuse(_, name)
    error("trio_mona's Lua code used the global '" .. tostring(name) .. "'", 2)
  end
  return load(source, chunkname, 't', setmetatable({}, { __index = refuse, __newindex = refuse }))
end
"""


#: lupa gives every Python object in Lua one shared metatable; its __metatable field
#: makes getmetatable answer a name and refuse changes, whatever reaches a Python object.
_SEAL_PYTHON_OBJECTS: Final = """function(python_object)
  local mt = debug.getmetatable(python_object)
  if mt ~= nil and rawget(mt, "__metatable") == nil then rawset(mt, "__metatable", "Python") end
end"""


_IDENTITY: Final = """(function()
  local ids, n = setmetatable({}, { __mode = "k" }), 0
  return function(t)
    local id = ids[t]
    if id == nil then n = n + 1; id = n; ids[t] = id end
    return id
  end
end)()"""


class LuaBridge:
    """One Lua state with trio_mona's prelude loaded.

    Only the executor task calls into it once the runtime runs; *host* is the table of
    Python functions the prelude calls (see ``_lua/prelude.lua``). *sandbox* and
    *unsafe_native* choose the standard library applications get (``_lua/stdlib.lua``).
    """

    def __init__(
        self,
        engine: str,
        host: Mapping[str, object],
        *,
        max_memory: int = 0,
        sandbox: bool = False,
        unsafe_native: bool = False,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown Lua engine {engine!r}; choose one of {', '.join(ENGINES)}")
        module = importlib.import_module(f"lupa.{engine}")
        options: dict[str, object] = {}
        if max_memory and engine == "lua54":
            options["max_memory"] = max_memory
        self._lua = module.LuaRuntime(
            encoding=None,
            unpack_returned_tuples=True,
            register_eval=False,
            register_builtins=False,
            attribute_filter=_deny_attributes,
            **options,
        )
        self.engine = engine
        self.version: str = self._lua.lua_implementation.decode()
        self._lua.eval(_SEAL_PYTHON_OBJECTS)(host)
        host_table = self.table(self._anchoring(host))
        loader = self._lua.eval(_SEALED_LOADER)
        real_globals = self._lua.globals()
        stdlib = loader(_STDLIB, b"=trio_mona/_lua/stdlib.lua")(
            real_globals, unsafe_native, sandbox
        )
        (first, source), *rest = _PRELUDE
        shared = loader(source, b"=trio_mona/_lua/" + first.encode())(
            host_table, real_globals, stdlib
        )
        shared[b"formats"] = formats = self._formats(loader, real_globals, host_table)
        #: How many values one Lua call can return (the engine's stack bound, as the
        #: conversions know it: _formats/values.lua).
        self.max_results = int(formats[b"values"][b"MAX_RESULTS"])
        for name, source in rest:
            shared = loader(source, b"=trio_mona/_lua/" + name.encode())(shared)
        api = shared.api
        self.on_data: Callable[[LuaTable, bytes], Any] = api.on_data
        self.on_data_many: Callable[..., Any] = api.on_data_many
        self.on_event: Callable[..., Any] = api.on_event
        #: What :attr:`on_event` returns when the object has no handler for the event.
        self.no_handler: bytes = api.NO_HANDLER
        self.on_packet: Callable[..., Any] = api.on_packet
        self.call: Callable[..., Any] = api.call
        self.resume: Callable[..., Any] = api.resume
        self.new_object: Callable[[bytes, object, bytes], LuaTable] = api.new_object
        self.wrap_socket_address: Callable[[object], LuaTable] = api.wrap_socket_address
        self.new_app_env: Callable[..., LuaTable] = api.new_app_env
        self.set_log_threshold: Callable[[int], None] = api.set_log_threshold
        self.rest_count: Callable[[object, int], int] = api.rest_count
        self.call_timer: Callable[[LuaTable, bytes], Any] = api.call_timer
        self.set_child: Callable[[LuaTable, bytes, object], None] = api.set_child
        self.suspending: Callable[[bytes, Callable[..., Any]], LuaTable] = api.suspending
        self.drop: Callable[[int], None] = api.drop
        self.set_handler_timeout: Callable[[float], None] = api.set_handler_timeout
        #: Runs the applications' pending ``__gc`` finalizers, once, at shutdown.
        self.finalize_all: Callable[[], Any] = api.finalize_all
        self.data_load: Callable[..., None] = api.data_load
        self.server_joined: Callable[..., LuaTable] = api.server_joined
        self.servers_left: Callable[..., LuaTable] = api.servers_left
        self.server_call: Callable[[bytes, bytes, bytes], Any] = api.server_call
        self.data_apply: Callable[..., None] = api.data_apply
        self.data_reload: Callable[..., None] = api.data_reload
        self.data_reloaded: Callable[[], None] = api.data_reloaded
        #: ``down`` (why assignments fail) and ``shared`` (several processes) for data.lua.
        self.data_state: LuaTable = shared.data_changes
        self.expose: Callable[[bytes, object], None] = api.expose
        #: A number naming a Lua table while it lives (lupa hands Python a new wrapper
        #: for each access: Python's `is` cannot tell a cycle).
        self.identity: Callable[[object], int] = self._lua.eval(_IDENTITY)
        #: What a Lua value lupa hands Python is: "table", "function", "thread", ...
        self.lua_type: Callable[[object], str | None] = module.lua_type
        self.host_call: Callable[..., Any] = api.host_call
        self.client_new: Callable[..., LuaTable] = api.client_new
        self.http_request: Callable[..., Any] = api.http_request
        self.client_closed: Callable[[LuaTable, bool], Any] = api.client_closed
        self.client_open: Callable[..., Any] = api.client_open
        self.client_amf3: Callable[[LuaTable], None] = api.client_amf3
        self.media_object: Callable[[bytes, object, bytes], LuaTable] = api.media_object
        self.media_event: Callable[..., Any] = api.media_event
        self.publication_media: Callable[..., Any] = api.publication_media
        self.ws_message: Callable[..., Any] = api.ws_message
        self.manage_writers: Callable[[], Any] = api.manage_writers
        self._load_chunk = api.load_chunk

    def _anchoring(self, host: Mapping[str, object]) -> dict[str, object]:
        """*host* with the functions of :data:`KEEPS_LUA_OBJECTS` wrapped so that the Lua
        objects they keep are bound to the main thread."""
        anchor = self._lua.eval("function(value) return value end")
        wrapped = dict(host)
        for name, positions in KEEPS_LUA_OBJECTS.items():
            function = host.get(name)
            if not callable(function):
                continue  # (a partial host table: a test of the bridge alone)

            def anchored(
                *args: object,
                _function: Callable[..., Any] = function,
                _at: tuple[int, ...] = positions,
            ) -> Any:
                found = list(args)
                for index in _at:
                    if index < len(found):
                        found[index] = anchor(found[index])
                return _function(*found)

            wrapped[name] = anchored
        return wrapped

    def _formats(self, loader: Any, real_globals: LuaTable, host: LuaTable) -> LuaTable:
        """The conversions, by format name (``values``: the rules they share)."""
        formats = self._lua.table()
        (_, source), *rest = _FORMATS
        values = formats[b"values"] = loader(source, b"=trio_mona/_formats/values.lua")(
            real_globals, host
        )
        for name, source in rest:
            chunk = loader(source, b"=trio_mona/_formats/" + name.encode() + b".lua")
            formats[name.encode()] = chunk(real_globals, host, values)
        return formats

    def table(self, data: Mapping[str, object] | None = None) -> LuaTable:
        """A new Lua table from a mapping (str keys become Lua strings; nested dicts too)."""
        table = self._lua.table()
        for key, value in (data or {}).items():
            table[key.encode()] = self.to_lua(value)
        return table

    def sequence(self, items: Sequence[object]) -> LuaTable:
        """A Lua array (1-based) of converted items."""
        table = self._lua.table()
        for index, item in enumerate(items, start=1):
            table[index] = self.to_lua(item)
        return table

    def to_lua(self, value: object) -> object:
        """Convert plain Python data for Lua: str → bytes, dicts and lists → tables."""
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        if isinstance(value, Mapping):
            return self.table(value)
        if isinstance(value, list | tuple):
            return self.sequence(value)
        return value

    def load(self, source: bytes, chunkname: str, env: LuaTable) -> LuaTable:
        """Compile *source* as a text chunk with globals *env*.

        Raises:
            LuaLoadError: the chunk has a syntax error (the message has file and line).
        """
        result = self._load_chunk(source, b"@" + chunkname.encode("utf-8", "surrogateescape"), env)
        if isinstance(result, tuple):
            message = result[1]
            raise LuaLoadError(
                message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
            )
        return result

    def eval(self, source: str) -> Any:
        """Evaluate a Lua expression (tests and diagnostics only)."""
        return self._lua.eval(source)

    def memory_used(self) -> int:
        """Bytes of memory the Lua state holds."""
        return int(self._lua.eval("collectgarbage('count')") * 1024)
