"""RTMP's way to Lua and back, and its streams (docs/clients/rtmp.rst).

The executor hands this the reads of RTMP sessions (``_clients/rtmp_session.py``); the
RTMP core (``_proto/rtmp.py``) turns them into commands and media. ``connect`` makes a
client of the application its ``app`` names and runs ``onConnection`` (accepted: the
connection's success; an error: ``NetConnection.Connect.Rejected`` with the message,
then the socket closes). The stream commands (``createStream``, ``publish``, ``play``,
``deleteStream``, ...) are answered here, and media go through the publications
(``_clients/publications.py``). A session's events are handled in order: while a Lua
job of it runs, its later reads wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ._apps import Applications
from ._clients.client import Client
from ._clients.http_listener import NO_APPLICATION
from ._clients.publications import Listener, Publication, Publications
from ._clients.replies import CloseReply, ErrorReply, Reply, Upgraded
from ._clients.rtmp_listener import RTMPListener, RTMPSListener
from ._clients.rtmp_session import RTMPSession
from ._core.config import RTMPSettings, TLSSettings
from ._core.events import RTMPClosed, RTMPData
from ._formats import amf_tape
from ._formats.amf import AMFError, decode, encode
from ._formats.tape import Tapes
from ._lua.bridge import LuaBridge, LuaTable
from ._net.certificates import Certificates
from ._net.listener import configured_address
from ._net.sockets import Sockets
from ._net.transport import CONNECTED
from ._proto.paths import BadPath, segments
from ._proto.rtmp import NEED_DATA, Command, Connect, Failed, Media, obj
from ._proto.rtmp_chunks import DATA_AMF0

if TYPE_CHECKING:
    from ._executor import Executor

log = logging.getLogger("trio_mona")

#: Makes a Lua client (``HTTPRequests.make_client``).
MakeClient = Callable[..., Client]

#: Stream commands answered with a plain ``_result`` (ffmpeg and OBS send them before
#: publishing; MonaServer answered errors they had to tolerate).
_ACKNOWLEDGED = frozenset({"releaseStream", "FCPublish", "FCUnpublish", "getStreamLength",
                           "_checkbw"})  # fmt: skip


class RTMPRequests:
    """See the module docstring."""

    def __init__(
        self,
        settings: RTMPSettings,
        bridge: LuaBridge,
        executor: Executor,
        applications: Applications,
        sockets: Sockets,
        make_client: MakeClient,
        tapes: Tapes,
        publications: Publications,
    ) -> None:
        self.settings = settings
        self._bridge = bridge
        self._executor = executor
        self._applications = applications
        self._sockets = sockets
        self._make_client = make_client
        self._tapes = tapes
        self._parameters: LuaTable | None = None
        self.publications = publications
        self.listener: RTMPListener | None = None
        self.tls_listener: RTMPSListener | None = None
        executor.route(RTMPData, self.received)
        executor.route(RTMPClosed, self.closed)

    def listen(self) -> None:
        """Open the ``[RTMP]`` port, if configured.

        Raises:
            AddressError: ``[RTMP] host`` is no IP address.
            OSError: the port cannot be bound.
        """
        settings = self.settings
        if settings.port is None:
            return
        target = configured_address(settings.host, settings.port)
        listener = RTMPListener(self._sockets, NO_APPLICATION, rtmp=settings)
        listener.listen(target)
        self.listener = listener
        log.info("RTMP: serving on %s", listener.address.value if listener.address else "?")

    def listen_tls(self, settings: TLSSettings) -> None:
        """Open the ``[RTMPS]`` port, if configured: RTMP over TLS, served as on the
        ``[RTMP]`` port.

        Raises:
            CertificateError: a certificate or key cannot be used.
            AddressError: ``[RTMPS] host`` is no IP address.
            OSError: the port cannot be bound.
        """
        if settings.port is None:
            return
        certificates = Certificates(settings.certificate, settings.key, settings.certificates)
        listener = RTMPSListener(self._sockets, NO_APPLICATION, rtmp=self.settings,
                                 certificates=certificates)  # fmt: skip
        listener.listen(configured_address(settings.host, settings.port))
        self.tls_listener = listener
        log.info("RTMPS: serving on %s", listener.address.value if listener.address else "?")

    # -- the executor's events ---------------------------------------------------------
    def received(self, event: RTMPData[RTMPSession]) -> None:
        session = event.conn
        if session.busy or session.backlog:
            session.backlog.append(event)
            return
        self._feed(session, event)
        self.pump(session)

    def _feed(self, session: RTMPSession, event: RTMPData[RTMPSession]) -> None:
        data = session.take(event.data)
        if data:
            session.core.receive_data(data)
            session.flush_core()

    def pump(self, session: RTMPSession) -> None:
        core = session.core
        while not session.busy and session.state is CONNECTED:
            event = core.next_event()
            if event is NEED_DATA:
                if not session.backlog:
                    self._flushed(session)
                    return
                self._feed(session, session.backlog.pop(0))
                continue
            if isinstance(event, Failed):
                log.info("%r: %s; closed", session, event.reason)
                session.close()
                return
            if isinstance(event, Media):
                publication = session.publishing.get(event.stream)
                if publication is not None:
                    payload = event.payload
                    if event.type_id == DATA_AMF0:
                        payload = _metadata(payload)
                    self.publications.media(publication, event.type_id, event.timestamp, payload)
                    if publication.handlers:
                        self._media_event(publication, event.type_id, event.timestamp, payload)
            elif isinstance(event, Connect):
                self._connect(session, event)
            elif isinstance(event, Command):
                self._command(session, event)

    def _media_event(self, publication: Publication, type_id: int, time: int,
                     payload: bytes) -> None:  # fmt: skip
        name = _MEDIA_EVENTS.get(type_id)
        if name in publication.handlers and publication.table and self._executor.lua_enabled:
            result = self._bridge.publication_media(publication.table, name.encode(), time, payload)
            self._executor.settle(result, (), _ignore)
        publication.unflushed = True

    def _flushed(self, session: RTMPSession) -> None:
        """The session's reads are all handled: ``onFlush`` of its publications that
        got media since the last time (and define it)."""
        for publication in session.publishing.values():
            if publication.unflushed and "onFlush" in publication.handlers:
                publication.unflushed = False
                if publication.table is not None and self._executor.lua_enabled:
                    result = self._bridge.publication_media(publication.table, b"onFlush", 0, b"")
                    self._executor.settle(result, (), _ignore)

    def closed(self, event: RTMPClosed[RTMPSession]) -> None:
        session = event.conn
        session.backlog.clear()
        for stream in list(session.publishing):
            self._unpublish(session, stream)
        for stream in list(session.playing):
            self._end_stream(session, stream)
        client, session.client = session.client, None
        if client is None or client.table is None:
            return
        table, client.table = client.table, None
        if self._executor.lua_enabled:
            self._executor.settle(self._bridge.client_closed(table, client.silent), (), _ignore)

    def close_owned(self, owner: bytes) -> None:
        """The application *owner* unloads: the publications it made with
        ``mona:publish`` stop."""
        for publication in list(self.publications.by_name.values()):
            if publication.publisher == owner:
                self.script_close(publication)

    # -- publications of the applications' own (mona:publish) -------------------------------
    def script_publish(self, owner: bytes, name: bytes) -> LuaTable | None:
        """``mona:publish(name)``: a publication the application pushes media into, or
        None when the name is in use."""
        text = name.decode("utf-8", "replace")
        publication = Publication(text, owner)
        if not text or not self.publications.register(publication):
            return None
        for listener in publication.listeners:
            listener.receiver.published(listener)
        publication.table = self._bridge.media_object(b"Publication", publication, owner)
        return publication.table

    def script_push(self, publication: Publication, type_id: int, time: float,
                    packet: bytes, ping: float | None) -> tuple[bool, bytes | None]:  # fmt: skip
        """A frame (or data) an application pushes into its own publication (*ping*:
        its latency, in ms)."""
        if not isinstance(publication.publisher, bytes):
            return False, b"a client publishes this publication"
        if not publication.running:
            return False, b"the publication is closed"
        self.publications.media(publication, type_id, int(time) & 0xFFFFFFFF, packet, ping)
        return True, None

    def script_properties(self, publication: Publication, metadata: bytes | None) -> bool:
        """``writeProperties``/``clearProperties``: the metadata of a running publication."""
        if not publication.running:
            return False
        self.publications.set_metadata(publication, metadata)
        return True

    def listeners_of(self, publication: Publication) -> LuaTable:
        """``publication.listeners``' pairs: client, listener, client, listener...
        (an HTTP-FLV player has no client: its listener is its key)."""
        owner = publication.publisher if isinstance(publication.publisher, bytes) else b""
        flat: list[object] = []
        for listener in publication.listeners:
            if listener.table is None:
                listener.table = self._bridge.media_object(b"Listener", listener, owner)
            flat += (listener.client or listener.table, listener.table)
        return self._bridge.sequence(flat)

    def script_close(self, publication: Publication, code: bytes | None = None,
                     description: bytes | None = None) -> None:  # fmt: skip
        """``publication:close([code, description])``: an application's own publication
        stops; a client's stops too, its publisher told ``NetStream.CODE`` when a code
        is given (its later media on that stream are ignored)."""
        if not publication.running:
            return
        session = publication.publisher
        if isinstance(session, RTMPSession):
            stream = next((n for n, p in session.publishing.items() if p is publication), None)
            if stream is None:
                return
            if code is not None:
                text = code.decode("utf-8", "replace")
                level = "error" if "Error" in text or "Failed" in text else "status"
                why = (description or b"").decode("utf-8", "replace")
                session.write(session.core.status(stream, f"NetStream.{text}", why, level))
            self._unpublish(session, stream)
            return
        for listener in self.publications.unpublish(publication):
            listener.receiver.unpublished(listener)

    def find(self, name: bytes) -> LuaTable | None:
        """``mona.publications[name]``."""
        publication = self.publications.by_name.get(name.decode("utf-8", "replace"))
        if publication is None:
            return None
        if publication.table is None:
            owner = publication.publisher if isinstance(publication.publisher, bytes) else b""
            publication.table = self._bridge.media_object(b"Publication", publication, owner)
        return publication.table

    def names(self) -> LuaTable:
        return self._bridge.sequence(sorted(self.publications.by_name))

    # -- the connection ---------------------------------------------------------------------
    def _connect(self, session: RTMPSession, event: Connect) -> None:
        properties = event.properties
        url = urlsplit(str(properties.get("tcUrl", "")))
        app_name = str(properties.get("app", "")).partition("?")[0]
        parts = segments("/" + app_name)
        path = None if isinstance(parts, BadPath) else "/" + "/".join(parts) if parts else ""
        app = None if path is None else self._applications.find(path)
        if path is None or app is None or app.env is None or session.client is not None:
            why = (
                "already connected" if session.client else f"Application /{app_name} doesn't exist"
            )
            session.write(session.core.reject(event.transaction, why))
            session.close()
            return
        fields = [(k, str(v)) for k, v in properties.items() if isinstance(v, str | float | bool)]
        fields += parse_qsl(url.query)
        client = self._make_client(session, app.env, path, url.query, "RTMP", fields,
                                   self._parameters_table())  # fmt: skip
        session.client = client
        if properties.get("objectEncoding") == 3.0:
            self._bridge.client_amf3(client.table)
        session.busy = True
        tape: tuple[object, ...] = ()
        if event.arguments:  # (onConnection's arguments: connect's, after its object)
            tape = amf_tape.read(self._tapes, encode(list(event.arguments), amf0=True))
            if tape[0] is None:
                tape = ()
        result = self._bridge.client_open(client.table, None, *tape)
        self._executor.settle(result, (), partial(self._connected, session, event))

    def _connected(self, session: RTMPSession, event: Connect, _: object) -> None:
        answer, session.job_answer = session.job_answer, None
        session.busy = False
        if session.state is not CONNECTED:
            return
        if isinstance(answer, Upgraded):
            amf3 = event.properties.get("objectEncoding") == 3.0
            session.write(session.core.accept(event.transaction, answer.info, amf3=amf3))
            self.pump(session)
            return
        why = answer.message if isinstance(answer, ErrorReply) else "refused"
        session.write(session.core.reject(event.transaction, why))
        session.close()

    def _parameters_table(self) -> LuaTable:
        if self._parameters is None:
            settings = self.settings
            self._parameters = self._bridge.table(
                {"port": settings.port, "host": settings.host, "timeout": settings.timeout}
            )
        return self._parameters

    # -- commands ------------------------------------------------------------------------------
    def _command(self, session: RTMPSession, event: Command) -> None:
        core, name, stream = session.core, event.name, event.stream
        if session.client is None:
            session.write(core.command(0, "_error", event.transaction, None,
                                       {"code": "NetConnection.Call.Failed"}))  # fmt: skip
            return
        if name == "createStream":
            number, session.next_stream = session.next_stream, session.next_stream + 1
            session.write(core.command(0, "_result", event.transaction, None, float(number)))
        elif name in _ACKNOWLEDGED:
            session.write(core.command(0, "_result", event.transaction, None))
        elif name == "publish" and stream:
            self._publish(session, stream, _text(event.arguments[0] if event.arguments else b""))
        elif name == "play" and stream:
            self._play(session, stream, _text(event.arguments[0] if event.arguments else b""))
        elif name in ("deleteStream", "closeStream"):
            target = stream  # (closeStream: on the stream; deleteStream: its number)
            if name == "deleteStream" and event.arguments and isinstance(event.arguments[0], float):
                target = int(event.arguments[0])
            self._end_stream(session, target)
        elif name in ("receiveAudio", "receiveVideo") and stream in session.playing:
            wanted = bool(event.arguments[0]) if event.arguments else True
            session.playing[stream].receive(name == "receiveVideo", wanted)
        elif name in ("pause", "seek") and stream:
            why = f"{name} is not served on a live stream"
            session.write(
                core.status(stream, f"NetStream.{name.capitalize()}.Failed", why, "error")
            )
        elif stream == 0:
            self._call(session, event)

    def _call(self, session: RTMPSession, event: Command) -> None:
        """A call of a method of the client: its arguments to Lua as a tape, its results
        (or its first ``writeMessage``) answer it with ``_result``; a missing method or
        an error with ``_error`` and ``NetConnection.Call.Failed``."""
        client = session.client
        if client is None or client.table is None or not self._executor.lua_enabled:
            return
        arguments = encode([event.name.encode(), *event.arguments], amf0=True)
        tape = amf_tape.read(self._tapes, arguments)
        if tape[0] is None:
            session.write(session.core.command(0, "_error", event.transaction, None,
                                               _call_failed(_text(tape[1]))))  # fmt: skip
            return
        session.busy, session.call = True, event.transaction
        result = self._bridge.ws_message(client.table, b"array", b"", *tape)
        self._executor.settle(result, (), partial(self._called, session, event))

    def _called(self, session: RTMPSession, event: Command, _: object) -> None:
        answer, session.job_answer = session.job_answer, None
        session.busy = False
        if session.state is not CONNECTED:
            return
        if session.call is not None:  # (no write answered it)
            session.call = None
            core = session.core
            if isinstance(answer, Reply):
                session.write(core.raw_command(0, b"_result", event.transaction, answer.body))
            elif isinstance(answer, CloseReply):
                session.write(core.command(0, "_error", event.transaction, None,
                                           _call_failed(answer.reason)))  # fmt: skip
            else:
                session.write(core.command(0, "_result", event.transaction, None))
        self.pump(session)

    def _publish(self, session: RTMPSession, stream: int, requested: str) -> None:
        """``publish``: the name free, then the client's ``onPublish`` (false or an error
        refuses, with its message), then the publication starts."""
        name, _, query = requested.partition("?")
        if not name or name in self.publications.by_name:
            session.write(session.core.status(stream, "NetStream.Publish.BadName",
                                              f"{name} is already published", "error"))  # fmt: skip
            return
        publication = Publication(name, session, query)
        self._ask(session, "onPublish", publication, name,
                  partial(self._published, session, stream, publication))  # fmt: skip

    def _published(self, session: RTMPSession, stream: int, publication: Publication,
                   refusal: str | None) -> None:  # fmt: skip
        core, name = session.core, publication.name
        if refusal is not None:
            session.write(core.status(stream, "NetStream.Publish.Failed", refusal, "error"))
            return
        if not self.publications.register(publication):  # (taken while onPublish ran)
            session.write(core.status(stream, "NetStream.Publish.BadName",
                                      f"{name} is already published", "error"))  # fmt: skip
            return
        session.publishing[stream] = publication
        session.write(core.stream_begin(stream))
        session.write(core.status(stream, "NetStream.Publish.Start", f"{name} is now published"))
        for listener in publication.listeners:  # (players that waited for it)
            listener.receiver.published(listener)

    def _play(self, session: RTMPSession, stream: int, requested: str) -> None:
        """``play``: the client's ``onSubscribe`` (false or an error refuses), then the
        listener joins its publication, or waits for it."""
        name, _, query = requested.partition("?")
        listener = Listener(session, stream, name, query)
        listener.client = session.client.table if session.client else None
        self._ask(session, "onSubscribe", listener, name,
                  partial(self._subscribed, session, listener))  # fmt: skip

    def _subscribed(self, session: RTMPSession, listener: Listener, refusal: str | None) -> None:
        core, stream, name = session.core, listener.stream, listener.name
        if refusal is not None:
            session.write(core.status(stream, "NetStream.Play.Failed", refusal, "error"))
            return
        session.playing[stream] = listener
        session.write(core.stream_begin(stream))
        session.write(core.status(stream, "NetStream.Play.Reset", f"Playing and resetting {name}"))
        session.write(core.status(stream, "NetStream.Play.Start", f"Started playing {name}"))
        access = encode([b"|RtmpSampleAccess", True, True], amf0=True)
        session.write(core.media(stream, DATA_AMF0, 0, access))
        self.publications.play(listener)

    def _ask(self, session: RTMPSession, event: str, subject: Publication | Listener,
             name: str, then: Callable[[str | None], None]) -> None:  # fmt: skip
        """Run the client's *event* handler with *subject*'s Lua object; *then* gets the
        refusal's text, or None."""
        client = session.client
        if client is None or client.table is None or not self._executor.lua_enabled:
            then(None)
            return
        table = self._media_object(session, subject)
        session.busy = True

        def answered(_: object) -> None:
            answer, session.job_answer = session.job_answer, None
            session.busy = False
            if session.state is CONNECTED:
                then(answer.message if isinstance(answer, ErrorReply) else None)
                self.pump(session)

        result = self._bridge.media_event(client.table, event.encode(), table, name.encode())
        self._executor.settle(result, (), answered)

    def _tell(self, session: RTMPSession, event: str, subject: Publication | Listener) -> None:
        """Tell the client (``onUnpublish``, ``onUnsubscribe``); nothing waits for it."""
        client = session.client
        if client is None or client.table is None or not self._executor.lua_enabled:
            return
        table = self._media_object(session, subject)
        result = self._bridge.media_event(client.table, event.encode(), table, b"")
        self._executor.settle(result, (), _ignore)

    def _media_object(self, session: RTMPSession, subject: Publication | Listener) -> LuaTable:
        if subject.table is None:
            kind = b"Publication" if isinstance(subject, Publication) else b"Listener"
            subject.table = self._bridge.media_object(kind, subject, session.owner)
        return subject.table

    def _end_stream(self, session: RTMPSession, stream: int) -> None:
        if stream in session.publishing:
            self._unpublish(session, stream)
        listener = session.playing.pop(stream, None)
        if listener is not None:
            self.publications.stop(listener)
            self._tell(session, "onUnsubscribe", listener)

    def _unpublish(self, session: RTMPSession, stream: int) -> None:
        publication = session.publishing.pop(stream)
        for listener in self.publications.unpublish(publication):
            listener.receiver.unpublished(listener)
        self._tell(session, "onUnpublish", publication)


#: A publication's media events, by message type.
_MEDIA_EVENTS: dict[int, str] = {8: "onAudio", 9: "onVideo", 18: "onData"}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _call_failed(description: str) -> Any:
    return obj(level="error", code="NetConnection.Call.Failed", description=description)


def _metadata(payload: bytes) -> bytes:
    """A data message as players get it: ``@setDataFrame`` left out."""
    try:
        values = decode(payload)
    except (AMFError, RecursionError):
        return payload
    if values and values[0] == b"@setDataFrame":
        return encode(values[1:], amf0=True)
    return payload


def _ignore(_: object) -> None:
    pass
