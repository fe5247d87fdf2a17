"""Expected members (``OverlayMembership(expected=...)``): a start-up split does not hide a declared node.

Nodes started together (``ecoc run`` on ``topology hyparview``) can split the overlay while they
join: with active views of 2, a part whose views have free slots asks full views with low
priority, which they refuse, and a node that joined in the other part is never heard of here.
The home node then waits for it forever.  The tests build such a split directly (two overlays
that never met, split probes off) and check that the declared names join them.
"""

import random

from eco.plan.models import HyParViewTopology, PhiDetector
from eco.runtime.hyparview import Neighbor
from eco.runtime.membership import MemberState
from eco.runtime.membership_sim import SimNet, overlay_problems
from eco.runtime.overlay import OverlayMembership

CONFIG = HyParViewTopology(active=2, passive=4)
PHI = PhiDetector(heartbeat=0.2, acceptable_pause=0.6)
NAMES = ["n1", "n2", "n3", "n4", "n5"]


def _add(net, name, contacts, expected, **options):
    core = OverlayMembership(name, CONFIG, rng=random.Random(f"{net.seed}/{name}"), contacts=contacts,
                             suspicion_timeout=0.6, link_grace=0.05, phi=PHI, split_probe=0.0,
                             expected=expected, **options)
    net.add(name, core)
    return core


def _split_cluster(seed, expected):
    """n1-n2 and n3-n4-n5: two overlays that never met (what a burst of joins can leave behind)."""
    net = SimNet(seed, latency=(0.0005, 0.005), fifo=True, detect_delay=0.1)
    for name, contacts in (("n1", []), ("n2", ["n1"]), ("n3", []), ("n4", ["n3"]), ("n5", ["n3", "n4"])):
        _add(net, name, contacts, expected)
        net.run_for(0.05)
    return net


def _knows_all(net, viewer):
    members = net.nodes[viewer].members
    return all((m := members.get(name)) is not None and m.state == MemberState.UP for name in NAMES)


def _refresh_requests(net):
    """(time, src, dst) of every refresh request sent from now on."""
    sent = []
    original = net._send

    def send(src, dst, msg):
        if type(msg) is Neighbor and msg.refresh:
            sent.append((net.now, src, dst))
        original(src, dst, msg)

    net._send = send
    return sent


def test_without_expected_names_the_parts_never_hear_of_each_other():
    # The failure the names fix: nothing else joins the parts (split probes are off here).
    net = _split_cluster(1, expected=())
    net.run_for(60)
    assert not _knows_all(net, "n1")
    assert any("not connected" in p for p in overlay_problems(net))


def test_declared_names_join_a_start_up_split_within_seconds():
    for seed in range(1, 9):
        net = _split_cluster(seed, expected=NAMES)
        t = net.run_until_true(lambda: all(_knows_all(net, x) for x in NAMES), timeout=10)
        assert t is not None and t < 5, (seed, {x: sorted(m.name for m in net.nodes[x].members) for x in NAMES})
        net.run_for(10)
        assert not [p for p in overlay_problems(net) if "not connected" in p], seed


def test_a_node_that_knows_every_declared_name_sends_no_request_for_them():
    net = SimNet(3, latency=(0.0005, 0.005), fifo=True)
    for i, name in enumerate(NAMES):
        _add(net, name, NAMES[:i], NAMES)
        net.run_for(0.2)  # joins one at a time: one overlay, every announcement goes round
    assert net.run_until_true(lambda: all(_knows_all(net, x) for x in NAMES), timeout=1) is not None
    sent = _refresh_requests(net)
    net.run_for(60)
    assert sent == []


def test_a_declared_node_that_never_starts_is_asked_less_and_less_often():
    net = SimNet(4, latency=(0.0005, 0.005), fifo=True)
    declared = [*NAMES, "n9"]  # n9 is declared but never runs (a dial there fails)
    sent = _refresh_requests(net)
    for i, name in enumerate(NAMES):
        _add(net, name, NAMES[:i], declared, reconnect_interval=10.0)
        net.run_for(0.05)
    net.run_for(120)
    to_n9 = [(round(t, 1), src) for t, src, dst in sent if dst == "n9"]
    assert to_n9, "nobody looked for the declared node"
    per_node = {name: [t for t, src in to_n9 if src == name] for name in NAMES}
    for name, times in per_node.items():
        # Doubling from ~2 s up to the 10 s period, then at most one request per period.
        assert len(times) <= 2 + 120 / 10, (name, times)
        late = [t for t in times if t >= 60]
        assert len(late) <= 6, (name, times)
    assert all(_knows_all(net, x) for x in NAMES)
    assert not [p for p in overlay_problems(net) if "not connected" in p]
