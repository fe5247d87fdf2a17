"""Schema and value checks for ``cluster`` declarations."""

from __future__ import annotations

from dataclasses import dataclass, field

from eco.language import ast
from eco.language.diagnostics import Label, error, suggest

from . import codes
from .schema import Setting, block_terms, put_duration, put_int, read_block
from .values import Reader, replace_fix, show

TOPOLOGIES = ("full_mesh", "hyparview", "client_server", "static")
DETECTORS = ("phi", "swim")
_NODE_WORDS = ("at", "zone", "labels")


@dataclass
class NodeInfo:
    name: str
    span: object  # Span of the node's name
    zone: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def label(self, key: str) -> str | None:
        return self.zone if key == "zone" else self.labels.get(key)


@dataclass
class ClusterInfo:
    name: str
    decl: ast.ClusterDecl
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # plan-shaped (eco.plan.Cluster fields)

    @property
    def size(self) -> int:
        return len(self.nodes)


def check_cluster(reader: Reader, decl: ast.ClusterDecl) -> ClusterInfo:
    where = f"cluster `{decl.name.name}`"
    info = ClusterInfo(decl.name.name, decl)
    s = read_block(reader, decl.body, where,
                   ("nodes", "seeds", "topology", "failure_detector", "security"))
    nodes = s.get("nodes")
    node_specs: list[dict] = []
    if nodes is None:
        reader.bag.add(error(codes.MISSING_SETTING, f"{where} declares no nodes", decl.name.span,
                             label="needs a `nodes { ... }` block",
                             help='add `nodes { n1 at "127.0.0.1:7101" }`'))
    else:
        node_specs = _nodes(reader, nodes, info)
    info.data = {"name": info.name, "nodes": node_specs}

    if (seeds := s.get("seeds")) is not None:
        term = reader.single(seeds.terms, seeds.key, "a list of nodes")
        refs = reader.names(term, "nodes") if term is not None else None
        if refs is not None:
            info.data["seeds"] = tuple(n for n in (node_ref(reader, info, r) for r in refs) if n)
    if (topo := s.get("topology")) is not None:
        t = _topology(reader, topo, info)
        if t is not None:
            info.data["topology"] = t
    if (fd := s.get("failure_detector")) is not None:
        d = _detector(reader, fd)
        if d is not None:
            info.data["failure_detector"] = d
    if (sec := s.get("security")) is not None:
        info.data["security"] = _security(reader, sec)
    return info


def node_ref(reader: Reader, cluster: ClusterInfo, ref: ast.Name, what: str = "node") -> str | None:
    """Resolve a node name inside ``cluster`` (unknown nodes get a suggestion)."""
    name = ref.dotted
    if name in cluster.nodes:
        return name
    guess = suggest(name, cluster.nodes)
    reader.bag.add(error(
        codes.UNKNOWN_NODE, f"unknown {what} `{name}`: cluster `{cluster.name}` has no such node", ref.span,
        label="not a node of the cluster",
        help=f"did you mean `{guess}`?" if guess else None,
        fix=replace_fix(ref.span, guess) if guess else None,
        notes=[] if guess else [f"nodes of `{cluster.name}`: " + (", ".join(cluster.nodes) or "none")],
    ))
    return None


# ------------------------------------------------------------------- nodes


def _nodes(reader: Reader, setting: Setting, info: ClusterInfo) -> list[dict]:
    body = setting.terms[0] if len(setting.terms) == 1 else None
    if not isinstance(body, ast.ObjectExpr):
        reader.wrong(setting.terms[0] if setting.terms else setting.key, 'a `{ n1 at "host:port" ... }` block')
        return []
    specs: list[dict] = []
    addresses: dict[tuple[str, int], ast.Node] = {}
    for item in body.items:
        if not isinstance(item, (ast.Property, ast.Command)):
            reader.wrong(item, 'a node entry such as `n1 at "127.0.0.1:7101"`')
            continue
        name = item.key.name
        if name in info.nodes:
            reader.bag.add(error(
                codes.DUPLICATE_NODE, f"the node `{name}` is declared more than once in cluster `{info.name}`",
                item.key.span, label="declared again here",
                labels=[Label(info.nodes[name].span, "first declared here")], help="give each node its own name",
            ))
            continue
        node = NodeInfo(name, item.key.span)
        spec = _node(reader, item, node)
        info.nodes[name] = node
        if spec is None:
            continue
        addr = (spec["host"], spec["port"])
        if addr in addresses:
            reader.bag.add(error(
                codes.DUPLICATE_ADDRESS, f"nodes `{addresses[addr].key.name}` and `{name}` both listen on "
                f"{spec['host']}:{spec['port']}", item.span, label="same address",
                labels=[Label(addresses[addr].span, "first used here")],
                help="give every node its own port",
            ))
        else:
            addresses[addr] = item
        specs.append(spec)
    if not body.items:
        reader.bag.add(error(codes.MISSING_SETTING, f"cluster `{info.name}` has an empty `nodes` block",
                             body.span, label="no nodes", help='add `n1 at "127.0.0.1:7101"`'))
    return specs


def _node(reader: Reader, item, node: NodeInfo) -> dict | None:
    terms = list(item.terms)
    spec: dict = {"name": node.name}
    ok = True
    i = 0
    while i < len(terms):
        word_term = terms[i]
        word = word_term.dotted if isinstance(word_term, ast.Name) else None
        value = terms[i + 1] if i + 1 < len(terms) else None
        if word not in _NODE_WORDS:
            guess = suggest(word, _NODE_WORDS, cutoff=0.4) if word else None
            reader.bag.add(error(
                codes.UNKNOWN_SETTING,
                f"unexpected {show(word_term)} in node `{node.name}`",
                word_term.span, label="expected `at`, `zone` or `labels`",
                help=f"did you mean `{guess}`?" if guess else 'write `n1 at "host:port" zone "a" labels { k: "v" }`',
                fix=replace_fix(word_term.span, guess) if guess else None,
            ))
            return None
        if value is None:
            reader.bag.add(error(codes.MISSING_SETTING, f"`{word}` needs a value", word_term.span,
                                 label="expected a value after this"))
            return None
        if word in spec or (word == "at" and "host" in spec):
            reader.bag.add(error(codes.DUPLICATE_SETTING, f"`{word}` is given twice for node `{node.name}`",
                                 word_term.span, label="given again here"))
            ok = False
        elif word == "at":
            addr = _address(reader, value)
            if addr is None:
                ok = False
            else:
                spec["host"], spec["port"] = addr
        elif word == "zone":
            zone = reader.string(value, "a zone name in quotes")
            if zone is None:
                ok = False
            else:
                spec["zone"] = node.zone = zone
        else:
            labels = _labels(reader, value)
            if labels is None:
                ok = False
            else:
                spec["labels"] = node.labels = labels
        i += 2
    if "host" not in spec:
        if ok:
            reader.bag.add(error(codes.MISSING_SETTING, f"node `{node.name}` has no address", item.key.span,
                                 label="needs `at \"host:port\"`", help=f'write `{node.name} at "127.0.0.1:7101"`'))
        return None
    return spec if ok else None


def _address(reader: Reader, term: ast.Node) -> tuple[str, int] | None:
    text = reader.string(term, 'an address such as "127.0.0.1:7101"')
    if text is None:
        return None
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    problem = None
    if not sep or not host:
        problem = "expected `host:port`"
    elif not port_text.isdigit():
        problem = f"the port `{port_text}` is not a number"
    elif not 1 <= int(port_text) <= 65535:
        problem = f"the port {int(port_text)} is outside 1..65535"
    elif any(c.isspace() for c in host) or "/" in host:
        problem = f"`{host}` is not a host name"
    if problem:
        reader.bag.add(error(codes.BAD_ADDRESS, f"invalid address {show(term)}: {problem}", term.span,
                             label=problem, help='write the address as "host:port", e.g. "127.0.0.1:7101"'))
        return None
    return host, int(port_text)


def _labels(reader: Reader, term: ast.Node) -> dict[str, str] | None:
    if not isinstance(term, ast.ObjectExpr):
        reader.wrong(term, 'a `{ key: "value" }` block of labels')
        return None
    out: dict[str, str] = {}
    firsts: dict[str, ast.Node] = {}
    for item in term.items:
        if not isinstance(item, (ast.Property, ast.Command)):
            reader.wrong(item, 'a label such as `rack: "r1"`')
            return None
        key = item.key.name
        if key in firsts:
            reader.bag.add(error(codes.DUPLICATE_ENTRY, f"the label `{key}` is given twice", item.key.span,
                                 label="given again here", labels=[Label(firsts[key].span, "first given here")]))
            continue
        if key == "zone":
            reader.bag.add(error(codes.UNKNOWN_SETTING, "`zone` is not a label: write it as `zone \"...\"` "
                                 "after the address", item.key.span, label="use the `zone` setting"))
            continue
        value = reader.single(item.terms, item.key, "a string")
        value = reader.string(value, "a label value in quotes") if value is not None else None
        if value is not None:
            out[key] = value
            firsts[key] = item.key
    return out


# ---------------------------------------------------------------- topology


def _topology(reader: Reader, setting: Setting, info: ClusterInfo) -> dict | None:
    kind, body, ok = block_terms(reader, setting)
    if not ok:
        return None
    if kind is None:
        reader.bag.add(error(codes.MISSING_SETTING, "`topology` needs a kind before its block", setting.key.span,
                             label=f"expected one of {', '.join(TOPOLOGIES)}"))
        return None
    name_term = setting.terms[0]
    if reader.enum(name_term, TOPOLOGIES, "topology") is None:
        return None
    out: dict = {"kind": kind}
    where = f"topology `{kind}`"
    if kind == "hyparview":
        s = read_block(reader, body, where, ("active", "passive", "active_walk_length", "passive_walk_length",
                                             "shuffle_interval", "shuffle_active", "shuffle_passive"))
        for key in ("active", "passive", "active_walk_length", "passive_walk_length"):
            put_int(reader, s, out, key, low=1)
        for key in ("shuffle_active", "shuffle_passive"):
            put_int(reader, s, out, key, low=0)
        if (st := s.get("shuffle_interval")) is not None:
            term = reader.single(st.terms, st.key, "a duration")
            value = reader.duration(term, "`shuffle_interval`", positive=True) if term is not None else None
            if value is not None:
                out["shuffle_interval"] = value
    elif kind == "client_server":
        s = read_block(reader, body, where, ("servers",))
        if (st := s.get("servers")) is not None:
            term = reader.single(st.terms, st.key, "a list of nodes")
            refs = reader.names(term, "nodes") if term is not None else None
            if refs is not None:
                out["servers"] = tuple(n for n in (node_ref(reader, info, r, "server") for r in refs) if n)
    else:
        read_block(reader, body, where, ())
    return out


def _detector(reader: Reader, setting: Setting) -> dict | None:
    kind, body, ok = block_terms(reader, setting)
    if not ok:
        return None
    if kind is None:
        reader.bag.add(error(codes.MISSING_SETTING, "`failure_detector` needs a kind before its block",
                             setting.key.span, label="expected `phi` or `swim`"))
        return None
    if reader.enum(setting.terms[0], DETECTORS, "failure detector") is None:
        return None
    out: dict = {"kind": kind}
    where = f"failure detector `{kind}`"
    if kind == "phi":
        s = read_block(reader, body, where, ("threshold", "heartbeat", "acceptable_pause", "min_std_dev",
                                             "max_samples"))
        if (st := s.get("threshold")) is not None:
            term = reader.single(st.terms, st.key, "a number")
            value = reader.number(term, "`threshold`", low=0, low_open=True) if term is not None else None
            if value is not None:
                out["threshold"] = value
        put_duration(reader, s, out, "heartbeat", positive=True)
        put_duration(reader, s, out, "acceptable_pause")
        put_duration(reader, s, out, "min_std_dev", positive=True)
        put_int(reader, s, out, "max_samples", low=1)
    else:
        s = read_block(reader, body, where, ("probe_interval", "probe_timeout", "indirect_probes",
                                             "suspicion_timeout"))
        put_duration(reader, s, out, "probe_interval", positive=True)
        put_duration(reader, s, out, "probe_timeout", positive=True)
        put_int(reader, s, out, "indirect_probes", low=0)
        put_duration(reader, s, out, "suspicion_timeout", positive=True)
        interval = out.get("probe_interval", 1.0)
        timeout = out.get("probe_timeout", 0.5)
        if timeout >= interval:
            where_span = (s.get("probe_timeout") or s.get("probe_interval")).item.span
            reader.bag.add(error(
                codes.SWIM_TIMEOUT, "the SWIM probe timeout must be shorter than the probe interval", where_span,
                label=f"probe_timeout {timeout:g}s >= probe_interval {interval:g}s",
                help="a probe must time out before the next round starts; lower `probe_timeout`",
            ))
    return out


# ---------------------------------------------------------------- security


def _security(reader: Reader, setting: Setting) -> dict:
    body = setting.terms[0] if len(setting.terms) == 1 else None
    out: dict = {}
    if not isinstance(body, ast.ObjectExpr):
        reader.wrong(setting.terms[0] if setting.terms else setting.key, "a `{ cookie: ..., tls: ... }` block")
        return out
    s = read_block(reader, body, "security", ("cookie", "tls"))
    if (st := s.get("cookie")) is not None:
        term = reader.single(st.terms, st.key, 'env("NAME") or file("path")')
        secret = read_secret(reader, term) if term is not None else None
        if secret is not None:
            out["cookie"] = secret
    if (st := s.get("tls")) is not None:
        term = reader.single(st.terms, st.key, "`off` or a `{ cert, key, ca }` block")
        if isinstance(term, ast.Name):
            if reader.enum(term, ("off",), "tls setting") is not None:
                out["tls"] = None
        elif isinstance(term, ast.ObjectExpr):
            t = read_block(reader, term, "tls", ("cert", "key", "ca"))
            tls: dict = {}
            for key in ("cert", "key", "ca"):
                if (kst := t.get(key)) is not None:
                    v = reader.single(kst.terms, kst.key, "a file path")
                    v = reader.string(v, "a file path in quotes") if v is not None else None
                    if v is not None:
                        tls[key] = v
            missing = [k for k in ("cert", "key") if t.get(k) is None]
            if missing:
                reader.bag.add(error(codes.MISSING_SETTING, f"tls needs {' and '.join(f'`{m}`' for m in missing)}",
                                     term.span, label="incomplete tls block",
                                     help='write `tls: { cert: "node.pem", key: "node.key", ca: "ca.pem" }`'))
            elif len(tls) == len([k for k in ("cert", "key", "ca") if t.get(k) is not None]):
                out["tls"] = tls
        elif term is not None:
            reader.wrong(term, "`off` or a `{ cert, key, ca }` block")
    return out


def read_secret(reader: Reader, term: ast.Node) -> dict | None:
    """``env("NAME")`` or ``file("path")``: a reference, never the secret itself."""
    if isinstance(term, ast.Call):
        func = term.func.dotted
        if func not in ("env", "file"):
            guess = suggest(func, ("env", "file"))
            reader.bag.add(error(codes.UNKNOWN_VALUE, f"unknown secret source `{func}`", term.func.span,
                                 label="expected `env` or `file`",
                                 help=f"did you mean `{guess}`?" if guess else None,
                                 fix=replace_fix(term.func.span, guess) if guess else None))
            return None
        if len(term.args) != 1 or not isinstance(term.args[0], ast.String) or not term.args[0].value:
            reader.wrong(term, f'`{func}("...")` with one non-empty string')
            return None
        return {"source": func, "name": term.args[0].value}
    if isinstance(term, ast.String):
        reader.bag.add(error(
            codes.INLINE_SECRET, "secrets must not be written into the source", term.span,
            label="a literal secret", help='read it at run time with `env("ECO_COOKIE")` or `file("path")`',
            notes=["plans are written to disk and checked into build directories; they only hold references"],
            fix=replace_fix(term.span, 'env("ECO_COOKIE")', 'read the secret from `$ECO_COOKIE`'),
        ))
        return None
    reader.wrong(term, 'a secret reference: `env("NAME")` or `file("path")`')
    return None
