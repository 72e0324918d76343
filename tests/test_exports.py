"""The public API is small and stable: exactly these names, each documented."""

from __future__ import annotations

from pathlib import Path

import trio_mona
from trio_mona import testing

PUBLIC = {
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
}


def test_exported_names() -> None:
    assert set(trio_mona.__all__) == PUBLIC
    for name in PUBLIC - {"__version__"}:
        value = getattr(trio_mona, name)
        assert value.__doc__, f"{name} has no docstring"


def test_version_matches_package_metadata() -> None:
    from importlib.metadata import version

    assert trio_mona.__version__ == version("trio_mona")


async def test_runtime_shows_only_its_documented_members(tmp_path: Path) -> None:
    (tmp_path / "main.lua").write_text("")
    async with trio_mona.open_runtime(tmp_path) as runtime:
        public = {n for n in [*dir(type(runtime)), *vars(runtime)] if not n.startswith("_")}
    assert public == {
        "engine",
        "bound_addresses",
        "statistics",
        "exit_code",
        "wait_for_exit",
        "expose",
        "call",
        "reload_certificates",
    }
    for name in public:
        assert getattr(trio_mona.Runtime, name).__doc__, f"Runtime.{name} has no docstring"


def test_testing_helpers_are_documented() -> None:
    for name in testing.__all__:
        assert getattr(testing, name).__doc__, f"testing.{name} has no docstring"


def test_one_error_tree() -> None:
    assert issubclass(trio_mona.StartupError, trio_mona.MonaError)
    assert issubclass(trio_mona.ConfigError, trio_mona.MonaError)
