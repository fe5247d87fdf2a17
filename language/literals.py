"""Decoding literal tokens: numbers with units and strings with escapes.

Both functions work on the raw token text and report problems as
``(message, start, end, help)`` tuples with offsets *relative to the token*, so
the parser can turn them into diagnostics with exact spans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .diagnostics import suggest

DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
SIZE_UNITS: dict[str, int] = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
UNITS_HELP = "valid units are ms, s, m, h (durations) and B, KB, MB, GB (sizes; 1KB = 1024 B)"

_NUMBER = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?)(.*)", re.S)


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem inside a literal; offsets are relative to the token start."""

    code_key: str  # "unit", "number", "escape"
    message: str
    start: int
    end: int
    label: str
    help: str | None = None
    replacement: str | None = None  # a machine-applicable fix for [start, end)


@dataclass(frozen=True, slots=True)
class NumberValue:
    kind: str  # "int", "float", "duration", "size"
    value: float | int


def decode_number(text: str) -> tuple[NumberValue, Problem | None]:
    """Split ``text`` (a NUMBER token) into its value and unit."""
    m = _NUMBER.fullmatch(text)
    assert m is not None, text  # guaranteed by the NUMBER terminal
    digits, unit = m.group(1), m.group(2)
    is_float = "." in digits
    plain = NumberValue("float", float(digits)) if is_float else NumberValue("int", int(digits))
    if not unit:
        return plain, None
    if unit in DURATION_UNITS:
        return NumberValue("duration", float(digits) * DURATION_UNITS[unit]), None
    if unit in SIZE_UNITS:
        if is_float:
            exact = float(digits) * SIZE_UNITS[unit]
            if exact != int(exact):
                return plain, Problem(
                    "number",
                    f"`{text}` is not a whole number of bytes",
                    0,
                    len(text),
                    "fractional bytes",
                    help="use a smaller unit or a whole number",
                )
            return NumberValue("size", int(exact)), None
        return NumberValue("size", int(digits) * SIZE_UNITS[unit]), None
    start = len(digits)
    guess = suggest(unit, [*DURATION_UNITS, *SIZE_UNITS], cutoff=0.5)
    help_text = f"did you mean `{digits}{guess}`? {UNITS_HELP}" if guess else UNITS_HELP
    return plain, Problem(
        "unit",
        f"unknown unit `{unit}`",
        start,
        len(text),
        "not a unit",
        help=help_text,
        replacement=guess,
    )


_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "0": "\0"}
_UNICODE_ESCAPE = re.compile(r"u\{([0-9A-Fa-f]{1,6})\}")
ESCAPES_HELP = r"valid escapes are \n \t \r \" \\ \0 and \u{XXXX} (1 to 6 hex digits)"


def decode_string(text: str) -> tuple[str, list[Problem]]:
    """Decode a string token including its quotes (the closing one may be missing)."""
    body_end = len(text) - 1 if len(text) >= 2 and text.endswith('"') and not _escaped_quote_at_end(text) else len(text)
    body = text[1:body_end]
    if "\\" not in body:
        return body, []
    out: list[str] = []
    problems: list[Problem] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            j = body.find("\\", i)
            j = n if j == -1 else j
            out.append(body[i:j])
            i = j
            continue
        nxt = body[i + 1] if i + 1 < n else ""
        if nxt in _SIMPLE_ESCAPES and nxt:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
            continue
        if nxt == "u":
            m = _UNICODE_ESCAPE.match(body, i + 1)
            if m is not None:
                code = int(m.group(1), 16)
                if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    out.append(chr(code))
                    i = m.end()
                    continue
                problems.append(
                    Problem("escape", f"`\\u{{{m.group(1)}}}` is not a valid Unicode character", i + 1, m.end() + 1,
                            "invalid code point", help="code points go up to 10FFFF, excluding surrogates D800-DFFF")
                )
                i = m.end()
                continue
            problems.append(Problem("escape", "invalid unicode escape", i + 1, i + 3, "expected `\\u{XXXX}`",
                                    help=ESCAPES_HELP))
            i += 2
            continue
        shown = nxt if nxt else ""
        problems.append(
            Problem("escape", f"invalid escape sequence `\\{shown}`", i + 1, i + 1 + 1 + len(shown),
                    "unknown escape", help=ESCAPES_HELP + r"; write `\\` for a backslash")
        )
        out.append(shown)
        i += 2
    return "".join(out), problems


def _escaped_quote_at_end(text: str) -> bool:
    """True when the final `"` is escaped (an unterminated string ending in `\\"`)."""
    k = len(text) - 2
    backslashes = 0
    while k >= 1 and text[k] == "\\":
        backslashes += 1
        k -= 1
    return backslashes % 2 == 1
