"""The package's layout: modules import each other in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import trio_mona

PACKAGE = Path(trio_mona.__file__).parent


def _imports() -> dict[str, set[str]]:
    """Each module's relative imports (dotted names below the package), those under
    ``TYPE_CHECKING`` included."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, parts if is_package else parts[:-1])
    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = package[: len(package) - (node.level - 1)]
            target = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            submodules = {f"{target}.{alias.name}".strip(".") for alias in node.names}
            if submodules <= modules.keys():  # ``from . import x``, x a module
                found |= submodules
            elif target in modules:
                found.add(target)
        graph[name] = found - {name}
    return graph


def test_imports_are_resolved() -> None:
    graph = _imports()
    assert "_core.addresses" in graph["_net.tcp"]
    assert "_core.addresses" in graph["_core.blacklist"]
    assert "_lua.host" in graph["_runtime"]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done or name not in graph:
            return None
        for dependency in sorted(graph[name]):
            found = visit(dependency, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return None


def test_no_import_cycle() -> None:
    assert _cycle(_imports()) is None


def test_the_cycle_check_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _third_party(path: Path) -> set[str]:
    """The top-level names of what *path* imports absolutely."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_core_and_the_protocol_cores_have_no_trio_and_no_lupa() -> None:
    for path in [*(PACKAGE / "_core").glob("*.py"), *(PACKAGE / "_proto").glob("*.py")]:
        assert not _third_party(path) & {"trio", "lupa"}, path.name


def test_only_the_lua_package_imports_lupa() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name != "_lua":
            assert "lupa" not in _third_party(path), path


def test_the_host_table_matches_what_the_prelude_names() -> None:
    # (every runtime checks its table when it starts; here, that the check holds)
    from trio_mona._lua.bridge import HOST_NAMES, check_host_table

    assert {"tcp_send", "tcp_send_held", "log", "configs"} <= HOST_NAMES
    with pytest.raises(ValueError, match=r"missing \['tcp_send'\]"):
        check_host_table(dict.fromkeys(HOST_NAMES - {"tcp_send"}))
    with pytest.raises(ValueError, match=r"not used by the prelude \['extra'\]"):
        check_host_table(dict.fromkeys(HOST_NAMES | {"extra"}))


def test_tests_outside_unit_use_no_private_name() -> None:
    """Behaviour tests use the public API and trio_mona.testing; only tests/unit/ (the
    sans-I/O parts, the bridge, and the tests of internals) reach private names."""
    tests = Path(__file__).resolve().parents[1]
    for path in tests.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("trio_mona._"), (path.name, node.module)
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                assert node.attr.startswith("__"), (path.name, node.lineno, node.attr)


def test_comments_point_into_the_repository() -> None:
    # (the design decisions are in docs/design.rst, not in a text outside the repo)
    root = PACKAGE.parent
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.lua"), *root.glob("docs/**/*.rst")]:
        assert "DESIGN §" not in path.read_text(), path


#: The floors of the package, lowest first: a package imports only from its own floor
#: and those below it (docs/architecture.rst, "Layout"). ``_core`` and ``_formats``
#: are the ground; the sockets (``_net``) know no Lua and no store, and the protocol
#: cores (``_proto``) beside them no sockets either; the store (``_data``) knows no Lua
#: (it gates the sockets' writes: ``_net/writes.py``).
FLOORS: tuple[frozenset[str], ...] = (
    frozenset({"_core", "_formats"}),
    frozenset({"_net", "_proto"}),
    frozenset({"_data", "_clients"}),
    frozenset({"_lua"}),
)


def _package(module: str) -> str:
    """The top-level package a module belongs to (a top module is its own)."""
    return module.split(".")[0]


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, imported in graph.items():
        found = packages.setdefault(_package(module), set())
        found |= {_package(name) for name in imported} - {_package(module)}
    return packages


def _floor_leaks(packages: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The imports that go up a floor, or sideways between the packages of a floor."""
    floor_of = {name: level for level, floor in enumerate(FLOORS) for name in floor}
    leaks = []
    for package, imported in sorted(packages.items()):
        if package not in floor_of:
            continue
        for name in sorted(imported):
            if name == "_version":
                continue  # (the package's version string)
            if floor_of.get(name, len(FLOORS)) >= floor_of[package] and name not in FLOORS[0]:
                leaks.append((package, name))
    return leaks


def test_packages_import_only_the_floors_below() -> None:
    packages = _package_graph(_imports())
    assert _floor_leaks(packages) == []
    assert _cycle(packages) is None


def test_the_floor_check_finds_todays_leaks() -> None:
    # (what main had before the transport issue: each would fail the test above)
    assert _floor_leaks({"_net": {"_lua", "_core"}}) == [("_net", "_lua")]
    assert _floor_leaks({"_net": {"_data"}}) == [("_net", "_data")]
    assert _floor_leaks({"_proto": {"_net"}}) == [("_proto", "_net")]
    assert _floor_leaks({"_data": {"_lua"}}) == [("_data", "_lua")]
    assert _floor_leaks({"_core": {"_net"}}) == [("_core", "_net")]
    assert _floor_leaks({"_formats": {"_core"}}) == []
    assert _cycle({"_net": {"_lua"}, "_lua": {"_net"}}) == ["_lua", "_net", "_lua"]
