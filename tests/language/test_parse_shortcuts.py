"""The parser's fast paths give exactly what the plain LALR automaton and lexer give.

Two fast paths are checked differentially: the whole-text splitter (one
``findall``, cached token classes, module references assembled where the parser
accepts them) against the reference lexer regex, and the one-line item
shortcuts (``eco.language.shortcuts``) against parsing the same input with the
shortcuts switched off.
"""

from __future__ import annotations

import dataclasses
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from eco.language import SourceFile, ast, parse
from eco.language import parser
from eco.language.parser import _grammar
from eco.language.spans import Span
from eco.language.tables import load_tables

ROOT = Path(__file__).resolve().parents[2]
_ALPHABET = 'ab_Z09.:-"\\/*\n\r\t\f {}[](),=<>!?#x'


# ------------------------------------------------------------------ lexer


def _reference_tokens(text: str, modref_accepted: bool) -> list[tuple[str, int, int]]:
    """Tokens by matching the grammar's terminals in priority order at each position (the old lexer)."""
    terminals = load_tables().terminals
    reference = re.compile("[ \\t\\f]*(?:" + "|".join(f"(?P<{n}>{r})" for n, r in terminals) + ")")
    ident = re.compile(dict(terminals)["IDENT"])
    out, pos = [], 0
    while True:
        m = reference.match(text, pos)
        if m is None:
            pos = re.compile("[ \\t\\f]*").match(text, pos).end()
            if pos >= len(text):
                return out
            out.append(("_BAD", pos, pos + 1))
            pos += 1
            continue
        typ = m.lastgroup
        start, pos = m.span(typ)
        if typ == "MODREF" and not modref_accepted:
            typ, pos = "IDENT", ident.match(text, start).end()
        out.append((typ, start, pos))


def _split_tokens(text: str, modref_accepted: bool) -> list[tuple[str, int, int]]:
    """The same, the way ``_Parser.run`` lexes."""
    g = _grammar()
    out, pos = [], 0
    strings = iter(g.splitter.findall(text))
    for s in strings:
        start = pos
        pos += len(s)
        typ, _, n = g.token(s)
        end = start + n
        if typ == "_WS":
            continue
        if typ == "IDENT" and modref_accepted:
            m = g.modref.match(text, start)
            if m is not None:
                typ, end = "MODREF", m.end()
                while pos < end:
                    pos += len(next(strings))
        out.append((typ, start, end))
    assert pos == len(text)
    return out


def test_splitter_lexes_like_the_terminals_in_priority_order():
    rng = random.Random(11)
    for _ in range(8_000):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 14)))
        for accepted in (False, True):
            assert _split_tokens(text, accepted) == _reference_tokens(text, accepted), (text, accepted)


# ------------------------------------------------------------------ item shortcuts


def test_shortcuts_cover_item_and_field_starts():
    g = _grammar()
    g.prepare_shortcuts()
    kinds = sorted({kind for kind, _ in g.shortcuts.values()})
    assert kinds == ["field", "item"]  # a grammar edit that disables them shows up here
    assert set(g.blocks) == {state for state, (kind, _) in g.shortcuts.items() if kind == "item"}


def test_small_files_skip_preparing_the_shortcuts():
    code = ("from eco.language import SourceFile, parse\n"
            "from eco.language.parser import _grammar\n"
            "parse(SourceFile('t.eco', 'cluster a { x: 1 }'))\n"
            "assert not _grammar()._shortcuts_prepared\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _dump(result) -> tuple:
    def canon(x):
        if isinstance(x, list):
            return [canon(y) for y in x]
        if isinstance(x, Span):
            return (x.start, x.end)
        if isinstance(x, ast.Node):
            return (type(x).__name__, *((f.name, canon(getattr(x, f.name))) for f in dataclasses.fields(x)))
        return x

    diags = [(d.code, d.message, canon(d.span), d.label, [(canon(lb.span), lb.message) for lb in d.labels],
              d.notes, d.help, d.fix and [(canon(e.span), e.replacement) for e in d.fix.edits])
             for d in result.diagnostics]
    return canon(result.module), diags


def _same_without_shortcuts(text: str) -> None:
    g = _grammar()
    g.prepare_shortcuts()
    saved_from, parser.SHORTCUTS_FROM_CHARS = parser.SHORTCUTS_FROM_CHARS, 0  # also for small texts
    try:
        with_shortcuts = _dump(parse(SourceFile("t.eco", text)))
        saved, g.shortcuts = g.shortcuts, {}
        try:
            plain = _dump(parse(SourceFile("t.eco", text)))
        finally:
            g.shortcuts = saved
    finally:
        parser.SHORTCUTS_FROM_CHARS = saved_from
    assert with_shortcuts == plain, text


_LINES = [
    "priority: normal", "chunk: 256KB", "coordinator: a.b:Coordinator", "x: a.b", 'x: "s\\n"', 'x: "bad\\q"',
    "x: 5zz", "x: -1.5", "workers: a.b:W x 8", "max_restarts: 5 within 10s", 'n1 at "h:1" zone "a"', "when: 1",
    "carries: x", "x: for", "x: a.on", "on: 1", "x:y", "x:y:z", "x: 1..2", "x: f(1)", "x: [1]", "x: {a: 1}",
    "x", "x 1", "path: str", "size: int = 0", "took: float = 0.0", "t: Job?", "m: map[str, int] = {}", "d: str = as",
    "x: 1 // c", "x: 1 /* c */", "x: 1 /* c */ 2", "x :  1", "x: 1,", "x: 1, y: 2", "x\t:\f1",
    # fields with type arguments and empty defaults
    "tags: list[str] = []", "m: map[ str ,int ]", "m: list[on]", "m: list[str]?", "m: list[list[str]]",
    "x: list[str] = { }", "x: map[a,]", "x: list[str] = [1]", "x: list[] = []", "m: map[a, b, c] = {}",
    "x: list [ str ] = [ ]", "x: list[str] = {a: 1}", "x: a.b[str]", "x: list[a.b]", "x: list[str] = [] 1",
    # blocks after values, nested blocks
    "cache: gossip_cache { ttl: 30s }", "a b.c:D 1 { x: 1, y { z: 2 } }", "a: { }", "s { a { b { c: 1 } } }",
    "a { b { c: 1 } d }", "a { b { c: 1 } } e", "a: on { x: 1 }", "a { when: 1 }", "a { b { when x > 1: add 1 } }",
    "a { b // c\n { x: 1 } }", "a 1 2 3 { x: 1\n y: 2 }", "a { x: 1 /* c */ }", "a {\n  b: c { d: 1 } // n\n  e: 2\n}",
    # keywords as values: a plain name where the automaton does not expect the keyword
    'register as "x"', "x as", "x: as", "x: a as", "x: as.b", "x: a.as", "x: message", "x 1 for", "x as { y: as }",
    "x: a.for 1", "x: carries", "x: when on",
    # `when` rules
    "when mailbox_depth > 100 for 10s: add 4", "when idle > 60s: remove 2", "when a.b >= x.y: add", 'when a == "s": b c:D',
    "when a < b:c: add 1", "when a > 1 for: add 1", "when a > 1 forx: add 1", "when for > 1: add 1", "when a > 1: on 2",
    "when a > for: add", "when a > 1 for 2 for 3: add", "when a > 1: add 1 2", "when a>1:add:b", "when a > 5zz: add 1",
    "s { when a > 1: add 1, b: 2 }", "when a > 1: add 1 { }", "when a.on > 1: x",
    "a: x { b: 1 } { c: 2 }", "a { b: 1 }, c { d { } }", "a: 5zz { b: 1 }", "a: x:Y { b: c:D }", 'a "s" { b: "\\q" }',
    # ranges and `carries` lists (taken inside blocks and declaration bodies)
    "workers: 4..64", "x: a..b", "x 1 .. 2", "x: a.b..c.d", "x: 1..2 3", "x: 1..", "x: ..2", "x: 5zz..1", "x: on..1",
    "x: 1...2", "x: -1..-2", "x: 1..2x", "x: a:B..c", "x: 1..2 { }", "x: 1.5..2.5", "x: 1 ..\n 2",
    "carries A, B", "carries a.b", "carries A,\n B", "carries A, B,", "carries on", "carries A B", "carries",
    "carries A, message", "carries A // c", "carries A,B,C,D,E", "carries a.b:C", "s { carries A, B }",
]
_WRAPPERS = [
    "cluster c {{\n  {0}\n  {1}\n}}\n", "channel c {{ {0}, {1} }}\n", "message M {{\n  {0}\n  {1}\n}}\n",
    "message M {{ {0}, {1} }}", "ecosystem e {{\n  s {{ {0}\n {1} }}\n}}", "cluster c {{ {0}\r\n{1}\r\n}}",
    "cluster c {{ {0} // trailing", "cluster c {{\n  {0}\n  {1}",
]


@pytest.mark.parametrize("wrapper", _WRAPPERS)
def test_shortcut_lines_parse_as_without_shortcuts(wrapper):
    for a in _LINES:
        for b in _LINES[::11]:
            _same_without_shortcuts(wrapper.format(a, b))


_DECLARATIONS = [
    "cluster c {{ {0} }}", "channel c {{\n  {0}\n}}", "ecosystem e on c {{\n  {0}\n  {1}\n}}", "message M {{ {0} }}",
    "message M {{\n  a: int\n  {0}\n}}", "ecosystem e {{ }}", "message M {{}}", "cluster c {{ {0} // c\n}}",
]
_FOLLOWERS = ["", "\n", "\nmessage N { a: int }\n", "  // c\n\nchannel d { }", "\n/* c */ cluster d { }", " }",
              "\nmessages N { }", "\nmessage.x", "\nmessage:x", "\nx", "\n{", "\nimport std.channels", "ecosystem",
              "\r\ncluster d {}", "\n'", "\n\"s\""]


def test_declaration_shortcuts_parse_as_without_shortcuts():
    """Whole bodies and messages are taken only when another declaration or the end follows."""
    for decl in _DECLARATIONS:
        for a in _LINES[::3]:
            for follower in _FOLLOWERS:
                _same_without_shortcuts(decl.format(a, "x: 1") + follower)


def test_deeply_nested_blocks_parse_as_without_shortcuts():
    for depth in range(parser.MAX_NESTING - 3, parser.MAX_NESTING + 3):
        inner = "a { " * depth + "x: 1" + " }" * depth
        _same_without_shortcuts(f"cluster c {{\n  {inner}\n}}\n" + "// padding\n" * 10)
        _same_without_shortcuts(f"cluster c {{\n  {inner} }}\n")


def test_files_parse_as_without_shortcuts():
    for path in sorted((ROOT / "examples").rglob("*.eco")) + sorted((ROOT / "tests" / "diagnostics" / "cases").glob("*.eco")):
        _same_without_shortcuts(path.read_text(encoding="utf-8", errors="replace"))


_PIECES = [":", ",", "{", "}", "[", "]", "\n", " ", "a", "a:b", "x.y:Z", "5s", "1..", '"', '"x\\', "/*", "//",
           "carries", "when", "on", "as", "=", "?", "\r", "'", "-", "..", "1.5", "256KB", '"\\q"', "x: y", "a b c"]


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_edited_examples_parse_as_without_shortcuts(data):
    text = (ROOT / "examples" / "thumbnails.eco").read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:at] + text[at + data.draw(st.integers(1, 6)):]
        else:
            text = text[:at] + data.draw(st.sampled_from(_PIECES)) + text[at:]
    _same_without_shortcuts(text)


def test_bench_spec_items_all_take_shortcuts(monkeypatch):
    """The generated benchmark spec parses the same either way, and its fields, `when` rules, ranges,
    `carries` lists, blocks (nested, after values, with keywords as plain names), declaration bodies
    and messages never reach the automaton's rules."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from bench_compiler import generate_spec
    finally:
        sys.path.remove(str(ROOT / "bench"))
    text = generate_spec(300)
    _same_without_shortcuts(text)
    reduced = []
    for rule in ("r_field", "r_when_rule", "r_property", "r_range", "r_carries", "r_body", "r_message_decl"):
        original = getattr(parser._Builder, rule)
        monkeypatch.setattr(parser._Builder, rule, lambda self, c, _o=original, _r=rule: reduced.append(_r) or _o(self, c))
    monkeypatch.setattr(parser, "SHORTCUTS_FROM_CHARS", 0)
    result = parse(SourceFile("bench.eco", text))
    assert not result.diagnostics
    for rule in ("r_field", "r_when_rule", "r_range", "r_carries", "r_message_decl"):
        assert reduced.count(rule) == 0, rule
    # calls are left to the automaton: `cookie: env("ECO_COOKIE")` in the header, with the bodies
    # around it (`security { ... }` and the cluster's)
    assert text.count("(") == 1
    assert reduced.count("r_property") == 1 and reduced.count("r_body") == 2
