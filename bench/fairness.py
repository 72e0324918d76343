"""Fairness under a streaming load: does one fast client starve the others?

N streamers push 64 KiB chunks through the echo server as fast as it takes them (each
also reads its echo back); meanwhile a bystander does one 64-byte round trip every
10 ms and a newcomer connects, echoes one byte and closes every 100 ms. Reported: the
bystander's round-trip p50/p99/max, the newcomers' connect-to-echo time, and the
streamers' MB/s, for trio_mona's ``lua_apps/echo`` and plain Trio in the same run. The
server runs pinned to core 0, this load generator to core 1.

    python bench/fairness.py [--streamers 1,4] [--seconds 5] [--lines]

``--lines`` sends 1 MiB bursts of 2-byte lines through ``lua_apps/chat`` instead (the
"rest" rule's re-call loop; Lua 5.4 and LuaJIT): the time to serve a burst, and a
bystander member's lines as the streamer sees them and as a listener does, behind the
burst's lines broadcast to it first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import trio
from suite import free_port, pinned  # (bench/ is the script's folder)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHUNK = b"x" * 65536


def _server(name: str, port: int) -> list[str]:
    if name == "plain trio":
        return [sys.executable, str(HERE / "servers" / "trio_echo.py"), str(port)]
    app, key = ("chat", "chat.port") if "chat" in name else ("echo", "echo.port")
    engine = "luajit21" if "jit" in name else "lua54"
    return [sys.executable, "-m", "trio_mona", "run", str(ROOT / "lua_apps" / app),
            "--set", f"{key}={port}", "--log-level", "WARN", "--lua", engine]  # fmt: skip


async def _wait_listening(port: int) -> None:
    with trio.fail_after(20):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


def _summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def _stream(port: int, moved: list[int]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)

    async def read() -> None:
        while data := await stream.receive_some(1 << 20):
            moved[0] += len(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        while True:
            await stream.send_all(CHUNK)


async def _bystander(port: int, rtts: list[float]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    while True:
        start = time.perf_counter()
        await stream.send_all(b"p" * 64)
        got = 0
        while got < 64:
            got += len(await stream.receive_some(64 - got))
        rtts.append(time.perf_counter() - start)
        await trio.sleep(0.01)


async def _chat_lines(
    port: int, rtts: list[float], behind: list[float], bursts: list[float]
) -> None:
    """Three chat members: one sends bursts of 1 MiB of 2-byte lines, one says a line
    every 10 ms, one listens. The bystander's lines are timed as the streamer sees them
    (*rtts*: nothing queued ahead of them) and as the listener does (*behind*: after
    the burst's lines sent to it before them); *bursts* is the time to serve a burst."""
    members = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
    streamer, bystander, listener = members
    for stream, nick in zip(members, (b"streamer", b"bystander", b"listener"), strict=True):
        await stream.send_all(nick + b"\n")
    await trio.sleep(0.3)
    said: dict[bytes, float] = {}
    heard: dict[bytes, int] = {}
    burst_started = [0.0]
    served = [trio.Event()]

    def bystander_line(word: bytes, seen: list[float]) -> None:
        start = said.get(word)
        if start is None:
            return
        seen.append(time.perf_counter() - start)
        heard[word] = heard.get(word, 0) + 1
        if heard[word] == 2:  # both have seen it
            del said[word], heard[word]

    async def listen(stream: trio.SocketStream, seen: list[float]) -> None:
        tail = b""
        while data := await stream.receive_some(1 << 20):
            window = tail + data
            for line in window.split(b"\n")[:-1]:
                if line.startswith(b"<bystander> "):
                    bystander_line(line[12:], seen)
                elif line == b"<streamer> done":
                    bursts.append(time.perf_counter() - burst_started[0])
                    served[0].set()
            tail = window.rsplit(b"\n", 1)[-1]

    async def say() -> None:
        for number in range(1 << 30):
            word = b"%d" % number
            said[word] = time.perf_counter()
            await bystander.send_all(word + b"\n")
            await trio.sleep(0.01)

    async def drain(stream: trio.SocketStream) -> None:
        while await stream.receive_some(1 << 20):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen, listener, behind)
        nursery.start_soon(listen, streamer, rtts)
        nursery.start_soon(say)
        nursery.start_soon(drain, bystander)
        while True:
            burst_started[0] = time.perf_counter()
            served[0] = trio.Event()
            await streamer.send_all(b"a\n" * (512 * 1024) + b"done\n")
            await served[0].wait()
            await trio.sleep(0.2)


async def _newcomers(port: int, times: list[float]) -> None:
    while True:
        start = time.perf_counter()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"n")
        await stream.receive_some(1)
        await stream.aclose()
        times.append(time.perf_counter() - start)
        await trio.sleep(0.1)


async def measure(name: str, streamers: int, seconds: float, lines: bool) -> dict[str, object]:
    port = free_port()
    server = await trio.lowlevel.open_process(pinned(0, _server(name, port)))
    try:
        await _wait_listening(port)
        rtts: list[float] = []
        joins: list[float] = []
        bursts: list[float] = []
        behind: list[float] = []
        moved = [[0] for _ in range(streamers)]
        with trio.move_on_after(seconds):
            async with trio.open_nursery() as nursery:
                if lines:
                    nursery.start_soon(_chat_lines, port, rtts, behind, bursts)
                else:
                    for counter in moved:
                        nursery.start_soon(_stream, port, counter)
                    nursery.start_soon(_bystander, port, rtts)
                    nursery.start_soon(_newcomers, port, joins)
        result: dict[str, object] = {"server": name, "bystander": _summary(rtts)}
        if lines:
            result["bystander_behind_the_burst"] = _summary(behind)
            result["burst_of_1_mib_lines"] = _summary(bursts)
        else:
            result["streamers"] = streamers
            result["newcomers"] = _summary(joins)
            result["streamed_mb_per_s"] = round(sum(c[0] for c in moved) / seconds / 1e6, 1)
        return result
    finally:
        server.terminate()
        await server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streamers", default="1,4")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--servers", default="trio_mona,plain trio")
    parser.add_argument("--lines", action="store_true")
    args = parser.parse_args()
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    results = []
    chat = ["trio_mona chat", "trio_mona chat (luajit)"]
    servers = chat if args.lines else args.servers.split(",")
    for count in [1] if args.lines else (int(n) for n in args.streamers.split(",")):
        for name in servers:
            result = trio.run(measure, name, count, args.seconds, args.lines)
            results.append(result)
            print(json.dumps(result))
    out = HERE / "results" / ("fairness-lines.json" if args.lines else "fairness.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
