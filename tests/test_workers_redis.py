"""Workers sharing `data` on a real ``redis-server`` (docs/scaling.rst): a worker
killed with ``kill -9`` loses no assignment it acknowledged, and the others serve."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from .helpers import RedisServer, Server, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
KV = str(ROOT / "lua_apps" / "kv")


def kv_workers(log: Path, workers: int, url: str, port: int) -> Server:
    """``lua_apps/kv`` on *workers* processes sharing `data` on the Redis at *url*,
    once every worker listens on *port*."""
    server = Server(log, KV, "--workers", str(workers), "--data", url, "--set", f"kv.port={port}")
    try:
        server.wait_for(r"worker \d INFO .*kv: listening", workers)
    except BaseException:
        server.kill()
        raise
    return server


def test_a_worker_killed_with_sigkill_loses_no_acknowledged_assignment(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    port = free_port()
    server = kv_workers(tmp_path / "log", 2, redis_server.url, port)
    try:
        victim = int(server.wait_for(r"worker 1 started \(pid (\d+)\)")[0])
        acknowledged: dict[str, str] = {}
        failed = 0
        i = 0
        while len(acknowledged) < 300:  # (a connection each: the kernel spreads them)
            i += 1
            if i == 120:
                os.kill(victim, signal.SIGKILL)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(f"set k{i} v{i}\n".encode())
                    if sock.recv(16) == b"ok\n":
                        acknowledged[f"k{i}"] = f"v{i}"
                        continue
            except OSError:
                pass
            failed += 1  # (reset by the death, or refused while no worker listened)
        server.wait_for(rf"worker 1 \(pid {victim}\) died \(signal SIGKILL\)")
        client = redis.Redis.from_url(redis_server.url)
        stored = client.hgetall("trio_mona:default:data")
        client.close()
        missing = [
            k
            for k, v in acknowledged.items()
            if stored.get(b"store\0" + k.encode()) != b"S" + v.encode()
        ]
        assert not missing, (missing, failed)
        # The restarted worker reads the tree from Redis and serves it.
        server.wait_for(r"worker 1 INFO .*kv: listening", 2)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
            probe.sendall(b"count\n")
            assert int(probe.recv(16)) >= len(acknowledged)
        assert server.stop() == 0
        assert re.search(
            r"worker \d .*data: redis://127.0.0.1:\d+/0 \(\d+ entries\)", server.text()
        )
    finally:
        server.kill()


class Line:
    """A chat client over a blocking socket, read line by line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def until(self, wanted: str) -> list[str]:
        """The lines up to the first that starts with *wanted* (within the timeout)."""
        seen: list[str] = []
        while True:
            while b"\n" not in self.buffer:
                chunk = self.sock.recv(4096)
                assert chunk, f"closed before {wanted!r}; saw {seen}"
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\n", 1)
            seen.append(line.decode())
            if seen[-1].startswith(wanted):
                return seen


def test_chat_with_four_workers_reaches_every_client(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    port = free_port()
    server = Server(
        tmp_path / "log", str(ROOT / "lua_apps" / "chat"), "--workers", "4",
        "--data", redis_server.url, "--set", f"chat.port={port}",
    )  # fmt: skip
    clients: list[Line] = []
    try:
        server.wait_for(r"chat: listening", 4)
        server.wait_for(r"mona.servers: \S+ joined", 12)  # (each worker sees 3 others)
        for i in range(8):
            client = Line(port)
            client.until("* welcome to the chat")
            client.send(f"n{i}")
            client.until(f"* welcome n{i}")
            clients.append(client)
        for client in clients[:-1]:  # (every join reached every client)
            client.until("* n7 joined")
        clients[0].send("hello from n0")
        for client in clients[1:]:
            client.until("<n0> hello from n0")
        clients[5].send("/who")
        assert clients[5].until("* here:")[-1] == "* here: " + ", ".join(f"n{i}" for i in range(8))
        clients[3].send("/quit")
        clients[3].until("* bye")
        for i, client in enumerate(clients):
            if i != 3:
                client.until("* n3 left")
        # A worker killed is lost to the others once its heartbeat stops (3.5 s).
        victim = int(server.wait_for(r"worker 2 started \(pid (\d+)\)")[0])
        os.kill(victim, signal.SIGKILL)
        server.wait_for(r"mona.servers: \S+ left \(not heard from for 3.5 s\)", 3)
        server.wait_for(r"mona.servers: \S+ joined", 12 + 6)  # (restarted: it and the 3)
        assert server.stop() == 0
    finally:
        for client in clients:
            client.sock.close()
        server.kill()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_redis_down_at_start_exits_1_naming_it(tmp_path: Path, workers: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, "-m", "trio_mona", "run", KV, "--workers", workers, "--data", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert f"{url}: cannot reach Redis" in result.stderr
    assert "Connection refused" in result.stderr


def test_a_value_set_in_one_worker_is_read_in_the_others_50_ms_later(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    port = free_port()
    server = kv_workers(tmp_path / "log", 3, redis_server.url, port)
    try:
        for round_ in range(5):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as setter:
                setter.sendall(f"set shared v{round_}\n".encode())
                assert setter.recv(16) == b"ok\n"
            time.sleep(0.05)
            for _ in range(12):  # (fresh connections: the kernel spreads them)
                with socket.create_connection(("127.0.0.1", port), timeout=5) as getter:
                    getter.sendall(b"get shared\n")
                    assert getter.recv(64) == f"v{round_}\n".encode()
        assert server.stop() == 0
    finally:
        server.kill()
