"""Spans: exact offsets, line/column with LF, CRLF, lone CR and a stripped BOM."""

import pytest

from eco.language import SourceFile, ast, parse
from eco.language.source import source_from_string


def pos(span):
    p = span.start_pos
    return p.line, p.column


@pytest.mark.parametrize("nl", ["\n", "\r\n", "\r"])
def test_line_and_column_for_every_line_ending(nl):
    text = nl.join(["// c", "cluster media {", "  seeds [n1,", "    n2]", '  x: "v"', "}", ""])
    result = parse(SourceFile("t.eco", text))
    assert result.diagnostics == []
    (cluster,) = result.module.decls
    seeds, x = cluster.body.items
    assert pos(cluster.span) == (2, 1) and cluster.span.end_pos.line == 6
    assert pos(seeds.span) == (3, 3)
    assert pos(seeds.terms[0].items[1].span) == (4, 5)
    assert pos(x.terms[0].span) == (5, 6) and x.terms[0].span.text == '"v"'
    assert cluster.body.multiline
    assert result.module.comments[0].text == "// c"


def test_every_node_span_covers_its_text():
    text = 'ecosystem e on c {\n  workers: a.b:C x 3\n  when q >= 1.5s for 2m: add 1\n}\nmessage M { a: list[int]? = [1] }'
    module = parse(SourceFile("t.eco", text)).module
    eco, msg = module.decls
    workers, rule = eco.body.items
    assert workers.span.text == "workers: a.b:C x 3"
    assert workers.terms[0].span.text == "a.b:C"
    assert rule.span.text == "when q >= 1.5s for 2m: add 1"
    assert rule.threshold.span.text == "1.5s" and rule.window.span.text == "2m"
    field = msg.fields[0]
    assert field.span.text == "a: list[int]? = [1]" and field.type.span.text == "list[int]?"
    assert eco.cluster.span.text == "c"
    assert module.span.start == 0 and module.span.end == len(text)


def test_bom_is_stripped_and_columns_start_at_one():
    source = source_from_string("\ufeffcluster c {}")
    (decl,) = parse(source).module.decls
    assert pos(decl.span) == (1, 1)


def test_column_counts_characters_not_bytes():
    result = parse(SourceFile("t.eco", 'cluster c { a: "ééé", b: 5xs }'))
    (diag,) = result.diagnostics
    assert pos(diag.span) == (1, 27) and diag.span.text == "xs"


def test_object_multiline_flag():
    module = parse(SourceFile("t.eco", "cluster c { a {\n}, b { } }")).module
    a, b = module.decls[0].body.items
    assert a.terms[0].multiline and not b.terms[0].multiline
    assert isinstance(a.terms[0], ast.ObjectExpr)
