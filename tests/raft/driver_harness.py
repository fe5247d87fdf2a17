"""Helpers for driver tests: RaftDriver + RaftMesh + KV on the simulated network."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable

import trio

from eco.runtime.raft import RaftConfig
from eco.runtime.raft_driver import NotLeaderError, RaftDriver, RaftError
from eco.runtime.raft_kv import KVStateMachine, encode_command
from eco.runtime.raft_net import RaftMesh
from eco.runtime.raft_storage import MemoryStorage, SqliteStorage
from eco.runtime.simnet import Fixed, LinkSpec, Uniform
from eco.runtime.simulator import Simulation

FAST_TRANSPORT = {"keepalive_interval": 0.1, "keepalive_misses": 3, "connect_timeout": 0.3, "handshake_timeout": 0.5}
TICK = 0.01
CONFIG = RaftConfig(election_ticks=10, heartbeat_ticks=1)


class SimRaft:
    """N raft hosts plus one scenario host on a seeded :class:`Simulation`."""

    def __init__(self, n: int, seed: int, *, storage: str = "memory", data_dir: Path | None = None,
                 link: LinkSpec = LinkSpec(delay=Uniform(0.0005, 0.002)), compact_every: int = 10_000,
                 spares: int = 0) -> None:
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        # Spare hosts start empty (peers=()) once start_spare() is called, and wait to be added.
        self.spares = [f"n{i}" for i in range(n + 1, n + spares + 1)]
        self._spare_go = {s: trio.Event() for s in self.spares}
        self.sim = Simulation(seed, link=link, transport_options=FAST_TRANSPORT, trace_messages=False)
        self.storage_kind = storage
        self.data_dir = data_dir
        self.compact_every = compact_every
        self.memory = {i: MemoryStorage() for i in self.ids + self.spares}
        self.drivers: dict[str, RaftDriver] = {}
        self.done = False
        for i in self.ids + self.spares:
            self.sim.add_host(i, self._host_main)

    def start_spare(self, name: str) -> None:
        self._spare_go[name].set()

    def _storage(self, name: str) -> Any:
        if self.storage_kind == "sqlite":
            assert self.data_dir is not None
            return SqliteStorage(self.data_dir / f"{name}.db")
        return self.memory[name]

    async def _host_main(self, transport, ctx) -> None:
        if ctx.name in self._spare_go:
            await self._spare_go[ctx.name].wait()
        mesh = RaftMesh(transport, {p: p for p in self.ids + self.spares if p != ctx.name}, rng=ctx.rng)
        storage = self._storage(ctx.name)
        peers = () if ctx.name in self.spares else self.ids
        driver = RaftDriver(ctx.name, peers, storage, mesh.send, state_machine=KVStateMachine(), config=CONFIG,
                            tick_interval=TICK, rng=ctx.rng, compact_every=self.compact_every)
        mesh.deliver = driver.deliver
        self.drivers[ctx.name] = driver
        try:
            async with trio.open_nursery() as nursery:
                await transport.listen(mesh.handle_connection)
                await nursery.start(mesh.run)
                await nursery.start(driver.run)
                await trio.sleep_forever()
        finally:
            if self.storage_kind == "sqlite":
                storage.close()

    def run(self, scenario: Callable[["SimRaft"], Awaitable[None]], max_time: float = 120.0) -> None:
        async def main(transport, ctx) -> None:
            await scenario(self)
            self.done = True

        self.sim.add_host("scenario", main)
        self.sim.run(until=lambda: self.done, max_time=max_time)

    # ------------------------------------------------------------ scenario helpers

    def alive(self) -> list[RaftDriver]:
        return [d for name, d in self.drivers.items() if self.sim._entry(name).running and d._running]

    def leaders(self) -> list[RaftDriver]:
        return [d for d in self.alive() if d.is_leader]

    async def wait_for(self, cond: Callable[[], Any], within: float, what: str) -> Any:
        with trio.move_on_after(within):
            while True:
                value = cond()
                if value:
                    return value
                await trio.sleep(0.005)
        raise AssertionError(f"{what} not reached within {within}s of simulated time")

    async def wait_leader(self, within: float = 5.0, among: list[str] | None = None) -> RaftDriver:
        def one_leader():
            live = [d for d in self.leaders() if among is None or d.id in among]
            if len(live) != 1:
                return None
            leader = live[0]
            # Everyone reachable agrees (same term, same leader).
            peers = [d for d in self.alive() if among is None or d.id in among]
            return leader if all(d.leader_id == leader.id and d.term == leader.term for d in peers) else None

        return await self.wait_for(one_leader, within, "a single agreed leader")

    async def kv(self, client: str, request_id: int, op: str, key: str, value: Any = None,
                 within: float = 10.0) -> Any:
        """Run one command through whoever leads, retrying (same request id) until it is applied."""
        cmd = encode_command(client, request_id, op, key, value)
        with trio.move_on_after(within):
            while True:
                leaders = self.leaders()
                if leaders:
                    try:
                        return (await leaders[0].propose(cmd, timeout=0.5)).result
                    except (NotLeaderError, RaftError):
                        pass
                await trio.sleep(0.01)
        raise AssertionError(f"{op} {key} by {client}#{request_id} not applied within {within}s")

    async def read(self, key: str, within: float = 10.0) -> Any:
        with trio.move_on_after(within):
            while True:
                leaders = self.leaders()
                if leaders:
                    try:
                        return await leaders[0].read(key, timeout=0.5)
                    except RaftError:
                        pass
                await trio.sleep(0.01)
        raise AssertionError(f"read of {key} failed for {within}s")
