"""The Python API: open_runtime, serve, lifecycle events, shutdown, statistics."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import pytest
import trio

import trio_mona
from trio_mona import testing

from .helpers import (
    connect,
    lua,
    lua_until,
    messages,
    receive_exactly,
    receive_until_closed,
    running,
    tcp_port,
    wait_for_log,
    wait_until,
    write_app,
)


def open_fds() -> set[str]:
    gc.collect()  # (what earlier tests left for the collector closes now, not midway)
    return set(os.listdir("/proc/self/fd"))


async def test_leaves_no_task_or_file_descriptor(tmp_path: Path) -> None:
    app = """
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(data) self:send(data) end
    end
    server:start("127.0.0.1", 0)
    outgoing = mona:createTCPClient()
    """
    fds_before = open_fds()
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    async with running(tmp_path, app) as runtime:
        port = tcp_port(runtime)
        streams = [await connect(port) for _ in range(5)]
        for stream in streams:
            await stream.send_all(b"x")
            assert await receive_exactly(stream, 1) == b"x"
        await lua(runtime, f"outgoing:connect({port})")
        assert trio.lowlevel.current_statistics().tasks_living > tasks_before
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before
    for stream in streams:
        assert await receive_until_closed(stream) == b""
        await stream.aclose()
    assert open_fds() == fds_before


async def test_serve_hands_back_runtime_after_on_start(tmp_path: Path) -> None:
    folder = write_app(
        tmp_path / "apps",
        """
        started = nil
        function onStart(path) started = "started '" .. path .. "'" end
        server = mona:createTCPServer()
        server:start("127.0.0.1", 0)
        """,
    )
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(trio_mona.serve, folder)
        assert isinstance(runtime, trio_mona.Runtime)
        assert await lua(runtime, "return started") == b"started ''"
        assert runtime.bound_addresses[0].kind == "tcp"
        assert runtime.bound_addresses[0].host == "127.0.0.1"
        assert runtime.bound_addresses[0].app == ""
        nursery.cancel_scope.cancel()


async def test_on_stop_runs_with_sockets_open_then_connections_flush(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = """
    clients = {}
    server = mona:createTCPServer()
    function server:onConnection(client)
      clients[client] = true
      function client:onDisconnection() NOTE("must not run after onStop") end
    end
    server:start("127.0.0.1", 0)
    function onStop(path)
      NOTE("stopping '", path, "'")
      for client in pairs(clients) do client:send(string.rep("z", 100000)) end
    end
    """
    async with running(tmp_path, app) as runtime:
        stream = await connect(tcp_port(runtime))
        await lua_until(runtime, "return next(clients) ~= nil")  # onConnection ran
    # the goodbye queued in onStop was flushed before the socket closed
    assert await receive_until_closed(stream) == b"z" * 100000
    assert "stopping ''" in messages(caplog)
    assert "must not run after onStop" not in messages(caplog)


async def test_linger_bounds_shutdown(tmp_path: Path) -> None:
    # A peer that never reads cannot hold shutdown past the linger time.
    app = """
    server = mona:createTCPServer()
    function server:onConnection(client)
      client:send(string.rep("q", 8 * 1024 * 1024))
    end
    server:start("127.0.0.1", 0)
    """
    start = trio.current_time()
    async with running(tmp_path, app, trio_mona__linger="0.3") as runtime:
        stream = await connect(tcp_port(runtime))
        await wait_until(lambda: runtime.statistics().bytes_queued > 0)  # the kernel is full
    assert trio.current_time() - start < 2
    await stream.aclose()


async def test_statistics(tmp_path: Path) -> None:
    app = """
    server = mona:createTCPServer()
    function server:onConnection(client)
      function client:onData(data) self:send(data .. data) end
    end
    server:start("127.0.0.1", 0)
    """
    async with running(tmp_path, app) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"12345")
        assert await receive_exactly(stream, 10) == b"1234512345"
        stats = runtime.statistics()
        assert stats.engine == "Lua 5.4"
        assert stats.tcp_connections == 1
        assert stats.tcp_servers == 1
        assert stats.bytes_received == 5
        assert stats.bytes_sent == 10
        assert stats.events_dispatched >= 2
        assert stats.lua_memory > 0


async def test_startup_errors(tmp_path: Path) -> None:
    with pytest.raises(trio_mona.StartupError, match="applications folder not found"):
        async with trio_mona.open_runtime(tmp_path / "missing"):
            pass
    (tmp_path / "empty").mkdir()
    with pytest.raises(trio_mona.StartupError, match="cannot read the root application"):
        async with trio_mona.open_runtime(tmp_path / "empty"):
            pass
    folder = write_app(tmp_path / "syntax", "local = 1")
    with pytest.raises(trio_mona.StartupError, match=r"main.lua:1: .*near '='"):
        async with trio_mona.open_runtime(folder):
            pass
    folder = write_app(tmp_path / "engine", "")
    with pytest.raises(trio_mona.StartupError, match="engine"):
        async with trio_mona.open_runtime(folder, engine="lua99"):
            pass


async def test_failed_start_closes_what_the_main_chunk_opened(tmp_path: Path) -> None:
    fds_before = open_fds()
    folder = write_app(
        tmp_path / "apps",
        """
        server = mona:createTCPServer()
        server:start("127.0.0.1", 0)
        error("late failure")
        """,
    )
    with pytest.raises(trio_mona.StartupError, match="late failure"):
        async with trio_mona.open_runtime(folder):
            pass
    assert open_fds() == fds_before


async def test_error_in_on_start_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, "function onStart() error('bad start') end") as runtime:
        assert runtime.statistics().tcp_servers == 0
    assert any("onStart failed" in m and "bad start" in m for m in messages(caplog))


async def test_no_lua_runs_after_on_stop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A peer that never reads keeps shutdown busy flushing for the linger time, while
    # a timer would fire many times: none of it may run Lua once onStop has run.
    app = """
    mona:setTimer(function() NOTE("tick") return 20 end, 20)
    function onStop() NOTE("stopped") end
    server = mona:createTCPServer()
    function server:onConnection(client)
      client:send(string.rep("q", 8 * 1024 * 1024))
    end
    server:start("127.0.0.1", 0)
    """
    async with running(tmp_path, app, trio_mona__linger="0.4") as runtime:
        stream = await connect(tcp_port(runtime))
        await wait_until(lambda: runtime.statistics().bytes_queued > 0)  # the kernel is full
        await wait_for_log(caplog, "tick")
    logs = messages(caplog)
    assert "stopped" in logs
    assert "tick" in logs
    assert "tick" not in logs[logs.index("stopped") :]
    await stream.aclose()


async def test_lua54_collects_generationally(tmp_path: Path) -> None:
    # Each received buffer is a short-lived string: the generational collector frees it
    # young (bulk streaming measured ~30 % faster per 64 KiB). Switching reports the mode
    # that was on; switch back to leave the runtime as it was.
    async with running(tmp_path, "") as runtime:
        assert await lua(runtime, 'return collectgarbage("incremental")') == b"generational"
        assert await lua(runtime, 'return collectgarbage("generational")') == b"incremental"


async def test_hot_reload_keeps_the_applications_when_it_cannot_look(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of file descriptors, the watcher cannot read the folders: that must not read
    as every main.lua deleted."""
    app = "server = mona:createTCPServer() function server:onConnection(c) end server:start('127.0.0.1', 0)"
    async with running(tmp_path, app, trio_mona__reload_interval="0.05") as runtime:
        stream = await connect(tcp_port(runtime))
        hoard = []
        try:
            while True:
                try:
                    hoard.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            await wait_for_log(caplog, "hot reload: cannot look")
        finally:
            for fd in hoard:
                os.close(fd)
        assert not [m for m in messages(caplog) if "removed" in m or "reloading" in m]
        assert "" in runtime.statistics().applications
        await stream.send_all(b"x")  # the connection is still open (no onData: ignored)
        await wait_until(lambda: runtime.statistics().bytes_received == 1)
        assert runtime.statistics().tcp_connections == 1


async def test_serve_returns_the_code_given_to_os_exit(tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "main.lua").write_text(
        "stopped = false\n"
        "function onStop() stopped = true end\n"
        "server = mona:createTCPServer()\n"
        "function server:onConnection(client)\n"
        "  function client:onData(data) os.exit(tonumber(data)) self:send('after') end\n"
        "end\n"
        "server:start('127.0.0.1', 0)\n"
    )
    results: list[int] = []

    async def run(task_status: trio.TaskStatus[trio_mona.Runtime]) -> None:
        results.append(await trio_mona.serve(apps, task_status=task_status))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            runtime = await nursery.start(run)
            stream = await trio.open_tcp_stream("127.0.0.1", runtime.bound_addresses[0].port)
            await stream.send_all(b"5")
            received = await stream.receive_some(10)
    assert results == [5]
    assert runtime.exit_code == 5
    assert received == b""  # the handler stopped at os.exit: nothing after it was sent


async def test_os_exit_refuses_a_code_that_is_no_number(tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "main.lua").write_text("")
    async with trio_mona.open_runtime(apps) as runtime:
        message = await testing.run_lua(runtime, "return select(2, pcall(os.exit, {}))")
        assert message == b"bad argument #1 to 'exit' (number or boolean expected, got table)"
        assert runtime.exit_code is None


async def test_an_idle_runtime_sleeps_and_wakes_for_what_other_tasks_post(
    tmp_path: Path,
) -> None:
    # The executor waits on the read hub; a timer (another task) must wake it, and
    # between wake-ups it must not spin.
    app = """
    ticks = 0
    mona:setTimer(function() ticks = ticks + 1; return ticks < 20 and 10 or 0 end, 10)
    """
    async with running(tmp_path, app) as runtime:
        await lua_until(runtime, "return ticks >= 20")
        started = time.process_time()
        await trio.sleep(0.5)
        # (a spinning loop would use ~0.5 s of this process's CPU, whatever the load)
        assert time.process_time() - started < 0.25
        assert await lua(runtime, "return ticks") == 20


def fail_with_context() -> None:
    missing: dict[str, int] = {}
    try:
        missing["the context"]
    except KeyError:
        raise ValueError("from the block") from None


async def test_an_exception_in_the_block_comes_out_as_itself(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    with pytest.raises(ValueError, match="from the block") as caught:
        async with trio_mona.open_runtime(folder, data=":memory:"):
            fail_with_context()
    assert isinstance(caught.value.__context__, KeyError)  # (its own, not a group)
    with pytest.raises(SystemExit) as exited:
        async with trio_mona.open_runtime(folder, data=":memory:"):
            raise SystemExit(0)
    assert exited.value.code == 0
    with pytest.raises(KeyboardInterrupt):
        async with trio_mona.open_runtime(folder, data=":memory:"):
            raise KeyboardInterrupt
    # the documented ValueError of a bad name to expose
    with pytest.raises(ValueError, match="a name is a Lua identifier"):
        async with trio_mona.open_runtime(folder, data=":memory:", expose={"no-name": print}):
            pass


async def test_an_outer_cancellation_still_cancels(tmp_path: Path) -> None:
    folder = write_app(tmp_path / "apps", "x = 1")
    with trio.move_on_after(0.2) as scope:
        async with trio_mona.open_runtime(folder, data=":memory:"):
            await trio.sleep_forever()
    assert scope.cancelled_caught


async def test_on_stop_finishes_its_work_once_shutdown_has_begun(tmp_path: Path) -> None:
    # (after shutdown begins the hook stops handlers, as on a signal, except onStop)
    finished: list[int] = []
    app = """
    function onStop()
      local n = 0
      for i = 1, 3000000 do n = n + 1 end  -- (many hook periods)
      mona.host.done(n)
    end
    """
    folder = write_app(tmp_path / "apps", app)
    async with trio_mona.open_runtime(folder, data=":memory:", expose={"done": finished.append}):
        pass
    assert finished == [3000000]
