"""HyParView + Plumtree (``OverlayMembership``) in simulation: view invariants, churn, mass failure,
broadcast, membership, and the refresh requests that let full views mix."""

import random

import pytest

from eco.plan.models import HyParViewTopology
from eco.runtime.broadcast import Deliver, Gossip, PlumtreeNode, Prune
from eco.runtime.hyparview import Disconnect, HyParViewNode, Join, Neighbor, NeighborReply
from eco.runtime.membership import MemberState, Send
from eco.runtime.membership_sim import SimNet, add_overlay_node, build_overlay, delivered, overlay_problems

CONFIG = HyParViewTopology(active=5, passive=30, shuffle_interval=2.0)


def _overlay(seed, n, *, track_members=False):
    net = SimNet(seed, fifo=True)
    net.record_effects = lambda e: type(e) is Deliver
    names = build_overlay(net, n, CONFIG, join_spacing=0.02, track_members=track_members)
    return net, names


def _broadcast_reaches_all(net):
    src = net.alive()[0]
    net.call(src, "broadcast", "ping-all")
    msg_id = (src, net.nodes[src].tree._seq)
    net.run_for(10)
    return set(delivered(net, msg_id)) == set(net.alive())


@pytest.mark.parametrize("n", [5, 50, 1000])
def test_views_hold_invariants_after_joins(seed, n):
    net, names = _overlay(seed, n)
    net.run_for(20)
    assert overlay_problems(net) == []
    sizes = [len(net.nodes[x].view.active) for x in names]
    if n > CONFIG.active:
        # The overlay is not a thin tree: most nodes have several neighbours.
        assert sum(sizes) / n >= CONFIG.active - 1.5
    assert _broadcast_reaches_all(net)


@pytest.mark.parametrize("n", [50, 1000])
def test_views_hold_invariants_after_churn(seed, n):
    net, names = _overlay(seed, n)
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
            add_overlay_node(net, name, CONFIG, contacts=[rng.choice(net.alive())], track_members=False)
        net.run_for(5)
    net.run_for(20)  # repair and shuffle rounds
    assert overlay_problems(net) == []
    assert _broadcast_reaches_all(net)


@pytest.mark.parametrize("n, fraction", [(50, 0.5), (50, 0.8), (1000, 0.5), (1000, 0.8)])
def test_broadcast_reaches_every_survivor_after_mass_failure(seed, n, fraction):
    net, names = _overlay(seed, n)
    net.run_for(10)
    net.crash(random.Random(seed).sample(names, int(n * fraction)))
    net.run_for(30)  # failure detection, neighbour repair from passive views, shuffles
    assert overlay_problems(net) == []
    assert _broadcast_reaches_all(net)


def test_plumtree_prunes_to_a_tree(seed):
    net, names = _overlay(seed, 200)
    net.run_for(10)
    for _ in range(3):  # the first broadcasts prune redundant links...
        assert _broadcast_reaches_all(net)
    before = net.sent_by_type["Gossip"]
    assert _broadcast_reaches_all(net)
    # ...after which a broadcast costs one full copy per node, not one per link.
    # (Without pruning it would be about active/2 = 2.5 copies per node; links that changed
    # since the last broadcast may still carry a few duplicates.)
    assert net.sent_by_type["Gossip"] - before <= 1.1 * (len(net.alive()) - 1)


@pytest.mark.parametrize("n", [5, 50, 100])
def test_membership_converges_after_joins(seed, n):
    net, names = _overlay(seed, n, track_members=True)

    def converged():
        return all(
            sorted(m.name for m in net.nodes[x].members if m.state == MemberState.UP) == names for x in names
        )

    assert net.run_until_true(converged, timeout=30) is not None


def test_membership_learns_crash_and_leave(seed):
    net, names = _overlay(seed, 50, track_members=True)
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


def test_refresh_request_is_accepted_by_a_full_view_once_per_shuffle_period():
    config = HyParViewTopology(active=2, passive=3, shuffle_interval=2.0)
    node = HyParViewNode("a", config, rng=random.Random(1))
    node.receive(0.0, "b", Join())
    node.receive(0.0, "c", Join())
    sends = _sends(node.receive(1.0, "d", Neighbor(high=False, refresh=True)))
    (evicted,) = [to for to, m in sends if isinstance(m, Disconnect)]
    assert ("d", NeighborReply(True)) in sends
    assert len(node.active) == 2 and "d" in node.active and evicted in node.passive
    # A second refresh within the same shuffle period is refused: evictions stay bounded.
    assert _sends(node.receive(2.5, "e", Neighbor(high=False, refresh=True))) == [("e", NeighborReply(False))]
    sends = _sends(node.receive(3.0, "e", Neighbor(high=False, refresh=True)))
    assert ("e", NeighborReply(True)) in sends and "e" in node.active and len(node.active) == 2


def test_refresh_sender_takes_the_peer_when_accepted_keeping_its_view_bounded():
    config = HyParViewTopology(active=2, passive=3)
    node = HyParViewNode("a", config, rng=random.Random(1))
    node.receive(0.0, "b", Join())
    node.receive(0.0, "c", Join())
    assert _sends(node.refresh(0.0, "x")) == [("x", Neighbor(high=False, refresh=True))]
    assert node.refresh(0.0, "x") == [] and node.refresh(0.0, "b") == []  # pending / already a neighbour
    sends = _sends(node.receive(0.1, "x", NeighborReply(True)))
    (evicted,) = [to for to, m in sends if isinstance(m, Disconnect)]
    assert "x" in node.active and len(node.active) == 2 and evicted in node.passive



def _two_overlays(seed, **options):
    """Two separately built overlays of 30 (full views, nobody down: what a split during joins
    leaves), each of which has delivered a broadcast of its own."""
    net = SimNet(seed, fifo=True)
    net.record_effects = lambda e: type(e) is Deliver
    left = [f"a{i:03d}" for i in range(30)]
    right = [f"b{i:03d}" for i in range(30)]
    rng = random.Random(seed)
    for group in (left, right):
        for i, name in enumerate(group):
            add_overlay_node(net, name, CONFIG, contacts=[group[rng.randrange(i)]] if i else [],
                             track_members=False, **options)
            net.run_for(0.02)
    net.run_for(5)
    net.call(left[0], "broadcast", "left")
    net.call(right[0], "broadcast", "right")
    net.run_for(15)
    assert any("not connected" in p for p in overlay_problems(net))
    for name in right[:5]:  # what a few nodes remember of the other part
        net.nodes[name].view.passive.update(rng.sample(left, 3))
    return net


def test_split_probe_joins_two_overlays_with_full_views(seed):
    """Split probes (refresh requests carrying a broadcast seen long ago) join the two parts."""
    net = _two_overlays(seed)
    t = net.run_until_true(lambda: overlay_problems(net) == [], timeout=600, step=1.0)
    assert t is not None, overlay_problems(net)
    assert _broadcast_reaches_all(net)


def test_no_split_probe_leaves_two_overlays_apart(seed):
    """The control for the test above: without the probe (and nobody down) nothing joins them."""
    net = _two_overlays(seed, split_probe=0.0)
    net.run_for(300)
    assert any("not connected" in p for p in overlay_problems(net))


def test_split_probes_never_rewire_a_connected_overlay(seed):
    """In one busy overlay every probe is refused (the receiver delivered the evidence too),
    before it reaches HyParView: no neighbour is evicted for it."""
    net = SimNet(seed, fifo=True)
    names = build_overlay(net, 60, CONFIG, join_spacing=0.02, track_members=False, split_probe=1.0)
    net.run_for(10)
    net.call(names[0], "broadcast", "one")
    net.run_for(10)
    sent_before = net.sent_by_type["NeighborReply"]
    refreshes = []
    for x in names:
        core = net.nodes[x]
        original = core.view.receive

        def spy(now, src, msg, _original=original):
            if type(msg) is Neighbor and msg.refresh:
                refreshes.append(msg)
            return _original(now, src, msg)
        core.view.receive = spy
    for _ in range(6):  # three probe rounds of every node (split_probe=1.0), while broadcasts flow
        net.call(names[0], "broadcast", "more")
        net.run_for(5)
    assert net.sent_by_type["NeighborReply"] - sent_before >= len(names)  # probes were sent and answered
    assert refreshes == []  # ...and refused before reaching HyParView
    assert overlay_problems(net) == []
