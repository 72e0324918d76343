"""trio_mona: MonaServer-style Lua server applications on a Trio socket runtime."""

from ._core.addresses import IPAddress as IPAddress
from ._core.addresses import SocketAddress as SocketAddress
from ._core.config import ConfigError as ConfigError
from ._core.errors import InternalError as InternalError
from ._core.errors import LuaError as LuaError
from ._core.errors import MonaError as MonaError
from ._core.errors import StartupError as StartupError
from ._runtime import BoundAddress as BoundAddress
from ._runtime import Runtime as Runtime
from ._runtime import RuntimeStatistics as RuntimeStatistics
from ._runtime import open_runtime as open_runtime
from ._runtime import serve as serve
from ._version import VERSION as __version__

__all__ = [
    "BoundAddress",
    "ConfigError",
    "IPAddress",
    "InternalError",
    "LuaError",
    "MonaError",
    "Runtime",
    "RuntimeStatistics",
    "SocketAddress",
    "StartupError",
    "__version__",
    "open_runtime",
    "serve",
]

# The public names say they come from here (reprs, tracebacks, the docs), not from the
# private module that defines them.
for _name in __all__:
    _value = globals()[_name]
    if getattr(_value, "__module__", "").startswith("trio_mona."):
        _value.__module__ = "trio_mona"
del _name, _value
