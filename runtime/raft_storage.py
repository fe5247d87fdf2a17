"""Durable Raft state: hard state, log entries and the latest snapshot.

A :class:`~eco.runtime.raft.RaftNode` reads its storage once (``load()``) when it is built;
its driver writes every :class:`~eco.runtime.raft.Ready` with ``persist()``, which is atomic:
after a crash the storage holds either everything of one ``persist`` call or nothing of it.

``persist`` applies, in this order:

1. the snapshot: entries up to its index are dropped; if the stored entry at the snapshot's
   index has a different term (or is missing) the whole log is dropped (it was superseded);
2. the entries: stored entries at or after the first new index are replaced;
3. the hard state.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

from eco.runtime.raft import Entry, EntryKind, HardState, Snapshot


@dataclass(frozen=True)
class PersistedState:
    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: list = field(default_factory=list)  # consecutive, starting right after the snapshot


class RaftStorage(Protocol):
    def load(self) -> PersistedState: ...

    def persist(self, hard_state: HardState | None, entries: Iterable[Entry], snapshot: Snapshot | None) -> None: ...

    def close(self) -> None: ...


class MemoryStorage:
    """Storage in memory: survives a simulated crash of the node object, not of the process."""

    def __init__(self) -> None:
        self._hs = HardState()
        self._snapshot: Snapshot | None = None
        self._entries: list[Entry] = []

    def load(self) -> PersistedState:
        return PersistedState(self._hs, self._snapshot, list(self._entries))

    def persist(self, hard_state: HardState | None, entries: Iterable[Entry], snapshot: Snapshot | None) -> None:
        entries = list(entries)
        log = self._entries
        if snapshot is not None:
            keep = [e for e in log if e.index > snapshot.index]
            at = [e for e in log if e.index == snapshot.index]
            log = keep if at and at[0].term == snapshot.term else []
        if entries:
            first = entries[0].index
            log = [e for e in log if e.index < first] + entries
        base = snapshot.index if snapshot is not None else (self._snapshot.index if self._snapshot else 0)
        if log and log[0].index != base + 1:
            raise ValueError(f"persisting would leave a gap: log starts at {log[0].index}, snapshot at {base}")
        self._entries = log
        if snapshot is not None:
            self._snapshot = snapshot
        if hard_state is not None:
            self._hs = hard_state

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS hard_state (id INTEGER PRIMARY KEY CHECK (id = 1), term INTEGER NOT NULL,
                                       vote TEXT, commit_index INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind INTEGER NOT NULL,
                                    data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL,
                                     term INTEGER NOT NULL, voters TEXT NOT NULL, data BLOB NOT NULL);
"""


class SqliteStorage:
    """Raft state in one SQLite file: WAL journal, ``synchronous=FULL`` (fsync on every commit).

    Node ids and votes are stored as JSON, so they must be JSON values (node names are strings).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # fsync=False (synchronous=OFF) is for benchmarks only: a power loss may lose
            # acknowledged writes, which breaks Raft's guarantees.
            self._db.execute("PRAGMA synchronous=FULL" if fsync else "PRAGMA synchronous=OFF")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RuntimeError(f"cannot open raft storage {self.path}: {exc}") from exc

    def load(self) -> PersistedState:
        db = self._db
        row = db.execute("SELECT term, vote, commit_index FROM hard_state WHERE id = 1").fetchone()
        hs = HardState(row[0], json.loads(row[1]), row[2]) if row else HardState()
        row = db.execute("SELECT idx, term, voters, data FROM snapshot WHERE id = 1").fetchone()
        snap = Snapshot(row[0], row[1], tuple(json.loads(row[2])), bytes(row[3])) if row else None
        entries = [Entry(t, i, bytes(d), EntryKind(k))
                   for i, t, k, d in db.execute("SELECT idx, term, kind, data FROM entries ORDER BY idx")]
        return PersistedState(hs, snap, entries)

    def persist(self, hard_state: HardState | None, entries: Iterable[Entry], snapshot: Snapshot | None) -> None:
        entries = list(entries)
        if hard_state is None and not entries and snapshot is None:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if snapshot is not None:
                self._write_snapshot(snapshot)
            if entries:
                self._write_entries(entries)
            if hard_state is not None:
                self._write_hard_state(hard_state)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _write_snapshot(self, snap: Snapshot) -> None:
        db = self._db
        row = db.execute("SELECT term FROM entries WHERE idx = ?", (snap.index,)).fetchone()
        if row is not None and row[0] == snap.term:
            db.execute("DELETE FROM entries WHERE idx <= ?", (snap.index,))
        else:
            db.execute("DELETE FROM entries")
        db.execute("INSERT OR REPLACE INTO snapshot (id, idx, term, voters, data) VALUES (1, ?, ?, ?, ?)",
                   (snap.index, snap.term, json.dumps(list(snap.voters)), snap.data))

    def _write_entries(self, entries: list[Entry]) -> None:
        self._db.execute("DELETE FROM entries WHERE idx >= ?", (entries[0].index,))
        self._db.executemany("INSERT INTO entries (idx, term, kind, data) VALUES (?, ?, ?, ?)",
                             [(e.index, e.term, int(e.kind), e.data) for e in entries])

    def _write_hard_state(self, hs: HardState) -> None:
        self._db.execute("INSERT OR REPLACE INTO hard_state (id, term, vote, commit_index) VALUES (1, ?, ?, ?)",
                         (hs.term, json.dumps(hs.vote), hs.commit))

    def close(self) -> None:
        self._db.close()
