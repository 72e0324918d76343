"""The change log of the SQLite store (trio_mona/_data/log.py, changes.py): records
packed and read back, a record cut short or garbled ends the replay."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_mona._data.changes import Changes
from trio_mona._data.log import ChangeLog
from trio_mona._data.sqlite import SQLiteStore
from trio_mona._data.store import StoreError

paths = st.binary(min_size=1, max_size=12).filter(lambda p: b"\x00" not in p)
values = st.one_of(st.none(), st.booleans(), st.binary(max_size=40))
operations = st.lists(st.tuples(paths, st.one_of(values, st.just("delete"))), max_size=30)


def changes_of(ops: list[tuple[bytes, object]]) -> Changes:
    changes = Changes()
    for path, value in ops:
        if value == "delete":
            changes.delete(path)
        else:
            changes.put(path, value)  # type: ignore[arg-type]
    return changes


@given(operations)
def test_changes_pack_and_unpack_to_the_same_runs(ops: list[tuple[bytes, object]]) -> None:
    changes = changes_of(ops)
    assert Changes.unpack(changes.pack()).runs == changes.runs


def test_a_later_put_replaces_an_earlier_one_only_within_a_run() -> None:
    changes = changes_of([(b"a", b"1"), (b"a", b"2"), (b"p", "delete"), (b"a", b"3")])
    assert changes.runs == [({b"a": b"2"}, [b"p"]), ({b"a": b"3"}, [])]
    assert len(changes) == 3


@pytest.mark.parametrize("kind", [b"X", b"S"])
def test_a_payload_that_is_not_changes_is_refused(kind: bytes) -> None:
    with pytest.raises(StoreError):
        Changes.unpack(kind + b"\xff\xff\xff\xff")


def test_a_record_cut_short_ends_the_replay(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "log", sync=False)
    log.append(changes_of([(b"a", b"1")]))
    first = (tmp_path / "log").stat().st_size
    log.append(changes_of([(b"b", True)]))
    log.close(remove=False)
    whole = (tmp_path / "log").read_bytes()
    (tmp_path / "log").write_bytes(whole[:-3])
    records, torn = ChangeLog(tmp_path / "log", sync=False).read()
    assert [r.runs for r in records] == [[({b"a": b"1"}, [])]]
    assert torn == len(whole) - 3 - first
    garbled = bytearray(whole)
    garbled[-1] ^= 0xFF
    (tmp_path / "log").write_bytes(garbled)
    records, torn = ChangeLog(tmp_path / "log", sync=False).read()
    assert len(records) == 1
    assert torn == len(whole) - first


def test_the_store_replays_its_log_and_removes_it_when_folded(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "d.sqlite")
    store.put(b"t", None)
    store.put(b"t\x00x", b"1")
    store.commit()  # (in the log: a fold waits for 2,000 rows or a second)
    assert (tmp_path / "d.sqlite-log").stat().st_size > 0
    store._db.close()  # the process "dies": the table never got the rows
    store._log.close(remove=False)  # type: ignore[union-attr]
    again = SQLiteStore(tmp_path / "d.sqlite")
    assert list(again.load()) == [(b"t", None), (b"t\x00x", b"1")]
    assert again.torn_bytes == 0
    again.close()
    assert not (tmp_path / "d.sqlite-log").exists()


def test_changes_split_in_parts_keep_their_order() -> None:
    changes = Changes()
    for i in range(300):
        changes.put(b"a\x00%d" % i, b"v" * 50)
        if i % 50 == 0:
            changes.delete(b"a\x00%d" % (i // 2))
            changes.put(b"t%d" % i, None)
            changes.put(b"b%d" % i, i % 100 == 0)
    parts = changes.split(1000)
    assert len(parts) > 10
    assert all(len(part.pack()) < 1000 + 100 for part in parts)
    assert b"".join(part.pack() for part in parts) == changes.pack()
    assert [p for part in parts for p in part.paths()] == list(changes.paths())
