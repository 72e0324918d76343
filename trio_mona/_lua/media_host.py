"""The host functions of Lua's ``Publication``, ``Listener`` and ``QualityOfService``
objects (``_lua/media.lua``): their properties, read from the publications
(``_clients/publications.py``) and their QOS counts (``_clients/qos.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from .._clients.publications import Listener, Publication
from .._clients.qos import QualityOfService

#: Read through the Lua class's getter (and written into conversions' views).
PUBLICATION: Final[dict[bytes, Callable[[Publication], Any]]] = {
    b"name": lambda p: p.name.encode(),
    b"query": lambda p: p.query.encode(),
    b"lastTime": lambda p: p.last_time,
    b"running": lambda p: p.running,
    b"droppedFrames": lambda p: sum(listener.dropped for listener in p.listeners),
}
LISTENER: Final[dict[bytes, Callable[[Listener], Any]]] = {
    b"name": lambda listener: listener.name.encode(),
    b"query": lambda listener: listener.query.encode(),
    b"droppedFrames": lambda listener: listener.dropped,
    b"frames": lambda listener: listener.frames,
    b"receiveAudio": lambda listener: listener.audio,
    b"receiveVideo": lambda listener: listener.video,
}
#: Read by media.lua to make the members that are Lua objects or tables.
_MORE: Final[dict[bytes, Callable[[Any], Any]]] = {
    b"listeners": lambda p: len(p.listeners),
    b"properties": lambda p: p.metadata,
    b"client": lambda listener: listener.client,
    b"publication": lambda listener: (
        listener.publication.name.encode() if listener.publication else None
    ),
    b"audioQOS": lambda subject: subject.qos[8],
    b"videoQOS": lambda subject: subject.qos[9],
    b"dataQOS": lambda subject: subject.qos[18],
}
QOS: Final = [b"lostRate", b"byteRate", b"latency", b"lastSendingTime"]


def media_get(handle: Publication | Listener, name: bytes) -> Any:
    more = _MORE.get(name)
    if more is not None:
        return more(handle)
    if isinstance(handle, Publication):
        return PUBLICATION[name](handle)
    return LISTENER[name](handle)


def media_set(listener: Listener, name: bytes, value: bool) -> None:
    """``listener.receiveAudio = false`` and the like."""
    listener.receive(name == b"receiveVideo", bool(value))


def qos_get(qos: QualityOfService, name: bytes) -> float:
    now = time.time()
    if name == b"byteRate":
        return qos.rates(now)[0]
    if name == b"lostRate":
        return qos.rates(now)[1]
    if name == b"lastSendingTime":
        return int(qos.last_sending * 1000)
    listener = qos.listener
    if not isinstance(listener, Listener):
        return qos.latency
    # (a listener's frames wait behind what its connection has queued)
    rate = sum(each.rates(now)[0] for each in listener.qos.values())
    return listener.receiver.queued() * 1000 / rate if rate else 0.0


def property_names() -> dict[str, list[bytes]]:
    return {"Publication": list(PUBLICATION), "Listener": list(LISTENER), "QualityOfService": QOS}


def media_handler(publication: Publication, name: bytes, defined: bool) -> None:
    """The application set (or removed) a media event of *publication*."""
    if defined:
        publication.handlers.add(name.decode())
    else:
        publication.handlers.discard(name.decode())
