"""Snapshots (InstallSnapshot, restart from a snapshot, crash during install) and membership changes."""

from raft_seeds import seeded

from eco.runtime.raft import NotLeader, Rejected, Role
from eco.runtime.raft_sim import NetworkConfig, SimCluster

ELECTION = 100


@seeded(6)
def test_lagging_follower_catches_up_by_snapshot(seed):
    c = SimCluster(3, seed, compact_threshold=10)
    leader = c.wait_leader()
    lagger = next(i for i in c.ids if i != leader)
    c.disconnect(lagger)
    for i in range(40):
        c.one(b"s%d" % i, expected=2)
    assert c.raft(leader).first_index > c.raft(lagger).last_index  # its next entry is compacted away
    c.connect(lagger)
    c.one(b"after")
    assert c.sent["InstallSnapshot"] >= 1
    assert c.applied_values(lagger) == c.applied_values(leader)


@seeded(6)
def test_restart_from_snapshot_with_sqlite(seed, tmp_path):
    c = SimCluster(3, seed, compact_threshold=8, storage="sqlite", data_dir=tmp_path)
    c.wait_leader()
    for i in range(30):
        c.one(b"r%d" % i)
    expected = c.applied_values(c.ids[0])
    for i in c.ids:
        assert c.raft(i).snapshot is not None
        c.crash(i)
    for i in c.ids:
        c.restart(i)
    c.one(b"more")
    for i in c.ids:
        assert c.applied_values(i) == expected + [b"more"]
    c.close()


@seeded(6)
def test_crash_during_snapshot_install(seed, tmp_path):
    c = SimCluster(3, seed, compact_threshold=10, storage="sqlite", data_dir=tmp_path)
    leader = c.wait_leader()
    lagger = next(i for i in c.ids if i != leader)
    c.one(b"x")
    c.disconnect(lagger)
    for i in range(30):
        c.one(b"i%d" % i, expected=2)
    c.crash_during_next_write(lagger)
    c.connect(lagger)
    assert c.run_until(lambda: not c.nodes[lagger].alive, 5 * ELECTION)  # died writing the snapshot
    c.restart(lagger)
    c.one(b"done")
    assert c.applied_values(lagger) == c.applied_values(c.leader())
    c.close()


@seeded(6)
def test_snapshots_under_unreliable_network(seed):
    c = SimCluster(5, seed, compact_threshold=5,
                   network=NetworkConfig(min_delay=1, max_delay=25, drop_rate=0.1, duplicate_rate=0.05))
    c.wait_leader(timeout=50 * ELECTION)
    for i in range(30):
        if i % 10 == 3:
            c.crash(c.ids[i % 5])
        if i % 10 == 7:
            c.restart(c.ids[(i - 4) % 5])
        c.one(b"u%d" % i, expected=len(c.live()) - 1, timeout=50 * ELECTION)
    for i in c.ids:
        c.restart(i)
    c.net = NetworkConfig()
    c.one(b"end", timeout=50 * ELECTION)


def _leader_op(c, fn):
    assert c.run_until(lambda: c.stable_leader() is not None, 20 * ELECTION)
    leader = c.stable_leader()
    result = fn(c.raft(leader))
    c._drain(c.nodes[leader])
    return leader, result


@seeded(6)
def test_add_then_remove_servers(seed):
    c = SimCluster(3, seed, compact_threshold=10)
    c.wait_leader()
    for i in range(15):
        c.one(b"before%d" % i)
    c.add_node(4)
    c.run(ELECTION)
    assert c.raft(4).role is Role.FOLLOWER and c.raft(4).voters == frozenset()  # passive until added
    _, index = _leader_op(c, lambda n: n.add_server(4))
    assert isinstance(index, int)
    c.one(b"with4")
    assert all(c.raft(i).voters == {1, 2, 3, 4} for i in c.ids)
    assert c.applied_values(4) == c.applied_values(1)  # caught up (by snapshot: the log was compacted)
    # With four voters, three are needed: two failures block commits, one does not.
    c.crash(1)
    c.one(b"three-of-four", expected=3)
    c.restart(1)
    # Remove the current leader: it commits its removal and steps down; the rest elect a new one.
    leader, index = _leader_op(c, lambda n: n.remove_server(n.id))
    assert isinstance(index, int)
    assert c.run_until(lambda: c.stable_leader() not in (None, leader), 30 * ELECTION)
    c.one(b"without-old-leader", expected=3)  # the removed node gets nothing new
    assert all(c.raft(i).voters == frozenset(c.ids) - {leader} for i in c.ids if i != leader)
    c.run(10 * ELECTION)
    assert c.raft(leader).role is Role.FOLLOWER  # a removed node never campaigns
    c.one(b"still-fine", expected=3)


def test_membership_requests_are_validated():
    c = SimCluster(3, 1)
    leader = c.wait_leader()
    c.one(b"x")
    follower = next(i for i in c.ids if i != leader)
    assert isinstance(c.raft(follower).add_server(9), NotLeader)
    assert isinstance(c.raft(leader).add_server(leader), Rejected)
    first = c.raft(leader).add_server(9)
    assert isinstance(first, int)
    assert isinstance(c.raft(leader).remove_server(follower), Rejected)  # one change at a time
