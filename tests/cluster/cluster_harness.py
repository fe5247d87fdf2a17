"""Runs real Nodes with ClusterMembership on the simulator, and records what each one saw."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from eco.plan.models import Cluster, FullMeshTopology, NodeSpec, PhiDetector
from eco.runtime.cluster import ClusterMembership
from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_options
from eco.runtime.simnet import LinkSpec, Uniform
from eco.runtime.simulator import Simulation

LAN_PHI = PhiDetector(heartbeat=0.2, acceptable_pause=0.6)
TRANSPORT = {"keepalive_interval": 1.0, "keepalive_misses": 3, **node_transport_options()}


def names(n: int) -> list[str]:
    return [f"n{i:02d}" for i in range(1, n + 1)]


def make_cluster(n: int, *, detector=LAN_PHI, topology=None, seeds=None) -> Cluster:
    nodes = tuple(
        NodeSpec(name=name, host=name, port=0, zone=f"z{i % 3}", labels={"rack": f"r{i % 2}"})
        for i, name in enumerate(names(n))
    )
    return Cluster(
        name="sim", nodes=nodes, seeds=tuple(seeds or (nodes[0].name,)),
        topology=topology or FullMeshTopology(), failure_detector=detector,
    )


@dataclass
class SimCluster:
    """``n`` nodes joining through the first one; ``seen[observer][node]`` is the (state, incarnation, time) log."""

    n: int
    seed: int = 1
    detector: PhiDetector | object = LAN_PHI
    drop: float = 0.0
    topology: object = None
    transport: dict = field(default_factory=lambda: dict(TRANSPORT))
    setup: object = None  # optional async setup(host, kernel, node, nursery) per host start
    cluster: Cluster = field(init=False)
    sim: Simulation = field(init=False)
    members: dict[str, ClusterMembership] = field(default_factory=dict)
    seen: dict[str, dict[str, list[tuple[str, int, float]]]] = field(default_factory=dict)
    stop: dict[str, trio.Event] = field(default_factory=dict)
    left_at: dict[str, float] = field(default_factory=dict)
    crashed_at: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cluster = make_cluster(self.n, detector=self.detector, topology=self.topology)
        link = LinkSpec(delay=Uniform(0.001, 0.005), drop=self.drop)
        self.sim = Simulation(self.seed, link=link, transport_options=self.transport, trace_messages=False)
        self.names = names(self.n)
        for name in self.names:
            self.sim.add_host(name, self._main)
        # `until` conditions are checked on trace events; tick so a quiet cluster is checked too.
        for i in range(1, 121):
            self.sim.at(i * 0.5, lambda: self.sim.record("-", "tick"))

    async def _main(self, transport, host) -> None:
        async with Kernel(host.name, incarnation=host.incarnation) as kernel:
            node = Node(kernel, transport, rng=host.rng)
            join = [] if host.name == self.names[0] else [self.names[0]]
            membership = ClusterMembership(node, self.cluster, rng=host.rng, advertise=host.name, join=join,
                                           addresses={n: n for n in self.names})
            self.members[host.name] = membership
            log = self.seen.setdefault(host.name, {})

            def on_event(ev) -> None:
                log.setdefault(ev.member.name, []).append((ev.kind, ev.member.incarnation, trio.current_time()))
                host.record(f"{ev.kind} {ev.member.name}#{ev.member.incarnation}")

            membership.subscribe(on_event)
            stop = self.stop[host.name] = trio.Event()
            async with trio.open_nursery() as nursery:
                # (hyparview: the driver opens the links itself; the join names are its contacts)
                await nursery.start(node.serve, host.name, [] if membership.manages_links else join)
                await nursery.start(membership.run)
                if self.setup is not None:
                    await self.setup(host, kernel, node, nursery)
                await stop.wait()
                await membership.leave()
                self.left_at[host.name] = trio.current_time()
                nursery.cancel_scope.cancel()

    # ------------------------------------------------------------ faults

    def crash_at(self, at: float, name: str) -> None:
        def crash() -> None:
            self.crashed_at[name] = trio.current_time()
            self.sim.crash(name)

        self.sim.at(at, crash)

    def leave_at(self, at: float, name: str) -> None:
        self.sim.at(at, lambda: self.stop[name].set())

    # ------------------------------------------------------------ queries

    def alive(self) -> list[str]:
        return [n for n in self.names if self.sim._hosts[n].running]

    def state(self, observer: str, node: str) -> tuple[str, int] | None:
        m = self.members[observer].member(node)
        return None if m is None else (m.state.label, m.incarnation)

    def all_see(self, node: str, state: str, *, incarnation: int | None = None, observers=None) -> bool:
        for obs in observers if observers is not None else self.alive():
            if obs == node or obs not in self.members:
                continue
            seen = self.state(obs, node)
            if seen is None or seen[0] != state or (incarnation is not None and seen[1] != incarnation):
                return False
        return True

    def converged(self, observers=None) -> bool:
        live = self.alive()
        if any(o not in self.members for o in live):
            return False
        return all(self.all_see(n, "up", observers=observers) for n in live) and all(
            len(self.members[o].members) >= len(live) for o in (observers or live) if o in self.members
        )

    def first_time(self, observer: str, node: str, state: str, after: float = 0.0) -> float | None:
        for kind, _, at in self.seen.get(observer, {}).get(node, []):
            if kind == state and at >= after:
                return at
        return None
