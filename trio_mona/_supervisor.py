"""``trio-mona run --workers N``: a supervisor process and N worker processes
(docs/scaling.rst).

Each worker is a whole ``trio-mona run`` of the same applications with
``trio_mona.reuse_port`` on, so the kernel spreads the connections (and datagrams) of
every port they open among them. The supervisor serves nothing itself: it starts the
workers, restarts one that dies (after a pause that doubles up to
:data:`MAX_BACKOFF` while it keeps dying), and on SIGINT or SIGTERM stops them all and
exits 0. A worker tells it through a pipe when its applications have started, so that
one that cannot start on its own (it exits: a port another program holds, a broken
main.lua) stops everything with exit code 1 instead of being restarted for ever; one
that a signal kills (the OOM killer, an operator) is restarted, starting or not. On
SIGUSR1 each worker writes its statistics to the same pipe and the supervisor logs
them and their sum.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs
import trio

from ._core.levels import NOTE
from ._signals import catching_stop_signals

if TYPE_CHECKING:
    from ._runtime import RuntimeStatistics

log = logging.getLogger("trio_mona")

#: Seconds before the first restart of a worker that died; doubled for each death in a
#: row, up to MAX_BACKOFF.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: A worker that ran this long before it died is restarted after FIRST_BACKOFF again.
STABLE_SECONDS = 30.0
#: What a worker writes on its pipe once its applications have started; then a line
#: of STATISTICS and JSON after each SIGUSR1.
READY = b"ready"
STATISTICS = b"statistics "
#: The counters of RuntimeStatistics that add up over workers.
COUNTERS = (
    "tcp_connections", "tcp_servers", "udp_sockets", "luasockets", "events_dispatched",
    "bytes_received", "bytes_sent", "bytes_queued", "bytes_unsent", "lua_memory",
    "data_commits", "data_commits_heard",
)  # fmt: skip
#: Seconds the supervisor waits for the workers' statistics.
STATISTICS_WAIT = 2.0


@attrs.define
class _Worker:
    number: int
    process: trio.Process | None = None
    started: float = 0.0
    backoff: float = FIRST_BACKOFF
    ready: bool = False
    #: Its last statistics, and the event of the next ones.
    statistics: dict[str, int] | None = None
    answered: trio.Event = attrs.field(factory=trio.Event)


class Supervisor:
    """Runs *count* workers, each ``python -m trio_mona run OPTIONS --worker K -- EXTRA``."""

    def __init__(
        self, count: int, options: Sequence[str], extra: Sequence[str], linger: float
    ) -> None:
        self._workers = [_Worker(number) for number in range(1, count + 1)]
        #: ``run``'s options and the arguments after ``--``, for each worker.
        self._options, self._extra = list(options), list(extra)
        #: How long a worker may take to stop before it is killed.
        self._grace = linger + 10.0
        self._stopping = False
        self._stop = trio.Event()
        self.exit_code = 0

    async def run(self) -> int:
        with catching_stop_signals(self._on_signal):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._statistics_on_signal)
                nursery.start_soon(self._certificates_on_signal)
                for worker in self._workers:
                    nursery.start_soon(self._keep_running, worker)
                await self._stop.wait()
                self._stopping = True
                await self._stop_all()
                nursery.cancel_scope.cancel()
        return self.exit_code

    def _on_signal(self, signum: int) -> None:
        if not self._stopping:
            log.info("%s received: stopping the workers", signal.Signals(signum).name)
        self._stop.set()

    def _fail(self, code: int) -> None:
        if not self._stop.is_set():
            self.exit_code = code
        self._stop.set()

    async def _keep_running(self, worker: _Worker) -> None:
        while not self._stopping:
            code = await self._run_once(worker)
            process = worker.process
            assert process is not None
            if self._stopping:
                return
            if not worker.ready and code >= 0:
                log.error("worker %d could not start (%s): stopping", worker.number, _how(code))
                self._fail(1)
                return
            if code == 0:  # an application called os.exit(0): the server stops
                await trio.sleep(0.1)  # (unless a signal to the whole group stopped it)
                if not self._stopping:
                    log.info("worker %d stopped on its own: stopping the others", worker.number)
                self._fail(0)
                return
            ran = time.monotonic() - worker.started
            worker.backoff = FIRST_BACKOFF if ran >= STABLE_SECONDS else worker.backoff
            log.error(
                "worker %d (pid %d) died (%s) after %.1f s%s: restarting in %g s",
                worker.number, process.pid, _how(code), ran,
                "" if worker.ready else ", while starting", worker.backoff,
            )  # fmt: skip
            await trio.sleep(worker.backoff)
            worker.backoff = min(worker.backoff * 2, MAX_BACKOFF)

    async def _run_once(self, worker: _Worker) -> int:
        """Run *worker*'s process until it ends, reading its pipe; its exit code."""
        read_end, write_end = os.pipe()
        command = [
            sys.executable, "-m", "trio_mona", "run", *self._options,
            "--worker", str(worker.number), "--ready-fd", str(write_end), "--", *self._extra,
        ]  # fmt: skip
        worker.ready = False
        try:
            worker.process = process = await trio.lowlevel.open_process(
                command, pass_fds=(write_end,), stdin=subprocess.DEVNULL
            )
        finally:
            os.close(write_end)
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.number, process.pid)
        async with trio.lowlevel.FdStream(read_end) as pipe, trio.open_nursery() as nursery:
            nursery.start_soon(self._read_pipe, worker, pipe)
            code = await process.wait()
            # (what it wrote before it ended is read to the end of the pipe)
            nursery.cancel_scope.deadline = trio.current_time() + 1.0
        return code

    async def _read_pipe(self, worker: _Worker, pipe: trio.lowlevel.FdStream) -> None:
        pending = b""
        while chunk := await pipe.receive_some():
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line == READY:
                    worker.ready = True
                elif line.startswith(STATISTICS):
                    try:
                        values = json.loads(line[len(STATISTICS) :])
                    except ValueError:
                        continue
                    worker.statistics = {k: int(values.get(k, 0)) for k in COUNTERS}
                    worker.answered.set()

    async def _certificates_on_signal(self) -> None:
        """On SIGHUP: every worker reads its TLS certificates again (docs/clients/tls.rst)."""
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                for worker in self._workers:
                    if worker.ready and worker.process is not None:
                        worker.process.send_signal(signal.SIGHUP)

    async def _statistics_on_signal(self) -> None:
        """On SIGUSR1: every worker's statistics and their sum, in the log."""
        with trio.open_signal_receiver(signal.SIGUSR1) as signals:
            async for _ in signals:
                running = [w for w in self._workers if w.ready and w.process is not None]
                for worker in running:
                    worker.answered = trio.Event()
                    worker.statistics = None
                    assert worker.process is not None
                    worker.process.send_signal(signal.SIGUSR1)
                with trio.move_on_after(STATISTICS_WAIT):
                    for worker in running:
                        await worker.answered.wait()
                total = dict.fromkeys(COUNTERS, 0)
                for worker in self._workers:
                    if worker.statistics is None or worker not in running:
                        log.log(NOTE, "statistics, worker %d: no answer", worker.number)
                        continue
                    log.log(NOTE, "statistics, worker %d: %s", worker.number,
                            format_statistics(worker.statistics))  # fmt: skip
                    for key in COUNTERS:
                        total[key] += worker.statistics[key]
                log.log(NOTE, "statistics, all workers: %s", format_statistics(total))

    async def _stop_all(self) -> None:
        """SIGTERM to every worker; SIGKILL to those still running after the grace time."""
        running = [w.process for w in self._workers if w.process and w.process.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        with trio.move_on_after(self._grace):
            for process in running:
                await process.wait()
        for process in running:
            if process.returncode is None:
                log.error("worker (pid %d) did not stop within %g s: killed", process.pid,
                          self._grace)  # fmt: skip
                process.kill()
                await process.wait()


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def format_statistics(values: Mapping[str, int]) -> str:
    return " ".join(f"{key}={values[key]}" for key in COUNTERS)


def counters(statistics: RuntimeStatistics) -> dict[str, int]:
    return {key: int(getattr(statistics, key)) for key in COUNTERS}


def tell_supervisor(fd: int | None, line: bytes) -> None:
    """In a worker: write *line* on the pipe to the supervisor (see :class:`Supervisor`)."""
    if fd is not None:
        try:
            os.write(fd, line + b"\n")
        except OSError:
            pass  # the supervisor is gone: the worker serves on until stopped


def report_ready(fd: int | None) -> None:
    """In a worker: its applications have started."""
    tell_supervisor(fd, READY)


def statistics_line(statistics: RuntimeStatistics) -> bytes:
    return STATISTICS + json.dumps(counters(statistics)).encode()
