"""MemoryStorage and SqliteStorage: same semantics, and SQLite writes are atomic across crashes."""

import multiprocessing
import os
import sqlite3

import pytest

from eco.runtime.raft import Entry, EntryKind, HardState, Snapshot
from eco.runtime.raft_storage import MemoryStorage, SqliteStorage


@pytest.fixture(params=["memory", "sqlite"])
def make(request, tmp_path):
    path = tmp_path / "raft.db"
    opened = []

    def factory(reopen=False):
        if request.param == "memory":
            if not opened:
                opened.append(MemoryStorage())
            return opened[0]
        if opened:
            opened[-1].close()
        opened.append(SqliteStorage(path))
        return opened[-1]

    yield factory
    if request.param == "sqlite" and opened:
        opened[-1].close()


def ents(*terms, start=1):
    return [Entry(t, start + i, b"d%d" % (start + i)) for i, t in enumerate(terms)]


def test_round_trip(make):
    st = make()
    assert st.load().entries == [] and st.load().hard_state == HardState() and st.load().snapshot is None
    st.persist(HardState(3, "n2", 2), ents(1, 1, 3) + [Entry(3, 4, b"[1]", EntryKind.CONFIG)], None)
    st = make(reopen=True)
    loaded = st.load()
    assert loaded.hard_state == HardState(3, "n2", 2)
    assert [(e.index, e.term, e.kind) for e in loaded.entries] == [(1, 1, 0), (2, 1, 0), (3, 3, 0), (4, 3, 1)]
    assert loaded.entries[2].data == b"d3"


def test_entries_replace_the_conflicting_suffix(make):
    st = make()
    st.persist(None, ents(1, 1, 1, 1), None)
    st.persist(None, ents(2, start=3), None)
    assert [(e.index, e.term) for e in make(reopen=True).load().entries] == [(1, 1), (2, 1), (3, 2)]


def test_snapshot_keeps_a_matching_suffix_and_drops_a_conflicting_log(make):
    st = make()
    st.persist(None, ents(1, 1, 2, 2, 2), None)
    st.persist(None, [], Snapshot(3, 2, ("a",), b"img"))
    loaded = make(reopen=True).load()
    assert [e.index for e in loaded.entries] == [4, 5] and loaded.snapshot == Snapshot(3, 2, ("a",), b"img")
    st = make(reopen=True)
    st.persist(HardState(4, None, 9), [], Snapshot(9, 4, ("a", "b"), b"new"))
    loaded = make(reopen=True).load()
    assert loaded.entries == [] and loaded.snapshot.index == 9 and loaded.hard_state.commit == 9


def test_sqlite_uses_wal_and_full_sync(tmp_path):
    st = SqliteStorage(tmp_path / "r.db")
    assert st._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert st._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    st.close()


def test_sqlite_failed_write_rolls_back(tmp_path, monkeypatch):
    st = SqliteStorage(tmp_path / "r.db")
    st.persist(HardState(1, "a", 1), ents(1, 1), None)

    def boom(hs):
        raise OSError("disk full")

    monkeypatch.setattr(st, "_write_hard_state", boom)
    with pytest.raises(OSError):
        st.persist(HardState(2, "b", 2), ents(2, 2, 2, start=2), None)
    loaded = st.load()
    assert loaded.hard_state == HardState(1, "a", 1) and [e.term for e in loaded.entries] == [1, 1]
    st.close()


def _die_mid_write(path):
    st = SqliteStorage(path)

    def die(hs):
        os._exit(17)  # the process vanishes between writing the log and the hard state

    st._write_hard_state = die
    st.persist(HardState(5, "b", 3), [Entry(5, 2, b"new"), Entry(5, 3, b"new")], Snapshot(1, 1, ("a",), b"s"))


def test_sqlite_process_killed_mid_write_leaves_the_previous_state(tmp_path):
    path = tmp_path / "r.db"
    st = SqliteStorage(path)
    st.persist(HardState(1, "a", 1), ents(1, 1, 1), None)
    st.close()
    proc = multiprocessing.get_context("fork").Process(target=_die_mid_write, args=(path,))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 17
    loaded = SqliteStorage(path).load()
    assert loaded.hard_state == HardState(1, "a", 1)
    assert [(e.index, e.term) for e in loaded.entries] == [(1, 1), (2, 1), (3, 1)] and loaded.snapshot is None


def test_sqlite_rejects_a_file_that_is_not_a_database(tmp_path):
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RuntimeError, match="cannot open raft storage"):
        SqliteStorage(bad)


def test_memory_storage_refuses_a_gap():
    st = MemoryStorage()
    with pytest.raises(ValueError):
        st.persist(None, [Entry(1, 3)], None)
