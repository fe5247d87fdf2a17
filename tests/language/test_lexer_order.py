"""The parser's master regex lexes exactly like the grammar's terminals in priority order."""

from __future__ import annotations

import random
import re

from eco.language.parser import _grammar
from eco.language.spans import Span, SourceFile
from eco.language.tables import load_tables

_ALPHABET = 'ab_Z09.:-"\\/*\n\r\t {}[](),=<>!?#x'


def test_master_regex_matches_the_priority_order():
    terminals = load_tables().terminals
    reference = re.compile("[ \\t\\f]*(?:" + "|".join(f"(?P<{n}>{r})" for n, r in terminals) + ")")
    fast = _grammar().master
    assert fast.pattern != reference.pattern  # the reordering is in effect
    rng = random.Random(7)
    for _ in range(30_000):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 12)))
        a, b = reference.match(text), fast.match(text)
        assert (a and (a.lastgroup, a.span(a.lastgroup))) == (b and (b.lastgroup, b.span(b.lastgroup))), text


def test_spans_stay_frozen_values():
    src = SourceFile("x.eco", "abc")
    span = Span(src, 1, 2)
    assert span == Span(source=src, start=1, end=2) and hash(span) == hash(Span(src, 1, 2))
    try:
        span.start = 0  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("Span is mutable")
