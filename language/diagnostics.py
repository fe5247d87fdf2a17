"""The diagnostic model shared by the parser, the compiler checks and every renderer.

A diagnostic has a stable code (``ECO`` + four digits), a severity, a primary
span with a message, optional labelled secondary spans, notes, a help line and
an optional machine-applicable fix.  Renderers live in ``eco.compiler.render``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .spans import Span


class Severity(enum.IntEnum):
    NOTE = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Label:
    """A secondary span with a short message ("first declared here")."""

    span: Span
    message: str


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace the text of ``span`` with ``replacement``."""

    span: Span
    replacement: str


@dataclass(frozen=True, slots=True)
class Fix:
    """A machine-applicable fix: a description plus one or more edits."""

    description: str
    edits: tuple[Edit, ...]


@dataclass(slots=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    span: Span | None = None
    label: str | None = None  # message shown under the primary carets
    labels: list[Label] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    help: str | None = None
    fix: Fix | None = None

    @property
    def path(self) -> str | None:
        return self.span.source.path if self.span is not None else None

    def sort_key(self) -> tuple:
        if self.span is None:
            return ("", -1, self.code)
        return (self.span.source.path, self.span.start, self.code)


def error(code: str, message: str, span: Span | None = None, **kw) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, span, **kw)


def warning(code: str, message: str, span: Span | None = None, **kw) -> Diagnostic:
    return Diagnostic(code, Severity.WARNING, message, span, **kw)


def note(code: str, message: str, span: Span | None = None, **kw) -> Diagnostic:
    return Diagnostic(code, Severity.NOTE, message, span, **kw)


class DiagnosticBag:
    """Collects diagnostics; de-duplicates identical (code, span) pairs."""

    def __init__(self) -> None:
        self._items: list[Diagnostic] = []
        self._seen: set[tuple] = set()

    def add(self, diag: Diagnostic) -> Diagnostic:
        key = (diag.code, diag.path, diag.span.start if diag.span else None, diag.message)
        if key not in self._seen:
            self._seen.add(key)
            self._items.append(diag)
        return diag

    def extend(self, diags) -> None:
        for d in diags:
            self.add(d)

    @property
    def items(self) -> list[Diagnostic]:
        return sorted(self._items, key=Diagnostic.sort_key)

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self.items)


def suggest(name: str, candidates, *, cutoff: float = 0.6) -> str | None:
    """The closest candidate to a misspelt ``name``, for "did you mean" hints."""
    import difflib

    cands = [c for c in candidates if c != name]
    if not cands:
        return None
    lowered = {c.lower(): c for c in cands}
    if name.lower() in lowered:
        return lowered[name.lower()]
    best = difflib.get_close_matches(name, cands, n=1, cutoff=cutoff)
    return best[0] if best else None
