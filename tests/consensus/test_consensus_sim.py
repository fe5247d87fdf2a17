"""leader: consensus on the simulated network: one active coordinator, takeover, fencing, replicated state."""

from __future__ import annotations

import pytest
import trio

from eco.runtime.consensus import Fenced, TermFence
from eco.runtime.coordinator_state import ReplicatedState, encode_state_command

from consensus_harness import SimEcosystem


def _check_single_active(history) -> None:
    """Activations have distinct, increasing terms; each term has at most one activation."""
    starts = [(t, node, term) for t, node, term, what in history if what == "active"]
    terms = [term for _, _, term in starts]
    assert len(terms) == len(set(terms)), f"two activations in one term: {starts}"
    assert terms == sorted(terms), f"activations went back in term: {starts}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_active_coordinator_and_takeover_with_replicated_state(seed):
    writes: list[tuple[int, int]] = []  # (term, i) acknowledged

    async def writer(group, act) -> None:
        state = ReplicatedState(group, act.term)
        await state.activate()
        i = await state.get("next", 0)
        while True:
            await state.put(f"k{i}", act.term)
            await state.put("next", i + 1)
            writes.append((act.term, i))
            i += 1
            await trio.sleep(0.01)

    eco = SimEcosystem(3, seed, writer)

    async def scenario(e: SimEcosystem) -> None:
        first = await e.wait_for(lambda: e.active_now(), 5, "a first active coordinator")
        assert len(first) == 1
        node, term = first[0]
        await e.wait_for(lambda: len(writes) >= 20, 5, "writes")
        killed_at = trio.current_time()
        e.sim.crash(node)
        new = await e.wait_for(lambda: [a for a in e.active_now() if a[0] != node], 5, "a takeover")
        took = trio.current_time() - killed_at
        assert took < 1.0, f"takeover took {took:.3f}s"
        assert new[0][1] > term
        before = len(writes)
        await e.wait_for(lambda: len(writes) >= before + 20, 5, "writes by the new coordinator")
        # every acknowledged write is present on the new leader, and the sequence has no hole
        group = e.groups[new[0][0]]
        state = ReplicatedState(group, new[0][1])
        data = await state.items()
        for _, i in writes:
            assert f"k{i}" in data
        assert sorted(i for _, i in writes) == list(range(len(writes)))
        e.sim.restart(node)  # the old node rejoins as a follower: no second active coordinator
        await e.wait_for(lambda: node in e.groups and e.groups[node].leader is not None and e.groups[node].driver._running,
                         5, "the old node to rejoin")
        await trio.sleep(1.0)
        assert len(e.active_now()) == 1

    eco.run(scenario)
    _check_single_active(eco.history)
    assert [term for term, _ in writes] == sorted(term for term, _ in writes)  # effective writes ordered by term


def test_partitioned_coordinator_is_deposed_and_its_writes_refused():
    results: dict = {}

    async def idle(group, act) -> None:
        state = ReplicatedState(group, act.term)
        await state.activate()
        results.setdefault("handles", {})[act.term] = state
        await trio.sleep_forever()

    eco = SimEcosystem(3, 7, idle)

    async def scenario(e: SimEcosystem) -> None:
        [(old, term)] = await e.wait_for(lambda: e.active_now(), 5, "an active coordinator")
        await e.wait_for(lambda: term in results.get("handles", {}), 5, "activation recorded")
        stale = results["handles"][term]
        others = [n for n in e.ids if n != old]
        e.sim.partition({old}, set(others) | {"scenario"})
        # the minority side steps down (check-quorum) and the majority elects a new coordinator
        await e.wait_for(lambda: not e.groups[old].is_leader, 3, "the isolated leader to step down")
        new = await e.wait_for(lambda: [a for a in e.active_now() if a[0] != old], 3, "a new coordinator")
        assert new[0][1] > term
        with pytest.raises(Fenced):
            await stale.put("x", 1)  # the deposed coordinator's writes are refused
        with pytest.raises(Fenced):
            await stale.get("x")
        e.sim.heal()
        await trio.sleep(1.0)
        assert [a for a in e.active_now()] == new
        # A command tagged with the old term that reaches the log is refused by the state machine.
        leader = e.groups[new[0][0]]
        applied = await leader.driver.propose(encode_state_command("zombie", 1, term, "put", "x", "stale"), timeout=2)
        assert applied.result[0] == "__fenced__"
        assert leader.state_machine.get("x") is None
        assert [t for t, _ in leader.state_machine.activations] == sorted({term, new[0][1]})
        results["ok"] = True

    eco.run(scenario)
    assert results.get("ok")
    _check_single_active(eco.history)


def test_term_fence_refuses_stale_terms():
    fence = TermFence()
    assert fence.admit(3) and fence.admit(3) and fence.admit(5)
    assert not fence.admit(4)
    assert fence.highest == 5
