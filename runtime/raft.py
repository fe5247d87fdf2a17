"""Raft consensus as a pure state machine (sans-IO, in the style of etcd's raft library).

A :class:`RaftNode` never touches a socket, a disk or a clock. Its driver feeds it

* ``step(message)`` for every message received from a peer,
* ``tick()`` at a fixed logical rate (elections and heartbeats are counted in ticks),
* ``propose(data)``, ``add_server(id)``, ``remove_server(id)``, ``read_index(ctx)``,
  ``transfer_leadership(id)`` and ``compact(index, data)`` for local requests,

and collects the effects with ``ready()``. The driver MUST handle a :class:`Ready` in this
order, then call ``advance(ready)`` before asking for the next one:

1. persist ``snapshot_to_persist``, ``entries_to_persist`` and ``hard_state`` durably and
   atomically (``RaftStorage.persist``);
2. only then send ``messages`` (a vote or an acknowledgement must never leave the node before
   the state it promises is on disk);
3. restore the state machine from ``snapshot_to_apply`` (if any), then apply
   ``committed_entries`` in order, and serve ``read_states`` once the state machine has applied
   up to their index. The first Ready of a node rebuilt from storage carries the stored snapshot
   in ``snapshot_to_apply`` and replays the committed entries after it.

``step``/``tick``/``propose`` may be called between ``ready()`` and ``advance()``; everything
they produce lands in the next ``Ready``. Messages are plain data classes; ``message_to_wire``
and ``message_from_wire`` turn them into msgpack/JSON friendly lists for a transport.
"""

from __future__ import annotations

import enum
import json
import random
from dataclasses import dataclass, field, fields
from typing import Any, Hashable, Iterable, Union

NodeId = Hashable  # node names (str) in production, anything hashable and sortable in tests


# --------------------------------------------------------------------------- log data


class EntryKind(enum.IntEnum):
    """What a log entry carries."""

    NORMAL = 0  # application command
    CONFIG = 1  # new voter set (takes effect as soon as it is appended)
    NOOP = 2  # appended by every new leader so it can commit entries of earlier terms


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry."""

    term: int
    index: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL


@dataclass(frozen=True, slots=True)
class HardState:
    """The state that must be on disk before any message depending on it is sent."""

    term: int = 0
    vote: Any = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """State machine image covering the log up to ``index`` (inclusive)."""

    index: int
    term: int
    voters: tuple = ()
    data: bytes = b""


def encode_voters(voters: Iterable[NodeId]) -> bytes:
    """Payload of a CONFIG entry."""
    return json.dumps(sorted(voters)).encode()


def decode_voters(data: bytes) -> frozenset:
    return frozenset(json.loads(data.decode()))


# --------------------------------------------------------------------------- messages


@dataclass(slots=True, kw_only=True)
class RequestVote:
    src: Any
    dst: Any
    term: int
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False  # sent because the leader handed over: bypasses the leader lease


@dataclass(slots=True, kw_only=True)
class VoteResponse:
    src: Any
    dst: Any
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(slots=True, kw_only=True)
class AppendEntries:
    src: Any
    dst: Any
    term: int
    prev_index: int
    prev_term: int
    entries: tuple = ()
    commit: int = 0


@dataclass(slots=True, kw_only=True)
class AppendResponse:
    """Answer to AppendEntries and InstallSnapshot.

    On success ``index`` is the highest index known to match the leader. On rejection it is
    the rejected ``prev_index`` and ``conflict_term``/``conflict_index`` let the leader skip a
    whole term per round trip (0 term: the follower's log is shorter than ``prev_index``).
    """

    src: Any
    dst: Any
    term: int
    success: bool
    index: int
    conflict_index: int = 0
    conflict_term: int = 0


@dataclass(slots=True, kw_only=True)
class Heartbeat:
    src: Any
    dst: Any
    term: int
    commit: int
    seq: int = 0  # ReadIndex round; echoed back


@dataclass(slots=True, kw_only=True)
class HeartbeatResponse:
    src: Any
    dst: Any
    term: int
    seq: int = 0


@dataclass(slots=True, kw_only=True)
class InstallSnapshot:
    src: Any
    dst: Any
    term: int
    snapshot: Snapshot


@dataclass(slots=True, kw_only=True)
class TimeoutNow:
    """Leadership transfer: the receiver campaigns at once."""

    src: Any
    dst: Any
    term: int


Message = Union[
    RequestVote, VoteResponse, AppendEntries, AppendResponse, Heartbeat, HeartbeatResponse, InstallSnapshot, TimeoutNow
]
_MESSAGE_TYPES = (
    RequestVote, VoteResponse, AppendEntries, AppendResponse, Heartbeat, HeartbeatResponse, InstallSnapshot, TimeoutNow
)
_TAG = {cls: i for i, cls in enumerate(_MESSAGE_TYPES)}


_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in _MESSAGE_TYPES}
_LEADER_EARLY = (AppendEntries, Heartbeat)
_APPEND_TAG = _TAG[AppendEntries]
_KINDS = tuple(EntryKind)


def message_to_wire(msg: Message) -> list:
    """A list of plain values (ints, bools, bytes, str, lists) for msgpack.

    Entries travel as compact ``[term, index, data, kind]`` lists; this is the replication hot
    path, hence the special case for AppendEntries.
    """
    cls = type(msg)
    if cls is AppendEntries:
        return [_APPEND_TAG, msg.src, msg.dst, msg.term, msg.prev_index, msg.prev_term,
                [[e.term, e.index, e.data, e.kind.value] for e in msg.entries], msg.commit]
    out: list = [_TAG[cls]]
    for name in _FIELDS[cls]:
        value = getattr(msg, name)
        if name == "snapshot":
            value = [value.index, value.term, list(value.voters), value.data]
        out.append(value)
    return out


def _entries_from_wire(items: Any) -> tuple:
    kinds = _KINDS
    out = []
    for t, i, d, k in items:
        if type(d) is not bytes:
            if not isinstance(d, (bytearray, memoryview)):
                raise TypeError(f"entry data must be bytes, not {type(d).__name__}")
            d = bytes(d)
        if type(t) is not int or type(i) is not int or type(k) is not int or k < 0:
            raise TypeError("entry term, index and kind must be non-negative integers")
        out.append(Entry(t, i, d, kinds[k]))
    return tuple(out)


def message_from_wire(obj: list) -> Message:
    """Inverse of :func:`message_to_wire`; raises ``ValueError`` on malformed input."""
    try:
        cls = _MESSAGE_TYPES[obj[0]]
        names = _FIELDS[cls]
        if len(obj) != len(names) + 1:
            raise ValueError(f"{cls.__name__} expects {len(names)} fields, got {len(obj) - 1}")
        if cls is AppendEntries:
            return AppendEntries(src=obj[1], dst=obj[2], term=obj[3], prev_index=obj[4], prev_term=obj[5],
                                 entries=_entries_from_wire(obj[6]), commit=obj[7])
        kwargs = dict(zip(names, obj[1:]))
        if "snapshot" in kwargs:
            i, t, voters, d = kwargs["snapshot"]
            kwargs["snapshot"] = Snapshot(i, t, tuple(voters), bytes(d))
        return cls(**kwargs)
    except (IndexError, TypeError, KeyError) as exc:
        raise ValueError(f"malformed raft message: {exc}") from exc


# --------------------------------------------------------------------------- configuration and outputs


@dataclass(frozen=True)
class RaftConfig:
    """Tunables; times are in ticks of the driver's clock."""

    election_ticks: int = 10  # election timeout is random in [election_ticks, 2 * election_ticks)
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_append: int = 256
    max_bytes_per_append: int = 1 << 20
    max_inflight_appends: int = 16  # pipelined appends per follower before waiting for acks
    snapshot_retry_ticks: int = 0  # 0: same as election_ticks

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1 or self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("RaftConfig needs 1 <= heartbeat_ticks < election_ticks")
        if self.max_entries_per_append < 1 or self.max_inflight_appends < 1 or self.max_bytes_per_append < 1:
            raise ValueError("RaftConfig batch and in-flight limits must be >= 1")


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting to the driver when it changes."""

    leader: Any
    role: Role
    term: int


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: reads issued with ``ctx`` are linearizable once ``index`` is applied."""

    index: int
    ctx: Any


@dataclass(frozen=True, slots=True)
class NotLeader:
    """A request that only the leader can serve; ``leader_hint`` is the last known leader."""

    leader_hint: Any


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request refused by the leader (membership change in progress, transfer in progress, ...)."""

    reason: str


@dataclass(slots=True)
class Ready:
    """Everything the driver must do; see the module docstring for the order."""

    hard_state: HardState | None = None
    entries_to_persist: list = field(default_factory=list)
    snapshot_to_persist: Snapshot | None = None
    snapshot_to_apply: Snapshot | None = None
    messages: list = field(default_factory=list)
    committed_entries: list = field(default_factory=list)
    read_states: list = field(default_factory=list)
    soft_state: SoftState | None = None


# --------------------------------------------------------------------------- leader bookkeeping


class _PeerState(enum.Enum):
    PROBE = 0  # one append at a time until we find where the logs match
    REPLICATE = 1  # optimistic pipelining, bounded by max_inflight_appends
    SNAPSHOT = 2  # an InstallSnapshot is in flight


class _Progress:
    __slots__ = ("match", "next", "state", "probe_sent", "inflight", "recent_active", "pending_snapshot",
                 "snapshot_elapsed", "acked")

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = _PeerState.PROBE
        self.probe_sent = False
        self.inflight: list[int] = []  # last index of each append sent in REPLICATE state
        self.recent_active = False
        self.pending_snapshot = 0
        self.snapshot_elapsed = 0
        self.acked = False  # an append response arrived since the last heartbeat response

    def become_probe(self) -> None:
        if self.state is _PeerState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self._reset(_PeerState.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(_PeerState.REPLICATE)

    def become_snapshot(self, index: int) -> None:
        self._reset(_PeerState.SNAPSHOT)
        self.pending_snapshot = index

    def _reset(self, state: _PeerState) -> None:
        self.state = state
        self.probe_sent = False
        self.inflight.clear()
        self.pending_snapshot = 0
        self.snapshot_elapsed = 0

    def paused(self, max_inflight: int) -> bool:
        if self.state is _PeerState.PROBE:
            return self.probe_sent
        if self.state is _PeerState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return True


# --------------------------------------------------------------------------- the node


class RaftNode:
    """One Raft participant.

    ``peers`` is the initial membership *including this node*; it is ignored once the log or a
    snapshot holds a configuration. A node joining an existing group passes ``peers=()``: it
    stays passive until the leader contacts it. ``storage`` is read once, at construction, with
    ``storage.load()``; writing is the driver's job (see :class:`Ready`).
    """

    def __init__(self, id: NodeId, peers: Iterable[NodeId], storage, config: RaftConfig | None = None,
                 rng: random.Random | None = None) -> None:
        self.id = id
        self.config = config or RaftConfig()
        self._rng = rng or random.Random(0)
        self._initial_voters = frozenset(peers)
        state = storage.load()
        hs: HardState = state.hard_state
        self._snapshot: Snapshot | None = state.snapshot
        self._snap_index = state.snapshot.index if state.snapshot else 0
        self._snap_term = state.snapshot.term if state.snapshot else 0
        self._entries: list[Entry] = [e for e in state.entries if e.index > self._snap_index]
        if self._entries and self._entries[0].index != self._snap_index + 1:
            raise ValueError(f"storage log starts at {self._entries[0].index}, expected {self._snap_index + 1}")
        self.term = hs.term
        self.vote = hs.vote
        self.commit = max(hs.commit, self._snap_index)
        self.applied = 0  # the state machine is rebuilt from the snapshot plus replay
        self.leader: Any = None
        self.role = Role.FOLLOWER
        self._stable = self.last_index
        self._persisted_hs = HardState(hs.term, hs.vote, hs.commit)
        self._reported_soft: SoftState | None = SoftState(None, Role.FOLLOWER, hs.term)
        self._pending_snapshot: Snapshot | None = None
        # The first Ready after a restart hands the stored snapshot to the state machine.
        self._snapshot_to_apply: Snapshot | None = self._snapshot
        self._msgs: list = []
        self._read_states: list[ReadState] = []
        self.voters: frozenset = frozenset()
        self._config_index = 0
        self._recompute_voters()
        self._progress: dict[Any, _Progress] = {}
        self._votes: dict[Any, bool] = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._pending_conf_index = 0
        self._lead_transferee: Any = None
        self._read_seq = 0
        self._read_acks: dict[Any, int] = {}
        self._pending_reads: list[tuple[int, int, Any]] = []  # (seq, index, ctx)
        self._reads_before_commit: list[Any] = []  # ctx of reads waiting for the first commit of our term
        self._reset_timeout()

    # ------------------------------------------------------------------ log access

    @property
    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else self._snap_index

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self._snap_term

    @property
    def first_index(self) -> int:
        """First index still in the in-memory log (everything before is in the snapshot)."""
        return self._snap_index + 1

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away or beyond the log."""
        if index == self._snap_index:
            return self._snap_term
        if index < self._snap_index or index > self.last_index:
            return None
        return self._entries[index - self._snap_index - 1].term

    def entries(self, lo: int, hi: int | None = None) -> list[Entry]:
        """Entries with ``lo <= index < hi`` still in memory (``hi`` defaults to the end)."""
        base = self._snap_index + 1
        lo = max(lo, base)
        stop = len(self._entries) if hi is None else max(0, hi - base)
        return self._entries[lo - base:stop]

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        """Advance logical time by one tick."""
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self._election_elapsed += 1
        if self._promotable() and self._election_elapsed >= self._randomized_timeout:
            self._election_elapsed = 0
            self._campaign(pre=self.config.pre_vote)

    def campaign(self) -> None:
        """Start an election now (tests and operators; normally ticks do this)."""
        if self.role is not Role.LEADER and self._promotable():
            self._campaign(pre=self.config.pre_vote)

    def propose(self, data: bytes) -> int | NotLeader | Rejected:
        """Append an application command; returns its log index (not yet committed)."""
        if self.role is not Role.LEADER:
            return NotLeader(self.leader)
        if self._lead_transferee is not None:
            return Rejected("leadership transfer in progress")
        return self._append_local(EntryKind.NORMAL, bytes(data))

    def propose_batch(self, datas: Iterable[bytes]) -> int | NotLeader | Rejected:
        """Append several commands with one broadcast; returns the index of the first one.

        The commands get consecutive indexes. One round of appends carries them all, which is
        how a driver coalesces concurrent proposals.
        """
        if self.role is not Role.LEADER:
            return NotLeader(self.leader)
        if self._lead_transferee is not None:
            return Rejected("leadership transfer in progress")
        first = self.last_index + 1
        term = self.term
        new = [Entry(term, first + n, bytes(d)) for n, d in enumerate(datas)]
        if new:
            self._append_entries(new)
            self._maybe_commit()
            self._broadcast_append()
        return first

    def add_server(self, node: NodeId) -> int | NotLeader | Rejected:
        """Propose adding one voter (one change at a time; effective once appended)."""
        return self._change_membership(node, add=True)

    def remove_server(self, node: NodeId) -> int | NotLeader | Rejected:
        """Propose removing one voter; a leader removing itself steps down once it commits."""
        return self._change_membership(node, add=False)

    @property
    def pending_change_index(self) -> int:
        """On a leader: the index a new membership change must wait for (committed), else 0.

        That is the last change's entry, or the leader's first entry of its term.
        """
        if self.role is not Role.LEADER or self._pending_conf_index <= self.commit:
            return 0
        return self._pending_conf_index

    def read_index(self, ctx: Any) -> None | NotLeader:
        """Ask for a linearizable read point; answered later as a :class:`ReadState` with ``ctx``.

        The leader records its commit index, then confirms it is still the leader with a
        heartbeat round acknowledged by a majority. Reads are dropped if leadership is lost
        before that (the caller retries on the new leader after a timeout).
        """
        if self.role is not Role.LEADER:
            return NotLeader(self.leader)
        if self.term_at(self.commit) != self.term:
            # The commit index of a fresh leader may lag the true one until its no-op commits.
            self._reads_before_commit.append(ctx)
            return None
        self._register_read(ctx)
        return None

    def transfer_leadership(self, target: NodeId) -> None | NotLeader | Rejected:
        """Hand leadership to ``target`` once its log is caught up (aborted after an election timeout)."""
        if self.role is not Role.LEADER:
            return NotLeader(self.leader)
        if target == self.id or target not in self._progress:
            return Rejected(f"{target!r} is not another voter")
        self._lead_transferee = target
        self._election_elapsed = 0
        if self._progress[target].match == self.last_index:
            self._send(TimeoutNow(src=self.id, dst=target, term=self.term))
        else:
            self._send_append(target)
        return None

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Replace the log up to ``index`` (<= applied) by a snapshot holding ``data``."""
        if index <= self._snap_index:
            raise ValueError(f"index {index} is already compacted (snapshot at {self._snap_index})")
        if index > self.applied:
            raise ValueError(f"cannot compact past the applied index {self.applied}")
        snap = Snapshot(index, self.term_at(index), tuple(sorted(self._voters_at(index))), bytes(data))
        del self._entries[: index - self._snap_index]
        self._snap_index, self._snap_term, self._snapshot = index, snap.term, snap
        self._pending_snapshot = snap
        return snap

    def take_leader_messages(self) -> list:
        """Remove and return a leader's pending ``AppendEntries`` and ``Heartbeat`` messages.

        A driver may send these before persisting the current Ready (Raft thesis 10.2.1: a
        leader's own entries count towards commit only once persisted), for example while an
        fsync is running, so replication does not wait for the leader's disk. Every other
        message stays for the next Ready. Returns ``[]`` on a non-leader.
        """
        if self.role is not Role.LEADER or not self._msgs:
            return []
        early, rest = [], []
        for m in self._msgs:
            (early if type(m) in _LEADER_EARLY else rest).append(m)
        self._msgs = rest
        return early

    def step(self, m: Message) -> None:
        """Process one message from a peer."""
        if m.term > self.term:
            if isinstance(m, RequestVote) and not m.transfer and self._in_lease():
                return  # a live leader exists: ignore disruptive candidates (removed or partitioned nodes)
            if isinstance(m, RequestVote) and m.pre_vote:
                pass  # a pre-vote never changes our term
            elif isinstance(m, VoteResponse) and m.pre_vote and m.granted:
                pass  # granted pre-votes carry the term we would campaign for
            else:
                leader = m.src if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)) else None
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            if isinstance(m, (AppendEntries, Heartbeat)):
                # Tell a stale leader about the newer term so it steps down (with pre-vote and
                # check-quorum it may otherwise never hear a higher term).
                self._send(AppendResponse(src=self.id, dst=m.src, term=self.term, success=False, index=0))
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._send(VoteResponse(src=self.id, dst=m.src, term=self.term, granted=False, pre_vote=True))
            return

        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            if isinstance(m, AppendResponse):
                self._handle_append_response(m)
            elif isinstance(m, HeartbeatResponse):
                self._handle_heartbeat_response(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
                self._become_follower(m.term, m.src)
                self._step_follower(m)
            elif isinstance(m, VoteResponse) and m.pre_vote == (self.role is Role.PRE_CANDIDATE):
                self._handle_vote_response(m)
        else:
            self._step_follower(m)

    # ------------------------------------------------------------------ outputs

    def has_ready(self) -> bool:
        return bool(
            self._msgs
            or self._read_states
            or self._pending_snapshot is not None
            or self._snapshot_to_apply is not None
            or self._stable < self.last_index
            or self.commit > self.applied
            or self._hard_state() != self._persisted_hs
            or self._soft_state() != self._reported_soft
        )

    def ready(self) -> Ready:
        """Collect pending effects; see the module docstring for how to handle them."""
        hs = self._hard_state()
        soft = self._soft_state()
        apply_from = self.applied + 1
        if self._snapshot_to_apply is not None:
            apply_from = max(apply_from, self._snapshot_to_apply.index + 1)
        rd = Ready(
            hard_state=hs if hs != self._persisted_hs else None,
            entries_to_persist=self.entries(self._stable + 1),
            snapshot_to_persist=self._pending_snapshot,
            snapshot_to_apply=self._snapshot_to_apply,
            messages=self._msgs,
            committed_entries=self.entries(apply_from, self.commit + 1),
            read_states=self._read_states,
            soft_state=soft if soft != self._reported_soft else None,
        )
        self._msgs = []
        self._read_states = []
        if rd.soft_state is not None:
            self._reported_soft = soft
        return rd

    def advance(self, rd: Ready) -> None:
        """Acknowledge that ``rd`` was persisted, sent and applied."""
        if rd.hard_state is not None:
            self._persisted_hs = rd.hard_state
        if rd.snapshot_to_persist is not None and self._pending_snapshot is rd.snapshot_to_persist:
            self._pending_snapshot = None
        if rd.snapshot_to_apply is not None:
            self.applied = max(self.applied, rd.snapshot_to_apply.index)
            if self._snapshot_to_apply is rd.snapshot_to_apply:
                self._snapshot_to_apply = None
        if rd.entries_to_persist:
            last = rd.entries_to_persist[-1]
            # A truncation between ready() and advance() may have replaced these entries.
            if self.term_at(last.index) == last.term and last.index > self._stable:
                self._stable = last.index
        if rd.committed_entries:
            self.applied = max(self.applied, rd.committed_entries[-1].index)
        if self.role is Role.LEADER and self._maybe_commit():
            self._broadcast_append()

    # ------------------------------------------------------------------ role changes

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._reset_timeout()
        self._votes = {}
        self._progress = {}
        self._lead_transferee = None
        self._pending_reads = []
        self._reads_before_commit = []
        self._read_acks = {}

    def _reset_timeout(self) -> None:
        t = self.config.election_ticks
        self._randomized_timeout = self._rng.randrange(t, 2 * t)

    def _become_follower(self, term: int, leader: Any) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        for peer in sorted(self.voters, key=repr):  # sorted: message order must not depend on hashing
            if peer != self.id:
                self._add_progress(peer)
        # No membership change before an entry of this term commits (the single-server change
        # bug): the no-op doubles as that entry.
        self._pending_conf_index = self._append_local(EntryKind.NOOP, b"")

    def _add_progress(self, peer: Any) -> None:
        pr = _Progress(self.last_index + 1)
        pr.recent_active = True  # give every peer a full election timeout before check-quorum counts it
        self._progress[peer] = pr

    def _campaign(self, pre: bool, transfer: bool = False) -> None:
        if pre:
            self.role = Role.PRE_CANDIDATE
            self.leader = None
            self._votes = {}
            self._reset_timeout()
            term = self.term + 1
        else:
            self._reset(self.term + 1)
            self.role = Role.CANDIDATE
            self.vote = self.id
            term = self.term
        if self._poll(self.id, True):
            return
        for peer in sorted(self.voters, key=repr):
            if peer != self.id:
                self._send(RequestVote(src=self.id, dst=peer, term=term, last_index=self.last_index,
                                       last_term=self.last_term, pre_vote=pre, transfer=transfer))

    def _poll(self, voter: Any, granted: bool) -> bool:
        """Record a vote; returns True if the election was decided."""
        if voter in self.voters:
            self._votes.setdefault(voter, granted)
        yes = sum(1 for v in self._votes.values() if v)
        no = len(self._votes) - yes
        quorum = len(self.voters) // 2 + 1
        if yes >= quorum:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre=False)
            else:
                self._become_leader()
            return True
        if no >= quorum:
            self._become_follower(self.term, None)
            return True
        return False

    def _promotable(self) -> bool:
        return self.id in self.voters

    def _in_lease(self) -> bool:
        return (self.config.check_quorum and self.leader is not None
                and self._election_elapsed < self.config.election_ticks)

    # ------------------------------------------------------------------ elections

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = (self.vote == m.src
                    or (self.vote is None and self.leader is None)
                    or (m.pre_vote and m.term > self.term))
        up_to_date = (m.last_term, m.last_index) >= (self.last_term, self.last_index)
        if can_vote and up_to_date:
            self._send(VoteResponse(src=self.id, dst=m.src, term=m.term, granted=True, pre_vote=m.pre_vote))
            if not m.pre_vote:
                self.vote = m.src
                self._election_elapsed = 0
        else:
            self._send(VoteResponse(src=self.id, dst=m.src, term=self.term, granted=False, pre_vote=m.pre_vote))

    def _handle_vote_response(self, m: VoteResponse) -> None:
        self._poll(m.src, m.granted)

    # ------------------------------------------------------------------ follower side

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendEntries):
            self._election_elapsed = 0
            self.leader = m.src
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self._election_elapsed = 0
            self.leader = m.src
            self.commit = max(self.commit, min(m.commit, self.last_index))
            self._send(HeartbeatResponse(src=self.id, dst=m.src, term=self.term, seq=m.seq))
        elif isinstance(m, InstallSnapshot):
            self._election_elapsed = 0
            self.leader = m.src
            self._handle_snapshot(m)
        elif isinstance(m, TimeoutNow) and self._promotable():
            self._campaign(pre=False, transfer=True)

    def _handle_append(self, m: AppendEntries) -> None:
        def reply(**kw: Any) -> None:
            self._send(AppendResponse(src=self.id, dst=m.src, term=self.term, **kw))

        if m.prev_index < self.commit:
            reply(success=True, index=self.commit)
            return
        local_term = self.term_at(m.prev_index)
        if local_term != m.prev_term:
            if local_term is None:  # our log is too short
                reply(success=False, index=m.prev_index, conflict_index=self.last_index + 1)
                return
            first = m.prev_index
            while first - 1 > max(self._snap_index, self.commit) and self.term_at(first - 1) == local_term:
                first -= 1
            reply(success=False, index=m.prev_index, conflict_index=first, conflict_term=local_term)
            return
        last_new = m.prev_index + len(m.entries)
        for pos, entry in enumerate(m.entries):
            have = self.term_at(entry.index)
            if have == entry.term:
                continue
            if have is not None:
                if entry.index <= self.commit:
                    raise AssertionError(f"leader {m.src} overwrites committed entry {entry.index}")
                self._truncate_from(entry.index)
            self._append_entries(list(m.entries[pos:]))
            break
        self.commit = max(self.commit, min(m.commit, last_new))
        reply(success=True, index=last_new)

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        snap = m.snapshot
        if snap.index <= self.commit:
            self._send(AppendResponse(src=self.id, dst=m.src, term=self.term, success=True, index=self.commit))
            return
        if self.term_at(snap.index) == snap.term:
            # We hold the snapshot's last entry, hence the whole prefix: just commit it.
            self.commit = snap.index
        else:
            self._entries = []
            self._snap_index, self._snap_term, self._snapshot = snap.index, snap.term, snap
            self.commit = snap.index
            self._stable = snap.index
            self._pending_snapshot = snap
            self._snapshot_to_apply = snap
            self._recompute_voters()
        self._send(AppendResponse(src=self.id, dst=m.src, term=self.term, success=True, index=snap.index))

    # ------------------------------------------------------------------ log mutation

    def _append_entries(self, new: list[Entry]) -> None:
        self._entries.extend(new)
        for e in new:
            if e.kind is EntryKind.CONFIG:
                self._set_voters(decode_voters(e.data), e.index)

    def _truncate_from(self, index: int) -> None:
        del self._entries[index - self._snap_index - 1:]
        self._stable = min(self._stable, index - 1)
        if self._config_index >= index:
            self._recompute_voters()

    def _append_local(self, kind: EntryKind, data: bytes) -> int:
        index = self.last_index + 1
        self._append_entries([Entry(self.term, index, data, kind)])
        self._maybe_commit()  # removing a voter can make earlier entries committed
        self._broadcast_append()
        return index

    def _change_membership(self, node: Any, add: bool) -> int | NotLeader | Rejected:
        if self.role is not Role.LEADER:
            return NotLeader(self.leader)
        if self._pending_conf_index > self.commit:
            return Rejected("a membership change is still pending; try again once it commits")
        if self._lead_transferee is not None:
            return Rejected("leadership transfer in progress")
        if add == (node in self.voters):
            return Rejected(f"{node!r} is {'already' if add else 'not'} a voter")
        if not add and len(self.voters) == 1:
            return Rejected("cannot remove the last voter")
        voters = self.voters | {node} if add else self.voters - {node}
        index = self._append_local(EntryKind.CONFIG, encode_voters(voters))
        self._pending_conf_index = index
        return index

    # ------------------------------------------------------------------ membership

    def _set_voters(self, voters: frozenset, index: int) -> None:
        self.voters = voters
        self._config_index = index
        if self.role is Role.LEADER:
            for peer in sorted(voters, key=repr):
                if peer != self.id and peer not in self._progress:
                    self._add_progress(peer)
            for peer in list(self._progress):
                if peer not in voters:
                    del self._progress[peer]
                    self._read_acks.pop(peer, None)
            if self._lead_transferee not in self._progress:
                self._lead_transferee = None

    def _voters_at(self, index: int) -> frozenset:
        for e in reversed(self.entries(self._snap_index + 1, index + 1)):
            if e.kind is EntryKind.CONFIG:
                return decode_voters(e.data)
        if self._snapshot is not None:
            return frozenset(self._snapshot.voters)
        return self._initial_voters

    def _recompute_voters(self) -> None:
        for e in reversed(self._entries):
            if e.kind is EntryKind.CONFIG:
                self._set_voters(decode_voters(e.data), e.index)
                return
        if self._snapshot is not None:
            self._set_voters(frozenset(self._snapshot.voters), self._snap_index)
        else:
            self._set_voters(self._initial_voters, 0)

    # ------------------------------------------------------------------ leader side

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        retry = self.config.snapshot_retry_ticks or self.config.election_ticks
        for peer, pr in self._progress.items():
            if pr.state is _PeerState.SNAPSHOT:
                pr.snapshot_elapsed += 1
                if pr.snapshot_elapsed >= retry:  # the snapshot (or its answer) was probably lost
                    pr.become_probe()
        if self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            if self.config.check_quorum:
                active = sum(1 for v in self.voters if v == self.id or (v in self._progress and self._progress[v].recent_active))
                for pr in self._progress.values():
                    pr.recent_active = False
                if active < len(self.voters) // 2 + 1:
                    self._become_follower(self.term, None)
                    return
            self._lead_transferee = None  # a transfer that did not finish within a timeout is abandoned
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _broadcast_heartbeat(self) -> None:
        for peer, pr in self._progress.items():
            self._send(Heartbeat(src=self.id, dst=peer, term=self.term, commit=min(pr.match, self.commit),
                                 seq=self._read_seq))

    def _broadcast_append(self) -> None:
        for peer in self._progress:
            self._send_append(peer)

    def _send_append(self, peer: Any, send_if_empty: bool = True) -> bool:
        pr = self._progress[peer]
        if pr.paused(self.config.max_inflight_appends):
            return False
        prev = pr.next - 1
        prev_term = self.term_at(prev)
        if prev_term is None:
            snap = self._snapshot
            assert snap is not None, "log compacted without a snapshot"
            self._send(InstallSnapshot(src=self.id, dst=peer, term=self.term, snapshot=snap))
            pr.become_snapshot(snap.index)
            return True
        batch = self._batch(pr.next)
        if not batch and not send_if_empty:
            return False
        self._send(AppendEntries(src=self.id, dst=peer, term=self.term, prev_index=prev, prev_term=prev_term,
                                 entries=tuple(batch), commit=self.commit))
        if pr.state is _PeerState.REPLICATE and batch:
            pr.next = batch[-1].index + 1
            pr.inflight.append(batch[-1].index)
        elif pr.state is _PeerState.PROBE:
            pr.probe_sent = True
        return True

    def _batch(self, start: int) -> list[Entry]:
        ents = self.entries(start, start + self.config.max_entries_per_append)
        size = 0
        for n, e in enumerate(ents):
            size += len(e.data)
            if size > self.config.max_bytes_per_append and n > 0:
                return ents[:n]
        return ents

    def _handle_append_response(self, m: AppendResponse) -> None:
        pr = self._progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.acked = True
        if not m.success:
            if pr.state is _PeerState.REPLICATE and m.index <= pr.match:
                return  # stale
            if pr.state is _PeerState.PROBE and m.index != pr.next - 1:
                return  # stale
            if pr.state is _PeerState.SNAPSHOT:
                return
            nxt = m.conflict_index
            if m.conflict_term:
                i = min(m.index, self.last_index)
                while i > self._snap_index and self.term_at(i) > m.conflict_term:
                    i -= 1
                if self.term_at(i) == m.conflict_term:
                    nxt = i + 1
            pr.become_probe()
            pr.next = max(min(nxt, m.index), pr.match + 1)
            self._send_append(m.src)
            return
        advanced = m.index > pr.match
        if advanced:
            pr.match = m.index
        if pr.state is _PeerState.PROBE:
            pr.become_replicate()
        elif pr.state is _PeerState.SNAPSHOT:
            if pr.match >= pr.pending_snapshot:
                pr.become_replicate()
        else:
            pr.next = max(pr.next, pr.match + 1)
            while pr.inflight and pr.inflight[0] <= m.index:
                pr.inflight.pop(0)
        if advanced and self._maybe_commit():
            if self.role is not Role.LEADER:
                return  # we just committed our own removal
            self._broadcast_append()  # tells every follower the new commit index
        while self._send_append(m.src, send_if_empty=False):
            pass
        if m.src == self._lead_transferee and pr.match == self.last_index:
            self._send(TimeoutNow(src=self.id, dst=m.src, term=self.term))

    def _handle_heartbeat_response(self, m: HeartbeatResponse) -> None:
        pr = self._progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False
        if pr.match < self.last_index:
            if pr.state is _PeerState.REPLICATE and not pr.acked:
                # A heartbeat went round but our appends did not: assume they were lost.
                pr.become_probe()
            if pr.state is _PeerState.PROBE:
                self._send_append(m.src)
        pr.acked = False
        if m.seq > self._read_acks.get(m.src, 0):
            self._read_acks[m.src] = m.seq
            self._release_reads()

    def _maybe_commit(self) -> bool:
        if not self.voters:
            return False
        matches = sorted((self._stable if v == self.id else (self._progress[v].match if v in self._progress else 0))
                         for v in self.voters)
        candidate = matches[(len(matches) - 1) // 2]  # the highest index a majority holds
        # Figure 8: only entries of the current term are committed by counting replicas.
        if candidate <= self.commit or self.term_at(candidate) != self.term:
            return False
        self.commit = candidate
        if self._reads_before_commit:
            waiting, self._reads_before_commit = self._reads_before_commit, []
            for ctx in waiting:
                self._register_read(ctx)
        if self.id not in self.voters and self._config_index <= self.commit:
            self._become_follower(self.term, None)  # we committed our own removal
        return True

    # ------------------------------------------------------------------ reads

    def _register_read(self, ctx: Any) -> None:
        if self.voters == {self.id}:
            self._read_states.append(ReadState(self.commit, ctx))
            return
        self._read_seq += 1
        self._pending_reads.append((self._read_seq, self.commit, ctx))
        self._broadcast_heartbeat()

    def _release_reads(self) -> None:
        quorum = len(self.voters) // 2 + 1
        while self._pending_reads:
            seq, index, ctx = self._pending_reads[0]
            acks = sum(1 for v in self.voters if v == self.id or self._read_acks.get(v, 0) >= seq)
            if acks < quorum:
                return
            self._pending_reads.pop(0)
            self._read_states.append(ReadState(index, ctx))

    # ------------------------------------------------------------------ helpers

    def _send(self, m: Message) -> None:
        self._msgs.append(m)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit)

    def _soft_state(self) -> SoftState:
        return SoftState(self.leader, self.role, self.term)

    def __repr__(self) -> str:
        return (f"RaftNode({self.id!r}, {self.role.value}, term={self.term}, leader={self.leader!r}, "
                f"last={self.last_index}, commit={self.commit}, applied={self.applied})")
