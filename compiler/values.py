"""Reading typed values out of syntax terms, with a diagnostic for every mismatch.

Every reader returns the Python value, or ``None`` after reporting why the term
is not acceptable.  Callers treat ``None`` as "already reported" and move on, so
one mistake yields exactly one diagnostic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eco.language import ast
from eco.language.diagnostics import DiagnosticBag, Edit, Fix, error, suggest
from eco.language.spans import Span

from . import codes

DURATION_UNITS = ("ms", "s", "m", "h")
SIZE_UNITS = ("B", "KB", "MB", "GB")
_MAX_SHOWN = 40


def show(term: ast.Node) -> str:
    """The source text of a term, shortened for messages."""
    text = " ".join(term.span.text.split())
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 1] + "…"
    return f"`{text}`"


def kind_of(term: ast.Node) -> str:
    """A phrase naming what a term is, for "found ..." messages."""
    return {
        ast.Name: "a name",
        ast.ModuleRef: "a component reference",
        ast.String: "a string",
        ast.Integer: "an integer",
        ast.Float: "a number",
        ast.Duration: "a duration",
        ast.Size: "a size",
        ast.ListExpr: "a list",
        ast.ObjectExpr: "a block",
        ast.Call: "a call",
        ast.RangeExpr: "a range",
    }.get(type(term), "a value")


def span_of(terms: Sequence[ast.Node]) -> Span:
    return terms[0].span.to(terms[-1].span)


def replace_fix(span: Span, replacement: str, description: str | None = None) -> Fix:
    return Fix(description or f"replace with `{replacement}`", (Edit(span, replacement),))


class Reader:
    """Term readers bound to one diagnostic bag."""

    def __init__(self, bag: DiagnosticBag) -> None:
        self.bag = bag

    # ----------------------------------------------------------------- shape

    def single(self, terms: Sequence[ast.Node], key: ast.Ident, what: str) -> ast.Node | None:
        """Exactly one term; reports a missing value, extra values or an unknown unit."""
        if not terms:
            self.bag.add(
                error(
                    codes.MISSING_SETTING,
                    f"`{key.name}` needs a value",
                    key.span,
                    label=f"expected {what} here",
                )
            )
            return None
        if len(terms) == 2 and self.unknown_unit(terms):
            return None
        if len(terms) > 1:
            self.unexpected(terms[1:], f"`{key.name}` takes one value")
            return None
        return terms[0]

    def unexpected(self, extra: Sequence[ast.Node], why: str) -> None:
        span = span_of(extra)
        self.bag.add(
            error(
                codes.UNEXPECTED_VALUE,
                f"unexpected {show(extra[0]) if len(extra) == 1 else 'values'} here",
                span,
                label="not expected here",
                notes=[why],
                fix=Fix("remove the extra values", (Edit(span, ""),)),
            )
        )

    def unknown_unit(self, terms: Sequence[ast.Node]) -> bool:
        """``200 msec`` parses as a number then a name: report the name as a unit."""
        num, unit = terms
        if not isinstance(num, (ast.Integer, ast.Float)) or not isinstance(unit, ast.Name) or len(unit.parts) != 1:
            return False
        word = unit.parts[0]
        guess = suggest(word, DURATION_UNITS + SIZE_UNITS, cutoff=0.3) or _unit_alias(word)
        span = num.span.to(unit.span)
        diag = error(
            codes.UNKNOWN_UNIT,
            f"unknown unit `{word}`",
            unit.span,
            label="not a unit",
            notes=["durations use ms, s, m, h; sizes use B, KB, MB, GB (1KB = 1024 B)"],
        )
        if guess:
            number = num.span.text
            diag.help = f"write `{number}{guess}`"
            diag.fix = replace_fix(span, f"{number}{guess}")
        self.bag.add(diag)
        return True

    def wrong(self, term: ast.Node, expected: str, *, help: str | None = None, fix: Fix | None = None) -> None:
        self.bag.add(
            error(
                codes.WRONG_TYPE,
                f"expected {expected}, found {show(term)}",
                term.span,
                label=f"this is {kind_of(term)}",
                help=help,
                fix=fix,
            )
        )

    def out_of_range(self, term: ast.Node, message: str, *, help: str | None = None) -> None:
        self.bag.add(error(codes.OUT_OF_RANGE, message, term.span, label="out of range", help=help))

    # ---------------------------------------------------------------- scalars

    def word(self, term: ast.Node, expected: str = "a name") -> str | None:
        """A single-part name (an identifier)."""
        if isinstance(term, ast.Name) and len(term.parts) == 1:
            return term.parts[0]
        self.wrong(term, expected)
        return None

    def enum(self, term: ast.Node, allowed: Iterable[str], what: str) -> str | None:
        allowed = tuple(allowed)
        if isinstance(term, ast.String) and term.value in allowed:
            self.wrong(term, f"one of {_or_list(allowed)}", help=f"write `{term.value}` without quotes",
                       fix=replace_fix(term.span, term.value))
            return None
        if not isinstance(term, ast.Name):
            self.wrong(term, f"one of {_or_list(allowed)}")
            return None
        value = term.dotted
        if value in allowed:
            return value
        guess = suggest(value, allowed)
        self.bag.add(
            error(
                codes.UNKNOWN_VALUE,
                f"unknown {what} `{value}`",
                term.span,
                label=f"expected one of {_or_list(allowed)}",
                help=f"did you mean `{guess}`?" if guess else None,
                fix=replace_fix(term.span, guess) if guess else None,
            )
        )
        return None

    def integer(self, term: ast.Node, what: str, *, low: int | None = None, high: int | None = None) -> int | None:
        if not isinstance(term, ast.Integer):
            if isinstance(term, ast.Float) and float(term.value).is_integer():
                fixed = str(int(term.value))
                self.wrong(term, f"a whole number for {what}", help=f"write `{fixed}`",
                           fix=replace_fix(term.span, fixed))
            else:
                self.wrong(term, f"a whole number for {what}")
            return None
        return self._check_range(term, term.value, what, low, high, str)

    def number(self, term: ast.Node, what: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float | None:
        if not isinstance(term, (ast.Integer, ast.Float)):
            self.wrong(term, f"a number for {what}")
            return None
        value = float(term.value)
        if low_open and low is not None and value <= low:
            self.out_of_range(term, f"{what} must be greater than {_num(low)}, found {show(term)}")
            return None
        return self._check_range(term, value, what, None if low_open else low, high, _num)

    def duration(self, term: ast.Node, what: str, *, positive: bool = False) -> float | None:
        """Seconds.  A bare number gets the help "write `5s`"."""
        if isinstance(term, ast.Duration):
            if positive and term.seconds <= 0:
                self.out_of_range(term, f"{what} must be longer than zero, found {show(term)}")
                return None
            if term.seconds < 0:
                self.out_of_range(term, f"{what} cannot be negative, found {show(term)}")
                return None
            return float(term.seconds)
        if isinstance(term, (ast.Integer, ast.Float)):
            fixed = f"{term.span.text}s"
            self.wrong(term, "a duration", help=f"write `{fixed}` (units: ms, s, m, h)",
                       fix=replace_fix(term.span, fixed, "add the unit `s`"))
            return None
        if isinstance(term, ast.Size):
            self.wrong(term, "a duration", help="durations use the units ms, s, m, h")
            return None
        self.wrong(term, "a duration")
        return None

    def size(self, term: ast.Node, what: str) -> int | None:
        """Bytes; must be positive."""
        if isinstance(term, ast.Size):
            if term.bytes <= 0:
                self.out_of_range(term, f"{what} must be larger than zero, found {show(term)}")
                return None
            return int(term.bytes)
        if isinstance(term, ast.Integer):
            fixed = _size_text(term.value)
            self.wrong(term, "a size", help=f"write `{fixed}` (units: B, KB, MB, GB)",
                       fix=replace_fix(term.span, fixed, "add a size unit"))
            return None
        if isinstance(term, ast.Duration):
            self.wrong(term, "a size", help="sizes use the units B, KB, MB, GB")
            return None
        self.wrong(term, "a size")
        return None

    def string(self, term: ast.Node, what: str = "a string") -> str | None:
        if isinstance(term, ast.String):
            return term.value
        if isinstance(term, ast.Name):
            quoted = '"' + term.dotted + '"'
            self.wrong(term, what, help=f"write `{quoted}`", fix=replace_fix(term.span, quoted))
            return None
        self.wrong(term, what)
        return None

    def names(self, term: ast.Node, what: str) -> list[ast.Name] | None:
        """A ``[a, b]`` list of names (a single name is accepted as a list of one)."""
        if isinstance(term, ast.Name):
            return [term]
        if not isinstance(term, ast.ListExpr):
            self.wrong(term, f"a list of {what} such as `[n1, n2]`")
            return None
        out: list[ast.Name] = []
        for item in term.items:
            if isinstance(item, ast.Name):
                out.append(item)
            else:
                self.wrong(item, f"a {what[:-1] if what.endswith('s') else what} name")
        return out

    # ----------------------------------------------------------------- helpers

    def _check_range(self, term, value, what, low, high, fmt):
        if low is not None and value < low:
            if low == 1 and value == 0:
                msg = f"{what} must be at least 1, found 0"
            elif low == 0:
                msg = f"{what} cannot be negative, found {fmt(value)}"
            else:
                msg = f"{what} must be at least {fmt(low)}, found {fmt(value)}"
            self.out_of_range(term, msg)
            return None
        if high is not None and value > high:
            self.out_of_range(term, f"{what} must be at most {fmt(high)}, found {fmt(value)}")
            return None
        return value


def _or_list(items: Sequence[str]) -> str:
    quoted = [f"`{i}`" for i in items]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _size_text(n: int) -> str:
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


_UNIT_ALIASES = {
    "sec": "s", "secs": "s", "second": "s", "seconds": "s", "msec": "ms", "millis": "ms",
    "min": "m", "mins": "m", "minute": "m", "minutes": "m", "hour": "h", "hours": "h", "hr": "h",
    "k": "KB", "kb": "KB", "kib": "KB", "mb": "MB", "mib": "MB", "gb": "GB", "gib": "GB", "b": "B", "bytes": "B",
}


def _unit_alias(word: str) -> str | None:
    return _UNIT_ALIASES.get(word.lower())
