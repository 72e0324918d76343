"""Soak: minutes of mixed load on one runtime, with one misbehaving application.

The runtime serves a tree made here: the root is the echo example (TCP and UDP), and
/bad is an application whose handlers raise errors, spin past the runaway bound
(``trio_mona.handler_timeout`` 0.1 s here) and send to clients that never read. Against
it, from this process: connection churn (connect, echo 64 bytes, close), echo clients
doing round trips, UDP clients, a stream of garbage and "spin" requests to /bad, and a
bystander timing a round trip every 10 ms. Reported: connections served, datagrams
echoed, client-side errors, the bystander's p50/p99/max per minute, and the server's RSS
at minute 2 and at the end (the growth should stay under 10 %). The server runs
pinned to core 0, the load to core 1.

    python bench/soak.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio
from suite import free_port  # (bench/ is the script's folder)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BAD_APP = """
-- Misbehaves on purpose: errors, runaway loops, unread replies.
local port = mona.configs["soak.bad_port"]
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data)
    if data:find("spin", 1, true) then
      while true do pcall(function() while true do end end) end
    elseif data:find("flood", 1, true) then
      for _ = 1, 64 do self:send(string.rep("z", 16384)) end
    else
      error("bad app: cannot handle " .. #data .. " bytes")
    end
  end
end
server:start("127.0.0.1", port)
"""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Tally:
    def __init__(self) -> None:
        self.connections = 0
        self.round_trips = 0
        self.datagrams = 0
        self.errors: dict[str, int] = {}
        self.bystander: list[list[float]] = [[]]

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _churn(port: int, tally: Tally) -> None:
    while True:
        try:
            with trio.fail_after(5):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(b"c" * 64)
                got = 0
                while got < 64:
                    got += len(await stream.receive_some(64 - got))
                await stream.aclose()
            tally.connections += 1
        except (OSError, trio.TooSlowError, trio.BrokenResourceError):
            tally.error("churn")
            await trio.sleep(0.1)


async def _echo(port: int, tally: Tally, bystander: bool = False) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    while True:
        start = time.perf_counter()
        try:
            with trio.fail_after(5):
                await stream.send_all(b"e" * 64)
                got = 0
                while got < 64:
                    got += len(await stream.receive_some(64 - got))
        except (OSError, trio.TooSlowError, trio.BrokenResourceError):
            tally.error("bystander" if bystander else "echo")
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            continue
        if bystander:
            tally.bystander[-1].append(time.perf_counter() - start)
            await trio.sleep(0.01)
        else:
            tally.round_trips += 1


async def _udp(port: int, tally: Tally) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    while True:
        await sock.sendto(b"u" * 64, ("127.0.0.1", port))
        with trio.move_on_after(1) as waited:
            await sock.recvfrom(65536)
            tally.datagrams += 1
        if waited.cancelled_caught:
            tally.error("udp (lost datagram)")


async def _misbehave(port: int) -> None:
    """Garbage, runaway requests, and replies nobody reads, to the /bad application."""
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            for request in (os.urandom(300), b"spin", b"flood"):
                await stream.send_all(request)
                await trio.sleep(0.3)
            await stream.aclose()  # the flood is still queued: flushed within linger
        except (OSError, trio.BrokenResourceError):
            pass  # it misbehaves; its failures are not the soak's


async def soak(minutes: float) -> dict[str, object]:
    port, bad_port = free_port(), free_port()
    apps = Path(tempfile.mkdtemp(prefix="trio-mona-soak-"))
    shutil.copy(ROOT / "lua_apps" / "echo" / "main.lua", apps / "main.lua")
    (apps / "bad").mkdir()
    (apps / "bad" / "main.lua").write_text(BAD_APP)
    command = [sys.executable, "-m", "trio_mona", "run", str(apps), "--log-level", "CRITICAL",
               "--set", f"echo.port={port}", "--set", f"soak.bad_port={bad_port}",
               "--set", "trio_mona.handler_timeout=0.1"]  # fmt: skip
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    server = await trio.lowlevel.open_process(command)
    tally = Tally()
    rss: dict[str, int] = {}
    try:
        with trio.fail_after(20):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.1)
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(_churn, port, tally)
            for _ in range(8):
                nursery.start_soon(_echo, port, tally)
            for _ in range(4):
                nursery.start_soon(_udp, port, tally)
            nursery.start_soon(_misbehave, bad_port)
            nursery.start_soon(_echo, port, tally, True)
            for minute in range(1, int(minutes) + 1):
                await trio.sleep(60)
                if minute == 2:
                    rss["minute 2"] = _rss_kib(server.pid)
                tally.bystander.append([])
                served = f"{tally.connections} connections, {tally.datagrams} datagrams"
                print(f"minute {minute}: {served}, errors {tally.errors}", flush=True)
            rss["end"] = _rss_kib(server.pid)
            nursery.cancel_scope.cancel()
    finally:
        server.terminate()
        await server.wait()
        shutil.rmtree(apps, ignore_errors=True)
    per_minute = []
    for samples in tally.bystander:
        if samples:
            ordered = sorted(samples)
            per_minute.append(
                {
                    "p50_ms": round(statistics.median(ordered) * 1000, 2),
                    "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 2),
                    "max_ms": round(ordered[-1] * 1000, 2),
                }
            )
    growth = (rss["end"] - rss["minute 2"]) / rss["minute 2"] * 100 if "minute 2" in rss else None
    return {
        "minutes": minutes,
        "connections_served": tally.connections,
        "echo_round_trips": tally.round_trips,
        "datagrams_echoed": tally.datagrams,
        "client_errors": tally.errors,
        "bystander_per_minute": per_minute,
        "rss_kib": rss,
        "rss_growth_percent": None if growth is None else round(growth, 1),
        "exit_code": server.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    result = trio.run(soak, args.minutes)
    print(json.dumps(result, indent=2))
    out = HERE / "results" / "soak.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
