"""Golden tests: every case file triggers the code it is named after, rendered exactly as recorded.

Case files live in ``tests/diagnostics/cases/`` and are named after the code
they must trigger: ``ECO1003.eco`` or, for more than one case per code,
``ECO1003-variant.eco``.  Files they import live in sub-directories (``lib/``),
which are not cases themselves.  A first line ``// ecoc: --resolve-imports``
compiles the case with Python import resolution.

The human rendering (no colour) and the JSON rendering of all diagnostics are
compared with ``golden/<case>.txt`` and ``golden/<case>.json``.  After an
intended change, regenerate them with::

    ECO_UPDATE_GOLDEN=1 python -m pytest -q tests/diagnostics/test_golden.py

and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from eco.compiler.render import FileReport, RunReport, render

HERE = Path(__file__).parent
CASES = HERE / "cases"
GOLDEN = HERE / "golden"
CASE_NAME = re.compile(r"(ECO\d{4})(?:-[\w-]+)?")
UPDATE = bool(os.environ.get("ECO_UPDATE_GOLDEN"))


def case_files() -> list[Path]:
    return sorted(p for p in CASES.glob("*.eco") if CASE_NAME.fullmatch(p.stem))


def case_code(path: Path) -> str:
    return CASE_NAME.fullmatch(path.stem).group(1)


def compile_case(path: Path, root: Path = HERE):
    """Compile a case with a path relative to ``root`` so rendered paths are stable."""
    from eco.compiler.driver import compile_file

    head = path.read_bytes()[:200]
    resolve = b"ecoc: --resolve-imports" in head.split(b"\n", 1)[0]
    rel = os.path.relpath(path, root)
    return compile_file(rel, resolve_imports=resolve, search_paths=(os.path.relpath(CASES, root),))


def _stable_json(report: RunReport) -> str:
    data = json.loads(render(report, "json"))
    data["tool"]["version"] = "<version>"
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _compare(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual, encoding="utf-8", newline="\n")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.relative_to(HERE)}; create it with ECO_UPDATE_GOLDEN=1 (then review it)")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path.name} differs from the golden file (ECO_UPDATE_GOLDEN=1 regenerates it)"


def test_there_are_cases():
    assert case_files(), "tests/diagnostics/cases/ holds no ECOnnnn.eco case files"


@pytest.mark.parametrize("case", case_files(), ids=lambda p: p.stem)
def test_case(case: Path, monkeypatch):
    monkeypatch.chdir(HERE)
    result = compile_case(case)
    codes = [d.code for d in result.diagnostics]
    assert case_code(case) in codes, f"{case.name} should trigger {case_code(case)}, got {codes}"
    report = RunReport(command="check", files=[FileReport(os.path.relpath(case, HERE), list(result.diagnostics))])
    human = render(report, "human", color=False)
    assert "Traceback" not in human
    _compare(GOLDEN / f"{case.stem}.txt", human)
    _compare(GOLDEN / f"{case.stem}.json", _stable_json(report))


def test_no_orphan_golden_files():
    stems = {p.stem for p in case_files()}
    orphans = sorted(p.name for p in GOLDEN.glob("*") if p.suffix in (".txt", ".json") and p.stem not in stems)
    if UPDATE:
        for name in orphans:
            (GOLDEN / name).unlink()
        return
    assert not orphans, f"golden files without a case (delete them, or run with ECO_UPDATE_GOLDEN=1): {orphans}"
