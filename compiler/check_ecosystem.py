"""Schema and value checks for ``ecosystem`` declarations.

This module reads each setting into plan-shaped data and remembers the syntax
nodes that the cross-declaration checks in ``check_policy`` point at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eco.language import ast
from eco.language.diagnostics import Label, error, suggest

from . import codes
from .resolve import LoadedModule, Program
from .schema import Setting, block_terms, put_duration, put_enum, put_int, read_block
from .values import Reader, replace_fix, show

KEYS = ("coordinator", "workers", "supervision", "isolation", "distribution", "channels", "state", "partition",
        "scaling", "backpressure", "register")
REPEATABLE = ("requires", "allow")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS = ("permanent", "transient", "temporary")
ISOLATIONS = ("task", "process")
POLICIES = ("local_only", "cluster_wide", "explicit_nodes")
PLACEMENTS = ("round_robin", "random", "least_loaded", "topology_aware")
STATE_KINDS = ("crdt", "gossip_cache", "consensus")
CRDT_TYPES = ("g_counter", "pn_counter", "or_set", "lww_register", "mv_register", "or_map")
RESOLVERS = ("keep_majority", "static_quorum", "keep_oldest", "down_all")
MINORITY = ("degraded", "read_only", "halt")
CONFLICTS = ("crdt_merge", "last_write_wins")
PREDICTORS = ("holt", "linear", "none")
OVERFLOW = ("block", "drop_oldest", "reject")
ACTIONS = ("add", "remove")
SPAWN_SOURCES = ("zone", "node", "label")
# scaling metric -> the kind of threshold it is compared with
METRICS = {
    "mailbox_depth": "count",
    "idle": "duration",
    "cpu": "percent",
    "memory": "size",
    "latency": "duration",
    "throughput": "rate",
    "restarts": "count",
}
MAX_WORKERS = 1_000_000
MAX_MAILBOX = 100_000_000


@dataclass
class EcoInfo:
    """One checked ecosystem: plan-shaped ``data`` plus the nodes later checks point at."""

    name: str
    decl: ast.EcosystemDecl
    module: LoadedModule
    data: dict = field(default_factory=dict)
    components: dict[str, ast.ModuleRef] = field(default_factory=dict)  # "coordinator"/"workers" -> ref
    worker_count_term: ast.Node | None = None
    explicit_nodes: list[ast.Name] = field(default_factory=list)
    policy_term: ast.Node | None = None
    spread_term: ast.Node | None = None
    quorum_term: ast.Node | None = None
    consensus_terms: list[ast.Node] = field(default_factory=list)
    minority_term: ast.Node | None = None
    range_term: ast.Node | None = None
    checkpoint_term: ast.Node | None = None
    url_term: ast.Node | None = None
    spawn_terms: list[tuple[str, ast.Node, str]] = field(default_factory=list)  # (source kind, value term, value)
    register_term: ast.Node | None = None
    requires_terms: list[ast.String] = field(default_factory=list)


def check_ecosystem(reader: Reader, program: Program, module: LoadedModule, decl: ast.EcosystemDecl) -> EcoInfo:
    where = f"ecosystem `{decl.name.name}`"
    info = EcoInfo(decl.name.name, decl, module)
    s = read_block(reader, decl.body, where, KEYS, repeatable=REPEATABLE)
    data = info.data
    data["name"] = info.name
    for key in ("coordinator", "workers"):
        st = s.get(key)
        if st is None:
            example = "app.module:Coordinator" if key == "coordinator" else "app.module:Worker x 4"
            reader.bag.add(error(codes.MISSING_SETTING, f"{where} has no `{key}`", decl.name.span,
                                 label=f"needs `{key}: ...`", help=f"add `{key}: {example}`"))
            continue
        _component(reader, st, info, key)
    if (st := s.get("supervision")) is not None:
        data["supervision"] = _supervision(reader, st)
    put_enum(reader, s, data, "isolation", ISOLATIONS, "isolation")
    if (st := s.get("distribution")) is not None:
        data["distribution"] = _distribution(reader, st, info)
    if (st := s.get("channels")) is not None:
        data["channels"] = _channels(reader, program, module, st)
    if (st := s.get("state")) is not None:
        data["state"] = _state(reader, st, info)
    if (st := s.get("partition")) is not None:
        data["partition"] = _partition(reader, st, info)
    if (st := s.get("scaling")) is not None:
        scaling = _scaling(reader, st, info)
        if scaling is not None:
            data["scaling"] = scaling
    if (st := s.get("backpressure")) is not None:
        body = _body(reader, st)
        bp: dict = {}
        b = read_block(reader, body, "backpressure", ("mailbox", "overflow"))
        put_int(reader, b, bp, "mailbox", low=1, high=MAX_MAILBOX)
        put_enum(reader, b, bp, "overflow", OVERFLOW, "overflow policy")
        data["backpressure"] = bp
    if (st := s.get("register")) is not None:
        terms = st.terms[1:] if st.terms and _is_word(st.terms[0], "as") else st.terms
        term = reader.single(terms, st.key, 'a service name such as `as "thumbnails"`')
        name = reader.string(term, "a service name in quotes") if term is not None else None
        if name is not None:
            data["register_as"] = name
            info.register_term = term
    requires: list[str] = []
    for st in s.all("requires"):
        if not st.terms:
            reader.single(st.terms, st.key, "a service name")
        for term in st.terms:
            name = reader.string(term, "a service name in quotes")
            if name is not None and name not in requires:
                requires.append(name)
                info.requires_terms.append(term)
    data["requires"] = tuple(requires)
    spawn: list[dict] = []
    for st in s.all("allow"):
        rule = _spawn_rule(reader, st, info)
        if rule is not None and rule not in spawn:
            spawn.append(rule)
    data["allow_spawn_from"] = tuple(spawn)
    return info


# -------------------------------------------------------------- components


def _component(reader: Reader, st: Setting, info: EcoInfo, key: str) -> None:
    terms = list(st.terms)
    if not terms:
        reader.single(terms, st.key, "`module:Class`")
        return
    ref = terms[0]
    if not isinstance(ref, ast.ModuleRef):
        example = "app.workers:Resizer" if key == "workers" else "app.pipeline:Coordinator"
        hint = f"write the Python module and the class, e.g. `{example}`"
        if isinstance(ref, ast.String) and ":" in ref.value:
            hint = f"remove the quotes: `{ref.value}`"
        reader.bag.add(error(
            codes.BAD_COMPONENT_REF, f"{'the coordinator' if key == 'coordinator' else 'workers'} must be a "
            f"`module:Class` reference, found {show(ref)}", ref.span, label="not a `module:Class` reference",
            help=hint, fix=replace_fix(ref.span, ref.value) if isinstance(ref, ast.String) and ":" in ref.value
            else None,
        ))
        return
    info.data[key] = {"module": ref.module, "cls": ref.cls}
    info.components[key] = ref
    rest = terms[1:]
    if key == "coordinator":
        if rest:
            reader.unexpected(rest, "a coordinator is a single component")
        return
    if not rest:
        return
    if len(rest) == 2 and _is_word(rest[0], "x"):
        count = reader.integer(rest[1], "the worker count", low=0, high=MAX_WORKERS)
        if count is not None:
            info.data["worker_count"] = count
            info.worker_count_term = rest[1]
        return
    if len(rest) == 1 and isinstance(rest[0], ast.Integer):
        reader.bag.add(error(codes.UNEXPECTED_VALUE, "the worker count is written after `x`", rest[0].span,
                             label="missing `x`", help=f"write `{ref.text} x {rest[0].value}`",
                             fix=replace_fix(rest[0].span, f"x {rest[0].value}")))
        return
    reader.unexpected(rest, f"write `workers: {ref.text} x N` to start N workers")


# -------------------------------------------------------------- supervision


def _supervision(reader: Reader, st: Setting) -> dict:
    out: dict = {}
    s = read_block(reader, _body(reader, st), "supervision", ("strategy", "restart", "max_restarts", "shutdown"))
    put_enum(reader, s, out, "strategy", STRATEGIES, "supervision strategy")
    put_enum(reader, s, out, "restart", RESTARTS, "restart type")
    put_duration(reader, s, out, "shutdown")
    if (mr := s.get("max_restarts")) is not None:
        terms = mr.terms
        if len(terms) in (0, 2) or len(terms) > 3:
            # `5 sec` is an unknown unit; anything else of the wrong shape is reported as such
            if len(terms) == 2 and reader.unknown_unit(terms):
                return out
            reader.bag.add(error(codes.WRONG_TYPE, "expected `N within DURATION`", mr.key.span,
                                 label="e.g. `max_restarts: 5 within 10s`"))
            return out
        count = reader.integer(terms[0], "`max_restarts`", low=0)
        if count is not None:
            out["max_restarts"] = count
        if len(terms) == 3:
            if not _is_word(terms[1], "within"):
                guess = "within"
                reader.bag.add(error(codes.UNKNOWN_SETTING, f"expected `within`, found {show(terms[1])}",
                                     terms[1].span, label="expected `within`", help=f"write `{guess}`",
                                     fix=replace_fix(terms[1].span, guess)))
            else:
                within = reader.duration(terms[2], "the restart window", positive=True)
                if within is not None:
                    out["within"] = within
    return out


# -------------------------------------------------------------- distribution


def _distribution(reader: Reader, st: Setting, info: EcoInfo) -> dict:
    out: dict = {}
    s = read_block(reader, _body(reader, st), "distribution", ("policy", "placement", "spread"))
    if (ps := s.get("policy")) is not None:
        terms = ps.terms
        if not terms:
            reader.single(terms, ps.key, "a distribution policy")
        else:
            policy = reader.enum(terms[0], POLICIES, "distribution policy")
            info.policy_term = terms[0]
            if policy == "explicit_nodes":
                out["policy"] = policy
                if len(terms) == 1:
                    reader.bag.add(error(
                        codes.EXPLICIT_NODES_EMPTY, "`explicit_nodes` needs the list of nodes to run on",
                        terms[0].span, label="no nodes given", help="write `explicit_nodes [n1, n2]`",
                    ))
                else:
                    names = reader.names(terms[1], "nodes")
                    if len(terms) > 2:
                        reader.unexpected(terms[2:], "`explicit_nodes` takes one list of nodes")
                    if names is not None and not names:
                        reader.bag.add(error(codes.EXPLICIT_NODES_EMPTY, "`explicit_nodes` has an empty node list",
                                             terms[1].span, label="no nodes", help="list at least one node"))
                    info.explicit_nodes = names or []
            elif policy is not None:
                if len(terms) > 1:
                    reader.unexpected(terms[1:], f"`{policy}` takes no node list")
                else:
                    out["policy"] = policy
    put_enum(reader, s, out, "placement", PLACEMENTS, "placement")
    if (sp := s.get("spread")) is not None:
        term = reader.single(sp.terms, sp.key, "a node label such as `zone`")
        if isinstance(term, ast.String):
            reader.wrong(term, "a label name", help=f"write `{term.value}` without quotes",
                         fix=replace_fix(term.span, term.value))
        elif term is not None:
            label = reader.word(term, "a label name such as `zone`")
            if label is not None:
                out["spread"] = label
                info.spread_term = term
    return out


# -------------------------------------------------------------- channels


def _channels(reader: Reader, program: Program, module: LoadedModule, st: Setting) -> dict:
    out: dict[str, str] = {}
    body = _body(reader, st)
    if body is None:
        return out
    first: dict[str, ast.Ident] = {}
    for item in body.items:
        if not isinstance(item, (ast.Property, ast.Command)):
            reader.wrong(item, "a channel mapping such as `data: jobs`")
            continue
        alias = item.key.name
        if alias in first:
            reader.bag.add(error(codes.DUPLICATE_ENTRY, f"the channel alias `{alias}` is mapped twice", item.key.span,
                                 label="mapped again here", labels=[Label(first[alias].span, "first mapped here")]))
            continue
        first[alias] = item.key
        term = reader.single(item.terms, item.key, "a channel name")
        if term is None:
            continue
        if not isinstance(term, ast.Name):
            reader.wrong(term, "a channel name such as `jobs` or `std.control`")
            continue
        symbol = program.lookup(module, "channel", term)
        if symbol is not None:
            out[alias] = symbol.qualified
    return out


# -------------------------------------------------------------- state


def _state(reader: Reader, st: Setting, info: EcoInfo) -> dict:
    entries: list[dict] = []
    out: dict = {"entries": entries}
    body = _body(reader, st)
    if body is None:
        return out
    first: dict[str, ast.Ident] = {}
    for item in body.items:
        if not isinstance(item, (ast.Property, ast.Command)):
            reader.wrong(item, "a state entry such as `done: crdt pn_counter`")
            continue
        name = item.key.name
        if name == "checkpoint":
            if info.checkpoint_term is not None:
                reader.bag.add(error(codes.DUPLICATE_SETTING, "`checkpoint` is set more than once", item.key.span,
                                     label="set again here", labels=[Label(info.checkpoint_term.span, "first set here")]))
                continue
            info.checkpoint_term = item.key
            cp = _checkpoint(reader, item, info)
            if cp is not None:
                out["checkpoint"] = cp
            continue
        if name in first:
            reader.bag.add(error(codes.DUPLICATE_ENTRY, f"the state entry `{name}` is declared twice", item.key.span,
                                 label="declared again here", labels=[Label(first[name].span, "first declared here")]))
            continue
        first[name] = item.key
        entry = _state_entry(reader, item, info)
        if entry is not None:
            entries.append(entry)
    out["entries"] = tuple(entries)
    return out


def _state_entry(reader: Reader, item, info: EcoInfo) -> dict | None:
    terms = list(item.terms)
    if not terms:
        reader.single(terms, item.key, "a state kind")
        return None
    head = terms[0]
    if isinstance(head, ast.Name) and head.dotted in CRDT_TYPES:
        fixed = f"crdt {head.dotted}"
        reader.bag.add(error(codes.WRONG_TYPE, f"expected a state kind, found the CRDT type {show(head)}", head.span,
                             label="a CRDT type", help=f"write `{fixed}`", fix=replace_fix(head.span, fixed)))
        return None
    kind = reader.enum(head, STATE_KINDS, "state kind")
    if kind is None:
        return None
    out: dict = {"name": item.key.name, "kind": kind}
    rest = terms[1:]
    if kind == "crdt":
        if not rest:
            reader.bag.add(error(codes.MISSING_SETTING, "`crdt` needs a CRDT type", head.span,
                                 label="which CRDT?", help=f"write `crdt pn_counter` (one of {', '.join(CRDT_TYPES)})"))
            return None
        crdt = reader.enum(rest[0], CRDT_TYPES, "CRDT type")
        if len(rest) > 1:
            reader.unexpected(rest[1:], "`crdt` takes one CRDT type")
            return None
        if crdt is None:
            return None
        out["crdt"] = crdt
    elif kind == "gossip_cache":
        if rest and isinstance(rest[0], ast.ObjectExpr):
            s = read_block(reader, rest[0], "gossip_cache", ("ttl",))
            put_duration(reader, s, out, "ttl", positive=True)
            rest = rest[1:]
        if rest:
            reader.unexpected(rest, "`gossip_cache` takes an optional `{ ttl: 30s }` block")
            return None
    else:
        info.consensus_terms.append(head)
        if rest:
            reader.unexpected(rest, "`consensus` takes no settings")
            return None
    return out


def _checkpoint(reader: Reader, item, info: EcoInfo) -> dict | None:
    terms = list(item.terms)
    shape = "write `checkpoint every 5s to \"sqlite:///path/state.db\"`"
    if len(terms) != 4 or not _is_word(terms[0], "every") or not _is_word(terms[2], "to"):
        span = terms[0].span.to(terms[-1].span) if terms else item.key.span
        reader.bag.add(error(codes.WRONG_TYPE, "expected `checkpoint every DURATION to \"URL\"`", span,
                             label="not a checkpoint rule", help=shape))
        return None
    every = reader.duration(terms[1], "the checkpoint interval", positive=True)
    url = reader.string(terms[3], "a URL in quotes")
    if every is None or url is None:
        return None
    info.url_term = terms[3]
    return {"every": every, "url": url}


# -------------------------------------------------------------- partition


def _partition(reader: Reader, st: Setting, info: EcoInfo) -> dict:
    out: dict = {}
    s = read_block(reader, _body(reader, st), "partition", ("resolver", "minority", "conflicts"))
    if (rs := s.get("resolver")) is not None:
        term = reader.single(rs.terms, rs.key, "a partition resolver")
        if isinstance(term, ast.Call):
            func = term.func.dotted
            if func != "static_quorum":
                reader.enum(term.func, ("static_quorum",), "partition resolver")
            elif len(term.args) != 1:
                reader.bag.add(error(codes.WRONG_TYPE, "`static_quorum` takes one quorum size", term.span,
                                     label=f"{len(term.args)} arguments", help="write `static_quorum(2)`"))
            else:
                q = reader.integer(term.args[0], "the quorum size", low=1)
                if q is not None:
                    out["resolver"] = "static_quorum"
                    out["quorum"] = q
                    info.quorum_term = term.args[0]
        elif isinstance(term, ast.Name) and term.dotted == "static_quorum":
            reader.bag.add(error(codes.MISSING_SETTING, "`static_quorum` needs the quorum size", term.span,
                                 label="how many nodes form a quorum?", help="write `static_quorum(2)`",
                                 fix=replace_fix(term.span, "static_quorum(2)")))
        elif term is not None:
            resolver = reader.enum(term, RESOLVERS, "partition resolver")
            if resolver is not None:
                out["resolver"] = resolver
    if (ms := s.get("minority")) is not None:
        term = reader.single(ms.terms, ms.key, "a minority policy")
        value = reader.enum(term, MINORITY, "minority policy") if term is not None else None
        if value is not None:
            out["minority"] = value
            info.minority_term = term
    put_enum(reader, s, out, "conflicts", CONFLICTS, "conflict policy")
    return out


# -------------------------------------------------------------- scaling


def _scaling(reader: Reader, st: Setting, info: EcoInfo) -> dict | None:
    body = _body(reader, st)
    s = read_block(reader, body, "scaling", ("workers", "predict"), rules=True)
    out: dict = {}
    ws = s.get("workers")
    ok = True
    if ws is None:
        reader.bag.add(error(codes.MISSING_SETTING, "`scaling` needs the worker bounds", st.key.span,
                             label="no `workers: MIN..MAX`", help="add `workers: 1..10` to the scaling block"))
        ok = False
    else:
        term = reader.single(ws.terms, ws.key, "a range such as `4..64`")
        if term is None:
            ok = False
        elif not isinstance(term, ast.RangeExpr):
            reader.wrong(term, "a range such as `4..64`")
            ok = False
        else:
            low = reader.integer(term.low, "the minimum worker count", low=0, high=MAX_WORKERS)
            high = reader.integer(term.high, "the maximum worker count", low=1, high=MAX_WORKERS)
            if low is None or high is None:
                ok = False
            elif low > high:
                reader.bag.add(error(codes.SCALING_BOUNDS, f"the scaling range {low}..{high} is empty", term.span,
                                     label="minimum above maximum", help=f"write `{high}..{low}`",
                                     fix=replace_fix(term.span, f"{high}..{low}")))
                ok = False
            else:
                out["min_workers"], out["max_workers"] = low, high
                info.range_term = term
    out["rules"] = tuple(r for r in (_rule(reader, rule) for rule in s.rules) if r is not None)
    if (ps := s.get("predict")) is not None:
        predictor = _predictor(reader, ps)
        if predictor is not None:
            out["predict"] = predictor
    return out if ok else None


def _rule(reader: Reader, rule: ast.WhenRule) -> dict | None:
    metric = reader.enum(rule.metric, tuple(METRICS), "scaling metric")
    action = reader.word(rule.action, "`add` or `remove`") if isinstance(rule.action, ast.Name) else rule.action.name
    if action is not None and action not in ACTIONS:
        guess = suggest(action, ACTIONS)
        reader.bag.add(error(codes.UNKNOWN_VALUE, f"unknown scaling action `{action}`", rule.action.span,
                             label="expected `add` or `remove`", help=f"did you mean `{guess}`?" if guess else None,
                             fix=replace_fix(rule.action.span, guess) if guess else None))
        action = None
    out: dict = {"op": rule.op}
    if metric is not None:
        threshold = _threshold(reader, rule.threshold, metric)
        if threshold is None:
            metric = None
        else:
            out["metric"], out["threshold"] = metric, threshold
    if rule.window is not None:
        window = reader.duration(rule.window, "the `for` window")
        if window is None:
            return None
        out["window"] = window
    if rule.amount is not None:
        amount = reader.integer(rule.amount, "the scaling step", low=1, high=MAX_WORKERS)
        if amount is None:
            return None
        out["amount"] = amount
    if metric is None or action is None:
        return None
    out["action"] = action
    return out


def _threshold(reader: Reader, term: ast.Node, metric: str) -> float | None:
    kind = METRICS[metric]
    if kind == "duration":
        return reader.duration(term, f"the `{metric}` threshold")
    if kind == "size":
        size = reader.size(term, f"the `{metric}` threshold")
        return float(size) if size is not None else None
    if kind == "percent":
        return reader.number(term, f"the `{metric}` threshold (percent)", low=0, high=100)
    if kind == "count":
        value = reader.integer(term, f"the `{metric}` threshold", low=0)
        return float(value) if value is not None else None
    return reader.number(term, f"the `{metric}` threshold", low=0)


def _predictor(reader: Reader, st: Setting) -> dict | None:
    kind, body, ok = block_terms(reader, st)
    if not ok:
        return None
    if kind is None:
        reader.bag.add(error(codes.MISSING_SETTING, "`predict` needs a predictor before its block", st.key.span,
                             label=f"expected one of {', '.join(PREDICTORS)}"))
        return None
    if reader.enum(st.terms[0], PREDICTORS, "predictor") is None:
        return None
    out: dict = {"kind": kind}
    if kind == "none":
        read_block(reader, body, "predictor `none`", ())
        return out
    s = read_block(reader, body, f"predictor `{kind}`", ("horizon", "alpha", "beta"))
    put_duration(reader, s, out, "horizon")
    for key in ("alpha", "beta"):
        if (ks := s.get(key)) is not None:
            term = reader.single(ks.terms, ks.key, "a number in (0, 1]")
            value = reader.number(term, f"`{key}`", low=0, high=1, low_open=True) if term is not None else None
            if value is not None:
                out[key] = value
    return out


# -------------------------------------------------------------- spawn rules


def _spawn_rule(reader: Reader, st: Setting, info: EcoInfo) -> dict | None:
    terms = list(st.terms)
    shape = 'write `allow spawn from zone "a"`, `allow spawn from node n1` or `allow spawn from label rack "r1"`'
    if len(terms) < 4 or not _is_word(terms[0], "spawn") or not _is_word(terms[1], "from"):
        span = terms[0].span.to(terms[-1].span) if terms else st.key.span
        reader.bag.add(error(codes.WRONG_TYPE, "expected `allow spawn from ...`", span, label="not a spawn rule",
                             help=shape))
        return None
    source = reader.enum(terms[2], SPAWN_SOURCES, "spawn source")
    if source is None:
        return None
    if source == "label":
        if len(terms) != 5:
            reader.bag.add(error(codes.WRONG_TYPE, "expected `label KEY \"VALUE\"`", terms[2].span.to(terms[-1].span),
                                 label="incomplete label rule", help=shape))
            return None
        key = reader.word(terms[3], "a label name")
        value = reader.string(terms[4], "a label value in quotes")
        if key is None or value is None:
            return None
        info.spawn_terms.append((key, terms[4], value))
        return {"label": key, "value": value}
    if len(terms) != 4:
        reader.unexpected(terms[4:], shape)
        return None
    if source == "zone":
        value = reader.string(terms[3], "a zone name in quotes")
    else:
        value = reader.word(terms[3], "a node name")
    if value is None:
        return None
    info.spawn_terms.append((source, terms[3], value))
    return {"label": source, "value": value}


# -------------------------------------------------------------- helpers


def _body(reader: Reader, st: Setting) -> ast.ObjectExpr | None:
    if len(st.terms) == 1 and isinstance(st.terms[0], ast.ObjectExpr):
        return st.terms[0]
    if not st.terms:
        reader.single(st.terms, st.key, "a `{ ... }` block")
    else:
        reader.wrong(st.terms[0], f"a `{st.key.name} {{ ... }}` block")
    return None


def _is_word(term: ast.Node, word: str) -> bool:
    return isinstance(term, ast.Name) and term.parts == (word,)
