"""``trio-mona run --workers N`` (docs/scaling.rst), with real processes: the workers
share the port, a killed worker is restarted while the others serve, a signal stops
them all, and bad counts or a port another program holds stop the start."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Server, free_port, write_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ECHO = str(ROOT / "lua_apps" / "echo")


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def workers(tmp_path: Path, port: int) -> Iterator[Server]:
    server = Server(
        tmp_path / "log", ECHO, "--workers", "2", "--data", ":memory:",
        "--set", f"echo.port={port}", "--log-level", "DEBUG",
    )  # fmt: skip
    try:
        server.wait_for(r"worker \d NOTE .*echo: listening", 2)
        yield server
    finally:
        server.kill()


def echo(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(4096)
            assert chunk, "closed before the echo"
            received += chunk
        return received


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_share_the_port_and_stop_together(workers: Server, port: int) -> None:
    for i in range(40):
        assert echo(port, f"message {i}".encode()) == f"message {i}".encode()
    served = re.findall(r"worker (\d) DEBUG .*echo: connection from", workers.text())
    assert len(served) == 40
    assert set(served) == {"1", "2"}  # (the kernel spread them: 2 x 2^-40 otherwise)
    pids = [int(p) for p in re.findall(r"worker \d started \(pid (\d+)\)", workers.text())]
    assert len(pids) == 2
    assert workers.stop() == 0
    assert not any(alive(pid) for pid in pids)
    assert "SIGTERM received: stopping the workers" in workers.text()


def test_ctrl_c_stops_the_supervisor_and_every_worker(workers: Server, port: int) -> None:
    assert echo(port) == b"ping"
    pids = [int(p) for p in re.findall(r"worker \d started \(pid (\d+)\)", workers.text())]
    os.killpg(workers.process.pid, signal.SIGINT)  # (what Ctrl-C in a terminal sends)
    assert workers.process.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in pids)
    assert "restarting" not in workers.text()


def test_sigusr1_logs_each_workers_statistics_and_their_sum(workers: Server, port: int) -> None:
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        workers.wait_for(r"echo: connection from", 3)
        workers.process.send_signal(signal.SIGUSR1)
        total = workers.wait_for(
            r"statistics, all workers: tcp_connections=(\d+) tcp_servers=(\d+)"
        )
        each = workers.wait_for(
            r"statistics, worker \d: tcp_connections=(\d+) tcp_servers=(\d+)", 2
        )
    finally:
        for sock in idle:
            sock.close()
    assert total[0] == ("3", "2")
    assert sum(int(c) for c, _ in each) == 3
    assert [s for _, s in each] == ["1", "1"]
    assert workers.stop() == 0


def test_sigusr1_logs_the_statistics_of_a_single_process(tmp_path: Path, port: int) -> None:
    server = Server(tmp_path / "log", ECHO, "--data", ":memory:", "--set", f"echo.port={port}")
    try:
        server.wait_for(r"echo: listening")
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            assert echo(port) == b"ping"
            server.process.send_signal(signal.SIGUSR1)
            found = server.wait_for(r"NOTE .* statistics: tcp_connections=(\d+) tcp_servers=1")
        assert found[0] in ("1", "2")  # (the echo's own connection may be closing)
        assert server.stop() == 0
    finally:
        server.kill()


def test_a_killed_worker_is_restarted_while_the_other_serves(workers: Server, port: int) -> None:
    first = workers.wait_for(r"worker 1 started \(pid (\d+)\)")[0]
    os.kill(int(first), signal.SIGKILL)
    # (connections queued to a worker as it dies are reset: docs/scaling.rst)
    workers.wait_for(rf"worker 1 \(pid {first}\) died")
    # Meanwhile the other worker answers every connection.
    for i in range(20):
        assert echo(port, f"during {i}".encode()) == f"during {i}".encode()
    workers.wait_for(rf"worker 1 \(pid {first}\) died \(signal SIGKILL\).*restarting in 0.5 s")
    again = workers.wait_for(r"worker 1 started \(pid (\d+)\)", 2)[1]
    assert again != first
    workers.wait_for(r"worker 1 NOTE .*echo: listening", 2)
    assert echo(port) == b"ping"
    assert workers.stop() == 0


def test_a_worker_killed_while_it_restarts_is_restarted_again(workers: Server, port: int) -> None:
    first = workers.wait_for(r"worker 1 started \(pid (\d+)\)")[0]
    os.kill(int(first), signal.SIGKILL)
    starting = workers.wait_for(r"worker 1 started \(pid (\d+)\)", 2)[1]
    os.kill(int(starting), signal.SIGKILL)  # (before its applications have started)
    # (", while starting" in the line, unless that worker was quicker than the test)
    workers.wait_for(rf"worker 1 \(pid {starting}\) died \(signal SIGKILL\).*restarting in 1 s")
    assert echo(port) == b"ping"  # (the other worker serves on)
    workers.wait_for(r"worker 1 started \(pid (\d+)\)", 3)
    workers.wait_for(r"worker 1 NOTE .*echo: listening", 2)
    assert "could not start" not in workers.text()
    assert workers.stop() == 0


@pytest.mark.parametrize("count", ["0", "x", "2000"])
def test_bad_worker_counts_are_refused(count: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_mona", "run", ECHO, "--workers", count],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"--workers: must be a whole number from 1 to 1024, got '{count}'" in result.stderr


def test_workers_in_the_configuration(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_mona", "run", ECHO, "--set", "trio_mona.workers=0"],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    assert "trio_mona.workers must be 1 to 1024, got 0" in result.stderr


def test_workers_refuse_one_sqlite_file(tmp_path: Path, port: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_mona", "run", ECHO, "--workers", "2",
         "--data", str(tmp_path / "data.sqlite"), "--set", f"echo.port={port}"],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    assert "2 workers cannot share `data` in one SQLite file" in result.stderr
    assert not (tmp_path / "data.sqlite").exists()


def test_a_port_another_program_holds_stops_the_start(tmp_path: Path, port: int) -> None:
    with socket.create_server(("127.0.0.1", port)):
        server = Server(
            tmp_path / "log", ECHO, "--workers", "2", "--data", ":memory:",
            "--set", f"echo.port={port}",
        )  # fmt: skip
        try:
            code = server.process.wait(timeout=30)
        finally:
            server.kill()
    assert code == 1
    text = server.text()
    assert "echo: cannot listen on 127.0.0.1:" in text
    assert re.search(r"worker \d could not start \(exit code 1\): stopping", text)


def test_os_exit_in_one_worker_stops_them_all(tmp_path: Path, port: int) -> None:
    folder = write_app(
        tmp_path / "apps",
        f"""
        server = mona:createTCPServer()
        function server:onConnection(client)
          function client:onData(data)
            if data == "quit" then os.exit(0) end
            self:send(data)
          end
        end
        assert(server:start("127.0.0.1", {port}))
        NOTE("serving")
    """,
    )
    server = Server(tmp_path / "log", str(folder), "--workers", "2", "--data", ":memory:")
    try:
        server.wait_for(r"worker \d NOTE .*serving", 2)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"quit")
        assert server.process.wait(timeout=30) == 0
    finally:
        server.kill()
    assert re.search(r"worker \d stopped on its own: stopping the others", server.text())
    assert "restarting" not in server.text()


def test_workers_share_the_http_port(tmp_path: Path, port: int) -> None:
    apps = write_app(tmp_path / "apps", """
        function onConnection(client)
          function client:who() return mona.configs["trio_mona.reuse_port"] end
          INFO("client on ", client.path)
        end
    """)  # fmt: skip
    server = Server(tmp_path / "log", str(apps), "--workers", "2", "--data", ":memory:",
                    "--http", str(port), "--log-level", "DEBUG")  # fmt: skip
    try:
        server.wait_for(r"worker \d INFO .*HTTP: serving on", 2)
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 OK")
            assert answer.endswith(b"[true]")
        served = re.findall(r"worker (\d) INFO .*client on", server.text())
        assert len(served) == 40
        assert set(served) == {"1", "2"}
        assert server.stop() == 0
    finally:
        server.kill()


def test_sighup_reaches_every_worker(tmp_path: Path) -> None:
    """The supervisor passes SIGHUP on: each worker reads its certificates again."""
    import trustme

    issued = trustme.CA().issue_cert("127.0.0.1")
    pem, key = tmp_path / "server.pem", tmp_path / "server.key"
    issued.private_key_pem.write_to_path(str(key))
    pem.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    server = Server(
        tmp_path / "log", ECHO, "--workers", "2", "--data", ":memory:", "--set", "echo.port=0",
        "--https", str(free_port()), "--certificate", str(pem), "--key", str(key),
    )  # fmt: skip
    try:
        server.wait_for(r"worker \d INFO .*HTTPS: serving on", 2)
        server.process.send_signal(signal.SIGHUP)
        server.wait_for(r"worker \d INFO .*HTTPS: certificates reloaded", 2)
        assert server.stop() == 0
    finally:
        server.kill()
