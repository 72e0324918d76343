"""trio_mona's benchmark suite, against its peers, in one run.

Servers (each an echo over TCP and UDP on one port, started and stopped here, on
127.0.0.1): trio_mona's ``lua_apps/echo`` on Lua 5.4 and on LuaJIT (and, for TCP echo,
with two worker processes on both cores), plain Trio streams,
asyncio (protocols), uvloop when it is installed, and native Lua with LuaSocket + copas
when Debian's ``lua-socket``, ``lua-copas`` and ``luajit`` are installed.

HTTP servers (their names begin with ``http``; their workloads too): trio_mona serving
``servers/http_site`` (a 1 KiB file, a Lua method), uvicorn (httptools, uvloop) and
hypercorn (Trio) serving the same from ``servers/asgi_site.py``, and Debian's nginx
(the file only: the ceiling): a 1 KiB file and a JSON POST to a method returning a
small table over 100 keep-alive connections (requests/s, p50/p99), and idle memory per
keep-alive connection. WebSocket servers (names beginning with ``ws``): trio_mona
serving ``servers/ws_site``, websockets (asyncio) and trio-websocket with the same JSON
handling: a 0.5 KB JSON invocation echoed, and a chat's fan-out (each of 100 clients
sends, every client receives every message: deliveries/s).

Workloads (the C generator ``loadgen.c``, compiled here with gcc): TCP echo ping-pong
at 1, 10, 100 and 1,000 connections (64-byte messages; round trips/s, p50/p99), UDP
ping-pong with 10 clients, bulk streaming through one connection (MB/s), connection
churn (connect, echo 64 bytes, close; connections/s), and idle memory (KiB per
connection, server RSS, 10,000 connections). In process: Lua dispatch cost per event and
the ``onData`` framing loop (``dispatch.py``), and the conversions (``conversions.py``).
And ``data`` (``data.py``): assignments and reads per second, and the echo with one
assignment per message beside the same echo without; the host API (``host_api.py``).

Each server runs pinned to core 0 and the generator to core 1 (``taskset``). All
servers run for the whole suite; each workload is measured on every server in turn, the
order rotating per repetition (A B C, B C A, ...), so the runs compared are seconds
apart (idle memory uses a fresh process each time). Every figure is the median of the
repetitions; the ratio to plain Trio is the median of the ratios within each repetition.
The generator's CPU use is reported: near 1.0 means it, not the server, was the limit.
Results: a table on stdout and ``bench/results/suite.json``.

    python bench/suite.py [--seconds 2] [--repeat 3] [--only NAME,...] [--quick]
                          [--workloads PREFIX,...] [--network-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
IDLE_CONNECTIONS = 10_000


@attrs.frozen
class Server:
    name: str
    command: Callable[[int], list[str]]
    available: Callable[[], bool] = lambda: True
    #: The command for the idle-memory process, when it differs (the generator echoes
    #: one byte per connection).
    idle_command: Callable[[int], list[str]] | None = None
    #: The workloads it serves, by prefix (empty: all of them).
    serves: tuple[str, ...] = ()
    #: The cores it runs on (``taskset -c``); the generator has core 1.
    cores: str = "0"


def _python(*args: str) -> Callable[[int], list[str]]:
    return lambda port: [sys.executable, *args, str(port)]


def _trio_mona(engine: str) -> Callable[[int], list[str]]:
    # (both engines serve lua_apps/echo at once: each keeps its `data` in memory)
    echo = str(ROOT / "lua_apps" / "echo")
    return lambda port: [sys.executable, "-m", "trio_mona", "run", echo, "--set",
                         f"echo.port={port}", "--log-level", "WARN", "--lua", engine,
                         "--data", ":memory:"]  # fmt: skip


def _trio_mona_workers(count: int) -> Callable[[int], list[str]]:
    """lua_apps/echo with *count* worker processes (docs/scaling.rst)."""
    return lambda port: [*_trio_mona("lua54")(port), "--workers", str(count)]


def _trio_mona_luasocket(size: int) -> Callable[[int], list[str]]:
    """The LuaSocket-style echo, which answers each *size* bytes it receives."""
    app = str(HERE / "servers" / "luasocket_echo")
    return lambda port: [sys.executable, "-m", "trio_mona", "run", app, "--set",
                         f"bench.port={port}", "--set", f"bench.size={size}",
                         "--log-level", "WARN"]  # fmt: skip


def _trio_mona_http(port: int) -> list[str]:
    """The HTTP site (servers/http_site): a 1 KiB file and a Lua method."""
    site = str(HERE / "servers" / "http_site")
    return [sys.executable, "-m", "trio_mona", "run", site, "--http", str(port), "--set",
            "HTTP.timeout=3600", "--log-level", "WARN", "--data", ":memory:"]  # fmt: skip


def _asgi(server: str) -> Callable[[int], list[str]]:
    """servers/asgi_site.py under uvicorn (httptools, uvloop) or hypercorn (Trio)."""
    where = str(HERE / "servers")
    if server == "uvicorn":
        return lambda port: [sys.executable, "-m", "uvicorn", "--app-dir", where, "--port",
                             str(port), "--http", "httptools", "--loop", "uvloop",
                             "--no-access-log", "--log-level", "warning",
                             "--timeout-keep-alive", "3600", "asgi_site:app"]  # fmt: skip
    return lambda port: [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind",
                         f"127.0.0.1:{port}", "--keep-alive", "3600", "--log-level", "warning",
                         f"{where}/asgi_site.py:app"]  # fmt: skip


def _trio_mona_ws(port: int) -> list[str]:
    """The WebSocket site (servers/ws_site): an echo method, a fan-out method."""
    site = str(HERE / "servers" / "ws_site")
    return [sys.executable, "-m", "trio_mona", "run", site, "--http", str(port),
            "--log-level", "WARN", "--data", ":memory:"]  # fmt: skip


def _nginx(port: int) -> list[str]:
    """Debian's nginx, one worker, serving servers/http_site's file (the ceiling)."""
    prefix = RESULTS / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    site = HERE / "servers" / "http_site"
    (prefix / "nginx.conf").write_text(
        "worker_processes 1; error_log stderr; pid nginx.pid;\n"
        "events { worker_connections 20000; }\n"
        "http { access_log off; keepalive_requests 100000000; keepalive_timeout 3600;\n"
        "  client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp;\n"
        "  uwsgi_temp_path tmp; scgi_temp_path tmp;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {site}; }}\n}}\n"
    )
    return ["nginx", "-p", str(prefix), "-c", "nginx.conf", "-g", "daemon off;"]


def _module(name: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(name) is not None


def _copas_available() -> bool:
    if not shutil.which("luajit"):
        return False
    probe = subprocess.run(["luajit", "-e", "require('copas') require('socket')"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


SERVERS = [
    Server("trio_mona", _trio_mona("lua54")),
    Server("trio_mona jit", _trio_mona("luajit21")),
    # (a TCP echo answering each 64 bytes: no UDP, and no bulk stream)
    Server(
        "trio_mona luasocket",
        _trio_mona_luasocket(64),
        idle_command=_trio_mona_luasocket(1),
        serves=("tcp echo", "churn", "idle memory"),
    ),
    # (two workers on both cores, the generator's too: docs/scaling.rst)
    Server("trio_mona 2 workers", _trio_mona_workers(2), serves=("tcp echo",), cores="0,1"),
    Server("plain trio", _python(str(HERE / "servers" / "trio_echo.py"))),
    Server("asyncio", _python(str(HERE / "servers" / "asyncio_echo.py"))),
    Server(
        "uvloop",
        lambda port: [
            sys.executable,
            str(HERE / "servers" / "asyncio_echo.py"),
            str(port),
            "--uvloop",
        ],
        lambda: importlib.util.find_spec("uvloop") is not None,
    ),
    # The HTTP workloads' servers (their names start with "http").
    Server("http trio_mona", _trio_mona_http, serves=("http",)),
    Server("http uvicorn", _asgi("uvicorn"), _module("uvicorn"), serves=("http",)),
    Server("http hypercorn", _asgi("hypercorn"), _module("hypercorn"), serves=("http",)),
    Server(
        "http nginx",
        _nginx,
        lambda: shutil.which("nginx") is not None,
        serves=("http static", "http idle"),
    ),
    # The WebSocket workloads' servers (their names start with "ws").
    Server("ws trio_mona", _trio_mona_ws, serves=("ws",)),
    Server(
        "ws websockets",
        _python(str(HERE / "servers" / "websockets_server.py")),
        _module("websockets"),
        serves=("ws",),
    ),
    Server(
        "ws trio-websocket",
        _python(str(HERE / "servers" / "trio_websocket_server.py")),
        _module("trio_websocket"),
        serves=("ws",),
    ),
    Server(
        "copas (luajit)",
        lambda port: ["luajit", str(HERE / "servers" / "copas_echo.lua"), str(port)],
        _copas_available,
    ),
]

# name -> (loadgen arguments after the port, metric, higher is better)
WORKLOADS: dict[str, tuple[Callable[[float], list[str]], str, bool]] = {
    "tcp echo, 1 conn": (lambda s: ["pingpong", "1", "64", str(s)], "round_trips_per_s", True),
    "tcp echo, 10 conns": (lambda s: ["pingpong", "10", "64", str(s)], "round_trips_per_s", True),
    "tcp echo, 100 conns": (lambda s: ["pingpong", "100", "64", str(s)], "round_trips_per_s", True),
    "tcp echo, 1000 conns": (
        lambda s: ["pingpong", "1000", "64", str(s)],
        "round_trips_per_s",
        True,
    ),
    "udp echo, 10 clients": (lambda s: ["udp", "10", "64", str(s)], "round_trips_per_s", True),
    "bulk, 1 conn": (lambda s: ["bulk", str(s)], "mb_per_s", True),
    "churn, 10 at once": (lambda s: ["churn", "10", str(s)], "connections_per_s", True),
    # (HTTP/1.1 keep-alive; the request each connection repeats: REQUESTS)
    "http static 1 KiB, 100 conns": (
        lambda s: ["http", "100", str(s), str(RESULTS / "get_file.http")],
        "requests_per_s",
        True,
    ),
    "http json call, 100 conns": (
        lambda s: ["http", "100", str(s), str(RESULTS / "post_json.http")],
        "requests_per_s",
        True,
    ),
    # (WebSocket, 100 connections: a 0.5 KB JSON invocation echoed by the method's
    # return; a chat's fan-out, every message to every client)
    "ws json echo, 100 conns": (
        lambda s: ["wsecho", "100", str(s), str(RESULTS / "ws_echo.json")],
        "messages_per_s",
        True,
    ),
    "ws fan-out, 100 conns": (
        lambda s: ["wsfan", "100", str(s), str(RESULTS / "ws_say.json")],
        "deliveries_per_s",
        True,
    ),
}

#: The requests of the HTTP workloads, written to RESULTS for the generator.
REQUESTS = {
    "get_file.http": b"GET /file.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loadgen\r\n"
    b"Accept: */*\r\n\r\n",
    "post_json.http": b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loadgen\r\n"
    b'Content-Type: application/json\r\nContent-Length: 13\r\n\r\n["sum", 2, 3]',
    # (the WebSocket messages: 464 bytes of JSON, and a line of chat)
    "ws_echo.json": json.dumps(
        [
            "echo",
            {
                "user": "ann",
                "room": "lobby",
                "text": "Hello everyone, this is a chat "
                "message of a usual length, with some words in it.",
                "time": 1796638646061,
                "tags": ["greeting", "lobby", "first"],
                "reply": None,
                "edited": False,
                "score": 4.5,
                "attachments": [
                    {"name": "photo.png", "size": 12345, "type": "image/png"},
                    {"name": "notes.txt", "size": 321, "type": "text/plain"},
                ],
                "mentions": ["bob", "carol"],
                "client": {
                    "agent": "Mozilla/5.0 (X11; Linux x86_64)",
                    "lang": "en-GB",
                    "zone": "Europe/London",
                },
            },
        ],
        separators=(",", ":"),
    ).encode(),
    "ws_say.json": b'["say", "hello everyone, a short line of chat"]',
}
IDLE = ("idle memory, 10k conns", "http idle memory, 10k conns")


def serves(server: Server, workload: str) -> bool:
    """Echo servers serve the echo workloads, HTTP and WebSocket servers their own
    (each within its ``serves`` prefixes)."""
    for protocol in ("http", "ws"):
        if workload.startswith(protocol + " ") != server.name.startswith(protocol + " "):
            return False
    return not server.serves or workload.startswith(server.serves)


def pinned(core: int | str, command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *command]
    return command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def raise_fd_limit() -> None:
    """In the server process: allow the 10,000-connection test (soft limit = hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def loadgen(binary: Path, port: int, args: list[str], seconds: float) -> dict[str, float]:
    result = subprocess.run(
        pinned(1, [str(binary), args[0], str(port), *args[1:]]),
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"loadgen {args}: {result.stderr.strip()}")
    return dict(json.loads(result.stdout))


def idle_memory(binary: Path, port: int, pid: int, http: bool) -> dict[str, float]:
    before = rss_kib(pid)
    mode = ["httpidle", str(port), str(IDLE_CONNECTIONS), str(RESULTS / "get_file.http")]
    holder = subprocess.Popen(
        pinned(1, [str(binary), *(mode if http else ["idle", str(port), str(IDLE_CONNECTIONS)])]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdin is not None
    ready, _, _ = select.select([holder.stdout], [], [], 120)
    line = holder.stdout.readline() if ready else ""
    if not line:
        holder.kill()
        holder.wait()
        raise RuntimeError("idle: the generator could not open its connections")
    time.sleep(1.0)  # let the server settle
    after = rss_kib(pid)
    holder.stdin.close()
    holder.wait(timeout=60)
    return {"kib_per_connection": (after - before) / IDLE_CONNECTIONS}


@attrs.define
class Running:
    """A server process kept running for the whole suite (restarted if it exits)."""

    server: Server
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def ensure(self, idle: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if self.process is not None:
            print(f"  {self.server.name}: exited; restarting it", file=sys.stderr)
        self.port = free_port()
        command = (idle and self.server.idle_command) or self.server.command
        self.process = subprocess.Popen(
            pinned(self.server.cores, command(self.port)),
            stderr=subprocess.DEVNULL,
            preexec_fn=raise_fd_limit,
        )
        wait_listening(self.port, self.process)

    def measure(self, binary: Path, workload: str, seconds: float) -> dict[str, float] | None:
        idle = workload in IDLE
        if idle:
            self.stop()  # a fresh process: memory freed by earlier runs would be reused
        self.ensure(idle)
        assert self.process is not None
        try:
            if idle:
                try:
                    http = workload.startswith("http")
                    return idle_memory(binary, self.port, self.process.pid, http)
                finally:
                    self.stop()  # (the next workload wants the usual process)
            return loadgen(binary, self.port, WORKLOADS[workload][0](seconds), seconds)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"  {self.server.name}, {workload}: failed: {exc}", file=sys.stderr)
            return None
        finally:
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def dispatch(engine: str) -> dict[str, float]:
    subprocess.run([sys.executable, str(HERE / "dispatch.py"), "--engine", engine],
                   check=True, capture_output=True)  # fmt: skip
    data = json.loads((RESULTS / "dispatch.json").read_text())
    return dict(data["us_per_event"])


def conversions() -> dict[str, dict[str, float]]:
    subprocess.run([sys.executable, str(HERE / "conversions.py")], check=True,
                   capture_output=True)  # fmt: skip
    return dict(json.loads((RESULTS / "conversions.json").read_text()))


def persistent_data(seconds: float, repeat: int) -> dict[str, Any]:
    subprocess.run([sys.executable, str(HERE / "data.py"), "--seconds", str(seconds),
                    "--repeat", str(repeat)], check=True, capture_output=True)  # fmt: skip
    return dict(json.loads((RESULTS / "data.json").read_text()))


def chart(report: dict[str, Any]) -> None:
    """The chart and table of the docs (chart.py), after a full run, when matplotlib
    is there."""
    if importlib.util.find_spec("matplotlib") is None:
        print("chart: matplotlib is not installed (the bench dependency group has it)")
        return
    from chart import write_docs  # (bench/ is the script's folder)

    write_docs(report)


def host_api() -> dict[str, dict[str, float]]:
    subprocess.run([sys.executable, str(HERE / "host_api.py")], check=True, capture_output=True)
    return dict(json.loads((RESULTS / "host_api.json").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated server names")
    parser.add_argument("--workloads", default="", help="comma-separated workload prefixes")
    parser.add_argument("--quick", action="store_true", help="1 s runs, 1 repetition")
    parser.add_argument(
        "--network-only",
        action="store_true",
        help="only the servers' workloads (results: suite_network.json), not the in-process ones",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeat = 1.0, 1
    RESULTS.mkdir(exist_ok=True)
    binary = RESULTS / "loadgen"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "loadgen.c")], check=True)

    servers = [s for s in SERVERS if s.available()]
    if args.only:
        servers = [s for s in servers if s.name in args.only.split(",")]
    skipped = [s.name for s in SERVERS if not s.available()]
    workloads = [*WORKLOADS, *IDLE]
    for name, request in REQUESTS.items():
        (RESULTS / name).write_bytes(request)
    if args.workloads:
        workloads = [
            w for w in workloads if any(w.startswith(p) for p in args.workloads.split(","))
        ]

    # Every server runs for the whole suite; each workload is measured on all of them
    # in turn, the order rotating per repetition (A B C, B C A, ...), so that the runs
    # compared are seconds apart: this machine's speed drifts over minutes.
    running = [Running(server) for server in servers]
    runs: dict[str, dict[str, list[dict[str, float] | None]]] = {}
    try:
        for instance in running:
            instance.ensure()
        for workload in workloads:
            for repetition in range(args.repeat):
                print(f"{workload} [{repetition + 1}/{args.repeat}]", file=sys.stderr, flush=True)
                turn = repetition % len(running)
                for instance in running[turn:] + running[:turn]:
                    if not serves(instance.server, workload):
                        continue
                    result = instance.measure(binary, workload, args.seconds)
                    runs.setdefault(workload, {}).setdefault(instance.server.name, [])
                    runs[workload][instance.server.name].append(result)
    finally:
        for instance in running:
            instance.stop()

    table = summarize(runs, workloads)
    if args.network_only:
        print_table(table, {})
        (RESULTS / "suite_network.json").write_text(json.dumps({"rows": table}, indent=2))
        return
    in_process = {engine: dispatch(engine) for engine in ("lua54", "luajit21")}
    converting = conversions()
    storing = persistent_data(args.seconds, args.repeat)
    hosting = host_api()
    print_table(table, in_process)
    print("\nConversions, microseconds per call (in process; conversions.py)")
    for engine, values in converting.items():
        for name, value in values.items():
            if not name.endswith("_bytes"):
                print(f"  {engine:<9} {name:<38} {value:10.1f}")
    print("\ndata (data.py)")
    for engine in ("lua54", "luajit21"):
        burst, reads = storing[engine]["burst_assignments_per_s"], storing[engine]["reads_per_s"]
        print(f"  {engine:<9} 10,000 assignments {burst:10.0f}/s   reads {reads:10.0f}/s")
    plain = storing["plain_sqlite3_commit_per_write_per_s"]
    print(f"  python    sqlite3, a commit per write {plain:8.0f}/s")
    redis_burst = storing["redis_lua54"]["burst_assignments_per_s"]
    print(f"  lua54     10,000 assignments on Redis {redis_burst:8.0f}/s")
    request = storing["per_request_100_conns_lua54"]
    rate, ratio = request["with_data_round_trips_per_s"], request["ratio"]
    print(f"  lua54     echo + 1 assignment, 100 conns {rate:8.0f}/s ({ratio:.2f}x without)")
    rate, ratio = request["on_redis_round_trips_per_s"], request["redis_ratio"]
    print(f"  lua54     the same on Redis          {rate:8.0f}/s ({ratio:.2f}x without)")
    print("\nhost API, microseconds per call (host_api.py)")
    for engine, values in hosting.items():
        for name, value in values.items():
            print(f"  {engine:<9} {name:<38} {value:10.2f}")
    if skipped:
        print(f"skipped (not installed): {', '.join(skipped)}")
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "seconds": args.seconds,
        "repeat": args.repeat,
        "skipped": skipped,
        "rows": table,
        "dispatch_us_per_event": in_process,
        "conversions_us_per_call": converting,
        "data": storing,
        "host_api_us_per_call": hosting,
    }
    (RESULTS / "suite.json").write_text(json.dumps(report, indent=2))
    print(f"written {RESULTS / 'suite.json'}")
    if not (args.only or args.workloads or args.quick):
        chart(report)


def summarize(
    runs: dict[str, dict[str, list[dict[str, float] | None]]], workloads: list[str]
) -> list[dict[str, Any]]:
    """Medians per server; the ratio to plain Trio is the median of the ratios taken
    within each repetition (paired runs, seconds apart)."""
    table: list[dict[str, Any]] = []
    for workload in workloads:
        metric, higher = (
            WORKLOADS[workload][1:] if workload in WORKLOADS else ("kib_per_connection", False)
        )
        by_server = runs.get(workload, {})
        base = by_server.get("plain trio", [])
        for name, results in by_server.items():
            done = [r for r in results if r is not None]
            if not done:
                continue
            row: dict[str, Any] = {"workload": workload, "server": name, "metric": metric}
            row.update({key: statistics.median(r[key] for r in done) for key in done[0]})
            paired = [
                (r[metric] / b[metric] if higher else r[metric] - b[metric])
                for r, b in zip(results, base, strict=False)
                if r is not None and b is not None and b[metric]
            ]
            if paired:
                row["vs_trio"] = statistics.median(paired)
            table.append(row)
    return table


def print_table(table: list[dict[str, Any]], in_process: dict[str, dict[str, float]]) -> None:
    current = None
    for row in table:
        if row["workload"] != current:
            current = row["workload"]
            print(f"\n{current}  ({row['metric']}; vs plain trio)")
        extra = ""
        if "p50_us" in row:
            extra = f"  p50 {row['p50_us']:8.0f} us  p99 {row['p99_us']:8.0f} us"
        if "generator_cpu" in row:
            extra += f"  gen cpu {row['generator_cpu']:.2f}"
        ratio = row.get("vs_trio")
        if ratio is None:
            shown = ""
        elif row["metric"] == "kib_per_connection":
            shown = f"{ratio:+6.2f}"
        else:
            shown = f"{ratio:6.2f}x"
        print(f"  {row['server']:<15} {row[row['metric']]:12.1f}  {shown:>8}{extra}")
    print("\nLua dispatch, microseconds per event (in process)")
    for engine, values in in_process.items():
        for name, value in values.items():
            print(f"  {engine:<9} {name:<38} {value:6.2f}")


if __name__ == "__main__":
    main()
