"""``ecoc fmt``: rewrite, check or diff files against the canonical style.

The formatting itself is ``eco.compiler.fmt.format_source``; this module only
walks the paths, compares and writes.  Files with syntax errors are never
touched: their diagnostics are printed (to standard error) and the run exits 1.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys

from .render import FileReport, RunReport, ToolError, display_path, plural


def format_paths(args: argparse.Namespace) -> int:
    """Run ``ecoc fmt`` for parsed arguments; returns the exit code."""
    from eco.language.source import SourceIOError, load_source

    from .cli import _use_color, _write_atomic, collect_sources
    from .fmt import format_source

    report = RunReport(command="fmt")
    changed: list[str] = []
    unchanged = 0
    for path in collect_sources(args.paths, report):
        try:
            source, diags = load_source(path)
        except SourceIOError as exc:
            report.tool_errors.append(ToolError(path, str(exc)))
            continue
        if source is None:
            report.files.append(FileReport(path, list(diags)))
            continue
        result = format_source(source.text, path)
        report.files.append(FileReport(path, list(diags) + list(result.diagnostics)))
        if result.text is None:
            continue
        if result.text == source.text:
            unchanged += 1
            continue
        changed.append(path)
        shown = display_path(path) or path
        if args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    source.text.splitlines(keepends=True), result.text.splitlines(keepends=True),
                    fromfile=f"a/{shown}", tofile=f"b/{shown}",
                )
            )
        if args.check or args.diff:
            print(f"would reformat {shown}", file=sys.stderr)
            continue
        try:
            _write_atomic(path, result.text, mode=_mode_of(path))
        except OSError as exc:
            report.tool_errors.append(ToolError(path, f"cannot write `{shown}`: {exc.strerror or exc}"))
            continue
        print(f"reformatted {shown}", file=sys.stderr)

    for e in report.tool_errors:
        print(f"ecoc: error: {e.message}", file=sys.stderr)
    if any(f.diagnostics for f in report.files):
        from .render_human import render_diagnostic

        color = _use_color(args.color, sys.stderr)
        for f in report.files:
            for d in f.diagnostics:
                sys.stderr.write(render_diagnostic(d, color=color) + "\n\n")
    print(_summary(report, changed, unchanged, dry_run=args.check or args.diff), file=sys.stderr)
    if report.tool_errors:
        return report.exit_code
    if report.errors or (args.check and changed):
        return 1
    return 0


def _mode_of(path: str) -> int | None:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return None


def _summary(report: RunReport, changed: list[str], unchanged: int, *, dry_run: bool) -> str:
    verb = "would be reformatted" if dry_run else "reformatted"
    parts = [f"{plural(len(changed), 'file')} {verb}", f"{unchanged} unchanged"]
    failed = sum(1 for f in report.files if f.errors)
    if failed:
        parts.append(f"{plural(failed, 'file')} not formatted because of errors")
    if report.tool_errors:
        parts.append(f"{plural(len(report.tool_errors), 'path')} could not be read")
    return "fmt: " + ", ".join(parts)
