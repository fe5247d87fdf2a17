"""HyParView + Plumtree in simulation: view invariants, churn, mass failure, broadcast, membership."""

import random

import pytest

from eco.plan.models import HyParViewTopology
from eco.runtime.broadcast import Gossip, PlumtreeNode, Prune
from eco.runtime.hyparview import Disconnect, HyParViewNode, Join, Neighbor, NeighborReply
from eco.runtime.membership import MemberState, Send
from eco.runtime.membership_sim import OverlayStack, SimNet, build_overlay, overlay_problems

CONFIG = HyParViewTopology(active=5, passive=30, shuffle_interval=2.0)


def _overlay(seed, n, *, track_members=False):
    net = SimNet(seed, fifo=True)
    delivered: dict = {}
    names = build_overlay(
        net, n, CONFIG, join_spacing=0.02, track_members=track_members,
        on_deliver=lambda node, d: delivered.setdefault(d.id, set()).add(node),
    )
    return net, names, delivered


def _broadcast_reaches_all(net, delivered):
    src = net.alive()[0]
    net.call(src, "broadcast", "ping-all")
    msg_id = (src, net.nodes[src].tree._seq)
    net.run_for(10)
    return delivered.get(msg_id, set()) == set(net.alive())


@pytest.mark.parametrize("n", [5, 50, 1000])
def test_views_hold_invariants_after_joins(seed, n):
    net, names, delivered = _overlay(seed, n)
    net.run_for(20)
    assert overlay_problems(net) == []
    sizes = [len(net.nodes[x].view.active) for x in names]
    if n > CONFIG.active:
        # The overlay is not a thin tree: most nodes have several neighbours.
        assert sum(sizes) / n >= CONFIG.active - 1.5
    assert _broadcast_reaches_all(net, delivered)


@pytest.mark.parametrize("n", [50, 1000])
def test_views_hold_invariants_after_churn(seed, n):
    net, names, delivered = _overlay(seed, n)
    net.run_for(10)
    rng = random.Random(seed)
    spawned = 0
    for _ in range(5):  # rounds of: a tenth crashes, a tenth leaves, new nodes join
        live = net.alive()
        crashed = rng.sample(live, n // 10)
        net.crash(crashed)
        for name in rng.sample(sorted(set(live) - set(crashed)), n // 20):
            net.call(name, "leave")
            net.crash([name])  # a node that left is gone
        for _ in range(n // 10):
            spawned += 1
            name = f"new{spawned:05d}"
            core = OverlayStack(
                name, CONFIG, rng=random.Random(f"{seed}/{name}"), contacts=[rng.choice(net.alive())],
                track_members=False, on_deliver=lambda node, d: delivered.setdefault(d.id, set()).add(node),
            )
            net.add(name, core)
        net.run_for(5)
    net.run_for(20)  # repair and shuffle rounds
    assert overlay_problems(net) == []
    assert _broadcast_reaches_all(net, delivered)


@pytest.mark.parametrize("n, fraction", [(50, 0.5), (50, 0.8), (1000, 0.5), (1000, 0.8)])
def test_broadcast_reaches_every_survivor_after_mass_failure(seed, n, fraction):
    net, names, delivered = _overlay(seed, n)
    net.run_for(10)
    net.crash(random.Random(seed).sample(names, int(n * fraction)))
    net.run_for(30)  # failure detection, neighbour repair from passive views, shuffles
    assert overlay_problems(net) == []
    assert _broadcast_reaches_all(net, delivered)


def test_plumtree_prunes_to_a_tree(seed):
    net, names, delivered = _overlay(seed, 200)
    net.run_for(10)
    for _ in range(3):  # the first broadcasts prune redundant links...
        assert _broadcast_reaches_all(net, delivered)
    before = net.sent_by_type["Gossip"]
    assert _broadcast_reaches_all(net, delivered)
    # ...after which a broadcast costs one full copy per node, not one per link.
    # (Without pruning it would be about active/2 = 2.5 copies per node; links that changed
    # since the last broadcast may still carry a few duplicates.)
    assert net.sent_by_type["Gossip"] - before <= 1.1 * (len(net.alive()) - 1)


@pytest.mark.parametrize("n", [5, 50, 100])
def test_membership_converges_after_joins(seed, n):
    net, names, _ = _overlay(seed, n, track_members=True)

    def converged():
        return all(
            sorted(m.name for m in net.nodes[x].members if m.state == MemberState.UP) == names for x in names
        )

    assert net.run_until_true(converged, timeout=30) is not None


def test_membership_learns_crash_and_leave(seed):
    net, names, _ = _overlay(seed, 50, track_members=True)
    net.run_for(10)
    crashed, leaver = names[7], names[9]
    net.crash([crashed])
    net.call(leaver, "leave")
    net.crash([leaver])

    def known():
        return all(
            net.nodes[x].members.get(crashed).state == MemberState.DOWN
            and net.nodes[x].members.get(leaver).state == MemberState.LEFT
            for x in net.alive()
        )

    assert net.run_until_true(known, timeout=10) is not None


def _sends(effects):
    return [(e.to, e.msg) for e in effects if isinstance(e, Send)]


def test_join_request_is_forwarded_on_a_random_walk():
    node = HyParViewNode("a", CONFIG, rng=random.Random(1))
    for peer in "bcd":
        node.receive(0.0, peer, Join())
    sends = _sends(node.receive(0.0, "e", Join()))
    assert node.active == {"b", "c", "d", "e"}
    assert sorted(to for to, _ in sends) == ["b", "c", "d"]
    assert all(m.ttl == CONFIG.active_walk_length and m.node == "e" for _, m in sends)


def test_full_active_view_evicts_to_passive_and_refuses_low_priority():
    node = HyParViewNode("a", HyParViewTopology(active=2, passive=3), rng=random.Random(1))
    node.receive(0.0, "b", Join())
    node.receive(0.0, "c", Join())
    assert _sends(node.receive(0.0, "d", Neighbor(high=False))) == [("d", NeighborReply(False))]
    sends = _sends(node.receive(0.0, "d", Neighbor(high=True)))
    (evicted,) = [to for to, m in sends if isinstance(m, Disconnect)]
    assert evicted in "bc" and evicted in node.passive and node.active == {"d"} | ({"b", "c"} - {evicted})


def test_plumtree_duplicate_moves_sender_to_lazy():
    node = PlumtreeNode("a")
    node.neighbor_up(0.0, "b")
    node.neighbor_up(0.0, "c")
    node.receive(0.0, "b", Gossip(("z", 1), "x"))
    assert _sends(node.receive(0.0, "c", Gossip(("z", 1), "x"))) == [("c", Prune())]
    assert node.lazy == {"c"} and node.eager == {"b"}
