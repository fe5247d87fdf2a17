"""The membership driver's codec, subscriptions, and its link to the kernel (monitors on `down`)."""

from __future__ import annotations

import logging

import pytest
import trio

from eco.runtime import hyparview, mesh, swim
from eco.runtime.broadcast import Gossip, IHave
from eco.runtime.cluster import CodecError, MemberSubscription, _Subscribers, decode_message, encode_message
from eco.runtime.membership import Member, MemberEvent, MemberState
from eco.runtime.node import node_transport_options
from eco.runtime.signals import Down

from cluster_harness import SimCluster

A = Member("a", 3, MemberState.SUSPECT, {"zone": "z1"})
B = Member("b", 7, MemberState.LEFT)


@pytest.mark.parametrize("msg", [
    mesh.Heartbeat(), mesh.Rumor((A, B)), mesh.Digest((A,), reply=True),
    swim.Ping(4, (A,)), swim.Ack(4), swim.PingReq(5, "c", (B,)), swim.Gossip((B,)), swim.Sync((A, B), True),
    hyparview.Join(), hyparview.ForwardJoin("n", 3), hyparview.Shuffle("o", ("x", "y"), 2),
    hyparview.ShuffleReply(("x",), ("y",)), hyparview.Disconnect(leaving=True),
    Gossip(("a", 1), A, 2), IHave(("a", 1), 1),
])
def test_every_core_message_survives_the_wire_codec(msg):
    import msgpack

    from eco.runtime.node_codec import ext_hook, packer_default

    wire = msgpack.packb(encode_message(msg, {"a": "10.0.0.1:7101"}), default=packer_default)
    addresses: dict[str, str] = {}
    back = decode_message(msgpack.unpackb(wire, ext_hook=ext_hook), addresses)
    assert back == msg and type(back) is type(msg)
    records = getattr(msg, "members", None) or getattr(msg, "updates", None) or (getattr(msg, "payload", None),)
    if A in records:
        assert addresses == {"a": "10.0.0.1:7101"}  # member records carry their node's address


@pytest.mark.parametrize("raw", [None, [], [7], ["nope.Msg"], ["swim.Ping"], ["swim.Ping", 1, 2, 3],
                                 ["mesh.Rumor", [["@m", 5, "x", 0, {}, None]]]])
def test_malformed_payloads_are_codec_errors(raw):
    with pytest.raises(CodecError):
        decode_message(raw)


def test_labels_survive_and_updates_without_labels_keep_the_known_ones():
    back = decode_message(encode_message(mesh.Rumor((A,))))
    assert back.members[0].labels == {"zone": "z1"}


async def test_subscription_is_an_async_iterator_and_unsubscribes_on_close():
    subs = _Subscribers()
    calls: list[MemberEvent] = []
    unsubscribe = subs.subscribe(calls.append)
    with subs.subscribe() as events:
        assert isinstance(events, MemberSubscription)
        subs.notify(MemberEvent(A, MemberState.UP))
        got = await events.receive()
        assert got.member is A and got.kind == "suspect" and got.previous == MemberState.UP
    subs.notify(MemberEvent(B))
    unsubscribe()
    subs.notify(MemberEvent(A))
    assert [e.member.name for e in calls] == ["a", "b"]
    assert len(subs._callbacks) == 0


def test_a_detector_verdict_fires_monitors_while_the_connection_still_looks_open():
    """Keepalive would need 30 s to drop the cut connections; phi declares n03 down in about 2 s,
    and that alone fires the monitor with noconnection."""
    logging.getLogger("eco.transport").setLevel(logging.ERROR)
    seen: dict = {}
    registered = trio.Event()  # (the simulated hosts share one trio run)

    async def setup(host, kernel, node, nursery):
        if host.name == "n03":
            async def sleeper(ctx):
                ctx.register("sleeper")
                await trio.sleep_forever()
            await kernel.spawn(sleeper)
            registered.set()
        elif host.name == "n01":
            async def watch():
                await node.wait_connected(["n03"])
                with kernel.inbox() as me:
                    await registered.wait()
                    me.monitor(("n03", "sleeper"))
                    seen["monitoring_at"] = trio.current_time()
                    down = await me.receive()
                    seen["down"] = (type(down), down.reason.kind, trio.current_time(), node.is_connected("n03"))
                    host.record("monitor fired")
            nursery.start_soon(watch)

    c = SimCluster(3, seed=5, transport={"keepalive_interval": 10.0, "keepalive_misses": 3, **node_transport_options()},
                   setup=setup)
    c.sim.at(3.0, lambda: c.sim.partition(["n01", "n02"], ["n03"]))
    c.sim.run(until=lambda: "down" in seen, max_time=20)
    kind, reason, at, still_connected = seen["down"]
    assert kind is Down and reason == "noconnection"
    assert still_connected, ("the monitor must fire from the membership verdict, not from a connection loss", [(e["event"], e.get("node")) for e in c.members["n01"].events], seen)
    assert at - 3.0 < 4.0
    assert c.state("n01", "n03")[0] == "down"
