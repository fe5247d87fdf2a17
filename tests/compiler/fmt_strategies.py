"""Hypothesis strategies that write random `.eco` sources, for the formatter's property tests.

``syntactic_sources`` covers every construct of the grammar with messy layout
(odd spacing, commas or newlines as separators, lists over several lines,
comments in every position) but no meaning; ``valid_programs`` builds programs
the compiler accepts, so the compiled plans can be compared.
"""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from eco.language import ast

# Words that are never keywords, so they can be keys and names anywhere.
WORDS = ["alpha", "beta", "gamma", "delta", "n1", "n2", "zone", "mode", "x_1", "Value", "deep"]
KEYS = ["alpha", "beta", "size", "mode", "limit", "policy", "tls", "ttl", "spread"]

_ws = st.sampled_from([" ", "  ", "\t", " "])
_line_comment = st.builds(lambda t: "// " + t, st.sampled_from(["note", "or: a | b", "x // y", "todo: {[(", ""]))
_block_comment = st.builds(lambda t: "/* " + t + " */", st.sampled_from(["c", "two\n   lines", "*", ""]))


@st.composite
def _name(draw) -> str:
    parts = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
    return ".".join(parts)


@st.composite
def _number(draw) -> str:
    sign = draw(st.sampled_from(["", "", "-"]))
    whole = draw(st.sampled_from(["0", "1", "5", "007", "42", "1000"]))
    frac = draw(st.sampled_from(["", "", ".0", ".5", ".250", ".000"]))
    unit = draw(st.sampled_from(["", "", "", "ms", "s", "m", "h", "B", "KB", "MB", "GB"]))
    if unit in ("B", "KB", "MB", "GB"):
        sign, frac = "", ""  # fractional bytes are an error
    return f"{sign}{whole}{frac}{unit}"


_ESCAPES = ["\\n", "\\t", "\\\\", '\\"', "\\r", "\\0", "\\u{41}", "\\u{1F600}", "é", "a b", "{", "//", "/*"]


@st.composite
def _string(draw) -> str:
    parts = draw(st.lists(st.sampled_from(_ESCAPES + ["abc", "x"]), max_size=4))
    return '"' + "".join(parts) + '"'


def _term(depth: int = 0):
    leaves = st.one_of(
        _name(),
        _number(),
        _string(),
        st.builds(lambda m, c: f"{m}:{c}", _name(), st.sampled_from(["Coordinator", "Worker"])),
        st.builds(lambda a, b: f"{a}..{b}", st.sampled_from(["4", "n1", "0"]), st.sampled_from(["64", "n2", "9"])),
    )
    if depth >= 2:
        return leaves
    return st.one_of(leaves, _list(depth + 1), _object(depth + 1), _call(depth + 1))


@st.composite
def _list(draw, depth: int) -> str:
    items = draw(st.lists(_term(depth), max_size=4))
    spread = draw(st.booleans())  # newlines are ignored inside [ ]
    out = "["
    for i, item in enumerate(items):
        if spread:
            out += "\n" + (draw(_line_comment) + "\n" if draw(st.booleans()) else "")
        out += item
        if i < len(items) - 1 or draw(st.booleans()):
            out += ","
        if spread and draw(st.booleans()):
            out += " " + draw(_line_comment)
    return out + ("\n]" if spread else "]")


@st.composite
def _call(draw, depth: int) -> str:
    args = draw(st.lists(_term(depth), max_size=3))
    return f"{draw(st.sampled_from(['env', 'static_quorum', 'f']))}(" + ", ".join(args) + ")"


@st.composite
def _item(draw, depth: int) -> str:
    kind = draw(st.sampled_from(["property", "property", "command", "carries", "when"]))
    key = draw(st.sampled_from(KEYS))
    if kind == "property":
        terms = draw(st.lists(_term(depth), min_size=1, max_size=3))
        return f"{key}{draw(st.sampled_from(['', ' ']))}: " + " ".join(terms)
    if kind == "command":
        terms = draw(st.lists(_term(depth), max_size=3))
        return " ".join([key, *terms])
    if kind == "carries":
        return "carries " + ", ".join(draw(st.lists(_name(), min_size=1, max_size=3)))
    window = f" for {draw(_number())}" if draw(st.booleans()) else ""
    amount = f" {draw(_number())}" if draw(st.booleans()) else ""
    op = draw(st.sampled_from([">", ">=", "<", "<=", "==", "!="]))
    return f"when {draw(_name())} {op} {draw(_number())}{window}: {draw(st.sampled_from(['add', 'remove']))}{amount}"


@st.composite
def _object(draw, depth: int) -> str:
    items = draw(st.lists(_item(depth), max_size=4))
    if not draw(st.booleans()):  # one line, comma separated
        if any(i.startswith("carries") for i in items[:-1]):
            items = [i for i in items if not i.startswith("carries")]
        inner = ", ".join(items)
        return "{ " + inner + " }" if inner else "{}"
    out = "{"
    if draw(st.booleans()):
        out += " " + draw(_line_comment)
    for item in items:
        out += "\n"
        if draw(st.integers(0, 5)) == 0:
            out += "\n"  # a blank line
        if draw(st.integers(0, 3)) == 0:
            out += draw(st.one_of(_line_comment, _block_comment)) + "\n"
        out += draw(_ws) + item
        if draw(st.integers(0, 3)) == 0:
            out += draw(_ws) + draw(st.one_of(_line_comment, _block_comment))
    if draw(st.integers(0, 4)) == 0:
        out += "\n" + draw(_line_comment)
    return out + "\n}"


@st.composite
def _type(draw, depth: int = 0) -> str:
    if depth < 2 and draw(st.booleans()):
        kind = draw(st.sampled_from(["list", "map"]))
        args = [draw(_type(depth + 1)) for _ in range(1 if kind == "list" else 2)]
        text = f"{kind}[{', '.join(args)}]"
    else:
        text = draw(st.sampled_from(["str", "int", "float", "bool", "bytes", "any", "Job", "std.Thing"]))
    return text + ("?" if draw(st.integers(0, 3)) == 0 else "")


@st.composite
def _message(draw) -> str:
    fields = []
    for _ in range(draw(st.integers(0, 4))):
        text = f"{draw(st.sampled_from(WORDS))}: {draw(_type())}"
        if draw(st.booleans()):
            text += f" = {draw(_term(1))}"
        fields.append(text)
    name = draw(st.sampled_from(["Job", "Thumb", "Ping"]))
    if draw(st.booleans()):
        return f"message {name}{draw(_ws)}{{ " + ", ".join(fields) + " }"
    sep = [draw(st.sampled_from(["\n  ", ",\n  ", "\n  // c\n  "])) for _ in fields]
    return f"message {name} {{\n  " + "".join(f + s for f, s in zip(fields, sep)) + "\n}"


@st.composite
def _decl(draw) -> str:
    kind = draw(st.sampled_from(["import", "cluster", "channel", "ecosystem", "message"]))
    if kind == "import":
        target = draw(st.one_of(_name(), st.just('"lib/common.eco"')))
        alias = f" as {draw(st.sampled_from(WORDS))}" if draw(st.booleans()) else ""
        return f"import {target}{alias}"
    if kind == "message":
        return draw(_message())
    name = draw(st.sampled_from(WORDS))
    on = f" on {draw(st.sampled_from(WORDS))}" if kind == "ecosystem" and draw(st.booleans()) else ""
    return f"{kind} {name}{on} {draw(_object(0))}"


@st.composite
def syntactic_sources(draw) -> str:
    """A random source that parses (its meaning is irrelevant: it need not compile)."""
    out = []
    for decl in draw(st.lists(_decl(), max_size=5)):
        before = draw(st.sampled_from(["", "", "\n", "// lead\n", "/* lead */\n", "\n\n\n"]))
        after = draw(st.sampled_from(["", "", "  // trailing", " /* t */"]))
        out.append(before + decl + after)
    tail = draw(st.sampled_from(["", "", "// end\n", "\n\n"]))
    return "\n".join(out) + ("\n" if out else "") + tail


# --------------------------------------------------------- valid programs


@st.composite
def valid_programs(draw) -> str:
    """A program the compiler accepts, with random settings, layout and comments."""
    nl = lambda: draw(st.sampled_from(["\n", "\n", "\n\n", "  // c\n", "\n/* b */\n"]))  # noqa: E731
    n_nodes = draw(st.integers(3, 5))
    nodes = "".join(
        f'    n{i} at "127.0.0.1:{7100 + i}" zone "{draw(st.sampled_from("ab"))}"{nl()}' for i in range(1, n_nodes + 1)
    )
    seeds = ", ".join(f"n{i}" for i in range(1, draw(st.integers(1, n_nodes)) + 1))
    topology = draw(
        st.sampled_from(
            ["full_mesh", "hyparview { active: 4, passive: 20 }", "hyparview {\n active: 5\n passive: 30\n}"]
        )
    )
    heartbeat = draw(st.sampled_from(["200ms", "1s", "0.50s", "1000ms"]))
    cluster = (
        f"cluster media {{{nl()}  nodes {{\n{nodes}  }}\n  seeds [{seeds}]{nl()}"
        f"  topology {topology}\n"
        f"  failure_detector phi {{ threshold: {draw(st.sampled_from(['8', '8.0', '10.50']))}, heartbeat: {heartbeat} }}\n"
        f'  security {{ cookie: env("ECO_COOKIE"), tls: off }}\n}}\n'
    )
    default = draw(st.sampled_from(["", " = 0", " = 007"]))
    tags_default = draw(st.sampled_from(["", ' = []', ' = ["a", "b\\tc"]']))
    messages = (
        f"message Job {{ path: str, size: int{default}, tags: list[str]{tags_default} }}\n"
        f"message Thumb {{{nl()}  path: str{nl()}  digest: bytes\n}}\n"
    )
    chunk = draw(st.sampled_from(["256KB", "1MB", "0064KB", "1024B"]))
    channel = (
        f"channel jobs {{\n  priority: {draw(st.sampled_from(['high', 'normal', 'low']))}{nl()}"
        f"  delivery: at_least_once, ordering: fifo\n  parallelism: {draw(st.integers(1, 8))}\n"
        f"  chunk: {chunk}\n  carries Job, Thumb\n}}\n"
    )
    workers = draw(st.integers(4, 12))
    restarts = draw(st.sampled_from(["5 within 10s", "3 within 1.5s"]))
    eco = (
        f"ecosystem thumbnails on media {{\n  coordinator: media.pipeline:Coordinator\n"
        f"  workers: media.pipeline:Resizer x {workers}{nl()}"
        f"  supervision {{ strategy: one_for_one, restart: permanent, max_restarts: {restarts}, shutdown: 5s }}\n"
        f"  distribution {{\n    policy: cluster_wide\n    placement: least_loaded\n    spread: zone\n  }}\n"
        f"  channels {{ control: std.control, data: jobs }}\n"
        f"  state {{\n    done: crdt pn_counter\n    cache: gossip_cache {{ ttl: 30s }}\n"
        f'    checkpoint every 5s to "sqlite:///tmp/eco/t\\u{{65}}st.db"\n  }}\n'
        f"  scaling {{\n    workers: 4..64\n    when mailbox_depth > 100 for 10s: add 4\n"
        f"    when idle > 60s: remove 2\n  }}\n"
        f"  backpressure {{ mailbox: 1000, overflow: block }}\n"
        f'  register as "thumbnails"\n}}\n'
    )
    parts = ["import std.channels\n", cluster, messages, channel, eco]
    return draw(st.sampled_from(["", "// header\n\n"])) + "\n".join(parts)


# ------------------------------------------------------ tree comparison


def shape(node):
    """A comparable form of a syntax tree: no spans, no layout flags, numbers by value and unit."""
    if isinstance(node, list):
        return [shape(n) for n in node]
    if isinstance(node, tuple):
        return tuple(shape(n) for n in node)
    if isinstance(node, ast.Duration):
        return ("Duration", node.seconds, node.text.lstrip("-0123456789."))
    if isinstance(node, ast.Size):
        return ("Size", node.bytes, node.text.lstrip("-0123456789."))
    if isinstance(node, ast.Comment):
        return ("Comment", node.text.rstrip().replace("\r\n", "\n"))
    if isinstance(node, ast.Node):
        skip = {"span", "multiline", "own_line"}
        return (type(node).__name__,) + tuple(
            (f.name, shape(getattr(node, f.name))) for f in dataclasses.fields(node) if f.name not in skip
        )
    return node
