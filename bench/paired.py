"""Two checkouts of trio_mona, measured in turn: is a change faster or slower?

Wall-clock figures on this 2-core machine move by ±15 % between runs minutes apart, so a
change is judged against the code before it in the same run: ``lua_apps/echo`` from
each checkout (``--before``: another worktree, e.g. ``git worktree add /tmp/base
main``), both running, measured alternately with the load generator (``loadgen.c``),
the server pinned to core 0 and the generator to core 1, as ``suite.py`` does. Each
workload is measured ``--pairs`` times on each, the order swapped every pair; reported:
the medians and the median of the paired ratios (after / before).

    python bench/paired.py --before /tmp/base [--pairs 3] [--seconds 2] [--workloads tcp,udp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from suite import RESULTS, SERVERS, WORKLOADS, free_port, loadgen, pinned, serves, wait_listening

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def start(checkout: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``lua_apps/echo`` served by the trio_mona of *checkout*."""
    port = free_port()
    echo = str(checkout / "lua_apps" / "echo")
    command = [sys.executable, "-m", "trio_mona", "run", echo, "--set", f"echo.port={port}",
               "--log-level", "WARN", "--data", ":memory:"]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    process = subprocess.Popen(
        pinned(0, command), cwd=checkout, env=environment, stderr=subprocess.DEVNULL
    )
    wait_listening(port, process)
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--workloads", default="", help="comma-separated workload prefixes")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    binary = RESULTS / "loadgen"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "loadgen.c")], check=True)
    prefixes = [p for p in args.workloads.split(",") if p]
    echo = SERVERS[0]  # lua_apps/echo: the echo workloads, not the HTTP or WebSocket ones
    workloads = [
        w
        for w in WORKLOADS
        if serves(echo, w) and (not prefixes or any(w.startswith(p) for p in prefixes))
    ]
    servers = {"before": start(args.before.resolve()), "after": start(ROOT)}
    try:
        for workload in workloads:
            metric = WORKLOADS[workload][1]
            found: dict[str, list[float]] = {"before": [], "after": []}
            for pair in range(args.pairs):
                order = ["before", "after"] if pair % 2 == 0 else ["after", "before"]
                for name in order:
                    _, port = servers[name]
                    result = loadgen(
                        binary, port, WORKLOADS[workload][0](args.seconds), args.seconds
                    )
                    found[name].append(result[metric])
                    time.sleep(0.2)
            ratios = [a / b for a, b in zip(found["after"], found["before"], strict=True)]
            print(
                f"{workload:24} {metric}: before {statistics.median(found['before']):10.1f} "
                f"after {statistics.median(found['after']):10.1f}  "
                f"ratio {statistics.median(ratios):.2f} "
                f"({', '.join(f'{r:.2f}' for r in ratios)})",
                flush=True,
            )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
