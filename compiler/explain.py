"""Long explanations of diagnostic codes, for ``ecoc explain ECO1234``.

Each code has a Markdown page ``compiler/explain/<CODE>.md``:

- the first line is a level-1 heading: ``# ECO1001: unknown channel`` (the text
  after the code is the page's *title*, used in ``--list`` and SARIF rules);
- the first fenced block tagged ``eco`` is the *example*: a complete file that,
  compiled on its own, triggers the code (a test checks this); later ``eco``
  blocks (for instance the corrected version) are free-form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

EXPLAIN_DIR = Path(__file__).with_name("explain")
CODE_RE = re.compile(r"ECO\d{4}")
_HEADING_RE = re.compile(r"^#\s+(?:(ECO\d{4})\s*[:\-\u2014\u2013]?\s*)?(.*?)\s*#*\s*$")
_FENCE_RE = re.compile(r"^(```+|~~~+)\s*eco\s*$(.*?)^\1\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Explanation:
    code: str
    title: str
    text: str  # the whole Markdown page
    example: str | None  # the first ```eco block, or None when the page has none

    @property
    def path(self) -> Path:
        return EXPLAIN_DIR / f"{self.code}.md"


def parse(code: str, text: str) -> Explanation:
    """Split a page into title and example (see the module docstring for the layout)."""
    title = ""
    for line in text.splitlines():
        if line.strip():
            m = _HEADING_RE.match(line.strip())
            if m:
                title = m.group(2).strip()
            break
    m = _FENCE_RE.search(text)
    example = m.group(2).lstrip("\n") if m else None
    return Explanation(code, title, text, example)


def codes() -> list[str]:
    """Every documented code, sorted."""
    if not EXPLAIN_DIR.is_dir():
        return []
    return sorted(p.stem for p in EXPLAIN_DIR.glob("ECO*.md") if CODE_RE.fullmatch(p.stem))


@lru_cache(maxsize=None)
def load(code: str) -> Explanation | None:
    """The explanation for ``code`` (already normalised), or None when undocumented."""
    if not CODE_RE.fullmatch(code):
        return None
    path = EXPLAIN_DIR / f"{code}.md"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    return parse(code, text)


def normalize_code(raw: str) -> str | None:
    """Accept ``ECO1001``, ``eco1001`` and ``1001``; None if it cannot be a code."""
    s = raw.strip().upper()
    if s.isdigit() and len(s) == 4:
        s = "ECO" + s
    return s if CODE_RE.fullmatch(s) else None


def closest_codes(raw: str, *, limit: int = 3) -> list[str]:
    """Documented codes that look like a mistyped ``raw`` (digits transposed or one digit off)."""
    import difflib

    digits = "".join(ch for ch in raw if ch.isdigit())
    if not digits:
        return []
    by_digits = {code[3:]: code for code in codes()}
    near = difflib.get_close_matches(digits, list(by_digits), n=limit, cutoff=0.75)
    return [by_digits[d] for d in near]
