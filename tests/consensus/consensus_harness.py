"""N nodes (Kernel + Node + RaftRouter + one ConsensusGroup each) on a seeded simulated network."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from eco.runtime.consensus import ConsensusGroup, RaftRouter
from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_options
from eco.runtime.simnet import LinkSpec, Uniform
from eco.runtime.simulator import Simulation

FAST = {"keepalive_interval": 0.1, "keepalive_misses": 3, "connect_timeout": 0.3, "handshake_timeout": 0.5,
        **node_transport_options()}

OnActive = Callable[[ConsensusGroup, Any], Awaitable[None]]


class SimEcosystem:
    """Each node runs the group of ecosystem ``eco`` and, while it leads, ``on_active(group, activation)``."""

    def __init__(self, n: int, seed: int, on_active: OnActive | None = None, *, spares: int = 0,
                 membership: Callable[[Node], Any] | None = None) -> None:
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        # Spare nodes start (joining=True: no peers) once start_spare() is called.
        self.spares = [f"n{i}" for i in range(n + 1, n + spares + 1)]
        self._spare_go = {s: trio.Event() for s in self.spares}
        self.membership = membership  # node -> member source to attach (default: its connections)
        self.sim = Simulation(seed, link=LinkSpec(delay=Uniform(0.0005, 0.002)), transport_options=FAST,
                              trace_messages=False)
        self.groups: dict[str, ConsensusGroup] = {}
        self.history: list[tuple[float, str, int, str]] = []  # (time, node, term, "active"/"deposed")
        self.on_active = on_active
        self.done = False
        for i in self.ids + self.spares:
            self.sim.add_host(i, self._host)

    def start_spare(self, name: str) -> None:
        self._spare_go[name].set()

    async def _host(self, transport, host) -> None:
        if host.name in self._spare_go:
            await self._spare_go[host.name].wait()
        async with Kernel(host.name, incarnation=host.incarnation) as kernel:
            node = Node(kernel, transport, rng=host.rng)
            if self.membership is not None:
                node.attach_membership(self.membership(node))
            router = RaftRouter(node)
            group = ConsensusGroup("eco", host.name, self.ids, router, rng=host.rng,
                                   joining=host.name in self.spares)
            self.groups[host.name] = group
            async with trio.open_nursery() as nursery:
                await nursery.start(node.serve, None, [p for p in self.ids + self.spares if p < host.name])
                await nursery.start(group.run)
                nursery.start_soon(self._activations, group)
                await trio.sleep_forever()

    async def _activations(self, group: ConsensusGroup) -> None:
        async for act in group.activations():
            self.history.append((trio.current_time(), group.node_id, act.term, "active"))
            try:
                async with trio.open_nursery() as nursery:
                    if self.on_active is not None:
                        nursery.start_soon(self.on_active, group, act)

                    async def deposed() -> None:
                        await group.wait_deposed(act.term)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(deposed)
            finally:
                self.history.append((trio.current_time(), group.node_id, act.term, "deposed"))

    def run(self, scenario: Callable[[SimEcosystem], Awaitable[None]], max_time: float = 60.0) -> None:
        async def main(transport, ctx) -> None:
            await scenario(self)
            self.done = True

        self.sim.add_host("scenario", main)
        self.sim.run(until=lambda: self.done, max_time=max_time)

    def alive(self) -> list[ConsensusGroup]:
        return [g for name, g in self.groups.items() if self.sim._entry(name).running and g.driver._running]

    async def wait_for(self, cond: Callable[[], Any], within: float, what: str) -> Any:
        with trio.move_on_after(within):
            while True:
                value = cond()
                if value:
                    return value
                await trio.sleep(0.005)
        raise AssertionError(f"timed out after {within}s waiting for {what}")

    def active_now(self) -> list[tuple[str, int]]:
        """(node, term) of activations that have not ended, from the history."""
        open_: dict[tuple[str, int], bool] = {}
        for _, node, term, what in self.history:
            open_[(node, term)] = what == "active"
        return [k for k, v in open_.items() if v and self.sim._entry(k[0]).running]
