"""``trio-mona run --workers N``: a supervisor process and N worker processes
(docs/scaling.rst).

Each worker is a whole ``trio-mona run`` of the same applications with
``trio_mona.reuse_port`` on, so the kernel spreads the connections (and datagrams) of
every port they open among them. The supervisor serves nothing itself: it starts the
workers, restarts one that dies (after a pause that doubles up to
:data:`MAX_BACKOFF` while it keeps dying), and on SIGINT or SIGTERM stops them all and
exits 0. A worker tells it through a pipe when its applications have started, so that
one that cannot start (a port another program holds, a broken main.lua) stops
everything with exit code 1 instead of being restarted for ever.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import attrs
import trio

from ._signals import catching_stop_signals

log = logging.getLogger("trio_mona")

#: Seconds before the first restart of a worker that died; doubled for each death in a
#: row, up to MAX_BACKOFF.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: A worker that ran this long before it died is restarted after FIRST_BACKOFF again.
STABLE_SECONDS = 30.0
#: What a worker writes on its ready pipe once its applications have started.
READY = b"ready\n"


@attrs.define
class _Worker:
    number: int
    process: trio.Process | None = None
    started: float = 0.0
    backoff: float = FIRST_BACKOFF


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
            ready = await self._start(worker)
            process = worker.process
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            if not ready:
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
                "worker %d (pid %d) died (%s) after %.1f s: restarting in %g s",
                worker.number, process.pid, _how(code), ran, worker.backoff,
            )  # fmt: skip
            await trio.sleep(worker.backoff)
            worker.backoff = min(worker.backoff * 2, MAX_BACKOFF)

    async def _start(self, worker: _Worker) -> bool:
        """Start *worker*'s process; True once its applications have started, False if
        it ended before that."""
        read_end, write_end = os.pipe()
        command = [
            sys.executable, "-m", "trio_mona", "run", *self._options,
            "--worker", str(worker.number), "--ready-fd", str(write_end), "--", *self._extra,
        ]  # fmt: skip
        try:
            worker.process = await trio.lowlevel.open_process(
                command, pass_fds=(write_end,), stdin=subprocess.DEVNULL
            )
        finally:
            os.close(write_end)
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.number, worker.process.pid)
        async with trio.lowlevel.FdStream(read_end) as pipe:
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = await pipe.receive_some()
                if not chunk:
                    return False
                answer += chunk
        return answer == READY

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


def report_ready(fd: int | None) -> None:
    """In a worker: its applications have started (see :class:`Supervisor`)."""
    if fd is not None:
        try:
            os.write(fd, READY)
            os.close(fd)
        except OSError:
            pass  # the supervisor is gone: the worker serves on until stopped
