"""One runtime's membership of its cluster (docs/scaling.rst): the link that follows
Redis and ``mona.servers``, started when ``data`` is on Redis."""

from __future__ import annotations

from collections.abc import Callable

import trio

from .._apps import Applications
from .._core.events import Event
from .._data.persistence import Persistence
from .._data.redis import RedisStore
from .._executor import Executor
from .._lua.bridge import LuaBridge, LuaTable
from .link import RedisLink
from .servers import Servers


class Cluster:
    """Made before the tree is read from *store* (the link subscribes first).

    Raises:
      StoreError: Redis refuses the subscription.
    """

    def __init__(
        self,
        store: RedisStore,
        persistence: Persistence,
        bridge: LuaBridge,
        executor: Executor,
        post: Callable[[Event], None],
        applications: Applications,
        max_peers: int = 1000,
    ) -> None:
        def root() -> tuple[LuaTable, bytes] | None:
            app = applications.root
            return None if app.env is None else (app.env, app.owner)

        self.servers = Servers(store, bridge, executor.call_soon, root, max_peers)
        self._link = RedisLink(store, bridge, post, self.servers)
        persistence.on_failure = self._link.refuse
        bridge.data_state[b"shared"] = True

    @property
    def commits_heard(self) -> int:
        """Other processes' commits followed into the local copy of ``data``."""
        return self._link.commits_heard

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._link.run)
            nursery.start_soon(self.servers.run)

    def close(self) -> None:
        self.servers.close()
        self._link.close()


def send_to_servers(
    cluster: Cluster | None, target: bytes | None, handler: bytes, payload: bytes
) -> bytes | None:
    """``server:send`` and ``mona.servers:broadcast`` (without a cluster nobody hears)."""
    if cluster is None:
        return None if target is None else b"no cluster (data is not on Redis)"
    return cluster.servers.send(target, handler, payload)
