"""Log replication scenarios (after the MIT 6.824 / etcd test suites), safety checked at every event."""

import random

from raft_seeds import seeded

from eco.runtime.raft import RaftConfig
from eco.runtime.raft_sim import NetworkConfig, SimCluster

ELECTION = 100


@seeded(8)
def test_basic_agreement(seed):
    c = SimCluster(3, seed)
    c.wait_leader()
    first = c.one(b"v0")
    for i in range(1, 6):
        assert c.one(b"v%d" % i) == first + i  # consecutive indexes, no spurious entries


@seeded(8)
def test_agreement_despite_a_failed_follower(seed):
    c = SimCluster(3, seed)
    leader = c.wait_leader()
    c.one(b"a")
    follower = next(i for i in c.ids if i != leader)
    c.disconnect(follower)
    c.one(b"b", expected=2)
    c.run(2 * ELECTION)
    c.one(b"c", expected=2)
    c.connect(follower)
    c.one(b"d", expected=3)
    assert c.applied_values(follower)[-4:] == [b"a", b"b", b"c", b"d"]


@seeded(8)
def test_no_agreement_without_a_majority(seed):
    c = SimCluster(5, seed)
    leader = c.wait_leader()
    c.one(b"a")
    followers = [i for i in c.ids if i != leader][:3]
    for f in followers:
        c.disconnect(f)
    index = c.raft(leader).propose(b"lost?")
    c._drain(c.nodes[leader])
    c.run(5 * ELECTION)
    assert c.n_committed(index)[0] == 0
    for f in followers:
        c.connect(f)
    c.one(b"b")  # the group recovers; the entry above may or may not survive


@seeded(8)
def test_concurrent_proposals(seed):
    c = SimCluster(3, seed)
    leader = c.wait_leader()
    indexes = [c.raft(leader).propose(b"p%d" % i) for i in range(20)]
    c._drain(c.nodes[leader])
    assert sorted(indexes) == list(range(indexes[0], indexes[0] + 20))
    assert c.run_until(lambda: all(c.n_committed(i)[0] == 3 for i in indexes), 10 * ELECTION)
    assert [c.n_committed(i)[1] for i in indexes] == [b"p%d" % i for i in range(20)]


@seeded(8)
def test_rejoin_of_partitioned_leader_discards_its_stale_entries(seed):
    c = SimCluster(3, seed)
    old = c.wait_leader()
    c.one(b"101")
    c.disconnect(old)
    stale = [c.raft(old).propose(b"stale%d" % i) for i in range(3)]
    c._drain(c.nodes[old])
    c.one(b"103", expected=2)
    new = c.stable_leader()
    c.disconnect(new)
    c.connect(old)
    c.one(b"104", expected=2)
    c.connect(new)
    c.one(b"105")
    for i in c.ids:
        assert not any(v.startswith(b"stale") for v in c.applied_values(i))
        assert all(c.raft(i).entries(s, s + 1)[0].data[:5] != b"stale" for s in stale)


def _backup(seed):
    """5 nodes; an isolated minority leader piles up 50 uncommitted entries in one term while the
    majority commits 50 others; then the minority must catch up over the conflicts."""
    c = SimCluster(5, seed, config=RaftConfig(election_ticks=10, heartbeat_ticks=1, max_entries_per_append=16))
    leader = c.wait_leader()
    c.one(b"start")
    others = [i for i in c.ids if i != leader]
    c.partition([leader, others[0]], others[1:])
    for i in range(50):
        c.raft(leader).propose(b"doomed%d" % i)
    c._drain(c.nodes[leader])
    c.run(ELECTION)
    for i in range(50):
        c.one(b"win%d" % i, expected=3)
    c.heal()
    before = c.append_rejections
    c.one(b"end")
    return c, c.append_rejections - before


@seeded(5)
def test_fast_backup_over_many_conflicting_entries(seed):
    c, rejections = _backup(seed)
    # Conflict hints skip a whole term per round trip: a handful of rejections, not ~50 per node.
    assert rejections <= 12, rejections
    assert c.applied_values(c.ids[0])[-1] == b"end"


def test_append_message_count_for_agreement_is_bounded():
    c = SimCluster(3, 2)
    c.wait_leader()
    c.one(b"warm-up")
    c.run(3 * c.tick_interval)
    before = c.sent["AppendEntries"]
    hb_before = c.sent["Heartbeat"]
    for i in range(10):
        c.one(b"x%d" % i)
    appends = c.sent["AppendEntries"] - before
    # per command: one append per follower, plus one commit notification per follower
    assert appends <= 10 * 2 * 2 + 4, appends
    assert c.sent["Heartbeat"] - hb_before > 0


@seeded(8)
def test_unreliable_network(seed):
    net = NetworkConfig(min_delay=1, max_delay=30, drop_rate=0.1, duplicate_rate=0.05)
    c = SimCluster(5, seed, network=net)
    c.wait_leader(timeout=50 * ELECTION)
    for i in range(15):
        c.one(b"u%d" % i, timeout=50 * ELECTION)
    c.run(10 * ELECTION)
    c.net = NetworkConfig()
    assert c.run_until(c.converged, 20 * ELECTION)


@seeded(8)
def test_churn_with_crashes_restarts_and_partitions(seed):
    rng = random.Random(seed)
    net = NetworkConfig(min_delay=1, max_delay=12, drop_rate=0.03, duplicate_rate=0.02)
    c = SimCluster(5, seed, network=net, compact_threshold=20)
    proposed = 0
    for _ in range(25):
        leader = c.leader()
        if leader is not None:
            for _ in range(rng.randint(0, 4)):
                c.raft(leader).propose(b"churn%d" % proposed)
                proposed += 1
            c._drain(c.nodes[leader])
        c.run(rng.randint(10, 2 * ELECTION))
        r = rng.random()
        if r < 0.25:
            c.crash(rng.choice(c.ids))
        elif r < 0.45:
            for i in c.ids:
                c.restart(i)
        elif r < 0.65:
            ids = rng.sample(c.ids, len(c.ids))
            cut = rng.randint(1, 4)
            c.partition(ids[:cut], ids[cut:])
        else:
            c.heal()
    c.heal()
    c.net = NetworkConfig()
    for i in c.ids:
        c.restart(i)
    c.one(b"final", timeout=30 * ELECTION)
    assert c.run_until(c.converged, 20 * ELECTION)
    logs = {tuple(c.applied_values(i)) for i in c.ids}
    assert len(logs) == 1


@seeded(200, slow=True)
def test_churn_many_seeds(seed):
    test_churn_with_crashes_restarts_and_partitions.__wrapped__(seed=seed)
