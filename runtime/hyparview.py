"""HyParView partial-view membership (Leitão, Pereira, Rodrigues, DSN 2007) as a pure state machine.

Each node keeps a small symmetric *active view* (its overlay neighbours, with
open connections in a real driver) and a larger *passive view* of backup
addresses. The protocol:

* a newcomer sends :class:`Join` to a contact, which takes it as a neighbour
  and starts a :class:`ForwardJoin` random walk of ``active_walk_length`` hops
  over the active views; the node where the walk ends connects to the newcomer
  (:class:`Connect`), and the node at hop ``passive_walk_length`` remembers it
  in its passive view;
* adding a neighbour to a full active view evicts a random one, which is told
  with :class:`Disconnect` and moves to the passive view;
* when a neighbour fails (the driver calls ``peer_down``), the node asks passive
  nodes to become neighbours (:class:`Neighbor`): with *high* priority when it
  has no neighbour left (the request cannot be refused), with *low* priority
  otherwise (refused by a full active view);
* every ``shuffle_interval`` a node sends a sample of its views on a random walk
  (:class:`Shuffle`); the node where it ends answers with a sample of its passive
  view (:class:`ShuffleReply`), which keeps passive views fresh and mixed;
* :meth:`HyParViewNode.refresh` asks a node to become a neighbour even when
  both active views are full (:class:`Neighbor` with ``refresh``): a full
  receiver accepts by evicting a random neighbour, at most once per shuffle
  period, and so does the sender when the reply arrives; view sizes stay within
  bounds and each refresh replaces at most two links.  Low-priority requests
  alone never connect two full views, so two halves of a healed partition would
  stay two overlays; the membership layer (:mod:`eco.runtime.overlay`) refreshes
  towards members it holds as down, which is how the halves find each other.

The driver reports ``peer_down(now, peer)`` when a connection to ``peer`` fails
or cannot be opened, and carries out the effects: :class:`Send`,
:class:`SetTimer`, and :class:`NeighborUp` / :class:`NeighborDown`, which a
broadcast layer (:mod:`eco.runtime.broadcast`) uses as its link set.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from eco.plan.models import HyParViewTopology

from .membership import Effect, Send, SetTimer


@dataclass(frozen=True, slots=True)
class Join:
    pass


@dataclass(frozen=True, slots=True)
class ForwardJoin:
    node: str
    ttl: int


@dataclass(frozen=True, slots=True)
class Connect:
    """The end of a join walk takes the newcomer as a neighbour; must be accepted."""


@dataclass(frozen=True, slots=True)
class Neighbor:
    high: bool
    refresh: bool = False  # a full receiver may accept by evicting a neighbour (see the module docstring)
    seen: Any = None  # a refresh's evidence of a split, for the layer above (eco.runtime.overlay)


@dataclass(frozen=True, slots=True)
class NeighborReply:
    accepted: bool


@dataclass(frozen=True, slots=True)
class Disconnect:
    leaving: bool = False  # the sender is shutting down: forget it rather than keep it as a backup


@dataclass(frozen=True, slots=True)
class Shuffle:
    origin: str
    nodes: tuple[str, ...]
    ttl: int


@dataclass(frozen=True, slots=True)
class ShuffleReply:
    nodes: tuple[str, ...]
    sent: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Sent to every neighbour each shuffle period; a node that does not count the sender as a
    neighbour answers :class:`Disconnect`, which repairs the one-sided links that crossing
    messages (a Disconnect passing a Connect on the wire) can leave behind."""


HyParViewMessage = KeepAlive | Join | ForwardJoin | Connect | Neighbor | NeighborReply | Disconnect | Shuffle | ShuffleReply


@dataclass(frozen=True, slots=True)
class NeighborUp:
    """Effect: ``peer`` joined the active view."""

    peer: str


@dataclass(frozen=True, slots=True)
class NeighborDown:
    """Effect: ``peer`` left the active view."""

    peer: str


class HyParViewNode:
    """One node's HyParView state machine."""

    #: seconds to wait for a :class:`NeighborReply` before giving up on that candidate
    neighbor_timeout = 2.0

    def __init__(
        self,
        name: str,
        config: HyParViewTopology | None = None,
        *,
        rng: random.Random,
        contacts: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.config = config or HyParViewTopology()
        self.rng = rng
        self.contacts = [c for c in contacts if c != name]
        self.active: set[str] = set()
        self.passive: set[str] = set()
        self._pending: set[str] = set()  # Neighbor requests awaiting a reply
        self._stopped = False
        self._evicted_for_refresh_at = float("-inf")

    def neighbors(self) -> set[str]:
        return set(self.active)

    # ------------------------------------------------------------ driver API

    def start(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        self._join(out)
        out.append(SetTimer(("shuffle",), now + self.rng.uniform(0.5, 1.5) * self._interval))
        return out

    def leave(self, now: float) -> list[Effect]:
        """Leave gracefully: tell every neighbour, then go quiet."""
        out: list[Effect] = [Send(p, Disconnect(leaving=True)) for p in sorted(self.active)]
        for peer in sorted(self.active):
            self._drop_active(peer, out, notify=False)
        self._stopped = True
        return out

    def peer_down(self, now: float, peer: str) -> list[Effect]:
        """The connection to ``peer`` failed or could not be opened."""
        if self._stopped:
            return []
        out: list[Effect] = []
        self.passive.discard(peer)
        self._pending.discard(peer)
        if peer in self.active:
            self._drop_active(peer, out, notify=False)
        self._repair(now, out)
        return out

    def forget(self, now: float, peer: str) -> list[Effect]:
        """``peer`` left the cluster (a layer above heard it announce so): drop it from both views,
        so no repair or shuffle asks it to be a neighbour while it shuts down; a freed active
        slot is repaired."""
        if self._stopped or peer == self.name:
            return []
        out: list[Effect] = []
        self.passive.discard(peer)
        freed = peer in self.active or peer in self._pending
        self._pending.discard(peer)
        if peer in self.active:
            self._drop_active(peer, out, notify=False)
        if freed:
            self._repair(now, out)
        return out

    def refresh(self, now: float, peer: str, seen: Any = None) -> list[Effect]:
        """Ask ``peer`` to become a neighbour even though the views may be full (the receiver
        accepts by evicting a neighbour, at most once per shuffle period); for a membership
        layer reaching a member it lost touch with.  Unanswered, it times out like any request."""
        out: list[Effect] = []
        if not self._stopped and peer != self.name and peer not in self.active and peer not in self._pending:
            self._request(now, peer, Neighbor(high=not self.active, refresh=True, seen=seen), out)
        return out

    def receive(self, now: float, src: str, msg: HyParViewMessage) -> list[Effect]:
        if self._stopped:
            return []
        out: list[Effect] = []
        kind = type(msg)
        if kind is Join:
            self._add_active(src, out)
            for peer in sorted(self.active - {src}):
                out.append(Send(peer, ForwardJoin(src, self.config.active_walk_length)))
        elif kind is ForwardJoin:
            self._forward_join(src, msg, out)  # type: ignore[arg-type]
        elif kind is Connect:
            self._add_active(src, out)
        elif kind is Neighbor:
            accept = src in self.active or msg.high or len(self.active) < self.config.active  # type: ignore[union-attr]
            if not accept and msg.refresh and now - self._evicted_for_refresh_at >= self._interval:  # type: ignore[union-attr]
                accept = True
                self._evicted_for_refresh_at = now
            if accept:
                self._add_active(src, out)
            out.append(Send(src, NeighborReply(accept)))
        elif kind is NeighborReply:
            if src in self._pending:
                self._pending.discard(src)
                if msg.accepted:  # type: ignore[union-attr]
                    self._add_active(src, out)
        elif kind is Disconnect:
            if src in self.active:
                self._drop_active(src, out, notify=False)
            if not msg.leaving:  # type: ignore[union-attr]
                self._add_passive(src)
            else:
                self.passive.discard(src)
                self._repair(now, out)
        elif kind is KeepAlive:
            if src not in self.active:
                out.append(Send(src, Disconnect()))
        elif kind is Shuffle:
            self._shuffle_received(src, msg, out)  # type: ignore[arg-type]
        elif kind is ShuffleReply:
            self._integrate(msg.nodes, prefer_evict=msg.sent)  # type: ignore[union-attr]
        return out

    def timer(self, now: float, key: Hashable) -> list[Effect]:
        if self._stopped:
            return []
        out: list[Effect] = []
        if key[0] == "shuffle":  # type: ignore[index]
            self._shuffle(out)
            out.extend(Send(peer, KeepAlive()) for peer in sorted(self.active))
            self._repair(now, out)
            if not self.active and not self._pending and not self.passive:
                self._join(out)  # isolated: the join was lost or every contact died
            out.append(SetTimer(("shuffle",), now + self._interval))
        elif key[0] == "neighbor_timeout":  # type: ignore[index]
            peer = key[1]  # type: ignore[index]
            if peer in self._pending:
                self._pending.discard(peer)
                self.passive.discard(peer)
                self._repair(now, out)
        return out

    # ------------------------------------------------------------ views

    @property
    def _interval(self) -> float:
        return self.config.shuffle_interval or 10.0

    def _pick(self, candidates: Iterable[str]) -> str | None:
        pool = sorted(candidates)  # sets iterate in hash order; sort for reproducible runs
        return self.rng.choice(pool) if pool else None

    def _sample(self, candidates: Iterable[str], k: int) -> list[str]:
        pool = sorted(candidates)
        return self.rng.sample(pool, min(k, len(pool)))

    def _add_active(self, peer: str, out: list[Effect]) -> None:
        if peer == self.name or peer in self.active:
            return
        self.passive.discard(peer)
        self._pending.discard(peer)
        if len(self.active) >= self.config.active:
            victim = self._pick(self.active)
            out.append(Send(victim, Disconnect()))  # type: ignore[arg-type]
            self._drop_active(victim, out, notify=False)  # type: ignore[arg-type]
            self._add_passive(victim)  # type: ignore[arg-type]
        self.active.add(peer)
        out.append(NeighborUp(peer))

    def _drop_active(self, peer: str, out: list[Effect], *, notify: bool) -> None:
        self.active.discard(peer)
        out.append(NeighborDown(peer))
        if notify:
            out.append(Send(peer, Disconnect()))

    def _add_passive(self, peer: str) -> None:
        if peer == self.name or peer in self.active or peer in self.passive:
            return
        if len(self.passive) >= self.config.passive:
            self.passive.discard(self._pick(self.passive))  # type: ignore[arg-type]
        self.passive.add(peer)

    def _integrate(self, nodes: Iterable[str], *, prefer_evict: Iterable[str] = ()) -> None:
        evictable = [n for n in prefer_evict if n in self.passive]
        for node in nodes:
            if node == self.name or node in self.active or node in self.passive:
                continue
            if len(self.passive) >= self.config.passive:
                victim = evictable.pop() if evictable else self._pick(self.passive)
                self.passive.discard(victim)  # type: ignore[arg-type]
            self.passive.add(node)

    # ------------------------------------------------------------ protocol steps

    def _join(self, out: list[Effect]) -> None:
        contact = self._pick(self.contacts)
        if contact is not None:
            self._add_active(contact, out)
            out.append(Send(contact, Join()))

    def _forward_join(self, src: str, msg: ForwardJoin, out: list[Effect]) -> None:
        newcomer = msg.node
        if newcomer == self.name:
            return
        if msg.ttl == 0 or len(self.active) <= 1:
            if newcomer not in self.active:
                self._add_active(newcomer, out)
                out.append(Send(newcomer, Connect()))
            return
        if msg.ttl == self.config.passive_walk_length:
            self._add_passive(newcomer)
        nxt = self._pick(self.active - {src, newcomer})
        if nxt is None:
            if newcomer not in self.active:
                self._add_active(newcomer, out)
                out.append(Send(newcomer, Connect()))
            return
        out.append(Send(nxt, ForwardJoin(newcomer, msg.ttl - 1)))

    def _repair(self, now: float, out: list[Effect]) -> None:
        """Ask passive nodes to fill the free active slots."""
        free = self.config.active - len(self.active) - len(self._pending)
        candidates = self.passive - self._pending
        for peer in self._sample(candidates, max(0, free)):
            self._request(now, peer, Neighbor(high=not self.active), out)

    def _request(self, now: float, peer: str, msg: Neighbor, out: list[Effect]) -> None:
        self._pending.add(peer)
        out.append(Send(peer, msg))
        out.append(SetTimer(("neighbor_timeout", peer), now + self.neighbor_timeout))

    def _shuffle(self, out: list[Effect]) -> None:
        target = self._pick(self.active)
        if target is None:
            return
        nodes = [self.name]
        nodes += self._sample(self.active - {target}, self.config.shuffle_active)
        nodes += self._sample(self.passive, self.config.shuffle_passive)
        out.append(Send(target, Shuffle(self.name, tuple(nodes), self.config.passive_walk_length)))

    def _shuffle_received(self, src: str, msg: Shuffle, out: list[Effect]) -> None:
        if msg.ttl > 1 and len(self.active) > 1:
            nxt = self._pick(self.active - {src, msg.origin})
            if nxt is not None:
                out.append(Send(nxt, Shuffle(msg.origin, msg.nodes, msg.ttl - 1)))
                return
        if msg.origin == self.name:
            return
        reply = tuple(self._sample(self.passive, len(msg.nodes)))
        out.append(Send(msg.origin, ShuffleReply(reply, msg.nodes)))
        self._integrate(msg.nodes, prefer_evict=reply)
