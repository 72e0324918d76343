"""TLS: handshakes per second, HTTPS keep-alive JSON calls at 100 connections, and bulk
MB/s through one connection, trio_mona against uvicorn and hypercorn with the same
certificate, in one run (docs/performance.rst, "TLS").

The servers serve what ``bench/suite.py``'s HTTP workloads serve (``servers/http_site``;
``servers/asgi_site.py``), over TLS 1.3 with an ECDSA P-256 certificate made here with
trustme; each runs on core 0, the load on core 1. Handshakes: ``openssl s_time -new``
(a full handshake per connection, no reuse; four at once), connections per second.
JSON calls: ``h2load --h1`` (Debian's ``nghttp2-client``), 100 keep-alive connections
posting ``["sum", 2, 3]``, requests per second, over TLS and (for the ratio) in the
clear. Bulk: ``servers/tls_echo`` (a Lua TCP echo, TLS by ``start``'s options) and the
same echo in the clear, 256 MiB through one connection from Python's ``ssl`` (one thread,
non-blocking), with the server's CPU meanwhile.

    python bench/tls.py [--seconds 5] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import json
import re
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from live import cpu_seconds
from suite import free_port, pinned, wait_listening

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TLS = RESULTS / "tls"


def certificates() -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 with its key (made once)."""
    import trustme

    TLS.mkdir(parents=True, exist_ok=True)
    ca_file, pem, key = TLS / "ca.pem", TLS / "server.pem", TLS / "server.key"
    if not pem.exists():
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(str(ca_file))
        issued.private_key_pem.write_to_path(str(key))
        pem.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    return ca_file, pem, key


def _trio_mona(tls: bool) -> Callable[[int], list[str]]:
    site = str(HERE / "servers" / "http_site")
    _, pem, key = certificates()
    port_option = ["--https"] if tls else ["--http"]
    extra = ["--certificate", str(pem), "--key", str(key)] if tls else []
    return lambda port: [sys.executable, "-m", "trio_mona", "run", site, *port_option, str(port),
                         *extra, "--set", "HTTP.timeout=3600", "--log-level", "WARN", "--data",
                         ":memory:"]  # fmt: skip


def _uvicorn(tls: bool) -> Callable[[int], list[str]]:
    _, pem, key = certificates()
    extra = ["--ssl-certfile", str(pem), "--ssl-keyfile", str(key)] if tls else []
    return lambda port: [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE / "servers"),
                         "--port", str(port), "--http", "httptools", "--loop", "uvloop",
                         "--no-access-log", "--log-level", "warning", "--timeout-keep-alive",
                         "3600", *extra, "asgi_site:app"]  # fmt: skip


def _hypercorn(tls: bool) -> Callable[[int], list[str]]:
    _, pem, key = certificates()
    extra = ["--certfile", str(pem), "--keyfile", str(key)] if tls else []
    return lambda port: [sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--bind",
                         f"127.0.0.1:{port}", "--keep-alive", "3600", "--log-level", "warning",
                         *extra, f"{HERE / 'servers'}/asgi_site.py:app"]  # fmt: skip


SERVERS = {"trio_mona": _trio_mona, "uvicorn": _uvicorn, "hypercorn": _hypercorn}


def start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(pinned(0, command), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    wait_listening(port, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def handshakes(port: int, seconds: float) -> float:
    """Full handshakes per second: four ``openssl s_time -new`` at once."""
    ca_file, _, _ = certificates()
    command = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time",
               str(int(seconds)), "-CAfile", str(ca_file)]  # fmt: skip
    runs = [subprocess.Popen(pinned(1, command), stdout=subprocess.PIPE, text=True,
                             stderr=subprocess.DEVNULL) for _ in range(4)]  # fmt: skip
    total = 0.0
    for run in runs:
        out, _ = run.communicate()
        found = re.search(r"(\d+) connections in ([\d.]+)s", out)
        if found:
            total += int(found.group(1)) / float(found.group(2))
    return total


def json_calls(port: int, seconds: float, tls: bool) -> float:
    """Requests per second: h2load, HTTP/1.1, 100 keep-alive connections."""
    body = RESULTS / "sum.json"
    body.write_bytes(b'["sum", 2, 3]')
    scheme = "https" if tls else "http"
    done = subprocess.run(
        pinned(1, ["h2load", "--h1", "-c", "100", "-t", "1", "-D", str(int(seconds)),
                   "--warm-up-time", "1", "-d", str(body), "-H", "content-type: application/json",
                   f"{scheme}://127.0.0.1:{port}/"]),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", done.stdout)
    counts = re.search(r"(\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
                       r"(\d+) timeout", done.stdout)  # fmt: skip
    # (h2load counts an answer whose status line has no reason phrase, hypercorn's
    # "HTTP/1.1 200 ", as failed: whole answers all the same, so done requests count;
    # errors and timeouts do not)
    if not found or not counts or int(counts.group(4)) or int(counts.group(5)):
        raise RuntimeError(f"h2load: {done.stdout[-600:]}{done.stderr[-300:]}")
    return float(found.group(1))


def bulk(tls: bool, size: int = 256 << 20) -> tuple[float, float]:
    """MB/s through one connection to the Lua echo (servers/tls_echo), and the server's
    CPU (cores) meanwhile. The client is one thread on non-blocking sockets (an SSL
    socket must not be read and written from two threads at once)."""
    ca_file, pem, key = certificates()
    port = free_port()
    settings = ["--set", f"bench.port={port}"]
    if tls:
        settings += ["--set", f"bench.certificate={pem}", "--set", f"bench.key={key}"]
    process = start([sys.executable, "-m", "trio_mona", "run", str(HERE / "servers" / "tls_echo"),
                     *settings, "--log-level", "WARN", "--data", ":memory:"], port)  # fmt: skip
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        if tls:
            context = ssl.create_default_context(cafile=str(ca_file))
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.setblocking(False)
        chunk = memoryview(b"x" * (64 << 10))
        sent = received = 0
        cpu_before, started = cpu_seconds(process.pid), time.perf_counter()
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while received < size:
                selector.select(1.0)
                while sent < size:
                    try:
                        sent += sock.send(chunk[: min(len(chunk), size - sent)])
                    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        break
                while True:
                    try:
                        data = sock.recv(1 << 20)
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        break
                    if not data:
                        raise RuntimeError("the echo closed")
                    received += len(data)
                if sent >= size:
                    selector.modify(sock, selectors.EVENT_READ)
        elapsed = time.perf_counter() - started
        cpu = (cpu_seconds(process.pid) - cpu_before) / elapsed
        sock.close()
        return received / elapsed / 1e6, cpu
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", default="")
    options = parser.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("bench/tls.py needs h2load: apt-get install nghttp2-client")
    names = [n for n in SERVERS if not options.only or n in options.only.split(",")]
    results: dict[str, dict[str, float]] = {}
    for name in names:
        row = results.setdefault(name, {})
        for tls in (True, False):
            port = free_port()
            process = start(SERVERS[name](tls)(port), port)
            try:
                if tls:
                    row["handshakes/s"] = handshakes(port, options.seconds)
                key = "https calls/s" if tls else "http calls/s"
                row[key] = json_calls(port, options.seconds, tls)
            finally:
                stop(process)
        ratio = row["https calls/s"] / row["http calls/s"]
        print(f"{name:10} handshakes {row['handshakes/s']:7.0f}/s, JSON calls over TLS "
              f"{row['https calls/s']:7.0f}/s, in the clear {row['http calls/s']:7.0f}/s "
              f"(TLS/clear {ratio:.2f})", flush=True)  # fmt: skip
    if not options.only or "bulk" in options.only.split(","):
        (tls_rate, tls_cpu), (plain_rate, plain_cpu) = bulk(True), bulk(False)
        results["bulk"] = {"tls MB/s": tls_rate, "plain MB/s": plain_rate,
                           "tls cores": tls_cpu, "plain cores": plain_cpu}  # fmt: skip
        print(f"bulk, one connection through the Lua echo: TLS {tls_rate:.0f} MB/s (server "
              f"{tls_cpu:.2f} core), plain {plain_rate:.0f} MB/s (server {plain_cpu:.2f} core)",
              flush=True)  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tls.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
