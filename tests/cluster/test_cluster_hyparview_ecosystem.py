"""An ecosystem on a ``topology hyparview`` cluster (simulated network, seeded; rerun with ECO_SIM_SEED).

The overlay's driver owns every link: ecosystem traffic opens links on demand,
a link outside the active view closes once idle, and one that carries monitors
(the coordinator's link to its workers' nodes) stays open while they run.
"""

from __future__ import annotations

import pytest
import trio

from eco.plan.models import HyParViewTopology
from eco.runtime.cluster import TEMPORARY_LINK_IDLE
from eco.runtime.component import Coordinator
from eco.runtime.node_status import StatusService, ecosystem_view
from eco.runtime.simulator import sim_seeds

from cluster_harness import SimCluster  # noqa: E402  (same directory)
from ecosystem_harness import EcosystemRun, Replier  # noqa: E402  (same directory)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("quiet_transport_logs")]

TOPOLOGY = HyParViewTopology(active=2, passive=4, shuffle_interval=4.0)
NODES = 5
WORKERS = 10
ITEMS = 600  # 50 ms each on 10 workers: about 3 s of work, so links are swept mid-job


class Job(Coordinator):
    """Hands out ``ITEMS`` keyed items and merges each reply once."""

    in_flight_limit = 2

    async def init(self, ctx):
        self.merged: dict[int, int] = {}
        for key in range(ITEMS):
            await self.submit({"key": key, "reply_to": ctx.self}, key=key)

    async def handle(self, msg):
        if self.acknowledge(msg["key"], msg["worker"]):
            self.merged[msg["key"]] = self.merged.get(msg["key"], 0) + 1
        if len(self.merged) == ITEMS and self.outstanding == 0 and self.queued == 0:
            self.complete({"merged": sorted(self.merged.items())})


class Slow(Replier):
    delay = 0.05


class Run(EcosystemRun):
    """A five-node hyparview cluster with the ecosystem and status services on every node."""

    def __init__(self, seed: int) -> None:
        self.status: dict[str, StatusService] = {}
        super().__init__(seed, module=__name__, workers="Slow", worker_count=WORKERS, nodes=NODES, topology=TOPOLOGY,
                         on_setup=self._add_status)

    def _add_status(self, name: str, node, service) -> list[StatusService]:
        self.status[name] = StatusService(node, self.c.members[name], cluster=self.c.cluster.name,
                                          ecosystems=lambda: ecosystem_view(service))
        return [self.status[name]]


@sim_seeds(3)
def test_an_ecosystem_runs_on_the_overlay_and_only_idle_links_outside_it_close(seed):
    run = Run(seed)
    c = run.c
    seen: dict = {"stale": set(), "closed_busy": set(), "non_neighbour_busy": set(), "peers_max": 0}
    asker = c.names[-1]
    status: dict = {}

    async def ask_status() -> None:
        # After the job, a status query from a worker node reaches every member over on-demand links.
        status["asked"] = trio.current_time()
        status["reply"] = await run.status[asker].status()
        status["links"] = set(c.members[asker].node.peers)

    def check() -> bool:
        started = run.first_report("started")
        if started is None:
            return False
        now = c.sim.now
        complete = run.first_report("complete")
        if complete is not None and "asked" not in status and now > complete[0] + 0.5:
            run.nurseries[asker].start_soon(ask_status)
        workers_on = set(started[1]["placement"].values()) - {run.home}
        home = c.members[run.home]
        for name in c.names:
            m = c.members[name]
            seen["peers_max"] = max(seen["peers_max"], len(m.node.peers))
            for peer in set(m.node.peers) - m.core.wanted_links():
                idle_for = now - max(m._traffic.get(peer, 0.0), m.node.last_used(peer))
                if not m.node.ties(peer) and idle_for > TEMPORARY_LINK_IDLE + 0.6:
                    seen["stale"].add((name, peer))
        if run.first("complete") is None:
            # Busy links (the coordinator monitors workers there) stay, neighbours or not.
            for peer in workers_on:
                if not home.node.is_connected(peer):
                    seen["closed_busy"].add(peer)
                elif peer not in home.core.wanted_links():
                    seen["non_neighbour_busy"].add(peer)
        if "links" in status and "idle_closed" not in status:
            m = c.members[asker]
            temporary = status["links"] - m.core.wanted_links()
            if not temporary & set(m.node.peers):
                status["idle_closed"] = now
        return "idle_closed" in status and now > started[0] + 2 * TEMPORARY_LINK_IDLE + 1.0

    c.sim.run(until=check, max_time=40)
    merged = run.first("complete")["result"]["merged"]
    assert [tuple(kv) for kv in merged] == [(k, 1) for k in range(ITEMS)]  # every item merged exactly once
    placement = run.first("started")["placement"]
    assert set(placement.values()) == set(c.names)  # workers on every node, neighbours of the home or not
    assert run.first("respawned") is None and run.first("recovered") is None  # no link loss hurt the job
    assert seen["closed_busy"] == set()
    assert seen["non_neighbour_busy"], "the home node had every worker node as a neighbour: nothing was shown"
    assert seen["stale"] == set(), "idle links outside the active view were kept"
    # The status query opened links to every member (it saw every worker) and those outside the
    # active view closed once idle (the job is over: no monitors hold the home node's link either).
    workers = status["reply"]["ecosystems"]["e"]["workers"]
    assert sorted(int(w["id"].split("-")[1].split(".")[0]) for w in workers) == list(range(WORKERS)), workers
    assert status["links"] == set(c.names) - {asker}
    # (idle counts membership traffic too: a peer whose view still holds this node keeps the link a while)
    assert status["idle_closed"] - status["asked"] <= 4 * TEMPORARY_LINK_IDLE
    for a in c.names[1:]:
        for b in c.names[1:]:
            ma = c.members[a]
            if a < b and b not in ma.core.wanted_links() and a not in c.members[b].core.wanted_links():
                assert not ma.node.is_connected(b), (a, b)
    for observer in c.names:  # and membership never doubted anyone
        assert all(c.state(observer, n)[0] == "up" for n in c.names if n != observer)


@sim_seeds(3)
def test_plain_sends_keep_a_link_open_and_reopen_a_swept_one(seed):
    """Plain sends (no monitor, no link across) between two non-neighbours: the link stays
    while they flow, closes once idle, and the next send opens a new one; nothing is lost."""
    kernels: dict = {}
    received: list[int] = []

    async def sink(ctx) -> None:
        while True:
            received.append(await ctx.receive())

    async def setup(host, kernel, node, nursery) -> None:
        kernels[host.name] = kernel
        kernel.register("sink", kernel.spawn_nowait(sink))

    c = SimCluster(NODES, seed=seed, topology=TOPOLOGY, setup=setup)
    state: dict = {"phase": 0, "flapped": 0}

    def pair() -> tuple[str, str] | None:
        for a in c.names:
            for b in c.names:
                ma, mb = c.members.get(a), c.members.get(b)
                if a != b and ma and mb and b not in ma.core.wanted_links() and a not in mb.core.wanted_links() \
                        and not ma.node.is_connected(b):
                    return a, b
        return None

    def sender(a: str, b: str, first: int, count: int, done: str):
        async def run(ctx) -> None:
            for i in range(first, first + count):
                await ctx.send((b, "sink"), i)
                await trio.sleep(0.2)
            state[done] = trio.current_time()
        kernels[a].spawn_nowait(run)

    def check() -> bool:
        now = c.sim.now
        if state["phase"] == 0 and now >= 4.0 and len(kernels) == NODES and all(c.all_see(n, "up") for n in c.names):
            found = pair()
            if found is None:
                return False
            state["pair"] = found
            state["phase"] = 1
            sender(*found, 0, 20, "sent1")  # 4 s of traffic, four times the idle period
            return False
        if state["phase"] == 1:
            a, b = state["pair"]
            if received and not c.members[a].node.is_connected(b):
                state["flapped"] += 1  # swept while busy
            if "sent1" in state:
                state["phase"] = 2
            return False
        if state["phase"] == 2:
            a, b = state["pair"]
            if not c.members[a].node.is_connected(b) and not c.members[b].node.is_connected(a):
                state["closed_after"] = now - state["sent1"]
                state["phase"] = 3
                sender(a, b, 20, 5, "sent2")
            return False
        return state["phase"] == 3 and len(received) >= 25

    c.sim.run(until=check, max_time=40)
    assert state["phase"] == 3, f"stuck in phase {state['phase']}"
    assert state["flapped"] == 0, "a link carrying plain sends was swept"
    assert state["closed_after"] <= 3 * TEMPORARY_LINK_IDLE
    assert received == list(range(25))  # every message, in order, across the sweep and the reopening
