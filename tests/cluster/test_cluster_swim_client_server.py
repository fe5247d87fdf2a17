"""SWIM under ``topology client_server``: real Nodes and drivers on the simulated network (seeded).

Clients probe servers only, servers probe everyone, indirect probes go through
servers, and no client ever sends to (or links to) another client; clients
still learn about each other (updates piggyback on the servers' probes).
"""

from __future__ import annotations

import random

import pytest

from eco.plan.models import ClientServerTopology, SwimDetector
from eco.runtime.membership import Member, MemberState, Send
from eco.runtime.simulator import sim_seeds
from eco.runtime.swim import Ping, PingReq, SwimNode, Sync

from cluster_harness import SimCluster  # noqa: E402  (same directory)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("quiet_transport_logs")]

SERVERS = ("n01", "n02")
TOPOLOGY = ClientServerTopology(servers=SERVERS)
SWIM = SwimDetector(probe_interval=0.2, probe_timeout=0.08, indirect_probes=2, suspicion_timeout=1.5)
DETECTION_BOUND = 5.0  # silent crash -> "down" on every survivor (up to two probe rounds, suspicion, dissemination)




def _watch_sends(c: SimCluster, wrong: list) -> None:
    """Record every membership message a client addresses to another client."""
    for name in c.names:
        m = c.members[name]
        if name in SERVERS:
            continue
        original = m._send

        def send(to, msg, name=name, original=original):
            if to not in SERVERS:
                wrong.append((name, to, type(msg).__name__))
            original(to, msg)

        m._send = send


@sim_seeds(3)
def test_clients_probe_servers_and_crashes_and_refutations_are_seen_by_all(seed):
    c = SimCluster(6, seed=seed, detector=SWIM, topology=TOPOLOGY)
    clients = [n for n in c.names if n not in SERVERS]
    wrong: list = []
    client_links: set = set()
    c.sim.at(0.05, lambda: _watch_sends(c, wrong))
    # n04 cannot reach n01 (nor n01 n04) for 2 s: the indirect probes through n02 vouch for both
    c.sim.at(3.0, lambda: c.sim.partition({"n04"}, {"n01"}))
    c.sim.at(5.0, c.sim.heal)

    def cut() -> None:
        """n01 drops its connection to n04, which cannot redial for 0.4 s: each suspects the other
        and both refute (n02's piggybacked updates, or the full-state sync of the new link)."""
        c.sim.partition({"n04"}, {"n01"})
        c.members["n01"].node.disconnect("n04", "test: connection cut")

    c.sim.at(6.0, cut)
    c.sim.at(6.4, c.sim.heal)
    c.crash_at(9.0, "n06")  # a client
    c.crash_at(14.0, "n02")  # a server

    def done() -> bool:
        for name in clients:
            if name in c.members and c.sim._hosts[name].running:
                client_links.update((name, p) for p in c.members[name].node.peers if p not in SERVERS)
        return "n02" in c.crashed_at and c.all_see("n02", "down") and c.all_see("n06", "down") \
            and c.sim.now > 14.0 + DETECTION_BOUND

    c.sim.run(until=done, max_time=25)
    assert all(c.members[n].detector == "swim" for n in c.names)
    assert wrong == [] and client_links == set()
    # converged before the faults: every node saw every other up
    for observer in c.names:
        assert all(c.first_time(observer, n, "up") is not None for n in c.names if n != observer), observer
    # the one-link partition: nobody was suspected (indirect probes went through the other server)
    for observer in c.names:
        for accused in c.names:
            assert c.first_time(observer, accused, "suspect", after=3.0) is None or \
                c.first_time(observer, accused, "suspect", after=3.0) >= 6.0, (observer, accused)
    # the cut: n04 was suspected, refuted with a higher incarnation, and never declared down
    suspected = [o for o in c.names if c.first_time(o, "n04", "suspect", after=6.0) is not None]
    assert suspected, "the cut was not noticed: the test shows nothing"
    for observer in c.alive():
        if observer != "n04":
            assert c.first_time(observer, "n04", "down") is None, observer
            state, incarnation = c.state(observer, "n04")
            assert state == "up" and incarnation > 1, (observer, state, incarnation)
    assert all(c.first_time(o, "n01", "down") is None for o in c.alive())
    # crashes of a client and of a server are seen by every survivor, clients included
    for victim in ("n06", "n02"):
        crashed = c.crashed_at[victim]
        for observer in c.alive():
            detected = c.first_time(observer, victim, "down", after=crashed)
            assert detected is not None and detected - crashed <= DETECTION_BOUND, (victim, observer, detected)


def _core(name: str) -> SwimNode:
    """``name``'s SWIM core, knowing n01..n05 as up."""
    core = SwimNode(name, SWIM, rng=random.Random(1), servers=SERVERS)
    records = tuple(Member(other, 1, MemberState.UP) for other in ("n01", "n02", "n03", "n04", "n05") if other != name)
    core.receive(0.0, "n01", Sync(records, reply=True))
    return core


def _sent(effects, kind) -> list[str]:
    return [e.to for e in effects if isinstance(e, Send) and isinstance(e.msg, kind)]


def test_the_core_probes_and_asks_only_what_its_role_allows():
    client, server = _core("n04"), _core("n01")
    assert client.is_client and not server.is_client
    probed = {to for now in range(20) for to in _sent(client.timer(float(now), ("probe",)), Ping)}
    assert probed == set(SERVERS)  # a client probes servers only, all of them over time
    probed = {to for now in range(20) for to in _sent(server.timer(float(now), ("probe",)), Ping)}
    assert probed == {"n02", "n03", "n04", "n05"}  # a server probes everyone
    # A server's probe of a client times out: the indirect probes go to the other server only.
    for now in range(30, 60):
        effects = server.timer(float(now), ("probe",))
        ping = next(e for e in effects if isinstance(e, Send) and isinstance(e.msg, Ping))
        if ping.to not in SERVERS:
            break
    assert _sent(server.timer(now + 0.1, ("probe_timeout", ping.msg.seq)), PingReq) == ["n02"]
    # A client's indirect probes of a server go through the other server (never a client), and its
    # syncs and leave go to servers only.
    for now in range(60, 90):
        effects = client.timer(float(now), ("probe",))
        ping = next(e for e in effects if isinstance(e, Send) and isinstance(e.msg, Ping))
        helpers = _sent(client.timer(now + 0.1, ("probe_timeout", ping.msg.seq)), PingReq)
        assert helpers == [s for s in SERVERS if s != ping.to]
    syncs = {to for now in range(30) for to in _sent(client.timer(float(now), ("sync",)), Sync)}
    assert syncs and syncs <= set(SERVERS)
    assert {e.to for e in client.leave(90.0)} == set(SERVERS)
