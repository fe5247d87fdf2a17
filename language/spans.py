"""Source files and spans: where every piece of a `.eco` program came from."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from operator import itemgetter

_LINE_BREAK = re.compile(r"\r\n?|\n")


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column (columns count characters, not bytes)."""

    line: int
    column: int


@dataclass(eq=False)
class SourceFile:
    """The text of one source file plus a line index for offset -> line/column.

    The line index is built on first use: checking a clean file never needs it.
    """

    path: str
    text: str
    _starts: list[int] | None = field(init=False, repr=False, default=None)

    @property
    def _line_starts(self) -> list[int]:
        starts = self._starts
        if starts is None:
            starts = self._starts = _line_starts(self.text)
        return starts

    @property
    def line_count(self) -> int:
        return len(self._line_starts)

    def position(self, offset: int) -> Position:
        offset = max(0, min(offset, len(self.text)))
        starts = self._line_starts
        line = bisect.bisect_right(starts, offset) - 1
        return Position(line + 1, offset - starts[line] + 1)

    def line_text(self, line: int) -> str:
        """The text of 1-based `line`, without its line terminator."""
        starts = self._line_starts
        if line < 1 or line > len(starts):
            return ""
        start = starts[line - 1]
        end = starts[line] if line < len(starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def span(self, start: int, end: int) -> Span:
        return Span(self, start, end)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    if "\r" in text:
        # CRLF and lone CR (old Mac) line ends count as one line break each.
        starts.extend(m.end() for m in _LINE_BREAK.finditer(text))
    else:
        i = text.find("\n")
        while i != -1:
            starts.append(i + 1)
            i = text.find("\n", i + 1)
    return starts


_new_tuple = tuple.__new__


class Span(tuple):
    """A half-open character range [start, end) in a source file.

    An immutable value (equal and hashed by file, start and end).  A tuple
    underneath because the parser makes one per syntax-tree node: built by
    ``tuple.__new__`` it costs a fraction of a frozen dataclass.
    """

    __slots__ = ()
    __match_args__ = ("source", "start", "end")

    def __new__(cls, source: SourceFile, start: int, end: int) -> Span:
        return _new_tuple(cls, (source, start, end))

    source: SourceFile = property(itemgetter(0), doc="The file the span is in.")  # type: ignore[assignment]
    start: int = property(itemgetter(1), doc="Offset of the first character.")  # type: ignore[assignment]
    end: int = property(itemgetter(2), doc="Offset just past the last character.")  # type: ignore[assignment]

    def __getnewargs__(self) -> tuple[SourceFile, int, int]:
        return tuple(self)  # type: ignore[return-value]

    @property
    def start_pos(self) -> Position:
        return self[0].position(self[1])

    @property
    def end_pos(self) -> Position:
        return self[0].position(self[2])

    @property
    def text(self) -> str:
        return self[0].text[self[1] : self[2]]

    def to(self, other: Span) -> Span:
        """The span covering both self and other (same file)."""
        return Span(self[0], min(self[1], other[1]), max(self[2], other[2]))

    def __repr__(self) -> str:
        p = self.start_pos
        return f"Span({self.source.path}:{p.line}:{p.column}, {self.start}..{self.end})"
