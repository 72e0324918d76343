"""The public API is small and stable: exactly these names, each documented."""

from __future__ import annotations

import trio_mona

PUBLIC = {
    "BoundAddress",
    "ConfigError",
    "IPAddress",
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
