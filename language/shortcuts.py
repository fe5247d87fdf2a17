"""Shortcuts for the parser: whole one-line items recognised by one regex.

Most lines of a `.eco` file are settings with plain values (``priority: normal``,
``max_restarts: 5 within 10s``, ``n1 at "h:1" zone "a"``), message fields with a
plain type (``path: str``, ``size: int = 0``) or small blocks of such settings
(``backpressure { mailbox: 1000, overflow: block }``).  Feeding them token by
token through the LALR automaton costs a dozen table steps and several
reductions each.  At the start of an item (or field) the parser instead tries
one regex for the rest of the line; on a match it builds the node directly and
does the one ``goto`` the automaton would have done after reducing it.

This is only sound where the tables agree, so ``shortcut_states`` and
``block_states`` check it for each state by simulating the tables on the token
types involved (the shortcut reduces to exactly ``item``/``field`` on top of
that state, whatever separator follows; the value positions accept a
``module:Class`` reference and the key position does not, so contextual
lexing gives the same tokens).  Keywords are never taken by a shortcut (the
parser checks), and the regexes only match what the lexer would split into
the same tokens: no block comments or line breaks inside an item, and an item
separator or the closing ``}`` right after it.
"""

from __future__ import annotations

import re

# The two kinds of shortcut: what the automaton reduces to, and the regex for the text after the key.
PROPERTY = "item"
FIELD = "field"

_ID = r"[A-Za-z_][A-Za-z0-9_]*+"
_BLANK = r"[ \t\f]*+"
# What must follow a shortcut item: a separator (a line break, perhaps after a comment, or `,`) or the
# closing `}`, so that the automaton reduces the item right after it, as the shortcut does.
_END = rf"(?={_BLANK}(?:[\r\n,}}]|//[^\r\n]*+[\r\n]))"


_TERM_TYPES = ("IDENT", "MODREF", "NUMBER", "STRING")  # a name is IDENT (DOT IDENT)*: IDENT for the automaton


def _value(terminals: dict[str, str], modref: str | None, capture: bool) -> str:
    """One plain value; each alternative is atomic, matching exactly what the lexer would."""
    alternatives = [modref] if modref is not None else []
    alternatives += [f"{_ID}(?:\\.{_ID})*+", terminals["NUMBER"], terminals["STRING"]]
    return "(?>" + "|".join(f"({a})" if capture else f"(?:{a})" for a in alternatives) + ")"


def item_regex(terminals: dict[str, str], modref: str) -> re.Pattern[str]:
    """The rest of ``key[:] value value...`` after the key.

    Group 1: the colon (absent for a command); groups 2-5: the first value, a
    modref, name, number or string (``lastindex`` says which when it is the
    only one); group 6: the further values, if any (read them with ``term_regex``).
    """
    first = _value(terminals, modref, True)
    more = _value(terminals, modref, False)
    return re.compile(f"(?:{_BLANK}(:))?{_BLANK}{first}((?:{_BLANK}{more})++)?{_END}")


def term_regex(terminals: dict[str, str], modref: str) -> re.Pattern[str]:
    """One value (groups 1-4 as in ``item_regex``), for ``finditer`` over its group 6."""
    return re.compile(_value(terminals, modref, True))


def field_regex(terminals: dict[str, str]) -> re.Pattern[str]:
    """``: type [= default]`` after a field name; group 1 the type, groups 2-4: name, number, string default."""
    return re.compile(f"{_BLANK}:{_BLANK}({_ID})(?:{_BLANK}={_BLANK}{_value(terminals, None, True)})?{_END}")


def shortcut_states(actions: list[dict[str, int]], rules: list[tuple]) -> dict[int, tuple[str, int]]:
    """State -> (kind, goto state) for every state where a shortcut may start."""
    out: dict[int, tuple[str, int]] = {}
    # Items have any number of values; checking up to two is enough when a third leaves the
    # automaton exactly where the last two alone would (a loop), which _loops checks.
    items = [["IDENT", "COLON", *values] for values in _values(2)] + [["IDENT", *values] for values in _values(2)]
    fields = [["IDENT", "COLON", "IDENT"]] + [["IDENT", "COLON", "IDENT", "EQUAL", x] for x in _TERM_TYPES if x != "MODREF"]
    for state, acts in enumerate(actions):
        if acts.get("IDENT", -1) < 0 or "MODREF" in acts:  # the key must lex as a name
            continue
        for kind, sequences, values_at in ((PROPERTY, items, True), (FIELD, fields, False)):
            goto = acts.get(kind)
            if goto is None or goto < 0:
                continue
            if kind == PROPERTY and not all(_loops(actions, rules, state, head) for head in (["IDENT", "COLON"], ["IDENT"])):
                continue
            if all(_agrees(actions, rules, state, kind, goto, seq, values_at) for seq in sequences):
                out[state] = (kind, goto)
    return out


def _loops(actions, rules, state: int, head: list[str]) -> bool:
    """After ``head``, three values leave the same stack as their last two: longer runs repeat."""
    for three in _values(3):
        if len(three) == 3:
            longer = _feed(actions, rules, [state], head + three)
            if longer is None or longer != _feed(actions, rules, [state], head + three[1:]):
                return False
    return True


def block_states(actions: list[dict[str, int]], rules: list[tuple],
                 item_states: dict[int, tuple[str, int]]) -> dict[int, int]:
    """State -> goto state where ``key { item, item... }`` with one-line items may be taken as a whole.

    The automaton must reduce ``key { ... }`` to ``item`` on top of the state, and
    the states where the inner items start must be item shortcut states.
    """
    x = ["IDENT", "COLON", "IDENT"]
    bodies = [[], x, [*x, "_SEP"], [*x, "_SEP", *x], [*x, "_SEP", *x, "_SEP", *x, "_SEP"]]
    inner_starts = [["IDENT", "LBRACE"], ["IDENT", "LBRACE", *x, "_SEP"], ["IDENT", "LBRACE", *x, "_SEP", *x, "_SEP"]]
    out = {}
    for state, (kind, goto) in item_states.items():
        if kind != PROPERTY:
            continue
        starts = [_feed(actions, rules, [state], seq) for seq in inner_starts]
        if any(st is None or item_states.get(st[-1], ("",))[0] != PROPERTY for st in starts):
            continue
        if all((PROPERTY, [state, goto]) in (_reductions(actions, rules, [state], ["IDENT", "LBRACE", *body, "RBRACE"],
                                                         sep) or [])
               for body in bodies for sep in ("_SEP", "RBRACE")):
            out[state] = goto
    return out


class BlockRegexes:
    """For a block shortcut: its `{`, the blanks, separators and line comments between items, a key, the end."""

    def __init__(self) -> None:
        self.open = re.compile(f"{_BLANK}\\{{")
        self.separators = re.compile(r"(?:[ \t\f,\r\n]++|//[^\r\n]*+)*+")
        self.line_comment = re.compile(r"//[^\r\n]*+")
        self.key = re.compile(_ID)
        self.end = re.compile(_END)


def _values(most: int) -> list[list[str]]:
    """Every sequence of 1 to ``most`` value token types."""
    out: list[list[str]] = [[]]
    for _ in range(most):
        out += [seq + [t] for seq in out if len(seq) == len(out[-1]) for t in _TERM_TYPES]
    return [seq for seq in out if seq]


def _agrees(actions, rules, state: int, kind: str, goto: int, seq: list[str], values_at: bool) -> bool:
    """The automaton takes ``seq`` from ``state``, reducing it to ``kind`` before any separator.

    With ``values_at``, a module reference must also be accepted wherever a value
    starts (after the key or colon, and after each value), so that the lexer
    splits the text the way the shortcut regex does.
    """
    first_value = 2 if len(seq) > 1 and seq[1] == "COLON" else 1
    for i in range(first_value, len(seq) + 1 if values_at else first_value):
        before = _feed(actions, rules, [state], seq[:i])
        if before is None or "MODREF" not in actions[before[-1]]:
            return False
    return all((kind, [state, goto]) in (_reductions(actions, rules, [state], seq, sep) or [])
               for sep in ("_SEP", "RBRACE"))


_FED: dict[tuple, list[int] | None] = {}  # (tables id, stack, types) -> _feed result; prefixes recur


def _feed(actions, rules, stack: list[int], types: list[str]) -> list[int] | None:
    """The state stack after shifting ``types`` from ``stack`` (None if rejected or it pops below)."""
    key = (id(actions), tuple(stack), tuple(types))
    if key in _FED:
        found = _FED[key]
        return None if found is None else list(found)
    if types:
        before = _feed(actions, rules, stack, types[:-1])
        result = None if before is None else _shift(actions, rules, before, types[-1])
    else:
        result = list(stack)
    _FED[key] = result
    return None if result is None else list(result)


def _shift(actions, rules, stack: list[int], typ: str) -> list[int] | None:
    while True:
        act = actions[stack[-1]].get(typ)
        if act is None:
            return None
        if act >= 0:
            stack.append(act)
            return stack
        if not _reduce(actions, rules, stack, ~act):
            return None


def _reductions(actions, rules, stack: list[int], types: list[str], lookahead: str):
    """Feed ``types``, then the reductions ``lookahead`` causes: [(nonterminal, stack after)]."""
    stack = _feed(actions, rules, stack, types)
    if stack is None:
        return None
    out = []
    while True:
        act = actions[stack[-1]].get(lookahead)
        if act is None:
            return None
        if act >= 0:
            return out
        if not _reduce(actions, rules, stack, ~act):
            return out  # reduces below the start state: past the item, whose reduction is in ``out``
        out.append((rules[~act][4], list(stack)))


def _reduce(actions, rules, stack: list[int], rule: int) -> bool:
    size, origin = rules[rule][1], rules[rule][4]
    if size >= len(stack):  # would pop the state the shortcut starts in
        return False
    if size:
        del stack[-size:]
    goto = actions[stack[-1]].get(origin)
    if goto is None:
        return False
    stack.append(goto)
    return True
