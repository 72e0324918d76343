"""HTTP requests' way to Lua and back (docs/clients/http.rst).

The executor hands this the reads of HTTP sessions (``_clients/http_session.py``);
it feeds each session's HTTP core and serves its requests one at a time: which
application the path names (``_proto/paths.py``), a new client when the path or the
query changed, then one Lua job (``_lua/clients.lua``) that runs ``onDisconnection``
of the client replaced, ``onConnection`` of the new one, and the method, ``onRead`` or
``onMessage`` the request asks for. What the job answers becomes the response here: a
body, a file (``_clients/files.py``), a listing or an error page.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from ._apps import Applications
from ._clients.client import Client
from ._clients.files import file_response, listing_response
from ._clients.http_listener import NO_APPLICATION, HTTPListener, HTTPSListener
from ._clients.http_session import IDLE, RUNNING, HTTPSession
from ._clients.publications import Listener, Publications
from ._clients.replies import Answer, ErrorReply, FileReply, Listing, Reply, Upgraded
from ._clients.websocket import WebSocketChannel
from ._core.config import HTTPSettings, TLSSettings, WebSocketSettings
from ._core.events import Call, SessionClosed, SessionData
from ._formats.json import flat_values
from ._formats.tape import Tapes
from ._lua.bindings import SocketBindings
from ._lua.bridge import LuaBridge, LuaTable
from ._net.certificates import Certificates
from ._net.listener import configured_address
from ._net.sockets import Sockets
from ._net.transport import CONNECTED
from ._proto.cookies import parse_cookies
from ._proto.http import CLOSED, NEED_DATA, Refused, Request, Upgrade, header
from ._proto.paths import BadPath, NoApplication, Redirect, Target, resolve
from ._proto.websocket import Accepted, NotWebSocket, upgrade
from ._websocket_messages import WebSocketMessages

if TYPE_CHECKING:
    from ._executor import Executor

log = logging.getLogger("trio_mona")


class _Running:
    """The applications a path may name: those in the tree that are up."""

    def __init__(self, applications: Applications) -> None:
        self._applications = applications

    def __contains__(self, path: object) -> bool:
        app = self._applications.find(str(path))
        return app is not None and app.env is not None


class HTTPRequests:
    """See the module docstring."""

    def __init__(
        self,
        settings: HTTPSettings,
        websocket_settings: WebSocketSettings,
        bridge: LuaBridge,
        executor: Executor,
        applications: Applications,
        sockets: Sockets,
        bindings: SocketBindings,
        tapes: Tapes,
        publications: Publications,
    ) -> None:
        self.settings = settings
        self.websocket_settings = websocket_settings
        self._publications = publications
        self.websocket = WebSocketMessages(bridge, executor, tapes)
        self._bridge = bridge
        self._executor = executor
        self._applications = applications
        self._running = _Running(applications)
        self._sockets = sockets
        self._bindings = bindings
        self._parameters: LuaTable | None = None
        self.listener: HTTPListener | None = None
        self.tls_listener: HTTPSListener | None = None
        #: Requests served, and those refused by status (400, 413, 431, 501).
        self.requests = 0
        self.refused: collections.Counter[int] = collections.Counter()
        executor.route(SessionData, self.received)
        executor.route(SessionClosed, self.closed)

    def listen(self) -> None:
        """Open the ``[HTTP]`` port, if configured.

        Raises:
            AddressError: ``[HTTP] host`` is no IP address.
            OSError: the port cannot be bound.
        """
        settings = self.settings
        if settings.port is None:
            return
        target = configured_address(settings.host, settings.port)
        listener = HTTPListener(self._sockets, NO_APPLICATION, http=settings,
                                on_answered=self.answered)  # fmt: skip
        listener.listen(target)
        self.listener = listener
        log.info("HTTP: serving on %s", listener.address.value if listener.address else "?")

    def listen_tls(self, settings: TLSSettings) -> None:
        """Open the ``[HTTPS]`` port, if configured: HTTP and WebSocket clients over TLS,
        served as on the ``[HTTP]`` port.

        Raises:
            CertificateError: a certificate or key cannot be used.
            AddressError: ``[HTTPS] host`` is no IP address.
            OSError: the port cannot be bound.
        """
        if settings.port is None:
            return
        certificates = Certificates(settings.certificate, settings.key, settings.certificates,
                                    alpn=("http/1.1",))  # fmt: skip
        listener = HTTPSListener(self._sockets, NO_APPLICATION, http=self.settings,
                                 on_answered=self.answered, certificates=certificates)  # fmt: skip
        listener.listen(configured_address(settings.host, settings.port))
        self.tls_listener = listener
        log.info("HTTPS: serving on %s", listener.address.value if listener.address else "?")

    # -- the executor's events ---------------------------------------------------------
    def received(self, event: SessionData[HTTPSession]) -> None:
        session = event.conn
        if session.phase is not IDLE or session.backlog:
            session.backlog.append(event)  # (its turn comes once the request in hand is)
            return
        if session.websocket is not None:
            self.websocket.received(session, event)
            return
        self._feed(session, event)
        self.pump(session)

    def closed(self, event: SessionClosed[HTTPSession]) -> None:
        session = event.conn
        session.backlog.clear()
        if session.flv is not None:
            self._publications.stop(session.flv)
        client, session.client = session.client, None
        if client is None or client.table is None:
            return
        table, client.table = client.table, None
        if not self._executor.lua_enabled:
            return
        result = self._bridge.client_closed(table, client.silent)
        self._executor.settle(result, (), _ignore)

    def answered(self, session: HTTPSession) -> None:
        """A request was answered: serve the next, if it is here already (later, in
        the executor's own turn: this may run inside a Lua call, a write)."""
        if session.backlog or session.parser.pending:
            self._sockets.post(Call(partial(self.pump, session)))

    # -- serving ----------------------------------------------------------------------------
    def _feed(self, session: HTTPSession, event: SessionData[HTTPSession]) -> None:
        data = session.take(event.data)
        if data:
            session.parser.receive_data(data)
            if session.client is not None:
                session.client.last_reception = time.time()

    def pump(self, session: HTTPSession) -> None:
        """Serve the session's requests while none is in hand."""
        while session.phase is IDLE and session.state is CONNECTED:
            event = session.parser.next_event()
            if event is NEED_DATA:
                if not session.backlog:
                    return
                self._feed(session, session.backlog.pop(0))
                continue
            if event is CLOSED:
                return
            if isinstance(event, Refused):
                self.refused[event.status] += 1
                log.debug("%r: refused (%d): %s", session, event.status, event.reason)
                session.refuse(event.status, event.reason)
                return
            if isinstance(event, Upgrade):
                self.requests += 1
                self._upgrade(session, event)
                return
            assert isinstance(event, Request)
            self.requests += 1
            try:
                self.serve(session, event)
            except Exception:
                log.exception("internal error while serving %r: it is closed", session)
                session.crashed()
                return

    def serve(self, session: HTTPSession, request: Request) -> None:
        """Answer *request*, at once or through Lua."""
        session.begin(request)
        if request.method == "OPTIONS":
            session.send_response(204, [("Allow", "GET, HEAD, POST, OPTIONS")], b"")
            return
        found = resolve(request.path, self._running)
        if isinstance(found, Redirect):
            location = found.location + (f"?{request.query}" if request.query else "")
            session.send_response(301, [("Location", location)], b"")
            return
        if isinstance(found, BadPath):
            session.respond(ErrorReply(400, found.why))
            return
        if isinstance(found, NoApplication):
            session.respond(ErrorReply(503, f"Application {found.app} doesn't exist"))
            return
        app = self._applications.find(found.app)
        assert app is not None
        assert app.env is not None
        name = found.name
        if name.endswith(".flv") and request.method in ("GET", "HEAD"):  # (HTTP-FLV)
            live = name[:-4] in self._publications.by_name
            # (a file of the name is a file; else the publication is awaited)
            if live or not os.path.isfile(os.path.join(app.directory, name)):
                listener = Listener(session, 0, name[:-4], request.query)
                session.play_flv(listener, waiting=not live)
                self._publications.play(listener)
                return
        if not self._executor.lua_enabled:
            session.respond(ErrorReply(503, "The server is stopping"))
            return
        client = session.client
        old: LuaTable | None = None
        new = client is None or client.app != found.app or client.query != request.query
        if new:
            if client is not None:
                old, client.table = client.table, None
            client = self._client(session, app.env, found.app, request)
        assert client is not None
        content_type = header(request, "Content-Type") or ""
        body: bytes | None = request.body
        values: tuple[object, ...] = ()
        if request.method == "POST" and "json" in content_type.lower():
            flat = flat_values(request.body)  # (then no tape: most calls are these)
            if flat is not None:
                body, values = None, flat
        result = self._bridge.http_request(
            client.table, old, new, request.method.encode(), found.name.encode(),
            request.query.encode("latin-1"), body, content_type.encode("latin-1"), *values,
        )  # fmt: skip
        self._executor.settle(result, (), partial(self._job_ended, session, request))

    def _upgrade(self, session: HTTPSession, event: Upgrade) -> None:
        """A WebSocket upgrade: the application at the path's folder, the handshake,
        then onConnection of a new client (docs/clients/websocket.rst); an error
        answers its HTTP status and closes the socket."""
        request = event.request
        session.begin(request)
        found = resolve(request.path, self._running)
        if isinstance(found, Redirect):  # (the application's own folder, no slash)
            found = Target(found.location.rstrip("/"), "")
        if isinstance(found, BadPath):
            session.refuse(400, found.why)
            return
        if isinstance(found, NoApplication):
            session.refuse(503, f"Application {found.app} doesn't exist")
            return
        app = self._applications.find(found.app)
        if app is None or app.env is None or not self._executor.lua_enabled:
            session.refuse(503, "The application is not running")
            return
        settings = self.websocket_settings
        handshake = upgrade(request, max_message=settings.maxMessage, trailing=event.trailing,
                            compress=settings.compress)  # fmt: skip
        if isinstance(handshake, NotWebSocket):
            session.refuse(handshake.status, handshake.reason)
            return
        old = None
        if session.client is not None:
            old, session.client.table = session.client.table, None
        client = self._client(session, app.env, found.app, request, b"WebSocket")
        result = self._bridge.client_open(client.table, old)
        self._executor.settle(result, (), partial(self._opened, session, handshake))

    def _opened(self, session: HTTPSession, handshake: Accepted, _: object) -> None:
        answer, session.job_answer = session.job_answer, None
        if session.state is not CONNECTED:
            return
        if not isinstance(answer, Upgraded):
            message = answer.message if isinstance(answer, ErrorReply) else "refused"
            session.refuse(500, message)
            return
        session.enqueue(handshake.response)
        soft_limit = self._sockets.settings.soft_limit
        session.upgraded(WebSocketChannel(session, handshake.server, self.websocket_settings,
                                          soft_limit))  # fmt: skip
        self.websocket.pump(session)  # (frames sent with the request)

    def _client(
        self, session: HTTPSession, env: LuaTable, app: str, request: Request,
        protocol: bytes = b"HTTP",
    ) -> Client:  # fmt: skip
        fields = list(request.headers)
        fields += parse_cookies(header(request, "Cookie"))
        fields += [("version", request.version), ("HTTPVersion", request.version)]
        client = self.make_client(session, env, app, request.query, protocol.decode(), fields,
                                  self._parameters_table(), "latin-1")  # fmt: skip
        session.client = client
        return client

    def make_client(
        self, session: Any, env: LuaTable, app: str, query: str, protocol: str,
        fields: list[tuple[str, str]], parameters: LuaTable, charset: str = "utf-8",
    ) -> Client:  # fmt: skip
        """A client of the application *app* (its environment *env*) on *session*, its
        properties *fields* (text in *charset*: HTTP's headers are latin-1), its
        parameters *parameters* (a protocol's settings)."""
        client = Client(session, app, query, protocol)
        if session.tls is not None:  # (docs/clients/tls.rst: which port the client came by)
            fields = [*fields, ("tls", session.tls.version or "")]
        flat: list[object] = []
        for name, value in fields:
            flat += (name.encode(charset, "replace"), value.encode(charset, "replace"))
        client.table = self._bridge.client_new(
            client, env, app.encode(), client.id.encode(), client.raw_id, app.encode(),
            protocol.encode(), query.encode(charset, "replace"),
            self._bindings.address(session, session.peer), self._bridge.sequence(flat), parameters,
        )  # fmt: skip
        session.owner = app.encode()
        return client

    def _parameters_table(self) -> LuaTable:
        """``client.parameters``: the ``[HTTP]`` settings (one table, read-only in Lua)."""
        if self._parameters is None:
            settings = self.settings
            self._parameters = self._bridge.table({
                "port": settings.port, "host": settings.host, "timeout": settings.timeout,
                "index": settings.index, "maxHeaders": settings.maxHeaders,
                "maxBody": settings.maxBody, "cors": settings.cors,
            })  # fmt: skip
        return self._parameters

    def _job_ended(self, session: HTTPSession, request: Request, _: object) -> None:
        if session.request is not request or session.phase is not RUNNING:
            return  # (refused meanwhile)
        if session.state is not CONNECTED:
            session.phase = IDLE  # (closed meanwhile: nobody waits for the answer)
            return
        answer = session.job_ended()
        if answer is not None:
            self._send(session, request, answer)

    def _send(self, session: HTTPSession, request: Request, answer: Answer) -> None:
        if isinstance(answer, Reply | ErrorReply):
            session.respond(answer)
            return
        if not isinstance(answer, FileReply | Listing):
            session.respond(ErrorReply(500, "no answer over HTTP"))
            return
        client = session.client
        app = None if client is None else self._applications.find(client.app)
        if app is None:
            session.respond(ErrorReply(503, "The application is not running"))
            return
        root = self._applications.apps_dir
        if isinstance(answer, Listing):
            session.send_file(listing_response(root, app.directory, request.path))
        else:
            session.send_file(
                file_response(root, app.directory, answer.name, request, answer.variables)
            )


def _ignore(_: object) -> None:
    pass
