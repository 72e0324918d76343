"""Plain values between Python and Lua, for the host API (docs/embedding.rst).

Lua to Python: nil → None, booleans, integers → int and floats → float (LuaJIT has
only floats: an integral one is an int), strings → ``bytes`` or ``str`` as the Python
side asked, a table → a ``list`` when its keys are exactly 1..n (the empty table
too), else a ``dict``. Python to Lua: the same the other way, tuples as lists.
Anything else (a function, a coroutine, a cyclic table, a set, an object) raises
:class:`ValueFormError` naming it: no Python object ever reaches Lua.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from .._core.errors import MonaError

if TYPE_CHECKING:
    from .bridge import LuaBridge

#: Nesting past which a value is refused (both ways).
MAX_DEPTH: Final = 100
_INT64: Final = 1 << 63


class ValueFormError(MonaError, TypeError):
    """A value with no form on the other side; the message says which and where."""


def from_lua(value: object, bridge: LuaBridge, *, text: bool, where: str = "value") -> Any:
    """A Lua value as Python data (*text*: strings as ``str``, decoded as UTF-8)."""
    return _from_lua(value, bridge, text, where, 0, set())


def _from_lua(
    value: object, bridge: LuaBridge, text: bool, where: str, depth: int, seen: set[int],
) -> Any:  # fmt: skip
    if value is None or value is True or value is False:
        return value
    cls = value.__class__
    if cls is int or cls is float:
        return value
    if cls is bytes:
        if not text:
            return value
        try:
            return value.decode("utf-8")  # type: ignore[attr-defined]
        except UnicodeDecodeError:
            raise ValueFormError(f"{where} is not UTF-8 text") from None
    kind = bridge.lua_type(value)
    if kind != "table":
        raise ValueFormError(f"{where} is a {kind}, which has no Python form")
    if depth >= MAX_DEPTH:
        raise ValueFormError(f"{where} is nested deeper than {MAX_DEPTH}")
    table_id = bridge.identity(value)
    if table_id in seen:
        raise ValueFormError(f"{where} is cyclic (a table inside itself)")
    seen.add(table_id)
    items = list(value.items())  # type: ignore[attr-defined]
    keys = [k for k, _ in items]
    if all(k.__class__ is int for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
        found: Any = [None] * len(items)
        for k, v in items:
            found[k - 1] = _from_lua(v, bridge, text, f"{where}[{k}]", depth + 1, seen)
    else:
        found = {}
        for k, v in items:
            key = _from_lua(k, bridge, text, f"a key of {where}", depth + 1, seen)
            if isinstance(key, list | dict):
                raise ValueFormError(f"{where} has a table as a key, which has no Python form")
            found[key] = _from_lua(v, bridge, text, f"{where}[{key!r}]", depth + 1, seen)
    seen.discard(table_id)
    return found


def to_lua(new_table: Callable[[], Any], value: object, where: str = "value") -> object:
    """Python data as a Lua value (*new_table* makes an empty Lua table)."""
    return _to_lua(new_table, value, where, 0, set())


def _to_lua(
    new_table: Callable[[], Any], value: object, where: str, depth: int, seen: set[int]
) -> object:
    if value is None or value is True or value is False:
        return value
    if isinstance(value, int):  # (subclasses as plain ints: Lua gets the number)
        if not -_INT64 <= value < _INT64:
            raise ValueFormError(f"{where} is an integer beyond 64 bits, which has no Lua form")
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, list | tuple | Mapping):
        if depth >= MAX_DEPTH:
            raise ValueFormError(f"{where} is nested deeper than {MAX_DEPTH}")
        if id(value) in seen:
            raise ValueFormError(f"{where} is cyclic (a container inside itself)")
        seen.add(id(value))
        table = new_table()
        if isinstance(value, Mapping):
            for k, v in value.items():
                if not isinstance(k, str | bytes | int | float):
                    raise ValueFormError(
                        f"{where} has a {type(k).__name__} key, which has no Lua form"
                    )
                table[_to_lua(new_table, k, f"a key of {where}", depth + 1, seen)] = _to_lua(
                    new_table, v, f"{where}[{k!r}]", depth + 1, seen
                )
        else:
            for index, item in enumerate(value, start=1):
                table[index] = _to_lua(new_table, item, f"{where}[{index - 1}]", depth + 1, seen)
        seen.discard(id(value))
        return table
    raise ValueFormError(f"{where} is a {type(value).__name__}, which has no Lua form")
