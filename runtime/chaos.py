"""``ecoc run --chaos``: what fault to inject into a local run, parsed from the command line.

* ``kill-node[:AFTER[:restart]]``: once the job has started, wait AFTER (``2s``,
  ``500ms``, ``1.5``; default 1 s), SIGKILL the OS process of one node that does
  not host coordinators, and with ``restart`` start it again under the same name
  (a new incarnation) once its workers run elsewhere.
* ``kill-coordinator[:AFTER]``: for ``leader: consensus`` ecosystems, SIGKILL the
  node that was last elected to host the active coordinator; the run goes on,
  another node is elected and its coordinator takes over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ChaosPlan", "parse_chaos", "parse_duration", "CHAOS_ACTIONS"]

_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|s|m)?$")

CHAOS_ACTIONS = ("kill-node[:AFTER[:restart]]", "kill-coordinator[:AFTER]")


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    action: str  # "kill-node" | "kill-coordinator"
    after: float = 1.0
    restart: bool = False


def parse_duration(text: str) -> float:
    """``"2s"``, ``"500ms"``, ``"1m"`` or plain seconds; ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (examples: 2s, 500ms, 1.5)")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]


def parse_chaos(text: str) -> ChaosPlan:
    """Parse a ``--chaos`` value; ValueError with a readable message when it is not one."""
    parts = text.strip().split(":")
    action = parts[0]
    if action not in ("kill-node", "kill-coordinator"):
        raise ValueError(f"unknown chaos action {action!r} (supported: {', '.join(CHAOS_ACTIONS)})")
    most = 3 if action == "kill-node" else 2
    if len(parts) > most:
        shape = CHAOS_ACTIONS[0] if action == "kill-node" else CHAOS_ACTIONS[1]
        raise ValueError(f"--chaos {text!r}: expected {shape}")
    after = parse_duration(parts[1]) if len(parts) > 1 and parts[1] else 1.0
    restart = False
    if len(parts) == 3:
        if parts[2] != "restart":
            raise ValueError(f"--chaos {text!r}: the third part can only be 'restart', got {parts[2]!r}")
        restart = True
    return ChaosPlan(action, after, restart)
