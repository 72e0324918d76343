"""The executor: the one task that calls Lua.

It receives events on the runtime's memory channel and, for each, runs the Lua
handler in a pooled coroutine (``_lua/jobs.lua``). It drains every event already
queued before it waits again: batching is where the speed comes from. It reads the
sockets itself, through the read hub (``_net/hub.py``), and waits on it when it has
nothing to do.

A handler may *suspend* (a call that has to wait, such as a DNS look-up, yields in
Lua); the executor then starts a task for the awaited work, goes on with other
events, and resumes the coroutine when that work posts :class:`Resumed`. Events for a
socket whose handler is suspended wait in that socket's backlog, so every socket
sees its events in order.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from ._core.events import (
    TIMED_OUT,
    Accepted,
    Call,
    Closed,
    DatagramReceived,
    DataReceived,
    Event,
    Reads,
    Resumed,
)
from ._net.transport import CONNECTED
from ._net.writes import Writes
from ._waits import BY_TOKEN, Park, Suspension

if TYPE_CHECKING:
    from ._lua.bridge import LuaBridge
    from ._net.hub import Hub
    from ._net.tcp import TCPConnection
    from ._net.udp import UDPSocket

log = logging.getLogger("trio_mona")

#: How many times the executor reads ready sockets itself before it lets Trio run
#: the other tasks.
INLINE_POLLS = 8
#: Seconds the executor runs handlers before it writes what they sent and lets every
#: other task run (accepts, flushers, timers), even while events keep
#: coming: a socket that streams refills the channel itself (each read it consumes
#: lets it read more), so "until the channel is empty" may never come.
ROUND_SECONDS = 0.002
#: Reads handed to Lua in one call at most (each is two arguments on Lua's stack).
MANY_MAX = 128


@attrs.define(eq=False)
class _Pending:
    subjects: tuple[Subject, ...]
    then: Continuation
    owner: bytes
    #: Cancels the task that awaits the work or the deadline (None: no task).
    scope: trio.CancelScope | None = None
    #: Its resumption is on its way (a second wake-up, e.g. data after the
    #: deadline fired, is refused: the data stays for the next call).
    woken: bool = False


class Subject(Protocol):
    """Anything whose events must stay in order while one of its handlers waits."""

    waiting: deque[Event] | None


Continuation = Callable[[Any], None]


class Executor:
    """Turns events into Lua calls, one at a time (docs/design.rst)."""

    def __init__(
        self,
        bridge: LuaBridge,
        sender: Callable[[UDPSocket, tuple[object, ...]], object],
        receive: trio.MemoryReceiveChannel[Event],
        post: Callable[[Event], None],
        hub: Hub,
        writes: Writes,
        deliver: Callable[[Resumed], None] | None = None,
        parks: dict[int, Park] | None = None,
    ) -> None:
        self._bridge = bridge
        self._parks = {} if parks is None else parks
        #: How a wake-up joins the reads of the same moment (one channel message).
        self._deliver = deliver or post
        self._receive = receive
        self._post = post
        self._hub = hub
        self._writes = writes
        self._nursery: trio.Nursery | None = None
        self._pending: dict[int, _Pending] = {}
        self._on_data = bridge.on_data
        self._on_data_many = bridge.on_data_many
        self._on_event = bridge.on_event
        self._no_handler = bridge.no_handler
        self._on_packet = bridge.on_packet
        #: A datagram's sender as a Lua object (_lua/bindings.py).
        self._sender = sender
        #: False once shutdown has run onStop: no Lua runs after that (docs/design.rst).
        self.lua_enabled = True
        #: The dispatch loop runs (a runtime whose task was cancelled has none).
        self.running = False
        #: The events of the calls other tasks wait on (:meth:`call`): set
        #: when the loop stops, so that none waits for ever.
        self.waiting_calls: set[trio.Event] = set()
        self.events_dispatched = 0
        self._dispatch: dict[type[Any], Callable[[Any], None]] = {}
        routes: list[tuple[type[Any], Callable[[Any], None]]] = [
            (DataReceived, self._data),
            (DatagramReceived, self._datagram),
            (Reads, self._reads),
            (Accepted, self._accepted),
            (Closed, self._closed),
            (Resumed, self._resumed),
            (Call, self._call),
        ]
        for event_type, handler in routes:
            self.route(event_type, handler)

    def route(self, event_type: type[Any], handler: Callable[[Any], None]) -> None:
        """Hand every event of *event_type* to *handler*, in the executor's task (a
        read's class in a :class:`Reads` batch too). A handler for an event about a
        socket (a :class:`Subject`) begins with :func:`held`."""
        self._dispatch[event_type] = handler

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dispatch events until every sender has closed the channel."""
        try:
            await self._dispatch_all(task_status)
        finally:
            self.running = False
            for done in list(self.waiting_calls):
                done.set()  # (they find no answer: the call never ran)

    async def _dispatch_all(self, task_status: trio.TaskStatus[None]) -> None:
        receive = self._receive
        dispatch = self._dispatch
        async with receive, trio.open_nursery() as nursery:
            self._nursery = nursery
            self.running = True
            task_status.started()
            count = 0
            hub = self._hub
            poll_ready = hub.poll
            writes = self._writes
            polls = 0
            clock = time.perf_counter
            round_ends = clock() + ROUND_SECONDS
            while True:
                try:
                    event = receive.receive_nowait()
                except trio.WouldBlock:
                    # What the handlers sent goes out now, in one burst (Writes).
                    if writes.commit is not None and writes.commit_async is not None:
                        await writes.commit_batch()
                        if receive.statistics().current_buffer_used:
                            # (posted meanwhile: that did not wake the hub, which nobody
                            # waited on; dispatch them before waiting)
                            continue
                    writes.flush()
                    # Before waiting, read what became ready while Lua ran: under load
                    # this saves a round trip through the scheduler. Bounded, so that
                    # other tasks (accepts, flushes, timers) get their turn.
                    if polls < INLINE_POLLS and poll_ready():
                        polls += 1
                        continue
                    polls = 0
                    self.events_dispatched += count
                    count = 0
                    try:
                        event = await self._next(hub)
                    except trio.EndOfChannel:
                        break
                    round_ends = clock() + ROUND_SECONDS
                count += 1
                try:
                    dispatch[event.__class__](event)
                except Exception:
                    _internal_error(event)
                if clock() > round_ends:
                    if writes.commit is not None and writes.commit_async is not None:
                        await writes.commit_batch()
                    writes.flush()
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    poll_ready()  # (what became ready while the others ran)
                    round_ends = clock() + ROUND_SECONDS
            nursery.cancel_scope.cancel()

    async def _next(self, hub: Hub) -> Event:
        """Wait for an event: a socket the hub reads, or one another task posts.

        Raises:
            trio.EndOfChannel: every sender has closed the channel.
        """
        receive = self._receive
        while True:
            await hub.wait()
            hub.poll()
            try:
                return receive.receive_nowait()
            except trio.WouldBlock:
                # (a ready socket with nothing for Lua: a hang-up seen, a pause, or a
                # TLS handshake's step, whose answer it queued: written now)
                self._writes.flush()
                continue

    def stop_lua(self) -> None:
        """Run no more Lua: drop queued events and suspended coroutines."""
        self.lua_enabled = False
        for token in list(self._pending):
            self._forget(token)

    def drop_owner(self, owner: bytes) -> None:
        """The application *owner* unloads: its waiting coroutines never resume."""
        for token in [t for t, p in self._pending.items() if p.owner == owner]:
            self._forget(token)

    def _forget(self, token: int) -> None:
        entry = self._pending.pop(token)
        if entry.scope is not None:
            entry.scope.cancel()
        self._bridge.drop(token)

    def waits(self, token: int) -> bool:
        """Whether the coroutine of *token* still waits (and no wake-up is on its way)."""
        entry = self._pending.get(token)
        return entry is not None and not entry.woken

    def wake(self, token: int, values: tuple[object, ...] = ()) -> None:
        """Resume a parked coroutine soon (nothing if it no longer waits, or a wake-up
        is on its way already)."""
        entry = self._pending.get(token)
        if entry is not None and not entry.woken:
            entry.woken = True
            self._deliver(Resumed(token, values))

    # -- Lua calls that Python starts -----------------------------------------------------
    async def call(self, call: Callable[[], Any], *, until_waits: bool = False) -> Any:
        """Run *call* (which calls Lua) in the executor's task and wait for its result,
        waiting for a suspension it returns too; with *until_waits*, only until it
        first waits (its result is None then: a main chunk that serves forever counts
        as run once it waits, docs/lua/luasocket.rst).

        Raises:
            RuntimeError: the executor has stopped, or stopped before the call ran.
        """
        done = trio.Event()
        box: list[Any] = []

        def finish(result: Any) -> None:
            box.append(result)
            done.set()

        def start() -> None:
            try:
                result = call()
            except BaseException as exc:
                box.append(exc)
                done.set()
                raise
            suspension = self.suspension_of(result)
            if until_waits and suspension is not None:
                self.settle(suspension, (), _ignore)
                finish(None)
                return
            self.settle(suspension or result, (), finish)

        self._post(Call(start))
        if not self.running:
            raise RuntimeError("the runtime's executor has stopped")
        self.waiting_calls.add(done)
        try:
            await done.wait()
        finally:
            self.waiting_calls.discard(done)
        if not box:
            raise RuntimeError("the runtime's executor stopped before the call ran")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def call_soon(self, call: Callable[[], Any]) -> None:
        """Run *call* (which calls Lua) in the executor's task soon; nobody waits for
        its result (a suspension it returns is resumed as a handler's would be)."""
        self._post(Call(lambda: self.settle(call(), (), _ignore)))

    def adopt(self, token: int, request: Suspension | None) -> None:
        """A coroutine of the application's own waits: the runtime resumes it from
        now on (docs/lua/luasocket.rst); nothing waits for its result."""
        self.settle(request if request is not None else (BY_TOKEN, token), (), _ignore)

    def suspension_of(self, result: Any) -> Suspension | None:
        """The suspension a Lua call's *result* says it waits on, or None."""
        cls = result.__class__
        if cls is Suspension:
            return result  # type: ignore[no-any-return]
        if cls is tuple and len(result) == 2 and result[0] is BY_TOKEN:
            token = result[1]
            found = self._parks.pop(token, None)
            # (a park given up on meanwhile, e.g. its socket closed: it ends at once)
            return Suspension(token, None, *found) if found else Suspension(token, None, -math.inf)
        return None

    # -- suspension ---------------------------------------------------------------
    def settle(self, result: Any, subjects: tuple[Subject, ...], then: Continuation) -> None:
        """Finish a Lua call: continue with its result, or park it if it suspended."""
        cls = result.__class__
        if cls is tuple:
            result = self.suspension_of(result) or result
            cls = result.__class__
        if cls is Suspension:
            for subject in subjects:
                if subject.waiting is None:
                    subject.waiting = deque()
            entry = self._pending[result.token] = _Pending(subjects, then, result.owner)
            if result.work is not None or result.deadline < math.inf:
                entry.scope = trio.CancelScope()
                assert self._nursery is not None
                self._nursery.start_soon(self._await, result, entry.scope)
            if result.parked is not None:
                result.parked(result.token)
            return
        then(result)
        for subject in subjects:
            self._release(subject)

    async def _await(self, suspension: Suspension, scope: trio.CancelScope) -> None:
        work = suspension.work
        with scope:
            if work is None:  # a park with a deadline
                await trio.sleep_until(suspension.deadline)
                self.wake(suspension.token, TIMED_OUT)  # (unless a wake-up came first)
                return
            try:
                values = await work()
            except Exception:
                # The waiting call fails like any call whose Python side failed: logged
                # here, a plain error message for Lua (the host boundary).
                log.exception("internal error in a call that waits")
                values = (None, b"internal error (logged by the runtime)")
            self._post(Resumed(suspension.token, values))

    def _resumed(self, event: Resumed) -> None:
        entry = self._pending.pop(event.token, None)
        if entry is None or not self.lua_enabled:
            return
        if entry.scope is not None:
            entry.scope.cancel()
        result = self._bridge.resume(event.token, *event.values)
        if result.__class__ is tuple and len(result) == 2 and result[0] is BY_TOKEN:
            # Parked again with no deadline (a LuaSocket receive loop's next receive):
            # the same wait goes on under the new token, with no new records.
            token = result[1]
            park = self._parks.get(token)
            if park is not None and park[0] == math.inf and entry.scope is None:
                del self._parks[token]
                entry.woken = False
                entry.owner = park[1]
                self._pending[token] = entry
                if park[2] is not None:
                    park[2](token)
                return
        self.settle(result, entry.subjects, entry.then)

    def _release(self, subject: Subject) -> None:
        backlog = subject.waiting
        subject.waiting = None
        if not backlog:
            return
        while backlog and subject.waiting is None:
            self._dispatch[backlog[0].__class__](backlog.popleft())
        if backlog:
            assert subject.waiting is not None
            backlog.extend(subject.waiting)
            subject.waiting = backlog

    # -- events -------------------------------------------------------------------
    def _reads(self, batch: Reads) -> None:
        batch.open = False  # reads from now on start a new batch, after this one
        items = batch.items
        last: object = items[-1]
        if self._receive.statistics().current_buffer_used:
            last = None  # more events are queued: this batch's replies can wait
        writes = self._writes
        dispatch = self._dispatch
        count = len(items)
        index = 0
        while index < count:
            read = items[index]
            index += 1
            if read.__class__ is DataReceived and index < count:
                index = self._data_many(items, index - 1, last)
                if index < 0:  # (a group of one: dispatched alone, below)
                    index = -index
                else:
                    continue
            writes.now = read is last
            try:
                dispatch[read.__class__](read)
            except Exception:
                _internal_error(read)
        writes.now = False
        self.events_dispatched += len(items) - 1

    def _data_many(self, items: list[Any], start: int, last: object) -> int:
        """Run onData for the connections whose reads follow one another in *items*
        from *start*, in one Lua call (each connection once, and none with bytes kept
        by the rest rule: those go alone). Return the index of the first read not
        handled, or minus that index when the group would be one read only (the caller
        dispatches that one itself, writing its reply at once if it is the last).

        When the group holds the *last* event the executor knows of, what it sent is
        written when the call returns, as a lone last event's reply is (Writes.now):
        else a streaming client, refilling the channel, would hold it to the round's end."""
        following = items[start + 1]
        if following.__class__ is not DataReceived or following.conn is items[start].conn:
            return -(start + 1)
        group: list[Any] = []  # t1, data1, t2, data2, ...
        conns: list[TCPConnection] = []
        seen: set[TCPConnection] = set()
        index, count = start, min(len(items), start + MANY_MAX)
        lua_enabled = self.lua_enabled
        while index < count:
            read = items[index]
            if read.__class__ is not DataReceived:
                break
            conn = read.conn
            inbound = conn.inbound
            if inbound.kept or inbound.unseen or conn in seen:
                break
            seen.add(conn)
            index += 1
            if conn.waiting is not None and held(conn, read):  # (no call per read)
                continue
            data = inbound.take(read.data)
            if inbound.paused:  # (reading waited for this take)
                conn.resume_reading()
            table = conn.table
            if data is None or table is None or conn.state is not CONNECTED or not lua_enabled:
                continue
            group += (table, data)
            conns.append(conn)
        if index == start:  # (the first read has bytes kept: it goes alone)
            return -(start + 1)
        if group:
            try:
                self._run_many(group, conns)
            except Exception:
                log.exception("internal error while dispatching reads")
                for conn in conns:
                    conn.crashed()
            if items[index - 1] is last:
                self._writes.flush()
        return index

    def _run_many(self, group: list[Any], conns: list[TCPConnection]) -> None:
        """Hand *group* to Lua; settle each job that did not return 0 before the
        rest of the group runs (its order with later events stays)."""
        on_data_many = self._on_data_many
        while group:
            result = on_data_many(*group)
            if result == 0:
                return
            at = (result[0] - 1) // 2  # (Lua's index of the pair's table)
            conn, data = conns[at], group[2 * at + 1]
            rest = result[1] if result[1] is not BY_TOKEN else result[1:]
            del group[: 2 * at + 2], conns[: at + 1]
            if rest.__class__ is Suspension or rest.__class__ is tuple:
                self.settle(rest, (conn,), partial(conn.keep, data))
            else:
                conn.keep(data, rest)

    def _data(self, event: DataReceived[TCPConnection]) -> None:
        conn = event.conn
        if conn.waiting is not None and held(conn, event):  # (no call per read)
            return
        inbound = conn.inbound
        data = inbound.take(event.data)
        if inbound.paused:  # (reading waited for this take)
            conn.resume_reading()
        if data is None:
            return  # it waits for its turn (or was a stale one)
        table = conn.table
        if table is None or conn.state is not CONNECTED or not self.lua_enabled:
            return
        rest = self._on_data(table, data)
        cls = rest.__class__
        if cls is Suspension or cls is tuple:
            self.settle(rest, (conn,), lambda r: conn.keep(data, r))
        elif rest or conn.inbound.kept:  # (the usual answer, 0 with nothing kept: free)
            conn.keep(data, rest)

    def _datagram(self, event: DatagramReceived[UDPSocket]) -> None:
        udp = event.socket
        if udp.waiting is not None and held(udp, event):  # (no call per datagram)
            return
        udp.consumed()
        table = udp.table
        if table is None or not self.lua_enabled:
            return
        result = self._on_packet(table, event.data, self._sender(udp, event.sender))
        if result.__class__ is Suspension or result.__class__ is tuple:
            self.settle(result, (udp,), _ignore)

    def _accepted(self, event: Accepted[TCPConnection]) -> None:
        conn = event.conn
        if conn.waiting is not None and held(conn, event):
            return
        if not self.lua_enabled:
            conn.close_now()
            return
        client = self._bridge.new_object(b"TCPClient", conn, event.owner)
        conn.attach(client)
        result = self._on_event(event.server_table, b"onConnection", client)
        if result == self._no_handler:
            conn.disconnect()  # no handler: the connection is closed (docs/design.rst)
            return
        self.settle(result, (conn,), _ignore)

    def _closed(self, event: Closed[TCPConnection]) -> None:
        conn = event.conn
        if conn.waiting is not None and held(conn, event):
            return
        table = conn.detach()
        if table is None or not self.lua_enabled:
            conn.forget()
            return
        result = self._on_event(table, b"onDisconnection", None)
        self.settle(result, (conn,), lambda _: conn.forget())

    def _call(self, event: Call) -> None:
        if self.lua_enabled:
            event.function()


def held(subject: Subject, event: Event) -> bool:
    """The rule that keeps a socket's events in order: while one of its handlers is
    suspended, its events wait in its backlog (True: *event* waits there; it is
    dispatched when the handler finishes, :meth:`Executor.settle`)."""
    waiting = subject.waiting
    if waiting is None:
        return False
    waiting.append(event)
    return True


def _ignore(_: object) -> None:
    pass


def _internal_error(event: Event) -> None:
    """Handling *event* failed unexpectedly: log it, and close the socket it was for
    (the others go on)."""
    log.exception("internal error while dispatching %r", event)
    handle = getattr(event, "conn", None) or getattr(event, "socket", None)
    if handle is not None:
        try:
            handle.crashed()
        except Exception:
            log.exception("internal error while closing %r", handle)
