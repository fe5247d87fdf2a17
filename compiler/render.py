"""The result of one `ecoc` run and the entry point to every diagnostic renderer.

A :class:`RunReport` collects, per checked file, the diagnostics the compiler
produced, plus the files that could not be read at all.  :func:`render` turns
it into one of the output formats (``human``, ``json``, ``github``, ``sarif``);
each format lives in its own small ``render_*`` module, imported on demand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from eco.language.diagnostics import Diagnostic, Severity

FORMATS = ("human", "json", "github", "sarif")
PROJECT_URL = "https://eco.dev"


@dataclass
class FileReport:
    """The diagnostics produced while compiling one root file."""

    path: str
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def count(self, severity: Severity) -> int:
        return sum(1 for d in self.diagnostics if d.severity is severity)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARNING)


@dataclass(frozen=True)
class ToolError:
    """A path the tool could not process at all (missing, unreadable, nothing to check...)."""

    path: str | None
    message: str
    internal: bool = False  # a bug in ecoc rather than a problem with the input (exit 3)


@dataclass
class RunReport:
    """Everything one `ecoc` command found; rendered once at the end of the run."""

    command: str = "check"
    files: list[FileReport] = field(default_factory=list)
    tool_errors: list[ToolError] = field(default_factory=list)
    werror: bool = False
    outputs: list[str] = field(default_factory=list)  # files written (build)

    def count(self, severity: Severity) -> int:
        return sum(f.count(severity) for f in self.files)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARNING)

    @property
    def notes(self) -> int:
        return self.count(Severity.NOTE)

    @property
    def failed(self) -> bool:
        """True when the diagnostics alone make the run fail (errors, or warnings with --werror)."""
        return self.errors > 0 or (self.werror and self.warnings > 0)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 errors found (or warnings with --werror), 2 the tool could not do its job, 3 a bug."""
        if any(e.internal for e in self.tool_errors):
            return 3
        if self.tool_errors:
            return 2
        return 1 if self.failed else 0


def display_path(path: str | None) -> str | None:
    """``path`` relative to the working directory when it lies under it, else unchanged.

    Keeps output stable (golden files, CI logs) whether the user passed an
    absolute or a relative path.
    """
    if not path or path.startswith("<") or not os.path.isabs(path):
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if rel.startswith("..") else rel


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def tool_version() -> str:
    """The installed version of eco (``0+unknown`` when running from a bare checkout)."""
    try:
        from importlib.metadata import version

        return version("eco")
    except Exception:  # noqa: BLE001 - metadata missing is not worth failing a run
        return "0+unknown"


def render(report: RunReport, fmt: str, *, color: bool = False) -> str:
    """The whole report in output format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "human":
        from .render_human import render_report

        return render_report(report, color=color)
    if fmt == "json":
        from .render_json import render_report

        return render_report(report)
    if fmt == "github":
        from .render_github import render_report

        return render_report(report)
    if fmt == "sarif":
        from .render_sarif import render_report

        return render_report(report)
    raise ValueError(f"unknown output format {fmt!r} (expected one of {', '.join(FORMATS)})")
