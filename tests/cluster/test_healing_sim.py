"""Self-healing ecosystems on the simulator: real Nodes with gossip membership and the ecosystem service.

Seeded and reproducible (a failure names its seed and the rerun command):

* the first placement waits for membership to settle (round_robin is even);
* a connection lost while its node stays up (a refuted suspicion) costs no capacity:
  the dropped workers are re-spawned one generation up;
* a partition made by the simulated transport: the cut-off node's workers run on the
  majority side, every work item is merged exactly once, and after the heal the
  returning node's stale workers are fenced.
"""

from __future__ import annotations

import pytest
import trio

from eco.runtime.component import Coordinator
from eco.runtime.simulator import sim_seeds

from ecosystem_harness import EcosystemRun, Replier  # noqa: E402  (same directory)

pytestmark = pytest.mark.timeout(60)

ITEMS = 240
WORKERS = 6


class Job(Coordinator):
    """Hands out ``ITEMS`` keyed items (two in flight per worker) and merges each reply once."""

    in_flight_limit = 2
    items = ITEMS
    runs: dict[str, Job] = {}  # by run id (the sim runs in this process): the test reads the live state

    async def init(self, ctx):
        self.merged: dict[int, int] = {}
        self.refused = 0
        Job.runs[ctx.node] = self
        for key in range(self.items):
            await self.submit({"key": key, "reply_to": ctx.self}, key=key)

    async def handle(self, msg):
        if msg == "finish":
            self.complete({"workers": len(self.workers)})
            return
        if self.acknowledge(msg["key"], msg["worker"]):
            self.merged[msg["key"]] = self.merged.get(msg["key"], 0) + 1
        else:
            self.refused += 1  # a duplicate or a late reply from a fenced/lost worker: not merged
        if len(self.merged) == self.items and self.outstanding == 0 and self.queued == 0:
            self.complete({"merged": sorted(self.merged.items()), "refused": self.refused})


class Slow(Replier):
    """Takes 50 ms (simulated) per item."""

    delay = 0.05


class Run(EcosystemRun):
    """A 3-node SimCluster whose nodes all run the ecosystem service; records report events."""

    def __init__(self, seed: int, *, items: int = ITEMS) -> None:
        Job.items = items
        Job.runs.clear()
        self._after: dict[str, list] = {}
        super().__init__(seed, module=__name__, workers="Slow", worker_count=WORKERS, nodes=3, max_restarts=20)

    def _report(self, event, **fields) -> None:
        super()._report(event, **fields)
        for action in self._after.pop(event, []):
            self.nurseries[self.home].start_soon(action)

    def after(self, event: str, delay: float, action) -> None:
        """Run ``action()`` ``delay`` simulated seconds after the first report ``event``."""

        async def later() -> None:
            await trio.sleep(delay)
            action()

        self._after.setdefault(event, []).append(later)

    def live_workers(self) -> dict[str, list[tuple[int, int]]]:
        """``{node: [(index, generation)]}``: the workers each node's factory runs now."""
        return {name: sorted((i, g) for (eco, i), (g, _) in s._children.items() if eco == "e")
                for name, s in self.services.items() if self.c.sim._hosts[name].running}

    def coordinator_workers(self) -> int:
        job = Job.runs.get(self.home)
        return -1 if job is None else len(job.workers)

    def exactly_once_everywhere(self) -> bool:
        """Every slot runs once, on one node, and the coordinator counts all of them."""
        indices = [i for workers in self.live_workers().values() for i, _ in workers]
        return sorted(indices) == list(range(WORKERS)) and self.coordinator_workers() == WORKERS

    def cut(self, a: str, b: str) -> None:
        """Close the connection between ``a`` and ``b`` (both stay up and redial)."""
        conn = self.nodes[a]._conns.get(b)
        assert conn is not None, f"{a} is not connected to {b}"
        self.nurseries[a].start_soon(conn.aclose, "test: connection cut")


@sim_seeds(3)
def test_first_placement_waits_for_membership_and_is_even(seed):
    run = Run(seed)
    run.c.sim.run(until=lambda: run.first("started") is not None, max_time=30)
    placement = run.first("started")["placement"]
    per_node = {n: list(placement.values()).count(n) for n in run.c.names}
    assert per_node == {n: 2 for n in run.c.names}, placement


@sim_seeds(3)
def test_a_refuted_suspicion_gets_its_dropped_workers_back(seed):
    run = Run(seed)
    victim = run.c.names[1]
    cut: list[float] = []
    restored: list[float] = []

    def cut_connection() -> None:
        cut.append(trio.current_time())
        run.cut(run.home, victim)

    def until() -> bool:
        if cut and not restored and run.first("respawned") and run.exactly_once_everywhere():
            restored.append(trio.current_time())
        return bool(restored) and run.first("complete") is not None

    run.after("started", 0.5, cut_connection)
    run.c.sim.run(until=until, max_time=30)
    started, respawned = run.first("started"), run.first("respawned")
    dropped = sorted(i for i, n in started["placement"].items() if n == victim)
    assert dropped and respawned["node"] == victim and set(respawned["workers"]) <= set(dropped)
    # in place, unless the connection flapped again mid-way: then by placement
    assert respawned["workers"] and victim in respawned["workers"].values()
    assert run.first("recovered") is None  # the victim was never declared down: nothing moved
    assert restored[0] - cut[0] < 2.0  # back to the declared worker count
    # (a reconnection can race the redial of the other side and flap once more: then a slot goes up again)
    generations = {i: g for workers in run.live_workers().values() for i, g in workers}
    assert all(generations[int(i)] >= 1 for i in dropped), generations  # the dropped ones, one generation up
    merged = run.first("complete")["result"]["merged"]
    assert merged == [[k, 1] for k in range(ITEMS)] or merged == [(k, 1) for k in range(ITEMS)]


@sim_seeds(3)
def test_a_partitioned_node_is_healed_around_and_fenced_when_it_returns(seed):
    """The transport's fault injection cuts one worker node off the coordinator's side, then heals."""
    run = Run(seed, items=720)  # about 6 s of work for 6 workers: the partition and its heal happen mid-job
    home, other, victim = run.c.names
    times: dict[str, float] = {}

    def partition() -> None:
        times["partition"] = trio.current_time()
        run.c.sim.partition({victim}, {home, other})

    def heal() -> None:
        times["heal"] = trio.current_time()
        run.c.sim.heal()

    def until() -> bool:
        # after the heal: every slot runs exactly once (the victim's stale generation fenced)
        if "heal" in times and "fenced" not in times and run.first("fenced", node=victim) and \
                run.exactly_once_everywhere():
            times["fenced"] = trio.current_time()
        return "fenced" in times and run.first("complete") is not None

    run.after("started", 0.5, partition)
    run.after("started", 3.0, heal)
    run.c.sim.run(until=until, max_time=60)
    started, recovered = run.first("started"), run.first("recovered", node=victim)
    lost = sorted(i for i, n in started["placement"].items() if n == victim)
    assert lost and recovered is not None, run.events
    assert sorted(recovered["workers"]) == lost
    assert set(recovered["workers"].values()) <= {home, other}  # re-spawned on the majority side
    assert times["partition"] < run.events[[e for _, e, _ in run.events].index("recovered")][0] < times["heal"]
    assert run.first("fenced", node=victim)["stopped"] == len(lost)
    live = run.live_workers()
    assert sorted(i for workers in live.values() for i, _ in workers) == list(range(WORKERS)), live
    assert all(i not in lost for i, _ in live[victim]), live  # no stale generation survives on the victim
    result = run.first("complete")["result"]
    assert [tuple(kv) for kv in result["merged"]] == [(k, 1) for k in range(720)]  # each item merged once
    assert run.first("failed") is None
