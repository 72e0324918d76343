"""Test configuration: every log level captured; Hypothesis profiles; the engine
fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from hypothesis import settings

from .helpers import ENGINES, SAME_LUA, Inbox, RedisServer, ThreadedRuntime, free_port

# Every runtime the tests start (subprocesses too) keeps its default data file here,
# not in the user's ~/.local/share (docs/lua/data.rst, "Where").
_DATA_HOME = tempfile.mkdtemp(prefix="trio-mona-tests-data-")
os.environ["XDG_DATA_HOME"] = _DATA_HOME


def pytest_sessionfinish() -> None:
    shutil.rmtree(_DATA_HOME, ignore_errors=True)


# The suite's profile stays quick; `nox -s fuzz` selects "fuzz" (100,000 inputs each).
settings.register_profile("suite", max_examples=150, deadline=None)
settings.register_profile("fuzz", max_examples=100_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


@pytest.fixture(autouse=True)
def _capture_all_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """A test that takes it runs on both engines."""
    return str(request.param)


@pytest.fixture(scope="module", params=ENGINES)
def runner(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedRuntime]:
    """A runtime on its own thread per engine (its root app defines same/same_value),
    for Hypothesis tests, which are synchronous."""
    folder = tmp_path_factory.mktemp("apps")
    (folder / "main.lua").write_text(SAME_LUA)
    found = ThreadedRuntime(str(request.param), folder)
    yield found
    found.close()


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    found = Inbox(refuse=("nobody@example.org",))
    port = free_port()
    controller = Controller(found, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield found, port
    finally:
        controller.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real ``redis-server`` of its own on a loopback port (Debian's package, which
    ``.ci/run`` installs), keeping its data in the test's folder, stopped after it."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    yield server
    server.stop()
