"""Lua dispatch cost per event, and the onData "rest" framing loop, in process.

Measures the executor's whole per-event path for a connection's data (back-pressure
accounting, the Lua call into a pooled coroutine, the handler, the rest rule) with a
handler that returns at once, one that sends its data back (a real ``send`` on a socket
pair), and a framing handler that parses one message per call. No network: this is the
part of a round trip that is trio_mona's own. Results go to ``bench/results/dispatch.json``.

    python bench/dispatch.py [--events 200000] [--engine lua54]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

import trio

import trio_mona
from trio_mona import Runtime
from trio_mona._core.events import DataReceived, Reads
from trio_mona._net.tcp import TCPConnection

HERE = Path(__file__).resolve().parent

HANDLERS = {
    "returns at once": "function(self, data) end",
    "echo (send)": "function(self, data) self:send(data) end",
    "framing, per message": """function(self, data)
        local size = data:byte(1)
        if #data < size + 1 then return #data end
        return #data - size - 1
    end""",
}


def connection(runtime: Runtime, handler: str) -> tuple[TCPConnection, socket.socket]:
    """A connected TCPConnection on loopback, with *handler* as onData."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    ours.setblocking(False)
    theirs.setblocking(False)
    conn = TCPConnection(runtime._sockets, b"")
    conn._established(ours)
    table = runtime._bridge.new_object(b"TCPClient", conn, b"")
    conn.attach(table)
    setter = runtime._bridge.eval(f"function(t) t.onData = {handler} end")
    setter(table)
    return conn, theirs


def drain(peer: socket.socket) -> None:
    """Read what the handlers sent to *peer* (non-blocking)."""
    try:
        while peer.recv(1 << 20):
            pass
    except BlockingIOError:
        pass


def measure(runtime: Runtime, handler: str, events: int, payload: bytes) -> float:
    """Microseconds per executor event."""
    conn, peer = connection(runtime, handler)
    deliver = runtime._executor._data
    writes = runtime._sockets.writes
    batch = [DataReceived(conn, payload) for _ in range(1000)]
    start = time.perf_counter()
    for _ in range(events // len(batch)):
        for event in batch:
            conn.inbound.read(len(payload))
            deliver(event)
            writes.flush()  # one write per event, as with many connections in a batch
        drain(peer)
    elapsed = time.perf_counter() - start
    peer.close()
    return elapsed / events * 1e6


def measure_together(runtime: Runtime, handler: str, events: int, payload: bytes) -> float:
    """Microseconds per event when 100 connections' reads arrive in one batch."""
    pairs = [connection(runtime, handler) for _ in range(100)]
    executor = runtime._executor
    writes = runtime._sockets.writes
    start = time.perf_counter()
    for round_ in range(events // len(pairs)):
        batch = Reads()
        for conn, _peer in pairs:
            conn.inbound.read(len(payload))
            batch.items.append(DataReceived(conn, payload))
        executor._reads(batch)
        writes.flush()
        if round_ % 100 == 99:  # (the peers' buffers hold 100 replies: drain them)
            for _conn, peer in pairs:
                drain(peer)
    elapsed = time.perf_counter() - start
    for _conn, peer in pairs:
        peer.close()
    return elapsed / events * 1e6


async def run(events: int, engine: str, repeat: int) -> dict[str, float]:
    """Every case once per repetition, interleaved (this machine's speed drifts)."""
    # The runaway bound's count hook slows every Lua instruction; 0 removes it.
    unbounded = {"trio_mona.handler_timeout": "0"}
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "main.lua").write_text("")
        async with (
            # (two runtimes of one folder: each keeps its `data` in memory)
            trio_mona.open_runtime(folder, engine=engine, data=":memory:") as bounded,
            trio_mona.open_runtime(
                folder, engine=engine, settings=unbounded, data=":memory:"
            ) as free,
        ):
            cases = [(name, bounded, handler) for name, handler in HANDLERS.items()]
            cases += [
                (f"{name}, handler_timeout=0", free, HANDLERS[name])
                for name in ("returns at once", "echo (send)")
            ]
            cases += [
                (f"{name}, 100 connections together", bounded, HANDLERS[name])
                for name in ("returns at once", "echo (send)")
            ]
            for _ in range(repeat):
                for name, runtime, handler in cases:
                    if name.endswith("together"):
                        per_event = measure_together(runtime, handler, events, b"x" * 64)
                        samples.setdefault(name, []).append(per_event)
                    elif name.startswith("framing"):
                        frame = bytes([9]) + b"x" * 9  # 100 messages per delivery
                        per_message = measure(runtime, handler, events // 10, frame * 100) / 100
                        samples.setdefault(name, []).append(per_message)
                    else:
                        per_event = measure(runtime, handler, events, b"x" * 64)
                        samples.setdefault(name, []).append(per_event)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engine", default="lua54")
    args = parser.parse_args()
    results = trio.run(run, args.events, args.engine, args.repeat)
    print(f"engine {args.engine}: microseconds per event (median of {args.repeat})")
    for name, value in results.items():
        print(f"  {name:<38} {value:6.2f}")
    out = HERE / "results" / "dispatch.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"engine": args.engine, "us_per_event": results}, indent=2))


if __name__ == "__main__":
    main()
