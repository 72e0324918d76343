"""Configuration: MonaServer-style INI files, ``--set`` overrides, typed values.

Sans-I/O apart from :func:`load_config` reading the file. Keys are kept as
dotted strings (``"echo.port"``); :func:`nest` builds the nested view Lua also gets.
The runtime's own settings live in the ``[trio_mona]`` section (:class:`Settings`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias

import attrs

from .._version import VERSION
from .errors import MonaError

ConfigValue: TypeAlias = bool | int | float | str
NestedConfig: TypeAlias = dict[str, "ConfigValue | NestedConfig"]

_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
_DECIMAL: Final = re.compile(
    r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?[0-9]+[eE][+-]?[0-9]+"
)
_COMMENT: Final = re.compile(r"[;#]")


class ConfigError(MonaError, ValueError):
    """A configuration file or setting that cannot be used; the message says why."""


def typed(raw: str) -> ConfigValue:
    """``true``/``false`` → bool, decimal integers → int, decimals → float, else str.

    An integer beyond Lua's 64-bit range is a number like any decimal (a float, ``inf``
    when it is beyond that too)."""
    lowered = raw.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if _INTEGER.fullmatch(raw):
        if len(raw.lstrip("+-0")) <= 18:
            return int(raw)
        return float(raw)
    if _DECIMAL.fullmatch(raw):
        return float(raw)
    return raw


def parse_ini(text: str, *, source: str = "<config>") -> dict[str, str]:
    """Parse INI text into dotted keys and raw string values.

    Keys before any section are top-level; key case is kept; ``;`` and ``#`` start a
    comment anywhere on a line. A line with a key and no ``=`` gives an empty value.
    """
    entries: dict[str, str] = {}
    section = ""
    # Lines end at "\n" (and "\r\n") only: str.splitlines would also split at form
    # feeds and other separators inside a value, and start a section there.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        line = _COMMENT.split(line, maxsplit=1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"{source}:{number}: unclosed section header '{line}'")
            section = line[1:-1].strip()
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"{source}:{number}: missing key before '='")
        entries[f"{section}.{key}" if section else key] = value.strip()
    return entries


def parse_setting(setting: str) -> tuple[str, str]:
    """Split a ``SECTION.KEY=VALUE`` override; the key is everything before ``=``."""
    key, sep, value = setting.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"invalid setting '{setting}': expected SECTION.KEY=VALUE")
    return key, value.strip()


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Iterable[str] | Mapping[str, str] = ()
) -> dict[str, ConfigValue]:
    """Read an INI file (if any), apply overrides, and type every value.

    Raises:
        ConfigError: the file cannot be read or parsed, or an override is malformed.
    """
    return {key: typed(value) for key, value in load_raw_config(path, overrides).items()}


def load_raw_config(
    path: str | os.PathLike[str] | None = None, overrides: Iterable[str] | Mapping[str, str] = ()
) -> dict[str, str]:
    """:func:`load_config` before typing: every value as written (a password stays
    ``0123``)."""
    raw: dict[str, str] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
        raw.update(parse_ini(text, source=str(path)))
    if isinstance(overrides, Mapping):
        raw.update({str(k): str(v) for k, v in overrides.items()})
    else:
        raw.update(parse_setting(s) for s in overrides)
    return raw


def nest(flat: Mapping[str, ConfigValue]) -> NestedConfig:
    """The nested view of dotted keys: ``{"a.b": 1}`` → ``{"a": {"b": 1}}``.

    Where a key is both a value and a section (``a=1`` and ``a.b=2``), the section
    wins in the nested view; the value stays reachable by its dotted key.
    """
    tree: NestedConfig = {}
    for key in sorted(flat, key=lambda k: k.count(".")):
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if not isinstance(node.get(leaf), dict):
            node[leaf] = flat[key]
    return tree


@attrs.frozen
class Settings:
    """The runtime's own settings, from the ``[trio_mona]`` section."""

    #: Unsent bytes above which a connection stops reading (flow control).
    soft_limit: int = 1 << 20
    #: Unsent bytes past which ``send`` fails.
    hard_limit: int = 16 << 20
    #: Unsent bytes over every connection past which ``send`` fails.
    max_unsent: int = 256 << 20
    #: Seconds a closing connection may take to flush its queue.
    linger: float = 5.0
    #: Connections open at once, accepted and connected (0: no limit but the system's).
    max_connections: int = 0
    #: Connections one TCP server keeps open at once (0: no limit).
    max_server_connections: int = 0
    #: Seconds a connection may go without receiving or sending before it is closed
    #: (0: never).
    idle_timeout: float = 0.0
    #: The largest datagram a UDP socket sends (at most 65,507 over IPv4, 65,527 over
    #: IPv6, whatever this says).
    max_datagram: int = 65527
    #: Lua engine: ``lua54`` (default) or ``luajit21``.
    engine: str = "lua54"
    #: Lua memory cap in bytes (Lua 5.4 only); 0 for none.
    max_memory: int = 0
    #: Seconds a handler may run without returning before it is stopped with
    #: an error (Lua 5.4; best effort on LuaJIT); 0 for no bound.
    handler_timeout: float = 5.0
    #: Sandbox mode for untrusted scripts: a fresh allow-list of the standard library,
    #: files only inside the applications folder (docs: lua/safety).
    sandbox: bool = False
    #: The environment variables a sandboxed application finds in mona.environment
    #: (names separated by commas or spaces; none by default).
    sandbox_environment: str = ""
    #: Unsafe: let applications load LuaJIT's ffi and jit internals and precompiled
    #: (binary) chunks, each of which reaches the whole process. Ignored in sandbox mode.
    unsafe_native: bool = False
    #: The most one LuaSocket TCP ``receive`` may hold: a line, ``"*a"`` or a count
    #: longer than this fails (``nil, "line too long"``, ``nil, "receive too large"``)
    #: instead of growing the process without bound (docs/lua/luasocket.rst).
    luasocket_max_buffer: int = 1 << 20
    #: LuaSocket as built with LUASOCKET_DEBUG: ``socket._DEBUG`` is true, and a TCP
    #: ``send`` or ``receive`` returns the seconds it took as one more value (what
    #: LuaSocket's own test client needs).
    luasocket_debug: bool = False
    #: Seconds between two ``onManage()`` calls on the root application.
    manage_interval: float = 2.0
    #: Seconds between two looks at the main.lua files for hot reload; 0 disables it.
    reload_interval: float = 1.0
    #: The SQLite file holding ``data`` (docs: lua/data); empty: one per applications
    #: folder under ``$XDG_DATA_HOME/trio_mona``; ``:memory:`` keeps nothing; ``none``:
    #: no ``data`` global at all (an application's own variable, as in plain Lua);
    #: ``redis://HOST:PORT/DB``: Redis, shared by every worker and host pointed at it.
    data: str = ""
    #: The name under which the processes sharing a Redis meet: their ``data`` tree and
    #: ``mona.servers`` (docs/scaling.rst).
    cluster: str = "default"
    #: The most other processes ``mona.servers`` tracks; past it a newcomer is ignored
    #: (a WARNING once), so a flood of made-up peers on the cluster's Redis is bounded.
    max_servers: int = 1000
    #: ``normal``: a commit survives the process being killed; ``full``: also the
    #: machine losing power (an fsync per commit, which the executor waits for).
    data_sync: str = "normal"
    #: Worker processes ``trio-mona run`` starts, each a whole runtime serving the same
    #: applications on the same ports (docs/scaling.rst); 1: this process serves.
    workers: int = 1
    #: Listening and bound sockets take SO_REUSEPORT, so that several processes share
    #: their ports (each worker sets it).
    reuse_port: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, ConfigValue]) -> Settings:
        """Read and check the ``trio_mona.*`` keys.

        Raises:
            ConfigError: a setting has the wrong type or an impossible value.
        """
        settings = cls(**read_section(cls, config, "trio_mona"))

        settings.check()
        return settings

    def check(self) -> None:
        """Refuse impossible and pathological values (NaN, infinities, an interval so
        short that an idle server spins), naming the setting and its range."""
        _within("soft_limit", self.soft_limit, 1, _MAX_BYTES)
        _within("hard_limit", self.hard_limit, self.soft_limit, _MAX_BYTES, "soft_limit")
        _within("max_unsent", self.max_unsent, self.soft_limit, _MAX_BYTES, "soft_limit")
        _within("linger", self.linger, 0, 3600)
        _within("max_connections", self.max_connections, 0, 10_000_000)
        _within("max_server_connections", self.max_server_connections, 0, 10_000_000)
        if self.idle_timeout:
            _within("idle_timeout", self.idle_timeout, 0.01, 30 * _DAY, zero=True)
        _within("max_datagram", self.max_datagram, 1, 65527)
        _within("max_servers", self.max_servers, 1, 1_000_000)
        _within("luasocket_max_buffer", self.luasocket_max_buffer, 4096, _MAX_BYTES, "4 KiB")
        if self.engine not in ENGINES:
            raise ConfigError(f"trio_mona.engine must be one of {', '.join(ENGINES)}")
        if self.max_memory:
            _within("max_memory", self.max_memory, 4 << 20, _MAX_BYTES, "4 MiB", zero=True)
        if self.handler_timeout:
            _within("handler_timeout", self.handler_timeout, 0.01, _DAY, zero=True)
        _within("manage_interval", self.manage_interval, 0.01, _DAY)
        if self.reload_interval:
            _within("reload_interval", self.reload_interval, 0.01, _DAY, zero=True)
        _within("workers", self.workers, 1, 1024)
        if not self.cluster or not self.cluster.isprintable() or len(self.cluster) > 100:
            raise ConfigError("trio_mona.cluster must be 1 to 100 printable characters")
        if self.data_sync not in ("normal", "full"):
            raise ConfigError("trio_mona.data_sync must be normal or full")


@attrs.frozen
class HTTPSettings:
    """The ``[HTTP]`` section: where HTTP clients connect, and their bounds
    (docs/clients/http.rst). Keys are MonaServer.ini's, in its case."""

    #: None (the key absent, or ``false``): HTTP is off; 0: a free port.
    port: int | None = None
    host: str = "127.0.0.1"
    #: Seconds without a byte before a connection closes, and the most a request
    #: nobody answers is held (then 204).
    timeout: float = 7.0
    #: What a folder's URL answers: True a listing, False 403, a name that file or
    #: method.
    index: bool | str = True
    maxHeaders: int = 64 * 1024
    maxBody: int = 16 * 1024 * 1024
    #: Echo a request's ``Origin`` in ``Access-Control-Allow-Origin``, answer preflights.
    cors: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, ConfigValue]) -> HTTPSettings:
        """Read and check the ``HTTP.*`` keys.

        Raises:
            ConfigError: a key has the wrong type or an impossible value.
        """
        found = _entries(cls, config, "HTTP")
        _port_and_host(found, "HTTP")
        _numbers(found, "HTTP", timeout=(0.01, _DAY), maxHeaders=(1024, _MAX_BYTES),
                 maxBody=(0, _MAX_BYTES))  # fmt: skip
        index = found.get("index")
        if index is not None and not isinstance(index, bool | str):
            found["index"] = str(index)
        if not isinstance(found.get("cors", True), bool):
            raise ConfigError(f"HTTP.cors must be true or false, got {found['cors']!r}")
        return cls(**found)


@attrs.frozen
class WebSocketSettings:
    """The ``[WebSocket]`` section: WebSocket clients on the HTTP port
    (docs/clients/websocket.rst)."""

    #: The largest message a client may send (bytes; characters of text): past it the
    #: client is closed with 1009.
    maxMessage: int = 1 << 20
    #: Seconds between the server's pings (``client.ping`` is their round trip).
    ping: float = 40.0
    #: Seconds a client may send nothing before it is closed with 1001.
    timeout: float = 120.0
    #: Negotiate permessage-deflate when the browser offers it.
    compress: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, ConfigValue]) -> WebSocketSettings:
        """Read and check the ``WebSocket.*`` keys.

        Raises:
            ConfigError: a key has the wrong type or an impossible value.
        """
        found = _entries(cls, config, "WebSocket")
        _numbers(found, "WebSocket", maxMessage=(1, _MAX_BYTES), ping=(0.01, _DAY),
                 timeout=(0.01, _DAY))  # fmt: skip
        if not isinstance(found.get("compress", True), bool):
            raise ConfigError(
                f"WebSocket.compress must be true or false, got {found['compress']!r}"
            )
        return cls(**found)


@attrs.frozen
class RTMPSettings:
    """The ``[RTMP]`` section: where encoders and players connect (docs/clients/rtmp.rst)."""

    #: None (absent, or ``false``): RTMP is off; 0: a free port.
    port: int | None = None
    host: str = "127.0.0.1"
    #: Seconds without a byte before a connection is closed.
    timeout: float = 60.0
    #: New listeners start with the frames since the last keyframe (at once, but that
    #: much behind), not at the next keyframe.
    gopCache: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, ConfigValue]) -> RTMPSettings:
        """Read and check the ``RTMP.*`` keys.

        Raises:
            ConfigError: a key has the wrong type or an impossible value.
        """
        found = _entries(cls, config, "RTMP")
        _port_and_host(found, "RTMP")
        _numbers(found, "RTMP", timeout=(0.01, _DAY))
        if not isinstance(found.get("gopCache", False), bool):
            raise ConfigError(f"RTMP.gopCache must be true or false, got {found['gopCache']!r}")
        return cls(**found)


@attrs.frozen
class TLSSettings:
    """The ``[HTTPS]`` and ``[RTMPS]`` sections: a TLS port and its certificates
    (docs/clients/tls.rst). Its clients are served as on the plain port (``[HTTP]``,
    ``[RTMP]``: timeouts, limits)."""

    section: str = "HTTPS"
    #: None (absent, or ``false``): off; 0: a free port.
    port: int | None = None
    host: str = "127.0.0.1"
    #: The certificate (chain) and its key, PEM files.
    certificate: str | None = None
    key: str | None = None
    #: A folder of ``NAME.pem`` and ``NAME.key`` pairs, chosen by the name the client
    #: asks for (SNI).
    certificates: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, ConfigValue], section: str) -> TLSSettings:
        """Read and check the keys of *section* (``HTTPS``, ``RTMPS``).

        Raises:
            ConfigError: a key has the wrong type, or the port has no certificate.
        """
        found = _entries(cls, config, section)
        found.pop("section", None)
        _port_and_host(found, section)
        for name in ("certificate", "key", "certificates"):
            if name in found:
                found[name] = str(found[name]) or None
        settings = cls(section, **found)
        if bool(settings.certificate) != bool(settings.key):
            raise ConfigError(f"{section}.certificate and {section}.key go together")
        if settings.port is not None and not (settings.certificate or settings.certificates):
            folder = f"{section}.certificates, a folder of NAME.pem and NAME.key"
            raise ConfigError(
                f"{section}.port needs {section}.certificate and {section}.key (or {folder})"
            )
        return settings


def _port_and_host(found: dict[str, Any], section: str) -> None:
    """A protocol's ``port`` (absent or false: None, off; 0: a free one) and ``host``."""
    port = found.get("port")
    if port is False or port == "":
        found["port"] = None
    elif port is not None and (type(port) is not int or not 0 <= port <= 65535):
        raise ConfigError(f"{section}.port must be a port number (0: any free port), got {port!r}")
    if "host" in found:
        found["host"] = str(found["host"])


def _entries(
    cls: type[attrs.AttrsInstance], config: Mapping[str, ConfigValue], section: str
) -> dict[str, Any]:
    """The entries of *section* that name fields of *cls*, as they are (checked by the
    caller)."""
    return {
        field.name: config[f"{section}.{field.name}"]
        for field in attrs.fields(cls)
        if f"{section}.{field.name}" in config
    }


def _numbers(found: dict[str, Any], section: str, **ranges: tuple[float, float]) -> None:
    """Check the numbers of *found* (a section's entries) within their *ranges*; a
    range given as floats makes a float, else an int."""
    for name, (low, high) in ranges.items():
        value = found.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{section}.{name} must be a number, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"{section}.{name} must be {_number(low)} to {_number(high)}")
        found[name] = float(value) if isinstance(low, float) else int(value)


def configs_table(config: Mapping[str, ConfigValue]) -> dict[str, object]:
    """``mona.configs``: every entry as a dotted key and nested (docs/configuration.rst)."""
    table: dict[str, object] = dict(config)
    table.update(nest(config))
    return table


def full_config(raw: Mapping[str, str], arguments: Sequence[str]) -> dict[str, ConfigValue]:
    """The configuration Lua sees: the file and the overrides, typed, with MonaServer's
    ``application.*`` entries and the command line's ``arguments.N``."""
    config = {key: typed(value) for key, value in raw.items()}
    program = Path(sys.argv[0] or "trio-mona").resolve()
    config.setdefault("application.path", str(program))
    config.setdefault("application.dir", str(program.parent))
    config.setdefault("application.name", "trio_mona")
    config.setdefault("application.version", VERSION)
    for index, argument in enumerate(arguments, start=1):
        config[f"arguments.{index}"] = typed(argument)
    return config


def read_section(
    cls: type[attrs.AttrsInstance], config: Mapping[str, ConfigValue], section: str
) -> dict[str, Any]:
    """The entries of *section* that name fields of the attrs class *cls*, each of its
    field's type (an integer where a float is expected is taken). A value still as
    written (a string) is typed first, unless its field is a string: that keeps it as
    written.

    Raises:
        ConfigError: a value of another type, naming the key.
    """
    values: dict[str, Any] = {}
    for field in attrs.fields(cls):
        key = f"{section}.{field.name}"
        if key not in config:
            continue
        value = config[key]
        expected = field.type
        if isinstance(value, str) and expected != "str":
            value = typed(value)
        if expected == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value).__name__ != expected:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
            raise ConfigError(f"{key} must be {expected}, got {shown}")
        values[field.name] = value
    return values


_MAX_BYTES: Final = 1 << 40
_DAY: Final = 86400.0


def _within(
    name: str,
    value: float,
    low: float,
    high: float,
    low_name: str | None = None,
    *,
    zero: bool = False,
) -> None:
    if not low <= value <= high:  # (NaN is never within)
        allowed = f"{low_name or _number(low)} to {_number(high)}"
        if zero:
            allowed = f"0 (off) or {allowed}"
        raise ConfigError(f"trio_mona.{name} must be {allowed}, got {_number(value)}")


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


#: Supported Lua engines (lupa module names).
ENGINES: Final = ("lua54", "luajit21")
