"""TCP echo ping-pong: trio_mona's echo example against a plain Trio echo server.

Each run starts the server pinned to one core and the C load generator (``loadgen.c``,
compiled here with the machine's gcc) pinned to the other; servers alternate run by run
(A B A B ...) and the median of the runs is reported, with every figure also as a
ratio to plain Trio from the same run. Results go to ``bench/results/echo.json``.

    python bench/echo.py [--seconds 2] [--repeat 3] [--conns 1,10,100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(core: int, command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *command]
    return command


def build_loadgen() -> Path:
    out = HERE / "results" / "loadgen"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(["gcc", "-O2", "-o", str(out), str(HERE / "loadgen.c")], check=True)
    return out


def server_command(server: str, port: int, engine: str) -> list[str]:
    if server == "plain trio":
        return [sys.executable, str(HERE / "trio_echo.py"), str(port)]
    echo = str(ROOT / "lua_apps" / "echo")
    return [sys.executable, "-m", "trio_mona", "run", echo, "--set", f"echo.port={port}",
            "--log-level", "WARN", "--lua", engine]  # fmt: skip


SERVERS = ("trio_mona", "plain trio")


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def run_once(
    loadgen: Path, server: str, engine: str, conns: int, seconds: float
) -> dict[str, float]:
    port = free_port()
    process = subprocess.Popen(
        pinned(0, server_command(server, port, engine)), stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(port)
        result = subprocess.run(
            pinned(1, [str(loadgen), str(port), str(conns), "64", str(seconds)]),
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 30,
        )
        return dict(json.loads(result.stdout))
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--conns", default="1,10,100")
    parser.add_argument("--engine", default="lua54")
    args = parser.parse_args()
    loadgen = build_loadgen()
    rows = []
    for conns in [int(c) for c in args.conns.split(",")]:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in SERVERS}
        for _ in range(args.repeat):
            for name in SERVERS:  # interleaved: A B A B ...
                runs[name].append(run_once(loadgen, name, args.engine, conns, args.seconds))
        medians = {
            name: {key: statistics.median(r[key] for r in results) for key in results[0]}
            for name, results in runs.items()
        }
        base = medians["plain trio"]["round_trips_per_s"]
        for name, m in medians.items():
            rows.append(
                {"server": name, "conns": conns, **m, "ratio": m["round_trips_per_s"] / base}
            )
    header = ("server", "conns", "trips/s", "ratio", "p50 us", "p99 us", "gen cpu")
    print("{:<11} {:>5} {:>9} {:>6} {:>8} {:>8} {:>7}".format(*header))
    for r in rows:
        print(
            f"{r['server']:<11} {r['conns']:>5} {r['round_trips_per_s']:>9.0f} {r['ratio']:>6.2f} "
            f"{r['p50_us']:>8.1f} {r['p99_us']:>8.1f} {r['generator_cpu']:>7.2f}"
        )
    out = HERE / "results" / "echo.json"
    out.write_text(
        json.dumps({"engine": args.engine, "cpus": os.cpu_count(), "rows": rows}, indent=2)
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
