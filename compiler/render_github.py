"""``--format github``: GitHub Actions workflow commands (annotations on the PR diff).

One ``::error``/``::warning``/``::notice`` line per diagnostic, escaped by the
rules of GitHub's toolkit: ``%``, CR and LF in the message; additionally ``:``
and ``,`` in property values.  A plain summary line ends the log.
"""

from __future__ import annotations

from eco.language.diagnostics import Diagnostic, Severity

from .render import RunReport, display_path

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, props: dict[str, object], message: str) -> str:
    rendered = ",".join(f"{k}={escape_property(str(v))}" for k, v in props.items() if v is not None)
    return f"::{kind} {rendered}::{escape_data(message)}" if rendered else f"::{kind}::{escape_data(message)}"


def _message(d: Diagnostic) -> str:
    lines = [d.message]
    if d.label:
        lines[0] += f" ({d.label})"
    lines.extend(f"note: {n}" for n in d.notes)
    if d.help:
        lines.append(f"help: {d.help}")
    return "\n".join(lines)


def render_diagnostic(d: Diagnostic, *, fallback_path: str | None = None) -> str:
    props: dict[str, object] = {}
    if d.span is not None:
        start, end = d.span.start_pos, d.span.end_pos
        props = {
            "file": display_path(d.span.source.path),
            "line": start.line,
            "col": start.column,
            "endLine": end.line,
            "endColumn": end.column,
        }
    elif fallback_path:
        props = {"file": display_path(fallback_path)}
    props["title"] = d.code
    return _command(_COMMAND[d.severity], props, _message(d))


def render_report(report: RunReport) -> str:
    from .render_human import render_summary

    lines = [_command("error", {"file": display_path(e.path), "title": "ecoc"}, e.message) for e in report.tool_errors]
    lines.extend(render_diagnostic(d, fallback_path=f.path) for f in report.files for d in f.diagnostics)
    lines.append(render_summary(report))
    return "\n".join(lines) + "\n"
