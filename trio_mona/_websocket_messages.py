"""WebSocket messages' way to Lua and back (docs/clients/websocket.rst).

Once an HTTP session is upgraded (``_http_requests.py`` makes the client and answers
101), its reads come here: the WebSocket core (``_proto/websocket.py``) turns them into
messages, and each message is one Lua job (``_lua/clients.lua``): a JSON array naming a
method calls it, anything else goes to ``onMessage``. A method's results go back as one
text message; an error closes the client with 1002. Messages are handled one at a
time per client, in order; the reads that come meanwhile wait in the session's backlog.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING

import trio

from ._clients.http_session import IDLE, RUNNING, HTTPSession
from ._clients.replies import CloseReply, Reply
from ._core.events import SessionData
from ._formats import json
from ._formats.tape import Tapes
from ._lua.bridge import LuaBridge
from ._net.transport import CONNECTED
from ._proto.websocket import NEED_DATA, Binary, Closed, Pinged, Text

if TYPE_CHECKING:
    from ._executor import Executor

log = logging.getLogger("trio_mona")

#: Seconds between two onManage calls of the secondary writers (MonaServer's tick).
MANAGE_INTERVAL = 2.0


class WebSocketMessages:
    """See the module docstring."""

    def __init__(self, bridge: LuaBridge, executor: Executor, tapes: Tapes) -> None:
        self._bridge = bridge
        self._executor = executor
        self._tapes = tapes
        #: Messages handed to Lua.
        self.messages = 0

    def received(self, session: HTTPSession, event: SessionData[HTTPSession]) -> None:
        """A read of an upgraded session (no message of it in hand)."""
        self._feed(session, event)
        self.pump(session)

    def _feed(self, session: HTTPSession, event: SessionData[HTTPSession]) -> None:
        data = session.take(event.data)
        channel = session.websocket
        if data and channel is not None:
            channel.core.receive_data(data)
            if session.client is not None:
                session.client.last_reception = time.time()

    def pump(self, session: HTTPSession) -> None:
        """Hand the session's messages to Lua while none is in hand."""
        channel = session.websocket
        if channel is None:
            return
        core = channel.core
        while session.phase is IDLE and session.state is CONNECTED:
            channel.control()  # (pongs, a close in answer)
            event = core.next_event()
            if event is NEED_DATA:
                if not session.backlog:
                    return
                self._feed(session, session.backlog.pop(0))
                continue
            if isinstance(event, Pinged):
                channel.pinged(event.payload)
            elif isinstance(event, Closed):
                channel.control()
                session.close()
                return
            elif isinstance(event, Text | Binary):
                self._message(session, event)

    def _message(self, session: HTTPSession, message: Text | Binary) -> None:
        client = session.client
        if client is None or client.table is None or not self._executor.lua_enabled:
            return
        self.messages += 1
        tape: tuple[object, ...] = ()
        if isinstance(message, Binary):
            kind, data = b"binary", message.data
        else:
            data = message.text.encode()
            start = data.lstrip()[:1]
            kind = b"text"
            if start == b"[" or start == b"{":  # (read once, here: its values as a tape)
                tape = json.read(self._tapes, data)
                if tape[0] is None:
                    tape = ()  # (not JSON: the text goes to onMessage as it is)
                else:
                    kind = b"array" if start == b"[" else b"object"
        session.phase = RUNNING
        result = self._bridge.ws_message(client.table, kind, data, *tape)
        self._executor.settle(result, (), partial(self._ended, session))

    def _ended(self, session: HTTPSession, _: object) -> None:
        answer, session.job_answer = session.job_answer, None
        session.phase = IDLE
        channel = session.websocket
        if channel is None or session.state is not CONNECTED:
            return
        if isinstance(answer, Reply):
            channel.send(answer.body)
        elif isinstance(answer, CloseReply):
            channel.close(answer.code, answer.reason)
            return
        self.pump(session)

    async def manage(self) -> None:
        """onManage of the secondary writers, every 2 s."""
        while True:
            await trio.sleep(MANAGE_INTERVAL)
            if not self._executor.lua_enabled:
                return
            try:
                await self._executor.call(self._bridge.manage_writers)
            except RuntimeError:
                return  # (the executor stopped)
