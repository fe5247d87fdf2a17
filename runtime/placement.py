"""Where to run workers: pure placement decisions from a plan's ``distribution``.

Nothing here touches the network, a clock or a global random generator: the
caller passes the member list, the load reports it has heard, the current time
and (for ``random``) a seeded :class:`random.Random`, and gets node names back.

Candidates
    Only members in state ``up`` (never ``suspect``, ``down`` or ``left``),
    filtered by the policy: ``cluster_wide`` takes every such member,
    ``explicit_nodes`` the listed ones, ``local_only`` only the requester.
    Names in ``exclude`` (for example a node just declared dead that the
    member list may not show as down yet) are never chosen.

Spread (``spread: <label>``)
    Each new worker goes to the label value that currently holds the fewest
    workers of the ecosystem (``current`` plus those placed by this call; ties
    by value name, or by the rng for ``random``), then to a node of that value
    chosen by the strategy. Starting from an even spread, counts per value stay
    within 1 of each other. Candidates without the label are used only when no
    candidate has it.

Strategies
    ``round_robin``: rotate over the candidates sorted by name, starting at
    ``cursor``; the returned cursor continues the rotation next time.
    ``random``: uniform choice with the injected rng (deterministic per seed).
    ``least_loaded``: lowest :meth:`LoadReport.score` among fresh reports
    (``now - report.at <= max_report_age``); every worker placed by this call
    adds 1 to its node's score. A node without a fresh report scores the mean
    of the fresh ones (unknown is treated as average); ties by name.
    ``topology_aware``: smallest ``distance(requester, node)``; among equally
    close nodes, the one with the fewest workers of the ecosystem, then by
    name. The default distance is 0 for nodes in the requester's ``zone``
    (the requester included) and 1 otherwise, so workers fill the local zone
    evenly. A custom distance (overlay hops, rack tiers) should return equal
    values for nodes meant to share the load.

:func:`spawn_allowed` is the receiving factory's check of ``allow spawn from``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from eco.plan import Distribution, SpawnRule

from .errors import EcoRuntimeError
from .membership import Member, MemberState

__all__ = [
    "DEFAULT_MAX_REPORT_AGE",
    "LoadReport",
    "Placement",
    "PlacementContext",
    "PlacementError",
    "candidates",
    "member_labels",
    "place",
    "replace",
    "spawn_allowed",
]

DEFAULT_MAX_REPORT_AGE = 5.0

Distance = Callable[[str, str], float]


class PlacementError(EcoRuntimeError):
    """No node may run the worker(s): the message says which policy left no candidate."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    """A node's load as gossiped by that node; ``at`` is when this node received it (its clock)."""

    node: str
    at: float
    processes: int = 0
    mailbox_depth: int = 0  # total queued messages over the node's processes
    loop_lag: float = 0.0  # seconds the event loop was late

    def score(self) -> float:
        """``processes + mailbox_depth / 10 + loop_lag * 100``.

        One process counts 1; ten queued messages count as one process; 10 ms
        of event-loop lag counts as one process (a lagging loop slows every
        process on the node, so it weighs heavily).
        """
        return self.processes + self.mailbox_depth / 10 + self.loop_lag * 100


@dataclass(frozen=True, slots=True)
class PlacementContext:
    """Everything a placement decision depends on (all of it supplied by the caller)."""

    members: Sequence[Member]
    requester: str  # node asking for the placement (where the coordinator runs)
    now: float = 0.0
    loads: Mapping[str, LoadReport] = field(default_factory=dict)
    max_report_age: float = DEFAULT_MAX_REPORT_AGE
    distance: Distance | None = None
    rng: random.Random | None = None  # required for the ``random`` strategy
    cursor: int = 0  # round-robin position, from the previous Placement
    current: Mapping[str, int] = field(default_factory=dict)  # node -> workers of this ecosystem already there
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Placement:
    """``nodes[i]`` runs the i-th requested worker; pass ``cursor`` to the next call."""

    nodes: tuple[str, ...]
    cursor: int


def member_labels(member: Member) -> dict[str, str]:
    """The labels a spread or spawn rule can name: the member's labels plus ``node``."""
    labels = dict(member.labels)
    labels.setdefault("node", member.name)
    return labels


def candidates(distribution: Distribution, ctx: PlacementContext) -> list[Member]:
    """The ``up`` members the policy allows, sorted by name; PlacementError if there are none."""
    up = {m.name: m for m in ctx.members if m.state == MemberState.UP and m.name not in ctx.exclude}
    policy = distribution.policy
    if policy == "local_only":
        if ctx.requester not in up:
            raise PlacementError(f"distribution is local_only but the requesting node {ctx.requester} is not up")
        return [up[ctx.requester]]
    if policy == "explicit_nodes":
        chosen = [up[n] for n in sorted(set(distribution.nodes)) if n in up]
        if not chosen:
            listed = ", ".join(distribution.nodes) or "(none listed)"
            raise PlacementError(f"distribution is explicit_nodes [{listed}] but none of those nodes is up")
        return chosen
    if not up:
        raise PlacementError("no cluster member is up")
    return [up[n] for n in sorted(up)]


def place(n: int, distribution: Distribution, ctx: PlacementContext) -> Placement:
    """Choose nodes for ``n`` new workers of one ecosystem (see the module docstring for the rules)."""
    if n < 0:
        raise ValueError(f"cannot place a negative number of workers ({n})")
    if distribution.placement == "random" and ctx.rng is None:
        raise ValueError("the random placement strategy needs a seeded rng in PlacementContext.rng")
    pool = candidates(distribution, ctx)
    return _Planner(distribution, ctx, pool).run(n)


def replace(lost_workers: Iterable[Hashable], dead_node: str, distribution: Distribution,
            ctx: PlacementContext) -> tuple[dict[Hashable, str], int]:
    """New homes for the workers ``dead_node`` was running: ``({worker: node}, cursor)``.

    ``ctx.current`` should count the ecosystem's surviving workers per node
    (entries for ``dead_node`` are ignored), so the spread stays balanced.
    ``dead_node`` is never chosen, whatever the member list says about it.
    """
    lost = list(lost_workers)
    current = {node: count for node, count in ctx.current.items() if node != dead_node}
    ctx = dataclasses.replace(ctx, current=current, exclude=frozenset(ctx.exclude) | {dead_node})
    placement = place(len(lost), distribution, ctx)
    return dict(zip(lost, placement.nodes)), placement.cursor


def spawn_allowed(rules: Sequence[SpawnRule], requester: Member | None) -> tuple[bool, str]:
    """May ``requester`` ask this node to spawn? Returns ``(allowed, reason)``.

    No rules: any requester that is not known to be down or gone. Otherwise a
    requester is allowed when one rule matches: ``label`` is ``node`` (its
    name), ``zone`` or any other of its labels, compared to ``value``. A
    requester recorded as ``down`` or ``left`` is refused (fencing: its
    coordinator may be a stale one). ``reason`` explains a refusal in words the
    requester can show its user; it is ``"allowed"`` otherwise.
    """
    if requester is not None and requester.state in (MemberState.DOWN, MemberState.LEFT):
        return False, f"spawn refused: requesting node {requester.name} is {requester.state.label} in this node's member list"
    if not rules:
        return True, "allowed"
    wanted = " or ".join(f'{r.label} "{r.value}"' for r in rules)
    if requester is None:
        return False, f"spawn refused: the requesting node is not a known member, and spawns are only allowed from {wanted}"
    labels = member_labels(requester)
    for rule in rules:
        if labels.get(rule.label) == rule.value:
            return True, "allowed"
    return False, f"spawn refused: node {requester.name} is not allowed to spawn here (allowed from {wanted})"


# ------------------------------------------------------------------ internals


def _default_distance(members: Mapping[str, Member]) -> Distance:
    def distance(a: str, b: str) -> float:
        if a == b:
            return 0
        za = members[a].labels.get("zone") if a in members else None
        zb = members[b].labels.get("zone") if b in members else None
        return 0 if za is not None and za == zb else 1

    return distance


class _Planner:
    """One placement decision: keeps the counts of this call so choices account for each other."""

    def __init__(self, distribution: Distribution, ctx: PlacementContext, pool: list[Member]) -> None:
        self.strategy = distribution.placement
        self.ctx = ctx
        self.order = [m.name for m in pool]  # sorted by name
        self.index = {name: i for i, name in enumerate(self.order)}
        self.cursor = ctx.cursor
        self.count = {name: max(0, ctx.current.get(name, 0)) for name in self.order}
        self.added = dict.fromkeys(self.order, 0)
        self.groups = self._groups(distribution.spread, pool)
        if self.strategy == "least_loaded":
            self.base = self._base_scores()
        if self.strategy == "topology_aware":
            known = {m.name: m for m in ctx.members}
            measure = ctx.distance or _default_distance(known)
            self.dist = {name: measure(ctx.requester, name) for name in self.order}

    def run(self, n: int) -> Placement:
        chosen = []
        for _ in range(n):
            node = self._pick(self._group())
            self.count[node] += 1
            self.added[node] += 1
            chosen.append(node)
        return Placement(tuple(chosen), self.cursor)

    def _groups(self, label: str | None, pool: list[Member]) -> dict[str, list[str]] | None:
        if label is None:
            return None
        groups: dict[str, list[str]] = {}
        for member in pool:
            value = member_labels(member).get(label)
            if value is not None:
                groups.setdefault(value, []).append(member.name)
        return groups or None  # nobody has the label: spread over every candidate instead

    def _group(self) -> list[str]:
        if self.groups is None:
            return self.order
        held = {value: sum(self.count[n] for n in nodes) for value, nodes in self.groups.items()}
        least = min(held.values())
        tied = sorted(value for value, c in held.items() if c == least)
        value = self.ctx.rng.choice(tied) if self.strategy == "random" else tied[0]  # type: ignore[union-attr]
        return self.groups[value]

    def _pick(self, nodes: list[str]) -> str:
        if self.strategy == "random":
            return self.ctx.rng.choice(nodes)  # type: ignore[union-attr]
        if self.strategy == "least_loaded":
            return min(nodes, key=lambda n: (self.base[n] + self.added[n], n))
        if self.strategy == "topology_aware":
            return min(nodes, key=lambda n: (self.dist[n], self.count[n], n))
        # round_robin: the first node of the group at or after the cursor in the global rotation.
        size = len(self.order)
        start = self.cursor % size
        node = min(nodes, key=lambda n: (self.index[n] - start) % size)
        self.cursor = self.index[node] + 1
        return node

    def _base_scores(self) -> dict[str, float]:
        fresh = {}
        for name in self.order:
            report = self.ctx.loads.get(name)
            if report is not None and self.ctx.now - report.at <= self.ctx.max_report_age:
                fresh[name] = report.score()
        unknown = sum(fresh.values()) / len(fresh) if fresh else 0.0
        return {name: fresh.get(name, unknown) for name in self.order}
