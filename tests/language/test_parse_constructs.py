"""Every construct of the language, literal decoding and separators."""

import pytest

from eco.language import ast

from lang_helpers import parse_text


def only(text):
    result = parse_text(text)
    assert [d.message for d in result.diagnostics] == []
    return result.module


def body_items(text):
    module = only(text)
    return module.decls[0].body.items


def term(value_text):
    (prop,) = body_items(f"channel c {{ k: {value_text} }}")
    assert isinstance(prop, ast.Property)
    assert len(prop.terms) == 1, prop.terms
    return prop.terms[0]


def test_empty_file_is_an_empty_module():
    module = only("")
    assert module.decls == [] and module.comments == []
    assert only("\n\n  // just a comment\n").decls == []


@pytest.mark.parametrize(
    "text, cls, attr, expected",
    [
        ("42", ast.Integer, "value", 42),
        ("-3", ast.Integer, "value", -3),
        ("2.5", ast.Float, "value", 2.5),
        ("200ms", ast.Duration, "seconds", 0.2),
        ("1.5s", ast.Duration, "seconds", 1.5),
        ("2m", ast.Duration, "seconds", 120.0),
        ("1h", ast.Duration, "seconds", 3600.0),
        ("10B", ast.Size, "bytes", 10),
        ("1KB", ast.Size, "bytes", 1024),
        ("1.5KB", ast.Size, "bytes", 1536),
        ("3MB", ast.Size, "bytes", 3 * 1024**2),
        ("2GB", ast.Size, "bytes", 2 * 1024**3),
        ('"a\\n\\t\\r\\"\\\\\\0b"', ast.String, "value", 'a\n\t\r"\\\0b'),
        ('"\\u{1F600}"', ast.String, "value", "\U0001F600"),
        ('"héllo"', ast.String, "value", "héllo"),
        ("a.b.c", ast.Name, "parts", ("a", "b", "c")),
        ("pkg.mod:Cls", ast.ModuleRef, "text", "pkg.mod:Cls"),
    ],
)
def test_literals(text, cls, attr, expected):
    t = term(text)
    assert isinstance(t, cls)
    assert getattr(t, attr) == pytest.approx(expected) if isinstance(expected, float) else getattr(t, attr) == expected


def test_lists_calls_ranges_objects():
    assert [i.value for i in term("[1, 2, 3,]").items] == [1, 2, 3]
    multi = term("[\n  a,\n  b\n]")
    assert [i.dotted for i in multi.items] == ["a", "b"]
    call = term('f(1, "x", [a])')
    assert call.func.dotted == "f" and [type(a).__name__ for a in call.args] == ["Integer", "String", "ListExpr"]
    assert term("static_quorum(2)").args[0].value == 2
    rng = term("1s..5s")
    assert isinstance(rng, ast.RangeExpr) and rng.low.seconds == 1 and rng.high.seconds == 5
    assert isinstance(term("lo..hi").low, ast.Name)
    obj = term("{ a: 1, b { c: 2 } }")
    assert isinstance(obj, ast.ObjectExpr) and not obj.multiline
    assert isinstance(obj.items[1], ast.Command) and isinstance(obj.items[1].terms[0], ast.ObjectExpr)
    assert term("{\n a: 1\n}").multiline


def test_separators_commas_newlines_mixed_and_trailing():
    items = body_items("cluster c {\n  a: 1, b: 2\n\n  c: 3,\n  d: 4,\n}")
    assert [i.key.name for i in items] == ["a", "b", "c", "d"]
    assert [i.key.name for i in body_items("cluster c { a: 1,\n b: 2 , }")] == ["a", "b"]
    assert body_items("cluster c {}") == [] and body_items("cluster c {\n\n}") == []


def test_property_command_and_terms():
    items = body_items('ecosystem e { max_restarts: 5 within 10s\n policy: explicit_nodes [n1, n3]\n register as "x" }')
    mr, pol, reg = items
    assert isinstance(mr, ast.Property) and len(mr.terms) == 3
    assert isinstance(pol, ast.Property) and pol.terms[0].dotted == "explicit_nodes"
    assert [n.dotted for n in pol.terms[1].items] == ["n1", "n3"]
    assert isinstance(reg, ast.Command) and reg.terms[1].value == "x"
    (bare,) = body_items("cluster c { leader }")
    assert isinstance(bare, ast.Command) and bare.terms == []


def test_key_value_without_space_is_not_a_module_ref():
    (p,) = body_items("cluster c { tls:off }")
    assert isinstance(p, ast.Property) and p.terms[0].dotted == "off"


def test_carries():
    items = body_items("channel c {\n carries A, std.B,\n   C\n priority: high }")
    assert isinstance(items[0], ast.Carries) and [n.dotted for n in items[0].types] == ["A", "std.B", "C"]
    assert items[1].key.name == "priority"
    (c,) = body_items("channel c { carries A }")
    assert [n.dotted for n in c.types] == ["A"]


@pytest.mark.parametrize("op", [">", ">=", "<", "<=", "==", "!="])
def test_when_rules(op):
    (rule,) = body_items(f"ecosystem e {{ when cpu.load {op} 0.5 for 1m: add 2 }}")
    assert isinstance(rule, ast.WhenRule)
    assert (rule.metric.dotted, rule.op, rule.threshold.value, rule.window.seconds) == ("cpu.load", op, 0.5, 60)
    assert (rule.action.name, rule.amount.value) == ("add", 2)
    (bare,) = body_items("ecosystem e { when idle > 60s: stop }")
    assert bare.window is None and bare.amount is None and bare.action.name == "stop"


def test_keywords_are_names_elsewhere():
    items = body_items("ecosystem e { cluster: media, message: for, when_x: 1, carries_y: 2 }")
    assert [i.key.name for i in items] == ["cluster", "message", "when_x", "carries_y"]
    assert items[1].terms[0].dotted == "for"


def test_imports():
    a, b, c = only('import std.channels\nimport "lib/other.eco" as other\nimport std.control as ctl').decls
    assert a.target.parts == ("std", "channels") and a.alias is None
    assert isinstance(b.target, ast.String) and b.target.value == "lib/other.eco" and b.alias.name == "other"
    assert c.alias.name == "ctl"


def test_ecosystem_on_cluster():
    (eco,) = only("ecosystem thumbs on media { isolation: process }").decls
    assert eco.name.name == "thumbs" and eco.cluster.name == "media"


def test_message_types():
    (msg,) = only("message M {\n a: map[str, int]\n b: Job?\n c: list[list[str]]? = []\n d: int = -1, }").decls
    a, b, c, d = msg.fields
    assert a.type.name.dotted == "map" and [t.name.dotted for t in a.type.args] == ["str", "int"]
    assert b.type.optional and b.type.args == []
    assert c.type.optional and c.type.args[0].args[0].name.dotted == "str"
    assert d.default.value == -1
    (empty,) = only("message E {}").decls
    assert empty.fields == []


def test_comments_line_and_block_with_own_line_flag():
    module = only("// head\ncluster c { /* inline */ a: 1 // tail\n  /* multi\n line */\n}\n")
    got = [(c.text, c.own_line) for c in module.comments]
    assert got == [("// head", True), ("/* inline */", False), ("// tail", False), ("/* multi\n line */", True)]
    assert module.decls[0].body.items[0].key.name == "a"
