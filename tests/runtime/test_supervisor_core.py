"""The pure supervisor state machine: no trio, just events in and effects out."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eco.runtime.errors import SupervisorError
from eco.runtime.signals import NORMAL, SHUTDOWN, Reason
from eco.runtime.supervisor_core import (
    INTENSITY_REASON,
    ChildSpec,
    Escalate,
    StartChildren,
    StopChildren,
    SupervisorCore,
)

CRASH = Reason("error", "boom", "ValueError")


def core(strategy="one_for_one", restarts=("permanent",) * 3, **kw):
    specs = [ChildSpec(id, start=None, restart=r) for id, r in zip("abc", restarts)]
    c = SupervisorCore(specs, strategy=strategy, **kw)
    assert c.start() == [StartChildren(tuple("abc"[: len(specs)]))]
    return c


def test_one_for_one_restarts_only_the_failed_child():
    c = core()
    assert c.child_exited("b", CRASH, now=0) == [StartChildren(("b",))]
    assert c.running() == ("a", "b", "c")


def test_one_for_all_stops_others_in_reverse_order_then_starts_all():
    c = core("one_for_all")
    assert c.child_exited("b", CRASH, now=0) == [StopChildren(("c", "a")), StartChildren(("a", "b", "c"))]


def test_rest_for_one_affects_the_failed_child_and_those_started_after_it():
    c = core("rest_for_one")
    assert c.child_exited("b", CRASH, now=0) == [StopChildren(("c",)), StartChildren(("b", "c"))]
    assert c.child_exited("c", CRASH, now=1) == [StartChildren(("c",))]


@pytest.mark.parametrize(
    "restart, reason, restarted",
    [
        ("permanent", NORMAL, True),
        ("permanent", SHUTDOWN, True),
        ("permanent", CRASH, True),
        ("transient", NORMAL, False),
        ("transient", Reason("shutdown", "bye"), False),
        ("transient", CRASH, True),
        ("transient", Reason("killed"), True),
        ("temporary", CRASH, False),
        ("temporary", NORMAL, False),
    ],
)
def test_restart_types(restart, reason, restarted):
    c = SupervisorCore([ChildSpec("w", None, restart=restart)])
    c.start()
    effects = c.child_exited("w", reason, now=0)
    assert (effects == [StartChildren(("w",))]) is restarted
    if not restarted:
        assert effects == []
        # temporary children are forgotten; others keep their spec
        assert ("w" in c.order) is (restart != "temporary")


def test_temporary_siblings_are_not_restarted_by_one_for_all():
    c = core("one_for_all", restarts=("permanent", "temporary", "transient"))
    assert c.child_exited("a", CRASH, now=0) == [StopChildren(("c", "b")), StartChildren(("a", "c"))]
    assert c.order == ("a", "c")


def test_non_running_siblings_stay_stopped():
    c = core("one_for_all", restarts=("permanent", "transient", "permanent"))
    assert c.child_exited("b", NORMAL, now=0) == []
    assert c.child_exited("a", CRASH, now=1) == [StopChildren(("c",)), StartChildren(("a", "c"))]
    assert c.running() == ("a", "c")


def test_exits_of_children_the_supervisor_stopped_are_ignored():
    c = core("one_for_all")
    c.child_exited("a", CRASH, now=0)
    # b and c were stopped and restarted; their old exits must not count again
    c2 = core()
    c2.terminate_child("b")
    assert c2.child_exited("b", SHUTDOWN, now=0) == []


def test_intensity_escalates_after_max_restarts_within_the_window():
    c = core(max_restarts=2, within=10)
    assert c.child_exited("a", CRASH, now=0) == [StartChildren(("a",))]
    assert c.child_exited("b", CRASH, now=4) == [StartChildren(("b",))]
    assert c.restarts_in_window(now=5) == 2
    effects = c.child_exited("a", CRASH, now=9)
    assert effects == [StopChildren(("c", "b")), Escalate(INTENSITY_REASON)]
    assert str(INTENSITY_REASON) == "shutdown: reached max restart intensity"
    assert c.escalated and c.running() == ()
    assert c.child_exited("b", CRASH, now=9) == []


def test_intensity_window_slides():
    c = core(max_restarts=2, within=10)
    for t in (0, 5, 10.5, 15.5, 21, 26):  # never 3 restarts within 10 s
        assert c.child_exited("a", CRASH, now=t) == [StartChildren(("a",))]
    assert c.restarts_in_window(now=26) == 2


def test_zero_max_restarts_escalates_on_the_first_failure():
    c = core(max_restarts=0)
    assert c.child_exited("c", CRASH, now=0)[-1] == Escalate(INTENSITY_REASON)


@given(st.lists(st.floats(min_value=0.01, max_value=100), min_size=1, max_size=40), st.integers(0, 5))
def test_escalation_happens_exactly_when_the_window_overflows(gaps, max_restarts):
    within = 10.0
    c = SupervisorCore([ChildSpec("w", None)], max_restarts=max_restarts, within=within)
    c.start()
    now, history = 0.0, []
    for gap in gaps:
        now += gap
        history.append(now)
        effects = c.child_exited("w", CRASH, now=now)
        in_window = [t for t in history if t > now - within]
        if len(in_window) > max_restarts:
            assert effects[-1] == Escalate(INTENSITY_REASON)
            return
        assert effects == [StartChildren(("w",))]


def test_dynamic_children():
    c = core()
    assert c.add_child(ChildSpec("d", None)) == [StartChildren(("d",))]
    assert c.order == ("a", "b", "c", "d")
    with pytest.raises(SupervisorError, match="'d' already exists"):
        c.add_child(ChildSpec("d", None))
    assert c.terminate_child("b") == [StopChildren(("b",))]
    assert c.terminate_child("b") == []
    with pytest.raises(SupervisorError, match="running"):
        c.delete_child("a")
    with pytest.raises(SupervisorError, match="running"):
        c.restart_child("a")
    assert c.restart_child("b") == [StartChildren(("b",))]
    c.terminate_child("b")
    assert c.delete_child("b") == []
    assert c.order == ("a", "c", "d")
    with pytest.raises(SupervisorError, match="no child with id 'zz'"):
        c.terminate_child("zz")
    assert c.shutdown() == [StopChildren(("d", "c", "a"))]


def test_temporary_child_terminated_is_forgotten():
    c = SupervisorCore([ChildSpec("t", None, restart="temporary")])
    c.start()
    c.terminate_child("t")
    assert c.order == ()


def test_validation():
    with pytest.raises(ValueError, match="strategy"):
        SupervisorCore(strategy="all_for_none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_restarts"):
        SupervisorCore(max_restarts=-1)
    with pytest.raises(ValueError, match="within"):
        SupervisorCore(within=0)
    with pytest.raises(ValueError, match="restart type 'sometimes'"):
        ChildSpec("x", None, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        ChildSpec("", None)
    with pytest.raises(ValueError, match="shutdown"):
        ChildSpec("x", None, shutdown=-1)
    with pytest.raises(SupervisorError, match="already exists"):
        SupervisorCore([ChildSpec("x", None), ChildSpec("x", None)])
    with pytest.raises(TypeError, match="ChildSpec"):
        SupervisorCore(["x"])  # type: ignore[list-item]
    assert ChildSpec("s", None, kind="supervisor").shutdown_timeout == math.inf
    assert ChildSpec("w", None).shutdown_timeout == 5.0
