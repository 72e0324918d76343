"""`data` across real `trio-mona` processes (docs/lua/data.rst): killed with SIGKILL
right after a reply, a data file it cannot use, two processes on one file, and
MonaServer's data folder imported."""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .helpers import write_app

pytestmark = pytest.mark.slow

KV = Path(__file__).resolve().parent.parent / "lua_apps" / "kv"


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_mona", *args]


@contextmanager
def kv_server(store: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The kv example on a free port, keeping its data in *store*."""
    process = subprocess.Popen(
        command("run", str(KV), "--set", "kv.port=0", "--data", str(store), *extra),
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    try:
        deadline = time.monotonic() + 20
        for line in process.stderr:
            if "kv: listening on 127.0.0.1:" in line:
                yield process, int(line.split("127.0.0.1:")[1].split()[0])
                return
            assert time.monotonic() < deadline
        raise AssertionError(f"kv did not start (exit {process.wait()})")
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


def ask(client: socket.socket, line: str) -> str:
    client.sendall(line.encode() + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = client.recv(4096)
        assert chunk, "closed"
        reply += chunk
    return reply.decode().strip()


@pytest.mark.parametrize("engine", ["lua54", "luajit21"])
def test_a_value_whose_reply_was_received_survives_kill_9(tmp_path: Path, engine: str) -> None:
    store = tmp_path / "kv.sqlite"
    with kv_server(store, "--lua", engine) as (process, port):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        for i in range(200):
            assert ask(client, f"set k{i} v{i}") == "ok"
        # Pipelined: the last "ok" arrives, and the process dies at once.
        client.sendall(b"".join(f"set p{i} {i}\n".encode() for i in range(500)))
        received = b""
        while received.count(b"\n") < 500:
            received += client.recv(65536)
        process.send_signal(signal.SIGKILL)
        process.wait()
        client.close()
    with kv_server(store, "--lua", engine) as (_, port):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert ask(client, "get k199") == "v199"
        assert ask(client, "get p499") == "499"
        assert ask(client, "count") == "700"
        client.close()


def test_two_processes_on_one_file_the_second_gets_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "kv.sqlite"
    with kv_server(store) as (_, port):
        second = subprocess.run(
            command("run", str(KV), "--set", "kv.port=0", "--data", str(store)),
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f"trio-mona: {store}: in use by another process (one process per data file)"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            assert ask(client, "set still serving") == "ok"


def without_file_override() -> None:
    """In the child: drop the capabilities that let root read and write any file, so
    that file permissions hold for it too (a no-op for other users)."""
    if os.getuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("corrupt", "not an SQLite database (a corrupt or foreign file)"),
        ("foreign", "an SQLite database that is not trio_mona's data"),
        ("unreadable", "cannot open the data file (permissions?)"),
        ("read-only", "the data file is read-only"),
        ("no folder", "cannot open the data file: its folder does not exist"),
    ],
)
def test_a_data_file_it_cannot_use_is_one_line_and_exit_1_and_left_alone(
    tmp_path: Path, case: str, why: str
) -> None:
    apps = write_app(tmp_path / "apps", "data.touched = true; os.exit(0)")
    store = tmp_path / "data.sqlite"
    if case == "corrupt":
        store.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    elif case == "foreign":
        db = sqlite3.connect(store)
        db.execute("CREATE TABLE users (name TEXT)")
        db.commit()
        db.close()
    elif case in ("unreadable", "read-only"):
        first = subprocess.run(command("run", str(apps), "--data", str(store)), timeout=20,
                               capture_output=True, text=True)  # fmt: skip
        assert first.returncode == 0, first.stderr
    elif case == "no folder":
        store = tmp_path / "missing" / "data.sqlite"
    if case == "unreadable":
        store.chmod(0o000)
    elif case == "read-only":
        store.chmod(0o444)
    before = digest(store) if store.exists() and case != "unreadable" else None
    found = subprocess.run(
        command("run", str(apps), "--data", str(store)),
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=without_file_override,
    )
    assert found.returncode == 1
    assert found.stderr.strip().splitlines()[-1] == f"trio-mona: {store}: {why}"
    if before is not None:
        assert digest(store) == before


def test_import_data_loads_a_monaserver_folder(tmp_path: Path) -> None:
    mona = tmp_path / "data"
    values = {"users/alice/age": "42", "users/bob": "x y", "flag": "true", "off": "false"}
    for key, value in values.items():
        (mona / key).mkdir(parents=True)
        name = hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()
        (mona / key / name).write_text(value)
    (mona / "torn").mkdir()  # a write that never finished: its name is not its MD5
    (mona / "torn" / ("0" * 32)).write_text("half")
    (mona / "empty").mkdir()
    store = tmp_path / "imported.sqlite"
    found = subprocess.run(
        command("import-data", str(mona), "--data", str(store)), capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    assert f"imported 6 entries from {mona} into {store}" in found.stdout
    assert "its name is not its content's MD5" in found.stderr
    apps = write_app(tmp_path / "apps", """
        print("seen", data.users.alice.age, data.users.bob, data.flag, type(data.off), data.torn)
        os.exit(0)
    """)  # fmt: skip
    shown = subprocess.run(command("run", str(apps), "--data", str(store)), capture_output=True,
                           text=True, timeout=20)  # fmt: skip
    assert "seen\t42\tx y\ttrue\tboolean\tnil" in shown.stderr


def test_import_data_into_the_default_file_of_an_applications_folder(tmp_path: Path) -> None:
    mona = tmp_path / "data"
    (mona / "greeting").mkdir(parents=True)
    name = hashlib.md5(b"hello", usedforsecurity=False).hexdigest()
    (mona / "greeting" / name).write_bytes(b"hello")
    apps = write_app(tmp_path / "apps", "print('found', data.greeting) os.exit(0)")
    found = subprocess.run(command("import-data", str(mona), "--apps", str(apps)),
                           capture_output=True, text=True)  # fmt: skip
    assert found.returncode == 0, found.stderr
    shown = subprocess.run(command("run", str(apps)), capture_output=True, text=True, timeout=20)
    assert "found\thello" in shown.stderr


def test_import_data_into_a_file_in_use_fails_clearly(tmp_path: Path) -> None:
    store = tmp_path / "kv.sqlite"
    (tmp_path / "data").mkdir()
    with kv_server(store):
        found = subprocess.run(command("import-data", str(tmp_path / "data"), "--data", str(store)),
                               capture_output=True, text=True)  # fmt: skip
    assert found.returncode == 1
    assert "in use by another process" in found.stderr


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of *size* mounted at *folder* (root only: CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_acknowledges_nothing_it_could_not_commit(tmp_path: Path) -> None:
    # On a 1 MiB disk the commits start failing: from then on no "ok" comes back (the
    # replies wait for a commit that works), and after kill -9 every "ok" received is
    # in the data (it answered "ok" to 3,000 writes and lost 2,000 of them).
    value = "v" * 2000
    acknowledged: list[str] = []
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        store = disk / "kv.sqlite"
        with kv_server(store, "--set", "trio_mona.data_sync=full") as (process, port):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.settimeout(2)
            try:
                for i in range(3000):
                    assert ask(client, f"set k{i} {value}") == "ok"
                    acknowledged.append(f"k{i}")
            except TimeoutError:
                pass  # (held: this one's commit failed)
            assert 0 < len(acknowledged) < 3000  # (the disk filled up on the way)
            process.send_signal(signal.SIGKILL)
            process.wait()
            client.close()
        copy = tmp_path / "copy"
        copy.mkdir()
        for file in disk.iterdir():
            (copy / file.name).write_bytes(file.read_bytes())
    with kv_server(copy / "kv.sqlite") as (_, port):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert ask(client, "count") == str(len(acknowledged))
        for key in acknowledged[:: max(1, len(acknowledged) // 50)] + acknowledged[-3:]:
            assert ask(client, f"get {key}") == value
        client.close()
