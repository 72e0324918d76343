"""When what Lua sends is written (``Writes``): at the end of the executor's batch, or
at once for the last event it knows of. Whichever way, nothing is lost or reordered."""

from __future__ import annotations

from pathlib import Path

import trio

from .helpers import (
    connect,
    lua,
    receive_exactly,
    receive_until_closed,
    running,
    tcp_port,
    wait_until,
)

SERVER = """
clients = {}
server = mona:createTCPServer()
function server:onConnection(client)
  clients[#clients + 1] = client
  function client:onData(data)
    if data == "pieces" then
      for i = 1, 200 do self:send(string.format("%03d,", i)) end
    elseif data == "bye" then
      self:send("last words")
      self:disconnect()
    else
      self:send(data)
    end
  end
end
assert(server:start("127.0.0.1", 0))
"""

PIECES = b"".join(b"%03d," % i for i in range(1, 201))


async def test_many_sends_in_one_handler_arrive_whole_and_in_order(tmp_path: Path) -> None:
    async with running(tmp_path, SERVER) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"pieces")
        assert await receive_exactly(stream, len(PIECES)) == PIECES
        await stream.aclose()


async def test_send_then_disconnect_delivers_then_closes(tmp_path: Path) -> None:
    async with running(tmp_path, SERVER) as runtime:
        stream = await connect(tcp_port(runtime))
        await stream.send_all(b"bye")
        with trio.fail_after(5):
            assert await receive_until_closed(stream) == b"last words"


async def test_replies_to_a_burst_of_connections_all_arrive(tmp_path: Path) -> None:
    # Many connections ready at once make one batch; each gets its own reply.
    async with running(tmp_path, SERVER) as runtime:
        port = tcp_port(runtime)
        streams = [await connect(port) for _ in range(50)]
        await wait_until(lambda: runtime.statistics().tcp_connections == 50)
        for i, stream in enumerate(streams):
            await stream.send_all(b"message %d" % i)
        with trio.fail_after(5):
            for i, stream in enumerate(streams):
                expected = b"message %d" % i
                assert await receive_exactly(stream, len(expected)) == expected
        for stream in streams:
            await stream.aclose()


async def test_sends_outside_any_read_are_written_without_another_event(
    tmp_path: Path,
) -> None:
    # A timer and a chunk run by the executor (not a read) send: the bytes must leave
    # when the executor runs out of work, with nothing more arriving to push them.
    async with running(tmp_path, SERVER) as runtime:
        stream = await connect(tcp_port(runtime))
        await wait_until(lambda: runtime.statistics().tcp_connections == 1)
        await lua(runtime, "clients[1]:send('from a chunk')")
        assert await receive_exactly(stream, 12) == b"from a chunk"
        await lua(runtime, "mona:setTimer(function() clients[1]:send('from a timer') end, 10)")
        with trio.fail_after(5):
            assert await receive_exactly(stream, 12) == b"from a timer"
        await stream.aclose()
