"""Live publications and their listeners: the media fan-out (docs/clients/rtmp.rst).

A publication is a name (global, as in MonaServer) with a publisher, the stream's
metadata and codec headers (AVC sequence header, AAC config), kept so that a listener
that comes later gets them first; then it starts at the next keyframe, its timestamps
from 0. A listener that falls behind never slows the publisher or the others: while its
connection's queue is over the soft limit its frames are dropped (counted) until the
next keyframe, past the hard limit its connection is closed. Players that come before
the publisher wait for it.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from .._proto.rtmp_chunks import AUDIO, DATA_AMF0, VIDEO


class Receiver(Protocol):
    """A listener's connection, as the fan-out sees it (an RTMP player, an HTTP-FLV
    one)."""

    def deliver(self, stream: int, type_id: int, timestamp: int, payload: bytes) -> bool:
        """Send one frame now; False when it was dropped (the queue is long)."""

    def published(self, listener: Listener) -> None:
        """The publication *listener* waited for has started."""

    def unpublished(self, listener: Listener) -> None:
        """*listener*'s publication has stopped (it waits for the next one)."""


@attrs.define(eq=False)
class Listener:
    receiver: Receiver
    stream: int
    name: str
    #: The query of the name it played (``cam?quality=low``: ``quality=low``).
    query: str = ""
    #: It got a keyframe: it receives every frame from now on.
    started: bool = False
    #: The publication's timestamp its 0 is.
    base: int = 0
    dropped: int = 0
    frames: int = 0
    table: object | None = None
    #: What it receives (``receiveAudio``/``receiveVideo``).
    audio: bool = True
    video: bool = True


@attrs.define(eq=False)
class Publication:
    name: str
    publisher: object
    #: The query of the name it was published under (``cam?token=x``: ``token=x``).
    query: str = ""
    metadata: bytes | None = None
    video_header: bytes | None = None
    audio_header: bytes | None = None
    listeners: list[Listener] = attrs.field(factory=list)
    last_time: int = 0
    frames: int = 0
    #: Its publisher has not stopped.
    running: bool = True
    #: Its Lua object, once made (the client events' argument).
    table: object | None = None
    #: The media events its Lua object defines (onAudio, onVideo, onData): only those
    #: frames cross into Lua.
    handlers: set[str] = attrs.field(factory=set)


def is_keyframe(payload: bytes) -> bool:
    return len(payload) > 0 and payload[0] >> 4 == 1


def is_video_header(payload: bytes) -> bool:
    return len(payload) > 1 and payload[0] & 0x0F == 7 and payload[1] == 0


def is_audio_header(payload: bytes) -> bool:
    return len(payload) > 1 and payload[0] >> 4 == 10 and payload[1] == 0


class Publications:
    """Every publication of the runtime, by name."""

    def __init__(self) -> None:
        self.by_name: dict[str, Publication] = {}
        #: Listeners waiting for a publication of their name.
        self.waiting: dict[str, list[Listener]] = {}

    def register(self, publication: Publication) -> bool:
        """*publication* starts, with the listeners that waited for its name; False:
        the name is in use."""
        if publication.name in self.by_name:
            return False
        self.by_name[publication.name] = publication
        publication.listeners = self.waiting.pop(publication.name, [])
        return True

    def unpublish(self, publication: Publication) -> list[Listener]:
        """The publication ends; its listeners wait for the next one of its name."""
        publication.running = False
        if self.by_name.get(publication.name) is publication:
            del self.by_name[publication.name]
        listeners, publication.listeners = publication.listeners, []
        for listener in listeners:
            listener.started = False
        if listeners:
            self.waiting.setdefault(publication.name, []).extend(listeners)
        return listeners

    def play(self, listener: Listener) -> Publication | None:
        """Add *listener*: to its publication (which sends it the headers it keeps), or
        to those waiting for it (None)."""
        publication = self.by_name.get(listener.name)
        if publication is None:
            self.waiting.setdefault(listener.name, []).append(listener)
            return None
        publication.listeners.append(listener)
        self._headers(publication, listener)
        return publication

    def stop(self, listener: Listener) -> None:
        publication = self.by_name.get(listener.name)
        if publication is not None and listener in publication.listeners:
            publication.listeners.remove(listener)
        waiting = self.waiting.get(listener.name)
        if waiting is not None and listener in waiting:
            waiting.remove(listener)
            if not waiting:
                del self.waiting[listener.name]

    def media(self, publication: Publication, type_id: int, timestamp: int, payload: bytes) -> None:
        """A frame (or data) from the publisher: kept if it is a header, then to every
        listener that can take it."""
        publication.last_time = timestamp
        publication.frames += 1
        if type_id == VIDEO and is_video_header(payload):
            publication.video_header = payload
            for listener in publication.listeners:
                listener.receiver.deliver(listener.stream, VIDEO, 0, payload)
            return
        if type_id == AUDIO and is_audio_header(payload):
            publication.audio_header = payload
            for listener in publication.listeners:
                listener.receiver.deliver(listener.stream, AUDIO, 0, payload)
            return
        if type_id == DATA_AMF0:  # (metadata: to every listener, started or not)
            publication.metadata = payload
            for listener in publication.listeners:
                listener.receiver.deliver(listener.stream, DATA_AMF0, 0, payload)
            return
        key = type_id == VIDEO and is_keyframe(payload)
        for listener in publication.listeners:
            if (type_id == VIDEO and not listener.video) or (
                type_id == AUDIO and not listener.audio
            ):
                continue
            if not listener.started:
                if not key and listener.video:  # (audio alone starts at once)
                    continue
                listener.started, listener.base = True, timestamp
            time = (timestamp - listener.base) & 0xFFFFFFFF
            if listener.receiver.deliver(listener.stream, type_id, time, payload):
                listener.frames += 1
            else:
                listener.dropped += 1
                listener.started = False  # (it starts again at the next keyframe)

    def _headers(self, publication: Publication, listener: Listener) -> None:
        receiver, stream = listener.receiver, listener.stream
        if publication.metadata is not None:
            receiver.deliver(stream, DATA_AMF0, 0, publication.metadata)
        if publication.video_header is not None:
            receiver.deliver(stream, VIDEO, 0, publication.video_header)
        if publication.audio_header is not None:
            receiver.deliver(stream, AUDIO, 0, publication.audio_header)
