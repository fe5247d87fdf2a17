"""Unit tests of the RaftNode state machine, message by message (no simulator)."""

import random

import pytest

from eco.runtime.raft import (
    AppendEntries, AppendResponse, Entry, EntryKind, Heartbeat, HeartbeatResponse, NotLeader, RaftConfig, RaftNode,
    ReadState, Rejected, RequestVote, Role, Snapshot, VoteResponse, message_from_wire, message_to_wire,
)
from eco.runtime.raft_storage import MemoryStorage

CFG = RaftConfig(election_ticks=10, heartbeat_ticks=1)


def node(id=1, peers=(1, 2, 3), log=(), term=0, cfg=CFG):
    st = MemoryStorage()
    from eco.runtime.raft import HardState
    st.persist(HardState(term, None, 0), [Entry(t, i + 1) for i, t in enumerate(log)], None)
    return RaftNode(id, peers, st, cfg, random.Random(1)), st


def drain(n, st=None):
    """Persist and collect messages of all pending Readys."""
    msgs, applied, reads = [], [], []
    while n.has_ready():
        rd = n.ready()
        if st is not None:
            st.persist(rd.hard_state, rd.entries_to_persist, rd.snapshot_to_persist)
        msgs += rd.messages
        applied += rd.committed_entries
        reads += rd.read_states
        n.advance(rd)
    return msgs, applied, reads


def elect(n, st):
    """Make node 1 of a 3-node group the leader by feeding it vote grants."""
    n.campaign()
    msgs, _, _ = drain(n, st)
    assert n.role is Role.PRE_CANDIDATE
    n.step(VoteResponse(src=2, dst=1, term=n.term + 1, granted=True, pre_vote=True))
    assert n.role is Role.CANDIDATE
    n.step(VoteResponse(src=2, dst=1, term=n.term, granted=True))
    assert n.role is Role.LEADER
    return drain(n, st)[0]


def test_single_node_elects_itself_and_commits():
    n, st = node(peers=(1,))
    for _ in range(25):
        n.tick()
    assert n.role is Role.LEADER
    idx = n.propose(b"x")
    _, applied, _ = drain(n, st)
    assert [e.data for e in applied if e.kind is EntryKind.NORMAL] == [b"x"]
    assert idx == applied[-1].index
    n.read_index("r")
    assert drain(n, st)[2] == [ReadState(n.commit, "r")]


def test_election_timeout_is_randomised_within_bounds():
    for seed in range(20):
        st = MemoryStorage()
        n = RaftNode(1, (1, 2, 3), st, CFG, random.Random(seed))
        ticks = 0
        while n.role is Role.FOLLOWER:
            n.tick()
            ticks += 1
        assert CFG.election_ticks <= ticks < 2 * CFG.election_ticks


def test_pre_vote_does_not_change_terms():
    n, st = node(term=5)
    n.campaign()
    msgs, _, _ = drain(n, st)
    assert n.term == 5 and n.role is Role.PRE_CANDIDATE
    assert all(isinstance(m, RequestVote) and m.pre_vote and m.term == 6 for m in msgs)
    # A voter answering a pre-vote keeps its own term and does not record a vote.
    v, vst = node(id=2, term=5)
    v.step(msgs[0])
    out, _, _ = drain(v, vst)
    assert v.term == 5 and v.vote is None
    assert out == [VoteResponse(src=2, dst=1, term=6, granted=True, pre_vote=True)]


def test_vote_refused_to_a_less_up_to_date_log():
    v, st = node(id=2, log=(1, 1, 2), term=2)
    v.step(RequestVote(src=1, dst=2, term=3, last_index=5, last_term=1))
    out, _, _ = drain(v, st)
    assert out[0].granted is False and v.vote is None and v.term == 3
    v.step(RequestVote(src=3, dst=2, term=3, last_index=3, last_term=2))
    out, _, _ = drain(v, st)
    assert out[0].granted is True and v.vote == 3
    # One vote per term.
    v.step(RequestVote(src=1, dst=2, term=3, last_index=9, last_term=3))
    assert drain(v, st)[0][0].granted is False


def test_vote_is_persisted_before_the_response_is_released():
    v, st = node(id=2)
    v.step(RequestVote(src=1, dst=2, term=1, last_index=0, last_term=0))
    rd = v.ready()
    assert rd.hard_state.vote == 1 and rd.hard_state.term == 1
    assert rd.messages[0].granted


def test_leader_lease_ignores_disruptive_candidates():
    v, st = node(id=2)
    v.step(Heartbeat(src=1, dst=2, term=1, commit=0))
    drain(v, st)
    v.step(RequestVote(src=3, dst=2, term=2, last_index=10, last_term=2))
    assert drain(v, st)[0] == [] and v.term == 1


def test_figure8_leader_does_not_commit_an_old_term_entry_by_counting():
    n, st = node(log=(1, 2), term=3)  # entry 2 is from term 2, never committed
    elect(n, st)
    assert n.term == 4 and n.last_index == 3  # plus the new leader's no-op
    n.step(AppendResponse(src=2, dst=1, term=4, success=True, index=2))
    drain(n, st)
    assert n.commit == 0  # a majority holds index 2, but it is from an older term
    n.step(AppendResponse(src=2, dst=1, term=4, success=True, index=3))
    drain(n, st)
    assert n.commit == 3


def test_follower_reports_conflict_term_and_its_first_index():
    f, st = node(id=2, log=(1, 1, 2, 2, 2), term=2)
    f.step(AppendEntries(src=1, dst=2, term=3, prev_index=5, prev_term=3, entries=(), commit=0))
    out, _, _ = drain(f, st)
    assert out == [AppendResponse(src=2, dst=1, term=3, success=False, index=5, conflict_index=3, conflict_term=2)]
    f.step(AppendEntries(src=1, dst=2, term=3, prev_index=9, prev_term=3, entries=(), commit=0))
    out, _, _ = drain(f, st)
    assert out[0].conflict_index == 6 and out[0].conflict_term == 0


def test_follower_truncates_conflicting_suffix_and_persists_replacement():
    f, st = node(id=2, log=(1, 1, 2, 2), term=2)
    f.step(AppendEntries(src=1, dst=2, term=3, prev_index=2, prev_term=1,
                         entries=(Entry(3, 3, b"n"),), commit=3))
    rd = f.ready()
    assert [(e.index, e.term) for e in rd.entries_to_persist] == [(3, 3)]
    st.persist(rd.hard_state, rd.entries_to_persist, None)
    f.advance(rd)
    assert [e.term for e in st.load().entries] == [1, 1, 3]
    assert f.commit == 3


def test_leader_skips_a_whole_term_on_conflict_hint():
    n, st = node(log=(1, 1, 1, 4, 4, 4, 4), term=5)
    elect(n, st)
    # Follower 2 has entries of term 2 from index 4: the leader has no term 2 -> jump to index 4.
    n.step(HeartbeatResponse(src=2, dst=1, term=n.term))
    msgs, _, _ = drain(n, st)
    probe = [m for m in msgs if isinstance(m, AppendEntries) and m.dst == 2][-1]
    n.step(AppendResponse(src=2, dst=1, term=n.term, success=False, index=probe.prev_index,
                          conflict_index=4, conflict_term=2))
    msgs, _, _ = drain(n, st)
    retry = [m for m in msgs if isinstance(m, AppendEntries) and m.dst == 2]
    assert retry and retry[0].prev_index == 3


def test_pipelining_is_bounded_by_max_inflight():
    cfg = RaftConfig(election_ticks=10, heartbeat_ticks=1, max_inflight_appends=3, max_entries_per_append=1)
    n, st = node(cfg=cfg)
    elect(n, st)
    n.step(AppendResponse(src=2, dst=1, term=n.term, success=True, index=1))  # probe done -> replicate
    drain(n, st)
    for i in range(10):
        n.propose(b"%d" % i)
    msgs, _, _ = drain(n, st)
    to2 = [m for m in msgs if isinstance(m, AppendEntries) and m.dst == 2 and m.entries]
    assert len(to2) == 3  # window full; the rest waits for acknowledgements
    n.step(AppendResponse(src=2, dst=1, term=n.term, success=True, index=to2[0].entries[-1].index))
    msgs, _, _ = drain(n, st)
    assert len([m for m in msgs if isinstance(m, AppendEntries) and m.dst == 2 and m.entries]) == 1


def test_batching_respects_byte_limit():
    cfg = RaftConfig(election_ticks=10, heartbeat_ticks=1, max_bytes_per_append=250)
    n, st = node(cfg=cfg)
    elect(n, st)
    for _ in range(5):
        n.propose(b"x" * 100)
    n.step(AppendResponse(src=2, dst=1, term=n.term, success=True, index=0))
    n.step(AppendResponse(src=2, dst=1, term=n.term, success=True, index=1))
    msgs, _, _ = drain(n, st)
    sizes = [sum(len(e.data) for e in m.entries) for m in msgs if isinstance(m, AppendEntries) and m.dst == 2]
    assert sizes and max(sizes) <= 250


def test_check_quorum_makes_an_isolated_leader_step_down():
    n, st = node()
    elect(n, st)
    for _ in range(2 * CFG.election_ticks):
        n.tick()
    drain(n, st)
    assert n.role is Role.FOLLOWER


def test_requests_on_a_follower_say_who_leads():
    f, st = node(id=2)
    f.step(Heartbeat(src=1, dst=2, term=1, commit=0))
    assert f.propose(b"x") == NotLeader(1)
    assert f.read_index("c") == NotLeader(1)
    assert f.add_server(4) == NotLeader(1)


def test_only_one_membership_change_at_a_time():
    n, st = node()
    elect(n, st)
    assert isinstance(n.add_server(4), Rejected)  # the new leader's no-op is not committed yet
    n.step(AppendResponse(src=2, dst=1, term=n.term, success=True, index=1))
    drain(n, st)
    first = n.add_server(4)
    assert isinstance(first, int) and n.voters == {1, 2, 3, 4}  # effective once appended
    assert isinstance(n.add_server(5), Rejected)
    assert isinstance(n.remove_server(9), Rejected)


def test_read_index_waits_for_a_quorum_heartbeat_round():
    n, st = node()
    elect(n, st)
    n.step(AppendResponse(src=2, dst=1, term=n.term, success=True, index=1))
    drain(n, st)
    n.read_index("q")
    msgs, _, reads = drain(n, st)
    assert reads == []
    hb = [m for m in msgs if isinstance(m, Heartbeat) and m.dst == 3][0]
    n.step(HeartbeatResponse(src=3, dst=1, term=n.term, seq=hb.seq - 1))  # an older round does not count
    assert drain(n, st)[2] == []
    n.step(HeartbeatResponse(src=3, dst=1, term=n.term, seq=hb.seq))
    assert drain(n, st)[2] == [ReadState(1, "q")]


def test_snapshot_compaction_and_install():
    n, st = node(peers=(1,))
    for _ in range(25):
        n.tick()
    for i in range(5):
        n.propose(b"%d" % i)
    drain(n, st)
    snap = n.compact(4, b"image")
    rd = n.ready()
    assert rd.snapshot_to_persist == snap and rd.snapshot_to_apply is None
    st.persist(rd.hard_state, rd.entries_to_persist, rd.snapshot_to_persist)
    n.advance(rd)
    assert [e.index for e in st.load().entries] == [5, 6] and n.first_index == 5
    with pytest.raises(ValueError):
        n.compact(3, b"")
    # A follower with a conflicting log installs it and drops its log.
    f, fst = node(id=2, log=(1, 1, 1, 1, 1, 1), term=1)
    f.step(__import__("eco.runtime.raft", fromlist=["InstallSnapshot"]).InstallSnapshot(
        src=1, dst=2, term=3, snapshot=Snapshot(8, 3, (1, 2, 3), b"img")))
    rd = f.ready()
    assert rd.snapshot_to_apply.index == 8 and f.last_index == 8 and f.commit == 8
    fst.persist(rd.hard_state, rd.entries_to_persist, rd.snapshot_to_persist)
    f.advance(rd)
    assert fst.load().entries == [] and fst.load().snapshot.index == 8


def test_restart_replays_from_the_stored_snapshot():
    st = MemoryStorage()
    from eco.runtime.raft import HardState
    st.persist(HardState(2, 1, 6), [Entry(2, 5, b"e5"), Entry(2, 6, b"e6")], Snapshot(4, 2, (1, 2, 3), b"img"))
    n = RaftNode(1, (1, 2, 3), st, CFG)
    rd = n.ready()
    assert rd.snapshot_to_apply.data == b"img"
    assert [e.index for e in rd.committed_entries] == [5, 6]


def test_wire_round_trip_and_malformed_input():
    msgs = [
        AppendEntries(src="a", dst="b", term=3, prev_index=1, prev_term=1,
                      entries=(Entry(3, 2, b"x", EntryKind.CONFIG),), commit=1),
        __import__("eco.runtime.raft", fromlist=["InstallSnapshot"]).InstallSnapshot(
            src="a", dst="b", term=1, snapshot=Snapshot(3, 1, ("a", "b"), b"s")),
        VoteResponse(src="a", dst="b", term=1, granted=True, pre_vote=True),
    ]
    for m in msgs:
        assert message_from_wire(message_to_wire(m)) == m
    with pytest.raises(ValueError):
        message_from_wire([2, "a"])
    with pytest.raises(ValueError):
        message_from_wire([99])


def test_config_validation():
    with pytest.raises(ValueError):
        RaftConfig(election_ticks=2, heartbeat_ticks=2)
    with pytest.raises(ValueError):
        RaftConfig(max_inflight_appends=0)
