"""Links opened on demand and closed when idle (``topology hyparview``) racing with the traffic
that needs them, on the simulated network (seeded; rerun with ECO_SIM_SEED).

Each test makes the race happen at its worst moment, deterministically:

* the peer closes an idle link just as an envelope is queued on it (the goodbye has arrived,
  the session has not ended yet): the envelope goes over the next link, not lost;
* the link closes between a spawn request and its reply: the reply comes over the next link,
  and the spawn succeeds (only the member's loss would fail it);
* a link lost just before the first placement, reported to the ecosystem's host after it:
  the workers spawned over the next link are not taken for lost (no re-spawn churn).
"""

from __future__ import annotations

import pytest
import trio

from eco.plan.models import HyParViewTopology
from eco.runtime.component import Coordinator
from eco.runtime.node import CONTROL_CHANNEL
from eco.runtime.node_ecosystem import EcosystemService
from eco.runtime.simulator import sim_seeds
from eco.runtime.wire import Envelope, Kind

from ecosystem_harness import EcosystemRun, Replier  # noqa: E402  (same directory)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("quiet_transport_logs")]

TOPOLOGY = HyParViewTopology(active=2, passive=4, shuffle_interval=4.0)
NODES = 5
ITEMS = 100


class Job(Coordinator):
    """Hands out ``ITEMS`` keyed items and merges each reply once."""

    async def init(self, ctx):
        self.merged: set[int] = set()
        for key in range(ITEMS):
            await self.submit({"key": key, "reply_to": ctx.self}, key=key)

    async def handle(self, msg):
        if self.acknowledge(msg["key"], msg["worker"]):
            self.merged.add(msg["key"])
        if len(self.merged) == ITEMS and self.outstanding == 0 and self.queued == 0:
            self.complete({"merged": len(self.merged)})


class Echo(Replier):
    delay = 0.01


class Run(EcosystemRun):
    """A five-node hyparview cluster with the ecosystem service on every node."""

    def __init__(self, seed: int, *, on_setup=None) -> None:
        super().__init__(seed, module=__name__, workers="Echo", worker_count=10, nodes=NODES, topology=TOPOLOGY,
                         on_setup=on_setup)

    async def temporary_link(self, a: str, b: str) -> None:
        """Open a link from ``a`` to ``b`` (not neighbours) the way on-demand traffic does."""
        membership = self.c.members[a]
        membership._open(b)
        with trio.fail_after(5):
            while not membership.node.is_connected(b) or not self.c.members[b].node.is_connected(a):
                await trio.sleep(0.01)

    def non_neighbours(self, a: str) -> list[str]:
        wanted = self.c.members[a].core.wanted_links()
        return [b for b in self.c.names if b != a and b not in wanted and a not in self.c.members[b].core.wanted_links()]


@sim_seeds(3)
def test_an_envelope_queued_as_the_peer_closes_the_link_goes_over_the_next_one(seed):
    run = Run(seed)
    c = run.c
    a = c.names[1]
    outcome: dict = {"received": []}

    async def race() -> None:
        await trio.sleep(4.0)  # the overlay has settled; the job runs
        b = run.non_neighbours(a)[0]
        c.members[b].node.handle(Kind.SPAWN_REQ, lambda conn, env: outcome["received"].append((conn.peer.node, env.payload)))
        await run.temporary_link(a, b)
        node = c.members[a].node
        conn = node._conns[b]
        goodbye = conn._peer_goodbye

        def goodbye_then_send(reason: str) -> None:
            goodbye(reason)  # a has the goodbye; its session with b has not ended yet
            outcome["sent"] = node.send_envelope(b, Envelope(Kind.SPAWN_REQ, CONTROL_CHANNEL, None, None, 0, {"n": 1}))
            outcome["still_registered"] = node.is_connected(b)
            outcome["at"] = trio.current_time()

        conn._peer_goodbye = goodbye_then_send
        c.members[b].node.disconnect(a, "idle, and not an overlay neighbour")  # what b's sweep does
        outcome["b"] = b

    def start() -> bool:
        if a in run.nurseries and "started" not in outcome:
            outcome["started"] = True
            run.nurseries[a].start_soon(race)
        return bool(outcome["received"]) or ("at" in outcome and c.sim.now > outcome["at"] + 3.0)

    c.sim.run(until=start, max_time=20)
    assert outcome["still_registered"], "the race was not set up: the session had already ended"
    assert outcome["sent"] is True
    assert outcome["received"] == [(a, {"n": 1})]


@sim_seeds(3)
def test_a_spawn_whose_link_closes_before_the_reply_still_succeeds(seed):
    run = Run(seed)
    c = run.c
    a = c.names[1]
    outcome: dict = {}

    async def sink(ctx) -> None:
        while True:
            outcome.setdefault("told", []).append(await ctx.receive())

    async def race() -> None:
        await trio.sleep(4.0)
        b = next(n for n in run.non_neighbours(a) if n != run.home)
        node_b = c.members[b].node
        serve = node_b._handlers[int(Kind.SPAWN_REQ)]

        def serve_then_close(conn, env):
            result = serve(conn, env)
            node_b.disconnect(a, "idle, and not an overlay neighbour")  # b swept the link as the request came
            return result

        node_b._handlers[int(Kind.SPAWN_REQ)] = serve_then_close
        coordinator = run.kernels[a].spawn_nowait(sink)
        try:
            pid = await run.services[a].spawn_worker(b, "e", 40, coordinator, 0)
        except Exception as exc:  # (reported below, with the seed)
            outcome["error"] = repr(exc)
        else:
            outcome["pid"] = pid
        outcome["b"] = b
        outcome["reconnected"] = c.members[a].node.link_epoch(b) > 1

    def start() -> bool:
        if a in run.nurseries and "started" not in outcome:
            outcome["started"] = True
            run.nurseries[a].start_soon(race)
        return "b" in outcome

    c.sim.run(until=start, max_time=20)
    assert "error" not in outcome, outcome["error"]
    assert outcome["pid"].node == outcome["b"]
    assert outcome["reconnected"]  # the reply did come over a new link


@sim_seeds(3)
def test_a_link_lost_just_before_placement_does_not_make_the_host_respawn_its_workers(seed):
    staged: dict = {}

    def on_setup(name: str, node, service: EcosystemService) -> None:
        if name != run.home:
            return
        settle = service.wait_settled

        async def settle_then_lose_a_link() -> bool:
            settled = await settle()
            # A temporary link to a worker node closes just before placement; the host hears
            # of it (a message in its mailbox) only once it has placed and spawned the workers.
            b = run.non_neighbours(run.home)[0]
            await run.temporary_link(run.home, b)
            service.node.disconnect(b, "idle, and not an overlay neighbour")
            staged["b"] = b
            staged["lost_epoch"] = service.node.link_epoch(b)
            return settled

        service.wait_settled = settle_then_lose_a_link

    run = Run(seed, on_setup=on_setup)
    run.c.sim.run(until=lambda: run.first("complete") is not None or run.first("failed") is not None, max_time=40)
    assert run.first("failed") is None, run.first("failed")
    assert run.first("complete")["result"] == {"merged": ITEMS}
    placement = run.first("started")["placement"]
    assert staged["b"] in placement.values(), placement  # workers went to the node whose link was lost
    assert run.services[run.home].node.link_epoch(staged["b"]) > staged["lost_epoch"]  # over a new link
    assert run.first("respawned") is None and run.first("recovered") is None  # and were not taken for lost
