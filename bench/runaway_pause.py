"""The worst pause a runaway handler causes: a bystander's wait behind it.

A handler spins until ``trio_mona.handler_timeout`` stops it, either in pure Lua or
assigning ``data`` on every turn (each assignment goes to Python and is committed to
SQLite); a bystander connection sends one line right after and waits for its echo.
Reported per kind and engine: the bound, the bystander's wait (best and worst of the
runs), and how far past the bound that is. LuaJIT runs in sandbox mode, its
interpreter: in normal mode a compiled loop is never stopped (docs/operations.rst). The
server runs as ``trio-mona run`` on core 0, this process on core 1.

    python bench/runaway_pause.py [--runs 3] [--bound 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = """
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(d)
    local i = 0
    if d == "pure" then while true do i = i + 1 end end
    if d == "data" then while true do i = i + 1; data["k" .. i] = "v" .. i end end
    self:send(d)
  end
end
server:start("127.0.0.1", 0)
NOTE("listening on ", server.address.port)
"""


def pause(folder: Path, engine: str, kind: str, bound: float) -> float:
    """Seconds the bystander waited behind one runaway handler of *kind*."""
    with tempfile.TemporaryDirectory() as data:
        command = [
            *("taskset", "-c", "0", sys.executable, "-m", "trio_mona", "run", str(folder)),
            *("--lua", engine, "--data", os.path.join(data, "data.sqlite")),
            *("--set", f"trio_mona.handler_timeout={bound}"),
            *(("--set", "trio_mona.sandbox=true") if engine == "luajit21" else ()),
        ]
        server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            assert server.stderr is not None
            port = 0
            for line in server.stderr:
                if found := re.search(r"listening on (\d+)", line):
                    port = int(found.group(1))
                    break
            runaway = socket.create_connection(("127.0.0.1", port))
            bystander = socket.create_connection(("127.0.0.1", port), timeout=120)
            bystander.sendall(b"warm")
            bystander.recv(16)
            started = time.monotonic()
            runaway.sendall(kind.encode())
            time.sleep(0.1)  # (the runaway handler has the executor by now)
            bystander.sendall(b"ping")
            bystander.recv(16)
            return time.monotonic() - started
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bound", type=float, default=2.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as apps:
        folder = Path(apps)
        (folder / "main.lua").write_text(APP)
        for engine in ("lua54", "luajit21"):
            for kind in ("pure", "data"):
                waits = [pause(folder, engine, kind, args.bound) for _ in range(args.runs)]
                print(json.dumps({
                    "engine": engine, "handler": kind, "bound_s": args.bound,
                    "bystander_waited_s": [round(w, 2) for w in sorted(waits)],
                    "worst_past_the_bound_s": round(max(waits) - args.bound, 2),
                }))  # fmt: skip


if __name__ == "__main__":
    main()
