"""Semantic checks that relate an ecosystem to its cluster and to other ecosystems."""

from __future__ import annotations

from collections.abc import Sequence

from eco.language import ast
from eco.language.diagnostics import DiagnosticBag, Label, error, note, suggest, warning

from . import codes
from .check_cluster import ClusterInfo, node_ref
from .check_ecosystem import EcoInfo
from .resolve import Program
from .values import Reader, replace_fix

CHECKPOINT_SCHEMES = ("sqlite://", "file://")


def pick_cluster(reader: Reader, program: Program, eco: EcoInfo, clusters: dict[str, ClusterInfo]) -> ClusterInfo | None:
    """The cluster an ecosystem runs on: its ``on`` clause, or the only declared cluster."""
    decl = eco.decl
    if decl.cluster is not None:
        symbol = program.lookup(eco.module, "cluster", decl.cluster)
        return clusters.get(symbol.name) if symbol is not None else None
    if len(clusters) > 1:
        names = list(clusters)
        reader.bag.add(error(
            codes.AMBIGUOUS_CLUSTER, f"ecosystem `{eco.name}` does not say which cluster it runs on", decl.name.span,
            label=f"add `on {names[0]}`", notes=["declared clusters: " + ", ".join(names)],
            help="with several clusters every ecosystem needs `ecosystem NAME on CLUSTER { ... }`",
            fix=_insert_after(decl.name.span, f" on {names[0]}"),
        ))
        return None
    return next(iter(clusters.values()), None)


def check_ecosystem_policies(reader: Reader, eco: EcoInfo, cluster: ClusterInfo | None) -> None:
    _explicit_nodes(reader, eco, cluster)
    _spread(reader, eco, cluster)
    _quorum(reader, eco, cluster)
    _consensus(reader, eco, cluster)
    _scaling(reader, eco)
    _minority(reader, eco)
    _checkpoint(reader, eco)
    _spawn(reader, eco, cluster)


def check_services(bag: DiagnosticBag, ecosystems: Sequence[EcoInfo]) -> None:
    """``register as`` names are unique; ``requires`` names a registered service or an external one."""
    registered: dict[str, EcoInfo] = {}
    for eco in ecosystems:
        name = eco.data.get("register_as")
        if name is None:
            continue
        first = registered.get(name)
        if first is not None:
            bag.add(error(
                codes.DUPLICATE_SERVICE, f"the service \"{name}\" is registered by two ecosystems",
                eco.register_term.span, label=f"`{eco.name}` registers it again",
                labels=[Label(first.register_term.span, f"first registered by `{first.name}`")],
                help="service names must be unique across the plan",
            ))
            continue
        registered[name] = eco
    for eco in ecosystems:
        for term in eco.requires_terms:
            name = term.value
            if name in registered:
                continue
            guess = suggest(name, registered)
            if guess is not None:
                bag.add(error(
                    codes.UNKNOWN_SERVICE, f"no ecosystem registers the service \"{name}\"", term.span,
                    label="unknown service", help=f'did you mean "{guess}"?',
                    labels=[Label(registered[guess].register_term.span, f'"{guess}" is registered here')],
                    fix=replace_fix(term.span, f'"{guess}"'),
                ))
            else:
                bag.add(warning(
                    codes.EXTERNAL_SERVICE, f"no ecosystem in this plan registers the service \"{name}\"", term.span,
                    label="must be provided from outside this plan",
                    notes=["the runtime waits for an external process to register it before starting "
                           f"`{eco.name}`"],
                ))


# -------------------------------------------------------------------- checks


def _explicit_nodes(reader: Reader, eco: EcoInfo, cluster: ClusterInfo | None) -> None:
    if not eco.explicit_nodes:
        return
    resolved: list[str] = []
    for ref in eco.explicit_nodes:
        if cluster is None:
            reader.bag.add(error(
                codes.EXPLICIT_NODE_NOT_IN_CLUSTER, f"`explicit_nodes` names `{ref.dotted}` but ecosystem "
                f"`{eco.name}` runs on no cluster", ref.span, label="no cluster declares this node",
                help="declare a `cluster` with this node, or use `policy: cluster_wide`",
            ))
            continue
        name = ref.dotted
        if name in cluster.nodes:
            if name not in resolved:
                resolved.append(name)
            continue
        guess = suggest(name, cluster.nodes)
        reader.bag.add(error(
            codes.EXPLICIT_NODE_NOT_IN_CLUSTER, f"`{name}` is not a node of cluster `{cluster.name}`", ref.span,
            label="not in the cluster", help=f"did you mean `{guess}`?" if guess else None,
            fix=replace_fix(ref.span, guess) if guess else None,
            notes=[f"nodes of `{cluster.name}`: " + (", ".join(cluster.nodes) or "none")],
        ))
    eco.data.setdefault("distribution", {})["nodes"] = tuple(resolved)


def _spread(reader: Reader, eco: EcoInfo, cluster: ClusterInfo | None) -> None:
    if eco.spread_term is None or cluster is None or not cluster.nodes:
        return
    label = eco.data["distribution"]["spread"]
    names = eco.data["distribution"].get("nodes") or tuple(cluster.nodes)
    nodes = [cluster.nodes[n] for n in names if n in cluster.nodes]
    lacking = [n for n in nodes if n.label(label) is None]
    if not lacking:
        return
    what = "a zone" if label == "zone" else f"the label `{label}`"
    if len(lacking) == len(nodes):
        known = sorted({k for n in nodes for k in n.labels} | ({"zone"} if any(n.zone for n in nodes) else set()))
        guess = suggest(label, known)
        reader.bag.add(error(
            codes.SPREAD_LABEL_MISSING, f"`spread: {label}` needs nodes with {what}, but no node of cluster "
            f"`{cluster.name}` has one", eco.spread_term.span, label=f"no node has {what}",
            help=f"did you mean `{guess}`?" if guess else
            (f'give the nodes a zone: `n1 at "host:port" zone "a"`' if label == "zone" else
             f'give the nodes the label: `labels {{ {label}: "..." }}`'),
            fix=replace_fix(eco.spread_term.span, guess) if guess else None,
        ))
        return
    reader.bag.add(error(
        codes.SPREAD_LABEL_MISSING, f"`spread: {label}` needs every node to have {what}", eco.spread_term.span,
        label=f"{len(lacking)} node{'s' if len(lacking) != 1 else ''} without {what}",
        labels=[Label(n.span, f"`{n.name}` has no {label}") for n in lacking[:10]],
        help=f"add {what} to {', '.join(f'`{n.name}`' for n in lacking[:10])}",
    ))


def _quorum(reader: Reader, eco: EcoInfo, cluster: ClusterInfo | None) -> None:
    if eco.quorum_term is None or cluster is None or not cluster.nodes:
        return
    q = eco.data["partition"]["quorum"]
    n = cluster.size
    smallest = n // 2 + 1
    if q > n:
        reader.bag.add(error(
            codes.BAD_QUORUM, f"static_quorum({q}) can never be reached: cluster `{cluster.name}` has {n} "
            f"node{'s' if n != 1 else ''}", eco.quorum_term.span, label=f"more than {n}",
            help=f"use a quorum between {smallest} and {n}", fix=replace_fix(eco.quorum_term.span, str(smallest)),
        ))
    elif 2 * q <= n:
        reader.bag.add(error(
            codes.BAD_QUORUM, f"static_quorum({q}) on {n} nodes lets both sides of a partition keep running",
            eco.quorum_term.span, label=f"2 × {q} ≤ {n}",
            notes=["a quorum q must satisfy 2q > cluster size, so that at most one side of a split has a quorum"],
            help=f"use at least {smallest}", fix=replace_fix(eco.quorum_term.span, str(smallest)),
        ))


def _consensus(reader: Reader, eco: EcoInfo, cluster: ClusterInfo | None) -> None:
    if not eco.consensus_terms or cluster is None or not cluster.nodes:
        return
    n = cluster.size
    span = eco.consensus_terms[0].span
    if n < 3:
        reader.bag.add(warning(
            codes.CONSENSUS_TOO_SMALL, f"consensus on {n} node{'s' if n != 1 else ''} tolerates no failure",
            span, label=f"cluster `{cluster.name}` has {n} node{'s' if n != 1 else ''}",
            notes=["a consensus group of n nodes survives (n - 1) // 2 failures; with fewer than 3 that is none"],
            help="run the cluster with at least 3 nodes",
        ))
    elif n % 2 == 0:
        reader.bag.add(note(
            codes.CONSENSUS_EVEN, f"consensus on {n} nodes tolerates no more failures than on {n - 1}", span,
            label=f"cluster `{cluster.name}` has {n} nodes",
            notes=[f"{n} nodes need a majority of {n // 2 + 1}; an odd count of {n + 1} or {n - 1} is cheaper "
                   "for the same fault tolerance"],
        ))


def _scaling(reader: Reader, eco: EcoInfo) -> None:
    scaling = eco.data.get("scaling")
    if scaling is None or eco.range_term is None:
        return
    count = eco.data.get("worker_count", 1)
    low, high = scaling["min_workers"], scaling["max_workers"]
    if low <= count <= high:
        return
    labels = [Label(eco.worker_count_term.span, f"{count} workers declared here")] if eco.worker_count_term else []
    reader.bag.add(error(
        codes.SCALING_BOUNDS, f"the scaling range {low}..{high} does not contain the {count} declared workers",
        eco.range_term.span, label=f"{count} is outside {low}..{high}", labels=labels,
        help=f"widen the range to {min(low, count)}..{max(high, count)} or change the worker count",
        fix=replace_fix(eco.range_term.span, f"{min(low, count)}..{max(high, count)}"),
    ))


def _minority(reader: Reader, eco: EcoInfo) -> None:
    if eco.data.get("partition", {}).get("minority") != "read_only":
        return
    if eco.data.get("state", {}).get("entries"):
        return
    reader.bag.add(error(
        codes.READ_ONLY_WITHOUT_STATE, "`minority: read_only` needs state to serve reads from",
        eco.minority_term.span, label=f"ecosystem `{eco.name}` declares no state",
        help="declare state (e.g. `state { done: crdt pn_counter }`) or use `minority: degraded`",
    ))


def _checkpoint(reader: Reader, eco: EcoInfo) -> None:
    state = eco.data.get("state", {})
    cp = state.get("checkpoint")
    if cp is None:
        return
    url = cp["url"]
    if not any(url.startswith(s) and len(url) > len(s) for s in CHECKPOINT_SCHEMES):
        scheme = url.split("://", 1)[0] + "://" if "://" in url else None
        guess = suggest(scheme, CHECKPOINT_SCHEMES) if scheme else None
        reader.bag.add(error(
            codes.CHECKPOINT_SCHEME, f"unsupported checkpoint URL \"{url}\"", eco.url_term.span,
            label="expected sqlite:// or file://",
            help=f"did you mean `{guess}`?" if guess else 'write e.g. "sqlite:///var/lib/eco/state.db" or '
            '"file:///var/lib/eco/checkpoints"',
        ))
        del state["checkpoint"]
        return
    if not state.get("entries"):
        reader.bag.add(warning(
            codes.CHECKPOINT_NOTHING, "checkpoint without state entries: nothing will be saved",
            eco.checkpoint_term.span, label="no state to checkpoint",
            help="declare state entries next to the checkpoint, or remove it",
        ))


def _spawn(reader: Reader, eco: EcoInfo, cluster: ClusterInfo | None) -> None:
    if cluster is None:
        return
    for kind, term, value in eco.spawn_terms:
        if kind == "node":
            node_ref(reader, cluster, ast.Name(term.span, (value,)))
            continue
        present = {n.label(kind) for n in cluster.nodes.values()} - {None}
        if value in present:
            continue
        guess = suggest(value, present)
        what = "zone" if kind == "zone" else f"label `{kind}`"
        reader.bag.add(error(
            codes.SPAWN_SOURCE_UNKNOWN, f"no node of cluster `{cluster.name}` has {what} \"{value}\"", term.span,
            label="matches no node", help=f'did you mean "{guess}"?' if guess else None,
            fix=replace_fix(term.span, f'"{guess}"') if guess else None,
            notes=[] if guess else [f"values of the {what} in `{cluster.name}`: " +
                                    (", ".join(sorted(present)) or "none")],
        ))


def _insert_after(span, text: str):
    from eco.language.diagnostics import Edit, Fix

    end = span.source.span(span.end, span.end)
    return Fix(f"insert `{text.strip()}`", (Edit(end, text),))
