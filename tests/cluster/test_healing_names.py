"""Cluster-wide names on running nodes: register, requires (with timeout), failover; over loopback TCP."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from eco.plan import Cluster, NodeSpec, Plan
from eco.runtime.node_ecosystem import EcosystemService
from eco.runtime.node_names import NameTimeout

from test_healing import running_node  # noqa: E402  (same directory)

pytestmark = pytest.mark.timeout(30)


def _plan(names):
    return Plan(clusters=(Cluster(name="t", nodes=tuple(NodeSpec(name=n, host="127.0.0.1", port=0) for n in names)),))


async def _until(names, name, node):
    while (entry := names.lookup(name)) is None or entry.node != node:
        await names.wait_changed()
    return entry


async def test_register_requires_timeout_and_failover():
    with trio.fail_after(20):
        async with running_node("n1") as n1, running_node("n2", [str(n1.address)]) as n2, \
                running_node("n3", [str(n1.address), str(n2.address)]) as n3:
            plan = _plan(["n1", "n2", "n3"])
            s1, s2, s3 = (EcosystemService(n, plan, plan.clusters[0]) for n in (n1, n2, n3))
            async with trio.open_nursery() as nursery:
                for s in (s1, s2, s3):
                    await nursery.start(s.run)
                await n3.wait_connected(["n1", "n2"])
                # requires: times out with a clear message naming what is registered
                with pytest.raises(NameTimeout, match=r'no ecosystem registered as "svc" within 0.1s \(registered names: none\)'):
                    await s3.names.wait_for("svc", 0.1)
                # a waiter on n3 is woken by a registration made on n2
                with n2.kernel.inbox() as entry_point:
                    async with trio.open_nursery() as waiters:
                        got = []

                        async def wait():
                            got.append(await s3.names.wait_for("svc", 10))

                        waiters.start_soon(wait)
                        await trio.testing.wait_all_tasks_blocked()
                        s2.names.register("svc", entry_point.pid)
                    assert got[0].pid == entry_point.pid and got[0].node == "n2"
                    assert (await _until(s1.names, "svc", "n2")).pid == entry_point.pid
                # failover: n2 dies; its registration stops resolving, a re-registration on n1 wins everywhere
                n2.stop()
                while s3.names.lookup("svc") is not None:
                    await s3.names.wait_changed()
                with n1.kernel.inbox() as backup:
                    s1.names.register("svc", backup.pid)
                    entry = await _until(s3.names, "svc", "n1")
                    assert entry.pid == backup.pid and entry.epoch >= 1
                    assert s3.names.whereis("svc") == backup.pid
                nursery.cancel_scope.cancel()
