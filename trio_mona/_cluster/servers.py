"""``mona.servers`` (docs/scaling.rst, "mona.servers"): the other processes of the
cluster, over Redis pub/sub.

Every process publishes a hello when it starts, a heartbeat every
:data:`HEARTBEAT_SECONDS` and a goodbye when it stops, on the cluster's channel; a
process it has not heard from for :data:`LOST_SECONDS` is lost. A hello is answered
on the newcomer's own channel, so it learns at once who is there. Calls travel on the
cluster's channel (``broadcast``) or the receiver's own (``send``): one message each,
the sender's description, the handler's name and the arguments as AMF (encoded in
Lua). Every message counts as a sign of life, and names its sender, so a process
declared lost while it was too busy to send its heartbeat is back with its next one.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any, Final

import attrs
import redis
import trio

from .._data.redis import CONNECT_SECONDS, REPLY_SECONDS, RedisStore
from .._data.redis_wire import RedisWire, WireError
from .._lua.bridge import LuaBridge, LuaTable

log = logging.getLogger("trio_mona")

HEARTBEAT_SECONDS: Final = 1.0
#: Silence after which a process is lost (onServerDisconnection).
LOST_SECONDS: Final = 3.5
#: Messages waiting to be published at most; past it a send fails (Redis is slow or down).
OUTBOX_MAX: Final = 4096
#: Bytes of arguments per call at most (Redis drops a subscriber whose unread messages
#: pass 32 MiB: a few large calls would cut every peer off).
MESSAGE_MAX: Final = 1 << 20

#: Runtimes of this process (a second one's address says which it is).
_RUNTIMES: Final = itertools.count(1)

_HELLO, _ANSWER, _BEAT, _BYE, _CALL = b"H", b"A", b"B", b"Q", b"C"


#: Join and leave lines logged one by one per second; past it, one line counts the rest.
LOG_LINES_PER_SECOND: Final = 10


class _Chatter:
    """INFO lines about peers, at most LOG_LINES_PER_SECOND a second (a flood of made-up
    peers logged one line each froze the process); the rest are counted."""

    def __init__(self) -> None:
        self._second = 0
        self._lines = 0
        self._skipped = 0

    def info(self, message: str, *args: object) -> None:
        second = int(trio.current_time())
        if second != self._second:
            if self._skipped:
                log.info("mona.servers: %d more joins and departures (not logged one by one)",
                         self._skipped)  # fmt: skip
            self._second, self._lines, self._skipped = second, 0, 0
        if self._lines < LOG_LINES_PER_SECOND:
            self._lines += 1
            log.info(message, *args)
        else:
            self._skipped += 1


@attrs.define
class Peer:
    address: str
    host: str
    pid: int
    heard: float


class Servers:
    """This process's side of ``mona.servers`` (the link hands it what it hears).

    *later* runs a function that calls Lua in the executor, without waiting for it;
    *root* gives the root application's globals and owner (None: not running).
    """

    def __init__(
        self,
        store: RedisStore,
        bridge: LuaBridge,
        later: Callable[[Callable[[], Any]], None],
        root: Callable[[], tuple[LuaTable, bytes] | None],
        max_peers: int = 1000,
    ) -> None:
        self._client = store.client
        #: The most peers tracked (trio_mona.max_servers); past it new ones are ignored.
        self._max_peers = max_peers
        self._capped = False
        self._chatter = _Chatter()
        self._wire = RedisWire(store.url, connect_timeout=CONNECT_SECONDS, timeout=REPLY_SECONDS)
        self._bridge = bridge
        self._later = later
        self._root = root
        self.id = store.origin
        prefix = f"trio_mona:{store.cluster}:".encode()
        self._everyone = prefix + b"servers"
        self._own_prefix = prefix + b"server:"
        #: The channels the link subscribes to for this.
        self.channels = [self._everyone, self._own_prefix + self.id]
        hostname, pid, nth = socket.gethostname(), os.getpid(), next(_RUNTIMES)
        address = f"{hostname}:{pid}" if nth == 1 else f"{hostname}:{pid}.{nth}"
        self._me = json.dumps({"address": address, "host": hostname, "pid": pid}).encode()
        self.peers: dict[bytes, Peer] = {}
        self._outbox, self._outgoing = trio.open_memory_channel[tuple[bytes, bytes]](OUTBOX_MAX)

    # -- what Lua calls --------------------------------------------------------------
    def send(self, target: bytes | None, handler: bytes, payload: bytes) -> bytes | None:
        """``server:send`` (to *target*) or ``mona.servers:broadcast`` (None): queued."""
        if not handler or b"\n" in handler:
            return b"the handler's name must be a non-empty line"
        if len(payload) > MESSAGE_MAX:
            return f"the arguments are {len(payload)} bytes, over {MESSAGE_MAX}".encode()
        if target is None and not self.peers:
            return None  # (nobody to call)
        channel = self._everyone if target is None else self._own_prefix + target
        try:
            call = b"%s%s%s\n%s\n%s" % (_CALL, self.id, self._me, handler, payload)
            self._outbox.send_nowait((channel, call))
        except trio.WouldBlock:
            return f"{OUTBOX_MAX} messages wait for Redis already (is it down?)".encode()
        return None

    # -- what the link hears -----------------------------------------------------------
    def heard(self, channel: bytes, message: bytes) -> None:
        kind, sender, body = message[:1], message[1:17], message[17:]
        if sender == self.id or len(sender) != 16:
            return
        if kind == _BYE:
            self._leave([sender], "stopped")
            return
        if kind == _CALL:  # (it carries who sends it: a peer lost while busy is back)
            parts = body.split(b"\n", 2)
            if len(parts) != 3:
                log.warning("mona.servers: a message that is not trio_mona's on %r", channel)
                return
            body, handler, payload = parts
        peer = self.peers.get(sender)
        if peer is not None:
            peer.heard = trio.current_time()
        elif len(self.peers) >= self._max_peers:
            if not self._capped:  # (once, until there is room again)
                self._capped = True
                log.warning(
                    "mona.servers: %d processes known already (trio_mona.max_servers): more "
                    "are ignored",
                    self._max_peers,
                )
            return
        else:
            try:
                info = json.loads(body)
                peer = Peer(str(info["address"]), str(info["host"]), int(info["pid"]), 0.0)
                (peer.address + peer.host).encode()  # (a lone surrogate has no UTF-8 form)
            except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
                log.warning("mona.servers: a message that is not trio_mona's on %r", channel)
                return
            peer.heard = trio.current_time()
            self.peers[sender] = peer
            self._later(lambda: self._joined(sender, peer))
        if kind == _HELLO:
            self._publish(self._own_prefix + sender, _ANSWER)
        elif kind == _CALL:
            self._later(lambda: self._call(sender, handler, payload))

    # -- the task ----------------------------------------------------------------------
    async def run(self) -> None:
        """Say hello, then publish what waits and a heartbeat every second; declare
        the silent lost."""
        self._publish(self._everyone, _HELLO)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publisher)
            while True:
                await trio.sleep(HEARTBEAT_SECONDS)
                self._publish(self._everyone, _BEAT)
                now = trio.current_time()
                lost = [s for s, peer in self.peers.items() if now - peer.heard > LOST_SECONDS]
                if lost:
                    self._leave(lost, f"not heard from for {LOST_SECONDS} s")

    def _publish(self, channel: bytes, kind: bytes) -> None:
        try:
            self._outbox.send_nowait((channel, kind + self.id + self._me))
        except trio.WouldBlock:
            pass  # (Redis is not taking them: the heartbeat is what is late)

    async def _publisher(self) -> None:
        """Publish in order, over a socket of its own (not behind the commits)."""
        wire = self._wire
        dropping = False
        try:
            async for channel, message in self._outgoing:
                try:
                    await wire.call(b"PUBLISH", channel, message)
                except WireError as exc:
                    if not dropping:
                        log.warning(
                            "mona.servers: messages are dropped until Redis is back: %s", exc
                        )
                    dropping = True
                else:
                    dropping = False
        finally:
            wire.close()

    def close(self) -> None:
        """Goodbye to the others (at shutdown: the loop may block on it)."""
        try:
            self._client.publish(self._everyone, _BYE + self.id)
        except redis.RedisError:
            pass

    # -- in the executor ---------------------------------------------------------------
    def _joined(self, sender: bytes, peer: Peer) -> Any:
        server = self._bridge.server_joined(
            sender, peer.address.encode(), peer.host.encode(), peer.pid
        )
        self._chatter.info("mona.servers: %s joined", peer.address)
        return self._event(b"onServerConnection", server)

    def _leave(self, senders: list[bytes], why: str) -> None:
        """*senders* left: out of ``mona.servers`` in one pass in Lua, then each one's
        onServerDisconnection (a thousand lost at once cost a thousand passes)."""
        peers = [(sender, self.peers.pop(sender, None)) for sender in senders]
        gone = [sender for sender, peer in peers if peer is not None]
        if not gone:
            return
        self._capped = False
        for _, peer in peers:
            if peer is not None:
                self._chatter.info("mona.servers: %s left (%s)", peer.address, why)

        def left() -> None:
            servers = self._bridge.servers_left(*gone)
            event = functools.partial(self._event, b"onServerDisconnection")
            for index in range(1, len(servers) + 1):
                self._later(functools.partial(event, servers[index]))

        self._later(left)

    def _event(self, name: bytes, server: LuaTable) -> Any:
        root = self._root()
        handler = root[0][name] if root is not None else None
        if handler is None:
            return None
        return self._bridge.call(handler, name, root[1], server)  # type: ignore[index]

    def _call(self, sender: bytes, handler: bytes, payload: bytes) -> Any:
        found = self._bridge.server_call(sender, handler, payload)
        function, why = found if isinstance(found, tuple) else (found, None)
        if function is None:
            log.warning(
                "mona.servers: a call of %s %s",
                handler.decode("utf-8", "replace"),
                why.decode("utf-8", "replace") if isinstance(why, bytes) else why,
            )
            return None
        root = self._root()
        return self._bridge.call(function, handler, root[1] if root else b"", None)
