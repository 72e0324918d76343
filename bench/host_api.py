"""The host API (docs/embedding.rst), in process: one ``mona.host`` call of a plain
function and of an async one, and one ``Runtime.call`` of a Lua function, in
microseconds, beside a Lua call of a Lua function. Results go to
``bench/results/host_api.json``; ``bench/suite.py`` runs it too.

    python bench/host_api.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import trio

import trio_mona
from trio_mona import testing

RESULTS = Path(__file__).resolve().parent / "results"
APP = "function answer(a, b) return a + b end\nfunction lua_answer(a, b) return a + b end"


def plain(a: int, b: int) -> int:
    return a + b


async def later(a: int, b: int) -> int:
    return a + b


async def measure(engine: str, calls: int, repeat: int) -> dict[str, float]:
    found: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "main.lua").write_text(APP)
        exposed = {"plain": plain, "later": later}
        unbounded = {"trio_mona.handler_timeout": "0"}  # (as dispatch.py: no count hook)
        async with trio_mona.open_runtime(
            folder, engine=engine, data=":memory:", expose=exposed, settings=unbounded
        ) as runtime:
            for _ in range(repeat):
                for name, target, n in (
                    ("Lua function from Lua", "lua_answer", calls),
                    ("mona.host, plain function", "mona.host.plain", calls),
                    ("mona.host, async function", "mona.host.later", calls // 20),
                ):
                    code = f"""local f, started = {target}, os.clock()
                    for i = 1, {n} do f(i, 1) end
                    return os.clock() - started"""
                    wall = time.perf_counter()
                    cpu = await testing.run_lua(runtime, code)
                    elapsed = time.perf_counter() - wall if "async" in name else cpu
                    found.setdefault(name, []).append(elapsed / n * 1e6)
                n = calls // 20
                started = time.perf_counter()
                for i in range(n):
                    await runtime.call("/", "answer", i, 1)
                found.setdefault("Runtime.call", []).append(
                    (time.perf_counter() - started) / n * 1e6
                )
    return {name: min(values) for name, values in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report = {e: trio.run(measure, e, args.calls, args.repeat) for e in ("lua54", "luajit21")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "host_api.json").write_text(json.dumps(report, indent=2))
    for engine, values in report.items():
        for name, value in values.items():
            print(f"  {engine:<9} {name:<28} {value:8.2f} µs")


if __name__ == "__main__":
    main()
