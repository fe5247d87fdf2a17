"""One ecosystem on a simulated cluster whose every node runs the ecosystem service.

Builds on ``cluster_harness.SimCluster`` (seeded, in process) and records what the
ecosystem service reports, with the simulated time of each report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio

from eco.plan import ComponentRef, Ecosystem, Plan, Supervision
from eco.runtime.component import Worker
from eco.runtime.node_ecosystem import EcosystemService

from cluster_harness import SimCluster  # noqa: E402  (same directory)


class Replier(Worker):
    """Answers an item ``{"key", "reply_to"}`` with its key and this worker's pid after ``delay`` simulated seconds."""

    delay = 0.01

    async def handle(self, msg):
        await trio.sleep(self.delay)
        await self.ctx.send(msg["reply_to"], {"key": msg["key"], "worker": self.ctx.self})


class EcosystemRun:
    """``nodes`` simulated nodes, each running the ecosystem service for one ecosystem ``e``.

    Its coordinator and workers are the classes named ``coordinator`` and ``workers`` in
    ``module``; the first node (``home``) is the one the ecosystem is started from.
    ``on_setup(name, node, service)``, called as each node starts and before its ecosystem
    service runs, may return more services (with an async ``run``) to start after it.
    """

    def __init__(self, seed: int, *, module: str, workers: str, worker_count: int, coordinator: str = "Job",
                 nodes: int = 3, topology=None, max_restarts: int = 5,
                 on_setup: Callable[[str, object, EcosystemService], Iterable | None] | None = None) -> None:
        self.events: list[tuple[float, str, dict]] = []
        self.services: dict[str, EcosystemService] = {}
        self.kernels: dict = {}
        self.nodes: dict = {}
        self.nurseries: dict = {}
        self.on_setup = on_setup
        self.c = SimCluster(nodes, seed=seed, topology=topology, setup=self._setup)
        self.plan = Plan(clusters=(self.c.cluster,), ecosystems=(Ecosystem(
            name="e", cluster=self.c.cluster.name, worker_count=worker_count,
            coordinator=ComponentRef(module=module, cls=coordinator), workers=ComponentRef(module=module, cls=workers),
            supervision=Supervision(max_restarts=max_restarts, within=10)),))
        self.home = self.c.names[0]

    async def _setup(self, host, kernel, node, nursery) -> None:
        service = EcosystemService(node, self.plan, self.c.cluster, report=self._report, rng=host.rng)
        self.services[host.name] = service
        self.kernels[host.name] = kernel
        self.nodes[host.name] = node
        self.nurseries[host.name] = nursery
        companions = (self.on_setup(host.name, node, service) if self.on_setup else None) or ()
        await nursery.start(service.run)
        for companion in companions:
            await nursery.start(companion.run)

    def _report(self, event, **fields) -> None:
        self.events.append((trio.current_time(), event, fields))
        self.c.sim.record("-", f"report {event}")

    def first_report(self, event: str, **match) -> tuple[float, dict] | None:
        """``(time, fields)`` of the first report ``event`` whose fields include ``match``, if any."""
        return next(((t, f) for t, e, f in self.events if e == event and all(f.get(k) == v for k, v in match.items())),
                    None)

    def first(self, event: str, **match) -> dict | None:
        """The fields of the first report ``event`` whose fields include ``match``, if any."""
        report = self.first_report(event, **match)
        return None if report is None else report[1]
