"""Loading and saving plans, with clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from .models import PLAN_VERSION, Plan


class PlanError(Exception):
    """A plan file that cannot be read or does not validate."""


def plan_to_json(plan: Plan, *, indent: int | None = 2) -> str:
    return plan.model_dump_json(indent=indent)


def plan_from_json(text: str | bytes, *, origin: str = "<plan>") -> Plan:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlanError(f"{origin}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{origin}: a plan must be a JSON object, found {type(data).__name__}")
    version = data.get("plan_version")
    if version != PLAN_VERSION:
        raise PlanError(
            f"{origin}: plan_version {version!r} is not supported (this runtime reads version {PLAN_VERSION});"
            " rebuild the plan with a matching `ecoc build`"
        )
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        lines = [f"{origin}: invalid plan ({exc.error_count()} problem(s)):"]
        for err in exc.errors()[:20]:
            loc = ".".join(str(p) for p in err["loc"]) or "<root>"
            lines.append(f"  - {loc}: {err['msg']}")
        raise PlanError("\n".join(lines)) from None


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan JSON file; raises PlanError with a readable message."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except IsADirectoryError:
        candidate = p / "plan.json"
        if candidate.is_file():
            return load_plan(candidate)
        raise PlanError(f"{p}: is a directory (expected a plan.json file)") from None
    except OSError as exc:
        raise PlanError(f"{p}: cannot read plan: {exc.strerror or exc}") from None
    return plan_from_json(text, origin=str(p))


def save_plan(plan: Plan, path: str | Path) -> None:
    """Write atomically: a crash mid-write never leaves a torn plan."""
    import os
    import tempfile

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".plan-", suffix=".tmp")
    try:
        # mkstemp creates 0600; a plan is not secret, so give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(plan_to_json(plan))
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def plan_json_schema() -> dict:
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://eco.dev/schemas/plan-v{PLAN_VERSION}.json"
    return schema
