"""The WebSocket benchmark's server on trio-websocket, with the same JSON handling as
trio_mona's ws_site (bench/suite.py)."""

from __future__ import annotations

import json
import sys
from typing import Any

import trio
from trio_websocket import ConnectionClosed, serve_websocket

CLIENTS: set[Any] = set()


async def serve(request: Any) -> None:
    websocket = await request.accept()
    CLIENTS.add(websocket)
    try:
        while True:
            name, *args = json.loads(await websocket.get_message())
            if name == "echo":
                await websocket.send_message(json.dumps(args))
            elif name == "say":
                said = json.dumps(["said", *args])
                for other in list(CLIENTS):
                    try:
                        await other.send_message(said)
                    except ConnectionClosed:
                        CLIENTS.discard(other)
    except ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(websocket)


async def main(port: int) -> None:
    await serve_websocket(serve, "127.0.0.1", port, ssl_context=None)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
