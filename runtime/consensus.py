"""``leader: consensus``: one Raft group per ecosystem over the node's peer connections, and term fencing.

Every candidate node of an ecosystem runs a :class:`ConsensusGroup`: a
:class:`~eco.runtime.raft_driver.RaftDriver` with a
:class:`~eco.runtime.coordinator_state.CoordinatorStateMachine` (the replicated
coordinator state) and SQLite storage under the node's data directory.  Its
messages travel as ``Kind.RAFT`` envelopes on channel ``raft:<ecosystem>`` over
the connections the :class:`~eco.runtime.node.Node` already keeps;
:class:`RaftRouter` hands each one to the driver of its ecosystem.

The node whose driver leads hosts the ecosystem's **active coordinator**; the
others are standbys.  The leader's Raft term is the coordinator's **fencing
token**: :meth:`ConsensusGroup.activations` yields an :class:`Activation` once
this node leads *and* has committed an entry of its term (so the replicated
state it reads is complete), and the activation ends as soon as leadership is
lost or the term changes.  Everything that matters is tagged with the term and
refused when stale:

* replicated-state writes carry the term; the state machine refuses a term lower
  than the newest activation recorded in the log (:class:`TermFence` logic);
* work handed to workers is wrapped in :class:`TermWork`; a worker drops work of
  a term lower than one it has already seen;
* spawn requests carry the term; a factory refuses a term lower than the newest
  it has seen for that ecosystem;
* completing the job first confirms, with a ReadIndex round, that the term is
  still the leader's.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import trio

from .raft import RaftConfig
from .raft_driver import RaftDriver, RaftError
from .raft_storage import MemoryStorage, SqliteStorage
from .transport import Connection
from .wire import Envelope, Kind

__all__ = [
    "RAFT_CHANNEL_PREFIX", "LAN_CONFIG", "RaftRouter", "ConsensusGroup", "Activation", "TermFence",
    "TermWork", "Fenced", "consensus_enabled", "candidate_nodes", "is_candidate",
]

log = logging.getLogger("eco.runtime.consensus")

RAFT_CHANNEL_PREFIX = "raft:"
"""Envelopes of ecosystem ``E``'s Raft group travel on channel ``raft:E``."""

LAN_CONFIG = RaftConfig(election_ticks=10, heartbeat_ticks=1)
"""With 10 ms ticks: 100-200 ms election timeouts, so a takeover takes well under a second on a LAN."""


class Fenced(RaftError):
    """This coordinator is not (or no longer) the active one: its term is stale or it lost leadership."""


def consensus_enabled(eco: Any) -> bool:
    """True if the ecosystem declares a ``consensus`` state entry (``leader: consensus``)."""
    return any(entry.kind == "consensus" for entry in eco.state.entries)


def candidate_nodes(eco: Any, cluster: Any) -> list[str]:
    """The nodes of the ecosystem's Raft group: ``explicit_nodes`` if listed, else every cluster node."""
    names = [n.name for n in cluster.nodes]
    if eco.distribution.policy == "explicit_nodes":
        chosen = [n for n in eco.distribution.nodes if n in names]
        if chosen:
            return chosen
    return names


def is_candidate(eco: Any, cluster: Any) -> Callable[[str], bool]:
    """A predicate: may cluster member ``name`` join the ecosystem's Raft group? (:func:`candidate_nodes`)"""
    allowed = frozenset(candidate_nodes(eco, cluster))
    return allowed.__contains__


# ------------------------------------------------------------------ fencing


class TermFence:
    """The highest term seen so far; :meth:`admit` refuses anything older (pure, no I/O)."""

    __slots__ = ("highest",)

    def __init__(self, highest: int = 0) -> None:
        self.highest = highest

    def admit(self, term: int) -> bool:
        """True (and remember ``term``) unless ``term`` is older than one already seen."""
        if term < self.highest:
            return False
        self.highest = term
        return True


class TermWork:
    """Work handed out by the coordinator of ``term`` (a worker unwraps it, dropping stale terms).

    Travels between nodes as a message extension; the work itself is encoded with
    the node codec, so PIDs inside it survive the trip.
    """

    TYPE_TAG = "eco.TermWork"
    TYPE_NAME = "eco.TermWork"
    __slots__ = ("term", "work")

    def __init__(self, term: int, work: Any) -> None:
        self.term, self.work = term, work

    def __repr__(self) -> str:
        return f"TermWork({self.term}, {self.work!r})"

    def to_msgpack(self) -> bytes:
        from .node_codec import packer_default  # the codec imports the component module, which imports us

        return msgpack.packb([self.term, self.work], default=packer_default, use_bin_type=True)

    @classmethod
    def from_msgpack(cls, data: Any) -> TermWork:
        from .node_codec import ext_hook

        raw = msgpack.unpackb(data, ext_hook=ext_hook, strict_map_key=False) if isinstance(data, bytes) else data
        if not (isinstance(raw, (list, tuple)) and len(raw) == 2 and type(raw[0]) is int):
            raise ValueError(f"not a TermWork message: {raw!r}")
        return cls(raw[0], raw[1])


# ------------------------------------------------------------------ routing


class RaftRouter:
    """Carries the Raft messages of every ecosystem group over one node's peer connections."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._drivers: dict[str, RaftDriver] = {}
        self.dropped = 0
        node.handle(Kind.RAFT, self._on_envelope)

    def register(self, group: str, driver: RaftDriver) -> None:
        self._drivers[group] = driver

    def unregister(self, group: str, driver: RaftDriver) -> None:
        if self._drivers.get(group) is driver:
            del self._drivers[group]

    def sender(self, group: str):
        """A non-blocking ``send(peer, wire_msg)`` for the driver of ``group`` (drops when not connected)."""
        channel = RAFT_CHANNEL_PREFIX + group
        node = self.node

        def send(peer: Any, wire_msg: list) -> None:
            if not node.send_envelope(peer, Envelope(Kind.RAFT, channel, None, None, 0, wire_msg)):
                self.dropped += 1

        return send

    def _on_envelope(self, conn: Connection, env: Envelope) -> None:
        channel = env.channel
        if not isinstance(channel, str) or not channel.startswith(RAFT_CHANNEL_PREFIX):
            log.warning("node %s: raft envelope on unexpected channel %r from %s", self.node.name, channel, conn.peer.node)
            return
        driver = self._drivers.get(channel[len(RAFT_CHANNEL_PREFIX):])
        if driver is None:
            self.dropped += 1  # the group does not run here (yet): the sender retransmits
            return
        driver.deliver(conn.peer.node, env.payload)


# ------------------------------------------------------------------ the group


@dataclass(frozen=True)
class Activation:
    """This node's coordinator is the active one for ``term`` (until leadership is lost)."""

    ecosystem: str
    node: str
    term: int


class ConsensusGroup:
    """One ecosystem's Raft group on this node (see the module docstring).

    ``data_dir``: where ``raft-<ecosystem>.db`` lives (SQLite, fsynced); None keeps
    the log in memory (tests, simulations).

    The group follows the cluster (see docs/raft.md, "Group membership"): its leader
    removes voters whose cluster member state is ``left`` and adds members that are
    ``up`` and pass ``candidate`` (default: any member), one change at a time.  A node
    merely ``down`` stays a voter.  ``joining=True`` starts a node outside the initial
    configuration with no peers: it waits until the leader adds it.
    """

    def __init__(self, ecosystem: str, node_id: str, members: Iterable[str], router: RaftRouter, *,
                 data_dir: str | Path | None = None, config: RaftConfig = LAN_CONFIG,
                 tick_interval: float = 0.01, rng: random.Random | None = None,
                 storage: Any = None, joining: bool = False,
                 candidate: Callable[[str], bool] | None = None) -> None:
        from .coordinator_state import CoordinatorStateMachine

        self.ecosystem = ecosystem
        self.node_id = node_id
        self.members = sorted(set(members))
        self.router = router
        if storage is None:
            if data_dir is None:
                storage = MemoryStorage()
            else:
                Path(data_dir).mkdir(parents=True, exist_ok=True)
                storage = SqliteStorage(Path(data_dir) / f"raft-{ecosystem}.db")
        self.storage = storage
        self.state_machine = CoordinatorStateMachine()
        self.candidate = candidate or (lambda name: True)
        self._poke = trio.Event()
        self.driver = RaftDriver(node_id, () if joining else self.members, storage, router.sender(ecosystem),
                                 state_machine=self.state_machine, config=config, tick_interval=tick_interval,
                                 rng=rng, persist_in_thread=isinstance(storage, SqliteStorage))

    @property
    def is_leader(self) -> bool:
        return self.driver.is_leader

    @property
    def term(self) -> int:
        return self.driver.term

    @property
    def leader(self) -> Any:
        return self.driver.leader_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the driver (registered with the router) until cancelled."""
        self.router.register(self.ecosystem, self.driver)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.driver.run)
                nursery.start_soon(self._follow_cluster)
                task_status.started()
        finally:
            self.router.unregister(self.ecosystem, self.driver)
            if isinstance(self.storage, SqliteStorage):
                self.storage.close()

    @property
    def voters(self) -> frozenset:
        """The group's current configuration, as this node knows it."""
        return self.driver.members

    def next_change(self) -> tuple[str, bool] | None:
        """The next membership change the leader should make: ``(node, add)``, or None.

        Removals of members that left come first (they can only lower the quorum), then
        additions of ``up`` candidates. ``down`` and ``suspect`` members are left alone.
        """
        states = {m.name: getattr(m.state, "label", str(m.state)) for m in self.router.node.members}
        voters = self.driver.members
        for name in sorted(voters):
            if states.get(name) == "left" and len(voters) > 1:
                return name, False
        for name, state in sorted(states.items()):
            if state == "up" and name not in voters and self.candidate(name):
                return name, True
        return None

    async def _follow_cluster(self) -> None:
        # Woken by member events and leader changes; only the leader acts, one change at a time
        # (the driver waits for the previous change to commit). Failures are retried.
        unsubscribe = self.router.node.subscribe_members(lambda _event: self._poke.set())
        retry = max(0.05, 20 * self.driver.tick_interval)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._poke_on_leader_change)
                while True:
                    await self._poke.wait()
                    self._poke = trio.Event()
                    while self.driver.is_leader:
                        change = self.next_change()
                        if change is None:
                            break
                        name, add = change
                        try:
                            if add:
                                await self.driver.add_server(name, timeout=retry * 20)
                            else:
                                await self.driver.remove_server(name, timeout=retry * 20)
                        except RaftError as exc:
                            log.info("ecosystem %s: %s %s failed (%s); retrying", self.ecosystem,
                                     "adding" if add else "removing", name, exc)
                            await trio.sleep(retry)
                            self._poke.set()
                            break
                        log.info("ecosystem %s: %s %s; group now %s", self.ecosystem,
                                 "added" if add else "removed", name, sorted(self.driver.members))
        finally:
            unsubscribe()

    async def _poke_on_leader_change(self) -> None:
        async for view in self.driver.leader_changes():
            if view.is_leader:
                self._poke.set()

    def holds(self, term: int) -> bool:
        """True while this node leads in ``term`` (the cheap, local check)."""
        view = self.driver.leadership
        return view.is_leader and view.term == term

    async def confirm(self, term: int, timeout: float = 2.0) -> None:
        """Raise :class:`Fenced` unless this node provably still leads in ``term`` (a ReadIndex round)."""
        if not self.holds(term):
            raise Fenced(f"ecosystem {self.ecosystem}: term {term} is no longer the leader's (now {self.term})")
        try:
            await self.driver.read_barrier(timeout)
        except RaftError as exc:
            raise Fenced(f"ecosystem {self.ecosystem}: cannot confirm leadership of term {term}: {exc}") from None
        if not self.holds(term):
            raise Fenced(f"ecosystem {self.ecosystem}: term {term} was deposed while confirming")

    async def activations(self) -> AsyncIterator[Activation]:
        """Yield an :class:`Activation` each time this node becomes the usable leader of a new term.

        Usable: the leader's first entry of its term is committed and applied, so the
        replicated state reflects everything committed before.  The consumer must stop
        acting for it when :meth:`wait_deposed` returns.
        """
        async for view in self.driver.leader_changes():
            if not view.is_leader:
                continue
            try:
                await self.confirm(view.term, timeout=max(1.0, 50 * self.driver.tick_interval))
            except Fenced:
                continue  # lost it again before it became usable
            yield Activation(self.ecosystem, self.node_id, view.term)

    async def wait_deposed(self, term: int) -> None:
        """Return once this node no longer leads in ``term``."""
        async for view in self.driver.leader_changes():
            if not (view.is_leader and view.term == term):
                return
