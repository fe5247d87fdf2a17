"""Election scenarios on the simulator (safety is checked after every event by SafetyChecker)."""

import random

from raft_seeds import seeded

from eco.runtime.raft import RaftConfig, Role
from eco.runtime.raft_sim import SimCluster

ELECTION = 10 * 10  # election_ticks * tick_interval, in simulated time units


def terms(c):
    return {c.raft(i).term for i in c.live()}


@seeded(10)
def test_initial_election(seed):
    c = SimCluster(3, seed)
    leader = c.wait_leader(timeout=10 * ELECTION)
    assert len(terms(c)) == 1
    term = c.raft(leader).term
    c.run(10 * ELECTION)  # a healthy group holds no further elections
    assert c.leader() == leader and c.raft(leader).term == term and terms(c) == {term}


@seeded(10)
def test_reelection_after_leader_loss(seed):
    c = SimCluster(3, seed)
    first = c.wait_leader()
    c.disconnect(first)
    second = c.wait_leader()
    assert second != first
    c.run(3 * ELECTION)
    assert c.raft(first).role is not Role.LEADER  # check-quorum deposed the isolated leader
    c.connect(first)
    c.run(3 * ELECTION)
    assert c.stable_leader() in (second,) and c.raft(first).leader == second
    # No quorum, no leader.
    for i in c.ids:
        c.disconnect(i)
    c.run(10 * ELECTION)
    assert c.stable_leader() is None and c.leaders() == []
    c.connect(c.ids[0])
    c.connect(c.ids[1])
    c.wait_leader()


@seeded(8)
def test_many_elections_with_random_disconnections(seed):
    c = SimCluster(7, seed)
    rng = random.Random(seed)
    c.wait_leader()
    for _ in range(8):
        down = rng.sample(c.ids, 3)
        for d in down:
            c.disconnect(d)
        c.wait_leader(timeout=20 * ELECTION)  # four of seven still form a majority
        for d in down:
            c.connect(d)
    c.wait_leader()


def test_election_message_count_is_bounded():
    for seed in range(10):
        c = SimCluster(3, seed)
        c.wait_leader()
        votes = c.sent["RequestVote"] + c.sent["VoteResponse"]
        # pre-vote and vote rounds, 2 requests and 2 answers each, with room for one split round
        assert votes <= 16, (seed, dict(c.sent))


def test_idle_heartbeats_cost_one_round_per_heartbeat_interval():
    c = SimCluster(3, 4)
    leader = c.wait_leader()
    c.run(2 * ELECTION)
    before = sum(c.sent.values())
    ticks = 50
    c.run(ticks * c.tick_interval)
    sent = sum(c.sent.values()) - before
    # two followers, one heartbeat and one response each per tick; nothing else when idle
    assert 4 * (ticks - 1) <= sent <= 4 * (ticks + 1), dict(c.sent)
    assert c.leader() == leader


@seeded(5)
def test_pre_vote_keeps_a_partitioned_node_from_inflating_terms(seed):
    c = SimCluster(5, seed)
    leader = c.wait_leader()
    term = c.raft(leader).term
    loner = next(i for i in c.ids if i != leader)
    c.disconnect(loner)
    c.run(20 * ELECTION)
    assert c.raft(loner).term == term  # pre-votes failed, no term bumps
    c.connect(loner)
    c.run(3 * ELECTION)
    assert c.leader() == leader and c.raft(leader).term == term


def test_without_pre_vote_the_loner_disrupts_on_rejoin():
    """The counterpart of the test above: proves the pre-vote test can fail."""
    cfg = RaftConfig(election_ticks=10, heartbeat_ticks=1, pre_vote=False, check_quorum=False)
    c = SimCluster(5, 1, config=cfg)
    leader = c.wait_leader()
    term = c.raft(leader).term
    loner = next(i for i in c.ids if i != leader)
    c.disconnect(loner)
    c.run(20 * ELECTION)
    assert c.raft(loner).term > term + 3


@seeded(5)
def test_leadership_transfer(seed):
    c = SimCluster(3, seed)
    leader = c.wait_leader()
    c.one(b"x")
    target = next(i for i in c.ids if i != leader)
    assert c.raft(leader).transfer_leadership(target) is None
    c._drain(c.nodes[leader])
    assert c.run_until(lambda: c.stable_leader() == target, 3 * ELECTION)
    c.one(b"y")
