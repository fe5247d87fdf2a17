"""Crashes and restarts with SQLite storage, and the Figure 8 scenarios."""

import random

from raft_seeds import seeded

from eco.runtime.raft import Role
from eco.runtime.raft_sim import NetworkConfig, SimCluster

ELECTION = 100


def sqlite_cluster(n, seed, tmp_path, **kw):
    return SimCluster(n, seed, storage="sqlite", data_dir=tmp_path, **kw)


@seeded(4)
def test_persistence_across_crash_of_everyone(seed, tmp_path):
    c = sqlite_cluster(3, seed, tmp_path)
    c.wait_leader()
    c.one(b"11")
    for i in c.ids:
        c.crash(i)
    for i in c.ids:
        c.restart(i)
    c.one(b"12")
    leader = c.wait_leader()
    c.crash(leader)
    c.restart(leader)
    c.one(b"13")
    for i in c.ids:
        assert c.applied_values(i)[-3:] == [b"11", b"12", b"13"]
    c.close()


@seeded(4)
def test_persistence_across_leader_crashes(seed, tmp_path):
    c = sqlite_cluster(3, seed, tmp_path)
    for v in range(5):
        c.wait_leader()
        c.one(b"%d" % v)
        leader = c.leader()
        c.crash(leader)
        c.one(b"after%d" % v, expected=2)
        c.restart(leader)
    c.one(b"last")
    assert len(c.applied_values(c.ids[0])) == 11
    c.close()


@seeded(4)
def test_persistence_across_partitions_and_crashes(seed, tmp_path):
    """MIT Persist3: a leader and one follower partitioned, the follower crashed, the leader
    crashed while the others elect, then everyone comes back."""
    c = sqlite_cluster(3, seed, tmp_path)
    c.one(b"101")
    leader = c.wait_leader()
    f1, f2 = [i for i in c.ids if i != leader]
    c.disconnect(f2)
    c.one(b"102", expected=2)
    c.crash(leader)
    c.crash(f1)
    c.connect(f2)
    c.restart(f1)
    c.one(b"103", expected=2)
    c.restart(leader)
    c.one(b"104")
    assert c.applied_values(f2)[-4:] == [b"101", b"102", b"103", b"104"]
    c.close()


def _figure8(seed, iterations, net, storage_kwargs):
    rng = random.Random(seed)
    c = SimCluster(5, seed, network=net, **storage_kwargs)
    c.one(b"start", timeout=50 * ELECTION)
    up = 5
    for it in range(iterations):
        leader = c.leader()
        if leader is not None:
            c.raft(leader).propose(b"f8-%d" % it)
            c._drain(c.nodes[leader])
        c.run(rng.randint(1, 13) if rng.random() < 0.9 else rng.randint(1, 2 * ELECTION))
        leader = c.leader()
        if leader is not None and rng.random() < 0.5:
            c.crash(leader)
            up -= 1
        if up < 3:
            down = [i for i in c.ids if not c.nodes[i].alive]
            c.restart(rng.choice(down))
            up += 1
    for i in c.ids:
        c.restart(i)
    c.net = NetworkConfig()
    c.one(b"end", timeout=50 * ELECTION)
    assert c.run_until(c.converged, 20 * ELECTION)
    return c


@seeded(4)
def test_figure8(seed, tmp_path):
    c = _figure8(seed, 120, NetworkConfig(), dict(storage="sqlite", data_dir=tmp_path))
    c.close()


@seeded(6)
def test_figure8_unreliable(seed):
    _figure8(seed, 150, NetworkConfig(min_delay=1, max_delay=40, drop_rate=0.1, duplicate_rate=0.05), {})


@seeded(200, slow=True)
def test_figure8_many_seeds(seed):
    _figure8(seed, 400, NetworkConfig(min_delay=1, max_delay=40, drop_rate=0.1, duplicate_rate=0.05),
             dict(compact_threshold=25))


@seeded(6)
def test_crash_mid_write_rolls_back_and_the_node_recovers(seed, tmp_path):
    c = sqlite_cluster(3, seed, tmp_path)
    leader = c.wait_leader()
    c.one(b"a")
    follower = next(i for i in c.ids if i != leader)
    c.crash_during_next_write(follower)
    c.one(b"b", expected=2)
    assert not c.nodes[follower].alive  # died while persisting "b"; nothing half-written survives
    c.restart(follower)  # SafetyChecker.on_restart compares the reloaded log with what was persisted
    c.one(b"c")
    assert c.applied_values(follower)[-3:] == [b"a", b"b", b"c"]
    assert c.raft(follower).role is Role.FOLLOWER or c.raft(follower).role is Role.LEADER
    c.close()
