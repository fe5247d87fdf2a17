"""Deterministic in-process simulation of a Raft group, with safety checks after every event.

:class:`SimCluster` runs N :class:`~eco.runtime.raft.RaftNode` in one process on a seeded,
discrete-event network (delay, loss, duplication, reordering, partitions) and drives each node
exactly like a real driver would (persist, then send, then apply). Crashing a node throws away
everything but its storage; restarting rebuilds it from storage. After every delivered message
and every tick, :class:`SafetyChecker` asserts the Raft safety properties, so a test fails at
the first event that breaks one. Everything is reproducible from the seed.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import msgpack

from eco.runtime.raft import AppendResponse, Entry, EntryKind, RaftConfig, RaftNode, Ready, Role, Snapshot
from eco.runtime.raft_kv import Applied, KVStateMachine
from eco.runtime.raft_storage import MemoryStorage, SqliteStorage


class SafetyViolation(AssertionError):
    """A Raft safety property failed."""


class SimulatedCrash(Exception):
    """Raised inside a storage write to simulate the process dying mid-write."""


class CrashableSqliteStorage(SqliteStorage):
    """SQLite storage whose next write can be made to die half way (after the log, before the hard state)."""

    crash_next_write = False

    def _write_hard_state(self, hs) -> None:
        if self.crash_next_write:
            self.crash_next_write = False
            raise SimulatedCrash("crash between writing the log and the hard state")
        super()._write_hard_state(hs)

    def _write_entries(self, entries) -> None:
        super()._write_entries(entries)
        if self.crash_next_write:
            self.crash_next_write = False
            raise SimulatedCrash("crash after writing the log")


class CrashableMemoryStorage(MemoryStorage):
    crash_next_write = False

    def persist(self, hard_state, entries, snapshot) -> None:
        if self.crash_next_write:
            self.crash_next_write = False
            raise SimulatedCrash("crash before the write reached the disk")
        super().persist(hard_state, entries, snapshot)


class RecordingStateMachine:
    """Application for plain tests: remembers every applied command, in order."""

    def __init__(self) -> None:
        self.values: dict[int, bytes] = {}
        self.applied_index = 0

    def apply(self, entry: Entry) -> Any:
        self.applied_index = entry.index
        if entry.kind is EntryKind.NORMAL and entry.data:
            self.values[entry.index] = entry.data
        return None

    def snapshot(self) -> bytes:
        return msgpack.packb([self.applied_index, list(self.values.items())])

    def restore(self, blob: bytes, index: int | None = None) -> None:
        applied, items = msgpack.unpackb(blob)
        self.applied_index = applied if index is None else index
        self.values = {i: d for i, d in items}


# --------------------------------------------------------------------------- safety


class _Mirror:
    """What the checker believes a node has on disk: prefix hashes of its log."""

    __slots__ = ("base", "base_term", "base_hash", "terms", "hashes")

    def __init__(self, base: int = 0, base_term: int = 0, base_hash: int = 0) -> None:
        self.base, self.base_term, self.base_hash = base, base_term, base_hash
        self.terms: list[int] = []
        self.hashes: list[int] = []

    @property
    def last(self) -> int:
        return self.base + len(self.terms)

    def hash_at(self, index: int) -> int | None:
        if index == self.base:
            return self.base_hash
        if index < self.base or index > self.last:
            return None
        return self.hashes[index - self.base - 1]

    def term_at(self, index: int) -> int | None:
        if index == self.base:
            return self.base_term
        if index < self.base or index > self.last:
            return None
        return self.terms[index - self.base - 1]


class SafetyChecker:
    """Checks election safety, leader append-only, log matching, leader completeness and
    state machine safety, incrementally, from what nodes persist and apply."""

    def __init__(self) -> None:
        self.leader_of_term: dict[int, Any] = {}
        self.prefix_hash: dict[tuple[int, int], int] = {(0, 0): 0}
        self.mirrors: dict[Any, _Mirror] = {}
        self.commit_hash: dict[int, int] = {}  # index -> prefix hash, for every observed commit point
        self.max_commit = 0
        self.applied: dict[int, tuple[int, int, bytes]] = {}
        self._leading: dict[Any, int] = {}  # node -> term in which we last saw it lead

    def fail(self, what: str) -> None:
        raise SafetyViolation(what)

    def on_persist(self, node: RaftNode, rd: Ready) -> None:
        m = self.mirrors.setdefault(node.id, _Mirror())
        if rd.entries_to_persist and self._leading.get(node.id) == node.term and node.role is Role.LEADER:
            if rd.entries_to_persist[0].index <= m.last:
                self.fail(f"leader {node.id!r} (term {node.term}) overwrote its log from index "
                          f"{rd.entries_to_persist[0].index} (had {m.last})")
        snap = rd.snapshot_to_persist
        if snap is not None:
            if m.term_at(snap.index) == snap.term:
                cut = snap.index - m.base
                m.base_hash = m.hash_at(snap.index)
                m.base, m.base_term = snap.index, snap.term
                del m.terms[:cut], m.hashes[:cut]
            else:
                h = self.prefix_hash.get((snap.index, snap.term))
                if h is None:
                    self.fail(f"{node.id!r} installed a snapshot at ({snap.index}, term {snap.term}) no log ever held")
                self.mirrors[node.id] = m = _Mirror(snap.index, snap.term, h)
        if rd.entries_to_persist:
            first = rd.entries_to_persist[0].index
            if first > m.last + 1 or first <= m.base:
                self.fail(f"{node.id!r} persisted entries from {first} but its log is ({m.base}, {m.last}]")
            del m.terms[first - m.base - 1:], m.hashes[first - m.base - 1:]
            h = m.hash_at(first - 1)
            for e in rd.entries_to_persist:
                h = hash((h, e.term, int(e.kind), e.data))
                m.terms.append(e.term)
                m.hashes.append(h)
                known = self.prefix_hash.setdefault((e.index, e.term), h)
                if known != h:
                    self.fail(f"log matching violated: {node.id!r} has entry ({e.index}, term {e.term}) "
                              "with a different history than another node")
        if rd.hard_state is not None and rd.hard_state.commit > 0:
            c = rd.hard_state.commit
            h = m.hash_at(c)
            if h is None and c > m.base:
                self.fail(f"{node.id!r} committed {c} beyond its persisted log ({m.last})")
            if h is not None:
                known = self.commit_hash.setdefault(c, h)
                if known != h:
                    self.fail(f"two different logs were committed up to index {c}")
                self.max_commit = max(self.max_commit, c)

    def on_apply(self, node: RaftNode, entry: Entry) -> None:
        ident = (entry.term, int(entry.kind), entry.data)
        known = self.applied.setdefault(entry.index, ident)
        if known != ident:
            self.fail(f"state machine safety violated: {node.id!r} applied {ident} at {entry.index}, "
                      f"another node applied {known}")

    def on_state(self, node: RaftNode) -> None:
        """Called after each event for each live node."""
        if node.role is not Role.LEADER:
            self._leading.pop(node.id, None)
            return
        other = self.leader_of_term.setdefault(node.term, node.id)
        if other != node.id:
            self.fail(f"two leaders in term {node.term}: {other!r} and {node.id!r}")
        if self._leading.get(node.id) != node.term:
            self._leading[node.id] = node.term
            self._check_completeness(node)

    def _check_completeness(self, node: RaftNode) -> None:
        m = self.mirrors.get(node.id) or _Mirror()
        c = self.max_commit
        if c <= m.base:
            h, expected = m.base_hash, self.commit_hash.get(m.base)
            if expected is not None and h != expected:
                self.fail(f"new leader {node.id!r} (term {node.term}) has a snapshot inconsistent with committed entries")
            return
        if m.hash_at(c) != self.commit_hash[c]:
            self.fail(f"leader completeness violated: new leader {node.id!r} (term {node.term}) lacks "
                      f"committed entries up to {c} (its log ends at {m.last})")

    def on_restart(self, node: RaftNode) -> None:
        """The log a node reloads must be exactly what it persisted."""
        m = self.mirrors.get(node.id)
        if m is None:
            return
        if node.last_index != m.last:
            self.fail(f"{node.id!r} reloaded a log ending at {node.last_index}, it had persisted up to {m.last}")
        for i in range(max(m.base, node.first_index - 1), m.last + 1):
            if node.term_at(i) != m.term_at(i):
                self.fail(f"{node.id!r} reloaded entry {i} with term {node.term_at(i)}, persisted {m.term_at(i)}")


# --------------------------------------------------------------------------- the simulated cluster


@dataclass
class NetworkConfig:
    """Message delay is uniform in [min_delay, max_delay] time units (one tick = tick_interval)."""

    min_delay: int = 1
    max_delay: int = 3
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0


class SimNode:
    """A node's volatile side (RaftNode and application) plus its storage."""

    def __init__(self, id: Any, storage: Any) -> None:
        self.id = id
        self.storage = storage
        self.raft: RaftNode | None = None
        self.app: Any = None
        self.incarnation = 0
        self.read_states: list = []

    @property
    def alive(self) -> bool:
        return self.raft is not None


class SimCluster:
    """N Raft nodes on a simulated network; time is an integer, ``tick_interval`` units per tick."""

    def __init__(self, n: int = 3, seed: int = 0, *, config: RaftConfig | None = None,
                 network: NetworkConfig | None = None, storage: str = "memory", data_dir: Path | None = None,
                 app: str = "record", compact_threshold: int = 0, tick_interval: int = 10,
                 on_apply: Callable[[Any, Entry, Any], None] | None = None,
                 on_read: Callable[[Any, Any], None] | None = None) -> None:
        if storage == "sqlite" and data_dir is None:
            raise ValueError("sqlite storage needs a data_dir")
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config or RaftConfig(election_ticks=10, heartbeat_ticks=1)
        self.net = network or NetworkConfig()
        self.storage_kind = storage
        self.data_dir = data_dir
        self.app_kind = app
        self.compact_threshold = compact_threshold
        self.tick_interval = tick_interval
        self.on_apply = on_apply
        self.on_read = on_read
        self.on_crash: Callable[[Any], None] | None = None
        self.append_rejections = 0
        self.now = 0
        self.ids = list(range(1, n + 1))
        self.initial_voters = tuple(self.ids)
        self.nodes: dict[Any, SimNode] = {}
        self.checker = SafetyChecker()
        self.sent = Counter()  # message type name -> count
        self.events = 0
        self._queue: list = []
        self._seq = itertools.count()
        self._blocked: set[frozenset] = set()  # unordered pairs that cannot talk
        for i in self.ids:
            self._create(i, self.initial_voters)

    # ------------------------------------------------------------------ membership of the simulation

    def _new_storage(self, node_id: Any) -> Any:
        if self.storage_kind == "sqlite":
            return CrashableSqliteStorage(self.data_dir / f"node-{node_id}.db")
        return CrashableMemoryStorage()

    def _create(self, node_id: Any, peers: tuple) -> SimNode:
        sn = SimNode(node_id, self._new_storage(node_id))
        self.nodes[node_id] = sn
        self._boot(sn, peers)
        return sn

    def _boot(self, sn: SimNode, peers: tuple) -> None:
        sn.incarnation += 1
        sn.raft = RaftNode(sn.id, peers, sn.storage, self.config, random.Random(self.rng.random()))
        sn.app = KVStateMachine() if self.app_kind == "kv" else RecordingStateMachine()
        sn.read_states = []
        self.checker.on_restart(sn.raft)
        self._schedule(self.rng.randrange(1, self.tick_interval + 1), ("tick", sn.id, sn.incarnation))
        self._drain(sn)

    def add_node(self, node_id: Any) -> SimNode:
        """Start a new, empty node that waits to be added by the leader (``add_server``)."""
        self.ids.append(node_id)
        return self._create(node_id, ())

    def crash(self, node_id: Any) -> None:
        """Lose all volatile state; storage survives (SQLite files are closed and reopened)."""
        sn = self.nodes[node_id]
        sn.raft = None
        sn.app = None
        sn.read_states = []
        if self.storage_kind == "sqlite":
            sn.storage.close()
        if self.on_crash is not None:
            self.on_crash(node_id)

    def restart(self, node_id: Any) -> None:
        sn = self.nodes[node_id]
        if sn.alive:
            return
        if self.storage_kind == "sqlite":
            sn.storage = self._new_storage(node_id)
        self._boot(sn, self.initial_voters if node_id in self.initial_voters else ())

    def crash_during_next_write(self, node_id: Any) -> None:
        """The node dies in the middle of its next storage write (the write must roll back)."""
        self.nodes[node_id].storage.crash_next_write = True

    # ------------------------------------------------------------------ network control

    def partition(self, *groups) -> None:
        """Only nodes in the same group can talk; nodes in no group are isolated."""
        self._blocked = set()
        where = {n: g for g, members in enumerate(groups) for n in members}
        for a in self.ids:
            for b in self.ids:
                if a != b and (a not in where or b not in where or where[a] != where[b]):
                    self._blocked.add(frozenset((a, b)))

    def disconnect(self, node_id: Any) -> None:
        for other in self.ids:
            if other != node_id:
                self._blocked.add(frozenset((node_id, other)))

    def connect(self, node_id: Any) -> None:
        self._blocked = {p for p in self._blocked if node_id not in p}

    def heal(self) -> None:
        self._blocked = set()

    def connected(self, a: Any, b: Any) -> bool:
        return frozenset((a, b)) not in self._blocked

    # ------------------------------------------------------------------ running

    def _schedule(self, delay: int, event: tuple) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), event))

    def call_at(self, time: int, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (max(time, self.now), next(self._seq), ("call", fn)))

    def run(self, duration: int) -> None:
        self.run_until(lambda: False, duration)

    def run_until(self, predicate: Callable[[], bool], timeout: int) -> bool:
        """Process events until ``predicate()`` holds (checked after each event) or time runs out."""
        deadline = self.now + timeout
        if predicate():
            return True
        while self._queue and self._queue[0][0] <= deadline:
            t, _, event = heapq.heappop(self._queue)
            self.now = t
            self._dispatch(event)
            if predicate():
                return True
        self.now = deadline
        return predicate()

    def _dispatch(self, event: tuple) -> None:
        self.events += 1
        kind = event[0]
        if kind == "tick":
            _, node_id, inc = event
            sn = self.nodes[node_id]
            if not sn.alive or sn.incarnation != inc:
                return
            self._schedule(self.tick_interval, event)
            sn.raft.tick()
            self._drain(sn)
        elif kind == "msg":
            msg = event[1]
            sn = self.nodes.get(msg.dst)
            if sn is None or not sn.alive or not self.connected(msg.src, msg.dst):
                return
            sn.raft.step(msg)
            self._drain(sn)
        else:
            event[1]()
        self.check()

    def check(self) -> None:
        for sn in self.nodes.values():
            if sn.alive:
                self.checker.on_state(sn.raft)

    def _drain(self, sn: SimNode) -> None:
        """Handle every Ready of one node like a real driver: persist, send, apply, advance."""
        node = sn.raft
        while node is not None and node.has_ready():
            rd = node.ready()
            try:
                sn.storage.persist(rd.hard_state, rd.entries_to_persist, rd.snapshot_to_persist)
            except SimulatedCrash:
                self.crash(sn.id)
                return
            self.checker.on_persist(node, rd)
            for m in rd.messages:
                self._send(m)
            if rd.snapshot_to_apply is not None:
                sn.app.restore(rd.snapshot_to_apply.data, rd.snapshot_to_apply.index)
            for e in rd.committed_entries:
                self.checker.on_apply(node, e)
                result = sn.app.apply(e)
                if self.on_apply is not None:
                    self.on_apply(sn.id, e, result)
            sn.read_states.extend(rd.read_states)
            if self.on_read is not None:
                for rs in rd.read_states:
                    self.on_read(sn.id, rs)
            node.advance(rd)
            if self.compact_threshold and node.applied - node.first_index + 1 > self.compact_threshold:
                node.compact(node.applied, sn.app.snapshot())

    def _send(self, m: Any) -> None:
        self.sent[type(m).__name__] += 1
        if isinstance(m, AppendResponse) and not m.success:
            self.append_rejections += 1
        if not self.connected(m.src, m.dst) or self.rng.random() < self.net.drop_rate:
            return
        copies = 2 if self.rng.random() < self.net.duplicate_rate else 1
        for _ in range(copies):
            self._schedule(self.rng.randint(self.net.min_delay, self.net.max_delay), ("msg", m))

    # ------------------------------------------------------------------ queries

    def raft(self, node_id: Any) -> RaftNode:
        node = self.nodes[node_id].raft
        if node is None:
            raise RuntimeError(f"node {node_id!r} is down")
        return node

    def live(self) -> list[Any]:
        return [i for i, sn in self.nodes.items() if sn.alive]

    def leaders(self) -> list[Any]:
        return [i for i in self.live() if self.nodes[i].raft.role is Role.LEADER]

    def leader(self) -> Any:
        """The leader with the highest term among live nodes (None if no node leads)."""
        ls = self.leaders()
        return max(ls, key=lambda i: self.nodes[i].raft.term) if ls else None

    def stable_leader(self) -> Any:
        """A leader that a majority of its voters (itself included) can reach and follow."""
        for i in self.leaders():
            node = self.nodes[i].raft
            followers = [v for v in node.voters if v == i or (
                self.nodes.get(v) and self.nodes[v].alive and self.connected(i, v)
                and self.nodes[v].raft.term == node.term and self.nodes[v].raft.leader == i)]
            if len(followers) >= len(node.voters) // 2 + 1:
                return i
        return None

    def wait_leader(self, timeout: int = 3000) -> Any:
        if not self.run_until(lambda: self.stable_leader() is not None, timeout):
            raise AssertionError(f"no leader elected within {timeout} time units (seed {self.seed})")
        return self.stable_leader()

    def n_committed(self, index: int) -> tuple[int, bytes | None]:
        """How many live nodes applied ``index`` (RecordingStateMachine), and the value."""
        count, value = 0, None
        for sn in self.nodes.values():
            if sn.alive and index in getattr(sn.app, "values", {}):
                v = sn.app.values[index]
                if value is not None and v != value:
                    raise SafetyViolation(f"nodes applied different values at {index}")
                count, value = count + 1, v
        return count, value

    def applied_values(self, node_id: Any) -> list[bytes]:
        return [v for _, v in sorted(self.nodes[node_id].app.values.items())]

    def propose(self, data: bytes) -> int | None:
        """Propose on the current leader; returns the index or None without a leader."""
        leader = self.leader()
        if leader is None:
            return None
        result = self.raft(leader).propose(data)
        self._drain(self.nodes[leader])
        self.check()
        return result if isinstance(result, int) else None

    def one(self, data: bytes, expected: int | None = None, timeout: int = 5000, retry: bool = True) -> int:
        """Like the MIT 6.824 ``one()``: get ``data`` committed on ``expected`` nodes (default all live).

        Returns its index; retries on another leader if the first attempt does not commit.
        """
        expected = expected if expected is not None else len(self.live())
        deadline = self.now + timeout
        while self.now < deadline:
            index = None
            if not self.run_until(lambda: self.leader() is not None, deadline - self.now):
                break
            leader = self.leader()
            result = self.raft(leader).propose(data)
            self._drain(self.nodes[leader])
            self.check()
            if isinstance(result, int):
                index = result
                if self.run_until(lambda: self.n_committed(index)[0] >= expected, min(2000, deadline - self.now)):
                    if self.n_committed(index)[1] == data:
                        return index
                if not retry:
                    break
            else:
                self.run(self.tick_interval)
        raise AssertionError(f"one({data!r}) failed to reach agreement on {expected} nodes (seed {self.seed})")

    def converged(self) -> bool:
        """All live nodes have the same commit index and applied everything."""
        nodes = [self.nodes[i].raft for i in self.live()]
        return len({n.commit for n in nodes}) == 1 and all(n.applied == n.commit for n in nodes)

    def close(self) -> None:
        for sn in self.nodes.values():
            if self.storage_kind == "sqlite" and sn.alive:
                sn.storage.close()


# --------------------------------------------------------------------------- clients of the replicated key-value store


class _Client:
    __slots__ = ("id", "request_id", "op", "op_id", "target", "token", "attempts")

    def __init__(self, client_id: str, target: Any) -> None:
        self.id = client_id
        self.request_id = 0
        self.op: tuple | None = None  # (kind, key, value)
        self.op_id = -1
        self.target = target
        self.token = 0  # bumped on every attempt: stale timers and answers are ignored
        self.attempts = 0


class KVWorkload:
    """Closed-loop clients of the replicated key-value store, recording a linearizability history.

    Writes (put/append) are proposed on the node a client believes leads, with a session
    (client id, request id); reads use ReadIndex. A request without an answer within
    ``timeout`` is retried on another node with the same request id; after ``max_attempts``
    the client gives up and the operation stays open-ended in the history.
    """

    def __init__(self, cluster: SimCluster, n_clients: int = 3, keys: tuple = ("a", "b"), *,
                 timeout: int = 200, max_attempts: int = 6, read_ratio: float = 0.3, wander: float = 0.2) -> None:
        from eco.runtime.linearizability import History

        if cluster.app_kind != "kv":
            raise ValueError("KVWorkload needs SimCluster(app='kv')")
        self.cluster = cluster
        self.rng = random.Random(cluster.rng.random())
        self.keys = keys
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.read_ratio = read_ratio
        self.wander = wander  # chance that an operation starts on a random node (a load balancer)
        self.history = History()
        self.clients = [_Client(f"c{i}", self.rng.choice(cluster.ids)) for i in range(n_clients)]
        self._by_id = {c.id: c for c in self.clients}
        self._writes: dict[tuple, tuple[_Client, int]] = {}  # (node, client, request id) -> (client, token)
        self._reads: dict[Any, list] = {}  # node -> [(index, client, token)] waiting to be applied
        self._until = 0
        self.completed = 0
        self.abandoned = 0
        self.duplicates = 0
        cluster.on_apply = self._on_apply
        cluster.on_read = self._on_read
        cluster.on_crash = self._on_crash

    def start(self, until: int) -> None:
        """Clients issue operations until simulated time ``until``."""
        self._until = until
        for c in self.clients:
            self.cluster.call_at(self.cluster.now + self.rng.randint(0, 20), lambda c=c: self._next_op(c))

    def finish(self) -> list:
        """Stop; operations still in flight become open-ended. Returns the history's operations."""
        self._until = 0
        for c in self.clients:
            if c.op is not None:
                self.history.abandon(c.op_id)
                c.op = None
                c.token += 1
        return self.history.all_operations()

    # ------------------------------------------------------------------ client loop

    def _next_op(self, c: _Client) -> None:
        if c.op is not None or self.cluster.now >= self._until:
            return
        key = self.rng.choice(self.keys)
        r = self.rng.random()
        if r < self.read_ratio:
            c.op = ("get", key, None)
        else:
            kind = "append" if r < self.read_ratio + (1 - self.read_ratio) / 2 else "put"
            c.op = (kind, key, f"{c.id}.{c.request_id + 1};")
        c.request_id += 1
        c.attempts = 0
        if self.rng.random() < self.wander:
            c.target = self.rng.choice(self.cluster.ids)
        c.op_id = self.history.invoke(c.id, c.op[0], key, c.op[2])
        self._attempt(c)

    def _attempt(self, c: _Client) -> None:
        from eco.runtime.raft import NotLeader
        from eco.runtime.raft_kv import encode_command

        if c.op is None:
            return
        c.token += 1
        token = c.token
        sn = self.cluster.nodes.get(c.target)
        if sn is None or not sn.alive:
            self._retry_soon(c, None)
            return
        kind, key, value = c.op
        if kind == "get":
            result = sn.raft.read_index((c.id, token))
        else:
            result = sn.raft.propose(encode_command(c.id, c.request_id, kind, key, value))
        self.cluster._drain(sn)
        if isinstance(result, NotLeader):
            self._retry_soon(c, result.leader_hint)
            return
        if not isinstance(result, int) and result is not None:  # Rejected (transfer in progress)
            self._retry_soon(c, c.target)
            return
        if kind != "get":
            self._writes[(c.target, c.id, c.request_id)] = (c, token)
        self.cluster.call_at(self.cluster.now + self.timeout, lambda: self._on_timeout(c, token))

    def _retry_soon(self, c: _Client, hint: Any) -> None:
        c.attempts += 1
        if c.attempts > self.max_attempts * 4:
            self._give_up(c)
            return
        c.target = hint if hint is not None and hint != c.target else self.rng.choice(self.cluster.ids)
        token = c.token
        self.cluster.call_at(self.cluster.now + 5, lambda: token == c.token and self._attempt(c))

    def _on_timeout(self, c: _Client, token: int) -> None:
        if c.token != token or c.op is None:
            return
        c.attempts += 1
        if c.attempts >= self.max_attempts:
            self._give_up(c)
            return
        c.target = self.rng.choice(self.cluster.ids)
        self._attempt(c)

    def _give_up(self, c: _Client) -> None:
        self.history.abandon(c.op_id)
        self.abandoned += 1
        self._done(c)

    def _done(self, c: _Client) -> None:
        c.op = None
        c.token += 1
        self.cluster.call_at(self.cluster.now + self.rng.randint(1, 10), lambda: self._next_op(c))

    # ------------------------------------------------------------------ answers from the nodes

    def _on_apply(self, node_id: Any, entry: Entry, result: Any) -> None:
        if isinstance(result, Applied):
            if result.duplicate:
                self.duplicates += 1
            waiting = self._writes.pop((node_id, result.client_id, result.request_id), None)
            if waiting is not None:
                c, token = waiting
                if c.token == token and c.op is not None and c.request_id == result.request_id:
                    self.history.complete(c.op_id, result.result)
                    self.completed += 1
                    self._done(c)
        reads = self._reads.get(node_id)
        if reads:
            ready = [r for r in reads if r[0] <= entry.index]
            self._reads[node_id] = [r for r in reads if r[0] > entry.index]
            for _, c, token, key in ready:
                self._answer_read(node_id, c, token, key)

    def _on_crash(self, node_id: Any) -> None:
        # Whatever the node promised is gone with it; clients find out by timing out.
        self._reads.pop(node_id, None)
        for k in [k for k in self._writes if k[0] == node_id]:
            del self._writes[k]

    def _on_read(self, node_id: Any, rs: Any) -> None:
        client_id, token = rs.ctx
        c = self._by_id[client_id]
        if c.token != token or c.op is None:
            return
        key = c.op[1]
        if self.cluster.nodes[node_id].app.applied_index >= rs.index:
            self._answer_read(node_id, c, token, key)
        else:
            self._reads.setdefault(node_id, []).append((rs.index, c, token, key))

    def _answer_read(self, node_id: Any, c: _Client, token: int, key: str) -> None:
        if c.token != token or c.op is None:
            return
        self.history.complete(c.op_id, self.cluster.nodes[node_id].app.get(key))
        self.completed += 1
        self._done(c)
