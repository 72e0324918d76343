"""The ``data`` tree in Redis, shared by every worker and host pointed at it
(docs/lua/data.rst, "Redis").

Redis holds the tree as a hash (path → value: ``S`` and the bytes, ``T``, ``F``, or
``N`` for a table) and a sorted set of the paths, so that a subtree is one range. A
commit is one script run by Redis atomically: it applies the changes, keeps the tree
whole (a value under a missing table makes the table, as in Lua), numbers the commit
(``INCR``) and publishes it, so every worker sees every commit in the one order Redis
made them. :class:`RemoteChanges` turns the commits of others into changes of the
local copy, without undoing the worker's own newer ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Final
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .changes import Changes
from .redis_wire import RedisWire, WireError
from .store import SEPARATOR, StoreError, Value, parent_path

#: The script every commit runs (KEYS: the hash, the paths, the commit counter; ARGV:
#: the channel, the origin, the changes as ``Changes.pack`` writes them).
_COMMIT: Final = r"""
local data, paths, counter = KEYS[1], KEYS[2], KEYS[3]
local changes = ARGV[3]
local SEP, unpack_field = "\0", struct.unpack
local tables = {} -- paths known to hold a table in this commit
local function drop_below(p)
  local first, last = "[" .. p .. SEP, "(" .. p .. "\1"
  local below = redis.call("ZRANGEBYLEX", paths, first, last)
  for i = 1, #below, 1000 do
    redis.call("HDEL", data, unpack(below, i, math.min(i + 999, #below)))
  end
  if #below > 0 then redis.call("ZREMRANGEBYLEX", paths, first, last) end
end
local function make_table(p) -- (an existing table keeps what it holds)
  if tables[p] then return end
  if redis.call("HGET", data, p) ~= "N" then
    if redis.call("HSET", data, p, "N") == 1 then redis.call("ZADD", paths, 0, p) end
  end
  tables[p] = true
end
local function make_tables_above(p)
  local at = 1
  while true do
    local i = string.find(p, SEP, at, true)
    if i == nil then return end
    make_table(string.sub(p, 1, i - 1))
    at = i + 1
  end
end
local at, size = 1, #changes
while at <= size do
  local kind = string.sub(changes, at, at)
  local p, v
  p, at = unpack_field("<i4", changes, at + 1)
  p, at = string.sub(changes, at, at + p - 1), at + p
  if kind == "S" then
    v, at = unpack_field("<i4", changes, at)
    v, at = "S" .. string.sub(changes, at, at + v - 1), at + v
  end
  if kind == "D" then
    tables[p] = nil
    drop_below(p)
    redis.call("HDEL", data, p)
    redis.call("ZREM", paths, p)
    for known in pairs(tables) do
      if string.sub(known, 1, #p + 1) == p .. SEP then tables[known] = nil end
    end
  else
    make_tables_above(p)
    if kind == "N" then
      make_table(p)
    else
      tables[p] = nil
      local old = redis.call("HGET", data, p)
      if old == "N" then drop_below(p) end
      if redis.call("HSET", data, p, v or kind) == 1 then redis.call("ZADD", paths, 0, p) end
    end
  end
end
local n = redis.call("INCR", counter)
redis.call("PUBLISH", ARGV[1], n .. "\n" .. ARGV[2] .. changes)
return n
"""

#: Packed bytes per commit at most, about (a larger batch is several commits).
COMMIT_BYTES: Final = 1 << 20
#: Seconds to connect to Redis, and to wait for one of its replies.
CONNECT_SECONDS: Final = 2.0
REPLY_SECONDS: Final = 5.0

_DECODED: Final[dict[bytes, Value]] = {b"T": True, b"F": False, b"N": None}


def is_redis_url(setting: str) -> bool:
    return setting.startswith(("redis://", "rediss://", "unix://"))


def shown_url(url: str) -> str:
    """*url* without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def redis_error(exc: BaseException) -> str:
    """What went wrong talking to Redis, in one line."""
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text.splitlines()[0]


class RedisStore:
    """A :class:`~trio_mona._data.store.Store` in the Redis at *url*, under the keys
    of *cluster*; :class:`RemoteChanges` weighs the other processes' commits against
    what it holds.

    Raises:
      StoreError: Redis cannot be reached or refuses us (the message says which).
    """

    def __init__(self, url: str, cluster: str) -> None:
        self.name = shown_url(url)
        self.url = url
        self.cluster = cluster
        prefix = f"trio_mona:{cluster}:"
        self._keys = [f"{prefix}data", f"{prefix}paths", f"{prefix}commits"]
        self._key_bytes = [key.encode() for key in self._keys]
        #: Where commits are published.
        self.channel = f"{prefix}data".encode()
        #: This process's commits, in what it publishes (it skips its own).
        self.origin = os.urandom(8).hex().encode()
        try:
            # (one retry: a pooled connection that Redis closed is tried again on a new
            # one; more would hold the executor, which awaits a commit, for seconds)
            self.client = redis.Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_SECONDS,
                socket_timeout=REPLY_SECONDS,
                retry=Retry(NoBackoff(), 1),
            )
            self.client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise StoreError(f"{self.name}: cannot reach Redis: {redis_error(exc)}") from None
        self._commit_script = self.client.register_script(_COMMIT)
        self._commit_sha = hashlib.sha1(_COMMIT.encode()).hexdigest().encode()
        self._wire = RedisWire(url, connect_timeout=CONNECT_SECONDS, timeout=REPLY_SECONDS)
        self._changes = Changes()
        #: Paths whose value this process changed and did not commit yet.
        self._dirty: set[bytes] = set()
        #: Paths of this process's commits that others may not have seen yet, with the
        #: commit's number (see RemoteChanges).
        self.recent: dict[bytes, int] = {}
        #: The number of the last commit the local copy holds.
        self.seen = 0
        #: Why assignments are refused (Redis is unreachable), or None.
        self.down: str | None = None

    def snapshot(self) -> tuple[int, list[tuple[bytes, Value]]]:
        """The whole tree as one transaction reads it, each table before what it
        holds, and the number of the last commit in it.

        Raises:
          StoreError: Redis is unreachable, or holds something that is not a tree.
        """
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.get(self._keys[2])
                pipe.hgetall(self._keys[0])
                counter, stored = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"{self.name}: cannot read data: {redis_error(exc)}") from None
        entries: list[tuple[bytes, Value]] = []
        tables = {b""}
        for path in sorted(stored):
            raw = stored[path]
            value = _DECODED[raw] if raw in _DECODED else raw[1:]
            if parent_path(path) not in tables or not (raw in _DECODED or raw[:1] == b"S"):
                raise StoreError(f"{self.name}: {self._keys[0]} is not trio_mona's data")
            if value is None:
                tables.add(path)
            entries.append((path, value))
        return int(counter or 0), entries

    def load(self) -> Iterator[tuple[bytes, Value]]:
        self.seen, entries = self.snapshot()
        return iter(entries)

    def put(self, path: bytes, value: Value) -> None:
        self._changes.put(path, value)
        if value is not None:  # (a table made keeps what Redis has: nothing to guard)
            self._dirty.add(path)

    def delete(self, path: bytes) -> None:
        self._changes.delete(path)
        self._dirty.add(path)

    def pending(self) -> bool:
        return len(self._changes) > 0

    def commit(self) -> None:
        """Commit now, blocking the loop for a round trip to Redis (a write path that
        cannot wait for the executor's batch to end)."""
        if self.pending():
            changes, dirty = self._take()
            for at, part in enumerate(parts := self._parts(changes)):
                self._committed(self._send(part), parts[at:], dirty)

    async def commit_async(self) -> None:
        """Commit over a Trio socket: the loop goes on while Redis answers."""
        if not self.pending():
            return
        changes, dirty = self._take()
        for at, part in enumerate(parts := self._parts(changes)):
            self._committed(await self._send_async(part), parts[at:], dirty)

    def _parts(self, changes: Changes) -> list[tuple[Changes, bytes]]:
        """*changes* packed, in commits of at most about COMMIT_BYTES each (Redis cuts
        off a subscriber that has 32 MiB to read)."""
        packed = changes.pack()
        if len(packed) <= COMMIT_BYTES:
            return [(changes, packed)]
        return [(part, part.pack()) for part in changes.split(COMMIT_BYTES)]

    def _take(self) -> tuple[Changes, set[bytes]]:
        taken = (self._changes, self._dirty)
        self._changes, self._dirty = Changes(), set()
        return taken

    async def _send_async(self, part: tuple[Changes, bytes]) -> int | StoreError:
        args = (b"3", *self._key_bytes, self.channel, self.origin, part[1])
        try:
            try:
                reply = await self._wire.call(b"EVALSHA", self._commit_sha, *args)
            except WireError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                reply = await self._wire.call(b"EVAL", _COMMIT.encode(), *args)
        except WireError as exc:
            return StoreError(f"{self.name}: cannot commit: {exc}")
        if not isinstance(reply, int):
            return StoreError(f"{self.name}: cannot commit: Redis answered {reply!r}")
        return reply

    def _send(self, part: tuple[Changes, bytes]) -> int | StoreError:
        """Run the commit script through redis-py (on the loop)."""
        try:
            return int(
                self._commit_script(keys=self._keys, args=[self.channel, self.origin, part[1]])
            )
        except redis.RedisError as exc:
            return StoreError(f"{self.name}: cannot commit: {redis_error(exc)}")

    def _committed(
        self,
        number: int | StoreError,
        parts: list[tuple[Changes, bytes]],
        dirty: set[bytes],
    ) -> None:
        """The first of *parts* has the commit *number*, or failed: it and the rest are
        pending again, ahead of what came since, and the error is raised."""
        if isinstance(number, StoreError):
            pending = Changes()
            for part, _ in parts:
                pending.extend(part)
            pending.extend(self._changes)
            self._changes = pending
            self._dirty |= dirty
            raise number
        recent = self.recent
        for path in parts[0][0].paths():
            if path in dirty:
                recent[path] = number

    def drop_connections(self) -> None:
        """Forget every connection to Redis (it was lost: one left open may be dead, and
        a commit sent over it would fail); the next call makes a new one."""
        self._wire.close()
        self.client.connection_pool.disconnect()

    def close(self) -> None:
        """Commit what is pending (unless Redis is known to be down) and disconnect.

        Raises:
          StoreError: changes that never reached Redis are lost.
        """
        try:
            if self.down is None:
                self.commit()
            elif self.pending():
                raise StoreError(f"{len(self._changes)} changes never reached Redis ({self.down})")
        finally:
            self._wire.close()
            self.client.close()


#: What :meth:`RemoteChanges.read` returns when a commit was missed: reload the tree.
RESYNC: Final = "resync"


class RemoteChanges:
    """Another process's commit, as the changes of the local copy (``_lua/data.lua``'s
    ``data_apply``: op, path, value triples).

    The copy follows Redis's order, except where this process changed a value that
    Redis has not numbered yet (pending) or numbered after the commit at hand: there
    the local change is the later one, so the commit's change is skipped at that path
    and below, and kept values under a subtree it replaces are put back ("k").
    """

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        #: Other processes' commits read (statistics: ``data_commits_heard``).
        self.heard = 0

    def read(self, message: bytes) -> list[object] | str | None:
        """The changes to apply (None: nothing to do; RESYNC: a commit was missed)."""
        store = self._store
        head, _, rest = message.partition(b"\n")
        try:
            number = int(head)
        except ValueError:
            return None
        origin, payload = rest[:16], rest[16:]
        if number <= store.seen:
            return None
        if number != store.seen + 1:
            return RESYNC
        store.seen = number
        recent = store.recent
        if recent:
            store.recent = {path: n for path, n in recent.items() if n > number}
        if origin == store.origin:
            return None
        self.heard += 1
        try:
            changes = Changes.unpack(payload)
        except StoreError:
            return RESYNC
        out: list[object] = []
        for puts, deleted in changes.runs:
            for path, value in puts.items():
                self._change(out, b"p", path, value, number)
            for path in deleted:
                self._change(out, b"d", path, None, number)
        return out

    def _newer(self, path: bytes, number: int) -> bool:
        store = self._store
        return path in store._dirty or store.recent.get(path, 0) > number

    def _change(self, out: list[object], op: bytes, path: bytes, value: Value, number: int) -> None:
        above = path
        while above:
            if self._newer(above, number):
                return
            above = parent_path(above)
        if op == b"d" or value is not None:
            prefix = path + SEPARATOR
            store = self._store
            for kept in {*store._dirty, *store.recent}:
                if kept.startswith(prefix) and self._newer(kept, number):
                    out += (b"k", kept, None)
        out += (op, path, value)

    def kept(self) -> list[bytes]:
        """The paths a reload must put back as the local copy has them."""
        return sorted(self._store._dirty)
