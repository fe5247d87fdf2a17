"""The compiler's entry points: source text or a file in, diagnostics and a plan out.

    result = compile_file("app.eco")
    if not result.has_errors:
        plan = result.plan

The plan is built on first access of ``CompileResult.plan``, so a check-only
run never imports pydantic.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eco.language import ast
from eco.language.diagnostics import Diagnostic, DiagnosticBag, Severity, error
from eco.language.spans import SourceFile

from . import codes
from .lower import PlanData

__all__ = ["CompileResult", "compile_file", "compile_source"]


@dataclass(eq=False)
class CompileResult:
    """The outcome of compiling one root file."""

    path: str
    diagnostics: list[Diagnostic]  # sorted by file and position
    sources: dict[str, SourceFile]  # every file read, by path, for rendering snippets
    module: ast.Module | None  # the root file's syntax tree
    _plan_data: PlanData | None = field(default=None, repr=False)
    _plan: object = field(default=None, repr=False)
    _lowered: bool = field(default=False, repr=False)

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    @property
    def plan(self):
        """The ``eco.plan.Plan``, or None when there are errors."""
        if not self._lowered:
            self._lowered = True
            if self._plan_data is not None and not self.has_errors:
                from .lower import LoweringError, lower

                try:
                    self._plan = lower(self._plan_data)
                except LoweringError as exc:
                    span = self.module.span if self.module is not None else None
                    self.diagnostics.append(error(
                        codes.OUT_OF_RANGE, f"a value does not fit the plan: {exc}", span,
                        notes=["this means a check is missing in ecoc; please report it with this input"],
                    ))
        return self._plan


def compile_source(text: str, path: str = "<string>", *, resolve_imports: bool = False,
                   search_paths: Sequence[Path] = ()) -> CompileResult:
    """Compile source text; relative imports resolve against ``path``'s directory (or the cwd)."""
    from eco.language.source import source_from_string

    source = source_from_string(text, path)
    key = os.path.realpath(path) if not path.startswith("<") else path
    from eco.language.parser import gc_paused

    with gc_paused():
        return _compile(source, key, [], resolve_imports, search_paths)


def compile_file(path: str | os.PathLike, *, resolve_imports: bool = False,
                 search_paths: Sequence[Path] = ()) -> CompileResult:
    """Compile a file and everything it imports.

    Raises ``eco.language.source.SourceIOError`` when the file itself cannot be
    read; problems with its content (and with imported files) are diagnostics.
    """
    shown = os.fspath(path)
    source, diags = _read(shown)
    if source is None:
        sources = {d.span.source.path: d.span.source for d in diags if d.span is not None}
        return CompileResult(shown, sorted(diags, key=Diagnostic.sort_key), sources, None, _lowered=True)
    from eco.language.parser import gc_paused

    with gc_paused():
        return _compile(source, os.path.realpath(shown), diags, resolve_imports, search_paths)


# ----------------------------------------------------------------------------


def _compile(source: SourceFile, key: str, read_diags: list[Diagnostic], resolve_imports: bool,
             search_paths: Sequence[Path]) -> CompileResult:
    from .check_channel import check_channel
    from .check_cluster import check_cluster
    from .check_ecosystem import check_ecosystem
    from .check_message import check_message
    from .check_policy import check_ecosystem_policies, check_services, pick_cluster
    from .check_unused import check_unused
    from .resolve import Program
    from .values import Reader

    bag = DiagnosticBag()
    bag.extend(read_diags)
    program = Program(bag, _parse, _read, [Path(p) for p in search_paths])
    root = program.load(source, key)
    reader = Reader(bag)
    data = PlanData(sources=[m.name for m in program.modules])

    clusters = {s.name: check_cluster(reader, s.decl) for s in program.symbols("cluster")}
    data.clusters = [c.data for c in clusters.values()]
    data.messages = [check_message(reader, program, s.module, s.decl, s.qualified) for s in program.symbols("message")]
    data.channels = [check_channel(reader, program, s.module, s.decl, s.qualified) for s in program.symbols("channel")]
    ecosystems = [check_ecosystem(reader, program, s.module, s.decl) for s in program.symbols("ecosystem")]
    for eco in ecosystems:
        cluster = pick_cluster(reader, program, eco, clusters)
        eco.data["cluster"] = cluster.name if cluster is not None else None
        check_ecosystem_policies(reader, eco, cluster)
    check_services(bag, ecosystems)
    if resolve_imports:
        from .components import check_components

        check_components(bag, ecosystems, [Path(p) for p in search_paths])
    data.ecosystems = [e.data for e in ecosystems]
    # Standard declarations enter the plan only when referenced.
    for symbol in list(program.std["channel"].values()):
        if symbol.used:
            data.channels.append(check_channel(reader, program, symbol.module, symbol.decl, symbol.qualified))
    for symbol in list(program.std["message"].values()):
        if symbol.used:
            data.messages.append(check_message(reader, program, symbol.module, symbol.decl, symbol.qualified))
    used_std = {s.module.name for kind in program.std.values() for s in kind.values() if s.used}
    data.sources = [m.name for m in program.modules if not m.is_std or m.name in used_std]
    check_unused(bag, program)
    program.release()

    return CompileResult(
        path=source.path,
        diagnostics=_drop_follow_ons(bag.items),
        sources=dict(program.sources),
        module=root.tree if root is not None else None,
        _plan_data=data,
    )


def _drop_follow_ons(items: list[Diagnostic]) -> list[Diagnostic]:
    """Drop check diagnostics that sit on a token the lexer or parser already rejected.

    A malformed literal such as ``256KX`` is reported once, by the parser; the value
    checks would otherwise report the same mistake again ("expected a size").
    """
    import bisect

    bad: dict[str, list[tuple[int, int]]] = {}
    for d in items:
        if d.span is not None and d.code.startswith("ECO00") and d.severity is Severity.ERROR:
            bad.setdefault(d.span.source.path, []).append((d.span.start, d.span.end))
    if not bad:
        return items
    for spans in bad.values():
        spans.sort()
    kept = []
    for d in items:
        spans = bad.get(d.path) if d.span is not None and not d.code.startswith("ECO00") else None
        if spans:
            i = bisect.bisect_left(spans, (d.span.end, d.span.end))
            # spans are short tokens; the nearest few before d's end are the only candidates
            if any(s < d.span.end and d.span.start < e for s, e in spans[max(0, i - 4):i]):
                continue
        kept.append(d)
    return kept


def _parse(source: SourceFile) -> tuple[ast.Module | None, list[Diagnostic]]:
    from eco.language.parser import parse

    result = parse(source)
    return result.module, list(result.diagnostics)


def _read(path: str) -> tuple[SourceFile | None, list[Diagnostic]]:
    """Read a file; unusable content (binary, invalid UTF-8, too large) comes back as diagnostics."""
    from eco.language.source import load_source

    return load_source(path)
