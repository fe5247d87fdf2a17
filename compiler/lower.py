"""Lowering checked declarations to the plan (``eco.plan.Plan``).

The checks produce plan-shaped data (plain dicts, defaults not yet applied);
this module turns them into the immutable plan models, which apply the
defaults.  pydantic is imported here only, so checking without building a plan
stays fast to start.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PlanData:
    """Everything a plan is built from, in declaration order."""

    sources: list[str] = field(default_factory=list)
    clusters: list[dict] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    channels: list[dict] = field(default_factory=list)
    ecosystems: list[dict] = field(default_factory=list)


class LoweringError(Exception):
    """The checked data does not fit the plan: a gap in the checks, reported as a diagnostic."""


def lower(data: PlanData):
    """Build the ``eco.plan.Plan``; raises LoweringError with a readable message if it does not validate."""
    from pydantic import ValidationError

    from eco.plan import Plan

    try:
        return Plan.model_validate({
            "sources": tuple(data.sources),
            "clusters": tuple(data.clusters),
            "messages": tuple(data.messages),
            "channels": tuple(data.channels),
            "ecosystems": tuple(data.ecosystems),
        })
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise LoweringError(problems) from None
