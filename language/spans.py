"""Source files and spans: where every piece of a `.eco` program came from."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

_LINE_BREAK = re.compile(r"\r\n?|\n")


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column (columns count characters, not bytes)."""

    line: int
    column: int


@dataclass(eq=False)
class SourceFile:
    """The text of one source file plus a line index for offset -> line/column."""

    path: str
    text: str
    _line_starts: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        text = self.text
        if "\r" in text:
            # CRLF and lone CR (old Mac) line ends count as one line break each.
            starts = [0]
            starts.extend(m.end() for m in _LINE_BREAK.finditer(text))
        else:
            starts = [0]
            i = text.find("\n")
            while i != -1:
                starts.append(i + 1)
                i = text.find("\n", i + 1)
        self._line_starts = starts

    @property
    def line_count(self) -> int:
        return len(self._line_starts)

    def position(self, offset: int) -> Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return Position(line + 1, offset - self._line_starts[line] + 1)

    def line_text(self, line: int) -> str:
        """The text of 1-based `line`, without its line terminator."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self._line_starts[line] if line < len(self._line_starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def span(self, start: int, end: int) -> Span:
        return Span(self, start, end)


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open character range [start, end) in a source file."""

    source: SourceFile
    start: int
    end: int

    @property
    def start_pos(self) -> Position:
        return self.source.position(self.start)

    @property
    def end_pos(self) -> Position:
        return self.source.position(self.end)

    @property
    def text(self) -> str:
        return self.source.text[self.start : self.end]

    def to(self, other: Span) -> Span:
        """The span covering both self and other (same file)."""
        return Span(self.source, min(self.start, other.start), max(self.end, other.end))

    def __repr__(self) -> str:
        p = self.start_pos
        return f"Span({self.source.path}:{p.line}:{p.column}, {self.start}..{self.end})"


def _fast_span_init(self: Span, source: SourceFile, start: int, end: int) -> None:
    _set_source(self, source)
    _set_start(self, start)
    _set_end(self, end)


# The parser creates a Span for every node.  A frozen dataclass's generated
# __init__ goes through object.__setattr__ once per field; writing the slots
# through their descriptors does the same thing in under two thirds of the time.
# Spans stay immutable: assigning an attribute still raises FrozenInstanceError.
_set_source = Span.source.__set__
_set_start = Span.start.__set__
_set_end = Span.end.__set__
_fast_span_init.__qualname__ = "Span.__init__"
Span.__init__ = _fast_span_init  # type: ignore[method-assign]
