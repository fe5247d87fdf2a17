"""The Node over the simulated network: remote send/call/monitor/link, loss and reconnection."""

from __future__ import annotations

import trio

from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_options
from eco.runtime.pid import PID
from eco.runtime.signals import Down, Exited
from eco.runtime.simnet import Fixed, LinkSpec
from eco.runtime.simulator import Simulation

FAST = {"keepalive_interval": 0.5, "keepalive_misses": 3, **node_transport_options()}


def make_sim(seed: int = 1) -> Simulation:
    return Simulation(seed, link=LinkSpec(delay=Fixed(0.002)), transport_options=FAST)


async def echo(ctx):
    ctx.register("echo")
    while True:
        msg = await ctx.receive()
        if hasattr(msg, "request"):  # a CallRequest
            ctx.reply(msg, ("echo", msg.request, ctx.self))
        elif isinstance(msg, dict) and "reply_to" in msg:
            await ctx.send(msg["reply_to"], {"got": msg["n"], "from": ctx.self})
        elif msg == "crash":
            raise RuntimeError("asked to crash")


def server_host(results):
    async def main(transport, host):
        async with Kernel(host.name, incarnation=host.incarnation) as kernel:
            node = Node(kernel, transport, rng=host.rng)
            await kernel.spawn(echo)
            async with trio.open_nursery() as nursery:
                await nursery.start(node.serve)
                results.setdefault("server_started", 0)
                results["server_started"] += 1
                await trio.sleep_forever()

    return main


def test_remote_send_call_and_pid_roundtrip():
    sim = make_sim()
    results: dict = {}

    async def client(transport, host):
        async with Kernel(host.name, incarnation=host.incarnation) as kernel:
            node = Node(kernel, transport, rng=host.rng)
            async with trio.open_nursery() as nursery:
                await nursery.start(node.serve, None, ["n1"])
                await node.wait_connected(["n1"])
                with kernel.inbox() as me:
                    # call by (node, name): the reply carries a PID that is a PID again here
                    tag, request, pid = await kernel.call(("n1", "echo"), [1, "two", b"3"], timeout=2)
                    results["call"] = (tag, request, pid)
                    # send to that PID, with our own PID inside the message
                    for n in range(3):
                        await kernel.send(pid, {"reply_to": me.pid, "n": n})
                    results["replies"] = [(await me.receive(timeout=2))["got"] for _ in range(3)]
                nursery.cancel_scope.cancel()

    sim.add_host("n1", server_host(results))
    sim.add_host("n2", client)
    sim.run(until=lambda: "replies" in results, max_time=30)
    tag, request, pid = results["call"]
    assert tag == "echo" and request == [1, "two", b"3"]
    assert type(pid) is PID and pid.node == "n1"
    assert results["replies"] == [0, 1, 2]  # in order


def test_remote_monitor_fires_on_exit_and_on_unknown_process():
    sim = make_sim(2)
    results: dict = {}

    async def client(transport, host):
        async with Kernel(host.name, incarnation=host.incarnation) as kernel:
            node = Node(kernel, transport, rng=host.rng)
            async with trio.open_nursery() as nursery:
                await nursery.start(node.serve, None, ["n1"])
                await node.wait_connected(["n1"])
                with kernel.inbox() as me:
                    _, _, pid = await kernel.call(("n1", "echo"), "who", timeout=2)
                    ref = me.monitor(pid)
                    await kernel.send(pid, "crash")
                    down = await me.receive(timeout=2)
                    results["down"] = (down.ref == ref, down.pid, down.reason.kind, down.reason.detail)
                    ghost = PID("n1", 999, pid.incarnation)
                    me.monitor(ghost)
                    results["ghost"] = (await me.receive(timeout=2)).reason.kind
                nursery.cancel_scope.cancel()

    sim.add_host("n1", server_host(results))
    sim.add_host("n2", client)
    sim.run(until=lambda: "ghost" in results, max_time=30)
    same_ref, pid, kind, detail = results["down"]
    assert same_ref and pid.node == "n1"
    assert kind == "error" and "asked to crash" in detail
    assert results["ghost"] == "noproc"


def test_crash_gives_down_noconnection_and_link_exit_then_reconnects_after_restart():
    sim = make_sim(3)
    results: dict = {"events": []}

    async def client(transport, host):
        async with Kernel(host.name, incarnation=host.incarnation) as kernel:
            node = Node(kernel, transport, rng=host.rng, on_event=lambda ev, **f: results["events"].append((ev, f.get("peer"))))
            async with trio.open_nursery() as nursery:
                await nursery.start(node.serve, None, ["n1"])
                await node.wait_connected(["n1"])
                with kernel.inbox() as me:
                    me.trap_exit = True
                    _, _, pid = await kernel.call(("n1", "echo"), "who", timeout=2)
                    me.monitor(pid)
                    kernel._link(me, pid)
                    results["monitoring"] = True
                    got = [await me.receive(timeout=10), await me.receive(timeout=10)]
                    results["down"] = sorted(
                        (type(m).__name__, m.reason.kind) for m in got if isinstance(m, (Down, Exited))
                    )
                    # the server restarts (sim.at below); the node redials with backoff
                    await node.wait_connected(["n1"])
                    _, _, pid2 = await kernel.call(("n1", "echo"), "again", timeout=5)
                    results["new_incarnation"] = pid2.incarnation != pid.incarnation
                nursery.cancel_scope.cancel()

    sim.add_host("n1", server_host(results))
    sim.add_host("n2", client)
    sim.at(2.0, lambda: sim.crash("n1"))
    sim.at(6.0, lambda: sim.restart("n1"))
    sim.run(until=lambda: "new_incarnation" in results, max_time=60)
    assert results["down"] == [("Down", "noconnection"), ("Exited", "noconnection")]
    assert results["new_incarnation"] is True
    assert results["events"].count(("peer_up", "n1")) == 2
    assert ("peer_down", "n1") in results["events"]


def test_partition_then_heal_reconnects_and_messages_flow_again():
    sim = make_sim(4)
    results: dict = {}

    async def client(transport, host):
        async with Kernel(host.name, incarnation=host.incarnation) as kernel:
            node = Node(kernel, transport, rng=host.rng)
            async with trio.open_nursery() as nursery:
                await nursery.start(node.serve, None, ["n1"])
                await node.wait_connected(["n1"])
                with kernel.inbox() as me:
                    _, _, pid = await kernel.call(("n1", "echo"), "who", timeout=2)
                    me.monitor(pid)
                    results["before"] = True
                    down = await me.receive(timeout=30)
                    results["down"] = down.reason.kind
                    await node.wait_connected(["n1"])
                    _, _, pid2 = await kernel.call(("n1", "echo"), "after", timeout=5)
                    results["same_process"] = pid2 == pid  # n1 never crashed: the very same process
                nursery.cancel_scope.cancel()

    sim.add_host("n1", server_host(results))
    sim.add_host("n2", client)
    sim.at(2.0, lambda: sim.partition({"n1"}, {"n2"}))
    sim.at(8.0, sim.heal)
    sim.run(until=lambda: "same_process" in results, max_time=90)
    assert results["down"] == "noconnection"
    assert results["same_process"] is True


def test_same_seed_same_trace():
    def once():
        sim = make_sim(11)
        results: dict = {}

        async def client(transport, host):
            async with Kernel(host.name, incarnation=host.incarnation) as kernel:
                node = Node(kernel, transport, rng=host.rng)
                async with trio.open_nursery() as nursery:
                    await nursery.start(node.serve, None, ["n1"])
                    await node.wait_connected(["n1"])
                    for i in range(5):
                        await kernel.call(("n1", "echo"), i, timeout=2)
                    results["done"] = True
                    nursery.cancel_scope.cancel()

        sim.add_host("n1", server_host(results))
        sim.add_host("n2", client)
        return sim.run(until=lambda: "done" in results, max_time=30)

    assert once() == once()
