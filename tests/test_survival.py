"""Nothing an application does crashes the runtime: each case runs in a real process,
so that a crash shows as the signal that killed it (docs/lua/safety.rst)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import ENGINES, SPINNER, write_app

pytestmark = pytest.mark.slow


def run_app(folder: Path, engine: str) -> subprocess.CompletedProcess[str]:
    """Run the application in *folder* until it calls os.exit (normal mode: sandbox
    mode has none; both crashed alike)."""
    return subprocess.run(
        [sys.executable, "-m", "trio_mona", "run", str(folder), "--lua", engine],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def exited_cleanly(found: subprocess.CompletedProcess[str]) -> None:
    assert found.returncode == 0, f"exit {found.returncode}:\n{found.stderr[-3000:]}"


# Each kind of object, made inside a coroutine of the application's own that ends and is
# collected before the object is used again (lupa tied them to that coroutine's state).
MADE_IN_A_COROUTINE = """
local keep, fired = {}, 0
for i = 1, 20 do
  coroutine.wrap(function()
    local u = mona:createUDPSocket(); u:send("x", "127.0.0.1", 9); keep[#keep + 1] = u
    local c = mona:createTCPClient(); c:connect("127.0.0.1", 9); keep[#keep + 1] = c
    local s = mona:createTCPServer(); s:start("127.0.0.1", 0); keep[#keep + 1] = s
    mona:setTimer(function() fired = fired + 1; return 0 end, 1)
  end)()
end
collectgarbage(); collectgarbage()
local function close_all()
  for _, o in ipairs(keep) do
    if o.close then o:close() elseif o.disconnect then o:disconnect() else o:stop() end
  end
  collectgarbage(); collectgarbage()
end
mona:setTimer(function()
  if fired < 20 then return 5 end
  close_all()
  NOTE("used and closed: ", #keep, " objects, ", fired, " timers fired")
  os.exit(0)
end, 5)
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_objects_made_in_a_collected_coroutine_stay_valid(tmp_path: Path, engine: str) -> None:
    found = run_app(write_app(tmp_path / "apps", MADE_IN_A_COROUTINE), engine)
    exited_cleanly(found)
    assert "used and closed: 60 objects, 20 timers fired" in found.stderr


NESTED = """
local depth = 0
local function f(n) depth = n; return coroutine.wrap(function() return f(n + 1) end)() end
local ok, err = pcall(f, 1)
NOTE("nested ", depth, ": ", err)
local co = coroutine.create(function() return "fine" end)
NOTE("then: ", select(2, coroutine.resume(co)))
os.exit(0)
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_nested_coroutines_raise_a_lua_error(tmp_path: Path, engine: str) -> None:
    found = run_app(write_app(tmp_path / "apps", NESTED), engine)
    exited_cleanly(found)
    assert "nested 151: " in found.stderr
    assert "C stack overflow (more than 150 nested coroutines)" in found.stderr
    assert "then: fine" in found.stderr


FINALIZERS = """
local order = {}
for i = 1, 3 do setmetatable({ i = i }, { __gc = function(o) order[#order + 1] = o.i end }) end
local late = { __gc = true }       -- Lua calls the __gc the metatable holds when collecting
-- (the order is Lua's: the last marked first)
setmetatable({}, late)
late.__gc = function() order[#order + 1] = "late" end
local never = {}                   -- no __gc when set: never finalized, as in Lua
setmetatable({}, never)
never.__gc = function() order[#order + 1] = "never" end
collectgarbage(); collectgarbage()
NOTE("finalized: ", table.concat(order, ","))
kept = setmetatable({}, { __gc = function() while true do end end }) -- runs at shutdown
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data)
    if data == "loop" then
      setmetatable({}, { __gc = function() while true do end end }); collectgarbage()
    end
    self:send(data)
  end
end
server:start("127.0.0.1", 0)
NOTE("listening on ", server.address.port)
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_looping_finalizer_is_stopped_by_the_runaway_bound(tmp_path: Path, engine: str) -> None:
    folder = write_app(tmp_path / "apps", FINALIZERS)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "trio_mona", "run", str(folder), "--lua", engine),
            *("--set", "trio_mona.sandbox=true", "--set", "trio_mona.handler_timeout=0.3"),
        ],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "listening on " in line:
                break
        port = int(lines[-1].rsplit("listening on ", 1)[1])
        if engine == "lua54":  # (LuaJIT has no __gc on tables)
            assert "finalized: late,3,2,1" in "".join(lines)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"loop")
            assert client.recv(10) == b"loop"  # the finalizer was stopped, the handler went on
        with socket.create_connection(("127.0.0.1", port), timeout=10) as bystander:
            bystander.sendall(b"ping")
            assert bystander.recv(10) == b"ping"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0  # the finalizer kept for shutdown is stopped too
        assert time.monotonic() - started < 2
        rest = "".join(lines) + process.stderr.read()
        if engine == "lua54":
            assert rest.count("finalizer (__gc) failed") == 2, rest
    finally:
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()


def start_app(folder: Path, *options: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_mona", "run", str(folder), *options],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "listening on " in line:
            return process, int(line.rsplit("listening on ", 1)[1])
    raise AssertionError(f"no start (exit {process.wait()})")


def test_luajit_sandbox_stops_a_loop_and_sigterm_stops_the_process(tmp_path: Path) -> None:
    # (LuaJIT's compiled loops skip the hook: sandbox mode runs its interpreter)
    folder = write_app(tmp_path / "apps", SPINNER)
    process, port = start_app(
        folder,
        *("--lua", "luajit21", "--set", "trio_mona.sandbox=true"),
        *("--set", "trio_mona.handler_timeout=0.5"),
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as spinner:
            spinner.sendall(b"spin")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as bystander:
                bystander.sendall(b"ping")
                assert bystander.recv(10) == b"ping"  # (after the bound stopped the loop)
            spinner.sendall(b"spin")  # (spinning again when the signal comes)
            time.sleep(0.2)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
            assert time.monotonic() - started < 1
    finally:
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_sigterm_stops_a_luajit_loop_compiled_to_machine_code(tmp_path: Path) -> None:
    # (normal mode: the compiled loop never calls the hook, nor returns to Python)
    folder = write_app(tmp_path / "apps", SPINNER)
    process, port = start_app(folder, "--lua", "luajit21", "--data", ":memory:")
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as spinner,
            socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe,
        ):
            spinner.sendall(b"spin")
            probe.sendall(b"ping")
            with pytest.raises(TimeoutError):  # (the executor spins: nobody is answered)
                probe.recv(4)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 1
            assert time.monotonic() - started < 1.5
            assert process.stderr is not None
            assert "did not let the stop signal through" in process.stderr.read()
    finally:
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()
