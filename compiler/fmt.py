"""The canonical formatter behind ``ecoc fmt``.

One style, no options: 2-space indentation, ``key: value``, one item per line
in multi-line blocks, one blank line between top-level declarations (runs of
blank lines inside blocks collapse to one), numbers, durations and sizes
spelled canonically in the unit the user chose, strings re-escaped
canonically.  A ``{ ... }`` written on one line stays on one line when it
fits in 100 columns and holds no comment; lists go on one line whenever they
fit.  Comments are kept: own-line comments stay above the item they precede,
trailing comments stay at the end of their line.

The formatter works on the syntax tree, so it never formats code that does not
parse: ``format_source`` returns ``text=None`` with the parser's diagnostics.
It is idempotent and meaning-preserving (the compiled plan does not change).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from eco.language import ast
from eco.language.diagnostics import Diagnostic, Severity
from eco.language.spans import SourceFile

INDENT = "  "
MAX_WIDTH = 100
_TRAILING_GAP = "\x00\x01trailing\x01\x00"  # marks where a trailing comment starts; see _align_trailing
_MIN_GAP = 2  # spaces between code and a trailing comment


@dataclass
class FormatResult:
    """``text`` is the formatted source, or None when the source has syntax errors."""

    text: str | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.text is not None


def format_source(text: str, path: str = "<string>") -> FormatResult:
    """Format ``text`` (a whole `.eco` file); CRLF and a leading BOM are accepted, output uses ``\\n``."""
    from eco.language.parser import parse  # lazy: keeps `ecoc` start-up cheap

    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    result = parse(SourceFile(path, text))
    diagnostics = list(result.diagnostics)
    if result.module is None or any(d.severity is Severity.ERROR for d in diagnostics):
        return FormatResult(None, diagnostics)
    return FormatResult(format_module(result.module), diagnostics)


def format_module(module: ast.Module) -> str:
    """The canonical text of a parsed module."""
    return _Printer(module).module()


# ------------------------------------------------------------------ spelling


_NUMBER = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?([A-Za-z_][A-Za-z0-9_]*)?")


def canonical_number(text: str) -> str:
    """``007`` -> ``7``, ``1.50s`` -> ``1.5s``, ``2.000`` -> ``2.0``; the unit is kept as written."""
    m = _NUMBER.fullmatch(text)
    if m is None:
        return text
    sign, whole, frac, unit = m.groups()
    whole = whole.lstrip("0") or "0"
    if frac is not None:
        frac = frac.rstrip("0") or "0"
    digits = whole if frac is None else f"{whole}.{frac}"
    return f"{sign}{digits}{unit or ''}"


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def quote(value: str) -> str:
    """A canonical `.eco` string literal for ``value``."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# ------------------------------------------------------------------- printer


class _Printer:
    """Renders a module to lines.  Comments are consumed in source order as items are printed."""

    def __init__(self, module: ast.Module) -> None:
        self.src = module.span.source
        self.text = self.src.text
        self.comments = sorted(module.comments, key=lambda c: c.span.start)
        self.starts = [c.span.start for c in self.comments]
        self.next = 0  # index of the first comment not printed yet
        self.module_node = module

    # -- comments

    def _has_comment(self, node: ast.Node) -> bool:
        i = bisect.bisect_left(self.starts, node.span.start)
        return i < len(self.starts) and self.starts[i] < node.span.end

    def _take_before(self, offset: int) -> list[ast.Comment]:
        taken = []
        while self.next < len(self.comments) and self.comments[self.next].span.start < offset:
            taken.append(self.comments[self.next])
            self.next += 1
        return taken

    def _take_trailing(self, end: int, limit: int) -> list[ast.Comment]:
        """Comments after source offset ``end`` on the same line, before ``limit`` (the next thing)."""
        line_end = self.text.find("\n", end)
        if line_end == -1:
            line_end = len(self.text)
        line_end = min(line_end, limit)
        taken = []
        while self.next < len(self.comments):
            c = self.comments[self.next]
            if c.span.start < end or c.span.start >= line_end:
                break
            taken.append(c)
            self.next += 1
            if "\n" in c.span.text:  # a block comment spanning lines ends the line
                break
        return taken

    def _blank_between(self, start: int, end: int) -> bool:
        """Whether the source has an empty line between offsets ``start`` and ``end``."""
        gap = self.text[start:end]
        return re.search(r"\n[ \t]*\n", gap) is not None

    @staticmethod
    def _comment_text(c: ast.Comment) -> str:
        return c.span.text.rstrip()

    def _attach(self, lines: list[str], comments: list[ast.Comment]) -> None:
        if comments:
            lines[-1] = lines[-1] + _TRAILING_GAP + " ".join(self._comment_text(c) for c in comments)

    # -- module

    def module(self) -> str:
        out: list[str] = []
        prev: ast.Decl | None = None
        prev_end = 0
        decls = self.module_node.decls
        for index, decl in enumerate(decls):
            comments = self._take_before(decl.span.start)
            if out:
                tight = isinstance(decl, ast.ImportDecl) and isinstance(prev, ast.ImportDecl)
                if not tight or self._blank_between(prev_end, (comments[0] if comments else decl).span.start):
                    out.append("")
            for i, c in enumerate(comments):
                if not c.own_line and out and out[-1]:
                    out[-1] += _TRAILING_GAP + self._comment_text(c)
                else:
                    if i and self._blank_between(prev_end, c.span.start):
                        out.append("")
                    out.append(self._comment_text(c))
                prev_end = c.span.end
            if comments and self._blank_between(prev_end, decl.span.start):
                out.append("")
            out.extend(self._decl(decl))
            self._attach(out, self._take_trailing(decl.span.end, _next_start(decls, index, len(self.text))))
            prev, prev_end = decl, decl.span.end
        rest = self._take_before(len(self.text) + 1)
        for c in rest:
            if not c.own_line and out and out[-1]:
                out[-1] += _TRAILING_GAP + self._comment_text(c)
                prev_end = c.span.end
                continue
            if out and out[-1] and self._blank_between(prev_end, c.span.start):
                out.append("")
            out.append(self._comment_text(c))
            prev_end = c.span.end
        while out and out[-1] == "":
            out.pop()
        return _align_trailing("\n".join(out)) + "\n" if out else ""

    def _decl(self, decl: ast.Decl) -> list[str]:
        if isinstance(decl, ast.ImportDecl):
            target = decl.target.dotted if isinstance(decl.target, ast.Name) else quote(decl.target.value)
            alias = f" as {decl.alias.name}" if decl.alias is not None else ""
            return [f"import {target}{alias}"]
        if isinstance(decl, ast.MessageDecl):
            return self._message(decl)
        if isinstance(decl, ast.ClusterDecl):
            head = f"cluster {decl.name.name} "
        elif isinstance(decl, ast.ChannelDecl):
            head = f"channel {decl.name.name} "
        elif isinstance(decl, ast.EcosystemDecl):
            on = f" on {decl.cluster.name}" if decl.cluster is not None else ""
            head = f"ecosystem {decl.name.name}{on} "
        else:  # pragma: no cover - the parser produces no other declarations
            raise TypeError(f"unknown declaration {type(decl).__name__}")
        lines = self._object(decl.body, "", len(head))
        lines[0] = head + lines[0]
        return lines

    # -- messages

    def _message(self, decl: ast.MessageDecl) -> list[str]:
        head = f"message {decl.name.name} "
        body_start = self.text.find("{", decl.name.span.end)
        inline_in_source = "\n" not in self.text[body_start : decl.span.end]
        if not self._has_comment(decl):
            if not decl.fields:
                return [head + "{}"]
            parts = [self._field_text(f) for f in decl.fields]
            if inline_in_source and None not in parts:
                text = head + "{ " + ", ".join(parts) + " }"
                if len(text) <= MAX_WIDTH:
                    return [text]
        inner = self._block_items(decl.fields, INDENT, body_start + 1, decl.span.end - 1, self._field)
        lines = _wrap("{", inner, "}")
        lines[0] = head + lines[0]
        return lines

    def _field_text(self, f: ast.FieldDecl) -> str | None:
        text = f"{f.name.name}: {self._type(f.type)}"
        if f.default is not None:
            default = self._inline(f.default)
            if default is None:
                return None
            text += f" = {default}"
        return text

    def _field(self, f: ast.FieldDecl, indent: str) -> list[str]:
        head = f"{f.name.name}: {self._type(f.type)}"
        if f.default is None:
            return [indent + head]
        lines = self._term(f.default, indent, len(indent) + len(head) + 3)
        lines[0] = indent + head + " = " + lines[0]
        return lines

    def _type(self, t: ast.TypeExpr) -> str:
        text = t.name.dotted
        if t.args:
            text += "[" + ", ".join(self._type(a) for a in t.args) + "]"
        return text + ("?" if t.optional else "")

    # -- blocks

    def _block_items(self, items, indent: str, open_end: int, close_start: int, render) -> list[str]:
        """Lines for the items of a multi-line block (and the comments among them)."""
        out: list[str] = []
        prev_end = open_end
        first = True
        for index, item in enumerate(items):
            for c in self._take_before(item.span.start):
                prev_end = self._comment_line(out, c, indent, prev_end, first)
                first = False
            if out and not first and self._blank_between(prev_end, item.span.start):
                out.append("")
            lines = render(item, indent)
            self._place_leftovers(lines, item, indent)
            self._attach(lines, self._take_trailing(item.span.end, _next_start(items, index, close_start)))
            out.extend(lines)
            prev_end = item.span.end
            first = False
        for c in self._take_before(close_start):
            prev_end = self._comment_line(out, c, indent, prev_end, first)
            first = False
        return out

    def _comment_line(self, out: list[str], c: ast.Comment, indent: str, prev_end: int, first: bool) -> int:
        if not c.own_line and out:
            out[-1] += _TRAILING_GAP + self._comment_text(c)
        elif not c.own_line and first:
            # A comment right after the opening brace: the caller attaches it to the `{` line.
            out.append(_OPENER_COMMENT + self._comment_text(c))
        else:
            if out and not first and self._blank_between(prev_end, c.span.start):
                out.append("")
            out.append(indent + self._comment_text(c))
        return c.span.end

    def _place_leftovers(self, lines: list[str], item: ast.Node, indent: str) -> None:
        """Comments inside an item that no nested block printed: block comments trail, line comments go above."""
        left = self._take_before(item.span.end)
        line_comments = [c for c in left if self._comment_text(c).startswith("//")]
        others = [c for c in left if not self._comment_text(c).startswith("//")]
        self._attach(lines, others)
        for c in reversed(line_comments):
            lines.insert(0, indent + self._comment_text(c))

    def _object(self, obj: ast.ObjectExpr, indent: str, col: int) -> list[str]:
        """``{ ... }`` starting at column ``col``; lines after the first are absolute."""
        if not obj.items and not self._has_comment(obj):
            return ["{}"]
        if not obj.multiline and not self._has_comment(obj):
            text = self._inline(obj)
            if text is not None and col + len(text) <= MAX_WIDTH:
                return [text]
        inner = self._block_items(obj.items, indent + INDENT, obj.span.start + 1, obj.span.end - 1, self._item)
        return _wrap("{", inner, indent + "}")

    def _list(self, lst: ast.ListExpr, indent: str, col: int) -> list[str]:
        if not self._has_comment(lst):
            text = self._inline(lst)
            if text is not None and col + len(text) <= MAX_WIDTH:
                return [text]
        inner_indent = indent + INDENT
        out: list[str] = []
        prev_end = lst.span.start + 1
        first = True
        for index, term in enumerate(lst.items):
            for c in self._take_before(term.span.start):
                prev_end = self._comment_line(out, c, inner_indent, prev_end, first)
                first = False
            if out and not first and self._blank_between(prev_end, term.span.start):
                out.append("")
            lines = self._term(term, inner_indent, len(inner_indent))
            lines[0] = inner_indent + lines[0]
            lines[-1] += ","
            self._place_leftovers(lines, term, inner_indent)
            self._attach(lines, self._take_trailing(term.span.end, _next_start(lst.items, index, lst.span.end)))
            out.extend(lines)
            prev_end = term.span.end
            first = False
        for c in self._take_before(lst.span.end - 1):
            self._comment_line(out, c, inner_indent, prev_end, first)
            first = False
        return _wrap("[", out, indent + "]")

    # -- items

    def _item(self, item: ast.Item, indent: str) -> list[str]:
        if isinstance(item, ast.Property):
            return self._with_terms(indent + item.key.name + ":", item.terms, indent)
        if isinstance(item, ast.Command):
            return self._with_terms(indent + item.key.name, item.terms, indent)
        if isinstance(item, ast.Carries):
            return [indent + "carries " + ", ".join(n.dotted for n in item.types)]
        if isinstance(item, ast.WhenRule):
            return [indent + self._when(item)]
        raise TypeError(f"unknown item {type(item).__name__}")  # pragma: no cover

    def _with_terms(self, head: str, terms: list[ast.Term], indent: str) -> list[str]:
        lines = [head]
        for term in terms:
            lines[-1] += " "
            col = len(lines[-1])
            part = self._term(term, indent, col)
            lines[-1] += part[0]
            lines.extend(part[1:])
        return lines

    def _when(self, rule: ast.WhenRule) -> str:
        text = f"when {rule.metric.dotted} {rule.op} {self._inline_or_flat(rule.threshold)}"
        if rule.window is not None:
            text += f" for {self._inline_or_flat(rule.window)}"
        text += f": {rule.action.name}"
        if rule.amount is not None:
            text += f" {self._inline_or_flat(rule.amount)}"
        return text

    # -- terms

    def _term(self, term: ast.Term, indent: str, col: int) -> list[str]:
        if isinstance(term, ast.ObjectExpr):
            return self._object(term, indent, col)
        if isinstance(term, ast.ListExpr):
            return self._list(term, indent, col)
        if isinstance(term, ast.Call):
            lines = [term.func.dotted + "("]
            for i, arg in enumerate(term.args):
                if i:
                    lines[-1] += ", "
                part = self._term(arg, indent, len(lines[-1]) if len(lines) > 1 else col + len(lines[0]))
                lines[-1] += part[0]
                lines.extend(part[1:])
            lines[-1] += ")"
            return lines
        return [self._inline_or_flat(term)]

    def _inline_or_flat(self, term: ast.Term) -> str:
        text = self._inline(term)
        if text is None:  # only blocks refuse to be inline, and they are handled by _term
            text = " ".join(self._term(term, "", 0))
        return text

    def _inline(self, term: ast.Node) -> str | None:
        """One-line spelling of a term, or None if it must span lines (a multi-line block)."""
        if isinstance(term, ast.Name):
            return term.dotted
        if isinstance(term, ast.ModuleRef):
            return term.text
        if isinstance(term, ast.String):
            return quote(term.value)
        if isinstance(term, (ast.Integer, ast.Float)):
            return canonical_number(term.span.text)
        if isinstance(term, (ast.Duration, ast.Size)):
            return canonical_number(term.text)
        if isinstance(term, ast.RangeExpr):
            low, high = self._inline(term.low), self._inline(term.high)
            return None if low is None or high is None else f"{low}..{high}"
        if isinstance(term, ast.ListExpr):
            parts = [self._inline(t) for t in term.items]
            return None if None in parts else "[" + ", ".join(parts) + "]"
        if isinstance(term, ast.Call):
            parts = [self._inline(t) for t in term.args]
            return None if None in parts else f"{term.func.dotted}(" + ", ".join(parts) + ")"
        if isinstance(term, ast.ObjectExpr):
            if not term.items:
                return "{}"
            if term.multiline:
                return None
            if any(isinstance(i, ast.Carries) for i in term.items[:-1]):
                return None  # `carries A, B, x: 1` would read as one list of names
            parts = [self._inline_item(i) for i in term.items]
            return None if None in parts else "{ " + ", ".join(parts) + " }"
        raise TypeError(f"unknown term {type(term).__name__}")  # pragma: no cover

    def _inline_item(self, item: ast.Item) -> str | None:
        if isinstance(item, (ast.Property, ast.Command)):
            parts = [self._inline(t) for t in item.terms]
            if None in parts:
                return None
            sep = ": " if isinstance(item, ast.Property) else " "
            return (item.key.name + sep + " ".join(parts)).rstrip() if parts else item.key.name
        if isinstance(item, ast.Carries):
            return "carries " + ", ".join(n.dotted for n in item.types)
        if isinstance(item, ast.WhenRule):
            return self._when(item)
        return None


_OPENER_COMMENT = "\x00opener\x00"  # marks a comment that trails an opening `{` or `[`


def _align_trailing(text: str) -> str:
    """Align the trailing comments of consecutive lines that have the same indentation."""
    lines = text.split("\n")
    out: list[str] = []
    run: list[tuple[str, str]] = []  # (code, comment) of the current run
    run_indent = None

    def flush() -> None:
        width = max(len(code) for code, _ in run) + _MIN_GAP
        out.extend(code.ljust(width) + comment for code, comment in run)
        run.clear()

    for line in lines:
        code, sep, comment = line.partition(_TRAILING_GAP)
        indent = len(code) - len(code.lstrip(" "))
        if run and (not sep or indent != run_indent):
            flush()
        if sep:
            run.append((code, comment))
            run_indent = indent
        else:
            out.append(line)
    if run:
        flush()
    return "\n".join(out)


def _next_start(nodes: list, index: int, default: int) -> int:
    return nodes[index + 1].span.start if index + 1 < len(nodes) else default


def _wrap(opening: str, inner: list[str], closing: str) -> list[str]:
    """``opening``, the inner lines, ``closing``; a comment that trailed the opening stays on its line."""
    if inner and inner[0].startswith(_OPENER_COMMENT):
        opening += _TRAILING_GAP + inner.pop(0)[len(_OPENER_COMMENT) :]
    return [opening, *inner, closing]
