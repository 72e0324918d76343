"""The runtime's subscription in Redis (docs/scaling.rst): the other processes'
commits into the local copy of ``data``, the messages of ``mona.servers``, and the
reconnection when Redis is lost.

The subscription is read in a worker thread (redis-py's blocking client); what it
reads runs in the executor, in the order Redis published it, so that a commit is
weighed against the local changes made up to that moment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Final, Protocol

import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._core.events import Call, Event
from .._core.levels import NOTE
from .._data.persistence import LOAD_CHUNK
from .._data.redis import (
    CONNECT_SECONDS,
    REPLY_SECONDS,
    RESYNC,
    RedisStore,
    RemoteChanges,
    redis_error,
)
from .._data.store import StoreError, Value
from .._lua.bridge import LuaBridge

log = logging.getLogger("trio_mona")

#: Seconds a read of the subscription waits before it looks at the link's state.
POLL_SECONDS: Final = 0.5
#: Seconds between attempts to reach a lost Redis: doubling from the first to the last.
RETRY_FIRST: Final = 0.1
RETRY_LAST: Final = 5.0
#: Messages read from the subscription at most per hop to the loop.
READ_MAX: Final = 256


class Listener(Protocol):
    """What hears the messages on the other channels (``mona.servers``)."""

    channels: list[bytes]

    def heard(self, channel: bytes, message: bytes) -> None: ...


class RedisLink:
    """Follows *store*'s channels for the runtime; :meth:`run` until cancelled."""

    def __init__(
        self,
        store: RedisStore,
        bridge: LuaBridge,
        post: Callable[[Event], None],
        listener: Listener | None = None,
    ) -> None:
        self._store = store
        self._bridge = bridge
        self._post = post
        self._listener = listener
        self._remote = RemoteChanges(store)
        self._channels = [store.channel, *(listener.channels if listener else [])]
        # (a client of its own that never reconnects by itself: a subscription that
        # broke may have missed commits, so the link reconnects and reloads)
        self._client = redis.Redis.from_url(
            store.url,
            socket_connect_timeout=CONNECT_SECONDS,
            socket_timeout=REPLY_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self._pubsub = self._subscribe()
        #: A commit was missed (a gap in the numbers): reload the tree.
        self._reload_due = False

    def _subscribe(self) -> redis.client.PubSub:
        """(Before the tree is read: a commit made meanwhile is then heard, not lost.)"""
        # (typed in some redis-py releases, untyped in others: the same code for both)
        client: Any = self._client
        pubsub: redis.client.PubSub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(*self._channels)
        except redis.RedisError as exc:
            pubsub.close()
            raise StoreError(f"{self._store.name}: cannot subscribe: {redis_error(exc)}") from None
        return pubsub

    async def run(self) -> None:
        wait = RETRY_FIRST
        while True:
            try:
                await self._follow()
            except (redis.RedisError, StoreError, OSError) as exc:
                reason = f"{self._store.name}: {redis_error(exc)}"
            else:
                reason = f"{self._store.name}: lost"
            self._lost(reason)
            while True:
                await trio.sleep(wait)
                wait = min(wait * 2, RETRY_LAST)
                try:
                    await self._reconnect()
                except (redis.RedisError, StoreError, OSError):
                    continue
                wait = RETRY_FIRST
                break

    async def _follow(self) -> None:
        """Read the subscription until it breaks, or a commit fails (the store is down)."""
        while self._store.down is None:
            messages = await trio.to_thread.run_sync(self._read, abandon_on_cancel=True)
            for channel, message in messages:
                if channel == self._store.channel:
                    self._post(Call(partial(self._commit_heard, message)))
                elif self._listener is not None:
                    try:
                        self._listener.heard(channel, message)
                    except Exception:  # (contained: the subscription goes on)
                        log.exception("internal error on a message on %r", channel)
            if self._reload_due:
                await self._reload()

    def _read(self) -> list[tuple[bytes, bytes]]:
        """(A worker thread.) What the subscription holds, waiting up to POLL_SECONDS."""
        pubsub = self._pubsub
        messages: list[tuple[bytes, bytes]] = []
        message = pubsub.get_message(timeout=POLL_SECONDS)
        while message is not None and len(messages) < READ_MAX:
            if message["type"] == "message":
                messages.append((message["channel"], message["data"]))
            message = pubsub.get_message(timeout=0)
        return messages

    def _commit_heard(self, message: bytes) -> None:
        """(The executor.) Another process's commit into the local copy."""
        changes = self._remote.read(message)
        if changes is RESYNC:
            self._reload_due = True
        elif changes:
            apply = self._bridge.data_apply
            for at in range(0, len(changes), 3 * LOAD_CHUNK):
                apply(*changes[at : at + 3 * LOAD_CHUNK])

    def _lost(self, reason: str) -> None:
        if self._store.down is None:
            log.error(
                "data: Redis is unreachable (%s): assignments fail until it is back; reconnecting",
                reason,
            )
        self.refuse(reason)

    def refuse(self, reason: str) -> None:
        """Assignments fail with *reason* until Redis is back (a commit failed)."""
        self._store.down = reason
        self._bridge.data_state[b"down"] = f"Redis is unreachable ({reason})".encode()

    async def _reconnect(self) -> None:
        """Subscribe again, commit what waits, then reload the tree."""
        old, self._pubsub = self._pubsub, await trio.to_thread.run_sync(self._subscribe)
        await trio.to_thread.run_sync(old.close)
        store = self._store
        store.drop_connections()
        if store.pending():
            await store.commit_async()  # (raises StoreError: still down)
        await self._reload()
        store.down = None
        self._bridge.data_state[b"down"] = None
        log.log(NOTE, "data: Redis is back (%s): the tree is reloaded", store.name)

    async def _reload(self) -> None:
        """Replace the local copy with what Redis holds (the local changes that are
        newer stay)."""
        self._reload_due = False
        number, entries = await trio.to_thread.run_sync(self._store.snapshot)
        done = trio.Event()
        self._post(Call(lambda: self._replace(number, entries, done)))
        await done.wait()

    def _replace(self, number: int, entries: list[tuple[bytes, Value]], done: trio.Event) -> None:
        """(The executor.)"""
        store = self._store
        try:
            newer = (path for path, n in store.recent.items() if n > number)
            kept = sorted({*self._remote.kept(), *newer})
            self._bridge.data_reload(*kept)
            load = self._bridge.data_load
            for at in range(0, len(entries), LOAD_CHUNK):
                load(*(item for entry in entries[at : at + LOAD_CHUNK] for item in entry))
            self._bridge.data_reloaded()
            store.seen = max(store.seen, number)
        finally:
            done.set()

    @property
    def commits_heard(self) -> int:
        return self._remote.heard

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()
