"""SWIM failure detection and membership dissemination as a pure state machine.

Each protocol period (``probe_interval``) a node probes one member, taking
members in a shuffled round-robin order so every member is probed within a
bounded time. A probe is a :class:`Ping`; without an :class:`Ack` after
``probe_timeout`` the node asks ``indirect_probes`` other members to ping the
target for it (:class:`PingReq`), which gets around a single bad link. Without
any ack by the end of the period the target becomes *suspect*; if it does not
refute within ``suspicion_timeout`` it is declared *down*.

A suspected node refutes by raising its incarnation number and spreading an
``up`` record with the new number (:class:`~eco.runtime.membership.MemberList`
does the precedence). Membership changes travel piggybacked on probe traffic,
each retransmitted ``retransmit_mult * ceil(log10(n + 1))`` times, newest first.

Two additions to the paper, both as in HashiCorp's memberlist: a periodic
full-state exchange (:class:`Sync`) with a random member, down ones included,
which is also how a node joins through a seed and how the two sides of a healed
partition find each other again; and a down verdict learnt through such an
exchange is only taken as a suspicion, so the accused gets a chance to refute.

Client/server (``servers`` given, the ``client_server`` topology): a client
talks to servers only. Clients probe servers only, servers probe everyone;
indirect probes go through servers only (so a client is never asked to reach
another client); a client's full-state exchanges and leave announcement go to
servers. Updates still piggyback on every probe and ack, so clients learn
about each other through the servers; since clients do not pass updates on, a
server retransmits each one once more per live client.

Driver contract: ``start(now)`` once, then ``receive(now, src, msg)`` for every
message and ``timer(now, key)`` for every :class:`SetTimer` that comes due; each
returns a list of effects (:class:`Send`, :class:`SetTimer`, :class:`MemberEvent`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace

from eco.plan.models import SwimDetector

from .membership import Effect, Member, MemberEvent, MemberList, MemberState, Merge, Send, SetTimer

Updates = tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    updates: Updates = ()


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    updates: Updates = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to ping ``target`` and forward the ack."""

    seq: int
    target: str
    updates: Updates = ()


@dataclass(frozen=True, slots=True)
class Gossip:
    """Updates pushed outside the probe cycle (a graceful leave)."""

    updates: Updates


@dataclass(frozen=True, slots=True)
class Sync:
    """Full-state exchange; ``reply`` is False on the request and True on the answer."""

    members: Updates
    reply: bool = False


SwimMessage = Ping | Ack | PingReq | Gossip | Sync


@dataclass(frozen=True)
class SwimOptions:
    """Tuning that the plan does not expose (defaults follow memberlist's LAN profile)."""

    retransmit_mult: int = 4
    max_piggyback: int = 10
    sync_interval: float = 30.0


class SwimNode:
    """One member's SWIM state machine."""

    def __init__(
        self,
        name: str,
        config: SwimDetector | None = None,
        *,
        rng: random.Random,
        labels: Mapping[str, str] | None = None,
        incarnation: int = 0,
        seeds: Iterable[str] = (),
        options: SwimOptions | None = None,
        servers: Iterable[str] | None = None,
    ) -> None:
        self.name = name
        self.servers: frozenset[str] | None = None if servers is None else frozenset(servers)
        self.is_client = self.servers is not None and name not in self.servers
        self.config = config or SwimDetector()
        self.options = options or SwimOptions()
        self.rng = rng
        self.members = MemberList(name, labels=labels, incarnation=incarnation)
        self.seeds = [s for s in seeds if s != name]
        self._seq = 0
        self._order: list[str] = []
        self._order_pos = 0
        self._probing: dict[int, str] = {}  # seq -> target still awaiting an ack
        self._relays: dict[int, tuple[str, int]] = {}  # our seq -> (requester, their seq)
        self._queue: dict[str, list] = {}  # name -> [record, times sent]
        self._stopped = False
        self._enqueue(self.members.me)

    # ------------------------------------------------------------ driver API

    def start(self, now: float) -> list[Effect]:
        """Begin probing; contact the seeds (if any) to join."""
        out: list[Effect] = [Send(seed, Sync(self._snapshot())) for seed in self.seeds]
        # Stagger the first period so nodes started together do not probe in lockstep.
        out.append(SetTimer(("probe",), now + self.rng.uniform(0, self.config.probe_interval)))
        out.append(SetTimer(("sync",), now + self.rng.uniform(0.5, 1.0) * self.options.sync_interval))
        return out

    def leave(self, now: float) -> list[Effect]:
        """Leave gracefully: tell every live member at once, then go quiet."""
        record = self.members.leave()
        self._stopped = True
        return [Send(peer, Gossip((record,))) for peer in self.members.alive_names() if self.may_contact(peer)]

    def receive(self, now: float, src: str, msg: SwimMessage) -> list[Effect]:
        if self._stopped:
            return []
        out: list[Effect] = []
        if isinstance(msg, Sync):
            self._merge(now, msg.members, out, from_sync=True)
            if not msg.reply:
                out.append(Send(src, Sync(self._snapshot(), reply=True)))
            return out
        self._merge(now, msg.updates, out)
        if isinstance(msg, Ping):
            out.append(Send(src, Ack(msg.seq, self._piggyback())))
        elif isinstance(msg, Ack):
            self._probing.pop(msg.seq, None)
            relay = self._relays.pop(msg.seq, None)
            if relay is not None:
                requester, their_seq = relay
                out.append(Send(requester, Ack(their_seq, self._piggyback())))
        elif isinstance(msg, PingReq):
            seq = self._next_seq()
            self._relays[seq] = (src, msg.seq)
            out.append(Send(msg.target, Ping(seq, self._piggyback())))
            out.append(SetTimer(("relay", seq), now + self.config.probe_interval))
        return out

    def timer(self, now: float, key: Hashable) -> list[Effect]:
        if self._stopped:
            return []
        kind = key[0]  # type: ignore[index]
        out: list[Effect] = []
        if kind == "probe":
            self._probe(now, out)
            out.append(SetTimer(("probe",), now + self.config.probe_interval))
        elif kind == "probe_timeout":
            self._indirect_probe(key[1], out)  # type: ignore[index]
        elif kind == "probe_end":
            self._probe_failed(now, key[1], out)  # type: ignore[index]
        elif kind == "suspicion":
            _, name, incarnation = key  # type: ignore[misc]
            current = self.members.get(name)
            if current is not None and current.state == MemberState.SUSPECT and current.incarnation == incarnation:
                self._apply(now, replace(current, state=MemberState.DOWN), out)
        elif kind == "relay":
            self._relays.pop(key[1], None)  # type: ignore[index]
        elif kind == "sync":
            self._sync(out)
            out.append(SetTimer(("sync",), now + self.options.sync_interval))
        return out

    def may_contact(self, name: str) -> bool:
        """Whether this node sends to ``name`` on its own initiative (a client: servers only)."""
        return not self.is_client or name in self.servers  # type: ignore[operator]

    # ------------------------------------------------------------ probing

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _next_target(self) -> str | None:
        for _ in range(2):
            while self._order_pos < len(self._order):
                name = self._order[self._order_pos]
                self._order_pos += 1
                member = self.members.get(name)
                if member is not None and member.alive and name != self.name and self.may_contact(name):
                    return name
            self._order = [n for n in self.members.alive_names() if self.may_contact(n)]
            self._order.sort()  # dict order depends on arrival; sort for reproducibility
            self.rng.shuffle(self._order)
            self._order_pos = 0
        return None

    def _probe(self, now: float, out: list[Effect]) -> None:
        target = self._next_target()
        if target is None:
            # Alone: the join request (or its answer) was lost; ask a seed again.
            if self.seeds:
                out.append(Send(self.rng.choice(self.seeds), Sync(self._snapshot())))
            return
        seq = self._next_seq()
        self._probing[seq] = target
        out.append(Send(target, Ping(seq, self._piggyback())))
        out.append(SetTimer(("probe_timeout", seq), now + self.config.probe_timeout))
        out.append(SetTimer(("probe_end", seq), now + self.config.probe_interval))

    def _indirect_probe(self, seq: int, out: list[Effect]) -> None:
        target = self._probing.get(seq)
        if target is None:
            return
        helpers = [n for n in self.members.alive_names() if n != target and n != self.name
                   and (self.servers is None or n in self.servers)]
        k = min(self.config.indirect_probes, len(helpers))
        for helper in self.rng.sample(sorted(helpers), k):
            out.append(Send(helper, PingReq(seq, target, self._piggyback())))

    def _probe_failed(self, now: float, seq: int, out: list[Effect]) -> None:
        target = self._probing.pop(seq, None)
        if target is None:
            return
        current = self.members.get(target)
        if current is not None and current.state == MemberState.UP:
            self._apply(now, replace(current, state=MemberState.SUSPECT), out)

    def _sync(self, out: list[Effect]) -> None:
        candidates = sorted(m.name for m in self.members
                            if m.name != self.name and m.state != MemberState.LEFT and self.may_contact(m.name))
        if candidates:
            out.append(Send(self.rng.choice(candidates), Sync(self._snapshot())))

    # ------------------------------------------------------------ dissemination

    def _merge(self, now: float, updates: Iterable[Member], out: list[Effect], *, from_sync: bool = False) -> None:
        for update in updates:
            if from_sync and update.state == MemberState.DOWN and update.name != self.name:
                current = self.members.get(update.name)
                if current is not None and current.alive:
                    update = replace(update, state=MemberState.SUSPECT)
            self._apply(now, update, out)

    def _apply(self, now: float, update: Member, out: list[Effect]) -> Merge:
        merge = self.members.apply(update)
        if merge.refutation is not None:
            self._enqueue(merge.refutation)
        if not merge.changed or update.name == self.name:
            return merge
        self._enqueue(self.members.get(update.name))  # type: ignore[arg-type]
        if merge.event is not None:
            out.append(merge.event)
            member = merge.event.member
            if member.state == MemberState.SUSPECT:
                key = ("suspicion", member.name, member.incarnation)
                out.append(SetTimer(key, now + self.config.suspicion_timeout))
            elif member.state == MemberState.UP and merge.event.previous is None and self.may_contact(member.name):
                # A newcomer goes to a random place in the current round so it is probed soon.
                self._order.insert(self.rng.randint(self._order_pos, len(self._order)), member.name)
        elif update.state == MemberState.SUSPECT:
            # Suspected again under a newer incarnation: restart the clock for it.
            out.append(SetTimer(("suspicion", update.name, update.incarnation), now + self.config.suspicion_timeout))
        return merge

    def _enqueue(self, record: Member) -> None:
        self._queue[record.name] = [record, 0]

    def _retransmit_limit(self) -> int:
        limit = self.options.retransmit_mult * max(1, math.ceil(math.log10(self.members.count_alive() + 1)))
        if self.servers is not None and not self.is_client:
            # Clients hear updates only from servers (they never gossip to each other), so a server
            # repeats each one often enough to have reached every client (each pings every server).
            limit += sum(1 for n in self.members.alive_names() if n not in self.servers)
        return limit

    def _piggyback(self) -> Updates:
        if not self._queue:
            return ()
        limit = self._retransmit_limit()
        entries = sorted(self._queue.values(), key=lambda e: e[1])[: self.options.max_piggyback]
        for entry in entries:
            entry[1] += 1
            if entry[1] >= limit:
                del self._queue[entry[0].name]
        return tuple(e[0] for e in entries)

    def _snapshot(self) -> Updates:
        return tuple(self.members)


def member_events(effects: Iterable[Effect]) -> list[MemberEvent]:
    """The :class:`MemberEvent` effects among ``effects``."""
    return [e for e in effects if isinstance(e, MemberEvent)]
