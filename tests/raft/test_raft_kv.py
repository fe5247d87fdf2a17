"""The replicated key-value state machine: sessions make retries exactly-once."""

import pytest

from eco.runtime.raft import Entry, EntryKind
from eco.runtime.raft_kv import KVStateMachine, encode_command


def cmd(index, *args):
    return Entry(1, index, encode_command(*args))


def test_retried_command_applies_once_and_gets_the_original_result():
    kv = KVStateMachine()
    kv.apply(cmd(1, "c1", 1, "append", "k", "x"))
    dup = kv.apply(cmd(2, "c1", 1, "append", "k", "x"))  # the same request appended twice (a retry)
    assert kv.get("k") == "x" and dup.duplicate
    kv.apply(cmd(3, "c1", 2, "delete", "k"))
    again = kv.apply(cmd(4, "c1", 2, "delete", "k"))
    assert again.result == "x" and again.duplicate
    stale = kv.apply(cmd(5, "c1", 1, "append", "k", "x"))
    assert stale.duplicate and kv.get("k") is None


def test_sessions_are_per_client_and_ignore_non_commands():
    kv = KVStateMachine()
    assert kv.apply(Entry(1, 1, b"", EntryKind.NOOP)) is None
    kv.apply(cmd(2, "a", 1, "put", "k", "1"))
    r = kv.apply(cmd(3, "b", 1, "append", "k", "2"))
    assert not r.duplicate and kv.get("k") == "12"
    with pytest.raises(ValueError):
        kv.apply(cmd(3, "b", 2, "put", "k", "3"))


def test_snapshot_restore_keeps_data_and_sessions():
    kv = KVStateMachine()
    kv.apply(cmd(1, "a", 1, "put", "k", "v"))
    other = KVStateMachine()
    other.restore(kv.snapshot(), 1)
    assert other.get("k") == "v" and other.applied_index == 1
    assert other.apply(cmd(2, "a", 1, "put", "k", "w")).duplicate and other.get("k") == "v"


def test_unknown_operation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown key-value operation"):
        encode_command("a", 1, "frobnicate", "k")
