"""A seeded discrete-event network for testing and benchmarking the membership cores.

:class:`SimNet` runs any number of sans-IO cores (objects with ``start(now)``,
``receive(now, src, msg)`` and ``timer(now, key)``, each returning effects) in
one process, on simulated time, the way a trio driver would run one of them per
node. Every random choice (latency, loss) comes from ``random.Random(seed)``, so
a run is reproducible from its seed.

Faults: per-message latency (uniform), message loss, partitions between groups
of nodes, crashes and restarts. Links are FIFO like TCP when ``fifo`` is set.
Cores built for connection-oriented transports (``HyParViewNode``, ``OverlayMembership``) define
``peer_down(now, peer)``: the network then calls it when a message to a dead
node bounces (after one round trip) and, after ``detect_delay``, on every live
node whose ``neighbors()`` contains a node that just crashed -- modelling the
connection reset or the per-link failure detector of a real driver.

:func:`build_overlay` starts a cluster of :class:`~eco.runtime.overlay.OverlayMembership`
nodes (the core real nodes run) and :func:`overlay_problems` checks the HyParView
invariants across it.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from eco.plan.models import HyParViewTopology

from .broadcast import Deliver
from .membership import Send, SetTimer
from .overlay import OverlayMembership

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


# ---------------------------------------------------------------- overlay clusters


def add_overlay_node(
    net: SimNet, name: str, config: HyParViewTopology | None = None, *, contacts: Iterable[str] = (), **options: Any
) -> OverlayMembership:
    """Start node ``name`` running :class:`~eco.runtime.overlay.OverlayMembership` (``options``
    go to it), with its own seeded random generator."""
    core = OverlayMembership(name, config, rng=random.Random(f"{net.seed}/{name}"), contacts=contacts, **options)
    net.add(name, core)
    return core


def build_overlay(
    net: SimNet, n: int, config: HyParViewTopology | None = None, *, join_spacing: float = 0.05, **options: Any
) -> list[str]:
    """Start ``n`` overlay nodes, ``join_spacing`` apart, each joining through a random earlier one."""
    names = [f"n{i:05d}" for i in range(n)]
    for i, name in enumerate(names):
        add_overlay_node(net, name, config, contacts=[names[net.rng.randrange(i)]] if i else [], **options)
        net.run_for(join_spacing)
    return names


def delivered(net: SimNet, msg_id: Any) -> dict[str, float]:
    """Node -> time at which broadcast ``msg_id`` was delivered there (needs ``record_effects``
    to keep :class:`~eco.runtime.broadcast.Deliver` effects)."""
    return {name: at for at, name, e in net.effects_seen if type(e) is Deliver and e.id == msg_id}


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
