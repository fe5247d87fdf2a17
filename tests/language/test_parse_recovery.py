"""Syntax errors: clear messages, every independent error reported, no cascades."""

import pytest

from eco.language import Severity, ast

from lang_helpers import parse_text


def diags(text):
    return [(d.code, d.span.start_pos.line, d.message) for d in parse_text(text).diagnostics]


def test_independent_errors_in_one_body_are_all_reported():
    text = "cluster a {\n  priority = 5\n  x:\n  y: [1 2]\n  ok: 1\n  z: 5xs\n}\n"
    result = parse_text(text)
    got = [(d.code, d.span.start_pos.line) for d in result.diagnostics]
    assert got == [("ECO0020", 2), ("ECO0020", 3), ("ECO0020", 4), ("ECO0014", 6)]
    assert all(d.severity is Severity.ERROR for d in result.diagnostics)
    # The good item survives; broken items are dropped, not half-built.
    items = result.module.decls[0].body.items
    assert [i.key.name for i in items] == ["ok", "z"]


def test_errors_in_several_declarations():
    text = "clustr a {\n  x: 1\n}\nchannel c { priority: }\nmessage M { a: int b: str }\nchannel ok { priority: high }\n"
    got = diags(text)
    assert [c for c, _, _ in got] == ["ECO0021", "ECO0020", "ECO0020"]
    assert [line for _, line, _ in got] == [1, 4, 5]
    assert [type(d).__name__ for d in parse_text(text).module.decls] == ["ChannelDecl", "MessageDecl", "ChannelDecl"]


def test_human_messages_name_what_was_expected():
    (d,) = parse_text("cluster a {\n  priority = 5\n}").diagnostics
    assert d.message == "expected `:` or a value after `priority`, found `=`"
    assert d.fix is not None and d.fix.edits[0].replacement == ":"
    (d,) = parse_text("cluster a {\n  priority:\n}").diagnostics
    assert d.message == "expected a value after `priority:`, found a newline"
    (d,) = parse_text("cluster media\nmessage M {}").diagnostics
    assert d.message == "expected `{` after `media`, found `message`"
    (d,) = parse_text("message M { a: int b: str }").diagnostics
    assert "a newline or `,`" in d.message and "after `int`" in d.message
    (d,) = parse_text('cluster a { "x": 1 }').diagnostics
    assert d.message == 'expected a setting, found string "x"'
    for d in parse_text("cluster a { x: [1 2] }\ncluster b { when x > : add 1 }").diagnostics:
        assert "IDENT" not in d.message and "LSQB" not in d.message and "_SEP" not in d.message


def test_misspelt_top_level_keyword_suggests_the_keyword():
    (d,) = parse_text("clustr media {\n  seeds [n1]\n}\n").diagnostics
    assert d.code == "ECO0021" and d.help == "did you mean `cluster`?"
    assert d.fix.edits[0].span.text == "clustr" and d.fix.edits[0].replacement == "cluster"
    (d,) = parse_text("ecosytem e {}").diagnostics
    assert d.help == "did you mean `ecosystem`?"


def test_unclosed_brace_points_at_where_it_was_opened():
    text = "cluster a {\n  nodes {\n    n1 at \"x\"\n}\n"
    (d,) = parse_text(text).diagnostics
    assert d.code == "ECO0022"
    assert d.span.start == len(text)
    assert [(l.span.start_pos.line, l.span.start_pos.column) for l in d.labels] == [(1, 11)]


def test_mismatched_and_stray_closers():
    (d,) = parse_text("cluster a { x: [1, 2 }").diagnostics
    assert d.code == "ECO0020" and d.labels[0].message == "this `[` is not closed"
    (d,) = parse_text("cluster a { x: 1 }\n}").diagnostics
    assert d.code == "ECO0023" and d.span.start_pos.line == 2


def test_lexical_errors_have_precise_spans():
    text = 'cluster a {\n  a: "abc\n  b: "x\\qy"\n  c: 5xs\n  d: 1 @\n  e: "\\u{D800}"\n}'
    result = parse_text(text)
    got = [(d.code, d.span.start_pos.line, d.span.start_pos.column, d.span.text) for d in result.diagnostics]
    assert got == [
        ("ECO0011", 2, 6, '"abc'),
        ("ECO0012", 3, 8, "\\q"),
        ("ECO0014", 4, 7, "xs"),
        ("ECO0010", 5, 8, "@"),
        ("ECO0012", 6, 7, "\\u{D800}"),
    ]
    assert "did you mean `5s`" in result.diagnostics[2].help
    assert [i.key.name for i in result.module.decls[0].body.items] == ["a", "b", "c", "e"]


def test_unterminated_block_comment():
    (d,) = parse_text("cluster a {}\n/* never closed\ncluster b {}").diagnostics
    assert d.code == "ECO0013" and d.span.start_pos.line == 2


def test_fractional_bytes_are_invalid():
    (d,) = parse_text("channel c { chunk: 1.5B }").diagnostics
    assert d.code == "ECO0015"


@pytest.mark.parametrize("opener, nested", [("{", "{ x "), ("[", "[")])
def test_ten_thousand_open_brackets_do_not_crash(opener, nested):
    result = parse_text(opener * 10_000)
    assert result.diagnostics and result.module.decls == []
    result = parse_text("cluster a { x: " + nested * 10_000 + " }\nchannel c {}")
    codes = [d.code for d in result.diagnostics]
    assert "ECO0024" in codes


def test_deep_but_balanced_nesting_is_reported_once_and_parsing_continues():
    text = "cluster a " + "{ x " * 200 + "}" * 200 + "\nchannel c { priority: high }"
    result = parse_text(text)
    assert [d.code for d in result.diagnostics] == ["ECO0024"]
    assert isinstance(result.module.decls[-1], ast.ChannelDecl)


def test_nesting_at_the_limit_is_fine():
    text = "cluster a " + "{ x " * 63 + "}" * 63
    assert parse_text(text).diagnostics == []


def test_one_missing_separator_is_one_error():
    result = parse_text("cluster a {\n  x: 1 y: 2\n  z: 3\n}")
    assert len(result.diagnostics) == 1
