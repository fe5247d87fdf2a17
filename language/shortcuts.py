"""Shortcuts for the parser: whole one-line items recognised by one regex.

Most lines of a `.eco` file are settings with plain values (``priority: normal``,
``max_restarts: 5 within 10s``, ``n1 at "h:1" zone "a"``), message fields with a
plain type (``path: str``, ``size: int = 0``, ``meta: map[str, str] = {}``),
``when`` rules with plain values, ranges (``workers: 4..64``), ``carries`` lists, or blocks of
such settings, perhaps nested and after values (``backpressure { mailbox: 1000 }``,
``cache: lru { ttl: 30s }``); and whole declaration bodies and ``message`` declarations made of
them, when the next declaration or the end of the file follows.  Feeding them token by
token through the LALR automaton costs a dozen table steps and several
reductions each.  At the start of an item (or field) the parser instead tries
one regex for the rest of the line; on a match it builds the node directly and
does the one ``goto`` the automaton would have done after reducing it.

This is only sound where the tables agree, so ``shortcut_states``, ``block_states``,
``body_states``, ``message_states``, ``extra_item_kinds`` and ``when_states`` check it
for each state by simulating the tables on the token types involved (the shortcut reduces to exactly ``item``/``field`` on top of
that state, whatever separator follows; the value positions accept a
``module:Class`` reference and the key position does not, so contextual
lexing gives the same tokens).  Keywords are taken as plain names only where
the tables show the lexer would not make them keywords (``value_token_types``;
``register as "x"``), and the regexes only match what the lexer would split into
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
    """``: type[args] [= default]`` after a field name.

    Group 1: the type's name; group 2: its arguments (plain names and commas, as in
    ``map[str, int]``), if any; groups 3-5: a name, number or string default;
    group 6: an empty list default ``[]``; group 7: an empty body default ``{}``.
    """
    args = f"(?:{_BLANK}\\[{_BLANK}({_ID}(?:{_BLANK},{_BLANK}{_ID})*+){_BLANK}\\])?"
    default = f"(?:{_value(terminals, None, True)}|(\\[{_BLANK}\\])|(\\{{{_BLANK}\\}}))"
    return re.compile(f"{_BLANK}:{_BLANK}({_ID}){args}(?:{_BLANK}={_BLANK}{default})?{_END}")


def shortcut_states(actions: list[dict[str, int]], rules: list[tuple]) -> dict[int, tuple[str, int]]:
    """State -> (kind, goto state) for every state where a shortcut may start."""
    out: dict[int, tuple[str, int]] = {}
    # Items have any number of values; checking up to two is enough when a third leaves the
    # automaton exactly where the last two alone would (a loop), which _loops checks.
    items = [["IDENT", "COLON", *values] for values in _values(2)] + [["IDENT", *values] for values in _values(2)]
    # Field types: a name, perhaps with one to three plain-name arguments (more repeat the `, name` loop).
    types = [["IDENT"]] + [["IDENT", "LSQB", *(["IDENT", "COMMA"] * k), "IDENT", "RSQB"] for k in range(3)]
    defaults = [[]] + [["EQUAL", x] for x in _TERM_TYPES if x != "MODREF"] + [["EQUAL", "LSQB", "RSQB"],
                                                                            ["EQUAL", "LBRACE", "RBRACE"]]
    fields = [["IDENT", "COLON", *t, *d] for t, d in [(t, []) for t in types] + [(types[i], d) for i in (0, 1) for d in defaults[1:]]]
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
                 item_states: dict[int, tuple[str, int]]) -> tuple[dict[int, int], set[int]]:
    """State -> goto state where ``key[:] value... { item, item... }`` may be taken as a whole, and the inner item states.

    The items inside are one-line items or such blocks again.  The automaton must
    reduce the whole to ``item`` on top of the state, and the states where the
    inner items start must be block states themselves (so item shortcut states).
    """
    x = ["IDENT", "COLON", "IDENT"]
    nested = ["IDENT", "LBRACE", "RBRACE"]
    bodies = [[], x, [*x, "_SEP"], [*x, "_SEP", *x], [*x, "_SEP", *x, "_SEP", *x, "_SEP"], [*nested, "_SEP", *x]]
    # What comes before the `{`: values as in a one-line item, each kind of value last (the values
    # before it loop, see _loops); every body after the plainest head, two after the others.
    heads = [["IDENT"], ["IDENT", "COLON"]]
    heads += [[*head, *more, t] for head in heads for more in ([], ["IDENT"]) for t in _TERM_TYPES]
    checks = [(head, body) for head in heads for body in (bodies if head == heads[0] else bodies[:2])]
    candidates: dict[int, int] = {}
    inner: dict[int, set[int]] = {}
    for state, (kind, goto) in item_states.items():
        if kind != PROPERTY:
            continue
        starts = [_feed(actions, rules, [state], [*head, "LBRACE"]) for head in heads]
        starts += [_feed(actions, rules, [state], ["IDENT", "LBRACE", *before]) for before in ([*x, "_SEP"], [*x, "_SEP", *x, "_SEP"])]
        if any(st is None for st in starts):
            continue
        if all((PROPERTY, [state, goto]) in (_reductions(actions, rules, [state], [*head, "LBRACE", *body, "RBRACE"],
                                                         sep) or [])
               for head, body in checks for sep in ("_SEP", "RBRACE")):
            candidates[state] = goto
            inner[state] = {st[-1] for st in starts}
    while True:  # keep the states whose inner items may again be blocks taken as a whole
        dropped = [state for state in candidates if not inner[state] <= candidates.keys()]
        if not dropped:
            return candidates, set().union(*(inner[state] for state in candidates))
        for state in dropped:
            del candidates[state]


class BlockRegexes:
    """For a block shortcut: the values and `{` after the key, the separators and line comments between items, a key, the end."""

    def __init__(self, terminals: dict[str, str], modref: str, declaration_keywords=()) -> None:
        # Group 1: the colon (absent for a command); group 2: the values before the `{` (read them with term_regex).
        self.open = re.compile(f"(?:{_BLANK}(:))?((?:{_BLANK}{_value(terminals, modref, False)})*+){_BLANK}\\{{")
        self.separators = re.compile(r"(?:[ \t\f,\r\n]++|//[^\r\n]*+)*+")
        self.line_comment = re.compile(r"//[^\r\n]*+")
        self.key = re.compile(_ID)
        self.name = re.compile(f"{_ID}(?:\\.{_ID})*+")
        self.end = re.compile(_END)
        # After a declaration's body: blanks, line breaks and line comments, then another declaration or the end.
        words = "|".join(map(re.escape, declaration_keywords)) or "(?!)"
        self.declaration_end = re.compile(rf"(?:[ \t\f\r\n]++|//[^\r\n]*+)*+(?:(?:{words})(?![A-Za-z0-9_.:])|\Z)")


def range_regex(terminals: dict[str, str]) -> re.Pattern[str]:
    """The rest of ``key[:] low..high`` after the key (bounds: a number or a name).

    Group 1: the colon (absent for a command); groups 2-3: the low bound, a number or
    a name; groups 4-5: the high bound, likewise.
    """
    bound = f"(?>({terminals['NUMBER']})|({_ID}(?:\\.{_ID})*+))"
    return re.compile(f"(?:{_BLANK}(:))?{_BLANK}{bound}{_BLANK}\\.\\.{_BLANK}{bound}{_END}")


def carries_regex() -> re.Pattern[str]:
    """The names of ``carries A, b.C`` after the keyword, up to a line break or ``}``.

    Not up to a ``,``: inside ``carries`` a comma is the list's, not a separator.
    """
    name = f"{_ID}(?:\\.{_ID})*+"
    return re.compile(f"{_BLANK}{name}(?:{_BLANK},{_BLANK}{name})*+"
                      f"(?={_BLANK}(?:[\\r\\n}}]|//[^\\r\\n]*+[\\r\\n]))")


def extra_item_kinds(actions: list[dict[str, int]], rules: list[tuple], states) -> tuple[bool, bool]:
    """Whether ``key[:] low..high`` and ``carries a, b`` reduce to one ``item`` in every one of ``states``.

    ``states`` are the item states of the block and body shortcuts; a kind is taken
    as a whole by them only where all agree (one flag each keeps the loops simple).
    """
    bounds = [["NUMBER"], ["IDENT"], ["IDENT", "DOT", "IDENT"]]
    heads = (["IDENT", "COLON"], ["IDENT"])
    ranges = [[*head, *low, "DOTDOT", *high] for head in heads for low in bounds for high in bounds]
    names = [["IDENT"], ["IDENT", "DOT", "IDENT"]]
    carries = [["CARRIES", *first, *(["COMMA", "IDENT"] * k)] for first in names for k in range(4)]
    carries.append(["CARRIES", "IDENT", "COMMA", "IDENT", "DOT", "IDENT"])

    def agree(sequences) -> bool:
        for state in states:
            goto = actions[state].get(PROPERTY)
            if goto is None or goto < 0:
                return False
            for seq in sequences:
                if not all((PROPERTY, [state, goto]) in (_reductions(actions, rules, [state], seq, sep) or [])
                           for sep in ("_SEP", "RBRACE")):
                    return False
        return True

    return agree(ranges), agree(carries)


def body_states(actions: list[dict[str, int]], rules: list[tuple], block_item_states,
                lookaheads) -> tuple[dict[int, int], set[int]]:
    """State -> goto state where a declaration's body ``{ item, item... }`` may be taken whole; and the inner item states.

    The automaton must reduce ``{ ... }`` to ``body`` on top of the state whichever of
    ``lookaheads`` (the tokens that may follow a declaration) comes next, and every
    item inside must start in one of ``block_item_states`` (where one-line items and
    blocks are taken as a whole).
    """
    x = ["IDENT", "COLON", "IDENT"]
    nested = ["IDENT", "LBRACE", "RBRACE"]
    bodies = [[], x, [*x, "_SEP"], [*x, "_SEP", *x], [*x, "_SEP", *x, "_SEP", *x, "_SEP"], [*nested, "_SEP", *x]]
    out: dict[int, int] = {}
    inner: set[int] = set()
    for state, acts in enumerate(actions):
        goto = acts.get("body")
        if goto is None or goto < 0 or acts.get("LBRACE", -1) < 0:
            continue
        starts = [_feed(actions, rules, [state], ["LBRACE", *before])
                  for before in ([], [*x, "_SEP"], [*x, "_SEP", *x, "_SEP"])]
        if any(st is None or st[-1] not in block_item_states for st in starts):
            continue
        if all(("body", [state, goto])
               in (_reductions(actions, rules, [state], ["LBRACE", *body, "RBRACE"], ahead, "body") or [])
               for body in bodies for ahead in lookaheads):
            out[state] = goto
            inner.update(st[-1] for st in starts)
    return out, inner


def message_states(actions: list[dict[str, int]], rules: list[tuple], item_states: dict[int, tuple[str, int]],
                   lookaheads) -> dict[int, tuple[int, int]]:
    """State -> (state after ``message Name``, goto) where ``message Name { field, field... }`` may be taken whole.

    The automaton must reduce the declaration to ``message_decl`` on top of the state
    whichever of ``lookaheads`` comes next, and every field inside must start in a
    state where the field shortcut applies.
    """
    f = ["IDENT", "COLON", "IDENT"]
    bodies = [[], f, [*f, "_SEP"], [*f, "_SEP", *f], [*f, "_SEP", *f, "_SEP", *f, "_SEP"]]
    fields = {state for state, (kind, _) in item_states.items() if kind == FIELD}
    out: dict[int, tuple[int, int]] = {}
    for state, acts in enumerate(actions):
        goto = acts.get("message_decl")
        if goto is None or goto < 0 or acts.get("MESSAGE", -1) < 0:
            continue
        named = _feed(actions, rules, [state], ["MESSAGE", "IDENT"])
        starts = [_feed(actions, rules, [state], ["MESSAGE", "IDENT", "LBRACE", *before])
                  for before in ([], [*f, "_SEP"], [*f, "_SEP", *f, "_SEP"])]
        if named is None or len(named) != 3 or any(st is None or st[-1] not in fields for st in starts):
            continue
        declaration = ["MESSAGE", "IDENT", "LBRACE"]
        if all(("message_decl", [state, goto])
               in (_reductions(actions, rules, [state], [*declaration, *body, "RBRACE"], ahead, "message_decl") or [])
               for body in bodies for ahead in lookaheads):
            out[state] = (named[-1], goto)
    return out


def value_token_types(actions: list[dict[str, int]], rules: list[tuple],
                      item_states: dict[int, tuple[str, int]]) -> tuple[set[str], set[str], set[str]]:
    """The token types the automaton accepts where a shortcut item's first value, a later value, or a name's next part starts.

    A keyword outside the set for its position is lexed as a plain name there, so an
    item shortcut may take it as one.
    """
    first: set[str] = set()
    later: set[str] = set()
    after_dot: set[str] = set()
    for state, (kind, _) in item_states.items():
        if kind != PROPERTY:
            continue
        for head in (["IDENT"], ["IDENT", "COLON"]):
            for values in [[], *_values(2)]:
                for tail, out in (([], later if values else first), (["IDENT", "DOT"], after_dot)):
                    stack = _feed(actions, rules, [state], [*head, *values, *tail])
                    if stack is not None:
                        out.update(actions[stack[-1]])
    return first, later, after_dot


def when_regex(terminals: dict[str, str], modref: str) -> re.Pattern[str]:
    """The rest of ``when metric CMP value [for value]: action [value]`` after ``when``.

    Group 1: the metric (a name); group 2: the comparison; groups 3-6: the threshold
    (modref, name, number, string); groups 7-10: the window after ``for``, if any;
    group 11: the action; groups 12-15: its amount, if any.
    """
    value = _value(terminals, modref, True)
    return re.compile(f"{_BLANK}({_ID}(?:\\.{_ID})*+){_BLANK}({terminals['CMP']}){_BLANK}{value}"
                      f"(?:{_BLANK}for(?![A-Za-z0-9_]){_BLANK}{value})?{_BLANK}:{_BLANK}({_ID})"
                      f"(?:{_BLANK}{value})?{_END}")


def when_states(actions: list[dict[str, int]], rules: list[tuple],
                item_states: dict[int, tuple[str, int]]) -> set[int]:
    """The item shortcut states where a ``when`` rule with plain values may be taken as a whole.

    The automaton must reduce it to ``item`` on top of the state, and accept a module
    reference wherever the regex reads a value (so that the lexer splits it the same way).
    """
    out = set()
    metrics = [["IDENT"], ["IDENT", "DOT", "IDENT"]]
    for state, (kind, goto) in item_states.items():
        if kind != PROPERTY or "WHEN" not in actions[state]:
            continue
        ok = True
        for metric in metrics:
            for v in _TERM_TYPES:
                head = ["WHEN", *metric, "CMP"]
                for window in ([], ["FOR", v]):
                    for amount in ([], [v]):
                        seq = [*head, v, *window, "COLON", "IDENT", *amount]
                        value_starts = [len(head)] + ([len(head) + 2] if window else []) + ([len(seq) - 1] if amount else [])
                        for i in value_starts:
                            before = _feed(actions, rules, [state], seq[:i])
                            if before is None or "MODREF" not in actions[before[-1]]:
                                ok = False
                        ok = ok and all((PROPERTY, [state, goto]) in (_reductions(actions, rules, [state], seq, sep) or [])
                                        for sep in ("_SEP", "RBRACE"))
        if ok:
            out.add(state)
    return out


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


def _reductions(actions, rules, stack: list[int], types: list[str], lookahead: str, until: str | None = None):
    """Feed ``types``, then the reductions ``lookahead`` causes: [(nonterminal, stack after)].

    With ``until``, stop after reducing that nonterminal (the state it leaves must accept
    ``lookahead``): what follows is the same whether the shortcut or the automaton built it.
    """
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
        if out[-1][0] == until:
            return out if lookahead in actions[stack[-1]] else None


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
