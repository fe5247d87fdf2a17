"""The `.eco` language front end: sources, spans, diagnostics, the syntax tree and the parser.

The parser and file reading are imported lazily (on first use of ``parse``,
``load_source``...) so that importing ``eco.language`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import ast
from .diagnostics import Diagnostic, DiagnosticBag, Edit, Fix, Label, Severity
from .spans import Position, SourceFile, Span

if TYPE_CHECKING:
    from .parser import ParseResult, parse
    from .source import SourceDecodeError, SourceIOError, load_source, read_source, source_from_string

_LAZY = {
    "parse": "parser",
    "ParseResult": "parser",
    "load_source": "source",
    "read_source": "source",
    "source_from_string": "source",
    "SourceIOError": "source",
    "SourceDecodeError": "source",
}

__all__ = [
    "Diagnostic",
    "DiagnosticBag",
    "Edit",
    "Fix",
    "Label",
    "ParseResult",
    "Position",
    "Severity",
    "SourceDecodeError",
    "SourceFile",
    "SourceIOError",
    "Span",
    "ast",
    "load_source",
    "parse",
    "read_source",
    "source_from_string",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
