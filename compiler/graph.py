"""Render a plan as a graph: Graphviz DOT or a Mermaid flowchart.

What is drawn: each cluster (a box holding its nodes), each ecosystem (a box
holding its coordinator and workers), each channel and the message types it
carries.  Edges: ecosystem -> channel (labelled with the ecosystem's local
alias), channel -> message ("carries"), ecosystem -> the nodes it is pinned to
(``explicit_nodes``) or else -> the cluster it runs on, coordinator ->
workers ("supervises").  Output is deterministic and every user-provided name
is escaped, so odd names cannot break the graph syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from eco.plan.models import Channel, Cluster, Ecosystem, MessageType, Plan

FORMATS = ("dot", "mermaid")


def render_graph(plan: Plan, fmt: str) -> str:
    """The plan as a ``dot`` or ``mermaid`` graph; ValueError for any other format."""
    if fmt == "dot":
        return _render_dot(_build(plan))
    if fmt == "mermaid":
        return _render_mermaid(_build(plan))
    raise ValueError(f"unknown graph format {fmt!r} (expected one of: {', '.join(FORMATS)})")


# ------------------------------------------------------------------ model
# A small format-neutral graph, so both renderers draw exactly the same thing.


@dataclass
class _Vertex:
    key: str  # unique, e.g. "node:media/n1"
    lines: list[str]  # label, first line is the title
    shape: str  # "node" | "coordinator" | "workers" | "channel" | "message"


@dataclass
class _Group:
    key: str
    title: str
    kind: str  # "cluster" | "ecosystem"
    vertices: list[_Vertex] = field(default_factory=list)


@dataclass
class _Edge:
    src: str  # vertex or group key
    dst: str
    label: str | None = None
    style: str = "solid"  # "solid" | "dashed"


@dataclass
class _Graph:
    groups: list[_Group] = field(default_factory=list)
    vertices: list[_Vertex] = field(default_factory=list)  # outside any group
    edges: list[_Edge] = field(default_factory=list)

    def anchor(self, key: str) -> str:
        """A vertex inside group ``key`` (DOT edges need a real node as endpoint)."""
        for g in self.groups:
            if g.key == key:
                return g.vertices[0].key if g.vertices else key
        return key

    def is_group(self, key: str) -> bool:
        return any(g.key == key for g in self.groups)


def _build(plan: Plan) -> _Graph:
    graph = _Graph()
    for cluster in plan.clusters:
        graph.groups.append(_cluster_group(cluster))
    channel_keys = {c.name: f"channel:{c.name}" for c in plan.channels}
    message_keys = {m.name: f"message:{m.name}" for m in plan.messages}
    for eco in plan.ecosystems:
        graph.groups.append(_ecosystem_group(eco))
    for ch in plan.channels:
        graph.vertices.append(_channel_vertex(ch))
    for msg in plan.messages:
        graph.vertices.append(_message_vertex(msg))

    for eco in plan.ecosystems:
        eco_key = f"ecosystem:{eco.name}"
        graph.edges.append(_Edge(f"{eco_key}/coordinator", f"{eco_key}/workers", "supervises"))
        for alias, channel in eco.channels.items():
            if channel not in channel_keys:  # not in the plan: still show what the ecosystem names
                channel_keys[channel] = f"channel:{channel}"
                graph.vertices.append(_Vertex(channel_keys[channel], [f"channel {channel}"], "channel"))
            graph.edges.append(_Edge(eco_key, channel_keys[channel], alias))
        cluster = _cluster_of(plan, eco)
        if eco.distribution.policy == "explicit_nodes" and cluster is not None:
            for node in eco.distribution.nodes:
                graph.edges.append(_Edge(eco_key, f"node:{cluster.name}/{node}", "runs on", "dashed"))
        elif cluster is not None:
            graph.edges.append(_Edge(eco_key, f"cluster:{cluster.name}", "runs on", "dashed"))

    for ch in plan.channels:
        for name in ch.carries:
            if name not in message_keys:
                message_keys[name] = f"message:{name}"
                graph.vertices.append(_Vertex(message_keys[name], [name], "message"))
            graph.edges.append(_Edge(channel_keys[ch.name], message_keys[name], "carries"))
    return graph


def _cluster_of(plan: Plan, eco: Ecosystem) -> Cluster | None:
    try:
        return plan.cluster(eco.cluster)
    except KeyError:
        return None


def _cluster_group(cluster: Cluster) -> _Group:
    group = _Group(f"cluster:{cluster.name}", f"cluster {cluster.name}", "cluster")
    seeds = set(cluster.seeds)
    for node in cluster.nodes:
        lines = [node.name, node.address]
        if node.zone:
            lines.append(f"zone {node.zone}")
        lines += [f"{k}={v}" for k, v in sorted(node.labels.items()) if k != "zone"]
        if node.name in seeds:
            lines.append("seed")
        group.vertices.append(_Vertex(f"node:{cluster.name}/{node.name}", lines, "node"))
    return group


def _ecosystem_group(eco: Ecosystem) -> _Group:
    key = f"ecosystem:{eco.name}"
    group = _Group(key, f"ecosystem {eco.name}", "ecosystem")
    sup = eco.supervision
    coordinator = ["coordinator", eco.coordinator.text, f"{sup.strategy}, {sup.restart}"]
    group.vertices.append(_Vertex(f"{key}/coordinator", coordinator, "coordinator"))
    count = f"x {eco.worker_count}"
    if eco.scaling is not None:
        count += f" (scales {eco.scaling.min_workers}..{eco.scaling.max_workers})"
    group.vertices.append(
        _Vertex(f"{key}/workers", ["workers", eco.workers.text, count, f"isolation {eco.isolation}"], "workers")
    )
    return group


def _channel_vertex(ch: Channel) -> _Vertex:
    lines = [f"channel {ch.name}", f"{ch.priority}, {ch.delivery}, {ch.ordering}"]
    if not ch.carries:
        lines.append("carries any message")
    return _Vertex(f"channel:{ch.name}", lines, "channel")


def _message_vertex(msg: MessageType) -> _Vertex:
    lines = [msg.name] + [f"{f.name}: {f.type.render()}" for f in msg.fields]
    return _Vertex(f"message:{msg.name}", lines, "message")


# -------------------------------------------------------------------- DOT

_DOT_SHAPES = {
    "node": "box",
    "coordinator": "doubleoctagon",
    "workers": "box3d",
    "channel": "cds",
    "message": "note",
}


def _dot_str(text: str) -> str:
    """A DOT double-quoted string: quotes and backslashes escaped, newlines as line breaks."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "").replace("\n", "\\n") + '"'


def _dot_label(lines: list[str]) -> str:
    return _dot_str("\n".join(lines))


def _render_dot(graph: _Graph) -> str:
    out = [
        "digraph eco {",
        "  graph [rankdir=LR, compound=true, fontname=\"Helvetica\"];",
        "  node [fontname=\"Helvetica\", fontsize=10];",
        "  edge [fontname=\"Helvetica\", fontsize=9];",
    ]
    for i, group in enumerate(graph.groups):
        out.append("")
        out.append(f"  subgraph {_dot_str(f'cluster_{i}')} {{")
        out.append(f"    label={_dot_str(group.title)};")
        out.append(f"    style={'rounded' if group.kind == 'ecosystem' else 'solid'};")
        for v in group.vertices:
            out.append(f"    {_dot_vertex(v)}")
        out.append("  }")
    if graph.vertices:
        out.append("")
    for v in graph.vertices:
        out.append(f"  {_dot_vertex(v)}")
    if graph.edges:
        out.append("")
    cluster_ids = {g.key: f"cluster_{i}" for i, g in enumerate(graph.groups)}
    for e in graph.edges:
        attrs = []
        if e.label:
            attrs.append(f"label={_dot_str(e.label)}")
        if e.style != "solid":
            attrs.append(f"style={e.style}")
        if e.src in cluster_ids:
            attrs.append(f"ltail={_dot_str(cluster_ids[e.src])}")
        if e.dst in cluster_ids:
            attrs.append(f"lhead={_dot_str(cluster_ids[e.dst])}")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        out.append(f"  {_dot_str(graph.anchor(e.src))} -> {_dot_str(graph.anchor(e.dst))}{suffix};")
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_vertex(v: _Vertex) -> str:
    return f"{_dot_str(v.key)} [label={_dot_label(v.lines)}, shape={_DOT_SHAPES[v.shape]}];"


# ---------------------------------------------------------------- Mermaid

_MERMAID_SHAPES = {
    "node": ("[", "]"),
    "coordinator": ("{{", "}}"),
    "workers": ("[[", "]]"),
    "channel": ("[/", "/]"),
    "message": ("([", "])"),
}


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes for markup characters)."""
    for char, code in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("|", "#124;")):
        text = text.replace(char, code)
    return " ".join(text.split())


class _MermaidIds:
    """Mermaid ids must be plain words: derive readable, unique ones from keys."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, key: str) -> str:
        if key not in self._ids:
            base = re.sub(r"[^0-9A-Za-z_]+", "_", key, flags=re.ASCII).strip("_") or "v"
            candidate, n = base, 2
            while candidate in self._taken or candidate in ("end", "graph", "subgraph", "flowchart"):
                candidate, n = f"{base}_{n}", n + 1
            self._taken.add(candidate)
            self._ids[key] = candidate
        return self._ids[key]


def _render_mermaid(graph: _Graph) -> str:
    ident = _MermaidIds()
    out = ["flowchart LR"]
    for group in graph.groups:
        out.append(f'  subgraph {ident(group.key)}["{_mermaid_text(group.title)}"]')
        for v in group.vertices:
            out.append(f"    {_mermaid_vertex(v, ident)}")
        out.append("  end")
    for v in graph.vertices:
        out.append(f"  {_mermaid_vertex(v, ident)}")
    for e in graph.edges:
        arrow = "-.->" if e.style == "dashed" else "-->"
        label = f'|"{_mermaid_text(e.label)}"|' if e.label else ""
        out.append(f"  {ident(e.src)} {arrow}{label} {ident(e.dst)}")
    return "\n".join(out) + "\n"


def _mermaid_vertex(v: _Vertex, ident: _MermaidIds) -> str:
    opening, closing = _MERMAID_SHAPES[v.shape]
    label = "<br/>".join(_mermaid_text(line) for line in v.lines)
    return f'{ident(v.key)}{opening}"{label}"{closing}'
