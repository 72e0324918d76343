"""Live media: one publication of ~2 Mbit/s fanned out to 10, 100, 500 (and more) RTMP
players, trio_mona against nginx's RTMP module and node-media-server, in one run
(docs/performance.rst, "Live media").

The load (``rtmp_load.c``, compiled here with gcc) publishes a generated H.264 + AAC
FLV file (made here with ffmpeg: 640x360, 1.9 Mbit/s video, 96 kbit/s audio, a
keyframe every 2 s) at real time and plays it with N players, all in one process on
core 1; the servers run on core 0. For each server and player count: the server's CPU
time per delivered megabit (user + system, its whole process tree, over the measured
seconds), the share of the published video frames the players received, players the
server closed, the latency from the publisher's send to a player's receipt (p50/p99),
and how players start: the time from ``play`` to the first video frame and that
frame's age (behind live). trio_mona runs twice: without and with ``[RTMP] gopCache``.

Peers, when present: Debian's ``libnginx-mod-rtmp`` (one worker, ``wait_key on``: it
starts players at a keyframe as trio_mona does) and node-media-server 4 installed with
``npm install --prefix bench/results/nms node-media-server@4`` (its GOP cache is
always on).

    python bench/live.py [--players 10,100,500,1000] [--seconds 5] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from suite import free_port, pinned

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
NGINX_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
NMS = RESULTS / "nms" / "node_modules" / "node-media-server" / "bin" / "app.js"


@attrs.frozen
class Server:
    name: str
    command: Callable[[int], list[str]]
    available: Callable[[], bool] = lambda: True


def _trio_mona(gop_cache: bool) -> Callable[[int], list[str]]:
    site = str(HERE / "servers" / "live_site")
    return lambda port: [sys.executable, "-m", "trio_mona", "run", site, "--rtmp", str(port),
                         "--set", f"RTMP.gopCache={'true' if gop_cache else 'false'}",
                         "--log-level", "WARN", "--data", ":memory:"]  # fmt: skip


def _nginx(port: int) -> list[str]:
    prefix = RESULTS / "nginx-rtmp"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(
        f"load_module {NGINX_MODULE};\n"
        "worker_processes 1; error_log stderr; pid nginx.pid; daemon off;\n"
        "events { worker_connections 20000; }\n"
        f"rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n"
        "  application live { live on; wait_key on; wait_video on; } } }\n"
    )
    return ["nginx", "-p", str(prefix), "-c", "nginx.conf"]


def _nms(port: int) -> list[str]:
    folder = RESULTS / "nms"
    config = {"bind": "127.0.0.1", "rtmp": {"port": port}, "http": {"port": free_port()},
              "store": {"path": str(folder / "data")}, "webadmin": {"enable": False},
              "auth": {"play": False, "publish": False}, "record": {"auto": False}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    return ["node", str(NMS), "-c", str(folder / "config.json")]


SERVERS = [
    Server("trio_mona", _trio_mona(False)),
    Server("trio_mona gopCache", _trio_mona(True)),
    Server("nginx-rtmp", _nginx, lambda: NGINX_MODULE.exists() and bool(shutil.which("nginx"))),
    Server("node-media-server", _nms, lambda: NMS.exists() and bool(shutil.which("node"))),
]


def stream_file() -> Path:
    """The published stream: 12 s, looped by the load."""
    path = RESULTS / "live.flv"
    if not path.exists():
        RESULTS.mkdir(exist_ok=True)
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
             "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
             "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1900k", "-maxrate", "1900k",
             "-bufsize", "1900k", "-g", "50", "-c:a", "aac", "-b:a", "96k", "-t", "12", "-y",
             str(path)],
            check=True,
        )  # fmt: skip
    return path


def load_binary() -> Path:
    binary = RESULTS / "rtmp_load"
    source = HERE / "rtmp_load.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        RESULTS.mkdir(exist_ok=True)
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def cpu_seconds(pid: int) -> float:
    """User + system time of *pid* and its children still running (nginx's worker)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server does not listen")


def measure(server: Server, players: int, seconds: float, load: Path, flv: Path) -> dict[str, Any]:
    """One server, freshly started, with *players* players."""
    port = free_port()
    process = subprocess.Popen(pinned(0, server.command(port)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_port(port, process)
        run = subprocess.Popen(pinned(1, [str(load), str(port), str(flv), str(players),
                                          str(seconds), "5"]),
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert run.stdout is not None
        start_cpu = start = 0.0
        result: dict[str, Any] = {}
        for line in run.stdout:
            found = json.loads(line)
            if found.get("measuring"):
                start_cpu, start = cpu_seconds(process.pid), time.monotonic()
            else:
                cpu = cpu_seconds(process.pid) - start_cpu
                result = {**found, "cpu_s": cpu, "wall_s": time.monotonic() - start}
        run.wait()
        return result
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", default="10,100,500,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", default="")
    options = parser.parse_args()
    flv, load = stream_file(), load_binary()
    chosen = [s for s in SERVERS if not options.only or s.name in options.only.split(",")]
    servers = [s for s in chosen if s.available()]
    for missing in set(chosen) - set(servers):
        print(f"(skipped: {missing.name} is not installed)")
    rows = []
    for players in (int(n) for n in options.players.split(",")):
        for server in servers:
            result = measure(server, players, options.seconds, load, flv)
            megabits = result["bytes"] * 8 / 1e6
            delivered = result["frames"] / max(1, result["sent_frames"] * players)
            row = {
                "server": server.name, "players": players,
                "delivered Mbit/s": megabits / options.seconds,
                "CPU ms per Mbit": 1000 * result["cpu_s"] / megabits if megabits else None,
                "server CPU": result["cpu_s"] / result["wall_s"],
                "video frames delivered": delivered, "closed": result["closed"],
                "latency p50 ms": result["latency_p50_ms"],
                "latency p99 ms": result["latency_p99_ms"],
                "join ms": result["join_ms"], "first frame age ms": result["first_frame_age_ms"],
                "load CPU": result["load_cpu"],
            }  # fmt: skip
            rows.append(row)
            print(
                f"{server.name:20} {players:5} players: {row['delivered Mbit/s']:7.1f} Mbit/s, "
                f"{row['CPU ms per Mbit'] or 0:6.2f} CPU ms/Mbit (server {row['server CPU']:.2f} "
                f"core), delivered {delivered:6.1%}, closed {result['closed']}, latency p50 "
                f"{row['latency p50 ms']:.1f} / p99 {row['latency p99 ms']:.1f} ms, join "
                f"{row['join ms']:.0f} ms, first frame {row['first frame age ms']:.0f} ms old "
                f"(load {row['load CPU']:.2f} core)",
                flush=True,
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "live.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
