"""Membership over direct links with phi accrual detection, as a pure state machine.

Used for the ``full_mesh``, ``static`` and ``client_server`` topologies when the
cluster's ``failure_detector`` is ``phi``.  A *link* is an open connection to a
peer; the driver reports ``link_up`` / ``link_down``.

* Every ``heartbeat`` seconds a :class:`Heartbeat` goes over each link.  Any
  message from a peer counts as a sign of life for its phi detector
  (:class:`~eco.runtime.phi.PhiRegistry`).
* When phi for a peer crosses the threshold the peer becomes *suspect*; if it
  does not refute within ``suspicion_timeout`` (the detector's
  ``acceptable_pause``, at least one heartbeat) it is *down*.  A lost link is
  a faster hint: if it is not back within ``link_grace`` (a quarter
  heartbeat; this absorbs a connection replaced by a newer one) the peer
  becomes suspect at once, without waiting for phi.  A peer that is alive
  hears the suspicion (gossip, or the digest of the redialled link) and
  refutes it; a killed process cannot.  A node hearing
  that it is suspect or down refutes with a higher incarnation (the
  :class:`~eco.runtime.membership.MemberList` rules), as in SWIM.
* Changes spread as :class:`Rumor` messages with bounded fanout
  (``max(3, ceil(log2(n + 1)))`` random links), forwarded once by each node that
  learns something new from them (infect and die).  A full :class:`Digest` is
  swapped with every new link and with a random link every
  ``anti_entropy_interval``: it repairs whatever rumors missed and is how a node
  joins and how the sides of a healed partition find each other again.
* ``leave(now)`` sends the ``left`` record to every link at once.

Peers the node never heard from directly are not judged by it (a client in a
``client_server`` cluster only judges servers); their fate comes by gossip.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace

from eco.plan.models import PhiDetector

from .membership import Effect, Member, MemberList, MemberState, Send, SetTimer
from .phi import PhiRegistry

Records = tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Rumor:
    """Member records that changed; forwarded once by each node they teach something."""

    members: Records


@dataclass(frozen=True, slots=True)
class Digest:
    """Every record the sender knows; ``reply`` is False on the request."""

    members: Records
    reply: bool = False


MeshMessage = Heartbeat | Rumor | Digest


class MeshMembership:
    """One node's membership and failure detection over its direct links."""

    def __init__(
        self,
        name: str,
        config: PhiDetector | None = None,
        *,
        rng: random.Random,
        labels: Mapping[str, str] | None = None,
        incarnation: int = 0,
        anti_entropy_interval: float = 1.0,
    ) -> None:
        self.name = name
        self.config = config or PhiDetector()
        self.rng = rng
        self.members = MemberList(name, labels=labels, incarnation=incarnation)
        self.detectors = PhiRegistry(self.config)
        self.links: set[str] = set()
        self.anti_entropy_interval = anti_entropy_interval
        self.suspicion_timeout = max(self.config.acceptable_pause, self.config.heartbeat)
        self.link_grace = self.config.heartbeat / 4
        self._stopped = False

    # ------------------------------------------------------------ driver API

    def start(self, now: float) -> list[Effect]:
        return [
            SetTimer(("heartbeat",), now + self.rng.uniform(0, self.config.heartbeat)),
            SetTimer(("anti_entropy",), now + self.rng.uniform(0.5, 1.0) * self.anti_entropy_interval),
        ]

    def link_up(self, now: float, peer: str) -> list[Effect]:
        if self._stopped or peer == self.name:
            return []
        self.links.add(peer)
        return [Send(peer, Digest(self._snapshot()))]

    def link_down(self, now: float, peer: str) -> list[Effect]:
        # A lost connection alone proves nothing (the peer may be alive and redialling), so it
        # only raises a suspicion the peer can refute, and only if the link stays lost a moment.
        self.links.discard(peer)
        member = self.members.get(peer)
        if self._stopped or member is None or member.state != MemberState.UP:
            return []
        return [SetTimer(("link_lost", peer, member.incarnation), now + self.link_grace)]

    def leave(self, now: float) -> list[Effect]:
        record = self.members.leave()
        self._stopped = True
        return [Send(peer, Rumor((record,))) for peer in sorted(self.links)]

    def receive(self, now: float, src: str, msg: MeshMessage) -> list[Effect]:
        if self._stopped:
            return []
        out: list[Effect] = []
        known = self.members.get(src)
        if known is not None and known.alive:
            self.detectors.heartbeat(src, now)
        kind = type(msg)
        if kind is Rumor:
            fresh = self._merge(now, msg.members, out)  # type: ignore[union-attr]
            if fresh:
                self._spread(fresh, out, exclude=src)
        elif kind is Digest:
            fresh = self._merge(now, msg.members, out)  # type: ignore[union-attr]
            if fresh:
                self._spread(fresh, out, exclude=src)
            if not msg.reply:  # type: ignore[union-attr]
                out.append(Send(src, Digest(self._snapshot(), reply=True)))
        if known is None and (m := self.members.get(src)) is not None and m.alive:
            self.detectors.heartbeat(src, now)  # first contact: start judging it from now
        return out

    def timer(self, now: float, key: Hashable) -> list[Effect]:
        if self._stopped:
            return []
        out: list[Effect] = []
        kind = key[0]  # type: ignore[index]
        if kind == "heartbeat":
            out.extend(Send(peer, Heartbeat()) for peer in sorted(self.links))
            self._judge(now, out)
            out.append(SetTimer(("heartbeat",), now + self.config.heartbeat))
        elif kind == "anti_entropy":
            if self.links:
                out.append(Send(self.rng.choice(sorted(self.links)), Digest(self._snapshot())))
            out.append(SetTimer(("anti_entropy",), now + self.anti_entropy_interval))
        elif kind == "link_lost":
            _, name, incarnation = key  # type: ignore[misc]
            current = self.members.get(name)
            if name not in self.links and current is not None and current.state == MemberState.UP \
                    and current.incarnation == incarnation:
                accused = [replace(current, state=MemberState.SUSPECT)]
                self._merge(now, accused, out)
                self._spread(accused, out)
        elif kind == "suspicion":
            _, name, incarnation = key  # type: ignore[misc]
            current = self.members.get(name)
            if current is not None and current.state == MemberState.SUSPECT and current.incarnation == incarnation:
                down = replace(current, state=MemberState.DOWN)
                self._merge(now, (down,), out)
                self._spread([down], out)
        return out

    # ------------------------------------------------------------ internals

    def _judge(self, now: float, out: list[Effect]) -> None:
        accused = []
        for name in self.detectors.unavailable(now):
            current = self.members.get(name)
            if current is not None and current.state == MemberState.UP:
                accused.append(replace(current, state=MemberState.SUSPECT))
        if accused:
            self._merge(now, accused, out)
            self._spread(accused, out)

    def _merge(self, now: float, records: Iterable[Member], out: list[Effect]) -> list[Member]:
        """Apply records; returns those that changed our view (to pass on)."""
        fresh: list[Member] = []
        for record in records:
            before = self.members.get(record.name)
            merge = self.members.apply(record)
            if merge.refutation is not None:
                fresh.append(merge.refutation)
                continue
            if not merge.changed:
                continue
            current = self.members.get(record.name)
            assert current is not None
            fresh.append(current)
            if merge.event is not None:
                out.append(merge.event)
            if current.state == MemberState.SUSPECT:
                out.append(SetTimer(("suspicion", current.name, current.incarnation), now + self.suspicion_timeout))
            elif current.state == MemberState.UP and (before is None or before.incarnation != current.incarnation):
                # A new incarnation (a restart or a refutation): judge it from a clean history.
                self.detectors.remove(current.name)
                if current.name in self.links:
                    self.detectors.heartbeat(current.name, now)
            elif not current.alive:
                self.detectors.remove(current.name)
        return fresh

    def _fanout(self) -> int:
        return max(3, math.ceil(math.log2(self.members.count_alive() + 1)))

    def _spread(self, records: list[Member], out: list[Effect], *, exclude: str | None = None) -> None:
        targets = sorted(self.links - {exclude} if exclude else self.links)
        k = min(self._fanout(), len(targets))
        msg = Rumor(tuple(records))
        for peer in self.rng.sample(targets, k):
            out.append(Send(peer, msg))

    def _snapshot(self) -> Records:
        return tuple(self.members)
