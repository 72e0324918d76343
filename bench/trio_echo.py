"""The baseline: a plain Trio echo server (serve_tcp, receive_some/send_all)."""

from __future__ import annotations

import functools
import sys

import trio


async def echo(stream: trio.SocketStream) -> None:
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


if __name__ == "__main__":
    trio.run(functools.partial(trio.serve_tcp, echo, int(sys.argv[1]), host="127.0.0.1"))
