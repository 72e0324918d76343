"""The host functions of Lua's ``Publication`` and ``Listener`` objects
(``_lua/media.lua``): their properties, read from the publications
(``_clients/publications.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .._clients.publications import Listener, Publication

PUBLICATION: Final[dict[bytes, Callable[[Publication], Any]]] = {
    b"name": lambda p: p.name.encode(),
    b"query": lambda p: p.query.encode(),
    b"lastTime": lambda p: p.last_time,
    b"running": lambda p: p.running,
    b"listeners": lambda p: len(p.listeners),
    b"droppedFrames": lambda p: sum(listener.dropped for listener in p.listeners),
}
LISTENER: Final[dict[bytes, Callable[[Listener], Any]]] = {
    b"name": lambda listener: listener.name.encode(),
    b"query": lambda listener: listener.query.encode(),
    b"droppedFrames": lambda listener: listener.dropped,
    b"frames": lambda listener: listener.frames,
}


def media_get(handle: Publication | Listener, name: bytes) -> Any:
    if isinstance(handle, Publication):
        return PUBLICATION[name](handle)
    return LISTENER[name](handle)


def property_names() -> dict[str, list[bytes]]:
    return {"Publication": list(PUBLICATION), "Listener": list(LISTENER)}


def media_handler(publication: Publication, name: bytes, defined: bool) -> None:
    """The application set (or removed) a media event of *publication*."""
    if defined:
        publication.handlers.add(name.decode())
    else:
        publication.handlers.discard(name.decode())
