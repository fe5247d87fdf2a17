"""The Node over real TCP inside one process: remote call/monitor, loss of a peer, the spawn service."""

from __future__ import annotations

import argparse
from contextlib import asynccontextmanager

import pytest
import trio

from eco.plan import Cluster, ComponentRef, Ecosystem, NodeSpec, Plan, Supervision
from eco.runtime.component import Coordinator, Worker
from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_config
from eco.runtime.node_ecosystem import EcosystemService
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import open_tcp_transport

COOKIE = Cookie("test-cookie-0123456789abcdef")
pytestmark = pytest.mark.timeout(30)


@asynccontextmanager
async def running_node(name: str, join=(), cluster: str = "t", cookie: Cookie = COOKIE, **options):
    kernel = Kernel(name, incarnation=1)
    config = node_transport_config(cluster, name, 1, cookie, keepalive_interval=0.2, keepalive_misses=3)
    async with kernel, open_tcp_transport(config) as transport:
        node = Node(kernel, transport, **options)
        async with trio.open_nursery() as nursery:
            node.address = await nursery.start(node.serve, "127.0.0.1:0", list(join))
            node.stop = nursery.cancel_scope.cancel  # type: ignore[attr-defined]
            yield node
            nursery.cancel_scope.cancel()


async def adder(ctx):
    ctx.register("adder")
    while True:
        msg = await ctx.receive()
        if hasattr(msg, "request"):
            ctx.reply(msg, sum(msg.request))


async def test_call_monitor_and_noconnection_over_tcp():
    with trio.fail_after(20):
        async with running_node("a") as a:
            await a.kernel.spawn(adder)
            async with running_node("b", join=[str(a.address)]) as b:
                await b.wait_connected(["a"])
                assert await b.kernel.call(("a", "adder"), [1, 2, 3]) == 6
                with b.kernel.inbox() as me:
                    me.monitor(("a", "adder"))
                    a.stop()  # node a goes away: its connection closes
                    down = await me.receive(timeout=10)
                    assert down.reason.kind == "noconnection"
                assert not b.is_connected("a")


async def test_wrong_cookie_never_connects_and_the_node_keeps_serving():
    with trio.fail_after(20):
        async with running_node("a") as a:
            await a.kernel.spawn(adder)
            async with running_node("evil", join=[str(a.address)], cookie=Cookie("another-cookie-0123456789")):
                async with running_node("b", join=[str(a.address)]) as b:
                    await b.wait_connected(["a"])
                    assert await b.kernel.call(("a", "adder"), [4, 5]) == 9
                    assert a.peers == ["b"]


class Doubler(Worker):
    async def handle(self, msg):
        await self.ctx.send(msg["reply_to"], {"n": msg["n"] * 2, "node": self.ctx.node})


class SumCoordinator(Coordinator):
    async def init(self, ctx):
        self.total = 0
        self.answers = 0

    async def worker_started(self, pid):
        await self.ctx.send(pid, {"n": len(self.workers), "reply_to": self.ctx.self})

    async def handle(self, msg):
        self.total += msg["n"]
        self.answers += 1
        self.progress(self.answers, 4)
        if self.answers == 4:
            self.complete({"total": self.total})


async def test_ecosystem_spreads_workers_over_nodes_and_completes():
    events: list = []
    completed = trio.Event()

    def report(event, **fields):
        events.append((event, fields))
        if event == "complete":
            completed.set()

    with trio.fail_after(20):
        async with running_node("n1") as n1, running_node("n2", join=[str(n1.address)]) as n2:
            plan = Plan(
                clusters=(Cluster(name="t", nodes=(NodeSpec(name="n1", host="127.0.0.1", port=0),
                                                   NodeSpec(name="n2", host="127.0.0.1", port=0))),),
                ecosystems=(Ecosystem(
                    name="sum", cluster="t",
                    coordinator=ComponentRef(module=__name__, cls="SumCoordinator"),
                    workers=ComponentRef(module=__name__, cls="Doubler"),
                    worker_count=4, supervision=Supervision(restart="temporary"),
                ),),
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(EcosystemService(n1, plan, plan.clusters[0], report=report).run)
                await nursery.start(EcosystemService(n2, plan, plan.clusters[0], report=report).run)
                await completed.wait()
                nursery.cancel_scope.cancel()
            # two workers on each node (round-robin), all supervised locally
            assert len(n2.kernel.registered()) == 1 and "eco.sup.sum" in n2.kernel.registered()
    kinds = [e for e, _ in events]
    assert kinds.count("ready") == 2
    started = next(f for e, f in events if e == "started")
    assert started["workers"] == 4 and started["nodes"] == ["n1", "n2"]
    complete = next(f for e, f in events if e == "complete")
    assert complete["result"] == {"total": 2 * (1 + 2 + 3 + 4)}
    assert [f["done"] for e, f in events if e == "progress"] == [1, 2, 3, 4]


def test_cli_and_node_main_parsers_agree():
    from eco.compiler.cli import _configure_node
    from eco.runtime.node_main import configure_parser

    argv = ["--plan", "p.json", "--name", "n1", "--listen", "h:1", "--join", "a:2", "--join", "b:3",
            "--cookie-file", "c", "--log-level", "info", "--report", "--exit-on-stdin-eof"]
    parsed = []
    for configure in (_configure_node, configure_parser):
        p = argparse.ArgumentParser()
        configure(p)
        parsed.append(vars(p.parse_args(argv)))
    assert parsed[0] == parsed[1]


async def test_a_full_blocking_mailbox_holds_back_delivery_without_loss_or_reordering():
    # Remote messages go straight from the connection into mailboxes; a full `block`
    # mailbox must switch the node to waiting delivery, not drop or reorder anything.
    count = 300
    got: list[int] = []
    go = trio.Event()
    finished = trio.Event()

    async def slow(ctx):
        ctx.register("slow")
        await go.wait()
        while len(got) < count:
            got.append(await ctx.receive())
        finished.set()

    with trio.fail_after(20):
        kernel = Kernel("a", incarnation=1, mailbox_size=4)
        config = node_transport_config("t", "a", 1, COOKIE)
        async with kernel, open_tcp_transport(config) as transport:
            a = Node(kernel, transport)
            async with trio.open_nursery() as nursery:
                address = await nursery.start(a.serve, "127.0.0.1:0")
                pid = await kernel.spawn(slow)
                async with running_node("b", join=[str(address)]) as b:
                    await b.wait_connected(["a"])
                    for n in range(count):
                        await b.kernel.send(("a", "slow"), n)
                    mailbox = kernel.context(pid).mailbox
                    while len(mailbox) < 4:  # the mailbox fills up; the rest waits in the node
                        await trio.sleep(0.01)
                    assert len(mailbox) == 4
                    go.set()
                    await finished.wait()
                    assert got == list(range(count))
                    assert b.is_connected("a")
                nursery.cancel_scope.cancel()
