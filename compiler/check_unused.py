"""Warnings about declarations and imports that nothing uses."""

from __future__ import annotations

from eco.language.diagnostics import DiagnosticBag, Edit, Fix, warning

from . import codes
from .resolve import Program


def check_unused(bag: DiagnosticBag, program: Program) -> None:
    for symbol in program.symbols("message"):
        if not symbol.used:
            bag.add(warning(
                codes.UNUSED_MESSAGE, f"the message `{symbol.name}` is never used", symbol.name_span,
                label="not carried by any channel nor used by another message",
                help=f"add it to a channel's `carries`, or remove it",
            ))
    for symbol in program.symbols("channel"):
        if not symbol.used:
            bag.add(warning(
                codes.UNUSED_CHANNEL, f"the channel `{symbol.name}` is never used", symbol.name_span,
                label="no ecosystem maps this channel",
                help=f"map it in an ecosystem's `channels {{ ... }}` block, or remove it",
            ))
    for module in program.modules:
        if module.is_std:
            continue
        for imp in module.imports:
            target = imp.module
            if target is None or imp.used:
                continue
            # A project file that declares clusters or ecosystems contributes them to the plan.
            if not target.is_std and (target.own["cluster"] or target.own["ecosystem"]):
                continue
            bag.add(warning(
                codes.UNUSED_IMPORT, f"nothing from `{target.name}` is used", imp.decl.span,
                label="unused import", help="remove the import",
                fix=Fix("remove the unused import", (Edit(imp.decl.span, ""),)),
            ))
