"""Checks for ``channel`` declarations."""

from __future__ import annotations

from eco.language import ast
from eco.language.diagnostics import Label, error

from . import codes
from .resolve import LoadedModule, Program
from .schema import put_enum, put_int, read_block
from .values import Reader

PRIORITIES = ("high", "normal", "low")
DELIVERIES = ("best_effort", "at_least_once")
ORDERINGS = ("none", "fifo", "causal")
MAX_PARALLELISM = 1024
MAX_CHUNK = 1 << 30


def check_channel(reader: Reader, program: Program, module: LoadedModule, decl: ast.ChannelDecl,
                  qualified: str) -> dict:
    """The plan-shaped channel (eco.plan.Channel fields)."""
    s = read_block(reader, decl.body, f"channel `{decl.name.name}`",
                   ("priority", "delivery", "ordering", "parallelism", "chunk"), carries=True)
    out: dict = {"name": qualified}
    put_enum(reader, s, out, "priority", PRIORITIES, "priority")
    put_enum(reader, s, out, "delivery", DELIVERIES, "delivery guarantee")
    put_enum(reader, s, out, "ordering", ORDERINGS, "ordering")
    put_int(reader, s, out, "parallelism", low=1, high=MAX_PARALLELISM)
    if (st := s.get("chunk")) is not None:
        term = reader.single(st.terms, st.key, "a size")
        size = reader.size(term, "`chunk`") if term is not None else None
        if size is not None and size > MAX_CHUNK:
            reader.out_of_range(term, "`chunk` must be at most 1GB")
        elif size is not None:
            out["chunk"] = size
    carried: list[str] = []
    first: dict[str, ast.Name] = {}
    for item in s.carries:
        for ref in item.types:
            symbol = program.lookup(module, "message", ref)
            if symbol is None:
                continue
            if symbol.qualified in first:
                reader.bag.add(error(
                    codes.DUPLICATE_ENTRY, f"`{ref.dotted}` is listed twice in `carries`", ref.span,
                    label="listed again here", labels=[Label(first[symbol.qualified].span, "first listed here")],
                ))
                continue
            first[symbol.qualified] = ref
            carried.append(symbol.qualified)
    out["carries"] = tuple(carried)
    return out
