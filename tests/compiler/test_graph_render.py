"""`ecoc graph`: DOT and Mermaid renderings of a plan."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from eco.compiler.graph import render_graph
from eco.plan.models import (
    Channel,
    Cluster,
    ComponentRef,
    Distribution,
    Ecosystem,
    FieldType,
    MessageField,
    MessageType,
    NodeSpec,
    Plan,
    Scaling,
)


def _plan(channel_name: str = "jobs", message_name: str = "Job") -> Plan:
    return Plan(
        clusters=(
            Cluster(
                name="media",
                nodes=(
                    NodeSpec(name="n1", host="127.0.0.1", port=7101, zone="a"),
                    NodeSpec(name="n2", host="127.0.0.1", port=7102, zone="a"),
                    NodeSpec(name="n3", host="127.0.0.1", port=7103, zone="b"),
                ),
                seeds=("n1", "n2"),
            ),
        ),
        messages=(
            MessageType(name=message_name, fields=(MessageField(name="path", type=FieldType(name="str")),)),
            MessageType(name="Thumb", fields=(MessageField(name="digest", type=FieldType(name="bytes")),)),
        ),
        channels=(
            Channel(name=channel_name, carries=(message_name, "Thumb"), delivery="at_least_once"),
            Channel(name="std.control", priority="high"),
        ),
        ecosystems=(
            Ecosystem(
                name="thumbnails",
                cluster="media",
                coordinator=ComponentRef(module="media.pipeline", cls="Coordinator"),
                workers=ComponentRef(module="media.pipeline", cls="Resizer"),
                worker_count=12,
                channels={"control": "std.control", "data": channel_name},
                scaling=Scaling(min_workers=4, max_workers=64),
            ),
            Ecosystem(
                name="pinned",
                cluster="media",
                coordinator=ComponentRef(module="m", cls="C"),
                workers=ComponentRef(module="m", cls="W"),
                distribution=Distribution(policy="explicit_nodes", nodes=("n1", "n3")),
            ),
        ),
    )


# ------------------------------------------------------- a tiny DOT reader


_DOT_TOKEN = re.compile(r'\s+|//[^\n]*|"(?:[^"\\]|\\.)*"|->|[{}\[\];,=]|[A-Za-z_][A-Za-z0-9_.]*|-?[0-9.]+')


def _dot_tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _DOT_TOKEN.match(text, pos)
        assert m is not None, f"DOT lexical error at {text[pos:pos + 30]!r}"
        pos = m.end()
        if not m.group().isspace() and not m.group().startswith("//"):
            tokens.append(m.group())
    return tokens


def _parse_dot(text: str) -> dict:
    """Checks the statement grammar we emit; returns nodes (per subgraph) and edges."""
    toks = _dot_tokens(text)
    assert toks[:2] == ["digraph", "eco"] and toks[2] == "{" and toks[-1] == "}"
    nodes: dict[str, str | None] = {}
    edges: list[tuple[str, str, dict]] = []
    subgraphs: dict[str, list[str]] = {}
    stack: list[str | None] = [None]
    i = 3

    def attrs(i):
        out = {}
        assert toks[i] == "["
        i += 1
        while toks[i] != "]":
            key, eq, value = toks[i : i + 3]
            assert eq == "=", toks[i : i + 3]
            out[key] = value
            i += 3
            if toks[i] == ",":
                i += 1
        return out, i + 1

    while i < len(toks) - 1:
        tok = toks[i]
        if tok == "subgraph":
            name = toks[i + 1]
            assert toks[i + 2] == "{"
            subgraphs[name] = []
            stack.append(name)
            i += 3
        elif tok == "}":
            assert stack.pop() is not None, "unbalanced braces"
            i += 1
        elif tok in ("graph", "node", "edge"):
            _, i = attrs(i + 1)
            assert toks[i] == ";"
            i += 1
        elif toks[i + 1] == "=":
            assert toks[i + 3] == ";"
            i += 4
        elif toks[i + 1] == "->":
            a, b = toks[i], toks[i + 2]
            a_attrs, i = attrs(i + 3) if toks[i + 3] == "[" else ({}, i + 3)
            edges.append((a, b, a_attrs))
            assert toks[i] == ";"
            i += 1
        else:
            node_attrs, i = attrs(i + 1)
            nodes[tok] = node_attrs.get("label")
            if stack[-1] is not None:
                subgraphs[stack[-1]].append(tok)
            assert toks[i] == ";"
            i += 1
    assert stack == [None], "unbalanced braces"
    return {"nodes": nodes, "edges": edges, "subgraphs": subgraphs}


# ------------------------------------------------------------------ tests


def test_dot_structure():
    g = _parse_dot(render_graph(_plan(), "dot"))
    sub = {name: members for name, members in g["subgraphs"].items()}
    assert sorted(sub) == ['"cluster_0"', '"cluster_1"', '"cluster_2"']  # the `cluster_` prefix makes boxes
    assert sub['"cluster_0"'] == ['"node:media/n1"', '"node:media/n2"', '"node:media/n3"']
    assert sub['"cluster_1"'] == ['"ecosystem:thumbnails/coordinator"', '"ecosystem:thumbnails/workers"']
    assert '"channel:jobs"' in g["nodes"] and '"message:Job"' in g["nodes"]
    edges = {(a, b, attrs.get("label")) for a, b, attrs in g["edges"]}
    coord = '"ecosystem:thumbnails/coordinator"'
    assert (coord, '"ecosystem:thumbnails/workers"', '"supervises"') in edges
    assert (coord, '"channel:jobs"', '"data"') in edges
    assert (coord, '"channel:std.control"', '"control"') in edges
    assert ('"channel:jobs"', '"message:Job"', '"carries"') in edges
    assert ('"channel:jobs"', '"message:Thumb"', '"carries"') in edges
    assert ('"ecosystem:pinned/coordinator"', '"node:media/n3"', '"runs on"') in edges
    # the cluster-wide ecosystem points at the cluster box as a whole
    to_cluster = [attrs for a, b, attrs in g["edges"] if a == coord and attrs.get("lhead")]
    assert to_cluster == [{"label": '"runs on"', "style": "dashed", "ltail": '"cluster_1"', "lhead": '"cluster_0"'}]
    # every edge endpoint is a declared node
    for a, b, _ in g["edges"]:
        assert a in g["nodes"] and b in g["nodes"], (a, b)


def test_dot_escapes_awkward_names():
    text = render_graph(_plan(channel_name='we"ird\\chan', message_name="Job"), "dot")
    g = _parse_dot(text)  # would fail to lex if the quote broke out of its string
    assert '"channel:we\\"ird\\\\chan"' in g["nodes"]


def test_mermaid_structure():
    text = render_graph(_plan(), "mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert lines.count("  end") == 3
    assert '  subgraph cluster_media["cluster media"]' in lines
    assert '  subgraph ecosystem_thumbnails["ecosystem thumbnails"]' in lines
    assert '  ecosystem_thumbnails -->|"data"| channel_jobs' in lines
    assert '  channel_jobs -->|"carries"| message_Job' in lines
    assert '  ecosystem_thumbnails -.->|"runs on"| cluster_media' in lines
    assert '  ecosystem_pinned -.->|"runs on"| node_media_n3' in lines
    # every id used by an edge is defined as a node or subgraph
    defined = set(re.findall(r"^\s*(?:subgraph )?([A-Za-z0-9_]+)[\[({]", text, re.M))
    for a, b in re.findall(r"^\s+(\w+) -\.?->(?:\|[^|]*\|)? (\w+)$", text, re.M):
        assert a in defined and b in defined, (a, b)


def test_mermaid_escapes_markup_and_keeps_ids_plain():
    text = render_graph(_plan(channel_name="a<b>|\"c\"", message_name="Job"), "mermaid")
    assert 'channel a#lt;b#gt;#124;#quot;c#quot;' in text
    for line in text.splitlines()[1:]:
        ident = line.strip().split("[", 1)[0].split("(", 1)[0].split("{", 1)[0].split(" ")[0]
        assert re.fullmatch(r"[A-Za-z0-9_]+|end", ident), line


def test_output_is_deterministic():
    assert render_graph(_plan(), "dot") == render_graph(_plan(), "dot")
    assert render_graph(_plan(), "mermaid") == render_graph(_plan(), "mermaid")


def test_empty_plan_renders():
    assert _parse_dot(render_graph(Plan(), "dot"))["nodes"] == {}
    assert render_graph(Plan(), "mermaid") == "flowchart LR\n"


def test_unknown_format_is_a_value_error():
    with pytest.raises(ValueError, match="unknown graph format 'svg' \\(expected one of: dot, mermaid\\)"):
        render_graph(_plan(), "svg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_graphviz_accepts_the_output():
    proc = subprocess.run(["dot", "-Tsvg"], input=render_graph(_plan(), "dot"), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_graph_of_the_example():
    import pathlib

    from eco.compiler.driver import compile_file

    root = pathlib.Path(__file__).resolve().parents[2]
    plan = compile_file(str(root / "examples" / "thumbnails.eco")).plan
    g = _parse_dot(render_graph(plan, "dot"))
    assert '"ecosystem:thumbnails/workers"' in g["nodes"]
    assert any(b == '"channel:jobs"' for _, b, _ in g["edges"])
    assert render_graph(plan, "mermaid").startswith("flowchart LR\n")
