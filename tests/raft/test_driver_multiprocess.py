"""Three raft_server OS processes on loopback: SIGKILL the leader while clients write.

Every acknowledged write must be readable through the new leader afterwards, and a new leader
must be elected (and accept writes) within a bounded time. Processes are always killed and
reaped (LocalRaftGroup's context manager).
"""

from __future__ import annotations

import pytest
import trio

from eco.runtime.handshake import Identity
from eco.runtime.raft_client import RaftClientError, open_raft_client
from eco.runtime.raft_local import LocalRaftGroup
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import open_tcp_transport
from eco.runtime.transport import TransportConfig

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]

COOKIE = Cookie("multiprocess-raft-cookie-0123456789")
WRITERS = 8


async def _leader(client, group, exclude=()):
    for node in group.ids:
        if node in exclude:
            continue
        try:
            status = await client.status(group.address(node))
        except RaftClientError:
            continue
        if status["is_leader"]:
            return node, status["term"]
    return None, None


async def _wait_leader(client, group, exclude=(), within=10.0):
    with trio.move_on_after(within):
        while True:
            node, term = await _leader(client, group, exclude)
            if node is not None:
                return node, term
            await trio.sleep(0.01)
    raise AssertionError(f"no leader among the survivors within {within}s")


async def test_sigkill_leader_keeps_acknowledged_writes(tmp_path, record_property):
    config = TransportConfig(Identity("eco-raft", "test-client", 1, COOKIE), keepalive_interval=0.25, connect_timeout=1.0)
    with LocalRaftGroup(3, tmp_path, COOKIE) as group:
        group.start_all()
        with trio.fail_after(90):
            async with open_tcp_transport(config) as transport:
                async with open_raft_client(transport, group.addresses(), client_id="mp", timeout=15,
                                            attempt_timeout=0.5) as client:
                    old, old_term = await _wait_leader(client, group)
                    acked: dict[str, str] = {}
                    killed_at: list[float] = []
                    first_write_after: list[float] = []

                    async def writer(w: int) -> None:
                        i = 0
                        while len(first_write_after) == 0 or i < 40:
                            i += 1
                            key, value = f"w{w}-{i}", f"v{i}"
                            await client.put(key, value)
                            acked[key] = value
                            if killed_at and not first_write_after:
                                first_write_after.append(trio.current_time())

                    async with trio.open_nursery() as nursery:
                        for w in range(WRITERS):
                            nursery.start_soon(writer, w)
                        with trio.fail_after(20):
                            while len(acked) < 200:
                                await trio.sleep(0.01)
                        killed_at.append(trio.current_time())
                        group.kill(old)
                        new, new_term = await _wait_leader(client, group, exclude={old})
                        elected = trio.current_time() - killed_at[0]
                    write_failover = first_write_after[0] - killed_at[0]
                    assert new != old and new_term > old_term
                    print(f"\nleader {old} killed: {new} elected after {elected * 1000:.0f} ms, "
                          f"first write acknowledged after {write_failover * 1000:.0f} ms, {len(acked)} writes")
                    record_property("election_ms", round(elected * 1000))
                    record_property("write_failover_ms", round(write_failover * 1000))
                    assert elected < 3.0 and write_failover < 3.0
                    # Every acknowledged write is there, read through the new leader (ReadIndex).
                    for key, value in acked.items():
                        assert await client.get(key) == value, key
                    # The killed node restarts from its SQLite log and catches up.
                    group.start(old)
                    await client.incr("after-restart")
                    with trio.fail_after(10):
                        while (await client.status(group.address(old)))["applied"] < (await client.status(group.address(new)))["applied"]:
                            await trio.sleep(0.02)
