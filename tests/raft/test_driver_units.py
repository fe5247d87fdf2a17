"""Small pieces of the driver work: propose_batch, incr, raft_server argument errors, bad input."""

from __future__ import annotations

import pytest

from eco.runtime.raft import Entry, NotLeader, RaftNode
from eco.runtime.raft_driver import DriverStopped, RaftDriver
from eco.runtime.raft_kv import KVStateMachine, encode_command
from eco.runtime.raft_server import main as server_main
from eco.runtime.raft_storage import MemoryStorage


def test_propose_batch_appends_consecutive_entries_in_one_round():
    node = RaftNode("a", ["a"], MemoryStorage())
    assert isinstance(node.propose_batch([b"x"]), NotLeader)
    node.campaign()
    while node.has_ready():
        node.advance(node.ready())
    assert node.role.value == "leader"
    first = node.propose_batch([b"1", b"2", b"3"])
    rd = node.ready()
    assert [e.index for e in rd.entries_to_persist] == [first, first + 1, first + 2]
    assert [e.data for e in rd.entries_to_persist] == [b"1", b"2", b"3"]


def test_incr_counts_and_ignores_non_numbers():
    kv = KVStateMachine()
    assert kv.apply(Entry(1, 1, encode_command("c", 1, "incr", "n"))).result == 1
    assert kv.apply(Entry(1, 2, encode_command("c", 2, "incr", "n", 41))).result == 42
    assert kv.get("n") == "42"
    kv.apply(Entry(1, 3, encode_command("c", 3, "put", "s", "text")))
    assert kv.apply(Entry(1, 4, encode_command("c", 4, "incr", "s"))).result is None
    assert kv.get("s") == "text"


@pytest.mark.parametrize("argv, message", [
    (["--peer", "n2"], "expected ID=HOST:PORT"),
    (["--peer", "n1=127.0.0.1:1"], "names this node itself"),
    (["--peer", "n2=nohost"], "expected HOST:PORT"),
])
def test_server_argument_errors_are_one_clear_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECO_COOKIE", "x" * 32)
    code = server_main(["--id", "n1", "--listen", "127.0.0.1:0", "--data", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_server_needs_a_cookie(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ECO_COOKIE", raising=False)
    assert server_main(["--id", "n1", "--listen", "127.0.0.1:0", "--data", str(tmp_path)]) == 2
    assert "ECO_COOKIE" in capsys.readouterr().err


async def test_driver_requests_fail_clearly_when_not_running():
    sent = []
    driver = RaftDriver("a", ["a", "b", "c"], MemoryStorage(), lambda p, m: sent.append((p, m)),
                        state_machine=KVStateMachine())
    with pytest.raises(DriverStopped):
        await driver.propose(b"x")
    driver.deliver("b", ["garbage"])  # malformed: logged and dropped, never raised
    driver.deliver("b", [0, "b", "zzz", 1, 0, 0, False, False])  # addressed to someone else
    assert driver.node.term == 0


def test_take_leader_messages_returns_only_appends_and_heartbeats_of_a_leader():
    from eco.runtime.raft import AppendEntries, Heartbeat, RequestVote

    follower = RaftNode("a", ["a", "b", "c"], MemoryStorage())
    follower.campaign()  # pre-vote requests: must wait for the Ready, never taken early
    assert follower.take_leader_messages() == []
    assert all(isinstance(m, RequestVote) for m in follower.ready().messages)

    leader = RaftNode("a", ["a"], MemoryStorage())
    leader.campaign()
    while leader.has_ready():
        leader.advance(leader.ready())
    leader.add_server("b")  # now a peer to replicate to
    leader.propose_batch([b"x"])
    leader.tick()
    early = leader.take_leader_messages()
    assert early and all(type(m) in (AppendEntries, Heartbeat) for m in early)
    assert leader.take_leader_messages() == []
    assert not [m for m in leader.ready().messages if type(m) in (AppendEntries, Heartbeat)]


def test_wire_rejects_bad_entry_fields():
    from eco.runtime.raft import message_from_wire

    good = [2, "a", "b", 1, 0, 0, [[1, 1, b"x", 0]], 0]
    assert message_from_wire(good).entries[0].data == b"x"
    for bad_entry in ([1, 1, b"x", -1], [1, 1, b"x", 9], ["1", 1, b"x", 0], [1, 1, 5, 0], [1, 1, b"x"]):
        with pytest.raises(ValueError):
            message_from_wire([2, "a", "b", 1, 0, 0, [bad_entry], 0])


async def test_propose_timeout_and_cancellation_leave_the_driver_usable():
    import trio

    from eco.runtime.raft_driver import RaftTimeout

    # A leader of a 3-node group whose peers never answer: nothing commits.
    driver = RaftDriver("a", ["a", "b", "c"], MemoryStorage(), lambda p, m: None,
                        state_machine=KVStateMachine(), tick_interval=0.005)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        driver.node._campaign(pre=False)
        driver.node._become_leader()
        driver._on_soft_state("a", driver.node.role, driver.node.term)
        t0 = trio.current_time()
        with pytest.raises(RaftTimeout):
            await driver.propose(encode_command("c", 1, "put", "k", "v"), timeout=0.05)
        assert 0.05 <= trio.current_time() - t0 < 1.0
        with trio.move_on_after(0.02) as scope:
            await driver.propose(encode_command("c", 2, "put", "k", "v"))
        assert scope.cancelled_caught
        nursery.cancel_scope.cancel()
