"""The command line, as a user runs it: real processes, signals and exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import write_app

pytestmark = pytest.mark.slow

APPS = Path(__file__).resolve().parent.parent / "lua_apps"


def trio_mona(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_mona", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_echo(*extra: str) -> tuple[subprocess.Popen[str], int]:
    """Start the echo example on a free port; return the process and its port."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_mona",
            "run",
            str(APPS / "echo"),
            "--set",
            "echo.port=0",
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 20
    for line in process.stderr:
        if "echo: listening on 127.0.0.1:" in line:
            return process, int(line.split("127.0.0.1:")[1].split()[0])
        assert time.monotonic() < deadline
    raise AssertionError(f"echo did not start (exit {process.wait()})")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_echo_serves_and_exits_0_on_signal(sig: signal.Signals) -> None:
    process, port = start_echo()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(10) == b"ping"
            started = time.monotonic()
            process.send_signal(sig)
            assert process.wait(timeout=5) == 0
            assert time.monotonic() - started < 2
            client.settimeout(5)
            assert client.recv(10) == b""  # closed on shutdown
    finally:
        process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_luajit_engine_is_logged() -> None:
    process, port = start_echo("--lua", "luajit21", "--log-level", "debug")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"jit")
            assert client.recv(10) == b"jit"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        assert process.stderr is not None
        rest = process.stderr.read()
        process.stderr.close()
    assert "SIGINT received" in rest


def test_engine_logged_at_start(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "error('stop here')")
    result = trio_mona("run", str(folder), "--lua", "luajit21")
    assert "Lua engine LuaJIT 2.1" in result.stderr
    result = trio_mona("run", str(folder))
    assert "Lua engine Lua 5.4" in result.stderr


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, "applications folder not found"),
        ("", "cannot read the root application"),
        ("x = = 1", "main.lua:1: unexpected symbol near '='"),
        ("\n\nlocal t = nil\nreturn t.x", "main.lua:4: attempt to index a nil value"),
        ("error('custom failure')", "main.lua:1: custom failure"),
    ],
)
def test_startup_failures_exit_1_with_one_line(
    tmp_path: Path, source: str | None, expected: str
) -> None:
    folder = tmp_path / "apps"
    if source is not None:
        folder.mkdir()
        if source:
            (folder / "main.lua").write_text(source)
    result = trio_mona("run", str(folder))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trio-mona: ")
    assert expected in last
    if source:
        assert f"{folder}/main.lua" in last or "main.lua:" in last


def test_bad_config_file_exits_1(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "")
    (tmp_path / "bad.ini").write_text("[unclosed\n")
    result = trio_mona("run", str(folder), "--config", str(tmp_path / "bad.ini"))
    assert result.returncode == 1
    assert "bad.ini:1: unclosed section" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run"],
        ["serve", "x"],
        ["run", "x", "--bogus"],
        ["run", "x", "--lua", "lua99"],
        ["run", "x", "--log-level", "LOUD"],
        ["run", "x", "--set", "novalue"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = trio_mona(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_config_and_arguments_reach_lua(tmp_path: Path) -> None:
    folder = write_app(
        tmp_path / "apps",
        """
        NOTE("port=", mona.configs.app.port, " name=", mona.configs["app.name"],
             " arg=", mona.configs["arguments.1"])
        error("done")
        """,
    )
    (tmp_path / "c.ini").write_text("[app]\nport=5\nname=from-file\n")
    result = trio_mona(
        "run",
        str(folder),
        "--config",
        str(tmp_path / "c.ini"),
        "--set",
        "app.name=cli",
        "--",
        "extra",
    )
    assert "port=5 name=cli arg=extra" in result.stderr


def test_console_script_installed() -> None:
    script = Path(sys.executable).parent / "trio-mona"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0
    assert "run" in result.stdout
    assert os.access(script, os.X_OK)


def test_a_setting_of_5000_digits_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "assert(mona.configs.echo.port == math.huge)")
    result = trio_mona("run", str(folder), "--set", "echo.port=" + "9" * 5000, "--set",
                       "trio_mona.linger=" + "9" * 5000, timeout=20)  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("trio-mona: trio_mona.linger must")


def test_a_signal_stops_a_handler_that_never_returns(tmp_path: Path) -> None:
    app = """
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(data)
        while true do pcall(function() while true do end end) end
      end
    end
    server:start("127.0.0.1", 0)
    NOTE("listening on ", server.port)
    """
    folder = write_app(tmp_path / "apps", app)
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_mona", "run", str(folder)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = ""
    while "listening on" not in line:
        line = process.stderr.readline()
        assert line, "the runtime ended before it listened"
    port = int(line.rsplit(" ", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"go")
        time.sleep(0.5)  # the handler is spinning now
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert time.monotonic() - started < 2  # the handler bound is 5 s
    assert "shutting down: handler stopped" in process.stderr.read()


def test_os_exit_stops_in_order_with_its_code(tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "main.lua").write_text(
        "function onStop() NOTE('onStop ran') end\n"
        "local socket = require 'socket'\n"
        "socket.sleep(0.05)\n"  # (after the start: the main chunk waited first)
        "pcall(os.exit, 7)\n"  # no pcall catches it
        "NOTE('not reached')\n"
    )
    result = trio_mona("run", str(apps), "--log-level", "NOTE")
    assert result.returncode == 7, result.stderr
    assert "onStop ran" in result.stderr
    assert "not reached" not in result.stderr
    assert "failed" not in result.stderr


def test_os_exit_in_the_main_chunk_before_it_waits(tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "main.lua").write_text("print('working') os.exit(false)\n")
    result = trio_mona("run", str(apps))
    assert result.returncode == 1
    assert "working" in result.stderr
    assert "cannot" not in result.stderr


def test_http_get_example_exits_with_its_outcome() -> None:
    apps = Path(__file__).resolve().parent.parent / "lua_apps" / "http_get"
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = trio_mona("run", str(apps), "--set", f"http_get.port={port}")
    assert result.returncode == 1, result.stderr
    assert "connect: connection refused" in result.stderr
