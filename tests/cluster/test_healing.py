"""Self-healing ecosystems: generic re-queueing of unacknowledged work, fencing, factory refusals, re-spawn.

The Coordinator tests run on one kernel; the node tests run several nodes over
real loopback TCP inside this process (no OS processes: see tests/e2e/test_chaos.py).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio

from eco.plan import Cluster, ComponentRef, Distribution, Ecosystem, NodeSpec, Plan, SpawnRule, Supervision
from eco.runtime.component import FENCED, Coordinator, Worker, WorkerStarted
from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_config
from eco.runtime.node_ecosystem import EcosystemService, SpawnRefused
from eco.runtime.secrets import Cookie
from eco.runtime.supervisor import which_children
from eco.runtime.tcp import open_tcp_transport

COOKIE = Cookie("test-cookie-0123456789abcdef")
pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------------ coordinator, one kernel


class Queue(Coordinator):
    """Submits six keyed items, at most two unacknowledged per worker; records acknowledgements."""

    in_flight_limit = 2

    async def init(self, ctx):
        self.acked: list[int] = []
        self.refused = 0
        self.downs: list = []
        for key in range(6):
            await self.submit({"key": key, "reply_to": ctx.self}, key=key)

    async def worker_down(self, pid, reason):
        self.downs.append((pid, reason))

    async def handle(self, msg):
        if self.acknowledge(msg["key"], msg["worker"]):
            self.acked.append(msg["key"])
        else:
            self.refused += 1

    async def handle_call(self, request):
        return {"acked": sorted(self.acked), "refused": self.refused, "queued": self.queued,
                "outstanding": self.outstanding, "workers": list(self.workers),
                "downs": [(p, r.text if hasattr(r, "text") else str(r)) for p, r in self.downs]}


async def holder(ctx, probe):
    """A worker that reports what it got to ``probe`` and answers only when told to."""
    held = []
    while True:
        msg = await ctx.receive()
        if msg == "answer":
            for item in held:
                await ctx.send(item["reply_to"], {"key": item["key"], "worker": ctx.self})
            held.clear()
            await ctx.send(probe, ("answered", ctx.self, None))  # after the answers are in the coordinator's mailbox
        else:
            held.append(msg)
            await ctx.send(probe, ("got", ctx.self, msg["key"]))


async def _got(me, n):
    return [(await me.receive(timeout=5))[1:] for _ in range(n)]


async def test_unacknowledged_work_of_a_lost_worker_is_handed_out_again():
    with trio.fail_after(10):
        async with Kernel("n1") as kernel:
            with kernel.inbox() as me:
                coord = await kernel.spawn(Queue)
                w1 = await kernel.spawn(holder, me.pid)
                w2 = await kernel.spawn(holder, me.pid)
                kernel.cast(coord, WorkerStarted(w1))
                kernel.cast(coord, WorkerStarted(w2))
                got = await _got(me, 4)
                assert sorted(k for p, k in got if p == w1) == [0, 1]  # w1 started first: filled first
                assert sorted(k for p, k in got if p == w2) == [2, 3]
                kernel.kill(w1)  # w1 never answered: its two items must not be lost
                state = await kernel.call(coord, "state")
                while state["workers"] != [w2]:
                    state = await kernel.call(coord, "state")
                assert state["queued"] == 4 and state["outstanding"] == 2  # re-queued in front of 4 and 5
                await kernel.send(coord, {"key": 0, "worker": w1})  # a late answer from the lost worker
                for expected_next in ([0, 1], [4, 5], []):
                    await kernel.send(w2, "answer")
                    got = await _got(me, 1 + len(expected_next))
                    assert got[0] == (w2, None)
                    assert sorted(k for p, k in got[1:] if p == w2) == expected_next  # the re-queued items first
                state = await kernel.call(coord, "state")
                assert state["acked"] == [0, 1, 2, 3, 4, 5]  # each exactly once
                assert state["refused"] == 1  # the late answer was ignored
                assert state["queued"] == 0 and state["outstanding"] == 0


async def test_a_newer_generation_fences_the_older_and_stale_restarts_are_ignored():
    with trio.fail_after(10):
        async with Kernel("n1") as kernel:
            with kernel.inbox() as me:
                coord = await kernel.spawn(Queue)
                old = await kernel.spawn(holder, me.pid)
                kernel.cast(coord, WorkerStarted(old, 0, 0))
                assert sorted(k for _, k in await _got(me, 2)) == [0, 1]
                new = await kernel.spawn(holder, me.pid)
                kernel.cast(coord, WorkerStarted(new, 0, 1))  # slot 0 re-spawned elsewhere, one generation up
                moved = await _got(me, 2)
                assert {p for p, _ in moved} == {new} and sorted(k for _, k in moved) == [0, 1]
                stale = await kernel.spawn(holder, me.pid)
                kernel.cast(coord, WorkerStarted(stale, 0, 0))  # the old generation restarted after a partition healed
                await kernel.send(coord, {"key": 0, "worker": old})  # and the old one's late result
                state = await kernel.call(coord, "state")
                assert state["workers"] == [new]
                assert state["refused"] == 1 and state["acked"] == []
                assert state["downs"] == [(old, FENCED.text if hasattr(FENCED, "text") else str(FENCED))]
                await kernel.send(new, "answer")
                assert sorted(k for _, k in await _got(me, 3) if k is not None) == [2, 3]  # answered, then the next two
                assert (await kernel.call(coord, "state"))["acked"] == [0, 1]


# ------------------------------------------------------------------ nodes over loopback TCP


@asynccontextmanager
async def running_node(name: str, join=(), incarnation: int = 1):
    kernel = Kernel(name, incarnation=incarnation)
    config = node_transport_config("t", name, incarnation, COOKIE, keepalive_interval=0.2, keepalive_misses=3)
    async with kernel, open_tcp_transport(config) as transport:
        node = Node(kernel, transport)
        async with trio.open_nursery() as nursery:
            node.address = await nursery.start(node.serve, "127.0.0.1:0", list(join))
            node.stop = nursery.cancel_scope.cancel  # type: ignore[attr-defined]
            yield node
            nursery.cancel_scope.cancel()


class Idle(Worker):
    async def handle(self, msg):
        pass


class Census(Coordinator):
    """Completes, when sent "finish", with where its workers run."""

    async def handle(self, msg):
        if msg == "finish":
            self.complete({"workers": len(self.workers), "nodes": sorted(p.node for p in self.workers)})


def _plan(names, *, count=3, zones=None, **eco):
    zones = zones or {}
    nodes = tuple(NodeSpec(name=n, host="127.0.0.1", port=0, zone=zones.get(n)) for n in names)
    return Plan(
        clusters=(Cluster(name="t", nodes=nodes),),
        ecosystems=(Ecosystem(name="e", cluster="t", coordinator=ComponentRef(module=__name__, cls="Census"),
                              workers=ComponentRef(module=__name__, cls="Idle"), worker_count=count, **eco),),
    )


class Events:
    def __init__(self):
        self.seen: list = []
        self._changed = trio.Event()

    def __call__(self, event, **fields):
        self.seen.append((event, fields))
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, event, **match):
        while True:
            for e, f in self.seen:
                if e == event and all(f.get(k) == v for k, v in match.items()):
                    return f
            await self._changed.wait()


async def _children(node):
    try:
        return await which_children(node.kernel, "eco.sup.e")
    except Exception:
        return []


async def test_workers_of_a_lost_node_are_respawned_elsewhere_and_a_returning_node_is_fenced():
    events = Events()
    with trio.fail_after(25):
        async with running_node("n1") as n1, running_node("n2", [str(n1.address)]) as n2, \
                running_node("n3", [str(n1.address), str(n2.address)]) as n3:
            plan = _plan(["n1", "n2", "n3"], supervision=Supervision(max_restarts=5, within=10))
            services = [EcosystemService(n, plan, plan.clusters[0], report=events) for n in (n1, n2, n3)]
            async with trio.open_nursery() as nursery:
                for s in services:
                    await nursery.start(s.run)
                started = await events.wait("started", ecosystem="e")
                assert started["placement"] == {"0": "n1", "1": "n2", "2": "n3"}
                # n1 loses its connection to n2 while n2 keeps running (a suspicion that was wrong):
                await n1._conns["n2"].aclose("test: cut the connection")
                recovered = await events.wait("recovered", node="n2")
                assert recovered["workers"]["1"] in ("n1", "n3")
                # n2 redials; on its return the host fences it: its old worker is stopped.
                fenced = await events.wait("fenced", node="n2")
                assert fenced["stopped"] == 1
                assert await _children(n2) == []
                total = sum([len(await _children(n)) for n in (n1, n3)])
                assert total == 3  # no duplicate live workers
                # now n3's process goes away for good
                n3.stop()
                recovered = await events.wait("recovered", node="n3")
                assert recovered["workers"]["2"] in ("n1", "n2")
                n1.kernel.cast(services[0]._coordinators["e"], "finish")
                complete = await events.wait("complete", ecosystem="e")
                assert complete["result"]["workers"] == 3
                assert "n3" not in complete["result"]["nodes"]
                nursery.cancel_scope.cancel()


async def test_restart_intensity_applies_to_respawns():
    events = Events()
    with trio.fail_after(20):
        async with running_node("n1") as n1, running_node("n2", [str(n1.address)]) as n2:
            plan = _plan(["n1", "n2"], count=4, supervision=Supervision(max_restarts=1, within=10))
            services = [EcosystemService(n, plan, plan.clusters[0], report=events) for n in (n1, n2)]
            async with trio.open_nursery() as nursery:
                for s in services:
                    await nursery.start(s.run)
                await events.wait("started", ecosystem="e")
                n2.stop()  # two workers lost at once: more than 1 restart within 10 s
                failed = await events.wait("failed", ecosystem="e")
                assert "cannot recover from the loss of node n2" in failed["reason"]
                assert "max restart intensity" in failed["reason"]
                nursery.cancel_scope.cancel()


async def test_a_refused_spawn_is_an_error_the_requester_sees():
    events = Events()
    with trio.fail_after(20):
        async with running_node("n1") as n1, running_node("n2", [str(n1.address)]) as n2:
            plan = _plan(["n1", "n2"], zones={"n1": "b", "n2": "a"}, count=2,
                         allow_spawn_from=(SpawnRule(label="zone", value="a"),))
            services = [EcosystemService(n, plan, plan.clusters[0], report=events) for n in (n1, n2)]
            async with trio.open_nursery() as nursery:
                for s in services:
                    await nursery.start(s.run)
                failed = await events.wait("failed", ecosystem="e")
                assert "spawn refused" in failed["reason"] and 'zone "a"' in failed["reason"]
                # directly: the remote factory's refusal reaches the requester as SpawnRefused
                with n1.kernel.inbox() as me1, n2.kernel.inbox() as me2:
                    with pytest.raises(SpawnRefused, match=r"node n2: spawn refused: node n1 is not allowed"):
                        await services[0].spawn_worker("n2", "e", 0, me1.pid, 5)
                    # and n2 (zone a) may spawn on n1
                    pid = await services[1].spawn_worker("n1", "e", 0, me2.pid, 7)
                    assert pid.node == "n1"
                nursery.cancel_scope.cancel()


async def test_placement_follows_the_distribution_policy():
    events = Events()
    with trio.fail_after(20):
        async with running_node("n1") as n1, running_node("n2", [str(n1.address)]) as n2, \
                running_node("n3", [str(n1.address), str(n2.address)]) as n3:
            plan = _plan(["n1", "n2", "n3"], count=4,
                         distribution=Distribution(policy="explicit_nodes", nodes=("n2", "n3"), placement="least_loaded"))
            services = [EcosystemService(n, plan, plan.clusters[0], report=events) for n in (n1, n2, n3)]
            async with trio.open_nursery() as nursery:
                for s in services:
                    await nursery.start(s.run)
                started = await events.wait("started", ecosystem="e")
                assert sorted(started["placement"].values()) == ["n2", "n2", "n3", "n3"]
                n3.stop()
                recovered = await events.wait("recovered", node="n3")
                assert set(recovered["workers"].values()) == {"n2"}  # never n1: not in the explicit list
                nursery.cancel_scope.cancel()
