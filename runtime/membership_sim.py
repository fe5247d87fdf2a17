"""A seeded discrete-event network for testing and benchmarking the membership cores.

:class:`SimNet` runs any number of sans-IO cores (objects with ``start(now)``,
``receive(now, src, msg)`` and ``timer(now, key)``, each returning effects) in
one process, on simulated time, the way a trio driver would run one of them per
node. Every random choice (latency, loss) comes from ``random.Random(seed)``, so
a run is reproducible from its seed.

Faults: per-message latency (uniform), message loss, partitions between groups
of nodes, crashes and restarts. Links are FIFO like TCP when ``fifo`` is set.
Cores built for connection-oriented transports (HyParView, Plumtree) may define
``peer_down(now, peer)``: the network then calls it when a message to a dead
node bounces (after one round trip) and, after ``detect_delay``, on every live
node whose ``neighbors()`` contains a node that just crashed -- modelling the
connection reset or the per-link failure detector of a real driver.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from eco.plan.models import HyParViewTopology

from .broadcast import Deliver, Gossip, Graft, IHave, PlumtreeNode, Prune
from .hyparview import HyParViewNode, NeighborDown, NeighborUp
from .membership import Member, MemberList, MemberState, Send, SetTimer

_DELIVER, _TIMER, _DOWN = 0, 1, 2


class SimNet:
    """Simulated network, clock and scheduler for membership cores."""

    def __init__(
        self,
        seed: int,
        *,
        latency: tuple[float, float] = (0.001, 0.010),
        loss: float = 0.0,
        fifo: bool = False,
        detect_delay: float = 1.0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.latency = latency
        self.loss = loss
        self.fifo = fifo
        self.detect_delay = detect_delay
        self.now = 0.0
        self.nodes: dict[str, Any] = {}
        self.sent: Counter[str] = Counter()  # messages sent, per node
        self.sent_by_type: Counter[str] = Counter()
        self.effects_seen: list[tuple[float, str, Any]] = []
        self.record_effects: Callable[[Any], bool] | None = None
        self._epoch: dict[str, int] = {}
        self._alive: set[str] = set()
        self._group: dict[str, int] = {}
        self._link_clock: dict[tuple[str, str], float] = {}
        self._queue: list = []
        self._counter = itertools.count()

    # ------------------------------------------------------------ topology

    def add(self, name: str, core: Any, *, start: bool = True) -> None:
        """Add (or restart) node ``name`` running ``core``."""
        self.nodes[name] = core
        self._epoch[name] = self._epoch.get(name, 0) + 1
        self._alive.add(name)
        if start:
            self._apply(name, core.start(self.now))

    def alive(self) -> list[str]:
        return sorted(self._alive)

    def is_alive(self, name: str) -> bool:
        return name in self._alive

    def crash(self, names: Iterable[str]) -> None:
        """Stop the given nodes at once; their pending messages and timers vanish."""
        crashed = set(names) & self._alive
        self._alive -= crashed
        for name in crashed:
            self._epoch[name] += 1
        for name in sorted(self._alive):
            core = self.nodes[name]
            if hasattr(core, "peer_down") and hasattr(core, "neighbors"):
                for peer in sorted(crashed & set(core.neighbors())):
                    self._push(self.now + self.detect_delay, _DOWN, name, peer)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network between ``groups``; nodes in no group form one more group."""
        self._group = {n: i + 1 for i, g in enumerate(groups) for n in g}

    def heal(self) -> None:
        self._group = {}

    def connected(self, a: str, b: str) -> bool:
        return self._group.get(a, 0) == self._group.get(b, 0)

    # ------------------------------------------------------------ running

    def call(self, name: str, method: str, *args: Any) -> None:
        """Invoke ``core.method(now, *args)`` on a live node and carry out its effects."""
        self._apply(name, getattr(self.nodes[name], method)(self.now, *args))

    def run_until(self, t: float) -> None:
        """Process every event due up to simulated time ``t``."""
        queue = self._queue
        while queue and queue[0][0] <= t:
            at, _, kind, name, epoch, a, b = heapq.heappop(queue)
            if self._epoch.get(name) != epoch or name not in self._alive:
                continue
            self.now = at
            core = self.nodes[name]
            if kind == _DELIVER:
                self._apply(name, core.receive(at, a, b))
            elif kind == _TIMER:
                self._apply(name, core.timer(at, a))
            else:
                self._apply(name, core.peer_down(at, a))
        self.now = max(self.now, t)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until_true(self, predicate: Callable[[], bool], *, timeout: float, step: float = 0.1) -> float | None:
        """Advance in ``step``s until ``predicate()`` holds; returns the time, or None on timeout."""
        deadline = self.now + timeout
        while True:
            if predicate():
                return self.now
            if self.now >= deadline:
                return None
            self.run_until(min(deadline, self.now + step))

    # ------------------------------------------------------------ internals

    def _push(self, at: float, kind: int, name: str, a: Any, b: Any = None) -> None:
        heapq.heappush(self._queue, (at, next(self._counter), kind, name, self._epoch[name], a, b))

    def _apply(self, name: str, effects: Iterable[Any]) -> None:
        for effect in effects:
            if type(effect) is Send:
                self._send(name, effect.to, effect.msg)
            elif type(effect) is SetTimer:
                self._push(max(effect.at, self.now), _TIMER, name, effect.key)
            elif self.record_effects is not None and self.record_effects(effect):
                self.effects_seen.append((self.now, name, effect))

    def _send(self, src: str, dst: str, msg: Any) -> None:
        self.sent[src] += 1
        self.sent_by_type[type(msg).__name__] += 1
        if dst not in self.nodes:
            return
        lo, hi = self.latency
        at = self.now + self.rng.uniform(lo, hi)
        if dst not in self._alive:
            # A connection-oriented driver learns the peer is gone when the attempt fails.
            if hasattr(self.nodes[src], "peer_down"):
                self._push(at + (hi + lo) / 2, _DOWN, src, dst)
            return
        if not self.connected(src, dst) or (self.loss and self.rng.random() < self.loss):
            return
        if self.fifo:
            link = (src, dst)
            at = max(at, self._link_clock.get(link, 0.0))
            self._link_clock[link] = at
        self._push(at, _DELIVER, dst, src, msg)


# ---------------------------------------------------------------- composed overlay node


@dataclass(frozen=True, slots=True)
class MemberDigest:
    """Every record a node knows, sent to each new neighbour (anti-entropy)."""

    members: tuple[Member, ...]


class OverlayStack:
    """HyParView + Plumtree + member list on one node, composed the way a driver composes them.

    Membership records travel as Plumtree broadcasts; new neighbours swap their
    whole member lists; a peer whose connection fails is broadcast as down (a
    live node that hears itself declared down refutes with a new incarnation).
    With ``track_members=False`` only the overlay and the broadcast run (used
    for very large simulations where n full member lists do not fit in memory).
    """

    def __init__(
        self,
        name: str,
        config: HyParViewTopology | None = None,
        *,
        rng: random.Random,
        contacts: Iterable[str] = (),
        track_members: bool = True,
        on_deliver: Callable[[str, Deliver], None] | None = None,
    ) -> None:
        self.name = name
        self.view = HyParViewNode(name, config, rng=rng, contacts=contacts)
        self.tree = PlumtreeNode(name)
        self.members = MemberList(name) if track_members else None
        self.on_deliver = on_deliver
        self._announced = False

    def neighbors(self) -> set[str]:
        return self.view.neighbors()

    #: seconds between member-list exchanges with a random neighbour; repairs records a
    #: broadcast missed while the tree was changing under it
    anti_entropy_interval = 5.0

    def start(self, now: float) -> list[Any]:
        out = self._route(now, self.view.start(now), "hv")
        if self.members is not None:
            out.append(SetTimer(("ae", None), now + self.anti_entropy_interval))
        return out

    def leave(self, now: float) -> list[Any]:
        out: list[Any] = []
        if self.members is not None:
            out += self._route(now, self.tree.broadcast(now, self.members.leave()), "pt")
        return out + self._route(now, self.view.leave(now), "hv")

    def broadcast(self, now: float, payload: Any) -> list[Any]:
        return self._route(now, self.tree.broadcast(now, payload), "pt")

    def peer_down(self, now: float, peer: str) -> list[Any]:
        out = self._route(now, self.view.peer_down(now, peer), "hv")
        if self.members is not None:
            current = self.members.get(peer)
            if current is not None and current.alive:
                out += self.broadcast(now, replace(current, state=MemberState.DOWN))
        return out

    def receive(self, now: float, src: str, msg: Any) -> list[Any]:
        if isinstance(msg, _TREE_MESSAGES):
            return self._route(now, self.tree.receive(now, src, msg), "pt")
        if isinstance(msg, MemberDigest):
            return self._merge(now, msg.members)
        return self._route(now, self.view.receive(now, src, msg), "hv")

    def timer(self, now: float, key: Any) -> list[Any]:
        layer, inner = key
        if layer == "ae":
            out: list[Any] = [SetTimer(key, now + self.anti_entropy_interval)]
            peer = self.view._pick(self.view.active)
            if peer is not None and self.members is not None:
                out.append(Send(peer, MemberDigest(tuple(self.members))))
            return out
        core = self.view if layer == "hv" else self.tree
        return self._route(now, core.timer(now, inner), layer)

    def _route(self, now: float, effects: Iterable[Any], layer: str) -> list[Any]:
        out: list[Any] = []
        for effect in effects:
            kind = type(effect)
            if kind is SetTimer:
                out.append(SetTimer((layer, effect.key), effect.at))
            elif kind is NeighborUp:
                self.tree.neighbor_up(now, effect.peer)
                if self.members is not None:
                    out.append(Send(effect.peer, MemberDigest(tuple(self.members))))
                    if not self._announced:
                        self._announced = True
                        out += self.broadcast(now, self.members.me)
                out.append(effect)
            elif kind is NeighborDown:
                self.tree.neighbor_down(now, effect.peer)
                out.append(effect)
            elif kind is Deliver:
                if self.on_deliver is not None:
                    self.on_deliver(self.name, effect)
                if self.members is not None and isinstance(effect.payload, Member):
                    out += self._merge(now, (effect.payload,))
                out.append(effect)
            else:
                out.append(effect)
        return out

    def _merge(self, now: float, records: Iterable[Member]) -> list[Any]:
        out: list[Any] = []
        assert self.members is not None
        for record in records:
            merge = self.members.apply(record)
            if merge.event is not None:
                out.append(merge.event)
            if merge.refutation is not None:
                out += self.broadcast(now, merge.refutation)
        return out


_TREE_MESSAGES = (Gossip, IHave, Graft, Prune)


def build_overlay(
    net: SimNet,
    n: int,
    config: HyParViewTopology | None = None,
    *,
    join_spacing: float = 0.05,
    track_members: bool = True,
    on_deliver: Callable[[str, Deliver], None] | None = None,
) -> list[str]:
    """Start ``n`` :class:`OverlayStack` nodes, each joining through a random earlier one."""
    names = [f"n{i:05d}" for i in range(n)]
    for i, name in enumerate(names):
        contacts = [names[net.rng.randrange(i)]] if i else []
        core = OverlayStack(
            name, config, rng=random.Random(f"{net.seed}/{name}"), contacts=contacts,
            track_members=track_members, on_deliver=on_deliver,
        )
        net.add(name, core)
        net.run_for(join_spacing)
    return names


def overlay_problems(net: SimNet, *, min_active: int = 1) -> list[str]:
    """Violations of the HyParView invariants among the live nodes (empty when all hold)."""
    problems: list[str] = []
    live = set(net.alive())
    views = {name: net.nodes[name].view for name in live}
    for name, view in sorted(views.items()):
        cfg = view.config
        if name in view.active or name in view.passive:
            problems.append(f"{name} lists itself")
        if len(view.active) > cfg.active or len(view.passive) > cfg.passive:
            problems.append(f"{name} views too large: {len(view.active)} active, {len(view.passive)} passive")
        if len(view.active) < min_active and len(live) > 1:
            problems.append(f"{name} has {len(view.active)} active neighbours")
        if view.active & view.passive:
            problems.append(f"{name} has {sorted(view.active & view.passive)} in both views")
        for peer in sorted(view.active):
            if peer not in live:
                problems.append(f"{name} keeps dead {peer} as a neighbour")
            elif name not in views[peer].active:
                problems.append(f"{name} -> {peer} is not symmetric")
    if live and not problems:
        start = min(live)
        seen, stack = {start}, [start]
        while stack:
            for peer in views[stack.pop()].active:
                if peer not in seen:
                    seen.add(peer)
                    stack.append(peer)
        if seen != live:
            problems.append(f"overlay not connected: {len(live) - len(seen)} of {len(live)} nodes unreachable")
    return problems
