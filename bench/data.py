"""`data` (docs/lua/data.rst): what an assignment costs, in process and over the
network, on SQLite and on Redis. Results go to ``bench/results/data.json``;
``bench/suite.py`` runs it too.

In process (one Lua loop timed with ``os.clock``, the commit included, as a handler
pays it): a burst of 10,000 small assignments in one handler; reads from a table of
10,000 entries. Beside them, a plain Python ``sqlite3`` loop doing one commit per write
(WAL, synchronous=NORMAL, as the store uses).

Over the network (the C generator of the suite, pinned as the suite pins): the echo of
``bench/servers/data_echo`` at 100 connections, 64-byte messages, with one assignment
per message (each reply leaves once it is committed) on SQLite, the same on Redis
(a ``redis-server`` this script starts on a loopback port, on whichever core is free),
and with none (the same app, ``bench.data=false``), in turn, medians of the ratios.

    python bench/data.py [--seconds 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import trio
from suite import HERE, RESULTS, Running, Server, loadgen  # (bench/ is the script's folder)

import trio_mona
from trio_mona import testing

BURST = 10_000
APP = str(HERE / "servers" / "data_echo")


@contextmanager
def redis_server() -> Iterator[str]:
    """A ``redis-server`` of its own (nothing saved), its URL while the block runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        client.close()
        yield url
    finally:
        process.kill()
        process.wait()


async def in_process(engine: str, repeat: int, store: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "main.lua").write_text("")
        where = store or str(Path(folder) / "data.sqlite")
        async with trio_mona.open_runtime(folder, engine=engine, data=where) as runtime:
            bursts, reads = [], []
            for round_ in range(repeat):
                # (a fresh table per round: new rows, as a burst of new values writes)
                code = f"""
                data.b{round_} = {{}}
                local t, started = data.b{round_}, os.clock()
                for i = 1, {BURST} do t[i] = "value " .. i end
                return started"""
                started = await testing.run_lua(runtime, code)
                ended = await testing.run_lua(runtime, "return os.clock()")
                bursts.append(BURST / (ended - started))
                code = f"""
                local t, n, started = data.b0, 0, os.clock()
                for r = 1, 10 do for i = 1, {BURST} do if t[i] then n = n + 1 end end end
                return (10 * {BURST}) / (os.clock() - started)"""
                reads.append(await testing.run_lua(runtime, code))
    return {
        "burst_assignments_per_s": statistics.median(bursts),
        "reads_per_s": statistics.median(reads),
    }


def plain_sqlite(writes: int = 5_000) -> float:
    """Writes per second of a plain sqlite3 loop, one commit per write."""
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "plain.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE data (path BLOB PRIMARY KEY, value) WITHOUT ROWID")
        started = time.perf_counter()
        for i in range(writes):
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO data VALUES (?, ?)", (b"k%d" % i, b"value"))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
    return writes / elapsed


def per_request(binary: Path, seconds: float, repeat: int, url: str) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="trio-mona-bench-data-"))

    def server(name: str, stored: bool, where: str) -> Running:
        def command(port: int) -> list[str]:
            return [sys.executable, "-m", "trio_mona", "run", APP, "--set", f"bench.port={port}",
                    "--set", f"bench.data={str(stored).lower()}", "--log-level", "WARN",
                    "--data", where]  # fmt: skip

        return Running(Server(name, command))

    servers = [
        server("with data", True, str(folder / "with.sqlite")),
        server("on redis", True, url),
        server("without data", False, str(folder / "without.sqlite")),
    ]
    rates: dict[str, list[float]] = {instance.server.name: [] for instance in servers}
    ratios: dict[str, list[float]] = {"with data": [], "on redis": []}
    args = ["pingpong", "100", "64", str(seconds)]
    try:
        for instance in servers:
            instance.ensure()
        for repetition in range(repeat):
            order = servers if repetition % 2 == 0 else servers[::-1]
            found = {}
            for instance in order:
                result = loadgen(binary, instance.port, args, seconds)
                found[instance.server.name] = result["round_trips_per_s"]
                rates[instance.server.name].append(result["round_trips_per_s"])
                time.sleep(0.2)
            for name in ratios:
                ratios[name].append(found[name] / found["without data"])
            print(f"  repetition {repetition + 1}: {found}", file=sys.stderr)
    finally:
        for instance in servers:
            instance.stop()
    return {
        "with_data_round_trips_per_s": statistics.median(rates["with data"]),
        "on_redis_round_trips_per_s": statistics.median(rates["on redis"]),
        "without_data_round_trips_per_s": statistics.median(rates["without data"]),
        "ratio": statistics.median(ratios["with data"]),
        "redis_ratio": statistics.median(ratios["on redis"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    binary = RESULTS / "loadgen"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "loadgen.c")], check=True)
    report: dict[str, object] = {
        engine: trio.run(in_process, engine, args.repeat) for engine in ("lua54", "luajit21")
    }
    report["plain_sqlite3_commit_per_write_per_s"] = plain_sqlite()
    with redis_server() as url:
        report["redis_lua54"] = trio.run(in_process, "lua54", args.repeat, url)
        report["per_request_100_conns_lua54"] = per_request(binary, args.seconds, args.repeat, url)
    (RESULTS / "data.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
