"""The cluster-wide name registry (eco.runtime.names): updates, conflicts, failover, merge laws, waiters."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eco.runtime.names import NameEntry, NameTable, NameWaiters
from eco.runtime.pid import PID


def pid(node: str, serial: int = 1, inc: int = 0) -> PID:
    return PID(node, serial, inc)


def test_register_lookup_unregister():
    t = NameTable()
    assert t.lookup("db") is None
    entry, changed = t.register("db", pid("n1"), "n1", 0, now=5.0)
    assert changed == {"db"}
    assert t.lookup("db") == entry == NameEntry("db", pid("n1"), "n1", 0, 0, 5.0)
    assert t.names() == {"db": entry}
    assert t.unregister("db", pid("n2")) == set()  # not its registration
    assert t.unregister("db") == {"db"}
    assert t.lookup("db") is None
    assert t.unregister("db") == set()


def test_registering_the_same_thing_twice_changes_nothing():
    t = NameTable()
    t.register("db", pid("n1"), "n1", 0, now=1.0, epoch=3)
    _, changed = t.register("db", pid("n1"), "n1", 0, now=1.0, epoch=3)
    assert changed == set()


def test_race_is_won_by_highest_epoch_then_node_name():
    a, b = NameTable(), NameTable()
    ea, _ = a.register("svc", pid("n1"), "n1", 0, now=1.0)
    eb, _ = b.register("svc", pid("n2"), "n2", 0, now=1.0)
    assert ea.epoch == eb.epoch == 0
    assert a.merge(b) == {"svc"}
    assert b.merge(a) == set()
    assert a.lookup("svc") == b.lookup("svc") == eb  # equal epochs: "n2" > "n1"
    later, _ = a.register("svc", pid("n1", 2), "n1", 0, now=2.0)  # next_epoch: 1
    assert later.epoch == 1
    b.merge(a.to_wire())
    assert b.lookup("svc") == later


def test_node_down_removes_its_entries_even_when_gossiped_again_later():
    t, stale = NameTable(), NameTable()
    t.register("a", pid("n1"), "n1", 4, now=0)
    t.register("b", pid("n2"), "n2", 0, now=0)
    stale.merge(t)  # a peer that has not heard about the failure yet
    assert t.node_down("n1", 4) == {"a"}
    assert t.lookup("a") is None and t.lookup("b") is not None
    assert t.merge(stale) == set()  # the stale live entry does not resurrect "a"
    assert t.lookup("a") is None
    assert stale.merge(t) == {"a"}
    assert stale.lookup("a") is None


def test_node_down_before_hearing_of_its_registration():
    t, other = NameTable(), NameTable()
    t.node_down("n1", 2)
    other.register("late", pid("n1"), "n1", 2, now=0)
    assert t.merge(other) == set()
    assert t.lookup("late") is None


def test_restarted_node_registers_again_under_a_new_incarnation():
    t = NameTable()
    t.register("svc", pid("n1", inc=3), "n1", 3, now=0)
    t.node_down("n1", 3)
    fresh = NameTable()  # the restarted node has an empty table
    entry, _ = fresh.register("svc", pid("n1", inc=4), "n1", 4, now=9)
    assert t.merge(fresh) == {"svc"}
    assert t.lookup("svc") == entry


def test_failover_reregistration_replaces_the_old_one_everywhere():
    nodes = {name: NameTable() for name in ("n1", "n2", "n3")}
    nodes["n1"].register("coord", pid("n1"), "n1", 0, now=0)
    for t in nodes.values():
        t.merge(nodes["n1"])
    # n1 dies; n3 learns first and re-registers the coordinator it now runs.
    nodes["n3"].node_down("n1", 0)
    new, _ = nodes["n3"].register("coord", pid("n3", 7), "n3", 0, now=3, epoch=nodes["n3"].next_epoch("coord"))
    # n2 still has the old entry and has not heard of the failure: after one gossip exchange it follows.
    assert nodes["n2"].lookup("coord").node == "n1"
    assert nodes["n2"].merge(nodes["n3"].to_wire()) == {"coord"}
    nodes["n1"].merge(nodes["n2"])  # even a stale table converges
    assert all(t.lookup("coord") == new for t in nodes.values())
    assert nodes["n1"] == nodes["n2"] == nodes["n3"]


def test_unregister_loses_to_a_later_registration():
    a = NameTable()
    a.register("x", pid("n1"), "n1", 0, now=0)
    b = copy.deepcopy(a)
    a.unregister("x")
    new, _ = b.register("x", pid("n2"), "n2", 0, now=1)
    assert a.merge(b) == {"x"}
    assert a.lookup("x") == new


def test_from_wire_rejects_garbage():
    for bad in ({}, {"entries": [["x"]], "down": {}}, {"entries": [], "down": 5}):
        with pytest.raises(ValueError, match="malformed name table"):
            NameTable.from_wire(bad)


def test_waiters_are_released_when_the_name_appears():
    t, w = NameTable(), NameWaiters()
    assert w.wait("w1", "db", t) is None
    assert w.wait("w2", "db", t) is None
    assert w.wait("w3", "cache", t) is None
    w.cancel("w3")  # it timed out
    w.cancel("nobody")
    assert len(w) == 2
    _, changed = t.register("cache", pid("n1"), "n1", 0, now=0)
    assert w.ready(t, changed) == []
    entry, changed = t.register("db", pid("n2"), "n2", 0, now=0)
    assert sorted(w.ready(t, changed)) == [("w1", entry), ("w2", entry)]
    assert len(w) == 0
    assert w.wait("w4", "db", t) == entry  # already there: nothing recorded
    assert len(w) == 0


def test_waiters_after_a_merge_and_not_for_dead_entries():
    t, remote, w = NameTable(), NameTable(), NameWaiters()
    w.wait("w", "svc", t)
    remote.register("svc", pid("n5"), "n5", 1, now=0)
    remote.node_down("n5", 1)
    assert w.ready(t, t.merge(remote)) == []
    fresh = NameTable()
    entry, _ = fresh.register("svc", pid("n6"), "n6", 0, now=1, epoch=remote.next_epoch("svc"))
    assert w.ready(t, t.merge(fresh)) == [("w", entry)]


# ------------------------------------------------------------ merge laws

NODES = ["n1", "n2", "n3"]
NAMES = ["a", "b", "c"]

ops = st.one_of(
    st.tuples(st.just("reg"), st.sampled_from(NAMES), st.sampled_from(NODES), st.integers(0, 2),
              st.one_of(st.none(), st.integers(0, 3)), st.integers(1, 3)),
    st.tuples(st.just("unreg"), st.sampled_from(NAMES)),
    st.tuples(st.just("down"), st.sampled_from(NODES), st.integers(0, 2)),
)


def build(program) -> NameTable:
    t = NameTable()
    for op in program:
        if op[0] == "reg":
            _, name, node, inc, epoch, serial = op
            t.register(name, pid(node, serial, inc), node, inc, now=float(serial), epoch=epoch)
        elif op[0] == "unreg":
            t.unregister(op[1])
        else:
            t.node_down(op[1], op[2])
    return t


tables = st.lists(ops, max_size=12).map(build)


def merged(*parts: NameTable) -> NameTable:
    out = NameTable()
    for p in parts:
        out.merge(p)
    return out


@given(tables)
def test_merge_is_idempotent(a):
    once = merged(a)
    assert once == a
    assert once.merge(a) == set()
    assert once == a


@given(tables, tables)
def test_merge_is_commutative(a, b):
    assert merged(a, b) == merged(b, a)
    assert merged(a, b).names() == merged(b, a).names()


@given(tables, tables, tables)
def test_merge_is_associative(a, b, c):
    assert merged(merged(a, b), c) == merged(a, merged(b, c))


@given(tables, tables)
def test_merge_reports_exactly_the_changed_lookups(a, b):
    target = merged(a)
    before = {n: target.lookup(n) for n in NAMES}
    changed = target.merge(b.to_wire())
    assert changed == {n for n in NAMES if target.lookup(n) != before[n]}


@given(tables, tables)
def test_wire_round_trip(a, b):
    assert NameTable.from_wire(a.to_wire()) == a
    assert merged(a, NameTable.from_wire(b.to_wire())) == merged(a, b)
