"""The ``trio-mona`` command line (docs/cli.rst).

Exit codes: 0 after a signal, the code an application gave ``os.exit``, 1 when the
applications cannot start, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import trio

from ._core.config import ENGINES, ConfigError, Settings, load_config, parse_setting
from ._core.errors import StartupError
from ._core.levels import NOTE, TRACE
from ._data.monaserver import import_into, read_folder
from ._data.persistence import open_store
from ._data.redis import is_redis_url
from ._data.store import StoreError
from ._runtime import Runtime, open_runtime
from ._signals import catching_stop_signals
from ._supervisor import (
    Supervisor,
    counters,
    format_statistics,
    report_ready,
    statistics_line,
    tell_supervisor,
)

log = logging.getLogger("trio_mona")

LEVELS = {
    "FATAL": logging.CRITICAL,
    "CRITIC": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "NOTE": NOTE,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": TRACE,
}


def _level(text: str) -> int:
    try:
        return LEVELS[text.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown level {text!r} (choose from {', '.join(LEVELS)})"
        ) from None


def _setting(text: str) -> str:
    try:
        parse_setting(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _port_of(section: str) -> Callable[[str], list[str]]:
    """``--http``/``--rtmp [HOST:]PORT`` as the settings it stands for."""

    def settings(text: str) -> list[str]:
        host, colon, port = text.rpartition(":")
        if not port.isdigit() or int(port) > 65535:
            raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}")
        found = [f"{section}.port={int(port)}"]
        if colon:
            found.append(f"{section}.host={host.strip('[]')}")
        return found

    return settings


def _file_of(key: str) -> Callable[[str], list[str]]:
    """``--certificate``/``--key FILE`` as the settings it stands for: both TLS ports'."""
    return lambda text: [f"HTTPS.{key}={text}", f"RTMPS.{key}={text}"]


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 1024:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 1024, got {text!r}")
    return count


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-mona", description="Serve MonaServer-style Lua applications on Trio."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve the applications in a folder until a signal")
    run.add_argument("apps_dir", metavar="APPS_DIR", help="folder whose main.lua is the root app")
    run.add_argument("--config", metavar="FILE.ini", help="configuration file (INI)")
    run.add_argument(
        "--set",
        dest="settings",
        type=_setting,
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=[],
        help="override one configuration entry (repeatable)",
    )
    run.add_argument(
        "--http",
        type=_port_of("HTTP"),
        metavar="[HOST:]PORT",
        help="serve HTTP clients on this port (0: a free one; docs: clients/http)",
    )
    run.add_argument(
        "--rtmp",
        type=_port_of("RTMP"),
        metavar="[HOST:]PORT",
        help="serve RTMP encoders and players on this port (0: a free one; docs: clients/rtmp)",
    )
    run.add_argument(
        "--https",
        type=_port_of("HTTPS"),
        metavar="[HOST:]PORT",
        help="serve HTTP and WebSocket clients over TLS on this port (docs: clients/tls)",
    )
    run.add_argument(
        "--rtmps",
        type=_port_of("RTMPS"),
        metavar="[HOST:]PORT",
        help="serve RTMP encoders and players over TLS on this port (docs: clients/tls)",
    )
    run.add_argument(
        "--certificate",
        type=_file_of("certificate"),
        metavar="FILE",
        help="the TLS ports' certificate (PEM; with --key)",
    )
    run.add_argument(
        "--key", type=_file_of("key"), metavar="FILE", help="the TLS ports' private key (PEM)"
    )
    run.add_argument("--log-level", type=_level, default=logging.INFO, metavar="LEVEL")
    run.add_argument("--lua", choices=ENGINES, default=None, help="Lua engine (default lua54)")
    run.add_argument(
        "--data",
        metavar="PATH",
        help="the SQLite file holding `data`, redis://HOST:PORT/DB, or none",
    )
    run.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="serve with N worker processes sharing the ports (docs: scaling)",
    )
    # (what the supervisor gives each worker: its number, and the pipe to say it started)
    run.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    run.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    run.epilog = "Arguments after -- reach Lua as mona.configs['arguments.1'], ..."
    moving = commands.add_parser(
        "import-data", help="load a MonaServer data/ folder into the store of `data`"
    )
    moving.add_argument("mona_data", metavar="MONA_DATA_DIR", help="MonaServer's data folder")
    target = moving.add_mutually_exclusive_group(required=True)
    target.add_argument("--data", metavar="PATH", help="the SQLite file to load it into")
    target.add_argument(
        "--apps", metavar="APPS_DIR", help="into the default data file of these applications"
    )
    return parser


def _import_data(args: argparse.Namespace) -> int:
    folder = Path(args.mona_data)
    if not folder.is_dir():
        print(f"trio-mona: {folder}: no such folder", file=sys.stderr)
        return 1
    try:
        imported = read_folder(folder)
    except OSError as exc:
        print(f"trio-mona: {folder}: cannot read: {exc}", file=sys.stderr)
        return 1
    try:
        store = open_store(args.data or "", Path(args.apps or ".").resolve(), "normal")
        try:
            written = import_into(store, imported)
        finally:
            store.close()
    except (StartupError, StoreError) as exc:
        print(f"trio-mona: {exc}", file=sys.stderr)
        return 1
    for reason in imported.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"imported {written} entries from {folder} into {store.name}")
    return 0


async def _statistics_on_signal(runtime: Runtime, supervisor: int | None) -> None:
    """On SIGUSR1: the runtime's statistics, in the log (or to the supervisor)."""
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            statistics = runtime.statistics()
            if supervisor is None:
                log.log(NOTE, "statistics: %s", format_statistics(counters(statistics)))
            else:
                tell_supervisor(supervisor, statistics_line(statistics))


async def _certificates_on_signal(runtime: Runtime, hangups: AsyncIterator[int]) -> None:
    """On SIGHUP: the TLS ports' certificates read again (docs/clients/tls.rst)."""
    async for _ in hangups:
        runtime.reload_certificates()


async def _serve(args: argparse.Namespace) -> int:
    # The signal handlers come first: a signal stops even a handler that never returns
    # (see _signals.py), and one during the start ends it with exit code 0.
    stop = trio.Event()
    # (SIGHUP is caught from the start: one sent while the runtime starts waits for it)
    with catching_stop_signals(lambda signum: stop.set()) as received, \
            trio.open_signal_receiver(signal.SIGHUP) as hangups:  # fmt: skip
        try:
            async with open_runtime(
                args.apps_dir,
                config_file=args.config,
                settings=args.settings,
                engine=args.lua,
                arguments=args.arguments,
                data=args.data,
            ) as runtime:
                report_ready(args.ready_fd)
                async with trio.open_nursery() as nursery:

                    async def on_exit() -> None:
                        await runtime.wait_for_exit()
                        stop.set()

                    nursery.start_soon(on_exit)
                    nursery.start_soon(_statistics_on_signal, runtime, args.ready_fd)
                    nursery.start_soon(_certificates_on_signal, runtime, hangups)
                    await stop.wait()
                    nursery.cancel_scope.cancel()
                if runtime.exit_code is not None:
                    return runtime.exit_code
                log.info("%s received: shutting down", signal.Signals(received[0]).name)
        except StartupError:
            if not received:
                raise
            log.info("%s received during the start", signal.Signals(received[0]).name)
    return 0


def _without_workers(words: Sequence[str]) -> list[str]:
    """The command line of ``run`` without its ``--workers`` option (for each worker)."""
    kept: list[str] = []
    value_next = False
    for word in words:
        if value_next:
            value_next = False
        elif word == "--workers":
            value_next = True
        elif not word.startswith("--workers="):
            kept.append(word)
    return kept


def _worker_count(args: argparse.Namespace) -> tuple[int, float]:
    """How many workers to start (``--workers``, else ``trio_mona.workers``), and the
    linger time they stop within. Several workers need ``data`` that is not one
    process's SQLite file.

    Raises:
        ConfigError: a bad setting, or workers with a SQLite file.
    """
    settings = Settings.from_config(load_config(args.config, args.settings))
    workers = args.workers if args.workers is not None else settings.workers
    data = args.data if args.data is not None else settings.data
    if workers > 1 and data not in (":memory:", "none") and not is_redis_url(data):
        raise ConfigError(
            f"{workers} workers cannot share `data` in one SQLite file (a file is one "
            "process's): use --data redis://HOST:PORT/DB (shared), or --data :memory: "
            "(each worker keeps its own, nothing is kept) (docs: scaling)"
        )
    return workers, settings.linger


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trio-mona`` and ``python -m trio_mona``; returns the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in words:
        split = words.index("--")
        words, extra = words[:split], words[split + 1 :]
    args = _parser().parse_args(words)
    args.arguments = extra
    for port in ("http", "rtmp", "https", "rtmps", "certificate", "key"):
        if getattr(args, port, None):
            args.settings = [*getattr(args, port), *args.settings]  # (a --set wins)
    if args.command == "import-data":
        return _import_data(args)
    who = f"worker {args.worker} " if args.worker else ""
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format=f"%(asctime)s {who}%(levelname)-6s %(name)s %(filename)s:%(lineno)d %(message)s",
    )
    if args.worker is None:
        try:
            workers, linger = _worker_count(args)
        except ConfigError as exc:
            print(f"trio-mona: {exc}", file=sys.stderr)
            return 1
        if workers > 1:
            options = [*_without_workers(words[1:]), "--set", "trio_mona.reuse_port=true"]
            return trio.run(Supervisor(workers, options, extra, linger).run)
    try:
        return trio.run(_serve, args)
    except StartupError as exc:
        print(f"trio-mona: {exc}", file=sys.stderr)
        return 1


def console_main() -> None:
    """The ``trio-mona`` console script."""
    sys.exit(main())
