"""Fuzzing: no input makes the front end raise."""

from pathlib import Path

from hypothesis import given, strategies as st

from eco.language import SourceFile, ast, parse
from eco.language.source import decode_source

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "thumbnails.eco").read_text(encoding="utf-8")

_PIECES = ["{", "}", "[", "]", "(", ")", ",", "\n", ":", "..", ".", '"', "\\", "/*", "*/", "//", "x", "5s", "5xs",
           "cluster", "message", "when", "carries", "for", "a.b:C", "=", ">", "?", "\r", "\r\n", "\t", "é", "-1"]


def _check(text: str) -> None:
    result = parse(SourceFile("fuzz.eco", text))
    assert isinstance(result.module, ast.Module)
    for d in result.diagnostics:
        assert d.code.startswith("ECO0") and d.code != "ECO0099", d
        assert 0 <= d.span.start <= d.span.end <= len(text)
        d.span.start_pos  # noqa: B018 - positions must be computable


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    source, diags = decode_source("fuzz.eco", data)
    if source is not None:
        _check(source.text)
    else:
        assert diags


@given(st.text(max_size=200))
def test_random_text_never_raises(text):
    _check(text)


@given(st.lists(st.sampled_from(_PIECES), max_size=60))
def test_token_soup_never_raises(pieces):
    _check(" ".join(pieces))


@given(st.data())
def test_mutated_example_never_raises(data):
    text = EXAMPLE
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 20)))
        text = text[:i] + data.draw(st.sampled_from(_PIECES + [""])) + text[j:]
    _check(text)
