"""``--format json``: one versioned JSON object per run.

The shape is documented in ``docs/diagnostics-json.md`` and pinned by the JSON
Schema ``compiler/diagnostics-schema.json``; bump :data:`FORMAT_VERSION` on any
change that could break a consumer (adding optional keys does not).
"""

from __future__ import annotations

import json

from eco.language.diagnostics import Diagnostic, Fix
from eco.language.spans import Span

from .render import RunReport, display_path, tool_version

FORMAT_VERSION = 1


def span_to_json(span: Span | None) -> dict | None:
    """Lines and columns are 1-based; columns and offsets count Unicode code points; end is exclusive."""
    if span is None:
        return None
    start, end = span.start_pos, span.end_pos
    return {
        "path": display_path(span.source.path),
        "start_line": start.line,
        "start_column": start.column,
        "end_line": end.line,
        "end_column": end.column,
        "start_offset": span.start,
        "end_offset": span.end,
    }


def fix_to_json(fix: Fix | None) -> dict | None:
    if fix is None:
        return None
    return {
        "description": fix.description,
        "edits": [{"span": span_to_json(e.span), "replacement": e.replacement} for e in fix.edits],
    }


def diagnostic_to_json(d: Diagnostic) -> dict:
    return {
        "code": d.code,
        "severity": d.severity.label,
        "message": d.message,
        "span": span_to_json(d.span),
        "label": d.label,
        "labels": [{"span": span_to_json(lb.span), "message": lb.message} for lb in d.labels],
        "notes": list(d.notes),
        "help": d.help,
        "fix": fix_to_json(d.fix),
    }


def report_to_json(report: RunReport) -> dict:
    """The report as plain JSON-compatible data (see docs/diagnostics-json.md)."""
    files = [
        {
            "path": display_path(f.path),
            "diagnostics": [diagnostic_to_json(d) for d in f.diagnostics],
            "error_count": f.errors,
            "warning_count": f.warnings,
        }
        for f in report.files
    ]
    return {
        "format_version": FORMAT_VERSION,
        "tool": {"name": "ecoc", "version": tool_version()},
        "command": report.command,
        "files": files,
        "tool_errors": [{"path": display_path(e.path), "message": e.message} for e in report.tool_errors],
        "outputs": [display_path(p) for p in report.outputs],
        "summary": {
            "files": len(report.files),
            "errors": report.errors,
            "warnings": report.warnings,
            "notes": report.notes,
        },
        "werror": report.werror,
        "exit_code": report.exit_code,
    }


def render_report(report: RunReport) -> str:
    return json.dumps(report_to_json(report), indent=2, ensure_ascii=False) + "\n"
