"""Baseline: a plain Trio echo server, TCP (serve_tcp, receive_some/send_all) and UDP."""

from __future__ import annotations

import socket
import sys

import trio


async def echo(stream: trio.SocketStream) -> None:
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def udp_echo(port: int) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", port))
    while True:
        data, sender = await sock.recvfrom(65536)
        await sock.sendto(data, sender)


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(udp_echo, port)
        await trio.serve_tcp(echo, port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
