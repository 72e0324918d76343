"""The executor's suspend/resume path: a handler waits, everything else goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from trio_mona import Runtime, testing

from .helpers import (
    connect,
    lua,
    lua_until,
    messages,
    receive_exactly,
    running,
    tcp_port,
    wait_for_log,
    wait_until,
)

APP = """
server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data)
    if data:sub(1, 4) == "wait" then
      local value = pause(data:sub(5))        -- suspends this handler only
      self:send("resumed:" .. value .. ";")
      return 0
    end
    self:send("[" .. data .. "]")
  end
  function client:onDisconnection() NOTE("closed ", tostring(self.error)) end
end
server:start("127.0.0.1", 0)
"""


def install_pause(runtime: Runtime, gate: dict[bytes, trio.Event]) -> None:
    """``pause(key)`` suspends the Lua caller until the test sets ``gate[key]``."""

    async def pause(key: bytes) -> tuple[object, ...]:
        event = gate.setdefault(key, trio.Event())
        await event.wait()
        return (key.upper(),)

    testing.install_waiting(runtime, "pause", pause)


async def test_suspended_handler_lets_others_run_and_keeps_order(tmp_path: Path) -> None:
    gate: dict[bytes, trio.Event] = {}
    async with running(tmp_path, APP) as runtime:
        install_pause(runtime, gate)
        port = tcp_port(runtime)
        waiting, other = await connect(port), await connect(port)
        await waiting.send_all(b"waitA")
        await wait_until(lambda: b"A" in gate)  # the handler waits
        # More data for the suspended socket queues behind it, in order.
        await waiting.send_all(b"one")
        await wait_until(lambda: runtime.statistics().bytes_received == 8)  # two reads
        await waiting.send_all(b"two")
        # Other sockets are served meanwhile, with no added delay.
        with trio.fail_after(1):
            for i in range(20):
                await other.send_all(b"x%d" % i)
                assert await receive_exactly(other, 3 + len(str(i))) == b"[x%d]" % i
        gate[b"A"].set()
        assert await receive_exactly(waiting, 10) == b"resumed:A;"
        # "one" and "two" may have been read together; either way they follow, in order.
        rest = b""
        with trio.fail_after(5):
            while rest.replace(b"[", b"").replace(b"]", b"") != b"onetwo":
                rest += await waiting.receive_some(100)
        assert rest in (b"[one][two]", b"[onetwo]")


async def test_socket_closing_while_suspended(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate: dict[bytes, trio.Event] = {}
    async with running(tmp_path, APP) as runtime:
        install_pause(runtime, gate)
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"waitB")
        await wait_until(lambda: b"B" in gate)
        await stream.aclose()
        await trio.sleep(0.05)  # (time for the close to arrive: it must not be reported)
        # onDisconnection waits behind the suspended handler
        assert not any(m.startswith("closed") for m in messages(caplog))
        gate[b"B"].set()
        await wait_for_log(caplog, "closed")
        # the resumed handler's send found the socket closed: no crash, one event
        assert sum(m.startswith("closed") for m in messages(caplog)) == 1


async def test_shutdown_while_suspended(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gate: dict[bytes, trio.Event] = {}
    with trio.fail_after(5):
        async with running(tmp_path, APP) as runtime:
            install_pause(runtime, gate)
            stream = await connect(tcp_port(runtime))
            await stream.send_all(b"waitC")
            await wait_until(lambda: b"C" in gate)
    # the suspended coroutine was dropped: it never resumed
    assert not any(m.startswith("closed") for m in messages(caplog))
    await stream.aclose()


async def test_main_chunk_can_suspend(tmp_path: Path) -> None:
    gate: dict[bytes, trio.Event] = {b"M": trio.Event()}
    gate[b"M"].set()
    async with running(tmp_path, "") as runtime:
        install_pause(runtime, gate)
        assert await lua(runtime, "return pause('M')") == b"M"


async def test_a_coroutine_of_the_application_that_waits_is_run_by_the_runtime(
    tmp_path: Path,
) -> None:
    gate: dict[bytes, trio.Event] = {}
    async with running(tmp_path, "") as runtime:
        install_pause(runtime, gate)
        # the wait suspends only the inner coroutine: its resume returns true at once
        assert (
            await lua(
                runtime,
                "order = {} "
                "co = coroutine.create(function() local v = pause('x') order[#order + 1] = v end) "
                "local ok = coroutine.resume(co) order[#order + 1] = 'after' return ok",
            )
            is True
        )
        await wait_until(lambda: b"x" in gate)
        # while it waits the runtime owns it: the application cannot resume it
        refused = await lua(runtime, "return select(2, pcall(coroutine.resume, co))")
        assert b"belongs to the runtime" in refused
        gate[b"x"].set()
        await lua_until(runtime, "return #order == 2", 2)
        assert await lua(runtime, "return order[1] .. ',' .. order[2]") == b"after,X"
        assert await lua(runtime, "return coroutine.status(co)") == b"dead"


async def test_waiting_where_lua_cannot_is_a_clear_error(tmp_path: Path) -> None:
    gate: dict[bytes, trio.Event] = {}
    async with running(tmp_path, "") as runtime:
        install_pause(runtime, gate)
        message = await lua(
            runtime,
            "local t = {3, 1, 2} "
            "local ok, err = pcall(table.sort, t, function(a, b) pause('y') return a < b end) "
            "return err",
        )
        assert b"'pause' has to wait" in message
        assert b"cannot wait" in message


COUNTER = """
server = mona:createTCPServer()
function server:onConnection(client)
  local seen = 0
  function client:onData(data)
    if seen == 0 then pause("A") end             -- the first read waits for the gate
    seen = seen + #data
    if seen >= TOTAL then self:send(tostring(seen)) end
  end
end
server:start("127.0.0.1", 0)
"""


async def test_reading_pauses_behind_a_suspended_handler_and_resumes_after_it(
    tmp_path: Path,
) -> None:
    # 4 MiB while the handler waits: the connection reads 256 KiB ahead of Lua and
    # stops (the rest waits in the kernel: the sender blocks); once the handler goes on,
    # each take lets reading go on, and every byte arrives once.
    total = 4 << 20
    gate: dict[bytes, trio.Event] = {}
    async with running(tmp_path, f"TOTAL = {total}\n" + COUNTER) as runtime:
        install_pause(runtime, gate)
        stream = await connect(tcp_port(runtime))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, b"x" * total)
            await wait_until(lambda: b"A" in gate)
            with trio.move_on_after(0.3):  # (the sender cannot finish: reading paused)
                await wait_until(lambda: runtime.statistics().bytes_received >= total)
            assert runtime.statistics().bytes_received < total
            gate[b"A"].set()
            with trio.fail_after(10):
                assert await stream.receive_some(100) == str(total).encode()
        await stream.aclose()
