"""Membership over a HyParView overlay with Plumtree broadcast, as a pure state machine.

The core behind ``topology hyparview`` in running nodes (the driver is
:class:`eco.runtime.cluster.ClusterMembership`).  It composes

* :class:`~eco.runtime.hyparview.HyParViewNode`: the active view is the set of
  neighbours the driver keeps connections to; every other connection is
  temporary (a join, a neighbour request, a shuffle reply);
* :class:`~eco.runtime.broadcast.PlumtreeNode` over the active view: member
  records and user payloads (:meth:`broadcast`) reach every node at the cost of
  a spanning tree, not of every node sending to every node;
* a :class:`~eco.runtime.membership.MemberList`: a neighbour whose link is lost
  (and not back within ``link_grace``), cannot be opened, or whose phi (a
  :class:`~eco.runtime.mesh.Heartbeat` every ``heartbeat`` over each active
  link; any message counts) crosses the threshold is dropped from the active
  view (HyParView repairs it) and broadcast as *suspect*; unless it refutes (a
  live node hearing the rumour outbids it with a higher incarnation) it is
  *down* after ``suspicion_timeout`` (every node times the suspicion out itself;
  only the accuser broadcasts the verdict, so a crash costs one flood, not n).  New
  neighbours swap their whole member lists, and every ``anti_entropy_interval``
  a random neighbour gets one (repairs what a broadcast missed while the tree
  was changing).

Only neighbours judge a node; everybody else learns its fate by broadcast.  A node that
gets a heartbeat from one it does not count as a neighbour answers ``Disconnect`` at once
(a one-sided link would otherwise get it suspected), and a member announced *left* is
dropped from both views (nothing dials a node that is shutting down).

Expected members: a node given the cluster's declared names (``expected``)
asks one it has never heard of to become a neighbour (a refresh request), first
about ``expected_probe`` seconds after it starts, then with the interval doubling
up to ``reconnect_interval`` (from then on with probability ``missing / alive``,
like the heal below), until it has a record of every one.  Nodes started together
can split the overlay while joining (every eviction in a burst of joins is
random): with small active views a part with free slots asks full views with
low priority only, which they refuse, so the parts stay apart, and a node that
joined in the other part is never heard of here (its announcement went around
its own part).  The accepted refresh joins the parts and the new neighbours swap
their member lists.  A declared node that is not running costs one failed dial
per attempt.

Healing: every ``reconnect_interval``, with probability ``down / alive`` (so the
whole cluster makes about one attempt per down member and period, however large
it is), a node asks a random member it holds as *down* to become a neighbour
(HyParView's refresh request, which a full view accepts by evicting a
neighbour).  A crashed member costs one failed dial; a member that was only cut
off by a partition answers, the digests swapped over the new link make it
refute, and the two sides are one overlay again.  Passive views alone cannot
do this: every view is full after a heal, full views refuse ordinary requests,
and a long partition purges the other side from the passive views anyway; the
member list remembers whom this node lost.

Joins can split the overlay as well (evictions during a burst of joins may cut
every link between two groups, each with full views), and then nobody is down
and nothing above fires.  So, otherwise, with probability ``split_probe`` per
period (0.1: one probe per node every 100 s by default) a node sends a refresh
request to a random passive entry, carrying the id of a broadcast it delivered
at least ``PROBE_EVIDENCE_AGE`` ago.  A receiver that delivered that broadcast
too is in the same overlay and refuses (two messages, no link changes), so a
connected overlay is never rewired; one that did not is in another part, and
accepts: the two parts are one overlay again.  A node that delivered no
broadcast for ``QUIET_AFTER`` sends a plain refresh instead: its part of the
overlay is quiet (rewiring costs no duplicate broadcasts there), and a small
part cut off from a busy cluster hears too few broadcasts of its own to carry
evidence.
"""

from __future__ import annotations

import random
import zlib
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from eco.plan.models import HyParViewTopology, PhiDetector

from .broadcast import Deliver, Gossip, Graft, IHave, PlumtreeNode, Prune
from .hyparview import Disconnect, HyParViewNode, Neighbor, NeighborDown, NeighborReply, NeighborUp
from .membership import Effect, Member, MemberList, MemberState, Send, SetTimer
from .mesh import Heartbeat
from .phi import PhiRegistry

__all__ = ["OverlayDigest", "OverlayMembership"]

_TREE = (Gossip, IHave, Graft, Prune)

PROBE_EVIDENCE_AGE = 5.0
"""Seconds after which a delivered broadcast has reached the whole overlay (split probes carry one)."""
QUIET_AFTER = 30.0
"""Seconds without a delivered broadcast after which split probes go without evidence."""
EXPECTED_PROBE = 2.0
"""Seconds after start before a node asks an expected member it has not heard of to be a neighbour
(long enough for announcements to go round one overlay, so a connected one is rarely rewired)."""


@dataclass(frozen=True, slots=True)
class OverlayDigest:
    """Every member record the sender knows (to a new neighbour, and for anti-entropy)."""

    members: tuple[Member, ...]


class OverlayMembership:
    """One node's membership over HyParView + Plumtree (see the module docstring)."""

    def __init__(
        self,
        name: str,
        config: HyParViewTopology | None = None,
        *,
        rng: random.Random,
        contacts: Iterable[str] = (),
        labels: Mapping[str, str] | None = None,
        incarnation: int = 0,
        suspicion_timeout: float = 1.0,
        link_grace: float = 0.05,
        anti_entropy_interval: float = 1.0,
        reconnect_interval: float = 10.0,
        split_probe: float = 0.1,
        phi: PhiDetector | None = None,
        track_members: bool = True,
        expected: Iterable[str] = (),
        expected_probe: float = EXPECTED_PROBE,
    ) -> None:
        """``track_members=False`` runs the overlay, the broadcast and the link detector only (no
        member records, digests or suspicions): for simulations of clusters too large for a full
        member list per node in one process.  ``expected``: the names the cluster declares (see
        the module docstring)."""
        self.name = name
        self.rng = rng
        self.view = HyParViewNode(name, config, rng=rng, contacts=contacts)
        self.tree = PlumtreeNode(name)
        self.members = MemberList(name, labels=labels, incarnation=incarnation)
        self.suspicion_timeout = suspicion_timeout
        self.link_grace = link_grace
        self.anti_entropy_interval = anti_entropy_interval
        self.reconnect_interval = reconnect_interval
        self.split_probe = split_probe
        self._delivered: deque[tuple[float, Any]] = deque(maxlen=64)  # (when, id) of recent broadcasts (split probes)
        self.track_members = track_members
        self.links: set[str] = set()
        self.phi = phi or PhiDetector()
        self.detectors = PhiRegistry(self.phi)
        self._announced = False
        self._accused: set[tuple[str, int]] = set()  # (name, incarnation) this node suspected itself
        self.expected = frozenset(expected) - {name}
        self.expected_probe = expected_probe
        self._stopped = False

    # ------------------------------------------------------------ queries

    def neighbors(self) -> set[str]:
        return self.view.neighbors()

    def wanted_links(self) -> set[str]:
        """Peers the driver must keep (or open) connections to: the active view and pending requests."""
        return self.view.active | self.view._pending

    # ------------------------------------------------------------ driver API

    def start(self, now: float) -> list[Any]:
        out = self._route(now, self.view.start(now), "hv")
        if self.track_members:
            out.append(SetTimer(("ae",), now + self.rng.uniform(0.5, 1.0) * self.anti_entropy_interval))
        # Spread the nodes' reconnect rounds over the period (so a heal is noticed within a
        # fraction of it) with a phase from the name: drawing from ``rng`` would shift every
        # later random choice of a seeded run.
        phase = 0.5 + zlib.crc32(self.name.encode()) % 1000 / 1000
        out.append(SetTimer(("reconnect",), now + phase * self.reconnect_interval))
        out.append(SetTimer(("hb",), now + self.rng.uniform(0, self.phi.heartbeat)))
        if self.expected and self.track_members:
            out.append(self._expect_timer(now, self.expected_probe))
        return out

    def leave(self, now: float) -> list[Any]:
        if not self.track_members:
            self._stopped = True
            return self._route(now, self.view.leave(now), "hv")
        record = self.members.leave()
        # The broadcast would go in full to eager neighbours only, and a lazy one could not graft
        # it from a node that is gone: every neighbour gets the full message, and forwards it.
        out = [e for e in self._route(now, self.tree.broadcast(now, record), "pt") if type(e) is not Send]
        gossip = Gossip((self.name, self.tree._seq), record, 0)
        out += [Send(peer, gossip) for peer in sorted(self.view.active)]
        out += self._route(now, self.view.leave(now), "hv")
        self._stopped = True
        return out

    def broadcast(self, now: float, payload: Any) -> list[Any]:
        """Send ``payload`` (plain data) to every node; each delivers it once (``Deliver`` effect)."""
        return self._route(now, self.tree.broadcast(now, payload), "pt")

    def link_up(self, now: float, peer: str) -> list[Any]:
        self.links.add(peer)
        return []

    def link_down(self, now: float, peer: str) -> list[Any]:
        self.links.discard(peer)
        if self._stopped or peer not in self.view.active:
            return []  # a temporary link closing is normal
        return [SetTimer(("link_lost", peer), now + self.link_grace)]

    def connect_failed(self, now: float, peer: str) -> list[Any]:
        """The driver could not open a connection to ``peer`` (same as :meth:`peer_down`)."""
        return self.peer_down(now, peer)

    def peer_down(self, now: float, peer: str) -> list[Any]:
        """The link to ``peer`` failed: a dial that could not be opened, or a neighbour's
        connection reset or judged failed by the driver.  A neighbour is dropped and accused."""
        if self._stopped:
            return []
        was_neighbor = peer in self.view.active
        out = self._route(now, self.view.peer_down(now, peer), "hv")
        if was_neighbor:
            self._suspect(now, peer, out)
        return out

    def receive(self, now: float, src: str, msg: Any) -> list[Any]:
        if self._stopped:
            return []
        if src in self.view.active:
            self.detectors.heartbeat(src, now)
        if type(msg) is Heartbeat:
            if src not in self.view.active and src not in self.view._pending:
                # The sender counts this node as a neighbour and this node does not (a Disconnect
                # crossed a Connect, say): tell it now.  Left to the next KeepAlive (a shuffle
                # period) it would suspect this node for the heartbeats it never gets.
                return [Send(src, Disconnect())]
            return []
        if isinstance(msg, _TREE):
            return self._route(now, self.tree.receive(now, src, msg), "pt")
        if type(msg) is OverlayDigest:
            return self._merge(now, msg.members)
        if type(msg) is Neighbor and msg.seen is not None and src not in self.view.active \
                and self.tree.has_delivered(msg.seen):
            return [Send(src, NeighborReply(False))]  # a split probe from this very overlay: nothing to join
        return self._route(now, self.view.receive(now, src, msg), "hv")

    def timer(self, now: float, key: Hashable) -> list[Any]:
        if self._stopped:
            return []
        kind = key[0]  # type: ignore[index]
        out: list[Any] = []
        if kind == "hv" or kind == "pt":
            core = self.view if kind == "hv" else self.tree
            return self._route(now, core.timer(now, key[1]), kind)  # type: ignore[index]
        if kind == "ae":
            peer = self.view._pick(self.view.active)
            if peer is not None:
                out.append(Send(peer, OverlayDigest(tuple(self.members))))
            out.append(SetTimer(("ae",), now + self.anti_entropy_interval))
        elif kind == "reconnect":
            self._reconnect(now, out)
            out.append(SetTimer(("reconnect",), now + self.reconnect_interval))
        elif kind == "hb":
            out.extend(Send(peer, Heartbeat()) for peer in sorted(self.view.active))
            for peer in self.detectors.unavailable(now):
                if peer in self.view.active:
                    out += self.peer_down(now, peer)
            out.append(SetTimer(("hb",), now + self.phi.heartbeat))
        elif kind == "expect":
            self._reach_expected(now, key[1], out)  # type: ignore[index]
        elif kind == "link_lost":
            peer = key[1]  # type: ignore[index]
            if peer not in self.links and peer in self.view.active:
                out += self.peer_down(now, peer)
        elif kind == "suspicion":
            _, name, incarnation = key  # type: ignore[misc]
            current = self.members.get(name)
            accuser = (name, incarnation) in self._accused
            self._accused.discard((name, incarnation))
            if current is not None and current.state == MemberState.SUSPECT and current.incarnation == incarnation:
                down = replace(current, state=MemberState.DOWN)
                out += self._merge(now, (down,))
                # Every holder of the suspicion times it out; only the accuser tells the others, or
                # each node would flood the cluster with the same verdict.
                if accuser:
                    out += self.broadcast(now, down)
        return out

    # ------------------------------------------------------------ internals

    def _reconnect(self, now: float, out: list[Any]) -> None:
        """Maybe ask a member held as down, else (``split_probe``) a passive entry, to be a
        neighbour (see the module docstring)."""
        down = [m.name for m in self.members if m.state == MemberState.DOWN] if self.track_members else []
        if down and self.rng.random() < len(down) / max(1, self.members.count_alive()):
            candidates = set(down)
            seen = None
        elif self.split_probe > 0 and self.rng.random() < self.split_probe:
            # Evidence: a broadcast delivered here long enough ago to have reached this whole
            # overlay.  None (a plain refresh) when nothing arrived lately: this part is quiet,
            # so rewiring costs no duplicate broadcasts, and a small part cut off from a busy
            # cluster hears too few broadcasts of its own to carry evidence.
            if self._delivered and now - self._delivered[-1][0] < QUIET_AFTER:
                seen = next((i for t, i in reversed(self._delivered) if now - t >= PROBE_EVIDENCE_AGE), None)
                if seen is None:
                    return  # (broadcasts are just starting: wait for one old enough)
            else:
                seen = None
            candidates = set(self.view.passive)
        else:
            return
        self._refresh_one(now, candidates, out, seen)

    def _refresh_one(self, now: float, candidates: set[str], out: list[Any], seen: Any = None) -> None:
        """Ask one of ``candidates`` (not already linked or asked) to become a neighbour."""
        peer = self.view._pick(candidates - self.wanted_links())
        if peer is not None:
            out += self._route(now, self.view.refresh(now, peer, seen), "hv")

    def unheard(self) -> set[str]:
        """Expected members this node has no record of (not even a down or left one)."""
        return {name for name in self.expected if self.members.get(name) is None}

    def _expect_timer(self, now: float, delay: float) -> SetTimer:
        # Jittered: the nodes of one part miss the same members, and one accepted request is enough
        # (the others hear of the missing members by anti-entropy meanwhile).
        return SetTimer(("expect", delay), now + self.rng.uniform(0.5, 1.5) * delay)

    def _reach_expected(self, now: float, delay: float, out: list[Any]) -> None:
        """Ask an expected member never heard of to be a neighbour (see the module docstring)."""
        missing = self.unheard()
        if not missing:
            return  # records are never forgotten: nothing more to do
        capped = delay >= self.reconnect_interval
        if not capped or self.rng.random() < len(missing) / max(1, self.members.count_alive()):
            self._refresh_one(now, missing, out)
        out.append(self._expect_timer(now, min(2 * delay, self.reconnect_interval)))

    def _suspect(self, now: float, peer: str, out: list[Any]) -> None:
        if not self.track_members:
            return
        current = self.members.get(peer)
        if current is not None and current.state == MemberState.UP:
            record = replace(current, state=MemberState.SUSPECT)
            self._accused.add((peer, record.incarnation))
            out += self._merge(now, (record,))
            out += self.broadcast(now, record)

    def _route(self, now: float, effects: Iterable[Any], layer: str) -> list[Any]:
        out: list[Any] = []
        for effect in effects:
            kind = type(effect)
            if kind is SetTimer:
                out.append(SetTimer((layer, effect.key), effect.at))
            elif kind is NeighborUp:
                self.tree.neighbor_up(now, effect.peer)
                self.detectors.remove(effect.peer)
                self.detectors.heartbeat(effect.peer, now)  # judge it from now on
                if self.track_members:
                    out.append(Send(effect.peer, OverlayDigest(tuple(self.members))))
                if not self._announced and self.track_members:
                    self._announced = True
                    out += self.broadcast(now, self.members.me)
                out.append(effect)
            elif kind is NeighborDown:
                self.tree.neighbor_down(now, effect.peer)
                self.detectors.remove(effect.peer)
                out.append(effect)
            elif kind is Deliver:
                self._delivered.append((now, effect.id))
                if type(effect.payload) is Member:
                    if effect.payload.state == MemberState.LEFT:
                        # A node that leaves takes its part of the broadcast tree with it: the
                        # nodes it fed would hear of the leave only by lazy repair, a graft
                        # timeout later.  A leave is rare and everyone should know at once, so
                        # it also goes in full to the lazy neighbours (the sender is eager now).
                        forward = Gossip(effect.id, effect.payload, effect.hops + 1)
                        out += [Send(peer, forward) for peer in sorted(self.tree.lazy)]
                    out += self._merge(now, (effect.payload,))
                else:
                    out.append(effect)  # a user payload: the driver hands it to its subscribers
            else:
                out.append(effect)
        return out

    def _merge(self, now: float, records: Iterable[Member]) -> list[Effect]:
        out: list[Any] = []
        for record in records:
            merge = self.members.apply(record)
            if merge.event is not None:
                out.append(merge.event)
                member = merge.event.member
                if member.state == MemberState.LEFT and member.name != self.name:
                    # It is shutting down: a repair or shuffle that picked it would dial a node
                    # that refuses (or resets) the connection.
                    out += self._route(now, self.view.forget(now, member.name), "hv")
                elif member.state == MemberState.SUSPECT:
                    out.append(SetTimer(("suspicion", member.name, member.incarnation), now + self.suspicion_timeout))
            if merge.refutation is not None:
                out += self.broadcast(now, merge.refutation)
        return out
