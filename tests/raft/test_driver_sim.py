"""RaftDriver + RaftMesh on the simulated network: elections, replication, crashes, partitions, restarts."""

from __future__ import annotations

import pytest
import trio

from driver_harness import SimRaft

from eco.runtime.raft_driver import LeaderChange, NotLeaderError, RaftTimeout
from eco.runtime.raft_kv import encode_command
from eco.runtime.simulator import sim_seeds


@pytest.mark.parametrize("n", [3, 5])
@sim_seeds(3)
def test_election_and_replication(n, seed):
    c = SimRaft(n, seed)

    async def scenario(c: SimRaft) -> None:
        leader = await c.wait_leader(within=3.0)
        assert leader.term >= 1
        for i in range(1, 21):
            assert await c.kv("a", i, "incr", "x") == i
        assert await c.read("x") == "20"
        # Every replica applies everything.
        await c.wait_for(lambda: all(d.state_machine.get("x") == "20" for d in c.alive()), 2.0, "replication")

    c.run(scenario)


@sim_seeds(3)
def test_concurrent_proposals_are_batched(seed):
    c = SimRaft(3, seed)

    async def scenario(c: SimRaft) -> None:
        leader = await c.wait_leader()
        before = leader.stats["proposal_batches"]
        results = []

        async def client(k: int) -> None:
            for r in range(1, 6):
                res = await leader.propose(encode_command(f"c{k}", r, "incr", "n"), timeout=2.0)
                results.append(res.result)

        async with trio.open_nursery() as nursery:
            for k in range(40):
                nursery.start_soon(client, k)
        assert sorted(results) == list(range(1, 201))
        batches = leader.stats["proposal_batches"] - before
        assert batches < 100, f"200 concurrent proposals took {batches} appends"

    c.run(scenario)


@sim_seeds(3)
def test_retried_command_is_applied_once(seed):
    c = SimRaft(3, seed)

    async def scenario(c: SimRaft) -> None:
        leader = await c.wait_leader()
        cmd = encode_command("retry", 1, "incr", "k", 5)
        first = await leader.propose(cmd, timeout=2.0)
        again = await leader.propose(cmd, timeout=2.0)  # the same session request: a retry
        assert (first.result, first.duplicate) == (5, False)
        assert (again.result, again.duplicate) == (5, True)
        assert await c.read("k") == "5"

    c.run(scenario)


@sim_seeds(4)
def test_leader_crash_elects_new_leader_and_keeps_acknowledged_writes(seed):
    c = SimRaft(3, seed)

    async def scenario(c: SimRaft) -> None:
        old = await c.wait_leader()
        for i in range(1, 11):
            await c.kv("w", i, "put", f"k{i}", f"v{i}")
        c.sim.crash(old.id)
        t0 = trio.current_time()
        new = await c.wait_leader(within=3.0)
        assert new.id != old.id and new.term > old.term
        assert trio.current_time() - t0 < 1.0  # 100-200 ms election timeout plus pre-vote
        for i in range(1, 11):
            assert await c.read(f"k{i}") == f"v{i}"
        await c.kv("w", 11, "put", "after", "crash")
        c.sim.restart(old.id)
        await c.wait_for(lambda: old.id in {d.id for d in c.alive()} and
                         c.drivers[old.id].state_machine.get("after") == "crash", 5.0, "restarted node catches up")

    c.run(scenario)


@sim_seeds(4)
def test_partitioned_leader_is_fenced_and_rejoins(seed):
    c = SimRaft(5, seed)

    async def scenario(c: SimRaft) -> None:
        old = await c.wait_leader()
        await c.kv("p", 1, "put", "a", "1")
        changes: list[LeaderChange] = []

        async def watch() -> None:
            async for change in old.leader_changes():
                changes.append(change)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            minority = [old.id, next(i for i in c.ids if i != old.id)]
            majority = [i for i in c.ids if i not in minority]
            c.sim.partition(minority, majority)
            # A write on the minority side never commits.
            with pytest.raises(RaftTimeout if old.is_leader else NotLeaderError):
                if not old.is_leader:
                    raise NotLeaderError(None)
                await old.propose(encode_command("p", 2, "put", "a", "minority"), timeout=0.5)
            new = await c.wait_leader(within=3.0, among=majority)
            assert new.term > old.term or not old.is_leader
            await c.kv("p", 3, "put", "a", "majority")
            # Check-quorum: the old leader steps down on its own, which the term-change feed reports.
            await c.wait_for(lambda: not old.is_leader, 2.0, "old leader steps down")
            c.sim.heal()
            await c.wait_for(lambda: old.leader_id == new.id and old.term == new.term, 5.0, "old leader rejoins")
            await c.wait_for(lambda: old.state_machine.get("a") == "majority", 5.0, "old leader converges")
            nursery.cancel_scope.cancel()
        assert changes[0].is_leader and not changes[-1].is_leader
        assert changes[-1].term >= new.term
        assert await c.read("a") == "majority"

    c.run(scenario)


@sim_seeds(3)
def test_restart_everyone_from_sqlite(seed, tmp_path):
    c = SimRaft(3, seed, storage="sqlite", data_dir=tmp_path, compact_every=15)

    async def scenario(c: SimRaft) -> None:
        await c.wait_leader()
        for i in range(1, 41):  # more than compact_every: restarts load a snapshot plus a log tail
            await c.kv("s", i, "incr", "total")
        for name in c.ids:
            c.sim.crash(name)
        for name in c.ids:
            c.sim.restart(name)
        await c.wait_for(lambda: len(c.alive()) == 3, 2.0, "restart")
        await c.wait_leader(within=3.0)
        assert await c.read("total") == "40"
        assert await c.kv("s", 41, "incr", "total") == 41
        assert await c.kv("s", 40, "incr", "total") is None  # an old request id is never re-applied
        assert await c.read("total") == "41"

    c.run(scenario)
