"""The linearizability checker on hand-written histories with known answers."""

import random

import pytest

from eco.runtime.linearizability import History, Operation, check_kv


def op(client, kind, key, value=None, output=None, call=0, ret=None):
    return Operation(client, kind, key, value, output, call, ret)


def test_sequential_history_is_linearizable():
    h = [op(1, "put", "x", "1", call=0, ret=1), op(1, "get", "x", output="1", call=2, ret=3)]
    assert check_kv(h).ok is True


def test_stale_read_after_write_completed_is_not_linearizable():
    h = [op(1, "put", "x", "1", call=0, ret=1), op(2, "put", "x", "2", call=2, ret=3),
         op(3, "get", "x", output="1", call=4, ret=5)]
    result = check_kv(h)
    assert result.ok is False and result.bad_key == "x"
    assert "not linearizable" in result.explain()


def test_concurrent_ops_may_be_ordered_either_way():
    h = [op(1, "put", "x", "1", call=0, ret=10), op(2, "get", "x", output="1", call=1, ret=2),
         op(3, "get", "x", output=None, call=0, ret=1)]
    assert check_kv(h).ok is True


def test_reads_must_agree_on_one_order():
    # Two writes concurrent with two readers that see them in opposite orders: impossible.
    h = [op(1, "put", "x", "a", call=0, ret=10), op(2, "put", "x", "b", call=0, ret=10),
         op(3, "get", "x", output="a", call=11, ret=12), op(3, "get", "x", output="b", call=13, ret=14),
         op(4, "get", "x", output="b", call=11, ret=12), op(4, "get", "x", output="a", call=15, ret=16)]
    assert check_kv(h).ok is False


def test_append_applied_twice_is_detected():
    h = [op(1, "append", "x", "a", call=0, ret=1), op(2, "get", "x", output="aa", call=2, ret=3)]
    assert check_kv(h).ok is False


def test_timed_out_write_may_or_may_not_have_happened():
    lost = op(1, "put", "x", "9", call=0, ret=None)
    seen = [lost, op(2, "get", "x", output="9", call=5, ret=6)]
    unseen = [lost, op(2, "get", "x", output=None, call=5, ret=6)]
    assert check_kv(seen).ok is True and check_kv(unseen).ok is True
    # ...but once observed it cannot disappear again.
    flicker = seen + [op(2, "get", "x", output=None, call=7, ret=8)]
    assert check_kv(flicker).ok is False


def test_keys_are_checked_independently():
    h = [op(1, "put", "x", "1", call=0, ret=1), op(1, "put", "y", "1", call=2, ret=3),
         op(2, "get", "y", output="1", call=4, ret=5), op(2, "get", "x", output=None, call=6, ret=7)]
    result = check_kv(h)
    assert result.ok is False and result.bad_key == "x"


def test_history_recorder_orders_events():
    hist = History()
    a = hist.invoke("c1", "put", "k", "v")
    b = hist.invoke("c2", "get", "k")
    hist.complete(a)
    hist.complete(b, "v")
    c = hist.invoke("c1", "append", "k", "w")
    ops = hist.all_operations()
    assert [o.ret is None for o in ops] == [False, False, True]
    assert check_kv(ops).ok is True
    hist.abandon(c)


def test_random_sequential_histories_are_linearizable_and_corruptions_are_caught():
    rng = random.Random(5)
    caught = 0
    for trial in range(60):
        state, ops, t = {}, [], 0
        for i in range(30):
            key = rng.choice("ab")
            kind = rng.choice(["put", "append", "get"])
            value = str(i) if kind != "get" else None
            out = state.get(key) if kind == "get" else None
            if kind == "put":
                state[key] = value
            elif kind == "append":
                state[key] = state.get(key, "") + value
            ops.append(op(i % 3, kind, key, value, out, call=t, ret=t + 1))
            t += 2
        assert check_kv(ops).ok is True
        gets = [i for i, o in enumerate(ops) if o.op == "get" and o.output is not None]
        if gets:
            i = rng.choice(gets)
            ops[i] = op(ops[i].client, "get", ops[i].key, None, ops[i].output + "!", ops[i].call, ops[i].ret)
            caught += check_kv(ops).ok is False
    assert caught > 40


def test_search_budget_reports_undecided():
    many = [op(i, "append", "x", str(i), call=0, ret=100) for i in range(14)]
    many.append(op(99, "get", "x", output="nope", call=101, ret=102))
    result = check_kv(many, max_steps=500)
    assert result.ok is None and "undecided" in result.explain()


def test_return_before_call_is_rejected():
    with pytest.raises(ValueError):
        check_kv([op(1, "put", "x", "1", call=5, ret=2)])
