"""The conversions, in process: mona:toJSON/fromJSON, toAMF/fromAMF and
toQuery/fromQuery of a typical message (a 20-field table with nested arrays, ~0.5 KB of
JSON) and of a ~1 MB document (2,000 such messages; for AMF 2,000 copies, since AMF
writes a table that repeats once and refers to it), beside a plain-Lua JSON codec
(``bench/lua/json_reference.lua``)
running in the same Lua state and Python's own ``json`` on the equivalent dict.

Every Lua figure is measured by a loop inside Lua (``os.clock``), so no crossing per
iteration is counted that an application would not pay. Results go to
``bench/results/conversions.json``.

    python bench/conversions.py [--engine lua54] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

import trio_mona
from trio_mona import testing

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: The typical message, in Lua and (below) as the equivalent Python dict.
MESSAGE_LUA = """{id=12345, name="a user name", email="someone@example.com", active=true,
  score=98.5, tags={"alpha","beta","gamma","delta"}, roles={"admin","user"},
  address={street="1 Main Street", city="Springfield", zip="12345", geo={lat=45.5, lng=-122.6}},
  history={{at=1,what="login"},{at=2,what="view"},{at=3,what="logout"}},
  counts={1,2,3,4,5,6,7,8,9,10}, note="some text with \\"quotes\\" and a newline\\n",
  f1=1, f2=2, f3="three", f4=false, f5=0.25, f6="six", f7="seven", f8="eight", f9=9}"""
MESSAGE: dict[str, Any] = {
    "id": 12345, "name": "a user name", "email": "someone@example.com", "active": True,
    "score": 98.5, "tags": ["alpha", "beta", "gamma", "delta"], "roles": ["admin", "user"],
    "address": {"street": "1 Main Street", "city": "Springfield", "zip": "12345",
                "geo": {"lat": 45.5, "lng": -122.6}},
    "history": [{"at": 1, "what": "login"}, {"at": 2, "what": "view"},
                {"at": 3, "what": "logout"}],
    "counts": list(range(1, 11)), "note": 'some text with "quotes" and a newline\n',
    "f1": 1, "f2": 2, "f3": "three", "f4": False, "f5": 0.25, "f6": "six", "f7": "seven",
    "f8": "eight", "f9": 9,
}  # fmt: skip
DOCUMENT_COUNT = 2000
QUERY_LUA = """{id=12345, name="a user name", email="someone@example.com", active=true,
  score=98.5, city="Springfield", zip="12345", f1=1, f2=2, f3="three"}"""

#: The benchmark's Lua: bench(f, seconds) calls f in a loop for about that long, in five
#: rounds, and returns the microseconds per call of the fastest round (this machine's
#: speed drifts; the fastest round is the least disturbed).
SETUP = """
reference = load(REFERENCE)()
message = MESSAGE
document = {}
for i = 1, COUNT do document[i] = message end
-- (AMF writes a table that repeats once and refers to it: copies for the 1 MB case)
local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end
copies = {}
for i = 1, COUNT do copies[i] = copy(message) end
query = QUERY
function bench(f, seconds)
  f() -- (warm)
  local best = math.huge
  for _ = 1, 5 do
    local n, started = 0, os.clock()
    repeat
      f()
      n = n + 1
    until os.clock() - started > seconds / 5
    best = math.min(best, (os.clock() - started) / n * 1e6)
  end
  return best
end
"""

CASES = {
    "toJSON, message": "local m = message return function() mona:toJSON(m) end",
    "fromJSON, message": "local s = mona:toJSON(message) return function() mona:fromJSON(s) end",
    "round trip, message": (
        "local m = message return function() mona:fromJSON(mona:toJSON(m)) end"
    ),
    "toJSON, 1 MB": "local d = document return function() mona:toJSON(d) end",
    "fromJSON, 1 MB": "local s = mona:toJSON(document) return function() mona:fromJSON(s) end",
    "plain-Lua encode, message": "local m = message return function() reference.encode(m) end",
    "plain-Lua decode, message": (
        "local s = reference.encode(message) return function() reference.decode(s) end"
    ),
    "plain-Lua encode, 1 MB": "local d = document return function() reference.encode(d) end",
    "plain-Lua decode, 1 MB": (
        "local s = reference.encode(document) return function() reference.decode(s) end"
    ),
    "toAMF, message": "local m = message return function() mona:toAMF(m) end",
    "fromAMF, message": "local s = mona:toAMF(message) return function() mona:fromAMF(s) end",
    "round trip AMF, message": (
        "local m = message return function() mona:fromAMF(mona:toAMF(m)) end"
    ),
    "toAMF, 1 MB": "local d = copies return function() mona:toAMF(d) end",
    "fromAMF, 1 MB": "local s = mona:toAMF(copies) return function() mona:fromAMF(s) end",
    "toQuery, 10 fields": "local q = query return function() mona:toQuery(q) end",
    "fromQuery, 10 fields": (
        "local s = mona:toQuery(query) return function() mona:fromQuery(s) end"
    ),
}


def python_json(seconds: float) -> dict[str, float]:
    document = [MESSAGE] * DOCUMENT_COUNT
    text, big = json.dumps([MESSAGE]), json.dumps(document)
    cases: dict[str, Callable[[], object]] = {
        "Python json.dumps, message": lambda: json.dumps([MESSAGE]),
        "Python json.loads, message": lambda: json.loads(text),
        "Python round trip, message": lambda: json.loads(json.dumps([MESSAGE])),
        "Python json.dumps, 1 MB": lambda: json.dumps(document),
        "Python json.loads, 1 MB": lambda: json.loads(big),
    }
    results = {}
    for name, case in cases.items():
        best = math.inf
        for _ in range(5):  # (the fastest of five rounds, as in Lua)
            n, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds / 5:
                case()
                n += 1
            best = min(best, (time.perf_counter() - started) / n * 1e6)
        results[name] = best
    return results


async def lua_cases(engine: str, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "main.lua").write_text("")
        # (no runaway bound: one loop runs for the whole measurement)
        settings = {"trio_mona.handler_timeout": "0"}
        async with trio_mona.open_runtime(folder, engine=engine, settings=settings) as runtime:
            setup = (
                SETUP.replace("REFERENCE", repr((HERE / "lua" / "json_reference.lua").read_text()))
                .replace("MESSAGE", MESSAGE_LUA)
                .replace("COUNT", str(DOCUMENT_COUNT))
                .replace("QUERY", QUERY_LUA)
            )
            await testing.run_lua(runtime, setup)
            sizes = await testing.run_lua(
                runtime,
                "return #mona:toJSON(message), #mona:toJSON(document), #mona:toAMF(message),"
                " #mona:toAMF(copies)",
            )
            results: dict[str, Any] = {
                "message_bytes": sizes[0],
                "document_bytes": sizes[1],
                "amf_message_bytes": sizes[2],
                "amf_document_bytes": sizes[3],
            }
            for name, case in CASES.items():
                code = f"return bench((function() {case} end)(), {seconds})"
                results[name] = await testing.run_lua(runtime, code)
            return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", default="", help="lua54 or luajit21 (default: both)")
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    engines = [args.engine] if args.engine else ["lua54", "luajit21"]
    report: dict[str, Any] = {"python": python_json(args.seconds)}
    for engine in engines:
        report[engine] = trio.run(lua_cases, engine, args.seconds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "conversions.json").write_text(json.dumps(report, indent=2))
    print_report(report)


def print_report(report: dict[str, Any]) -> None:
    print("conversions, microseconds per call (in process)")
    for engine, values in report.items():
        for name, value in values.items():
            unit = "bytes" if name.endswith("_bytes") else "us"
            print(f"  {engine:<9} {name:<30} {value:12.1f} {unit}")


if __name__ == "__main__":
    main()
