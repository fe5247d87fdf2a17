"""The issue's full example (examples/thumbnails.eco) parses into the expected tree."""

from pathlib import Path

import pytest

from eco.language import SourceFile, ast, parse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "thumbnails.eco"


@pytest.fixture(scope="module")
def module() -> ast.Module:
    result = parse(SourceFile(str(EXAMPLE), EXAMPLE.read_text(encoding="utf-8")))
    assert result.diagnostics == []
    return result.module


def item(body: ast.ObjectExpr, key: str):
    found = [i for i in body.items if isinstance(i, (ast.Property, ast.Command)) and i.key.name == key]
    assert len(found) == 1, key
    return found[0]


def decl(module, kind, name):
    return next(d for d in module.decls if isinstance(d, kind) and d.name.name == name)


def test_declarations_in_order(module):
    kinds = [type(d).__name__ for d in module.decls]
    assert kinds == ["ImportDecl", "ClusterDecl", "MessageDecl", "MessageDecl", "ChannelDecl", "EcosystemDecl"]
    imp = module.decls[0]
    assert isinstance(imp.target, ast.Name) and imp.target.parts == ("std", "channels") and imp.alias is None


def test_cluster(module):
    body = decl(module, ast.ClusterDecl, "media").body
    nodes = item(body, "nodes")
    assert isinstance(nodes, ast.Command) and isinstance(nodes.terms[0], ast.ObjectExpr)
    n1 = nodes.terms[0].items[0]
    assert isinstance(n1, ast.Command) and n1.key.name == "n1"
    assert [type(t).__name__ for t in n1.terms] == ["Name", "String", "Name", "String"]
    assert n1.terms[1].value == "127.0.0.1:7101" and n1.terms[3].value == "a"
    seeds = item(body, "seeds")
    assert isinstance(seeds, ast.Command) and isinstance(seeds.terms[0], ast.ListExpr)
    assert [n.dotted for n in seeds.terms[0].items] == ["n1", "n2"]
    topo = item(body, "topology")
    assert topo.terms[0].dotted == "hyparview" and isinstance(topo.terms[1], ast.ObjectExpr)
    assert [(p.key.name, p.terms[0].value) for p in topo.terms[1].items] == [("active", 5), ("passive", 30)]
    assert topo.terms[1].multiline is False and body.multiline is True
    fd = item(body, "failure_detector").terms[1]
    hb = item(fd, "heartbeat").terms[0]
    assert isinstance(hb, ast.Duration) and hb.seconds == pytest.approx(0.2) and hb.text == "200ms"
    sec = item(body, "security")
    assert isinstance(sec, ast.Command) and len(sec.terms) == 1
    cookie = item(sec.terms[0], "cookie").terms[0]
    assert isinstance(cookie, ast.Call) and cookie.func.dotted == "env" and cookie.args[0].value == "ECO_COOKIE"
    assert item(sec.terms[0], "tls").terms[0].dotted == "off"


def test_messages(module):
    job = decl(module, ast.MessageDecl, "Job")
    assert [f.name.name for f in job.fields] == ["path", "size", "tags"]
    tags = job.fields[2]
    assert tags.type.name.dotted == "list" and tags.type.args[0].name.dotted == "str"
    assert isinstance(tags.default, ast.ListExpr) and tags.default.items == []
    assert job.fields[1].default.value == 0 and job.fields[0].default is None


def test_channel(module):
    body = decl(module, ast.ChannelDecl, "jobs").body
    assert item(body, "priority").terms[0].dotted == "normal"
    chunk = item(body, "chunk").terms[0]
    assert isinstance(chunk, ast.Size) and chunk.bytes == 256 * 1024
    carries = [i for i in body.items if isinstance(i, ast.Carries)]
    assert [[n.dotted for n in c.types] for c in carries] == [["Job", "Thumb"]]


def test_ecosystem(module):
    eco = decl(module, ast.EcosystemDecl, "thumbnails")
    assert eco.cluster is None
    body = eco.body
    coord = item(body, "coordinator").terms[0]
    assert isinstance(coord, ast.ModuleRef) and coord.text == "media.pipeline:Coordinator"
    workers = item(body, "workers").terms
    assert [type(t).__name__ for t in workers] == ["ModuleRef", "Name", "Integer"]
    assert workers[1].dotted == "x" and workers[2].value == 12
    sup = item(body, "supervision").terms[0]
    mr = item(sup, "max_restarts")
    assert isinstance(mr, ast.Property) and [type(t).__name__ for t in mr.terms] == ["Integer", "Name", "Duration"]
    dist = item(body, "distribution").terms[0]
    assert item(dist, "policy").terms[0].dotted == "cluster_wide"
    chans = item(body, "channels").terms[0]
    assert item(chans, "control").terms[0].parts == ("std", "control")
    state = item(body, "state").terms[0]
    assert [t.dotted for t in item(state, "done").terms] == ["crdt", "pn_counter"]
    cp = item(state, "checkpoint")
    assert isinstance(cp, ast.Command)
    assert [type(t).__name__ for t in cp.terms] == ["Name", "Duration", "Name", "String"]
    scaling = item(body, "scaling").terms[0]
    rng = item(scaling, "workers").terms[0]
    assert isinstance(rng, ast.RangeExpr) and (rng.low.value, rng.high.value) == (4, 64)
    rules = [i for i in scaling.items if isinstance(i, ast.WhenRule)]
    assert len(rules) == 2
    first, second = rules
    assert (first.metric.dotted, first.op, first.threshold.value, first.window.seconds) == ("mailbox_depth", ">", 100, 10)
    assert (first.action.name, first.amount.value) == ("add", 4)
    assert (second.metric.dotted, second.threshold.seconds, second.window, second.action.name) == ("idle", 60, None, "remove")
    assert [t.dotted if isinstance(t, ast.Name) else t.value for t in item(body, "register").terms] == ["as", "thumbnails"]
    assert item(body, "requires").terms[0].value == "object-store"
    assert [type(t).__name__ for t in item(body, "allow").terms] == ["Name", "Name", "Name", "String"]


def test_comments_kept(module):
    texts = [c.text for c in module.comments]
    assert "// or: full_mesh | client_server | static" in texts
    assert all(not c.own_line for c in module.comments)
    assert all(c.span.text == c.text for c in module.comments)
