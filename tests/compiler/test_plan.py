"""The issue's sketch compiles to the expected, fully resolved plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from eco.compiler.driver import compile_file, compile_source
from eco.plan import load_plan, plan_from_json, plan_to_json, save_plan

SKETCH = Path(__file__).with_name("sketch.eco")


@pytest.fixture(scope="module")
def result():
    return compile_file(SKETCH)


@pytest.fixture(scope="module")
def plan(result):
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


def test_sketch_has_no_errors_and_one_expected_warning(result):
    assert not result.has_errors
    # "object-store" is not registered by any ecosystem of this plan: an external service.
    assert [(d.code, d.severity.label) for d in result.diagnostics] == [("ECO4007", "warning")]
    assert result.module is not None and result.path == str(SKETCH)
    assert str(SKETCH) in result.sources


def test_cluster(plan):
    media = plan.cluster("media")
    assert [(n.name, n.host, n.port, n.zone) for n in media.nodes] == [
        ("n1", "127.0.0.1", 7101, "a"), ("n2", "127.0.0.1", 7102, "a"), ("n3", "127.0.0.1", 7103, "b"),
    ]
    assert media.seeds == ("n1", "n2")
    assert media.topology.kind == "hyparview"
    assert (media.topology.active, media.topology.passive) == (5, 30)
    assert media.topology.shuffle_interval == 10.0  # default applied
    fd = media.failure_detector
    assert (fd.kind, fd.threshold, fd.heartbeat, fd.acceptable_pause, fd.min_std_dev) == ("phi", 8.0, 0.2, 1.0, 0.1)
    assert media.security.cookie.source == "env" and media.security.cookie.name == "ECO_COOKIE"
    assert media.security.tls is None


def test_messages_and_channels(plan):
    job = plan.message("Job")
    assert [(f.name, f.type.render(), f.has_default, f.default) for f in job.fields] == [
        ("path", "str", False, None), ("size", "int", True, 0), ("tags", "list[str]", True, []),
    ]
    assert plan.message("Thumb").fields[1].type.name == "bytes"
    jobs = plan.channel("jobs")
    assert (jobs.priority, jobs.delivery, jobs.ordering, jobs.parallelism, jobs.chunk) == (
        "normal", "at_least_once", "fifo", 4, 256 * 1024)
    assert jobs.carries == ("Job", "Thumb")
    control = plan.channel("std.control")
    assert (control.priority, control.delivery, control.ordering) == ("high", "at_least_once", "fifo")
    # Only referenced standard declarations enter the plan.
    assert [c.name for c in plan.channels] == ["jobs", "std.control"]
    assert plan.sources == (str(SKETCH), "std.channels")


def test_ecosystem(plan):
    eco = plan.ecosystem("thumbnails")
    assert eco.cluster == "media"
    assert (eco.coordinator.text, eco.workers.text, eco.worker_count) == (
        "media.pipeline:Coordinator", "media.pipeline:Resizer", 12)
    sup = eco.supervision
    assert (sup.strategy, sup.restart, sup.max_restarts, sup.within, sup.shutdown) == (
        "one_for_one", "permanent", 5, 10.0, 5.0)
    assert eco.isolation == "process"
    assert (eco.distribution.policy, eco.distribution.placement, eco.distribution.spread) == (
        "cluster_wide", "least_loaded", "zone")
    assert eco.channels == {"control": "std.control", "data": "jobs"}
    assert [(e.name, e.kind, e.crdt, e.ttl) for e in eco.state.entries] == [
        ("done", "crdt", "pn_counter", None), ("cache", "gossip_cache", None, 30.0), ("leader", "consensus", None, None),
    ]
    assert (eco.state.checkpoint.every, eco.state.checkpoint.url) == (5.0, "sqlite:///tmp/eco/thumbnails.db")
    assert (eco.partition.resolver, eco.partition.minority, eco.partition.conflicts) == (
        "keep_majority", "read_only", "crdt_merge")
    sc = eco.scaling
    assert (sc.min_workers, sc.max_workers) == (4, 64)
    assert [(r.metric, r.op, r.threshold, r.window, r.action, r.amount) for r in sc.rules] == [
        ("mailbox_depth", ">", 100.0, 10.0, "add", 4), ("idle", ">", 60.0, 0.0, "remove", 2),
    ]
    assert (sc.predict.kind, sc.predict.horizon) == ("holt", 120.0)
    assert (eco.backpressure.mailbox, eco.backpressure.overflow) == (1000, "block")
    assert eco.register_as == "thumbnails"
    assert eco.requires == ("object-store",)
    assert [(r.label, r.value) for r in eco.allow_spawn_from] == [("zone", "a")]


def test_plan_round_trips_through_json(plan, tmp_path):
    assert plan_from_json(plan_to_json(plan)) == plan
    save_plan(plan, tmp_path / "plan.json")
    assert load_plan(tmp_path / "plan.json") == plan


def test_defaults_are_applied_for_a_minimal_file():
    result = compile_source(
        'cluster c { nodes { n1 at "127.0.0.1:7101" } }\n'
        "channel jobs { }\n"
        "ecosystem e { coordinator: a.b:C, workers: a.b:W, channels { d: jobs } }\n"
    )
    plan = result.plan
    assert plan is not None, [d.message for d in result.diagnostics]
    eco = plan.ecosystem("e")
    assert eco.cluster == "c" and eco.worker_count == 1 and eco.isolation == "task"
    assert eco.scaling is None and eco.partition.resolver == "keep_majority"
    assert plan.channel("jobs").chunk == 262144 and plan.channel("jobs").carries == ()
    assert plan.cluster("c").topology.kind == "full_mesh"


def test_secrets_are_references_never_values():
    result = compile_source(
        'cluster c {\n  nodes { n1 at "127.0.0.1:7101" }\n'
        '  security { cookie: file("/etc/eco/cookie"), tls: { cert: "n.pem", key: "n.key" } }\n}\n'
    )
    sec = result.plan.cluster("c").security
    assert (sec.cookie.source, sec.cookie.name) == ("file", "/etc/eco/cookie")
    assert (sec.tls.cert, sec.tls.key, sec.tls.ca) == ("n.pem", "n.key", None)


def test_plan_is_none_when_there_are_errors():
    result = compile_source("channel jobs { priority: urgent }\n")
    assert result.has_errors and result.plan is None


def test_variants_lower():
    result = compile_source(
        'cluster c {\n  nodes {\n    n1 at "[::1]:7101" labels { rack: "r1" }\n    n2 at "h2:7102" labels { rack: "r2" }\n'
        '    n3 at "h3:7103" labels { rack: "r1" }\n  }\n'
        "  topology client_server { servers: [n1] }\n"
        "  failure_detector swim { probe_interval: 2s, probe_timeout: 500ms, indirect_probes: 2 }\n}\n"
        "ecosystem e {\n  coordinator: a:C\n  workers: a:W x 3\n"
        "  distribution { policy: explicit_nodes [n1, n3], spread: rack, placement: topology_aware }\n"
        "  partition { resolver: static_quorum(2), minority: halt, conflicts: last_write_wins }\n"
        "  allow spawn from node n2\n  allow spawn from label rack \"r2\"\n"
        "  requires \"db\"\n}\n"
        'ecosystem db { coordinator: a:C, workers: a:W, register as "db", state { s: crdt or_map } }\n'
    )
    assert not result.has_errors, [d.message for d in result.diagnostics]
    plan = result.plan
    c = plan.cluster("c")
    assert c.nodes[0].host == "::1" and c.nodes[0].labels == {"rack": "r1"}
    assert c.topology.servers == ("n1",)
    assert (c.failure_detector.kind, c.failure_detector.probe_timeout, c.failure_detector.indirect_probes) == (
        "swim", 0.5, 2)
    e = plan.ecosystem("e")
    assert e.distribution.nodes == ("n1", "n3") and e.distribution.spread == "rack"
    assert (e.partition.resolver, e.partition.quorum) == ("static_quorum", 2)
    assert [(r.label, r.value) for r in e.allow_spawn_from] == [("node", "n2"), ("rack", "r2")]
