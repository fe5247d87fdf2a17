"""ClusterMembership in real Nodes over the simulated network (seeded; rerun with ECO_SIM_SEED)."""

from __future__ import annotations


import pytest

from eco.plan.models import PhiDetector, SwimDetector
from eco.runtime.simnet import LinkSpec, Uniform
from eco.runtime.simulator import sim_seeds

from cluster_harness import LAN_PHI, SimCluster

LAN_SWIM = SwimDetector(probe_interval=0.5, probe_timeout=0.2, indirect_probes=3, suspicion_timeout=1.5)
DETECTORS = {"phi": LAN_PHI, "swim": LAN_SWIM}
# Worst case from the last sign of life to "down" everywhere, LAN settings (see docs/membership.md).
DETECTION_BOUND = {"phi": 3.0, "swim": 5.0}


pytestmark = pytest.mark.usefixtures("quiet_transport_logs")  # (crashes make every peer log a keepalive timeout: expected here)


@pytest.mark.parametrize("kind", ["phi", "swim"])
@sim_seeds(2)
def test_joins_converge_with_labels_and_addresses(kind, seed):
    c = SimCluster(5, seed=seed, detector=DETECTORS[kind])
    c.sim.run(until=c.converged, max_time=10)
    view = {m.name: m for m in c.members["n05"].members}
    assert sorted(view) == c.names
    assert view["n02"].labels == {"zone": "z1", "rack": "r1"}
    assert view["n02"].address == "n02" and view["n02"].incarnation == 1
    assert all(m.state.label == "up" for m in view.values() if m.name != "n05")


@pytest.mark.parametrize("kind", ["phi", "swim"])
@sim_seeds(2)
def test_crash_is_detected_by_every_survivor_within_the_bound(kind, seed):
    c = SimCluster(5, seed=seed, detector=DETECTORS[kind])
    c.crash_at(3.0, "n03")
    c.sim.run(until=lambda: "n03" in c.crashed_at and c.all_see("n03", "down"), max_time=20)
    crashed = c.crashed_at["n03"]
    for observer in c.alive():
        detected = c.first_time(observer, "n03", "down", after=crashed)
        assert detected is not None and detected - crashed <= DETECTION_BOUND[kind], (observer, detected, crashed)
        assert all(c.state(observer, n)[0] == "up" for n in c.alive() if n != observer), "a survivor was declared down"


@pytest.mark.parametrize("kind", ["phi", "swim"])
@sim_seeds(2)
def test_partition_is_detected_then_heals_with_new_incarnations(kind, seed):
    c = SimCluster(5, seed=seed, detector=DETECTORS[kind])
    small, big = ["n01", "n02"], ["n03", "n04", "n05"]
    c.sim.at(3.0, lambda: c.sim.partition(small, big))
    c.sim.at(12.0, c.sim.heal)
    both_sides_split = lambda: all(c.all_see(n, "down", observers=small) for n in big) and all(
        c.all_see(n, "down", observers=big) for n in small
    )
    phase = {"split": False}

    def done() -> bool:
        if not phase["split"]:
            phase["split"] = both_sides_split()
            return False
        return c.sim.now > 12.0 and c.converged()

    c.sim.run(until=done, max_time=40)
    # Coming back meant outbidding the "down" rumour: a higher incarnation than before.
    assert all(c.state("n01", n)[1] > 1 for n in big)
    assert all(c.state("n05", n)[1] > 1 for n in small)


@pytest.mark.parametrize("kind", ["phi", "swim"])
@sim_seeds(2)
def test_graceful_leave_is_seen_at_once(kind, seed):
    c = SimCluster(5, seed=seed, detector=DETECTORS[kind])
    c.leave_at(3.0, "n04")
    c.sim.run(until=lambda: "n04" in c.left_at and c.all_see("n04", "left", observers=[n for n in c.names if n != "n04"]),
              max_time=10)
    left = c.left_at["n04"]
    for observer in c.names:
        if observer != "n04":
            seen = c.first_time(observer, "n04", "left", after=left - 0.01)
            assert seen is not None and seen - left < 0.1, "peers must learn a leave at once, not by timeout"
            assert c.first_time(observer, "n04", "down") is None and c.first_time(observer, "n04", "suspect") is None


@pytest.mark.parametrize("kind", ["phi", "swim"])
@sim_seeds(2)
def test_restarted_node_rejoins_as_a_new_incarnation(kind, seed):
    c = SimCluster(5, seed=seed, detector=DETECTORS[kind])
    c.crash_at(3.0, "n03")
    c.sim.at(8.0, lambda: c.sim.restart("n03"))
    c.sim.run(until=lambda: c.sim.now > 8.0 and c.all_see("n03", "up", incarnation=2) and c.converged(), max_time=30)
    for observer in c.names:
        if observer != "n03":
            kinds = [k for k, _, _ in c.seen[observer]["n03"]]
            assert "down" in kinds and kinds[-1] == "up"
    assert c.members["n03"].member("n03").incarnation == 2


@pytest.mark.parametrize("kind", ["phi", "swim"])
@sim_seeds(2)
def test_no_lasting_false_positive_under_ten_percent_loss(kind, seed):
    c = SimCluster(5, seed=seed, detector=DETECTORS[kind], drop=0.10)
    lossless = LinkSpec(delay=Uniform(0.001, 0.005))

    def stop_loss() -> None:
        for a in c.names:
            for b in c.names:
                if a < b:
                    c.sim.set_link(a, b, lossless)

    c.sim.at(30.0, stop_loss)
    c.sim.run(until=lambda: c.sim.now > 30.0 and c.converged(), max_time=45)
    # Suspicions may come and go under loss; none may last once the loss stops.
    downs = {(node, inc) for log in c.seen.values() for node, events in log.items() for k, inc, _ in events if k == "down"}
    assert len(downs) <= 2, f"{len(downs)} false down verdicts in 30s of 10% loss: {sorted(downs)}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["phi", "swim"])
def test_fifty_nodes_join_and_detect_a_crash(kind):
    detector = DETECTORS[kind] if kind == "swim" else PhiDetector(heartbeat=0.5, acceptable_pause=1.0)
    c = SimCluster(50, seed=3, detector=detector)
    c.crash_at(4.0, "n17")
    c.sim.run(until=lambda: "n17" in c.crashed_at and c.all_see("n17", "down"), max_time=40)
    crashed = c.crashed_at["n17"]
    latest = max(c.first_time(o, "n17", "down", after=crashed) for o in c.alive())
    assert latest - crashed <= 8.0
    assert all(c.all_see(n, "up") for n in c.alive())


@sim_seeds(2)
def test_client_server_clients_link_to_servers_only_and_learn_the_rest_by_gossip(seed):
    from eco.plan.models import ClientServerTopology

    c = SimCluster(5, seed=seed, topology=ClientServerTopology(servers=("n01", "n02")))
    c.crash_at(4.0, "n05")
    c.sim.run(until=lambda: "n05" in c.crashed_at and c.all_see("n05", "down"), max_time=20)
    for client in ["n03", "n04"]:
        assert c.members[client]._links <= {"n01", "n02"}, c.members[client]._links
    # n04 never talked to n05, yet knows it crashed (a server judged it, gossip told the rest).
    assert c.first_time("n04", "n05", "down") - c.crashed_at["n05"] <= DETECTION_BOUND["phi"]


@sim_seeds(2)
def test_static_topology_links_every_declared_node(seed):
    from eco.plan.models import StaticTopology

    c = SimCluster(4, seed=seed, topology=StaticTopology())
    meshed = lambda: all(n in c.members and c.members[n]._links == set(c.names) - {n} for n in c.names)
    c.sim.run(until=lambda: c.converged() and meshed(), max_time=10)
    assert c.members["n03"]._dialling >= {"n01", "n02", "n04"}  # dialled from the plan, not learnt
