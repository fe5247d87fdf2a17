"""Three RaftServers (driver + mesh + KV) in one process over real loopback TCP, with RaftClient."""

from __future__ import annotations


import trio

from eco.runtime.handshake import Identity
from eco.runtime.raft_client import RaftClientError, open_raft_client
from eco.runtime.raft_server import RaftServer
from eco.runtime.launcher import free_ports
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import open_tcp_transport
from eco.runtime.transport import TransportConfig

COOKIE = Cookie("tcp-test-cookie-0123456789")


def _config(name: str) -> TransportConfig:
    return TransportConfig(Identity("eco-raft", name, 1, COOKIE), keepalive_interval=0.25, connect_timeout=1.0)


async def test_three_servers_on_loopback(tmp_path):
    ids = ["n1", "n2", "n3"]
    addresses = {i: f"127.0.0.1:{p}" for i, p in zip(ids, free_ports(3))}
    servers = {}
    for i in ids:
        (tmp_path / i).mkdir()
        servers[i] = RaftServer(i, {p: a for p, a in addresses.items() if p != i}, tmp_path / i)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            scopes = {}
            for i in ids:
                scopes[i] = trio.CancelScope()

                async def run(i=i):
                    with scopes[i]:
                        await servers[i].serve(_config(i), addresses[i])

                nursery.start_soon(run)
            async with open_tcp_transport(_config("client")) as transport:
                async with open_raft_client(transport, list(addresses.values()), client_id="t", timeout=10) as client:
                    results = []

                    async def incr(k: int) -> None:
                        results.append(await client.incr("n"))

                    async with trio.open_nursery() as inner:
                        for k in range(50):
                            inner.start_soon(incr, k)
                    assert sorted(results) == list(range(1, 51))
                    await client.put("k", "v")
                    assert await client.get("k") == "v"
                    # Stop the leader: a new one takes over and keeps every acknowledged write.
                    leader = next(i for i in ids if servers[i].driver.is_leader)
                    scopes[leader].cancel()
                    assert await client.incr("n") == 51
                    assert await client.get("k") == "v"
                    new = next(i for i in ids if i != leader and servers[i].driver.is_leader)
                    assert servers[new].driver.term > 1
                    try:
                        await client.request("frobnicate", "k")
                    except RaftClientError as exc:
                        assert "unknown operation" in str(exc)
                    else:
                        raise AssertionError("an unknown operation must be refused")
            nursery.cancel_scope.cancel()
