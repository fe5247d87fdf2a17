"""Every ECO00xx code is documented, and its case file and explain example trigger it."""

from pathlib import Path

import pytest

from eco.language import SourceFile, codes, parse
from eco.language.source import decode_source

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "diagnostics" / "cases"
EXPLAIN = ROOT / "compiler" / "explain"
# Not triggerable by a small checked-in file: a file over the size limit (tested in test_source_loading) and parser bugs.
NO_CASE_FILE = {codes.FILE_TOO_LARGE, codes.INTERNAL_PARSER_ERROR}


def _codes_for(path: Path) -> list[str]:
    source, diags = decode_source(path.name, path.read_bytes())
    if source is None:
        return [d.code for d in diags]
    return [d.code for d in parse(source).diagnostics]


@pytest.mark.parametrize("code", sorted(codes.TITLES))
def test_code_is_documented(code):
    page = EXPLAIN / f"{code}.md"
    assert page.is_file()
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# {code}: {codes.TITLES[code]}\n")
    assert "## Example" in text and "## Fix" in text


@pytest.mark.parametrize("code", sorted(set(codes.TITLES) - NO_CASE_FILE))
def test_case_file_triggers_its_code(code):
    (case,) = [p for p in (CASES / f"{code}.eco", CASES / f"{code}.bin") if p.exists()]
    assert _codes_for(case)[0] == code


@pytest.mark.parametrize("code", sorted(set(codes.TITLES) - NO_CASE_FILE))
def test_explain_example_triggers_its_code(code):
    text = (EXPLAIN / f"{code}.md").read_text(encoding="utf-8")
    if "```eco" not in text:
        pytest.skip("binary example")
    example = text.split("```eco\n", 1)[1].split("```", 1)[0]
    assert [d.code for d in parse(SourceFile("example.eco", example)).diagnostics][0] == code
