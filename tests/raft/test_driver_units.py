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
