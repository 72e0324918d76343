"""Developer sessions: ``nox -s tests lint typing docs bench fuzz``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typing", "docs"]  # bench, fuzz: on demand
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def group(name: str) -> list[str]:
    """A dependency group of pyproject.toml, the one list of what a session needs."""
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite over real loopback sockets."""
    session.install("-e", ".", *group("test"))
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and this file."""
    session.install("-e", ".", *group("typing"))
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs; warnings are errors."""
    session.install("-e", ".", *group("docs"))
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite against plain Trio, asyncio, uvloop and copas (needs gcc)."""
    session.install("-e", ".", *group("bench"))
    session.run("python", "bench/suite.py", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The property tests with 100,000 inputs per parser (address arguments, ports,
    INI files, config values and settings, the framing loop); minutes, not seconds."""
    session.install("-e", ".", *group("test"))
    session.run(
        "pytest",
        "tests/unit/test_properties.py",
        "-p",
        "no:cacheprovider",
        "--timeout=0",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "fuzz"},
    )
