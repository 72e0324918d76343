"""The WebSocket benchmark's server on websockets (asyncio), with the same JSON handling
as trio_mona's ws_site: ``["echo", value]`` answered ``[value]``, ``["say", text]``
sent to every client as ``["said", text]`` (bench/suite.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import websockets

CLIENTS: set[Any] = set()


async def serve(websocket: Any) -> None:
    CLIENTS.add(websocket)
    try:
        async for message in websocket:
            name, *args = json.loads(message)
            if name == "echo":
                await websocket.send(json.dumps(args))
            elif name == "say":
                websockets.broadcast(CLIENTS, json.dumps(["said", *args]))
    except websockets.ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(websocket)


async def main(port: int) -> None:
    async with websockets.serve(serve, "127.0.0.1", port, compression=None, max_queue=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
