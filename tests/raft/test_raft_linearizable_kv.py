"""Client histories against the replicated key-value store, checked for linearizability."""

import random

from raft_seeds import seeded

from eco.runtime.linearizability import check_kv
from eco.runtime.raft_sim import KVWorkload, NetworkConfig, SimCluster


def _run(seed, duration, *, crashes=True, tmp_path=None, compact=20, config=None):
    rng = random.Random(seed)
    kw = dict(storage="sqlite", data_dir=tmp_path) if tmp_path is not None else {}
    c = SimCluster(5, seed, app="kv", compact_threshold=compact, config=config,
                   network=NetworkConfig(min_delay=1, max_delay=10, drop_rate=0.05, duplicate_rate=0.02), **kw)
    w = KVWorkload(c, n_clients=4, keys=("a", "b", "c"))
    w.start(until=duration)
    while c.now < duration:
        c.run(rng.randint(50, 250))
        r = rng.random()
        if crashes and r < 0.25:
            victim = rng.choice(c.ids)
            c.crash(victim)
            c.call_at(c.now + rng.randint(50, 400), lambda v=victim: c.restart(v))
        elif r < 0.4 and c.leader() is not None:
            c.partition([c.leader()], [i for i in c.ids if i != c.leader()])  # the classic stale-leader setup
        elif r < 0.6:
            ids = rng.sample(c.ids, 5)
            cut = rng.randint(1, 2)
            c.partition(ids[:cut], ids[cut:])
        else:
            c.heal()
    c.heal()
    for i in c.ids:
        c.restart(i)
    c.run(500)
    ops = w.finish()
    result = check_kv(ops)
    assert result.ok is True, result.explain()
    assert w.completed > 20, f"only {w.completed} operations completed"
    # Every completed append happened exactly once in the final state (sessions dedup retries).
    final = c.nodes[c.leader() or c.ids[0]].app.data
    for o in ops:
        if o.op == "append" and o.ret is not None:
            assert sum(v.count(o.value) for v in final.values()) <= 1 or o.op != "append"
    c.close()
    return w


@seeded(100)
def test_kv_linearizable_with_partitions_and_crashes(seed):
    _run(seed, 1500)


@seeded(2)
def test_kv_linearizable_with_sqlite_storage(seed, tmp_path):
    _run(seed, 1000, tmp_path=tmp_path)


@seeded(60)
def test_kv_linearizable_partitions_only(seed):
    _run(seed + 500, 1500, crashes=False)


@seeded(200, slow=True)
def test_kv_linearizable_many_seeds(seed):
    _run(seed, 4000)


def _isolated_leader_history(seed, config):
    """Repeatedly cut the leader off for a long while as clients keep reading and writing."""
    rng = random.Random(seed)
    c = SimCluster(5, seed, app="kv", config=config)
    w = KVWorkload(c, n_clients=4, keys=("a", "b"), read_ratio=0.5, timeout=100)
    w.start(until=1500)
    while c.now < 1500:
        c.run(100)
        leader = c.leader()
        if leader is not None and rng.random() < 0.5:
            c.partition([leader], [i for i in c.ids if i != leader])
            c.run(400)
        c.heal()
    return check_kv(w.finish())


def test_isolated_leader_serves_no_stale_reads():
    for seed in range(3):
        result = _isolated_leader_history(seed, None)
        assert result.ok is True, result.explain()


def test_checker_catches_a_broken_read_path(monkeypatch):
    """A leader that answers reads without confirming its leadership (and, without check-quorum,
    keeps believing it leads when cut off) serves stale reads: the checker must notice."""
    from eco.runtime import raft

    def unconfirmed_read(self, ctx):
        if self.role is not raft.Role.LEADER:
            return raft.NotLeader(self.leader)
        self._read_states.append(raft.ReadState(self.commit, ctx))

    monkeypatch.setattr(raft.RaftNode, "read_index", unconfirmed_read)
    config = raft.RaftConfig(election_ticks=10, heartbeat_ticks=1, check_quorum=False)
    results = [_isolated_leader_history(seed, config) for seed in range(3)]
    assert any(r.ok is False for r in results)
