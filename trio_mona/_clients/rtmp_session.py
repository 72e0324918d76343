"""One RTMP connection: a consumer of the TCP transport (``_net/transport.py``) that
feeds the RTMP core (``_proto/rtmp.py``); its reads reach the executor as
:class:`RTMPData` events, where RTMP's way to Lua (``_rtmp_requests.py``) takes them.
It knows no Lua.

Its media writes go through the transport's queue like every byte; a frame for a
listener is dropped while the queue is over the soft limit (the fan-out then waits for
the next keyframe), and past the hard limit the connection is closed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from .._core.config import RTMPSettings
from .._core.events import RTMPClosed, RTMPData
from .._net.transport import CONNECTED, Transport
from .._proto.rtmp import RTMPServer, command_header, split_name
from .client import Client
from .http_session import IDLE, RUNNING, Phase
from .publications import Listener, Publication


@attrs.define(eq=False, repr=False)
class RTMPSession(Transport):
    """One RTMP connection (see the module docstring)."""

    read_event: ClassVar[type[Any]] = RTMPData

    rtmp: RTMPSettings = attrs.field(factory=RTMPSettings)
    core: RTMPServer = attrs.field(factory=RTMPServer)
    client: Client | None = None
    #: Its streams: what each publishes or plays.
    publishing: dict[int, Publication] = attrs.field(factory=dict)
    playing: dict[int, Listener] = attrs.field(factory=dict)
    next_stream: int = 1
    #: A Lua job for one of its events is in hand: later reads wait (in order).
    busy: bool = False
    backlog: list[RTMPData[RTMPSession]] = attrs.field(factory=list)
    #: What the running job answered (_lua/client_host.py).
    job_answer: Any = None
    #: The transaction of the call in hand, until it is answered.
    call: float | None = None

    @property
    def phase(self) -> Phase:
        """RUNNING while a Lua job of it runs (as an HTTP session says it)."""
        return RUNNING if self.busy else IDLE

    def __repr__(self) -> str:
        peer = self._peer.value if self._peer else "-"
        return f"<RTMPSession {self.state.value} peer={peer}>"

    def closed(self) -> None:
        self.sockets.post(RTMPClosed(self))

    def idle_limit(self) -> float:
        return self.rtmp.timeout

    def idle_setting(self) -> str:
        return "RTMP.timeout"

    def unload(self) -> None:
        if self.client is not None:
            self.client.silent = True
        super().unload()

    def write(self, data: bytes) -> None:
        """Send what the core made (commands, statuses: never dropped)."""
        if data and self.state is CONNECTED:
            self.enqueue(data)

    def flush_core(self) -> None:
        """Send what the core has to say on its own (the handshake, acknowledgements)."""
        self.write(self.core.data_to_send())

    def written(self, body: bytes, *, invocation: bool) -> bool:
        """A writer wrote AMF0 values: an invocation names a method of the client (its
        first value); a message answers the call in hand (once), or is an ``onMessage``
        invocation when none is."""
        if self.state is not CONNECTED:
            return False
        if invocation:
            name, rest = split_name(body)
            self.write(self.core.command_payload(0, name + command_header(0.0) + rest))
        elif self.call is not None:
            self.write(self.core.raw_command(0, b"_result", self.call, body))
            self.call = None
        else:
            self.write(self.core.raw_command(0, b"onMessage", 0.0, body))
        return True

    def published(self, listener: Listener) -> None:
        why = f"{listener.name} is now published"
        self.write(self.core.status(listener.stream, "NetStream.Play.PublishNotify", why))

    def unpublished(self, listener: Listener) -> None:
        why = f"{listener.name} is now unpublished"
        self.write(self.core.status(listener.stream, "NetStream.Play.UnpublishNotify", why))
        self.write(self.core.stream_eof(listener.stream))

    def deliver(self, stream: int, type_id: int, timestamp: int, payload: bytes) -> bool:
        """A frame for one of its listeners: False when it was dropped."""
        if self.state is not CONNECTED:
            return False
        settings = self.sockets.settings
        if self.queue.size > settings.soft_limit:
            return False
        return self.send_or_close(
            self.core.media(stream, type_id, timestamp, payload), "a listener"
        )
