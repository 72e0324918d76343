"""Instructions per echoed message, counted with callgrind, in process.

Wall-clock time on a 2-core machine that also runs the load generator moves by ±15 %
between runs; instruction counts do not, so a change to the hot path is judged here
first (docs/performance.rst). A driver in the runtime's own Trio loop runs
``lua_apps/echo``: *clients* TCP connections (or UDP sockets) each write a 64-byte
message at once, then read every reply, for a number of rounds; churn opens a
connection, echoes one message and closes it. Each case runs twice under callgrind,
with R and 2R rounds; the difference divided by R rounds' messages is the cost of one
message, the start-up and shutdown cancelled out (the driver's own work is included).

    python bench/instructions.py [--rounds 100] [--engine lua54] [--only tcp1,tcp100,udp10,churn]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import trio

import trio_mona

HERE = Path(__file__).resolve().parent
ECHO = HERE.parent / "lua_apps" / "echo"
CASES = {"tcp1": ("tcp", 1), "tcp100": ("tcp", 100), "udp10": ("udp", 10), "churn": ("churn", 1)}
MESSAGE = b"m" * 64


async def _replies(socks: list[socket.socket], size: int) -> None:
    """Read *size* bytes from each socket, waiting only when one has nothing yet."""
    for sock in socks:
        got = 0
        while got < size:
            try:
                got += len(sock.recv(65536))
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)


def _open(kind: int, address: tuple[str, int], count: int) -> list[socket.socket]:
    socks = [socket.socket(socket.AF_INET, kind) for _ in range(count)]
    for sock in socks:
        sock.connect(address)  # (blocking: the runtime's listener takes it meanwhile)
        sock.setblocking(False)
    return socks


async def _echo(kind: int, address: tuple[str, int], clients: int, rounds: int) -> None:
    """*clients* sockets write at once, then read every reply, *rounds* times (raw
    sockets: the driver's own cost per message stays small beside the server's)."""
    socks = _open(kind, address, clients)
    for _ in range(rounds):
        for sock in socks:
            sock.send(MESSAGE)
        await _replies(socks, len(MESSAGE))
    for sock in socks:
        sock.close()


async def _tcp(address: tuple[str, int], clients: int, rounds: int) -> None:
    await _echo(socket.SOCK_STREAM, address, clients, rounds)


async def _udp(address: tuple[str, int], clients: int, rounds: int) -> None:
    await _echo(socket.SOCK_DGRAM, address, clients, rounds)


async def _churn(address: tuple[str, int], clients: int, rounds: int) -> None:
    for _ in range(rounds):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(address)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
        sock.send(MESSAGE)
        await _replies([sock], len(MESSAGE))
        sock.close()


DRIVERS = {"tcp": _tcp, "udp": _udp, "churn": _churn}


async def drive(case: str, rounds: int, engine: str) -> None:
    kind, clients = CASES[case]
    settings = {"echo.port": "0", "trio_mona.handler_timeout": "0"}
    async with trio_mona.open_runtime(ECHO, settings=settings, engine=engine, data="none") as rt:
        bound = rt.bound_addresses[0]
        await DRIVERS[kind]((bound.host, bound.port), clients, rounds)


def count(case: str, rounds: int, engine: str) -> int:
    """Instructions of one whole run of *case* under callgrind."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--drive", case, "--rounds", str(rounds), "--engine", engine,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind said no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--engine", default="lua54")
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        trio.run(drive, args.drive, args.rounds, args.engine)
        return
    results = {}
    for case in args.only.split(","):
        rounds = args.rounds * (10 if case in ("tcp1", "churn") else 1)
        messages = rounds * CASES[case][1]
        once, twice = count(case, rounds, args.engine), count(case, 2 * rounds, args.engine)
        results[case] = per_message = (twice - once) / messages
        print(f"{case:8} {per_message / 1000:8.1f}k instructions per message", flush=True)
    out = HERE / "results" / "instructions.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"engine": args.engine, "per_message": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
