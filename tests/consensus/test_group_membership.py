"""The consensus group follows the cluster: members that leave are removed, new candidates are added."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from eco.runtime.cluster import ConnectionMembers
from eco.runtime.coordinator_state import ReplicatedState
from eco.runtime.membership import MemberState

from consensus_harness import SimEcosystem


class _LeaveAware:
    """A node's connection-based member list plus graceful leaves the scenario announces
    (stands in for the gossip that spreads a ``left`` record)."""

    def __init__(self, node, left: set[str], sources: list) -> None:
        self.inner = ConnectionMembers(node)
        self.left = left
        self.callbacks: list = []
        sources.append(self)

    @property
    def members(self) -> list:
        return [dataclasses.replace(m, state=MemberState.LEFT) if m.name in self.left else m
                for m in self.inner.members]

    def subscribe(self, callback):
        self.callbacks.append(callback)
        unsubscribe = self.inner.subscribe(callback)

        def both() -> None:
            unsubscribe()
            self.callbacks.remove(callback)

        return both


def _announce_leave(name: str, left: set[str], sources: list) -> None:
    left.add(name)
    for source in sources:
        for callback in list(source.callbacks):
            callback(None)


async def _writer(group, act) -> None:
    state = ReplicatedState(group, act.term)
    await state.activate()
    while True:
        await state.incr("n")
        await trio.sleep(0.01)


def _leader(e: SimEcosystem):
    leaders = [g for g in e.alive() if g.is_leader]
    return leaders[0] if len(leaders) == 1 else None


@pytest.mark.parametrize("seed", [1, 2])
def test_a_node_that_leaves_is_removed_and_the_rest_keep_going(seed):
    left: set[str] = set()
    sources: list = []
    eco = SimEcosystem(3, seed, _writer, membership=lambda node: _LeaveAware(node, left, sources))

    async def scenario(e: SimEcosystem) -> None:
        leader = await e.wait_for(lambda: _leader(e), 5, "a leader")
        leaving = next(i for i in e.ids if i != leader.node_id)
        rest = [i for i in e.ids if i != leaving]
        _announce_leave(leaving, left, sources)
        await e.wait_for(lambda: all(e.groups[i].voters == frozenset(rest) for i in rest), 3,
                         "the configuration to shrink")
        e.sim.crash(leaving)  # it is gone for good
        n = leader.state_machine.get("n") or 0
        await e.wait_for(lambda: (leader.state_machine.get("n") or 0) >= n + 10, 3, "commits by 2 of 2")
        # The two remaining elect a leader again on their own (the leader is cut off, steps down).
        term = leader.term
        other = next(i for i in rest if i != leader.node_id)
        e.sim.partition({leader.node_id}, {other})
        await e.wait_for(lambda: not leader.is_leader, 3, "the cut-off leader to step down")
        e.sim.heal()
        new = await e.wait_for(lambda: (lead := _leader(e)) is not None and lead.term > term and lead, 5,
                               "a new election among the remaining two")
        assert new.node_id in rest
        n = new.state_machine.get("n") or 0
        await e.wait_for(lambda: (new.state_machine.get("n") or 0) >= n + 10, 3, "commits after the election")

    eco.run(scenario)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_crashed_node_stays_in_the_group(seed):
    eco = SimEcosystem(3, seed, _writer)

    async def scenario(e: SimEcosystem) -> None:
        leader = await e.wait_for(lambda: _leader(e), 5, "a leader")
        crashed = next(i for i in e.ids if i != leader.node_id)
        e.sim.crash(crashed)
        await e.wait_for(lambda: crashed in {m.name for m in leader.router.node.members
                                            if m.state == MemberState.DOWN}, 3, "the crash to be seen")
        await trio.sleep(1.0)  # plenty of reconciliation opportunities
        assert leader.voters == frozenset(e.ids)  # down is not left: the quorum stays 2 of 3

    eco.run(scenario)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_node_that_joins_is_added_and_catches_up(seed):
    eco = SimEcosystem(3, seed, _writer, spares=1)

    async def scenario(e: SimEcosystem) -> None:
        leader = await e.wait_for(lambda: _leader(e), 5, "a leader")
        await e.wait_for(lambda: (leader.state_machine.get("n") or 0) >= 10, 3, "some writes")
        e.start_spare("n4")
        await e.wait_for(lambda: "n4" in e.groups, 2, "n4 to start")
        everyone = frozenset(e.ids + ["n4"])
        await e.wait_for(lambda: all(g.voters == everyone for g in e.alive()), 3, "n4 to be added")
        n4 = e.groups["n4"]
        await e.wait_for(lambda: (n4.state_machine.get("n") or 0) >= (leader.state_machine.get("n") or 0) - 2
                         and (n4.state_machine.get("n") or 0) > 10, 3, "n4 to catch up")
        # n4 counts for the quorum now: with two of the founders down, 2 of 4 cannot commit,
        # and with one down, 3 of 4 (n4 among them) can.
        others = [i for i in e.ids if i != leader.node_id]
        e.sim.crash(others[0])
        n = leader.state_machine.get("n") or 0
        await e.wait_for(lambda: (n4.state_machine.get("n") or 0) >= n + 10, 3, "commits with n4 in the quorum")

    eco.run(scenario)
