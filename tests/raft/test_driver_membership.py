"""RaftDriver membership changes on the simulated network: add, remove, remove the leader."""

from __future__ import annotations

import pytest
import trio

from driver_harness import SimRaft

from eco.runtime.raft import EntryKind
from eco.runtime.raft_driver import NotLeaderError
from eco.runtime.simulator import sim_seeds


async def _watch_safety(c: SimRaft, seen: dict[int, str]) -> None:
    """Sample every few ms: at most one leader per term, and committed prefixes agree."""
    while True:
        for d in c.alive():
            if d.is_leader:
                assert seen.setdefault(d.term, d.id) == d.id, f"two leaders in term {d.term}"
        live = c.alive()
        for a in live:
            for b in live:
                upto = min(a.node.commit, b.node.commit)
                lo = max(a.node.first_index, b.node.first_index)
                for ea, eb in zip(a.node.entries(lo, upto + 1), b.node.entries(lo, upto + 1)):
                    assert (ea.index, ea.term, ea.data) == (eb.index, eb.term, eb.data), "committed logs differ"
        await trio.sleep(0.005)


def _run_checked(c: SimRaft, scenario) -> None:
    async def checked(c: SimRaft) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_safety, c, {})
            await scenario(c)
            nursery.cancel_scope.cancel()

    c.run(checked)


@pytest.mark.parametrize("compact_every", [10_000, 8])  # 8: the new server needs InstallSnapshot
@sim_seeds(2)
def test_added_server_catches_up_and_votes(seed, compact_every):
    c = SimRaft(3, seed, spares=1, compact_every=compact_every)

    async def scenario(c: SimRaft) -> None:
        leader = await c.wait_leader(within=3.0)
        for i in range(1, 21):
            await c.kv("a", i, "incr", "x")
        c.start_spare("n4")
        await c.wait_for(lambda: "n4" in c.drivers and c.drivers["n4"]._running, 2.0, "n4 starts")
        assert c.drivers["n4"].members == frozenset()  # a joining node knows no configuration
        with pytest.raises(NotLeaderError):
            await next(d for d in c.alive() if not d.is_leader and d.id != "n4").add_server("n4", timeout=1.0)
        members = await leader.add_server("n4", timeout=3.0)
        assert members == {"n1", "n2", "n3", "n4"}
        assert await leader.add_server("n4", timeout=1.0) == members  # idempotent
        await c.kv("a", 21, "incr", "x")
        new = c.drivers["n4"]
        await c.wait_for(lambda: new.state_machine.get("x") == "21" and new.members == members, 3.0, "n4 catches up")
        if compact_every < 20:
            assert new.node.snapshot is not None  # it was brought up to date by InstallSnapshot
        # n4 votes: with one of the old servers down, a quorum of 3 out of 4 needs n4.
        down = [i for i in c.ids if i != leader.id][0]
        c.sim.crash(down)
        c.sim.crash(leader.id)
        c.sim.restart(leader.id)  # an election happens; 3 live out of 4 voters, n4 among them
        await c.wait_leader(within=5.0, among=[i for i in ["n1", "n2", "n3", "n4"] if i != down])
        assert await c.kv("a", 22, "incr", "x") == 22

    _run_checked(c, scenario)


@sim_seeds(3)
def test_removed_server_leaves_and_group_keeps_committing(seed):
    c = SimRaft(3, seed)

    async def scenario(c: SimRaft) -> None:
        leader = await c.wait_leader(within=3.0)
        await c.kv("r", 1, "put", "k", "1")
        gone = next(i for i in c.ids if i != leader.id)
        assert await leader.remove_server(gone, timeout=3.0) == frozenset(set(c.ids) - {gone})
        c.sim.crash(gone)  # it is no longer needed for a quorum: 2 of 2 remain
        for i in range(2, 12):
            await c.kv("r", i, "incr", "n")
        assert await c.read("n") == "10"
        c.sim.restart(gone)  # a removed node that comes back never disrupts the group
        rest = [i for i in c.ids if i != gone]
        term = leader.term
        for i in range(12, 20):
            await c.kv("r", i, "incr", "n")
        await c.wait_leader(within=2.0, among=rest)
        assert all(c.drivers[i].term == term for i in rest)
        last = next(d for d in c.alive() if d.is_leader)
        assert await last.remove_server(gone, timeout=1.0) == frozenset(rest)  # idempotent

    _run_checked(c, scenario)


@sim_seeds(3)
def test_removing_the_leader_makes_it_step_down(seed):
    c = SimRaft(3, seed)

    async def scenario(c: SimRaft) -> None:
        leader = await c.wait_leader(within=3.0)
        await c.kv("l", 1, "put", "k", "before")
        old_term = leader.term
        members = await leader.remove_server(leader.id, timeout=3.0)
        assert leader.id not in members
        await c.wait_for(lambda: not leader.is_leader, 2.0, "the removed leader steps down")
        rest = [i for i in c.ids if i != leader.id]
        new = await c.wait_leader(within=3.0, among=rest)
        assert new.id != leader.id and new.term > old_term
        await c.kv("l", 2, "put", "k", "after")
        assert await c.read("k") == "after"
        assert new.members == frozenset(rest)
        # The configuration entry is in every remaining log.
        assert any(e.kind is EntryKind.CONFIG for e in new.node.entries(new.node.first_index))

    _run_checked(c, scenario)
