"""Every code the compiler can emit is documented, has an example that triggers it, and a golden case."""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

from eco.compiler import explain

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "language").glob("*.py")), *sorted((ROOT / "compiler").glob("*.py"))]
CASES = Path(__file__).parent / "cases"
CODE = re.compile(r"ECO\d{4}")

# Codes whose explain example cannot be a small text file compiled on its own;
# each is still covered by a case file or by a robustness test (see the reason).
EXAMPLE_EXEMPT = {
    "ECO0001": "needs binary bytes (covered by cases/ECO0001.eco and tests/cli/test_cli_robustness.py)",
    "ECO0002": "needs invalid UTF-8 bytes (covered by cases/ECO0002.eco and tests/cli/test_cli_robustness.py)",
    "ECO0003": "needs a file over the size limit (covered by tests/cli/test_cli_robustness.py)",
    "ECO0099": "reports a parser bug; there is no input that should trigger it",
    "ECO1015": "needs three files (a name reached only through another import; covered by cases/ECO1015.eco)",
}
CASE_EXEMPT = {
    "ECO0003": "a case file would have to exceed the size limit (covered by tests/cli/test_cli_robustness.py)",
    "ECO0099": "reports a parser bug; there is no input that should trigger it",
}


@lru_cache(maxsize=1)
def emitted_codes() -> dict[str, list[str]]:
    """Every string constant that is exactly a code, with where it appears."""
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
                found.setdefault(node.value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


CODES = sorted(emitted_codes())


def test_the_scan_finds_codes():
    assert CODES, "no ECOnnnn string constants found in language/ or compiler/"


@pytest.mark.parametrize("code", CODES)
def test_code_is_documented(code):
    doc = explain.load(code)
    assert doc is not None, f"{code} (used at {emitted_codes()[code]}) has no compiler/explain/{code}.md"
    assert doc.title, f"compiler/explain/{code}.md must start with a `# {code}: title` heading"
    if code not in EXAMPLE_EXEMPT:
        assert doc.example, f"compiler/explain/{code}.md needs an ```eco example block"


@pytest.mark.parametrize("code", CODES)
def test_code_has_a_case(code):
    if code in CASE_EXEMPT:
        pytest.skip(CASE_EXEMPT[code])
    cases = list(CASES.glob(f"{code}.eco")) + list(CASES.glob(f"{code}-*.eco"))
    assert cases, f"{code} has no tests/diagnostics/cases/{code}.eco"


def test_explain_pages_document_real_codes():
    stray = sorted(set(explain.codes()) - set(CODES))
    assert not stray, f"explain pages for codes the compiler never emits: {stray}"


@pytest.mark.parametrize("code", explain.codes())
def test_explain_example_triggers_its_code(code, tmp_path, monkeypatch):
    if code in EXAMPLE_EXEMPT:
        pytest.skip(EXAMPLE_EXEMPT[code])
    from eco.compiler.driver import compile_file

    doc = explain.load(code)
    assert doc.example, f"compiler/explain/{code}.md has no ```eco example"
    (tmp_path / "example.eco").write_text(doc.example, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    resolve = "ecoc: --resolve-imports" in doc.example.split("\n", 1)[0]
    result = compile_file("example.eco", resolve_imports=resolve)
    codes = [d.code for d in result.diagnostics]
    assert code in codes, f"the example in compiler/explain/{code}.md does not trigger {code} (got {codes})"
