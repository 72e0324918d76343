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

import time
from typing import Protocol

import attrs

from .._proto.rtmp_chunks import AUDIO, DATA_AMF0, VIDEO
from .qos import QualityOfService, by_type

#: The most a GOP cache holds (bytes): a longer group of pictures is not cached (its
#: listeners start at the next keyframe, as without the cache).
GOP_LIMIT = 4 << 20

#: A data message that is the stream's metadata starts with this AMF0 string.
_ON_METADATA = b"\x02\x00\x0aonMetaData"


class Receiver(Protocol):
    """A listener's connection, as the fan-out sees it (an RTMP player, an HTTP-FLV
    one)."""

    def deliver(self, stream: int, type_id: int, timestamp: int, payload: bytes) -> bool:
        """Send one frame now; False when it was dropped (the queue is long)."""

    def published(self, listener: Listener) -> None:
        """The publication *listener* waited for has started."""

    def unpublished(self, listener: Listener) -> None:
        """*listener*'s publication has stopped (it waits for the next one)."""

    def queued(self) -> int:
        """The bytes its connection has still to send."""


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
    #: The Lua client it plays for (None: an HTTP-FLV player, which has none).
    client: object | None = None
    #: The publication it receives (None while it waits for one).
    publication: Publication | None = None
    #: How its audio, video and data go, by message type.
    qos: dict[int, QualityOfService] = attrs.field(factory=by_type)

    def __attrs_post_init__(self) -> None:
        for qos in self.qos.values():
            qos.listener = self

    def receive(self, video: bool, wanted: bool) -> None:
        """``receiveAudio``/``receiveVideo``: video turned on again starts at the next
        keyframe."""
        if video:
            if wanted and not self.video:
                self.started = False
            self.video = wanted
        else:
            self.audio = wanted


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
    #: Its publisher has not stopped.
    running: bool = True
    #: Its Lua object, once made (the client events' argument).
    table: object | None = None
    #: The media events its Lua object defines (onAudio, onVideo, onData, onFlush):
    #: only those frames cross into Lua.
    handlers: set[str] = attrs.field(factory=set)
    #: How its audio, video and data arrive, by message type.
    qos: dict[int, QualityOfService] = attrs.field(factory=by_type)
    #: The least (arrival - timestamp) seen (ms): the latency is how much later a frame
    #: arrives than the stream's quickest did.
    quickest: float | None = None
    #: The frames since the last keyframe, with the GOP cache on (None: none cached).
    gop: list[tuple[int, int, bytes]] | None = None
    gop_bytes: int = 0
    #: It got media since its last ``onFlush``.
    unflushed: bool = False


def is_keyframe(payload: bytes) -> bool:
    return len(payload) > 0 and payload[0] >> 4 == 1


def is_video_header(payload: bytes) -> bool:
    return len(payload) > 1 and payload[0] & 0x0F == 7 and payload[1] == 0


def is_audio_header(payload: bytes) -> bool:
    return len(payload) > 1 and payload[0] >> 4 == 10 and payload[1] == 0


class Publications:
    """Every publication of the runtime, by name."""

    def __init__(self, *, gop_cache: bool = False) -> None:
        self.by_name: dict[str, Publication] = {}
        #: Listeners waiting for a publication of their name.
        self.waiting: dict[str, list[Listener]] = {}
        #: New listeners start with the frames since the last keyframe (``[RTMP]
        #: gopCache``), not at the next keyframe.
        self.gop_cache = gop_cache

    def register(self, publication: Publication) -> bool:
        """*publication* starts, with the listeners that waited for its name; False:
        the name is in use."""
        if publication.name in self.by_name:
            return False
        self.by_name[publication.name] = publication
        publication.listeners = self.waiting.pop(publication.name, [])
        for listener in publication.listeners:
            listener.publication = publication
        return True

    def unpublish(self, publication: Publication) -> list[Listener]:
        """The publication ends; its listeners wait for the next one of its name."""
        publication.running = False
        publication.gop = None
        if self.by_name.get(publication.name) is publication:
            del self.by_name[publication.name]
        listeners, publication.listeners = publication.listeners, []
        for listener in listeners:
            listener.started, listener.publication = False, None
        if listeners:
            self.waiting.setdefault(publication.name, []).extend(listeners)
        return listeners

    def play(self, listener: Listener) -> Publication | None:
        """Add *listener*: to its publication (which sends it the headers it keeps, and
        its GOP cache), or to those waiting for it (None)."""
        publication = self.by_name.get(listener.name)
        if publication is None:
            self.waiting.setdefault(listener.name, []).append(listener)
            return None
        publication.listeners.append(listener)
        listener.publication = publication
        self._headers(publication, listener)
        if publication.gop and listener.video:
            self._cached(publication, listener)
        return publication

    def stop(self, listener: Listener) -> None:
        publication = self.by_name.get(listener.name)
        if publication is not None and listener in publication.listeners:
            publication.listeners.remove(listener)
        listener.publication = None
        waiting = self.waiting.get(listener.name)
        if waiting is not None and listener in waiting:
            waiting.remove(listener)
            if not waiting:
                del self.waiting[listener.name]

    def arrived(self, publication: Publication, type_id: int, timestamp: int, size: int,
                ping: float | None = None) -> float:  # fmt: skip
        """Count a frame from the publisher in its QOS; the time it arrived."""
        now = time.time()
        qos = publication.qos.get(type_id)
        if qos is not None:
            qos.sent(now, size)
            if ping is not None:
                qos.latency = ping
            elif type_id != DATA_AMF0:
                lag = now * 1000 - timestamp
                if publication.quickest is None or lag < publication.quickest:
                    publication.quickest = lag
                qos.latency = lag - publication.quickest
        return now

    def media(self, publication: Publication, type_id: int, timestamp: int, payload: bytes,
              ping: float | None = None) -> None:  # fmt: skip
        """A frame (or data) from the publisher: kept if it is a header or the metadata,
        then to every listener that can take it."""
        now = self.arrived(publication, type_id, timestamp, len(payload), ping)
        publication.last_time = timestamp
        if type_id == VIDEO and is_video_header(payload):
            publication.video_header = payload
            self._everyone(publication, VIDEO, payload, now)
            return
        if type_id == AUDIO and is_audio_header(payload):
            publication.audio_header = payload
            self._everyone(publication, AUDIO, payload, now)
            return
        if type_id == DATA_AMF0 and payload.startswith(_ON_METADATA):
            self.set_metadata(publication, payload)
            return
        key = type_id == VIDEO and is_keyframe(payload)
        if self.gop_cache:
            self._keep(publication, type_id, timestamp, payload, key)
        for listener in publication.listeners:
            if (type_id == VIDEO and not listener.video) or (
                type_id == AUDIO and not listener.audio
            ):
                continue
            if not listener.started and type_id != DATA_AMF0:
                if not key and listener.video:  # (audio alone starts at once)
                    continue
                listener.started, listener.base = True, timestamp
            at = (timestamp - listener.base) & 0xFFFFFFFF if listener.started else 0
            qos = listener.qos[type_id]
            if listener.receiver.deliver(listener.stream, type_id, at, payload):
                listener.frames += 1
                qos.sent(now, len(payload))
            else:
                listener.dropped += 1
                qos.dropped(now)
                listener.started = False  # (it starts again at the next keyframe)

    def set_metadata(self, publication: Publication, payload: bytes | None) -> None:
        """The stream's metadata (an ``onMetaData`` data message; None: cleared), to
        every listener now and to each new one first."""
        publication.metadata = payload
        if payload is not None:
            self._everyone(publication, DATA_AMF0, payload, time.time())

    def _everyone(self, publication: Publication, type_id: int, payload: bytes,
                  now: float) -> None:  # fmt: skip
        """A header or the metadata: to every listener, started or not."""
        for listener in publication.listeners:
            if listener.receiver.deliver(listener.stream, type_id, 0, payload):
                listener.qos[type_id].sent(now, len(payload))

    def _keep(self, publication: Publication, type_id: int, timestamp: int, payload: bytes,
              key: bool) -> None:  # fmt: skip
        """The GOP cache: the frames since the last keyframe, up to GOP_LIMIT bytes."""
        if key:
            publication.gop, publication.gop_bytes = [], 0
        gop = publication.gop
        if gop is None:
            return
        publication.gop_bytes += len(payload)
        if publication.gop_bytes > GOP_LIMIT:
            publication.gop = None
            return
        gop.append((type_id, timestamp, payload))

    def _cached(self, publication: Publication, listener: Listener) -> None:
        """A new listener starts with the GOP cache, its timestamps from 0."""
        assert publication.gop is not None
        now = time.time()
        listener.started, listener.base = True, publication.gop[0][1]
        for type_id, timestamp, payload in publication.gop:
            if type_id == AUDIO and not listener.audio:
                continue
            at = (timestamp - listener.base) & 0xFFFFFFFF
            if not listener.receiver.deliver(listener.stream, type_id, at, payload):
                listener.dropped += 1
                listener.qos[type_id].dropped(now)
                listener.started = False
                return
            listener.frames += 1
            listener.qos[type_id].sent(now, len(payload))

    def _headers(self, publication: Publication, listener: Listener) -> None:
        receiver, stream = listener.receiver, listener.stream
        if publication.metadata is not None:
            receiver.deliver(stream, DATA_AMF0, 0, publication.metadata)
        if publication.video_header is not None:
            receiver.deliver(stream, VIDEO, 0, publication.video_header)
        if publication.audio_header is not None:
            receiver.deliver(stream, AUDIO, 0, publication.audio_header)
