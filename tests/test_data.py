"""The persistent `data` tree (docs/lua/data.rst): MonaServer's rules, over a real
SQLite file, across restarts of a real runtime."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_mona

from .helpers import lua, messages, write_app

pytestmark = pytest.mark.trio


async def run_with(folder: Path, store: Path, code: str, *, engine: str, app: str = "") -> Any:
    """Start the applications in *folder* on *store*, run *code* in *app*, stop."""
    async with trio_mona.open_runtime(folder, engine=engine, data=store) as runtime:
        return await trio_mona.testing.run_lua(runtime, code, app=app)


def rows(store: Path) -> dict[bytes, object]:
    """What the file holds (read once no runtime has it open)."""
    db = sqlite3.connect(store)
    try:
        return dict(db.execute("SELECT path, value FROM data"))
    finally:
        db.close()


def change_log(store: Path) -> Path:
    return store.with_name(store.name + "-log")


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    return write_app(tmp_path / "apps", "")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "data.sqlite"


async def test_values_persist_numbers_as_strings_booleans_as_booleans(
    apps: Path, store: Path, engine: str
) -> None:
    stored = "data.n = 10; data.f = 1.5; data.s = 'x\\0y'; data.yes = true; data.no = false"
    assert await run_with(apps, store, stored + "; return data.n, data.f", engine=engine) == (
        b"10",
        b"1.5",
    )
    found = await run_with(
        apps,
        store,
        "return data.n, data.f, data.s, data.yes, data.no, type(data.no)",
        engine=engine,
    )
    assert found == (b"10", b"1.5", b"x\x00y", True, False, b"boolean")
    assert rows(store) == {b"n": b"10", b"f": b"1.5", b"s": b"x\x00y", b"yes": 1, b"no": 0}


async def test_a_table_becomes_a_persistent_subtree(apps: Path, store: Path, engine: str) -> None:
    await run_with(apps, store, "data.t = {1, 2, x = {y = 'z', e = {}}}", engine=engine)
    found = await run_with(
        apps,
        store,
        "local t = data.t return t[1], t['2'], t.x.y, type(t.x.e), next(t.x.e), t.x == data.t.x",
        engine=engine,
    )
    assert found == (b"1", b"2", b"z", b"table", None, True)


async def test_the_root_sees_the_whole_tree_and_an_application_its_subtree(
    apps: Path, store: Path, engine: str
) -> None:
    write_app(apps / "a" / "b", "data.mine = 'b'; if not data.list then data.list = {'x'} end")
    found = await run_with(
        apps, store, "return children('a/b') ~= nil, data.a.b.mine, data.a.b.list[1]", engine=engine
    )
    assert found == (True, b"b", b"x")
    found = await run_with(
        apps, store, "return data.mine, super.data.b.mine", engine=engine, app="/a/b"
    )
    assert found == (b"b", b"b")  # (super of /a/b is /a: its data holds b)


async def test_an_applications_data_reads_its_parents_entry(
    apps: Path, store: Path, engine: str
) -> None:
    write_app(apps / "a", "")
    code = "data.a = {k = 'from the root'}; return children.a.data.k"
    assert await run_with(apps, store, code, engine=engine) == b"from the root"


async def test_assigning_over_a_subtree_is_refused_until_it_is_deleted(
    apps: Path, store: Path, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    code = """
    data.t = {x = 1}
    data.t = "over"
    data.t = {y = 2}
    local refused = data.t.x
    data.t = nil
    data.t = "now a value"
    return refused, data.t
    """
    assert await run_with(apps, store, code, engine=engine) == (b"1", b"now a value")
    errors = messages(caplog, logging.ERROR)
    assert sum("data.t is a table: assign nil to it first" in m for m in errors) == 2
    assert rows(store) == {b"t": b"now a value"}


async def test_nil_deletes_a_subtree_with_everything_below_it(
    apps: Path, store: Path, engine: str
) -> None:
    await run_with(apps, store, "data.keep = 1; data.t = {a = {b = {c = 1}}, d = 2}", engine=engine)
    assert len(rows(store)) == 6
    await run_with(apps, store, "data.t = nil", engine=engine)
    assert rows(store) == {b"keep": b"1"}
    assert await run_with(apps, store, "return data.t", engine=engine) is None


async def test_a_value_can_become_a_table(apps: Path, store: Path, engine: str) -> None:
    await run_with(apps, store, "data.v = 'x'; data.v = {1}", engine=engine)
    assert await run_with(apps, store, "return data.v[1]", engine=engine) == b"1"


async def test_length_counts_the_values_at_that_level(apps: Path, store: Path, engine: str) -> None:
    code = """
    data.t = {1, 2, 3, sub = {4}, x = true}
    data.t[#data.t + 1] = "next"
    return data.t.count, data.t[5]
    """
    # (LuaJIT ignores __len on tables: there `t.count` is the portable count)
    found = await run_with(apps, store, code, engine=engine)
    assert found[0] == (5 if engine == "lua54" else 4)
    if engine == "lua54":
        assert found[1] == b"next"  # (# counts x too, as MonaServer's does)
        assert await run_with(apps, store, "return #data.t, #data.t.sub, #data", engine=engine) == (
            5,
            1,
            0,
        )


async def test_pairs_and_ipairs_walk_data_tables(apps: Path, store: Path, engine: str) -> None:
    code = """
    data.t = {"a", "b", "c", x = 1, sub = {}}
    local keys = {}
    for k, v in pairs(data.t) do keys[#keys + 1] = k .. "=" .. type(v) end
    table.sort(keys)
    local values = {}
    for i, v in ipairs(data.t) do values[i] = v end
    return table.concat(keys, ","), table.concat(values, ",")
    """
    found = await run_with(apps, store, code, engine=engine)
    assert found == (b"1=string,2=string,3=string,sub=table,x=string", b"a,b,c")


async def test_a_number_key_and_its_decimal_text_are_one_entry(
    apps: Path, store: Path, engine: str
) -> None:
    code = """
    data.t = {}
    data.t[1] = "one"; data.t["2"] = "two"; data.t[3.0] = "three"; data.t[0.5] = "half"
    return data.t["1"], data.t[2], data.t["3"], data.t["0.5"]
    """
    assert await run_with(apps, store, code, engine=engine) == (b"one", b"two", b"three", b"half")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("print", "cannot store a function in data.bad"),
        ("coroutine.create(print)", "cannot store a thread in data.bad"),
        ("io.stdout", "cannot store a userdata in data.bad"),
        ("{ok = 1, f = print}", "data.bad.f is a function"),
        ("cyclic", "data.bad.inner.back is cyclic"),
        ("{[true] = 1}", "data.bad has a boolean key"),
        ("{{{{}}}}", None),
        ("data", "data.bad is data, which would hold itself"),
    ],
)
async def test_what_data_cannot_hold_is_refused_and_nothing_is_stored(
    apps: Path, store: Path, value: str, why: str | None
) -> None:
    code = f"""
    local cyclic = {{inner = {{}}}}; cyclic.inner.back = cyclic
    local ok, err = pcall(function() data.bad = {value} end)
    return ok, err, data.bad
    """
    ok, err, left = await run_with(apps, store, code, engine="lua54")
    if why is None:
        assert ok
        assert left is not None
        return
    assert not ok
    assert why in err.decode()
    assert left is None
    assert rows(store) == {}


async def test_a_data_table_copied_inside_itself_is_refused(apps: Path, store: Path) -> None:
    code = """
    data.a = {}
    local ok1, err1 = pcall(function() data.a.b = data.a end)
    local ok2, err2 = pcall(function() data.a.c = {x = {y = data.a}} end)
    local left = 0
    for _ in pairs(data.a) do left = left + 1 end
    return ok1, err1, ok2, err2, left
    """
    ok1, err1, ok2, err2, left = await run_with(apps, store, code, engine="lua54")
    assert (ok1, ok2, left) == (False, False, 0)
    assert b"data.a.b is data.a, which would hold itself" in err1
    assert b"data.a.c.x.y is data.a, which would hold itself" in err2


async def test_bad_keys_raise(apps: Path, store: Path) -> None:
    code = "return pcall(function() data[true] = 1 end)"
    ok, err = await run_with(apps, store, code, engine="lua54")
    assert not ok
    assert b"cannot use a boolean key" in err


async def test_a_data_table_copies_in_and_converts_as_a_map(
    apps: Path, store: Path, engine: str
) -> None:
    code = """
    data.a = {x = "1", sub = {y = true}}
    data.b = data.a
    data.a.x = "changed"
    return data.b.x, data.b.sub.y, mona:toJSON(data.b)
    """
    x, y, text = await run_with(apps, store, code, engine=engine)
    assert (x, y) == (b"1", True)
    assert text in (b'[{"x":"1","sub":{"y":true}}]', b'[{"sub":{"y":true},"x":"1"}]')


async def test_the_global_data_may_be_assigned_and_nil_brings_it_back(
    apps: Path, store: Path, engine: str
) -> None:
    # (MonaServer's own LuaSocket test server names its connection `data`)
    code = """
    data.kept = "yes"
    data = "my own"
    local mine = data
    data = nil
    return mine, data.kept, rawget(_G, "data")
    """
    assert await run_with(apps, store, code, engine=engine) == (b"my own", b"yes", None)
    assert rows(store)[b"kept"] == b"yes"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("mona:createTCPClient()", "TCPClient"),
        ("mona:createTCPServer()", "TCPServer"),
        ("mona:createUDPSocket()", "UDPSocket"),
        ("mona:createSocketAddress('127.0.0.1:1')", "SocketAddress"),
        ("require('socket').tcp()", "tcp{master}"),
        ("{inside = {mona:createIPAddress('::1')}}", "IPAddress"),
        ("mona", "mona"),
    ],
)
async def test_the_runtimes_objects_are_refused(
    apps: Path, store: Path, value: str, kind: str
) -> None:
    code = f"return pcall(function() data.x = {value} end)"
    ok, err = await run_with(apps, store, code, engine="lua54")
    assert not ok
    assert f"is a {kind} object (data holds strings" in err.decode()
    assert rows(store) == {}


async def test_data_survives_a_hot_reload(tmp_path: Path, store: Path) -> None:
    apps = write_app(tmp_path / "apps", "data.loads = (data.loads or 0) + 1")
    settings = {"trio_mona.reload_interval": "0.05"}
    async with trio_mona.open_runtime(apps, data=store, settings=settings) as runtime:
        assert await lua(runtime, "return data.loads") == b"1"
        changed = write_app(apps, "data.loads = data.loads + 1 -- changed") / "main.lua"
        later = changed.stat().st_mtime + 2  # (seen as changed whatever the clock's grain)
        os.utime(changed, (later, later))
        with trio.fail_after(5):
            while True:
                try:
                    if await lua(runtime, "return data.loads") == b"2":
                        break
                except LookupError:
                    pass  # (the root is reloading)
                await trio.sleep(0.02)


async def test_the_location_setting_and_the_default_outside_the_apps_folder(
    apps: Path, store: Path
) -> None:
    async with trio_mona.open_runtime(apps, settings={"trio_mona.data": str(store)}) as runtime:
        await lua(runtime, "data.where = 'setting'")
    assert rows(store) == {b"where": b"setting"}
    async with trio_mona.open_runtime(apps) as runtime:
        await lua(runtime, "data.where = 'default'")
    home = Path(os.environ["XDG_DATA_HOME"]) / "trio_mona"
    found = [p for p in home.glob("apps-*.sqlite") if rows(p) == {b"where": b"default"}]
    assert len(found) == 1
    assert not found[0].is_relative_to(apps)


async def test_a_burst_is_one_commit_and_every_assignment_lands(apps: Path, store: Path) -> None:
    code = "for i = 1, 10000 do data['k' .. i] = i end return data.k10000"
    assert await run_with(apps, store, code, engine="lua54") == b"10000"
    assert len(rows(store)) == 10000


async def test_memory_keeps_nothing(apps: Path) -> None:
    for expected in (None, None):
        async with trio_mona.open_runtime(apps, data=":memory:") as runtime:
            assert (
                await lua(runtime, "local before = data.x; data.x = 1; return before") is expected
            )


async def test_a_change_log_cut_short_is_ignored_with_a_warning(
    apps: Path, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    change_log(store).write_bytes(b"\x40\x00\x00\x00garbage")  # (a record that never ended)
    assert await run_with(apps, store, "data.x = 1; return data.x", engine="lua54") == b"1"
    assert any(
        "the last 11 bytes of the change log were a commit cut short" in m for m in messages(caplog)
    )
    assert rows(store) == {b"x": b"1"}
    assert not change_log(store).exists()


async def test_full_sync_keeps_values_and_a_bad_mode_stops_the_start(
    apps: Path, store: Path
) -> None:
    settings = {"trio_mona.data_sync": "full"}
    async with trio_mona.open_runtime(apps, data=store, settings=settings) as runtime:
        await lua(runtime, "data.synced = true")
    assert rows(store) == {b"synced": 1}
    with pytest.raises(
        trio_mona.StartupError, match=r"trio_mona\.data_sync must be normal or full"
    ):
        async with trio_mona.open_runtime(apps, data=store, settings={"trio_mona.data_sync": "x"}):
            pass


async def test_a_handler_writing_much_is_committed_as_it_goes(apps: Path, store: Path) -> None:
    # (what a stopped runaway handler left to commit made everyone wait seconds past
    # the bound: bench/runaway_pause.py)
    commits: list[int] = []

    def probe() -> None:
        commits.append(runtime.statistics().data_commits)

    async with trio_mona.open_runtime(apps, data=store, expose={"probe": probe}) as runtime:
        before = runtime.statistics().data_commits
        await lua(runtime, "for i = 1, 25000 do data['k' .. i] = i end mona.host.probe()")
    assert commits[0] - before >= 2  # (10,000 changes a commit, while the handler runs)
    assert len(rows(store)) == 25000
