"""Reads of many connections that arrive together reach Lua in one call
(docs/performance.rst, "Several events per Lua call"): each connection still sees its
bytes in order, the rest rule holds, a handler that waits holds back only its own
connection, and one that fails disturbs no other."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio
import trio.lowlevel

import trio_mona

from .helpers import lua, lua_until, tcp_port, write_app

pytestmark = pytest.mark.trio

#: A line server: each complete line comes back with the connection's count of lines
#: so far; "wait" suspends its handler (an async host function); "fail" raises.
LINES = """
server = mona:createTCPServer()
function server:onConnection(client)
  local lines = 0
  function client:onData(data)
    local start = 1
    while true do
      local stop = data:find("\\n", start, true)
      if stop == nil then return #data - start + 1 end -- the rest, for next time
      local line = data:sub(start, stop - 1)
      start = stop + 1
      lines = lines + 1
      if line == "wait" then mona.host.pause() end
      if line == "fail" then error("asked to fail") end
      self:send(line .. "=" .. lines .. "\\n")
    end
  end
end
server:start("127.0.0.1", 0)
"""


async def pause() -> None:
    await trio.sleep(0.02)


async def receive_lines(sock: socket.socket, count: int, limit: float = 5.0) -> list[str]:
    """*count* lines from a non-blocking socket."""
    received = b""
    with trio.fail_after(limit):
        while received.count(b"\n") < count:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            assert chunk, f"closed after {received!r}"
            received += chunk
    return received.decode().splitlines()


async def test_many_connections_in_one_batch_keep_their_order(tmp_path: Path, engine: str) -> None:
    folder = write_app(tmp_path / "apps", LINES)
    async with trio_mona.open_runtime(
        folder, engine=engine, data=":memory:", expose={"pause": pause}
    ) as runtime:
        port = tcp_port(runtime)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
        for sock in clients:
            sock.setblocking(False)
        await trio.sleep(0.1)  # every onConnection has run
        # Each round, every client writes before the runtime runs again, so their
        # reads reach the executor together. Some split a line (the rest rule), some
        # wait in the middle of their handler, one fails.
        plans = [
            ["a\nb\n", "c\n"],
            ["wait\nd\n", "e\n"],
            ["par", "tial\nf\n"],
            ["g\nwa", "it\nh\n"],
        ]
        expected: dict[int, list[str]] = {i: [] for i in range(len(clients))}
        for round_ in range(2):
            for i, sock in enumerate(clients):
                sock.send(plans[i % len(plans)][round_].encode())
            await trio.lowlevel.checkpoint()
        for i in range(len(clients)):
            lines = "".join(plans[i % len(plans)]).splitlines()
            expected[i] = [f"{line}={n}" for n, line in enumerate(lines, 1)]
        for i, sock in enumerate(clients):
            assert await receive_lines(sock, len(expected[i])) == expected[i], i
        # A handler that fails in the middle of a batch: the others are answered.
        for i, sock in enumerate(clients):
            sock.send(b"fail\n" if i == 7 else b"x\n")
        for i, sock in enumerate(clients):
            if i != 7:
                count = len(expected[i]) + 1
                assert await receive_lines(sock, 1) == [f"x={count}"], i
        for sock in clients:
            sock.close()


KICK = """
clients, kicked, late = {}, {}, 0
server = mona:createTCPServer()
function server:onConnection(client)
  clients[#clients + 1] = client
  function client:onData(data)
    if kicked[self] then late = late + 1 end
    if data == "kick" then
      for _, other in ipairs(clients) do
        if other ~= self then kicked[other] = true; other:disconnect() end
      end
    end
  end
end
server:start("127.0.0.1", 0)
"""


async def test_a_connection_disconnected_by_another_handler_of_the_batch_gets_no_more_data(
    tmp_path: Path, engine: str
) -> None:
    folder = write_app(tmp_path / "apps", KICK)
    async with trio_mona.open_runtime(folder, engine=engine, data=":memory:") as runtime:
        port = tcp_port(runtime)
        for round_ in range(4):
            await lua(runtime, "clients, kicked = {}, {}")
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
            await lua_until(runtime, "return #clients == 12")  # every onConnection has run
            kicker = (5 * round_) % len(clients)
            for i, sock in enumerate(clients):  # (all before the runtime reads any)
                sock.send(b"kick" if i == kicker else b"data")
            await trio.sleep(0.2)
            for sock in clients:
                sock.close()
        assert await lua(runtime, "return late") == 0
