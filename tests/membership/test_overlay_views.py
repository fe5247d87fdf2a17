"""The overlay's views stay true to what neighbours and leavers said (sans-IO cores on ``SimNet``).

* A one-sided active link (a Disconnect lost or crossing a Connect on the wire) is undone at
  the first heartbeat, before the side that still counts the other as a neighbour could
  suspect it for the heartbeats it never gets (a false ``down`` of a live node).
* A member that announced it leaves is dropped from every view: no repair or shuffle dials a
  node that is shutting down (on real nodes: a refused or reset connection, logged).
"""

import random

from eco.plan.models import HyParViewTopology, PhiDetector
from eco.runtime.hyparview import Neighbor, Shuffle
from eco.runtime.membership import MemberEvent, MemberState
from eco.runtime.membership_sim import SimNet, overlay_problems
from eco.runtime.overlay import OverlayMembership

CONFIG = HyParViewTopology(active=2, passive=4)
PHI = PhiDetector(heartbeat=0.2, acceptable_pause=0.6)  # suspected ~1.4 s after the last heartbeat
NAMES = ["n1", "n2", "n3", "n4", "n5"]


def _cluster(seed: int) -> SimNet:
    net = SimNet(seed, latency=(0.0005, 0.005), fifo=True, detect_delay=0.1)
    for i, name in enumerate(NAMES):
        core = OverlayMembership(name, CONFIG, rng=random.Random(f"{seed}/{name}"), contacts=NAMES[:i],
                                 suspicion_timeout=0.6, link_grace=0.05, phi=PHI, split_probe=0.0, expected=NAMES)
        net.add(name, core)
        net.run_for(0.2)
    assert net.run_until_true(lambda: not overlay_problems(net), timeout=20) is not None, overlay_problems(net)
    return net


def test_a_neighbour_that_no_longer_counts_this_node_says_so_at_the_first_heartbeat():
    for seed in range(1, 7):
        net = _cluster(seed)
        a = "n1"
        b = min(net.nodes[a].view.active)
        doubts: list = []
        net.record_effects = lambda e: type(e) is MemberEvent and e.member.state != MemberState.UP
        # b drops a without a word reaching it (its Disconnect was lost, or crossed a Connect).
        core_b = net.nodes[b]
        dropped: list = []
        core_b.view._drop_active(a, dropped, notify=False)
        net._apply(b, core_b._route(net.now, dropped, "hv"))
        assert b in net.nodes[a].view.active and a not in core_b.view.active  # one-sided now
        net.run_for(0.5)  # a few heartbeats
        assert b not in net.nodes[a].view.active, seed  # told, long before phi would suspect b
        net.run_for(5)
        doubts = [(round(t, 2), who, e.member.name, e.member.state.label) for t, who, e in net.effects_seen]
        assert doubts == [], (seed, doubts)  # nobody ever suspected a live node
        assert not overlay_problems(net), (seed, overlay_problems(net))


def test_a_member_that_leaves_is_dropped_from_every_view_and_never_asked_again():
    for seed in range(1, 7):
        net = _cluster(seed)
        asked: list = []
        original = net._send

        def send(src, dst, msg):
            if dst == "n3" and type(msg) in (Neighbor, Shuffle):
                asked.append((round(net.now, 2), src, type(msg).__name__))
            original(src, dst, msg)

        net._send = send
        net.call("n3", "leave")
        net.crash(["n3"])  # and stops (what it announced went out first)
        net.run_for(0.5)  # the leave goes round
        others = [n for n in NAMES if n != "n3"]
        assert all(net.nodes[n].members.get("n3").state == MemberState.LEFT for n in others), seed
        for name in others:
            view = net.nodes[name].view
            assert "n3" not in view.active | view.passive | view._pending, (seed, name, view.active, view.passive)
        net.run_for(30)  # shuffles, repairs, anti-entropy
        assert asked == [], (seed, asked)
        assert not overlay_problems(net), (seed, overlay_problems(net))
