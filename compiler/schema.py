"""Block schemas: which settings a ``{ ... }`` body accepts.

A setting may be written ``key: value`` (Property) or ``key value`` (Command);
the two forms mean the same thing.  Unknown keys get a "did you mean" hint and
a setting given twice points at the first one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from eco.language import ast
from eco.language.diagnostics import Label, error, suggest

from . import codes
from .values import Reader, replace_fix


@dataclass
class Setting:
    key: ast.Ident
    terms: list[ast.Term]
    item: ast.Node

    @property
    def span(self):
        return self.item.span


@dataclass
class Settings:
    """The settings of one block, validated against its schema."""

    single: dict[str, Setting] = field(default_factory=dict)
    repeated: dict[str, list[Setting]] = field(default_factory=dict)
    carries: list[ast.Carries] = field(default_factory=list)
    rules: list[ast.WhenRule] = field(default_factory=list)

    def get(self, key: str) -> Setting | None:
        return self.single.get(key)

    def all(self, key: str) -> list[Setting]:
        return self.repeated.get(key, [])


def read_block(
    reader: Reader,
    body: ast.ObjectExpr | None,
    where: str,
    keys: Iterable[str],
    *,
    repeatable: Iterable[str] = (),
    carries: bool = False,
    rules: bool = False,
) -> Settings:
    """Sort the items of ``body`` into settings, reporting unknown and repeated keys."""
    keys = tuple(keys)
    repeatable = frozenset(repeatable)
    allowed = frozenset(keys) | repeatable
    out = Settings()
    if body is None:
        return out
    for item in body.items:
        if isinstance(item, ast.Carries):
            if carries:
                out.carries.append(item)
            else:
                _unknown(reader, item.span, "carries", where, keys + tuple(repeatable))
            continue
        if isinstance(item, ast.WhenRule):
            if rules:
                out.rules.append(item)
            else:
                _unknown(reader, item.span, "when", where, keys + tuple(repeatable))
            continue
        if not isinstance(item, (ast.Property, ast.Command)):
            continue
        name = item.key.name
        setting = Setting(item.key, list(item.terms), item)
        if name not in allowed:
            _unknown(reader, item.key.span, name, where, tuple(allowed) + (("carries",) if carries else ()))
            continue
        if name in repeatable:
            out.repeated.setdefault(name, []).append(setting)
            continue
        first = out.single.get(name)
        if first is not None:
            reader.bag.add(
                error(
                    codes.DUPLICATE_SETTING,
                    f"`{name}` is set more than once in {where}",
                    item.key.span,
                    label="set again here",
                    labels=[Label(first.key.span, "first set here")],
                    help="remove one of them",
                )
            )
            continue
        out.single[name] = setting
    return out


def block_terms(reader: Reader, setting: Setting) -> tuple[str | None, ast.ObjectExpr | None, bool]:
    """Split ``variant { ... }`` / ``variant`` / ``{ ... }`` into (variant, body, ok)."""
    terms = setting.terms
    if not terms:
        reader.bag.add(error(codes.MISSING_SETTING, f"`{setting.key.name}` needs a value", setting.key.span,
                             label="expected a value here"))
        return None, None, False
    variant: str | None = None
    body: ast.ObjectExpr | None = None
    rest = list(terms)
    if isinstance(rest[0], ast.Name):
        if len(rest[0].parts) != 1:
            reader.wrong(rest[0], "a name")
            return None, None, False
        variant = rest.pop(0).parts[0]
    if rest and isinstance(rest[0], ast.ObjectExpr):
        body = rest.pop(0)
    if rest:
        reader.unexpected(rest, f"`{setting.key.name}` takes a kind and an optional `{{ ... }}` block")
        return None, None, False
    if variant is None and body is None:
        reader.wrong(terms[0], f"a `{setting.key.name}` kind")
        return None, None, False
    return variant, body, True


def _unknown(reader: Reader, span, name: str, where: str, candidates: tuple[str, ...]) -> None:
    guess = suggest(name, candidates)
    notes = [f"{where} accepts: {', '.join(sorted(set(candidates)))}"] if candidates else [f"{where} takes no settings"]
    reader.bag.add(
        error(
            codes.UNKNOWN_SETTING,
            f"unknown setting `{name}` in {where}",
            span,
            label="unknown setting",
            help=f"did you mean `{guess}`?" if guess else None,
            fix=replace_fix(span, guess) if guess and span.text == name else None,
            notes=notes,
        )
    )


# --------------------------------------------------- one-value setting helpers


def put_int(reader: Reader, s: Settings, out: dict, key: str, *, low: int, high: int | None = None,
            field_name: str | None = None) -> None:
    """Read ``key`` as a whole number into ``out[field_name or key]``."""
    if (st := s.get(key)) is None:
        return
    term = reader.single(st.terms, st.key, "a whole number")
    value = reader.integer(term, f"`{key}`", low=low, high=high) if term is not None else None
    if value is not None:
        out[field_name or key] = value


def put_duration(reader: Reader, s: Settings, out: dict, key: str, *, positive: bool = False) -> None:
    """Read ``key`` as a duration (seconds) into ``out[key]``."""
    if (st := s.get(key)) is None:
        return
    term = reader.single(st.terms, st.key, "a duration")
    value = reader.duration(term, f"`{key}`", positive=positive) if term is not None else None
    if value is not None:
        out[key] = value


def put_enum(reader: Reader, s: Settings, out: dict, key: str, allowed: tuple[str, ...], what: str) -> None:
    """Read ``key`` as one of ``allowed`` into ``out[key]``."""
    if (st := s.get(key)) is None:
        return
    term = reader.single(st.terms, st.key, "one of " + ", ".join(allowed))
    value = reader.enum(term, allowed, what) if term is not None else None
    if value is not None:
        out[key] = value
