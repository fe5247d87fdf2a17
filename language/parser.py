"""Parse `.eco` source into the syntax tree of ``eco.language.ast``.

``parse(source)`` never raises: every problem becomes a diagnostic, and the
parser recovers from syntax errors so one run reports every independent error.

How it works.  ``grammar.lark`` is the grammar; lark compiles it (LALR(1),
strict) into the tables of ``tables.py``, cached in ``_grammar_tables.py`` so
that starting ``ecoc`` costs no grammar analysis.  This module runs those
tables itself, which is several times faster than ``Lark.parse`` and gives full
control over error recovery:

* Lexing: one C-level ``findall`` splits the whole text into tokens (each with
  the blanks after it; with the shortcuts, ``finditer`` instead, restarted after
  each shortcut, so the text they cover is never split); a token's terminal depends on its text alone and is
  cached (see ``_split_terminals`` for why, and for the one contextual terminal,
  ``module:Class`` references).  ``_Parser.run`` then applies the contextual
  rules (a keyword is a keyword only where the parser accepts it), keeps
  comments for the formatter, tracks bracket nesting, and turns newlines/commas
  inside ``{ }`` into single ``_SEP`` tokens (see the grammar), fused with the
  LALR loop; ``_TokenStream`` holds its state and its rarely used helpers.
  Tokens are tuples.
* Shortcuts (``shortcuts.py``, files of 64 KB or more): a one-line setting,
  range (``workers: 4..64``), ``carries`` list, ``when`` rule or message field
  (``map[str, int] = {}``), a ``key[: values] { ... }`` block of them (nested
  blocks too), a declaration's whole body of them, or a whole ``message`` is
  matched by regexes and built directly, followed by the ``goto`` the automaton
  would do after reducing it.  Where the tables or the text say otherwise the automaton
  parses it as usual, so trees and diagnostics are the same either way
  (tests/language/test_parse_shortcuts.py).
* ``_Builder`` has one callback per grammar rule that builds ast nodes during
  reductions (no intermediate parse tree).
* ``_Parser`` runs the LALR automaton.  On a syntax error it reports one
  diagnostic, skips to the next item separator or closing ``}`` at the same
  depth (or to the next top-level keyword), pops the parser stack to a state
  that can continue from there, and resumes.  Errors found before any token
  is accepted after a recovery are follow-on errors and are not reported.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter

from . import ast, codes, shortcuts
from .diagnostics import Diagnostic, Edit, Fix, Label, Severity, error, suggest
from .literals import decode_number, decode_string
from .spans import SourceFile, Span
from .tables import Tables, load_tables

MAX_NESTING = 64
"""Deepest allowed nesting of ``{ }``, ``[ ]`` and ``( )``."""

SHORTCUTS_FROM_CHARS = 64 * 1024
"""Files at least this long are parsed with the shortcuts: preparing them (once per process) costs
about what they save on a 64 KB file (docs/benchmarks.md, "Compiler"); the trees and diagnostics
are the same either way."""

SHORTCUTS_PREPARED_FROM_CHARS = 8192
"""Once prepared (by a long file), the shortcuts are used for files from this length on."""

TOP_KEYWORDS = ("import", "cluster", "message", "channel", "ecosystem")

_COMMENT_TYPES = frozenset({"LINE_COMMENT", "BLOCK_COMMENT", "BAD_BLOCK_COMMENT"})
_OPENERS = {"LBRACE": "{", "LSQB": "[", "LPAR": "("}
_CLOSERS = {"RBRACE": "{", "RSQB": "[", "RPAR": "("}
_CLOSES = {"RBRACE": "LBRACE", "RSQB": "LSQB", "RPAR": "LPAR"}  # closer -> the opener it closes
_CLOSER_TEXT = {"{": "}", "[": "]", "(": ")"}
_TOP_KEYWORD_TYPES = frozenset(k.upper() for k in TOP_KEYWORDS)
_VALUE_START = frozenset({"IDENT", "MODREF", "STRING", "BAD_STRING", "NUMBER", "LSQB", "LBRACE"})
_SEPARATORS = frozenset({"_SEP", "RBRACE", "$END"})

_HUMAN = {
    "IDENT": "a name",
    "MODREF": "a `module:Class` reference",
    "NUMBER": "a number",
    "STRING": "a string",
    "BAD_STRING": "a string",
    "CMP": "a comparison (`>`, `>=`, `<`, `<=`, `==`, `!=`)",
    "_SEP": "a newline or `,`",
    "_NL": "a newline",
    "$END": "end of file",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "COLON": "`:`",
    "COMMA": "`,`",
    "DOT": "`.`",
    "DOTDOT": "`..`",
    "EQUAL": "`=`",
    "QMARK": "`?`",
}
_ORDER = ["COLON", "EQUAL", "LBRACE", "LSQB", "LPAR", "DOT", "DOTDOT", "COMMA", "QMARK", "CMP", "IDENT", "MODREF",
          "NUMBER", "STRING", "RSQB", "RPAR", "RBRACE", "_SEP", "$END"]


class _Tok(tuple):
    """A token: ``(type, value, start, end)``: its terminal name, text and character offsets.

    A tuple (built with ``tuple.__new__`` in the hot loop) because the parser makes one per
    token: several times cheaper than an object with an ``__init__``.
    """

    __slots__ = ()

    def __new__(cls, type: str, value: str, start: int, end: int):
        return _new_tuple(cls, (type, value, start, end))

    type = property(itemgetter(0))
    value = property(itemgetter(1))
    start_pos = property(itemgetter(2))
    end_pos = property(itemgetter(3))

    def __repr__(self) -> str:
        return f"_Tok({self[0]}, {self[1]!r}, {self[2]})"


_new_tuple = tuple.__new__
_group = re.Match.group  # the text of a match: the strings of ``finditer`` one by one


class _Unexpected(Exception):
    def __init__(self, expected):
        self.expected = expected


class _Grammar:
    """Everything derived from the tables once per process: lexer regex and LR tables."""

    def __init__(self, tables: Tables):
        self.tables = tables
        self.keywords = tables.keywords
        self.states = tables.states
        # The same table for the hot loop: a list indexed by state, and per symbol one int,
        # the next state for a shift or goto (>= 0) or ~rule index for a reduction (< 0).
        self.actions = [
            {sym: (arg if shift else ~arg) for sym, (shift, arg) in tables.states[i].items()}
            for i in range(len(tables.states))
        ]
        self.rules = tables.rules
        self.start_state = tables.start_state
        self.end_state = tables.end_state
        # The lexer proper (see _split_terminals): the whole text is split into strings by
        # one findall, each a token and the blanks after it; what a string is depends on
        # the string alone, so it is worked out once per distinct string and cached.
        words, modref = _split_terminals(tables.terminals)
        alternatives = "|".join([*(f"(?:{regex})" for _, regex in words), _ANY_CHAR])
        self.splitter = re.compile(f"{_BLANKS}|(?:{alternatives}){_TRAILING_BLANKS}")
        if self.splitter.groups:  # findall would return groups instead of whole tokens
            raise ValueError("a terminal regex of grammar.lark has a capturing group; use (?:...)")
        named = "|".join([*(f"(?P<{name}>{regex})" for name, regex in words), f"(?P<_BAD>{_ANY_CHAR})"])
        self._classifier = re.compile(f"(?P<_WS>{_BLANKS})|(?:{named}){_TRAILING_BLANKS}")
        self.modref = re.compile(modref) if modref else None
        self.tokens: dict[str, tuple[str, str, int]] = {}
        self.shortcuts: dict[int, tuple[str, int]] = {}  # filled by prepare_shortcuts
        self.blocks: dict[int, int] = {}
        self.bodies: dict[int, int] = {}
        self.messages: dict[int, tuple[int, int]] = {}
        self._shortcuts_prepared = False

    def prepare_shortcuts(self) -> None:
        """Analyse the tables and compile the regexes for ``shortcuts`` (once; a few ms, so on demand)."""
        if self._shortcuts_prepared:
            return
        terminals = dict(self.tables.terminals)
        if self.modref is not None and {"NUMBER", "STRING"} <= terminals.keys():
            self.item_rest = shortcuts.item_regex(terminals, _MODREF_FAST)
            self.terms = shortcuts.term_regex(terminals, _MODREF_FAST)
            self.field_rest = shortcuts.field_regex(terminals)
            declarations = {word: typ for word, typ in self.keywords.items() if typ in _TOP_KEYWORD_TYPES}
            self.block = shortcuts.BlockRegexes(terminals, _MODREF_FAST, sorted(declarations))
            states = shortcuts.shortcut_states(self.actions, self.rules)
            self.blocks, inner = shortcuts.block_states(self.actions, self.rules, states)
            # Declaration bodies as a whole, when the next declaration (or the end) follows.
            self.bodies, body_inner = shortcuts.body_states(self.actions, self.rules, self.blocks,
                                                            [*sorted(declarations.values()), "$END"])
            self.messages = shortcuts.message_states(self.actions, self.rules, states,
                                                     [*sorted(declarations.values()), "$END"])
            self.when_rest = shortcuts.when_regex(terminals, _MODREF_FAST)
            self.whens = shortcuts.when_states(self.actions, self.rules, states)
            # Keywords the automaton never accepts where an item's value starts: plain names there.
            self.value_keywords = tuple({word for word, typ in self.keywords.items() if typ in accepted}
                                        for accepted in shortcuts.value_token_types(self.actions, self.rules, states))
            # Block and body shortcuts may take their `when` rules, ranges and `carries` lists too.
            self.whens_in_blocks = inner | body_inner <= self.whens
            self.range_rest = shortcuts.range_regex(terminals)
            self.carries_rest = shortcuts.carries_regex()
            self.carries_word = next((word for word, typ in self.keywords.items() if typ == "CARRIES"), None)
            ranges, carries = shortcuts.extra_item_kinds(self.actions, self.rules, self.blocks)
            self.ranges_in_blocks = ranges
            self.carries_in_blocks = carries and self.carries_word is not None
            self.shortcuts = states  # last: a parse in another thread uses them once this is set
        self._shortcuts_prepared = True

    @property
    def master(self) -> re.Pattern[str]:
        """All terminals in lexing order, matched at one position (the lexer before the splitter; tests)."""
        alternatives = "|".join(f"(?P<{name}>{regex})" for name, regex in _lexing_order(self.tables.terminals))
        return re.compile(f"[ \\t\\f]*(?:{alternatives})")

    def token(self, s: str) -> tuple[str, str, int]:
        """``(terminal, text, length)`` of a string the splitter produced, without its trailing blanks.

        The terminal is ``_WS`` for blanks at the start of the file, ``_BAD`` for a character
        that starts no token.
        """
        info = self.tokens.get(s)
        if info is None:
            m = self._classifier.match(s)
            typ = m.lastgroup
            n = m.end(typ)
            info = (typ, s if n == len(s) else s[:n], n)
            if len(self.tokens) < 65536:  # the same names, numbers and indents recur; bounded for huge files
                self.tokens[s] = info
        return info


# Speed only; the tokens are the same.  The master regex tries its alternatives
# in order, so the common terminals go first, keeping the table's order (its
# lexing priority) between terminals that can match at the same place.
_FREQUENT_FIRST = ("MODREF", "IDENT", "_NL", "COLON", "LBRACE", "RBRACE", "NUMBER", "COMMA", "STRING")
_OVERLAPPING = (("MODREF", "IDENT"), ("STRING", "BAD_STRING"), ("BLOCK_COMMENT", "BAD_BLOCK_COMMENT"),
                ("DOTDOT", "DOT"), ("CMP", "EQUAL"))
# The same language as the grammar's MODREF, with possessive repeats: an
# identifier not followed by `:` fails at once instead of backtracking letter by letter.
_MODREF = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
_MODREF_FAST = r"[A-Za-z_][A-Za-z0-9_]*+(?:\.[A-Za-z_][A-Za-z0-9_]*+)*+:[A-Za-z_][A-Za-z0-9_]*"


_BLANKS = "[ \\t\\f]+"
_TRAILING_BLANKS = "[ \\t\\f]*+"
_ANY_CHAR = "[\\s\\S]"


def _split_terminals(terminals: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], str | None]:
    """The terminals the splitter finds (in lexing order), and the ``module:Class`` regex.

    Why the splitter can work on the whole text at once: lexing is contextual
    only for MODREF (``a.b:C`` is a module reference only where the parser
    accepts one, otherwise ``a`` ``.`` ``b`` ``:`` ``C``) and for keywords.  So the
    splitter never produces MODREF; the parser loop tries the MODREF regex at a
    name where a reference is accepted, and on a match skips the strings it
    covers (names, dots and a colon, which end exactly where the reference ends).
    The other terminals do not depend on the parser state, so lexing is one
    C-level ``findall`` plus a dict lookup per token.  A string's terminal is
    the first alternative matching it: an earlier alternative matching a prefix
    of it would have matched in the text too (no terminal uses anchors or
    lookarounds), so it depends on the string alone.
    """
    ordered = _lexing_order(terminals)
    modref = dict(ordered).get("MODREF")
    if modref is not None and modref not in (_MODREF, _MODREF_FAST):
        # The skipping above relies on this exact shape; a grammar edit must revisit it.
        raise ValueError("grammar.lark changed MODREF; update eco.language.parser's lexer")
    return [(name, regex) for name, regex in ordered if name != "MODREF"], modref


def _lexing_order(terminals: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The terminals in the order the master regex tries them (see above)."""
    rank = {name: i for i, name in enumerate(_FREQUENT_FIRST)}
    ordered = sorted(terminals, key=lambda t: rank.get(t[0], len(rank)))  # stable: the rest keep table order
    table_pos = {name: i for i, (name, _) in enumerate(terminals)}
    new_pos = {name: i for i, (name, _) in enumerate(ordered)}
    for a, b in _OVERLAPPING:
        # A grammar edit that changes which terminals overlap: fall back to the table order.
        if a not in table_pos or b not in table_pos or table_pos[a] > table_pos[b] or new_pos[a] > new_pos[b]:
            return list(terminals)
    return [(name, _MODREF_FAST if name == "MODREF" and regex == _MODREF else regex) for name, regex in ordered]


_GRAMMAR: _Grammar | None = None


def _grammar() -> _Grammar:
    global _GRAMMAR
    if _GRAMMAR is None:
        _GRAMMAR = _Grammar(load_tables())
    return _GRAMMAR


def warm_up() -> None:
    """Load the parser tables now rather than on the first ``parse`` call."""
    _grammar()


class _LR:
    """An LALR(1) automaton over the tables; builds values with rule callbacks."""

    __slots__ = ("states", "rules", "end_state", "state_stack", "value_stack")

    def __init__(self, grammar: _Grammar, callbacks: list):
        self.states = grammar.states
        self.rules = [(size, origin, cb) for (_, size, _, _, origin), cb in zip(grammar.rules, callbacks)]
        self.end_state = grammar.end_state
        self.state_stack = [grammar.start_state]
        self.value_stack: list = []

    @property
    def position(self) -> int:
        return self.state_stack[-1]

    def feed_token(self, tok, is_end: bool = False):
        states = self.states
        stack = self.state_stack
        values = self.value_stack
        typ = tok.type
        while True:
            act = states[stack[-1]].get(typ)
            if act is None:
                raise _Unexpected(set(states[stack[-1]]))
            if act[0]:
                stack.append(act[1])
                values.append(tok)
                return None
            size, name, callback = self.rules[act[1]]
            if callback is None:
                del stack[-1]
                stack.append(states[stack[-1]][name][1])
                if is_end and stack[-1] == self.end_state:
                    return values[-1]
                continue
            if size:
                children = values[-size:]
                del stack[-size:]
                del values[-size:]
            else:
                children = []
            value = callback(children)
            stack.append(states[stack[-1]][name][1])
            values.append(value)
            if is_end and stack[-1] == self.end_state:
                return value


@dataclass
class ParseResult:
    module: ast.Module
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error-level diagnostics (the tree is complete, nothing was skipped)."""
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)


def parse(source: SourceFile) -> ParseResult:
    """Parse one source file.  Never raises; problems are in ``diagnostics``."""
    with gc_paused():
        parser = None
        try:
            parser = _Parser(source)
            return parser.run()
        except RecursionError:  # pragma: no cover - the parser is iterative; belt and braces
            return _failed(source, "the input is nested too deeply to parse")
        except Exception as exc:  # pragma: no cover - a bug; report it instead of a traceback
            return _failed(source, f"internal parser error: {type(exc).__name__}: {exc}")
        finally:
            if parser is not None:
                parser.close()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a large object graph.

    Parsing and checking allocate millions of small objects that all stay alive
    until the end (syntax tree, symbols, diagnostics).  With the collector
    running, its collections walk them again and again: a 100,000-line file
    spent most of its check time in the collector, and more per line the larger
    the file.  Reference counting still frees everything that is not cyclic.
    Nested uses are free (only the outermost one acts).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                # Move what was allocated straight to the oldest generation (a list splice,
                # no traversal); otherwise the first young collection afterwards would walk
                # every new object.  They are still collected as usual if they become cyclic
                # garbage.  Skipped when the caller froze objects itself.
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _failed(source: SourceFile, message: str) -> ParseResult:
    span = source.span(0, 0)
    diag = error(codes.INTERNAL_PARSER_ERROR, message, span,
                 notes=["this is a bug in ecoc; please report it with the input that caused it"])
    return ParseResult(ast.Module(source.span(0, len(source.text)), []), [diag])


# ------------------------------------------------------------------ tokens


class _Splice(list):
    """Children of an inlined helper rule, spliced into the parent's children."""

    __slots__ = ()


class _TokenStream:
    """The lexer's state and its rare paths; the per-token work is in ``_Parser.run``."""

    def __init__(self, parser: _Parser):
        self.p = parser
        self.source = parser.source
        self.text = parser.source.text
        self.grammar = parser.grammar
        self.stack: list[_Tok] = []  # open brackets, innermost last
        self.braces = 0  # how many `{` are in self.stack
        self.skipping = False  # recovering: the parser state says nothing about the next token
        self.comments: list[ast.Comment] = []
        self.last_stray: _Tok | None = None  # the last closer that matched no open bracket
        self.last_closer: _Tok | None = None  # the last closer and the brackets it closed
        self.last_closed: list[_Tok] = []
        self._deep_reported = False

    def _close(self, tok: _Tok) -> None:
        stack = self.stack
        want = _CLOSERS[tok.type]
        self.last_closer, self.last_closed = tok, []
        if stack and _OPENERS[stack[-1].type] == want:
            opened = stack.pop()
            self.last_closed.append(opened)
            if opened.type == "LBRACE":
                self.braces -= 1
            return
        if not any(_OPENERS[t.type] == want for t in stack):
            self.last_stray = tok
        else:
            while stack:
                opened = stack.pop()
                self.last_closed.append(opened)
                if opened.type == "LBRACE":
                    self.braces -= 1
                if _OPENERS[opened.type] == want:
                    return

    def _comment(self, tok: _Tok) -> None:
        text = self.text
        start = tok.start_pos
        # The line starts after the last line break (CR, LF or CRLF) before the comment.
        newline = text.rfind("\n", 0, start)
        line_start = max(newline, text.rfind("\r", newline + 1, start)) + 1
        own_line = text[line_start:start].strip() == ""
        self.comments.append(ast.Comment(self.source.span(start, tok.end_pos), tok.value, own_line))
        if tok.type == "BAD_BLOCK_COMMENT":
            self.p.report(
                error(codes.UNTERMINATED_COMMENT, "unterminated block comment",
                      self.source.span(start, start + 2), label="this `/*` is never closed",
                      help="close the comment with `*/`")
            )

    def _bad_character(self, pos: int) -> None:
        ch = self.text[pos]
        shown = repr(ch)[1:-1] if not ch.isprintable() else ch
        if not self.skipping:
            hint = None
            if ch == "'":
                hint = 'strings use double quotes: "..."'
            elif ch == "#":
                hint = "comments start with `//` (or `/* ... */` for a block)"
            self.p.report(
                error(codes.UNEXPECTED_CHARACTER, f"unexpected character `{shown}`",
                      self.source.span(pos, pos + 1), label="not valid here", help=hint)
            )
            self.p.begin_recovery_after_char(pos)

    def _too_deep(self, tok: _Tok) -> None:
        if self._deep_reported:
            return
        self._deep_reported = True
        self.p.report(
            error(codes.NESTING_TOO_DEEP, f"nesting too deep (more than {MAX_NESTING} levels)",
                  self.source.span(tok.start_pos, tok.end_pos), label="too deeply nested",
                  help="flatten the structure; no `.eco` setting needs this much nesting")
        )


def _retype(tok: _Tok, typ: str) -> _Tok:
    return _Tok(typ, tok.value, tok.start_pos, tok.end_pos)


# ------------------------------------------------------------------ parser


class _Parser:
    def __init__(self, source: SourceFile):
        self.source = source
        self.grammar = _grammar()
        self.diagnostics: list[Diagnostic] = []
        self.builder = _Builder(self)
        self.state = _LR(self.grammar, self.builder.callbacks(self.grammar.rules))
        self.stream = _TokenStream(self)
        self._fed_since_error = True
        self._recovering: tuple[int, int] | None = None  # (depth, braces) to resynchronise at

    def report(self, diag: Diagnostic) -> None:
        self.diagnostics.append(diag)

    def close(self) -> None:
        """Break the parser's reference cycles (builder, stream and rule callbacks point back to it).

        Otherwise the parser, and through its value stack the whole tree, would stay alive
        as cyclic garbage until a full collection walks it.
        """
        self.state.rules = self.state.value_stack = None
        self.builder = self.stream = None

    # -- main loop

    def run(self) -> ParseResult:
        # Lexing and the LALR(1) automaton in one loop: this runs once per token, so the
        # state lives in locals, tokens are tuples, and tokens the grammar never sees
        # (blanks, newlines outside `{ }`, repeated separators, comments) are never built.
        lr = self.state
        rules = lr.rules
        sstack = lr.state_stack
        vstack = lr.value_stack
        g = self.grammar
        actions = g.actions
        stream = self.stream
        text = stream.text
        n = len(text)
        token_info = g.tokens.get
        token = g.token
        modref_match = g.modref.match if g.modref is not None else None
        keywords = g.keywords
        if n >= SHORTCUTS_FROM_CHARS or (g._shortcuts_prepared and n >= SHORTCUTS_PREPARED_FROM_CHARS):
            g.prepare_shortcuts()
            shortcut_states = g.shortcuts
        else:  # a small file: not worth preparing the shortcuts for
            shortcut_states = {}
        blocks = g.blocks
        bodies = g.bodies if shortcut_states else {}
        messages = g.messages if shortcut_states else {}
        if shortcut_states:
            item_rest = g.item_rest.match
            field_rest = g.field_rest.match
            block_open = g.block.open.match
            when_rest = g.when_rest.match
            whens = g.whens
        PROPERTY = shortcuts.PROPERTY
        bstack = stream.stack  # open brackets, innermost last
        comment_types = _COMMENT_TYPES
        openers = _OPENERS
        closers = _CLOSERS
        closes = _CLOSES
        new = _new_tuple
        Tok = _Tok
        suppress_sep = True  # the last token produced inside `{ }` was a separator or `{`
        carries = False  # inside `carries A, B`: its commas are not separators
        after_comma = False
        # Mirrors of two attributes, kept in locals because every token reads or writes them:
        # ``recovering`` is ``self._recovering is not None`` (refreshed after every call that
        # can change it) and ``fed`` says a token was shifted since ``self._fed_since_error``
        # was last brought up to date (done before every call that reads or writes it).
        recovering = self._recovering is not None
        fed = False
        pos = 0
        if shortcut_states:
            # Lexed lazily: the shortcuts cover most of a large file, and the strings they
            # cover are never made (lexing restarts after them, see below).
            finditer = g.splitter.finditer
            strings = map(_group, finditer(text))
        else:  # every token goes through the loop: one findall is cheapest
            strings = iter(g.splitter.findall(text))
        while True:  # a shortcut restarts lexing after what it covered: the inner loop begins again
            for s in strings:
                start = pos
                pos += len(s)  # where the next string starts
                typ, s, end = token_info(s) or token(s)
                end += start  # where this token ends: its trailing blanks are not part of it
                if typ == "_WS":
                    continue
                # -- the token stream: contextual lexing, separators, bracket nesting
                if typ == "IDENT":
                    shortcut = shortcut_states.get(sstack[-1])
                    if shortcut is not None and not recovering:
                        if s not in keywords:
                            m = (item_rest if shortcut[0] is PROPERTY else field_rest)(text, end)
                            if m is not None:
                                node = self._shortcut(shortcut[0], m, s, start, end)
                                stop = m.end()
                            elif sstack[-1] in blocks and len(bstack) < MAX_NESTING and (m := block_open(text, end)) is not None:
                                node, stop = self._block(m, s, start, end, len(bstack) + 1)
                            else:
                                node = None
                        elif s == "when" and sstack[-1] in whens and (m := when_rest(text, end)) is not None:
                            node = self._when(m, start)
                            stop = m.end()
                        else:
                            node = None
                        if node is not None:
                            vstack.append(node)
                            sstack.append(shortcut[1])
                            suppress_sep = False
                            fed = True
                            if pos < stop:  # lex on from the item's end (its blanks come as _WS)
                                pos = stop
                                strings = map(_group, finditer(text, stop))
                                break
                            continue
                    value = s
                    acts = actions[sstack[-1]]
                    m = None
                    if "MODREF" in acts and not stream.skipping:
                        m = modref_match(text, start)
                    if m is not None:
                        typ = "MODREF"
                        end = m.end()
                        value = text[start:end]
                        while pos < end:  # the strings the reference covers (see _split_terminals)
                            pos += len(next(strings))
                    else:
                        kw = keywords.get(s)
                        if kw is not None and (kw in acts or stream.skipping):
                            typ = kw
                elif typ == "_NL":
                    if not bstack or bstack[-1][0] != "LBRACE":
                        continue
                    if carries:
                        if after_comma:
                            continue
                        carries = False
                    if suppress_sep:
                        continue
                    suppress_sep = True
                    tok = new(Tok, ("_SEP", s, start, end))
                    typ = "_SEP"
                    value = None
                elif typ in comment_types:
                    stream._comment(new(Tok, (typ, s, start, end)))
                    continue
                elif typ == "COMMA" and not carries and bstack and bstack[-1][0] == "LBRACE":
                    if suppress_sep:
                        continue
                    suppress_sep = True
                    tok = new(Tok, ("_SEP", ",", start, end))
                    typ = "_SEP"
                    value = None
                elif typ == "_BAD":
                    if fed:
                        self._fed_since_error = True
                        fed = False
                    stream._bad_character(start)
                    recovering = self._recovering is not None
                    continue
                elif typ == "LBRACE" and (sstack[-1] in bodies or len(sstack) > 2 and sstack[-3] in messages) \
                        and not recovering and len(bstack) < MAX_NESTING:
                    # A declaration's whole body, or a message's fields (then the whole declaration).
                    goto = bodies.get(sstack[-1])
                    if goto is not None:
                        node, stop = self._body(start, len(bstack) + 1)
                    elif messages[sstack[-3]][0] == sstack[-1]:
                        node, stop = self._message(start)
                        if node is not None:
                            goto = messages[sstack[-3]][1]
                            del sstack[-2:], vstack[-2:]  # `message` and the name, now in the node
                    else:
                        node = None
                    if node is not None:
                        vstack.append(node)
                        sstack.append(goto)
                        suppress_sep = carries = False
                        fed = True
                        pos = stop  # lex on after the `}`, as after an item above
                        strings = map(_group, finditer(text, stop))
                        break
                    value = s
                else:
                    value = s
                depth = len(bstack)
                braces = stream.braces
                if value is not None:
                    tok = new(Tok, (typ, value, start, end))
                    if typ in openers:
                        bstack.append(tok)
                        if typ == "LBRACE":
                            stream.braces += 1
                            suppress_sep = True
                            carries = False
                        else:
                            suppress_sep = False
                        if len(bstack) > MAX_NESTING and not stream.skipping:
                            stream._too_deep(tok)
                            tok = _retype(tok, "$TOO_DEEP")
                            typ = "$TOO_DEEP"
                    else:
                        suppress_sep = False
                        if typ in closers:
                            if bstack and bstack[-1][0] == closes[typ]:  # the usual case, inline
                                opened = bstack.pop()
                                stream.last_closer = tok
                                stream.last_closed = [opened]
                                if typ == "RBRACE":
                                    stream.braces -= 1
                            else:
                                stream._close(tok)
                            carries = False
                        elif typ == "CARRIES":
                            carries = True
                            after_comma = False
                        elif carries:
                            after_comma = typ == "COMMA"
                # -- the parser
                if recovering:
                    tok = self._resync(tok, depth, braces)
                    recovering = self._recovering is not None
                    if tok is None:
                        continue
                    typ = tok[0]
                    if typ not in actions[sstack[-1]]:
                        continue  # a separator that is not needed here: drop it
                elif typ == "$TOO_DEEP":
                    self._fed_since_error = fed = False
                    self._start_recovery(depth, braces)
                    recovering = self._recovering is not None
                    continue
                while True:
                    act = actions[sstack[-1]].get(typ)
                    if act is None:
                        if fed:
                            self._fed_since_error = True
                            fed = False
                        self._syntax_error(tok, self._expected(), depth, braces)
                        recovering = self._recovering is not None
                        break
                    if act >= 0:
                        sstack.append(act)
                        vstack.append(tok)
                        fed = True
                        break
                    size, origin, callback = rules[~act]
                    if callback is None:  # a unit rule that only passes its child through
                        sstack[-1] = actions[sstack[-2]][origin]
                        continue
                    if size:
                        children = vstack[-size:]
                        del sstack[-size:]
                        del vstack[-size:]
                    else:
                        children = []
                    vstack.append(callback(children))
                    sstack.append(actions[sstack[-1]][origin])
            else:
                break
        if fed:
            self._fed_since_error = True
        module = self._finish(Tok("$END", "", n, n))
        module.comments = stream.comments
        self.diagnostics.sort(key=Diagnostic.sort_key)
        return ParseResult(module, self.diagnostics)

    def _shortcut(self, kind: str, m: re.Match, key: str, start: int, key_end: int):
        """The node for an item matched by a shortcut regex (see ``shortcuts``); None: parse it normally."""
        src = self.source
        text = src.text
        key_ident = _Ident(_nt(_Span, (src, start, key_end)), key)
        if kind is shortcuts.PROPERTY:
            which = m.lastindex
            if which == 6:  # several values
                first = next(i for i in (2, 3, 4, 5) if m.start(i) >= 0)
                values = [(first - 1, m.start(first), m.end(first))]
                values += [(t.lastindex, t.start(), t.end()) for t in self.grammar.terms.finditer(text, *m.span(6))]
                if self._has_keyword(values, True):
                    return None
                terms = [self._plain_value(*v) for v in values]
                span = _nt(_Span, (src, start, values[-1][2]))
            else:  # one value, the usual case
                vs, ve = m.span(which)
                if which == 3:  # a name
                    value = text[vs:ve]
                    if "." in value:
                        if self._has_keyword([(2, vs, ve)], True):
                            return None
                        terms = [_Name(_nt(_Span, (src, vs, ve)), tuple(value.split(".")))]
                    elif value in self.grammar.value_keywords[0]:
                        return None
                    else:
                        terms = [_Name(_nt(_Span, (src, vs, ve)), (value,))]
                else:
                    terms = [self._plain_value(which - 1, vs, ve)]
                span = _nt(_Span, (src, start, ve))
            if m.start(1) >= 0:
                return _Property(span, key_ident, terms)
            return _Command(span, key_ident, terms)
        keywords = self.grammar.keywords
        ts, te = m.span(1)
        type_name = text[ts:te]
        if type_name in keywords:
            return None
        type_span = _nt(_Span, (src, ts, te))
        args = []
        if m.start(2) >= 0:  # `name[arg, arg]`: plain names
            for a in self.grammar.block.key.finditer(text, *m.span(2)):
                if a.group() in keywords:
                    return None
                arg_span = _nt(_Span, (src, a.start(), a.end()))
                args.append(_TypeExpr(arg_span, _Name(arg_span, (a.group(),)), [], False))
            end = text.index("]", m.end(2)) + 1
            type_expr = _TypeExpr(_nt(_Span, (src, ts, end)), _Name(type_span, (type_name,)), args, False)
        else:
            end = te
            type_expr = _TypeExpr(type_span, _Name(type_span, (type_name,)), args, False)
        default = None
        which = m.lastindex
        if which > 2:  # a default value
            ds, de = m.span(which)
            if which == 6:
                default = ast.ListExpr(_nt(_Span, (src, ds, de)), [])
            elif which == 7:
                default = _ObjectExpr(_nt(_Span, (src, ds, de)), [], False)
            else:  # groups 3-5 are the kinds 2-4 of _plain_value
                value = (which - 1, ds, de)
                if self._has_keyword([value]):
                    return None
                default = self._plain_value(*value)
            end = de
        return _FieldDecl(_nt(_Span, (src, start, end)), key_ident, type_expr, default)

    def _block(self, opened: re.Match, key: str, start: int, key_end: int, depth: int):
        """``key[:] value... { item, item... }`` (see ``shortcuts.block_states``): (node, end).

        ``opened`` matched the text from the key's end to the ``{``, which opens bracket
        number ``depth``. The items are those of ``_items``.
        ``(None, 0)`` when the block holds anything else; whatever was reported or
        collected meanwhile is taken back, since the automaton will see it again.
        """
        src = self.source
        text = src.text
        g = self.grammar
        comments = self.stream.comments
        reported, collected = len(self.diagnostics), len(comments)
        terms = []
        vs, ve = opened.span(2)
        if vs != ve:  # values before the `{`
            values = [(t.lastindex, t.start(), t.end()) for t in g.terms.finditer(text, vs, ve)]
            if self._has_keyword(values, True):
                return None, 0
            terms = [self._plain_value(*v) for v in values]
        lbrace = opened.end() - 1
        got = self._items(lbrace + 1, depth)
        if got is None:
            del self.diagnostics[reported:]
            return None, 0
        items, q = got
        end = q + 1
        if g.block.end.match(text, end) is None:  # the item goes on after the block: not one-line
            del self.diagnostics[reported:], comments[collected:]
            return None, 0
        multiline = text.find("\n", lbrace, end) != -1 or text.find("\r", lbrace, end) != -1
        terms.append(_ObjectExpr(_nt(_Span, (src, lbrace, end)), items, multiline))
        span = _nt(_Span, (src, start, end))
        key_ident = _Ident(_nt(_Span, (src, start, key_end)), key)
        if opened.start(1) >= 0:
            return _Property(span, key_ident, terms), end
        return _Command(span, key_ident, terms), end

    def _body(self, lbrace: int, depth: int):
        """A declaration's body ``{ item, item... }`` at ``lbrace`` (see ``shortcuts.body_states``): (node, end).

        ``(None, 0)`` unless it holds only what ``_items`` takes and the next declaration
        (or the end of the file) follows; nothing reported or collected is kept then.
        """
        src = self.source
        text = src.text
        comments = self.stream.comments
        reported, collected = len(self.diagnostics), len(comments)
        got = self._items(lbrace + 1, depth)
        if got is None:
            return None, 0
        items, q = got
        end = q + 1
        if self.grammar.block.declaration_end.match(text, end) is None:
            del self.diagnostics[reported:], comments[collected:]
            return None, 0
        multiline = text.find("\n", lbrace, end) != -1 or text.find("\r", lbrace, end) != -1
        return _ObjectExpr(_nt(_Span, (src, lbrace, end)), items, multiline), end

    def _message(self, lbrace: int):
        """``message Name { field... }`` whose ``{`` is at ``lbrace`` (see ``shortcuts.message_states``): (node, end).

        ``message`` and the name are the top two values of the parser's stack.  ``(None, 0)``
        unless the body holds only fields the field shortcut takes and the next declaration
        (or the end of the file) follows; nothing reported or collected is kept then.
        """
        src = self.source
        text = src.text
        g = self.grammar
        keywords = g.keywords
        field_rest = g.field_rest.match
        regexes = g.block
        separators = regexes.separators.match
        key_match = regexes.key.match
        comments = self.stream.comments
        reported, collected = len(self.diagnostics), len(comments)
        fields = []
        p = lbrace + 1
        while True:
            q = separators(text, p).end()
            if "//" in text[p:q]:
                for c in regexes.line_comment.finditer(text, p, q):
                    self.stream._comment(_nt(_Tok, ("LINE_COMMENT", c.group(), c.start(), c.end())))
            if text.startswith("}", q):
                break
            k = key_match(text, q)
            field = None
            if k is not None and k.group() not in keywords:
                m = field_rest(text, k.end())
                if m is not None:
                    field = self._shortcut(shortcuts.FIELD, m, k.group(), q, k.end())
                    p = m.end()
            if field is None:
                del self.diagnostics[reported:], comments[collected:]
                return None, 0
            fields.append(field)
        end = q + 1
        if regexes.declaration_end.match(text, end) is None:
            del self.diagnostics[reported:], comments[collected:]
            return None, 0
        values = self.state.value_stack
        keyword, name = values[-2], values[-1]
        return ast.MessageDecl(_nt(_Span, (src, keyword[2], end)), _Ident(_nt(_Span, (src, name[2], name[3])), name[1]),
                               fields), end

    def _items(self, p: int, depth: int):
        """The items from ``p`` (just after a ``{`` opening bracket number ``depth``) to the ``}``.

        Items are one-line items, ranges, ``carries`` lists and ``when`` rules, or blocks
        of them.  ``(items, offset of the "}")``, or None when anything else comes first;
        then whatever was reported or collected meanwhile is taken back.
        """
        text = self.source.text
        g = self.grammar
        keywords = g.keywords
        item_rest = g.item_rest.match
        range_rest = g.range_rest.match if g.ranges_in_blocks else None
        regexes = g.block
        block_open = regexes.open.match
        separators = regexes.separators.match
        key_match = regexes.key.match
        comments = self.stream.comments
        reported, collected = len(self.diagnostics), len(comments)
        items = []
        while True:
            q = separators(text, p).end()
            if "//" in text[p:q]:
                for c in regexes.line_comment.finditer(text, p, q):
                    self.stream._comment(_nt(_Tok, ("LINE_COMMENT", c.group(), c.start(), c.end())))
            if text.startswith("}", q):
                return items, q
            k = key_match(text, q)
            item = None
            if k is not None:
                word = k.group()
                ke = k.end()
                if word == "when" and g.whens_in_blocks:
                    m = g.when_rest.match(text, ke)
                    if m is not None:
                        item = self._when(m, q)
                        p = m.end()
                elif word not in keywords:
                    m = item_rest(text, ke)
                    if m is not None:
                        item = self._shortcut(shortcuts.PROPERTY, m, word, q, ke)
                        p = m.end()
                    elif range_rest is not None and (m := range_rest(text, ke)) is not None:
                        item = self._range(m, word, q, ke)
                        p = m.end()
                    elif depth < MAX_NESTING and (m := block_open(text, ke)) is not None:
                        item, p = self._block(m, word, q, ke, depth + 1)
                elif word == g.carries_word and g.carries_in_blocks:
                    m = g.carries_rest.match(text, ke)
                    if m is not None:
                        item = self._carries(m, q)
                        p = m.end()
            if item is None:
                del self.diagnostics[reported:], comments[collected:]
                return None
            items.append(item)

    def _range(self, m: re.Match, key: str, start: int, key_end: int):
        """``key[:] low..high`` matched by ``grammar.range_rest``; None: parse it normally."""
        src = self.source
        bounds = []
        for number in (2, 4):  # each bound: a number (this group) or a name (the next)
            if m.start(number) >= 0:
                bounds.append((3, *m.span(number)))
            else:
                bounds.append((2, *m.span(number + 1)))
        if self._has_keyword(bounds):
            return None
        low, high = (self._plain_value(*b) for b in bounds)
        end = bounds[1][2]
        terms = [ast.RangeExpr(_nt(_Span, (src, bounds[0][1], end)), low, high)]
        key_ident = _Ident(_nt(_Span, (src, start, key_end)), key)
        if m.start(1) >= 0:
            return _Property(_nt(_Span, (src, start, end)), key_ident, terms)
        return _Command(_nt(_Span, (src, start, end)), key_ident, terms)

    def _carries(self, m: re.Match, start: int):
        """``carries a, b.C`` whose names ``grammar.carries_rest`` matched; None: parse it normally."""
        src = self.source
        text = src.text
        names = []
        for n in self.grammar.block.name.finditer(text, *m.span()):
            value = n.group()
            names.append((2, n.start(), n.end()))
        if self._has_keyword(names):
            return None
        return ast.Carries(_nt(_Span, (src, start, names[-1][2])), [self._plain_value(*v) for v in names])

    def _when(self, m: re.Match, start: int):
        """The ``when`` rule matched by ``grammar.when_rest`` (see ``shortcuts.when_regex``); None: parse it normally."""
        src = self.source
        keywords = self.grammar.keywords
        ms, me = m.span(1)
        metric = m.group(1)
        parts = tuple(metric.split(".")) if "." in metric else (metric,)
        action = m.group(11)
        if action in keywords or any(part in keywords for part in parts):
            return None
        values = []
        for first in (3, 7, 12):  # threshold, window, amount: four groups each, as in _plain_value's kinds 1-4
            for i in range(first, first + 4):
                if m.start(i) >= 0:
                    values.append((i - first + 1, m.start(i), m.end(i)))
                    break
            else:
                values.append(None)
        if self._has_keyword([v for v in values if v is not None]):
            return None
        threshold, window, amount = (None if v is None else self._plain_value(*v) for v in values)
        end = values[2][2] if amount is not None else m.end(11)
        return ast.WhenRule(_nt(_Span, (src, start, end)), _Name(_nt(_Span, (src, ms, me)), parts), m.group(2),
                            threshold, window, _Ident(_nt(_Span, (src, m.start(11), m.end(11))), action), amount)

    def _has_keyword(self, values: list[tuple[int, int, int]], by_position: bool = False) -> bool:
        """A name among the values contains a keyword (the shortcut leaves those to the automaton).

        With ``by_position`` (the values of an item), only the keywords the automaton
        accepts at the value's position count (``grammar.value_keywords``); else all do.
        """
        keywords = self.grammar.keywords
        first = later = after_dot = keywords
        if by_position:
            first, later, after_dot = self.grammar.value_keywords
        text = self.source.text
        for i, (kind, vs, ve) in enumerate(values):
            if kind == 2:
                value = text[vs:ve]
                if "." not in value:
                    if value in (later if i else first):
                        return True
                    continue
                head, *rest = value.split(".")
                if head in (later if i else first) or any(p in after_dot for p in rest):
                    return True
        return False

    def _plain_value(self, kind: int, vs: int, ve: int):
        """The node for a value a shortcut matched: 1 modref, 2 name, 3 number, 4 string."""
        src = self.source
        value = src.text[vs:ve]
        if kind == 2:
            return _Name(_nt(_Span, (src, vs, ve)), tuple(value.split(".")) if "." in value else (value,))
        if kind == 3:
            return self.builder.number(_nt(_Tok, ("NUMBER", value, vs, ve)))
        if kind == 4:
            return self.builder.r_string([_nt(_Tok, ("STRING", value, vs, ve))])
        module, _, cls = value.rpartition(":")
        return ast.ModuleRef(_nt(_Span, (src, vs, ve)), module, cls)

    def _expected(self) -> set[str]:
        """The terminals the parser can really continue with from its current stack.

        LALR tables merge lookaheads of similar states, so a state's action
        keys can name tokens that would fail after a few reductions; simulate
        each one and keep those that end in a shift.
        """
        states = self.state.states
        rules = self.state.rules
        out = set()
        for typ in states[self.state.position]:
            if not typ.isupper():
                continue
            stack = list(self.state.state_stack)
            while True:
                act = states[stack[-1]].get(typ)
                if act is None:
                    break
                if act[0] or typ == "$END" and len(stack) == 2:
                    out.add(typ)
                    break
                size, origin, _ = rules[act[1]]
                if size:
                    del stack[-size:]
                goto = states[stack[-1]].get(origin)
                if goto is None:
                    out.add(typ)  # reduced to the start symbol: end of input accepted
                    break
                stack.append(goto[1])
        return out

    def _finish(self, end: _Tok) -> ast.Module:
        stack = self.stream.stack
        if stack:
            self._unclosed(stack)
        elif self._recovering is None and "$END" not in self.grammar.states[self.state.position]:
            # Let the parser say what is missing.
            self._syntax_error(end, self._expected(), 0, 0, resync=False)
        return self._salvage(end)

    def _salvage(self, end: _Tok) -> ast.Module:
        """Close whatever is still open and finish the parse (after errors)."""
        ps = self.state
        states = self.grammar.states
        for _ in range(4 * len(ps.state_stack) + 16):
            actions = states[ps.position]
            try:
                if "$END" in actions:
                    result = ps.feed_token(end, True)
                    if isinstance(result, ast.Module):
                        return result
                elif "RBRACE" in actions:
                    ps.feed_token(_synthetic("RBRACE", end.start_pos))
                    continue
            except _Unexpected:
                pass
            if len(ps.state_stack) <= 1:
                break
            ps.state_stack.pop()
            ps.value_stack.pop()
        decls = [v for v in _flatten(ps.value_stack) if isinstance(v, _DECL_TYPES)]
        return ast.Module(self.source.span(0, len(self.source.text)), decls)

    # -- errors and recovery

    def _syntax_error(self, tok: _Tok, expected, depth: int, braces: int, *, resync: bool = True) -> None:
        if self._fed_since_error:
            self.report(self._describe(tok, set(expected)))
        self._fed_since_error = False
        if resync:
            self._start_recovery(depth, braces, tok)
            # The offending token may itself be where parsing can continue.
            resumed = self._resync(tok, depth, braces)
            if resumed is not None and resumed.type in self.grammar.states[self.state.position]:
                try:
                    self.state.feed_token(resumed)
                except _Unexpected:  # pragma: no cover - _resync checked the action
                    pass

    def begin_recovery_after_char(self, pos: int) -> None:
        """A bad character: skip the rest of its item like any syntax error."""
        self._fed_since_error = False
        if self._recovering is None:
            self._start_recovery(len(self.stream.stack), self.stream.braces)

    def _start_recovery(self, depth: int, braces: int, tok: _Tok | None = None) -> None:
        stream = self.stream
        stack = stream.stack
        if tok is not None and tok is stream.last_closer:
            stack = stack + stream.last_closed[::-1]  # as it was before tok
        # The innermost `{` that was open before the bad token.
        target = 0
        for i in range(min(depth, len(stack)) - 1, -1, -1):
            if stack[i].type == "LBRACE":
                target = i + 1
                break
        self._recovering = (target, sum(1 for t in stack[:target] if t.type == "LBRACE"))
        self.stream.skipping = True

    def _resync(self, tok: _Tok, depth: int, braces: int) -> _Tok | None:
        """If parsing can resume at ``tok``, prepare the parser stack and return the token to feed."""
        assert self._recovering is not None
        target, braces_open = self._recovering
        typ = tok.type
        if target == 0:
            if depth != 0:
                return None
            if typ == "IDENT" and tok.value in TOP_KEYWORDS:
                tok = _retype(tok, tok.value.upper())
            elif typ not in _TOP_KEYWORD_TYPES:
                return None
            self._pop_until_shift(tok.type, limit_braces=0)
        elif typ == "_SEP" and depth == target:
            self._pop_until_shift("_SEP", limit_braces=braces_open)
        elif typ == "RBRACE" and depth >= target and len(self.stream.stack) < target:
            self._pop_until_shift("RBRACE", limit_braces=braces_open)
        else:
            return None
        self._recovering = None
        self.stream.skipping = False
        return tok

    def _pop_until_shift(self, typ: str, *, limit_braces: int) -> None:
        """Pop partial constructs off the parser stack until ``typ`` can be shifted."""
        ps = self.state
        states = self.grammar.states
        values = ps.value_stack
        # Never pop the `{` of the body we are resynchronising in.
        limit = 0
        if limit_braces:
            seen = 0
            for i, v in enumerate(values):
                if isinstance(v, _Tok) and v.type == "LBRACE":
                    seen += 1
                    if seen == limit_braces:
                        limit = i + 1
                        break
        while len(ps.state_stack) > 1 and len(values) > limit:
            action = states[ps.position].get(typ)
            if action is not None and action[0]:
                return
            ps.state_stack.pop()
            values.pop()

    def _unclosed(self, stack: list[_Tok]) -> None:
        end = len(self.source.text)
        innermost = stack[-1]
        ch = _OPENERS[innermost.type]
        labels = [Label(self.source.span(t.start_pos, t.end_pos), f"unclosed `{_OPENERS[t.type]}`")
                  for t in reversed(stack[-3:])]
        if len(stack) > 3:
            labels.append(Label(self.source.span(stack[0].start_pos, stack[0].end_pos),
                                f"outermost unclosed `{_OPENERS[stack[0].type]}`"))
        self.report(
            error(codes.UNCLOSED_DELIMITER, f"unclosed `{ch}`: the file ends before it is closed",
                  self.source.span(end, end), label=f"expected `{_CLOSER_TEXT[ch]}` before the end of the file",
                  labels=labels, help=f"add the missing `{_CLOSER_TEXT[ch]}`")
        )

    def _describe(self, tok: _Tok, expected: set[str]) -> Diagnostic:
        src = self.source
        typ = tok.type
        span = src.span(tok.start_pos, tok.end_pos)
        if typ == "_SEP" and tok.value != ",":
            span = src.span(tok.start_pos, tok.start_pos)  # the end of the line
        found = _found(tok)
        if tok is self.stream.last_stray:
            return error(codes.UNMATCHED_CLOSER, f"unmatched `{tok.value}`", span,
                         label="nothing here to close", help="remove it, or add the bracket it should close")
        # A top-level position: only declarations (or the end) may come next.
        if expected <= (_TOP_KEYWORD_TYPES | {"$END"}) and typ != "$END":
            return self._expected_declaration(tok, span, found)
        # A word where a separator could go: probably a missing newline or `,`.
        keep_seps = typ in ("IDENT", "MODREF", "NUMBER", "STRING") and "_SEP" in expected
        wanted = _human_list(expected, keep_separators=keep_seps)
        after = self._after()
        message = f"expected {wanted}{after}, found {found}" if wanted else f"unexpected {found}"
        diag = error(codes.UNEXPECTED_TOKEN, message, span, label=f"unexpected {found}")
        if typ in _CLOSERS:
            opener = self._open_before(tok)
            if opener is not None and _OPENERS[opener.type] != _CLOSERS[typ]:
                ch = _OPENERS[opener.type]
                diag.labels.append(Label(src.span(opener.start_pos, opener.end_pos), f"this `{ch}` is not closed"))
                diag.help = f"close it with `{_CLOSER_TEXT[ch]}` first"
        elif typ == "EQUAL" and "COLON" in expected:
            diag.help = "settings are written `key: value`"
            diag.fix = Fix("write `:`", (Edit(span, ":"),))
        elif typ == "_SEP" and "RBRACE" not in expected and self._open_before(tok) is not None:
            diag.notes.append("a newline or `,` ends a setting; lists `[...]` and calls `(...)` may span lines")
        return diag

    def _after(self) -> str:
        """`` after `x` `` naming what came just before the error, when that helps."""
        values = self.state.value_stack
        if not values:
            return ""
        last = values[-1]
        if isinstance(last, _Tok):
            if last.type in ("_SEP", "LBRACE"):
                return ""
            if last.type == "COLON" and len(values) >= 2 and isinstance(values[-2], _Tok) and values[-2].type == "IDENT":
                return f" after `{values[-2].value}:`"
            return f" after `{_short(last)}`"
        span = getattr(last, "span", None)
        if span is None or span.end - span.start > 30 or "\n" in span.text:
            return ""
        return f" after `{span.text}`"

    def _open_before(self, tok: _Tok) -> _Tok | None:
        """The innermost bracket open just before the closer ``tok`` was lexed."""
        # The stream already processed tok; if it popped a matching opener, that opener is gone,
        # so look at what the parser still holds instead.
        for v in reversed(self.state.value_stack):
            if isinstance(v, _Tok) and v.type in _OPENERS:
                return v
        return None

    def _expected_declaration(self, tok: _Tok, span: Span, found: str) -> Diagnostic:
        diag = error(
            codes.EXPECTED_DECLARATION,
            f"expected a declaration, found {found}",
            span,
            label="not a declaration",
            notes=["a file contains `import`, `cluster`, `message`, `channel` and `ecosystem` declarations"],
        )
        if tok.type == "IDENT":
            guess = suggest(tok.value, TOP_KEYWORDS)
            if guess is not None:
                diag.help = f"did you mean `{guess}`?"
                diag.fix = Fix(f"replace with `{guess}`", (Edit(span, guess),))
        return diag


def _synthetic(typ: str, pos: int) -> _Tok:
    return _Tok(typ, "", pos, pos)


def _found(tok: _Tok) -> str:
    typ = tok.type
    if typ == "$END":
        return "end of file"
    if typ == "_SEP":
        return "`,`" if tok.value == "," else "a newline"
    if typ in ("STRING", "BAD_STRING"):
        return f"string {_short(tok)}"
    if typ == "NUMBER":
        return f"number `{tok.value}`"
    return f"`{_short(tok)}`"


def _short(tok: _Tok) -> str:
    s = tok.value
    return s if len(s) <= 30 else s[:27] + "..."


def _human_list(expected: set[str], *, keep_separators: bool = False) -> str:
    """``{"COLON", "NUMBER", ...}`` -> "`:` or a value" (separators only when nothing else fits)."""
    value = {"NUMBER", "STRING", "LSQB"} <= expected
    if value:
        expected = expected - _VALUE_START
    if (value or expected - _SEPARATORS) and not keep_separators:
        expected = expected - _SEPARATORS
    elif keep_separators:
        expected = expected - {"RBRACE", "$END"}
    setting = {"IDENT", "CARRIES", "WHEN"} <= expected
    if setting:
        expected = expected - {"IDENT", "CARRIES", "WHEN"}
    names = [_HUMAN[e] for e in _ORDER if e in expected]
    if setting:
        names.insert(0, "a setting")
    if value:
        names.insert(sum(1 for e in ("COLON", "EQUAL") if e in expected), "a value")
    names += sorted(f"`{e.lower()}`" for e in expected if e not in _HUMAN and e.isalpha())
    if not names:
        return ""
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _flatten(values):
    for v in values:
        if isinstance(v, list):
            yield from _flatten(v)
        else:
            yield v


# ------------------------------------------------------------------ tree building


class _Builder:
    """Grammar-rule callbacks that build ast nodes during LALR reductions."""

    def __init__(self, parser: _Parser):
        self.p = parser
        self.src = parser.source

    def callbacks(self, rules) -> list:
        """One callback per rule, in rule order."""
        out = []
        for name, size, inlined, splices, _origin in rules:
            if inlined:
                # Without inlined children there is nothing to flatten: the list is the splice.
                out.append(None if size == 1 else _splice if splices else _Splice)
            else:
                fn = getattr(self, "r_" + name)
                # Hot rules flatten their own children (see _flattens_splices); the rest get a wrapper.
                out.append(_wrap(fn) if splices and name not in self._flattens_splices else fn)
        return out

    _flattens_splices = frozenset({"body", "property"})

    # -- helpers

    def span(self, first, last) -> Span:
        # Tokens are tuples (type, value, start, end); index them directly in this hot code.
        return _nt(_Span, (self.src, first[2] if type(first) is _Tok else first.span.start,
                           last[3] if type(last) is _Tok else last.span.end))

    def ident(self, tok: _Tok) -> ast.Ident:
        return _Ident(_nt(_Span, (self.src, tok[2], tok[3])), tok[1])

    def report(self, diag: Diagnostic) -> None:
        self.p.report(diag)

    # -- declarations

    def r_start(self, c):
        end = len(self.src.text)
        return ast.Module(Span(self.src, 0, end), [x for x in c if isinstance(x, _DECL_TYPES)])

    def r_import_decl(self, c):
        alias = self.ident(c[3]) if len(c) == 4 else None
        return ast.ImportDecl(self.span(c[0], c[-1]), c[1], alias)

    def r_cluster_decl(self, c):
        return ast.ClusterDecl(self.span(c[0], c[-1]), self.ident(c[1]), c[2])

    def r_channel_decl(self, c):
        return ast.ChannelDecl(self.span(c[0], c[-1]), self.ident(c[1]), c[2])

    def r_ecosystem_decl(self, c):
        cluster = self.ident(c[3]) if len(c) == 5 else None
        return ast.EcosystemDecl(self.span(c[0], c[-1]), self.ident(c[1]), c[-1], cluster)

    def r_message_decl(self, c):
        fields = [x for x in c if isinstance(x, ast.FieldDecl)]
        return ast.MessageDecl(self.span(c[0], c[-1]), self.ident(c[1]), fields)

    def r_field(self, c):
        default = self.term(c[4]) if len(c) == 5 else None
        return ast.FieldDecl(self.span(c[0], c[-1]), self.ident(c[0]), c[2], default)

    def r_type(self, c):
        args = [x for x in c[1:] if isinstance(x, ast.TypeExpr)]
        optional = type(c[-1]) is _Tok and c[-1][0] == "QMARK"
        return ast.TypeExpr(self.span(c[0], c[-1]), c[0], args, optional)

    # -- bodies and items

    def r_body(self, c):
        items = []
        for x in c[1:-1]:
            t = type(x)
            if t is _Splice:
                items.extend([y for y in x if type(y) is not _Tok])
            elif t is not _Tok:
                items.append(x)
        start, end = c[0][2], c[-1][3]
        src = self.src
        text = src.text
        # Spans a line break (the same as "starts and ends on different lines", without two bisects).
        multiline = text.find("\n", start, end) != -1 or text.find("\r", start, end) != -1
        return _ObjectExpr(_nt(_Span, (src, start, end)), items, multiline)

    def r_property(self, c):
        key = c[0]
        src = self.src
        start = key[2]
        x = c[2]  # IDENT ":" and then one term, or a splice of several
        t = type(x)
        if t is _Tok:
            x = self.term(x)
        elif t is _Splice:
            term = self.term
            terms = [term(y) if type(y) is _Tok else y for y in x]
            return _Property(_nt(_Span, (src, start, terms[-1].span.end)),
                             _Ident(_nt(_Span, (src, start, key[3])), key[1]), terms)
        return _Property(_nt(_Span, (src, start, x.span.end)), _Ident(_nt(_Span, (src, start, key[3])), key[1]), [x])

    def r_command(self, c):
        return ast.Command(self.span(c[0], c[-1]), self.ident(c[0]), [self.term(x) for x in c[1:]])

    def r_carries(self, c):
        return ast.Carries(self.span(c[0], c[-1]), [x for x in c[1:] if isinstance(x, ast.Name)])

    def r_when_rule(self, c):
        # WHEN name CMP term [FOR term] COLON IDENT [term]
        metric, op, threshold = c[1], c[2][1], self.term(c[3])
        i = 4
        window = None
        if c[i][0] == "FOR":
            window = self.term(c[i + 1])
            i += 2
        action = self.ident(c[i + 1])
        amount = self.term(c[i + 2]) if len(c) > i + 2 else None
        return ast.WhenRule(self.span(c[0], c[-1]), metric, op, threshold, window, action, amount)

    # -- terms

    def term(self, x):
        if type(x) is _Tok:
            typ = x[0]
            if typ == "NUMBER":
                return self.number(x)
            if typ == "MODREF":
                module, _, cls = x[1].rpartition(":")
                return ast.ModuleRef(_nt(_Span, (self.src, x[2], x[3])), module, cls)
        return x

    def r_list(self, c):
        return ast.ListExpr(self.span(c[0], c[-1]), [self.term(x) for x in c[1:-1] if not _is_punct(x)])

    def r_call(self, c):
        return ast.Call(self.span(c[0], c[-1]), c[0], [self.term(x) for x in c[2:-1] if not _is_punct(x)])

    def r_range(self, c):
        return ast.RangeExpr(self.span(c[0], c[-1]), self.term(c[0]), self.term(c[2]))

    def r_name(self, c):
        first = c[0]
        if len(c) == 1:  # the common case: one word
            return _Name(_nt(_Span, (self.src, first[2], first[3])), (first[1],))
        parts = tuple(t[1] for t in c if t[0] == "IDENT")
        return _Name(_nt(_Span, (self.src, first[2], c[-1][3])), parts)

    def r_string(self, c):
        typ, text, start, end = c[0]
        value, problems = decode_string(text)
        span = _nt(_Span, (self.src, start, end))
        if typ == "BAD_STRING":
            self.report(
                error(codes.UNTERMINATED_STRING, "unterminated string", span,
                      label="this string is never closed", help='add the closing `"` before the end of the line',
                      notes=["strings cannot span lines; write `\\n` for a newline"])
            )
        for pr in problems:
            self.report(error(codes.INVALID_ESCAPE, pr.message, Span(self.src, start + pr.start, start + pr.end),
                              label=pr.label, help=pr.help))
        return ast.String(span, value)

    def number(self, tok: _Tok):
        span = _nt(_Span, (self.src, tok[2], tok[3]))
        made = _NUMBER_NODES.get(tok[1])
        if made is not None:  # a number seen before, without problems: skip decoding it again
            cls, decoded, unit = made
            return cls(span, decoded) if unit is None else cls(span, decoded, unit)
        value, problem = decode_number(tok.value)
        # The same few numbers recur (`4`, `5s`, `256KB`), and their nodes' parts are immutable.
        if problem is None and len(_NUMBER_NODES) < 4096:
            cls = _NUMBER_CLASSES.get(value.kind, ast.Size)
            _NUMBER_NODES[tok[1]] = (cls, value.value, tok[1] if cls in (ast.Duration, ast.Size) else None)
        if problem is not None:
            pspan = Span(self.src, tok.start_pos + problem.start, tok.start_pos + problem.end)
            code = codes.UNKNOWN_UNIT if problem.code_key == "unit" else codes.INVALID_NUMBER
            diag = error(code, problem.message, pspan, label=problem.label, help=problem.help)
            if problem.replacement:
                diag.fix = Fix(f"use `{problem.replacement}`", (Edit(pspan, problem.replacement),))
            self.report(diag)
        kind = value.kind
        if kind == "int":
            return ast.Integer(span, value.value)
        if kind == "float":
            return ast.Float(span, value.value)
        if kind == "duration":
            return ast.Duration(span, value.value, tok[1])
        return ast.Size(span, value.value, tok[1])


# Number text -> (node class, value, unit text or None) for numbers decoded without a problem.
_NUMBER_NODES: dict[str, tuple] = {}
_NUMBER_CLASSES = {"int": ast.Integer, "float": ast.Float, "duration": ast.Duration, "size": ast.Size}

# Module-level names for the hottest constructors (a global lookup instead of two attribute loads).
_Span = Span
_nt = tuple.__new__
_Name = ast.Name
_Ident = ast.Ident
_Property = ast.Property
_ObjectExpr = ast.ObjectExpr
_Command = ast.Command
_TypeExpr = ast.TypeExpr
_FieldDecl = ast.FieldDecl

_DECL_TYPES = (ast.ImportDecl, ast.ClusterDecl, ast.MessageDecl, ast.ChannelDecl, ast.EcosystemDecl)


def _is_punct(x) -> bool:
    return type(x) is _Tok and x[0] in ("COMMA", "LSQB", "RSQB", "LPAR", "RPAR")


def _splice(children):
    """Inline a helper rule's children; reuse the left-recursive list to stay linear."""
    if children and type(children[0]) is _Splice:
        out = children[0]
        for x in children[1:]:
            if type(x) is _Splice:
                out.extend(x)
            else:
                out.append(x)
        return out
    out = _Splice()
    for x in children:
        if type(x) is _Splice:
            out.extend(x)
        else:
            out.append(x)
    return out


def _wrap(fn):
    def callback(children):
        for x in children:
            if type(x) is _Splice:
                break
        else:  # nothing to splice (e.g. a helper list of one item passed through): use as is
            return fn(children)
        flat = []
        for x in children:
            if type(x) is _Splice:
                flat.extend(x)
            else:
                flat.append(x)
        return fn(flat)

    return callback
