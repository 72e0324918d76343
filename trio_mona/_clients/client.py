"""The Python side of a Lua ``client`` object (docs/clients/http.rst).

A client is what an application sees of a browser or player: one per connection
while the URL's path and query stay the same (a request with another path or query
makes a new one on the same connection). It knows which session carries it, which
application it belongs to, and when it last heard from its peer; Lua keeps everything
else (properties, parameters, its writer) on its side.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

import attrs

from .._core.events import LuaObject


class Carrier(Protocol):
    """The session that carries a client, as the client sees it."""

    @property
    def client(self) -> object: ...

    def close(self) -> None: ...


@attrs.define(eq=False, repr=False)
class Client:
    """One client (see the module docstring)."""

    session: Carrier
    #: The application's path (``""``: the root), and the raw query it came with.
    app: str
    query: str
    protocol: str = "HTTP"
    raw_id: bytes = attrs.field(factory=lambda: os.urandom(32))
    #: Its Lua object while connected (None once disconnected: no cycle outlives it).
    table: LuaObject | None = None
    last_reception: float = attrs.field(factory=time.time)
    #: Seconds its connection may stay silent, and a request wait for an answer, as
    #: ``onConnection`` set them (None: ``[HTTP] timeout``).
    timeout: float | None = None
    #: Its application is unloading: it disconnects with no more events.
    silent: bool = False

    def __repr__(self) -> str:
        return f"<Client {self.protocol} {self.app or '/'} {self.raw_id.hex()[:8]}>"

    @property
    def id(self) -> str:
        return self.raw_id.hex()

    @property
    def connected(self) -> bool:
        """Whether its session still serves it (a new path or query, or the end of the
        connection, disconnects it)."""
        return self.session.client is self and self.table is not None
