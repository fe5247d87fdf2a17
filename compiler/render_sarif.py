"""``--format sarif``: a SARIF 2.1.0 log (GitHub code scanning, IDEs, other viewers).

One run; one rule per diagnostic code that occurs, described by the title of
its ``ecoc explain`` page; one result per diagnostic with its primary location,
labels as related locations and machine-applicable fixes as SARIF fixes.
Columns count Unicode code points (``columnKind: unicodeCodePoints``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from eco.language.diagnostics import Diagnostic, Fix, Severity
from eco.language.spans import Span

from .render import PROJECT_URL, RunReport, display_path, tool_version

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}


def _artifact(path: str | None) -> dict:
    shown = display_path(path) or "<unknown>"
    if os.path.isabs(shown):
        return {"uri": Path(shown).as_uri()}
    return {"uri": quote(shown.replace(os.sep, "/")), "uriBaseId": "%SRCROOT%"}


def _region(span: Span) -> dict:
    start, end = span.start_pos, span.end_pos
    return {
        "startLine": start.line,
        "startColumn": start.column,
        "endLine": end.line,
        "endColumn": end.column,
        "charOffset": span.start,
        "charLength": span.end - span.start,
    }


def _location(span: Span | None, fallback_path: str | None, message: str | None = None) -> dict:
    physical: dict = {"artifactLocation": _artifact(span.source.path if span else fallback_path)}
    if span is not None:
        physical["region"] = _region(span)
    loc: dict = {"physicalLocation": physical}
    if message:
        loc["message"] = {"text": message}
    return loc


def _fix(fix: Fix) -> dict:
    by_file: dict[str, list[dict]] = {}
    for edit in fix.edits:
        by_file.setdefault(edit.span.source.path, []).append(
            {"deletedRegion": _region(edit.span), "insertedContent": {"text": edit.replacement}}
        )
    return {
        "description": {"text": fix.description},
        "artifactChanges": [
            {"artifactLocation": _artifact(path), "replacements": reps} for path, reps in by_file.items()
        ],
    }


def _message_text(d: Diagnostic) -> str:
    parts = [d.message]
    parts.extend(f"note: {n}" for n in d.notes)
    if d.help:
        parts.append(f"help: {d.help}")
    return "\n".join(parts)


def _rule(code: str, severity: Severity) -> dict:
    from .explain import load

    doc = load(code)
    rule: dict = {
        "id": code,
        "shortDescription": {"text": (doc.title if doc else "") or _fallback_title(code)},
        "defaultConfiguration": {"level": _LEVEL[severity]},
    }
    if doc is not None:
        rule["help"] = {"text": doc.text, "markdown": doc.text}
    return rule


def _fallback_title(code: str) -> str:
    """The short title the compiler keeps next to each code, for codes without an explain page."""
    from importlib import import_module

    for module in ("eco.language.codes", "eco.compiler.codes"):
        try:
            titles = getattr(import_module(module), "TITLES", {})
        except ImportError:
            continue
        if code in titles:
            return titles[code]
    return code


def _result(d: Diagnostic, rule_index: int, root: str) -> dict:
    result: dict = {
        "ruleId": d.code,
        "ruleIndex": rule_index,
        "level": _LEVEL[d.severity],
        "message": {"text": _message_text(d)},
        "locations": [_location(d.span, root, d.label)],
    }
    if d.labels:
        result["relatedLocations"] = [
            {"id": i, **_location(lb.span, root, lb.message)} for i, lb in enumerate(d.labels, start=1)
        ]
    if d.fix is not None:
        result["fixes"] = [_fix(d.fix)]
    return result


def report_to_sarif(report: RunReport) -> dict:
    rules: list[dict] = []
    rule_index: dict[str, int] = {}
    results: list[dict] = []
    for f in report.files:
        for d in f.diagnostics:
            if d.code not in rule_index:
                rule_index[d.code] = len(rules)
                rules.append(_rule(d.code, d.severity))
            results.append(_result(d, rule_index[d.code], f.path))
    invocation: dict = {"executionSuccessful": not report.tool_errors, "exitCode": report.exit_code}
    if report.tool_errors:
        invocation["toolExecutionNotifications"] = [
            {"level": "error", "message": {"text": e.message}, **({"locations": [_location(None, e.path)]} if e.path else {})}
            for e in report.tool_errors
        ]
    cwd = Path.cwd().as_uri().rstrip("/") + "/"
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "ecoc",
                        "version": tool_version(),
                        "informationUri": PROJECT_URL,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": cwd}},
                "columnKind": "unicodeCodePoints",
                "invocations": [invocation],
                "results": results,
            }
        ],
    }


def render_report(report: RunReport) -> str:
    return json.dumps(report_to_sarif(report), indent=2, ensure_ascii=False) + "\n"
