"""The trio driver of a :class:`~eco.runtime.raft.RaftNode`: clock, I/O and the client API.

::

    driver = RaftDriver("n1", ["n1", "n2", "n3"], SqliteStorage(path), send, state_machine=KVStateMachine())
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        driver.deliver("n2", wire_msg)          # for every message a peer sent us
        result = await driver.propose(encode_command("c1", 1, "put", "k", "v"), timeout=2.0)
        value = await driver.read("k")          # linearizable (ReadIndex)

The driver is transport-agnostic: ``send(peer_id, wire_msg)`` must not block (drop the message
when the peer is unreachable or its buffer is full; Raft retries), and whoever receives a
peer's message calls :meth:`RaftDriver.deliver` (wire form: :func:`~eco.runtime.raft.message_to_wire`).

One task ticks the node every ``tick_interval`` seconds; another handles every ``Ready`` in the
order the core demands: persist (one atomic ``storage.persist``, optionally in a worker thread
so a slow fsync does not stall the event loop), then send, then apply, then ``advance``. While
one Ready is being persisted, proposals and peer messages keep arriving; the next Ready carries
all of them in one transaction (group commit) and concurrent proposals go into the log as one
batch (:meth:`RaftNode.propose_batch`), so one append per follower carries them all.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from .raft import (
    AppendEntries,
    Heartbeat,
    NotLeader,
    RaftConfig,
    RaftNode,
    Ready,
    Rejected,
    Role,
    message_from_wire,
    message_to_wire,
)

log = logging.getLogger("eco.raft")

SendFn = Callable[[Any, list], None]
_LEADER_EARLY = (AppendEntries, Heartbeat)
_APPLY_CHUNK = 256  # committed entries applied between two checkpoints


# ------------------------------------------------------------------------ errors


class RaftError(Exception):
    """Base class of the driver's client errors."""


class NotLeaderError(RaftError):
    """This node is not the leader; ``leader_hint`` is the last leader it knew of (or None)."""

    def __init__(self, leader_hint: Any):
        super().__init__(f"not the leader (leader: {leader_hint if leader_hint is not None else 'unknown'})")
        self.leader_hint = leader_hint


class ProposalDropped(RaftError):
    """The proposal was overwritten by another leader's entry: it was NOT applied. Retry it."""


class RaftTimeout(RaftError):
    """No answer in time. The outcome is unknown: retry with the same session request id."""


class RequestRejected(RaftError):
    """The leader refused the request (for example while a leadership transfer runs)."""


class DriverStopped(RaftError):
    """The driver stopped (or was never started) before the request finished."""


# ------------------------------------------------------------------ notifications


@dataclass(frozen=True)
class LeaderChange:
    """The node's view of leadership: ``term`` is the fencing token of the leader's reign."""

    term: int
    leader: Any
    is_leader: bool


class _Waiter:
    """One pending request: parked directly on trio's scheduler (no Event, no cancel scope).

    This is the per-proposal hot path; timeouts are swept by the tick loop (see ``_expire``).
    """

    __slots__ = ("done", "value", "error", "task", "callback")

    def __init__(self, callback: Callable[[Any, BaseException | None], None] | None = None) -> None:
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.task: Any = None  # the parked task, if any
        self.callback = callback  # propose_nowait's completion callback

    def resolve(self, value: Any) -> None:
        if not self.done:
            self.done = True
            self.value = value
            self._reschedule()

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.error = error
            self._reschedule()

    def _reschedule(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)
        elif self.callback is not None:
            try:
                self.callback(self.value, self.error)
            except Exception:  # a caller's bug must not break the driver
                log.exception("a propose_nowait callback failed")


# ------------------------------------------------------------------------ driver


class RaftDriver:
    """Runs one Raft node under trio; see the module docstring.

    ``state_machine`` needs ``apply(entry) -> result``, ``snapshot() -> bytes``,
    ``restore(blob, index)`` and, for :meth:`read`, ``get(key)`` (as
    :class:`~eco.runtime.raft_kv.KVStateMachine`). ``compact_every``: once that many entries
    were applied since the last snapshot, the state machine is snapshotted and the log trimmed
    (0 disables). ``persist_in_thread`` runs ``storage.persist`` in a worker thread (one at a
    time, so ordering holds); use it with fsyncing storage.
    """

    def __init__(
        self,
        node_id: Any,
        peers: Iterable[Any],
        storage: Any,
        send: SendFn,
        *,
        state_machine: Any = None,
        config: RaftConfig | None = None,
        tick_interval: float = 0.01,
        rng: random.Random | None = None,
        persist_in_thread: bool = False,
        compact_every: int = 10_000,
    ) -> None:
        if tick_interval <= 0:
            raise ValueError("tick_interval must be > 0")
        self.id = node_id
        self.storage = storage
        self.state_machine = state_machine
        self.tick_interval = tick_interval
        self.persist_in_thread = persist_in_thread
        self.compact_every = compact_every
        self.node = RaftNode(node_id, peers, storage, config, rng or random.Random())
        self._send = send
        self._wakeup = trio.Event()
        self._pump_wakeup = trio.Event()
        self._persisting = False  # a Ready's write is running (its thread holds the ready loop)
        self._proposals: list[tuple[bytes, _Waiter]] = []
        self._waiters: dict[int, tuple[int, _Waiter]] = {}  # log index -> (term proposed in, waiter)
        self._read_batch: list[_Waiter] = []  # reads waiting for the next ReadIndex round
        self._read_rounds: dict[int, list[_Waiter]] = {}  # ctx -> reads of that round
        self._ready_reads: list[tuple[int, list[_Waiter]]] = []  # (index, reads) waiting to be applied
        self._read_ctx = 0
        self._apply_watchers: list[tuple[int, _Waiter]] = []  # (index, waiter): resolved once applied
        self._config_lock = trio.Lock()  # one membership change at a time
        self._deadlines: list[tuple[float, int, _Waiter, str, float]] = []  # heap swept by the tick loop
        self._deadline_seq = itertools.count()
        self._leader = LeaderChange(self.node.term, None, False)
        self._leader_changed = trio.Event()
        self._running = False
        self._stopped = False
        self.stats = {"readies": 0, "persists": 0, "entries_persisted": 0, "proposal_batches": 0, "applied": 0}

    # ------------------------------------------------------------ properties

    @property
    def is_leader(self) -> bool:
        return self._leader.is_leader

    @property
    def leader_id(self) -> Any:
        return self._leader.leader

    @property
    def term(self) -> int:
        return self._leader.term

    @property
    def leadership(self) -> LeaderChange:
        """The current view (term, leader, is_leader)."""
        return self._leader

    @property
    def members(self) -> frozenset:
        """The current configuration (voters), as this node knows it: effective once appended."""
        return self.node.voters

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick and handle Readies until cancelled; pending requests then fail with DriverStopped."""
        if self._running or self._stopped:
            raise RuntimeError("a RaftDriver runs once")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._tick_loop)
                nursery.start_soon(self._ready_loop)
                nursery.start_soon(self._pump_loop)
                task_status.started()
        finally:
            self._running = False
            self._stopped = True
            self._fail_all(DriverStopped("the raft driver stopped"))

    def deliver(self, peer_id: Any, wire_msg: Any) -> None:
        """Feed one message received from ``peer_id`` (never blocks; malformed input is logged)."""
        if self._stopped:
            return
        try:
            msg = message_from_wire(wire_msg)
        except ValueError as exc:
            log.warning("raft node %s dropped a malformed message from %s: %s", self.id, peer_id, exc)
            return
        if msg.dst != self.id:
            log.warning("raft node %s dropped a message for %r from %s", self.id, msg.dst, peer_id)
            return
        self.node.step(msg)
        self._wake()

    def tick(self) -> None:
        """Advance the node's logical clock by one tick (the tick loop does this)."""
        node = self.node
        node.tick()
        if node.role is Role.LEADER:
            # Heartbeats go out now, not when the ready loop gets round to them: a ready loop busy
            # with a slow fsync or a large apply must not let followers time out.
            early = node.take_leader_messages()
            if early:
                self._send_all(early)
        self._wake()

    def campaign(self) -> None:
        """Start an election now instead of waiting for the election timeout."""
        self.node.campaign()
        self._wake()

    # ------------------------------------------------------------ client API

    async def propose(self, data: bytes, timeout: float | None = None) -> Any:
        """Replicate ``data``, apply it and return what the state machine's ``apply`` returned.

        Raises :class:`NotLeaderError` (with the leader hint) on a follower,
        :class:`ProposalDropped` when another leader overwrote the entry, and
        :class:`RaftTimeout` when no outcome is known in time (retry with the same client
        session request id: the key-value state machine then applies it once).
        """
        self._check_running()
        if self.node.role is not Role.LEADER:
            raise NotLeaderError(self.node.leader)
        waiter = _Waiter()
        self._proposals.append((bytes(data), waiter))
        self._wake()
        return await self._wait(waiter, timeout, "proposal")

    def propose_nowait(self, data: bytes, callback: Callable[[Any, BaseException | None], None],
                       timeout: float | None = None) -> None:
        """Like :meth:`propose`, without a task: ``callback(result, error)`` is called once.

        ``error`` is None on success, else one of :meth:`propose`'s exceptions (a
        :class:`RaftTimeout` after ``timeout`` seconds, accurate to one tick). The callback runs
        inside the driver and must not block. Raises :class:`DriverStopped` and
        :class:`NotLeaderError` at once, like :meth:`propose`. For callers that keep many
        proposals in flight (no trio task per proposal).
        """
        self._check_running()
        if self.node.role is not Role.LEADER:
            raise NotLeaderError(self.node.leader)
        waiter = _Waiter(callback)
        self._proposals.append((bytes(data), waiter))
        if timeout is not None:
            self._add_deadline(waiter, timeout, "proposal")
        self._wake()

    async def read_barrier(self, timeout: float | None = None) -> None:
        """Return once the state machine reflects every write committed before the call (ReadIndex)."""
        self._check_running()
        if self.node.role is not Role.LEADER:
            raise NotLeaderError(self.node.leader)
        waiter = _Waiter()
        self._read_batch.append(waiter)
        self._wake()
        await self._wait(waiter, timeout, "read")

    async def read(self, key: Any, timeout: float | None = None) -> Any:
        """Linearizable read of ``key`` from the state machine (``state_machine.get(key)``)."""
        await self.read_barrier(timeout)
        return self.state_machine.get(key)

    async def add_server(self, node_id: Any, timeout: float | None = None) -> frozenset:
        """Add ``node_id`` as a voter (leader only) and return the configuration once committed.

        One change at a time: waits for the previous change (and the leader's first entry of
        its term) to commit. The new node starts with no peers (``peers=()``) and catches up
        from the leader (appends or InstallSnapshot). Idempotent: adding a voter already in the
        configuration just waits for the configuration to commit. Raises
        :class:`NotLeaderError`, :class:`ProposalDropped`, :class:`RaftTimeout` (outcome
        unknown: check :attr:`members` or retry).
        """
        return await self._change_membership(node_id, True, timeout)

    async def remove_server(self, node_id: Any, timeout: float | None = None) -> frozenset:
        """Remove voter ``node_id`` (leader only); like :meth:`add_server`.

        A leader removing itself keeps leading until the removal commits, then steps down.
        Removing the last voter raises :class:`RequestRejected`.
        """
        return await self._change_membership(node_id, False, timeout)

    async def _change_membership(self, node_id: Any, add: bool, timeout: float | None) -> frozenset:
        self._check_running()
        if self.node.role is not Role.LEADER:
            raise NotLeaderError(self.node.leader)
        with trio.move_on_after(math.inf if timeout is None else timeout):
            async with self._config_lock:
                while True:
                    node = self.node
                    if node.role is not Role.LEADER:
                        raise NotLeaderError(node.leader)
                    pending = node.pending_change_index
                    if pending:
                        await self._wait_applied(pending)
                        continue
                    if add == (node_id in node.voters):
                        return node.voters  # already there; nothing is pending, so it is committed
                    index = node.add_server(node_id) if add else node.remove_server(node_id)
                    if isinstance(index, NotLeader):
                        raise NotLeaderError(index.leader_hint)
                    if isinstance(index, Rejected):
                        raise RequestRejected(index.reason)
                    waiter = _Waiter()
                    self._waiters[index] = (node.term, waiter)
                    self._wake()
                    await self._wait(waiter, None, "membership change")
                    log.info("raft node %s: %s %s (members: %s)", self.id, "added" if add else "removed", node_id,
                             sorted(node.voters, key=repr))
                    return node.voters
        raise RaftTimeout(f"membership change of {node_id!r} not committed within {timeout:g}s (outcome unknown)")

    async def _wait_applied(self, index: int) -> None:
        # Until the state machine applied ``index``; NotLeaderError if leadership is lost first.
        if self.node.applied >= index:
            await trio.lowlevel.checkpoint()
            return
        waiter = _Waiter()
        self._apply_watchers.append((index, waiter))
        self._wake()
        await self._wait(waiter, None, "apply")

    async def wait_leader(self, timeout: float | None = None) -> LeaderChange:
        """Wait until some leader is known (this node or another) and return the view."""
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while self._leader.leader is None:
                await self._leader_changed.wait()
            return self._leader
        raise RaftTimeout(f"no leader known after {timeout:g}s")

    async def leader_changes(self) -> AsyncIterator[LeaderChange]:
        """Yield the current view, then each change (coalesced: a slow consumer sees the latest)."""
        last = None
        while True:
            current = self._leader
            if current != last:
                last = current
                yield current
            if self._leader is current:
                await self._leader_changed.wait()

    # ------------------------------------------------------------ internals

    def _check_running(self) -> None:
        if not self._running:
            raise DriverStopped("the raft driver is not running")

    async def _wait(self, waiter: _Waiter, timeout: float | None, what: str) -> Any:
        if not waiter.done:
            if timeout is not None:
                self._add_deadline(waiter, timeout, what)
            waiter.task = trio.lowlevel.current_task()

            def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
                waiter.task = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        else:
            await trio.lowlevel.checkpoint()
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def _add_deadline(self, waiter: _Waiter, timeout: float, what: str) -> None:
        # Swept every tick (timeouts are accurate to one tick): far cheaper per request than a
        # cancel scope.
        heapq.heappush(self._deadlines, (trio.current_time() + timeout, next(self._deadline_seq), waiter,
                                         what, timeout))

    def _expire(self, now: float) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, waiter, what, timeout = heapq.heappop(heap)
            if not waiter.done:
                waiter.fail(RaftTimeout(f"{what} not answered within {timeout:g}s (outcome unknown)"))

    def _wake(self) -> None:
        self._wakeup.set()
        if self._persisting:
            self._pump_wakeup.set()

    async def _pump_loop(self) -> None:
        # Pipelining across the leader's fsync: while the ready loop waits for a write, a leader
        # keeps turning new proposals into log entries and sends its appends and heartbeats at
        # once (allowed before its own write, see _ready_loop). The entries are persisted by the
        # next Ready; votes and acknowledgements still wait for the write.
        node = self.node
        while True:
            await self._pump_wakeup.wait()
            self._pump_wakeup = trio.Event()
            if self._persisting and node.role is Role.LEADER:
                self._flush_requests()
                early = node.take_leader_messages()
                if early:
                    self._send_all(early)

    async def _tick_loop(self) -> None:
        # Sleep until absolute deadlines so ticks do not drift under load.
        deadline = trio.current_time()
        while True:
            deadline += self.tick_interval
            now = trio.current_time()
            if deadline < now - self.tick_interval:
                deadline = now  # we fell far behind (a stalled loop): do not burst-tick
            await trio.sleep_until(deadline)
            if self._deadlines:
                self._expire(trio.current_time())
            self.tick()

    async def _ready_loop(self) -> None:
        node = self.node
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            self._flush_requests()
            while node.has_ready():
                rd = node.ready()
                self.stats["readies"] += 1
                if rd.messages and self.node.role is Role.LEADER:
                    # A leader's appends may go out before its own write (Raft thesis 10.2.1): its
                    # entries count towards commit only once persisted, so the two fsyncs overlap.
                    early = [m for m in rd.messages if type(m) in _LEADER_EARLY]
                    if early:
                        self._send_all(early)
                        rd.messages = [m for m in rd.messages if type(m) not in _LEADER_EARLY]
                self._persisting = True
                try:
                    await self._persist(rd)
                finally:
                    self._persisting = False
                self._send_all(rd.messages)
                if len(rd.committed_entries) > _APPLY_CHUNK:
                    await self._apply_in_chunks(rd)
                else:
                    self._apply(rd)
                if rd.soft_state is not None:
                    self._on_soft_state(rd.soft_state.leader, rd.soft_state.role, rd.soft_state.term)
                node.advance(rd)
                self._maybe_compact()
                self._flush_requests()

    def _flush_requests(self) -> None:
        node = self.node
        if self._proposals:
            batch, self._proposals = self._proposals, []
            first = node.propose_batch([data for data, _ in batch])
            if isinstance(first, NotLeader):
                for _, w in batch:
                    w.fail(NotLeaderError(first.leader_hint))
            elif isinstance(first, Rejected):
                for _, w in batch:
                    w.fail(RequestRejected(first.reason))
            else:
                self.stats["proposal_batches"] += 1
                term = node.term
                for offset, (_, w) in enumerate(batch):
                    self._waiters[first + offset] = (term, w)
        if self._read_batch:
            batch, self._read_batch = self._read_batch, []
            self._read_ctx += 1
            ctx = self._read_ctx
            answer = node.read_index(ctx)
            if isinstance(answer, NotLeader):
                for w in batch:
                    w.fail(NotLeaderError(answer.leader_hint))
            else:
                self._read_rounds[ctx] = batch

    async def _persist(self, rd: Ready) -> None:
        if rd.hard_state is None and not rd.entries_to_persist and rd.snapshot_to_persist is None:
            return
        args = (rd.hard_state, rd.entries_to_persist, rd.snapshot_to_persist)
        if self.persist_in_thread:
            # Shielded: a cancelled driver must not leave a half-acknowledged write behind us.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.storage.persist, *args)
        else:
            self.storage.persist(*args)
        self.stats["persists"] += 1
        self.stats["entries_persisted"] += len(rd.entries_to_persist)

    def _send_all(self, messages: list) -> None:
        send = self._send
        for m in messages:
            try:
                send(m.dst, message_to_wire(m))
            except Exception:  # a broken transport must not stop consensus; Raft retransmits
                log.exception("raft node %s failed to send to %s", self.id, m.dst)

    async def _apply_in_chunks(self, rd: Ready) -> None:
        # A large batch is applied in slices with a checkpoint between them, so ticks (a
        # leader's heartbeats) and peer messages are not held up for the whole batch. The
        # contract allows step/tick between ready() and advance().
        self._restore_snapshot(rd)
        entries = rd.committed_entries
        for start in range(0, len(entries), _APPLY_CHUNK):
            self._apply_entries(entries[start:start + _APPLY_CHUNK])
            await trio.lowlevel.checkpoint()
        self._finish_apply(rd)

    def _apply(self, rd: Ready) -> None:
        self._restore_snapshot(rd)
        self._apply_entries(rd.committed_entries)
        self._finish_apply(rd)

    def _restore_snapshot(self, rd: Ready) -> None:
        sm = self.state_machine
        if rd.snapshot_to_apply is not None and sm is not None:
            sm.restore(rd.snapshot_to_apply.data, rd.snapshot_to_apply.index)
            # Waiters for entries inside the snapshot cannot learn their result any more.
            for index in [i for i in self._waiters if i <= rd.snapshot_to_apply.index]:
                self._waiters.pop(index)[1].fail(RaftTimeout("the entry was compacted into a snapshot; outcome unknown"))

    def _apply_entries(self, entries: list) -> None:
        sm = self.state_machine
        waiters = self._waiters
        for entry in entries:
            result = sm.apply(entry) if sm is not None else None
            pending = waiters.pop(entry.index, None) if waiters else None
            if pending is not None:
                term, w = pending
                if entry.term == term:
                    w.resolve(result)
                else:
                    w.fail(ProposalDropped(f"entry {entry.index} was replaced by a newer leader's entry"))

    def _finish_apply(self, rd: Ready) -> None:
        self.stats["applied"] += len(rd.committed_entries)
        if self._apply_watchers:
            applied = max(self.node.applied, rd.committed_entries[-1].index if rd.committed_entries else 0,
                          rd.snapshot_to_apply.index if rd.snapshot_to_apply is not None else 0)
            still = []
            for index, w in self._apply_watchers:
                if index <= applied:
                    w.resolve(None)
                else:
                    still.append((index, w))
            self._apply_watchers = still
        for rs in rd.read_states:
            reads = self._read_rounds.pop(rs.ctx, None)
            if reads:
                self._ready_reads.append((rs.index, reads))
        if self._ready_reads:
            applied = self.node.applied
            if rd.committed_entries:
                applied = max(applied, rd.committed_entries[-1].index)
            if rd.snapshot_to_apply is not None:
                applied = max(applied, rd.snapshot_to_apply.index)
            still = []
            for index, reads in self._ready_reads:
                if index <= applied:
                    for w in reads:
                        w.resolve(None)
                else:
                    still.append((index, reads))
            self._ready_reads = still

    def _on_soft_state(self, leader: Any, role: Role, term: int) -> None:
        view = LeaderChange(term, leader, role is Role.LEADER)
        if view == self._leader:
            return
        lost = self._leader.is_leader and not view.is_leader
        self._leader = view
        self._leader_changed.set()
        self._leader_changed = trio.Event()
        if lost:
            # The core drops pending ReadIndex rounds when leadership is lost: fail them now.
            err = NotLeaderError(leader)
            for reads in self._read_rounds.values():
                for w in reads:
                    w.fail(err)
            self._read_rounds.clear()
            for _, reads in self._ready_reads:
                for w in reads:
                    w.fail(err)
            self._ready_reads.clear()
            for _, w in self._apply_watchers:
                w.fail(err)
            self._apply_watchers.clear()
        log.info("raft node %s: term %d, leader %s%s", self.id, term, leader, " (us)" if view.is_leader else "")

    def _maybe_compact(self) -> None:
        sm, node = self.state_machine, self.node
        if not self.compact_every or sm is None:
            return
        if node.applied - node.first_index + 1 >= self.compact_every:
            node.compact(node.applied, sm.snapshot())

    def _fail_all(self, error: RaftError) -> None:
        for _, w in self._proposals:
            w.fail(error)
        self._proposals.clear()
        for _, w in self._waiters.values():
            w.fail(error)
        self._waiters.clear()
        for w in self._read_batch:
            w.fail(error)
        self._read_batch.clear()
        for reads in self._read_rounds.values():
            for w in reads:
                w.fail(error)
        self._read_rounds.clear()
        for _, reads in self._ready_reads:
            for w in reads:
                w.fail(error)
        self._ready_reads.clear()
        for _, w in self._apply_watchers:
            w.fail(error)
        self._apply_watchers.clear()
        self._expire(math.inf)
        self._leader_changed.set()
