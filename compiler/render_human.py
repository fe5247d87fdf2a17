"""Human-readable diagnostics in the rustc/Elm style.

::

    error[ECO1001]: unknown channel `jbos`
     --> app.eco:12:9
       |
    12 |   data: jbos
       |         ^^^^ not declared
       |
       = help: did you mean `jobs`?

Tabs are expanded, control characters made visible, wide characters counted
as two columns, and very long lines are cut to a window around the marked
span.  Colour is plain ANSI, so rendering never imports a terminal library.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from eco.language.diagnostics import Diagnostic
from eco.language.spans import Span

from .render import RunReport, display_path, plural

TAB_WIDTH = 4
MAX_LINE_WIDTH = 120  # display columns of source shown per line before truncating
_ELLIPSIS = "..."
_CONTEXT = 24  # columns kept left of a marked span when truncating a long line
_MAX_GAP_SHOWN = 1  # lines between two shown lines printed instead of "..."
_MAX_MULTILINE_BODY = 2  # interior lines of a multi-line span shown in full


# ------------------------------------------------------------------ colour


class _Style:
    """ANSI styling, or nothing at all when colour is off."""

    _CODES = {
        "error": "1;31",
        "warning": "1;33",
        "note": "1;36",
        "help": "1;32",
        "ok": "1;32",
        "bold": "1",
        "gutter": "1;34",
        "secondary": "1;34",
    }

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, role: str, text: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\x1b[{self._CODES[role]}m{text}\x1b[0m"


# ------------------------------------------------------------------ display columns


def _char_width(ch: str) -> int:
    if ch.isascii():
        return 1
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _visible(ch: str) -> str:
    """Control characters would corrupt the terminal; show a replacement instead."""
    o = ord(ch)
    if o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0 or ch in "\u2028\u2029\ufeff":
        return "\ufffd"
    return ch


@dataclass
class _DisplayLine:
    """A source line prepared for the terminal: ``cols[i]`` is where char ``i`` starts."""

    cells: list[str]  # what to print for each character
    cols: list[int]  # display column of each character, plus one past the end

    @classmethod
    def of(cls, text: str) -> _DisplayLine:
        cells: list[str] = []
        cols: list[int] = []
        col = 0
        for ch in text:
            cols.append(col)
            if ch == "\t":
                cell = " " * (TAB_WIDTH - col % TAB_WIDTH)
                width = len(cell)
            else:
                cell = _visible(ch)
                width = _char_width(cell)
            cells.append(cell)
            col += width
        cols.append(col)
        return cls(cells, cols)

    @property
    def width(self) -> int:
        return self.cols[-1]

    def col(self, char_index: int) -> int:
        return self.cols[max(0, min(char_index, len(self.cells)))]

    def first_non_blank(self) -> int:
        for i, cell in enumerate(self.cells):
            if not cell.isspace():
                return self.cols[i]
        return self.width

    def slice(self, lo: int, hi: int) -> str:
        """The characters lying entirely within display columns [lo, hi)."""
        return "".join(
            cell for i, cell in enumerate(self.cells) if lo <= self.cols[i] and self.cols[i + 1] <= hi
        )


# ------------------------------------------------------------------ annotations


@dataclass
class _Mark:
    """One marker run under a displayed line: columns [start, end), optional label."""

    start: int
    end: int
    primary: bool
    label: str | None


@dataclass
class _Annotation:
    span: Span
    label: str | None
    primary: bool

    def lines(self) -> tuple[int, int]:
        """First and last line covered (a span ending right after a newline ends on the line before)."""
        start = self.span.start_pos
        end = self.span.end_pos
        last = end.line
        if end.line > start.line and end.column == 1:
            last -= 1
        return start.line, last


def _marks_for_line(line: int, disp: _DisplayLine, anns: list[_Annotation]) -> list[_Mark]:
    marks: list[_Mark] = []
    for ann in anns:
        first, last = ann.lines()
        if not first <= line <= last:
            continue
        start, end = ann.span.start_pos, ann.span.end_pos
        # A span may run past the displayed text (into the line break, or to EOF).
        end_col = disp.col(end.column - 1) if end.line == line else disp.width
        if first == last:
            lo = disp.col(start.column - 1)
            marks.append(_Mark(lo, max(end_col, lo + 1), ann.primary, ann.label))
        elif line == first:
            lo = disp.col(start.column - 1)
            marks.append(_Mark(lo, max(disp.width, lo + 1), ann.primary, None))
        elif line == last:
            lo = min(disp.first_non_blank(), end_col)
            marks.append(_Mark(lo, max(end_col, lo + 1), ann.primary, ann.label))
    return marks


# ------------------------------------------------------------------ snippet layout


def _shown_lines(anns: list[_Annotation]) -> list[int]:
    """The lines worth printing for these annotations, in order."""
    lines: set[int] = set()
    for ann in anns:
        first, last = ann.lines()
        lines.add(first)
        lines.add(last)
        if last - first - 1 <= _MAX_MULTILINE_BODY:
            lines.update(range(first, last + 1))
    ordered = sorted(lines)
    # Fill short gaps: one hidden line costs as much space as the "..." that replaces it.
    filled: list[int] = []
    for ln in ordered:
        if filled and 1 < ln - filled[-1] <= _MAX_GAP_SHOWN + 1:
            filled.extend(range(filled[-1] + 1, ln))
        filled.append(ln)
    return filled


def _window(disp: _DisplayLine, marks: list[_Mark]) -> tuple[int, int]:
    """Display columns [lo, hi) of a line to print, keeping the marked part visible."""
    if disp.width <= MAX_LINE_WIDTH:
        return 0, max(disp.width, max((m.end for m in marks), default=0))
    if marks:
        focus = min(m.start for m in marks)
        lo = max(0, focus - _CONTEXT)
    else:
        lo = 0
    hi = lo + MAX_LINE_WIDTH
    if hi > disp.width:  # near the end: show the last MAX_LINE_WIDTH columns
        hi = max(disp.width, max((m.end for m in marks), default=0))
        lo = max(0, min(lo, hi - MAX_LINE_WIDTH))
    return lo, hi


def _render_snippet(
    out: list[str], anns: list[_Annotation], width: int, style: _Style, sev_role: str
) -> None:
    source = anns[0].span.source
    gutter_blank = style("gutter", " " * width + " |")
    prev: int | None = None
    for ln in _shown_lines(anns):
        if prev is not None and ln > prev + 1:
            out.append(style("gutter", _ELLIPSIS))
        prev = ln
        disp = _DisplayLine.of(source.line_text(ln))
        marks = _marks_for_line(ln, disp, anns)
        lo, hi = _window(disp, marks)
        prefix = _ELLIPSIS if lo > 0 else ""
        suffix = _ELLIPSIS if hi < disp.width else ""
        shift = len(prefix) - lo
        text = prefix + disp.slice(lo, hi) + suffix
        out.append((style("gutter", f"{ln:>{width}} |") + (" " + text if text else "")).rstrip())
        if not marks:
            continue
        visible = [
            _Mark(max(m.start, lo) + shift, max(min(m.end, hi), max(m.start, lo) + 1) + shift, m.primary, m.label)
            for m in marks
        ]
        for row in _mark_rows(visible, style, sev_role):
            out.append(gutter_blank + " " + row if row else gutter_blank)


def _mark_rows(marks: list[_Mark], style: _Style, sev_role: str) -> list[str]:
    """The marker line under a source line, then one row per extra label (right to left).

    ::

        --- ^^^ primary label
        |
        secondary label
    """
    width = max(m.end for m in marks)
    cells = [" "] * width
    roles: list[str | None] = [None] * width
    # Secondary first so the primary marker wins where they overlap.
    for m in sorted(marks, key=lambda m: m.primary):
        ch, role = ("^", sev_role) if m.primary else ("-", "secondary")
        for i in range(m.start, m.end):
            cells[i] = ch
            roles[i] = role

    def paint(chars: list[str], rls: list[str | None]) -> str:
        parts: list[str] = []
        i = 0
        while i < len(chars):
            j = i
            while j < len(chars) and rls[j] == rls[i]:
                j += 1
            chunk = "".join(chars[i:j])
            parts.append(style(rls[i], chunk) if rls[i] else chunk)
            i = j
        return "".join(parts).rstrip()

    labelled = sorted((m for m in marks if m.label), key=lambda m: m.start)
    first_row = paint(cells, roles)
    rest = labelled
    # The rightmost label goes inline when nothing is drawn to the right of its marker.
    if labelled and labelled[-1].end >= width:
        first_row += " " + _style_label(labelled[-1], style, sev_role)
        rest = labelled[:-1]
    rows = [first_row]
    if rest:
        rows.append(_connectors(rest, style, sev_role))
        for idx in range(len(rest) - 1, -1, -1):
            m = rest[idx]
            rows.append(_connectors(rest[:idx], style, sev_role, upto=m.start) + _style_label(m, style, sev_role))
    return rows


def _connectors(marks: list[_Mark], style: _Style, sev_role: str, upto: int | None = None) -> str:
    """A row with a ``|`` under the start of each mark, padded to column ``upto`` if given."""
    end = max((m.start + 1 for m in marks), default=0)
    if upto is not None:
        end = max(end, upto)
    cells = [" "] * end
    for m in marks:
        if upto is None or m.start < upto:
            cells[m.start] = style(sev_role if m.primary else "secondary", "|")
    return "".join(cells)


def _style_label(m: _Mark, style: _Style, sev_role: str) -> str:
    return style(sev_role if m.primary else "secondary", m.label or "")


# ------------------------------------------------------------------ diagnostics


def _location(span: Span) -> str:
    p = span.start_pos
    return f"{display_path(span.source.path)}:{p.line}:{p.column}"


def _annotation_groups(d: Diagnostic) -> list[list[_Annotation]]:
    """Annotations grouped by file, the primary span's file first."""
    anns: list[_Annotation] = []
    if d.span is not None:
        anns.append(_Annotation(d.span, d.label, True))
    anns.extend(_Annotation(lb.span, lb.message, False) for lb in d.labels)
    groups: dict[int, list[_Annotation]] = {}
    for ann in anns:
        groups.setdefault(id(ann.span.source), []).append(ann)
    return list(groups.values())


def _gutter_width(groups: list[list[_Annotation]]) -> int:
    biggest = max((ann.lines()[1] for g in groups for ann in g), default=1)
    return len(str(biggest))


def _indent_continuation(text: str, indent: int) -> str:
    return text.replace("\n", "\n" + " " * indent)


def render_diagnostic(d: Diagnostic, *, color: bool = False) -> str:
    """One diagnostic as a block of text (no trailing newline)."""
    style = _Style(color)
    sev_role = d.severity.label
    out = [style(sev_role, f"{d.severity.label}[{d.code}]") + style("bold", f": {d.message}")]
    groups = _annotation_groups(d)
    width = _gutter_width(groups)
    for i, group in enumerate(groups):
        arrow = "-->" if i == 0 else ":::"
        out.append(" " * width + style("gutter", arrow) + " " + _location(group[0].span))
        out.append(style("gutter", " " * width + " |"))
        _render_snippet(out, group, width, style, sev_role)
    trailers: list[tuple[str, str]] = [("note", n) for n in d.notes]
    if d.help:
        trailers.append(("help", d.help))
    elif d.fix is not None and d.fix.description:  # the help line usually says it better
        trailers.append(("help", d.fix.description))
    if trailers:
        if groups:
            out.append(style("gutter", " " * width + " |"))
        for kind, text in trailers:
            head = " " * width + " " + style("gutter", "=") + " " + style("bold", kind + ":")
            out.append(f"{head} {_indent_continuation(text, width + len(kind) + 5)}")
    return "\n".join(out)


def render_summary(report: RunReport, *, color: bool = False) -> str:
    """The final line: ``error: 2 errors, 1 warning in 3 files`` or ``ok: 3 files checked``."""
    style = _Style(color)
    nfiles = plural(len(report.files), "file")
    counts = []
    if report.errors:
        counts.append(plural(report.errors, "error"))
    if report.warnings:
        counts.append(plural(report.warnings, "warning"))
    if report.notes:
        counts.append(plural(report.notes, "note"))
    if report.tool_errors:
        problems = plural(len(report.tool_errors), "path")
        tail = f"; {', '.join(counts)} in {nfiles}" if counts else ""
        return style("error", "error") + f": {problems} could not be checked{tail}"
    if report.failed:
        suffix = " (--werror)" if not report.errors else ""
        return style("error", "error") + f": {', '.join(counts)} in {nfiles}{suffix}"
    checked = f"{nfiles} checked"
    return style("ok", "ok") + f": {checked}" + (f" ({', '.join(counts)})" if counts else "")


def render_report(report: RunReport, *, color: bool = False) -> str:
    """Every diagnostic, blank-line separated, then the summary line."""
    blocks = [render_diagnostic(d, color=color) for f in report.files for d in f.diagnostics]
    summary = render_summary(report, color=color)
    if report.outputs:
        summary = f"wrote {', '.join(display_path(p) or p for p in report.outputs)}\n{summary}"
    blocks.append(summary)
    return "\n\n".join(blocks) + "\n"
