"""Member lists carried by the HyParView + Plumtree overlay (``OverlayMembership``) at scale.

Each node judges its neighbours by phi on heartbeats; a real driver also reports a connection
reset or a failed dial (``peer_down``).  ``SimNet`` models the reset for crashes
(``detect_delay`` after the crash, on every neighbour) and the failed dial for messages sent to
a dead node; for a partition and for false alarms under loss the tests below play the link
detector themselves (``peer_down``, ``_judge_links``), faster than phi would.
"""

import random

import pytest

from eco.plan.models import HyParViewTopology
from eco.runtime.broadcast import Gossip
from eco.runtime.hyparview import Join, Neighbor
from eco.runtime.membership import Member, MemberEvent, MemberState, Send
from eco.runtime.membership_sim import SimNet, build_overlay, overlay_problems
from eco.runtime.overlay import OverlayDigest, OverlayMembership

CONFIG = HyParViewTopology(active=5, passive=30, shuffle_interval=2.0)
# Building 1,000 nodes that each track 1,000 members takes about 70 s of CPU here (every new
# neighbour gets the whole member list), so those cases run with -m slow.
# 1,000 nodes with member lists: several minutes of CPU each (every new neighbour gets the whole
# member list), hence -m slow and a longer per-test timeout.
SIZES = [50, pytest.param(1000, marks=[pytest.mark.slow, pytest.mark.timeout(1200)])]


def _cluster(seed, n):
    net = SimNet(seed, fifo=True)
    names = build_overlay(net, n, CONFIG, join_spacing=0.02)
    return net, names


def _state(net, viewer, name):
    record = net.nodes[viewer].members.get(name)
    return None if record is None else record.state


def _all_up(net, names):
    """Every live node lists every name in ``names`` as up."""
    return all(_state(net, x, name) == MemberState.UP for x in net.alive() for name in names)


def _converge(net, names, timeout=30):
    t = net.run_until_true(lambda: _all_up(net, names), timeout=timeout)
    assert t is not None, f"member lists did not converge within {timeout}s: {_laggards(net, names)}"
    return t


def _laggards(net, names, limit=10):
    """A few (viewer, member, state) triples that are not up, for failure messages."""
    out = []
    for x in net.alive():
        for name in names:
            state = _state(net, x, name)
            if state != MemberState.UP:
                out.append((x, name, state))
                if len(out) >= limit:
                    return out
    return out


def _downs_of_live(net):
    """(viewer, member) pairs where a live node holds another live node as down or left."""
    live = net.alive()
    return [
        (x, m.name) for x in live for m in net.nodes[x].members
        if m.name in net._alive and not m.alive
    ]


def _record_judgements(net):
    """The set, filled as the run goes on, of every node a neighbour judged failed (``peer_down``
    on an active link: the test's detector, phi or a lost link)."""
    judged: set[str] = set()
    for core in net.nodes.values():
        def peer_down(now, peer, _core=core, _judge=core.peer_down):
            if peer in _core.view.active:
                judged.add(peer)
            return _judge(now, peer)
        core.peer_down = peer_down  # the core calls it through the instance too
    return judged


def _judge_links(net, fails):
    """Play the per-link failure detector: ``peer_down`` on each active link ``fails(a, b)`` accuses."""
    for a in net.alive():
        for b in sorted(net.nodes[a].view.active):
            if fails(a, b):
                net.call(a, "peer_down", b)


@pytest.mark.parametrize("n", SIZES)
def test_member_lists_converge_after_joins(seed, n):
    net, names = _cluster(seed, n)
    _converge(net, names)
    assert all(len(net.nodes[x].members) == n for x in names)  # nobody invented members
    assert overlay_problems(net) == []


@pytest.mark.parametrize("n", SIZES)
def test_crashes_are_detected_by_every_survivor(seed, n):
    net, names = _cluster(seed, n)
    _converge(net, names)
    crashed = random.Random(seed).sample(names, max(2, n // 100))
    net.record_effects = lambda e: isinstance(e, MemberEvent)
    crashed_at = net.now
    net.crash(crashed)
    # detect_delay (1 s) on the neighbours, then one broadcast over a tree the crash may have
    # cut (repaired by IHave/Graft within graft_timeout 0.5 s plus retries).
    bound = net.detect_delay + 3.0
    t = net.run_until_true(
        lambda: all(_state(net, x, c) == MemberState.DOWN for x in net.alive() for c in crashed),
        timeout=bound, step=0.05,
    )
    assert t is not None, f"not every survivor saw the crashes within {bound}s"
    print(f"{n} nodes, {len(crashed)} crashed: down everywhere after {t - crashed_at:.2f}s")
    net.run_for(10)  # later repairs must not accuse anyone alive either
    assert _downs_of_live(net) == []
    false = [(x, e.member.name) for _, x, e in net.effects_seen if not e.member.alive and e.member.name not in crashed]
    assert false == [], f"live nodes were marked down: {false[:10]}"
    assert overlay_problems(net) == []


@pytest.mark.parametrize("n", SIZES)
def test_no_permanent_false_positives_under_loss(seed, n):
    """10% of every message (overlay, broadcast and digest alike) is lost for 30 s.

    Loss alone seldom makes phi accuse anyone (it takes about four heartbeats lost in a row),
    so during the lossy period the link detector misfires too: each second about 1% of the
    live nodes wrongly declare one of their neighbours failed. Only neighbours judge: nobody
    is down unless one of its neighbours judged it (the test's misfires, or phi). The accused
    hear the rumour and refute it; once the loss stops, every node must be up everywhere
    again and the overlay must be whole.
    """
    net, names = _cluster(seed, n)
    _converge(net, names)
    judged = _record_judgements(net)
    rng = random.Random(seed)
    net.record_effects = lambda e: isinstance(e, MemberEvent)
    net.loss = 0.10
    accused: set[str] = set()
    for _ in range(30):
        net.run_for(1.0)
        for a in rng.sample(net.alive(), max(1, n // 100)):
            peer = net.nodes[a].view._pick(net.nodes[a].view.active)
            if peer is not None:
                accused.add(peer)
                net.call(a, "peer_down", peer)
    downs = {e.member.name for _, _, e in net.effects_seen if e.kind == "down"}
    assert downs, "the misfiring detector accused nobody: this test would prove nothing"
    assert downs <= judged
    net.loss = 0.0
    t0 = net.now
    _converge(net, names, timeout=30)
    print(f"{n} nodes: {len(downs)} falsely accused, all up again {net.now - t0:.1f}s after the loss stopped")
    refuted = [x for x in downs if net.nodes[x].members.me.incarnation > 0]
    assert refuted, "nobody refuted"
    net.run_for(2 * CONFIG.shuffle_interval)  # KeepAlives remove links one side dropped
    assert overlay_problems(net) == []


# 50 nodes: the default seed, and 1, 2, 3, which stayed two overlays for over 60 s after healing
# before members held as down were dialled (refresh requests). -m slow: 20 more seeds, and 200
# nodes (about 20 s of CPU each: every join is a broadcast to all, every new link a full digest).
HEAL_CASES = (
    [pytest.param(50, None, id="50-default"), (50, 1), (50, 2), (50, 3)]
    + [pytest.param(50, s, marks=pytest.mark.slow) for s in range(4, 24)]
    + [pytest.param(200, s, marks=pytest.mark.slow) for s in (1, 2)]
)
# After a heal each node holding members as down dials one of them with probability down/alive
# per reconnect period (10 s by default); digests, refutations and broadcasts then take seconds.
HEAL_BOUND = 30.0


@pytest.mark.parametrize("n, seed", HEAL_CASES, indirect=["seed"])
def test_partition_heals(seed, n):
    net, names = _cluster(seed, n)
    _converge(net, names)
    shuffled = random.Random(seed).sample(names, n)
    left, right = set(shuffled[: n // 2]), set(shuffled[n // 2:])
    net.record_effects = lambda e: isinstance(e, MemberEvent)
    net.partition(left, right)
    across = lambda a, b: (a in left) != (b in left)  # noqa: E731
    for _ in range(20):  # 20 s apart; each second the link detector drops links across the cut
        net.run_for(net.detect_delay)
        _judge_links(net, across)
    # Each side judged its neighbours across the cut (only neighbours judge; the rest of the
    # other side is not accused, since nobody there was watching it).
    accused = {e.member.name for _, _, e in net.effects_seen if e.kind == "down"}
    assert accused & left and accused & right
    assert all(not across(a, b) for a in net.alive() for b in net.nodes[a].view.active)
    net.heal()
    t0 = net.now
    _converge(net, names, timeout=HEAL_BOUND)
    print(f"{n} nodes: {len(accused)} accused across the cut, all up {net.now - t0:.1f}s after healing")
    net.run_for(2 * CONFIG.shuffle_interval)  # refutations in flight land; evicted links are repaired
    for name in accused:  # the accused outbid the rumour, and everyone holds the new record
        own = net.nodes[name].members.me.incarnation
        assert own > 0
        assert {net.nodes[x].members.get(name).incarnation for x in names} == {own}
    assert _all_up(net, names)
    assert overlay_problems(net) == []
    assert any(across(a, b) for a in net.alive() for b in net.nodes[a].view.active)


def test_a_member_held_down_is_asked_to_be_a_neighbour():
    """The reconnect step: with probability down/alive per period, a refresh request to a down member."""
    node = OverlayMembership("a", CONFIG, rng=random.Random(3), contacts=["b"], reconnect_interval=5.0)
    node.start(0.0)
    node.receive(0.0, "b", OverlayDigest((Member("b"), Member("c", 0, MemberState.DOWN))))
    asked = []
    for i in range(1, 41):  # 1 member down, 2 alive (a, b): about every other period dials c
        sends = [e for e in node.timer(5.0 * i, ("reconnect",)) if type(e) is Send]
        asked += [e.to for e in sends if e.msg == Neighbor(high=False, refresh=True)]
        node.timer(5.0 * i + 2.5, ("hv", ("neighbor_timeout", "c")))  # unanswered: give up on it
    assert set(asked) == {"c"} and 10 <= len(asked) <= 30
    node.receive(300.0, "c", OverlayDigest((Member("c", 1),)))  # c refuted: nobody is down now
    assert not [e for e in node.timer(305.0, ("reconnect",)) if type(e) is Send]


def _gossip_sent(effects):
    return [e.msg.payload for e in effects if type(e) is Send and type(e.msg) is Gossip]


def test_only_the_accuser_broadcasts_the_down_verdict():
    """Every holder of a suspicion times it out; if each broadcast the verdict, one crash would
    cost n floods of the cluster instead of one."""
    accuser = OverlayMembership("a", CONFIG, rng=random.Random(1), contacts=["c"])
    accuser.start(0.0)
    accuser.receive(0.0, "d", Join())
    accuser.receive(0.0, "c", OverlayDigest((Member("c"), Member("d"))))
    assert accuser.neighbors() == {"c", "d"}
    suspected = _gossip_sent(accuser.peer_down(1.0, "c"))
    assert suspected == [Member("c", 0, MemberState.SUSPECT)]
    assert _gossip_sent(accuser.timer(2.0, ("suspicion", "c", 0))) == [Member("c", 0, MemberState.DOWN)]

    bystander = OverlayMembership("b", CONFIG, rng=random.Random(2))
    bystander.start(0.0)
    bystander.receive(0.0, "d", Join())
    bystander.receive(0.0, "d", OverlayDigest((Member("c"), Member("d"))))
    bystander.receive(1.0, "d", Gossip(("a", 1), Member("c", 0, MemberState.SUSPECT)))
    assert bystander.members.get("c").state == MemberState.SUSPECT
    assert _gossip_sent(bystander.timer(2.0, ("suspicion", "c", 0))) == []
    assert bystander.members.get("c").state == MemberState.DOWN  # it still reaches the verdict itself
