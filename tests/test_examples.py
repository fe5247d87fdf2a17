"""The examples double as documentation: they compile, and the runnable ones are in canonical format."""

import pathlib

import pytest

from eco.compiler.driver import compile_file
from eco.compiler.fmt import format_source

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.eco"))
# thumbnails.eco keeps the layout of the language sketch it reproduces (aligned comments).
CANONICAL = [p for p in EXAMPLES if p.name != "thumbnails.eco"]


def test_there_are_examples():
    assert len(EXAMPLES) >= 3 and CANONICAL


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_compiles_without_errors(path):
    result = compile_file(path)
    errors = [f"{d.code}: {d.message}" for d in result.diagnostics if d.severity.name == "ERROR"]
    assert errors == []
    assert result.plan is not None and result.plan.ecosystems


@pytest.mark.parametrize("path", CANONICAL, ids=lambda p: p.name)
def test_runnable_example_is_formatted(path):
    text = path.read_text(encoding="utf-8")
    assert format_source(text, str(path)).text == text
