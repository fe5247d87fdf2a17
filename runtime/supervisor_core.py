"""Supervisor decisions as a pure state machine (no trio, no clock, no I/O).

:class:`SupervisorCore` tracks the children of one supervisor (their specs,
start order and whether they run) and turns events into effects:

======================================  =========================================
event                                   effects
======================================  =========================================
``start()``                             ``StartChildren(all, in order)``
``child_exited(id, reason, now)``       nothing, or ``StopChildren`` (reverse start
                                        order) + ``StartChildren``, or
                                        ``StopChildren(all)`` + ``Escalate``
``add_child(spec)``                     ``StartChildren((id,))``
``terminate_child(id)``                 ``StopChildren((id,))``
``restart_child(id)``                   ``StartChildren((id,))``
``delete_child(id)``                    nothing (the spec is forgotten)
``shutdown()``                          ``StopChildren(all running, reverse order)``
======================================  =========================================

Which children a failure affects depends on the strategy, and whether an exit
needs a restart depends on the child's restart type; both are tables below.
Restart intensity: more than ``max_restarts`` restarts within the last
``within`` seconds (a sliding window over restart times) makes the
supervisor give up: it stops every child and escalates by exiting with
``shutdown: reached max restart intensity``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import SupervisorError
from .signals import Reason

__all__ = [
    "ChildSpec",
    "StartChildren",
    "StopChildren",
    "Escalate",
    "Effect",
    "SupervisorCore",
    "STRATEGIES",
    "RESTART_TYPES",
    "INTENSITY_REASON",
]

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
RestartType = Literal["permanent", "transient", "temporary"]

INTENSITY_REASON = Reason("shutdown", "reached max restart intensity")


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child.

    ``start`` is whatever the driver spawns (a Worker subclass, an async
    ``fn(ctx, *args)``, a nested Supervisor); the core never looks at it.
    ``shutdown`` is the graceful stop timeout in seconds (``math.inf`` waits
    forever, the default for supervisors).
    """

    id: str
    start: Any
    args: tuple[Any, ...] = ()
    restart: RestartType = "permanent"
    shutdown: float | None = None  # None: 5 s for workers, infinity for supervisors
    kind: Literal["worker", "supervisor"] = "worker"

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"a child id must be a non-empty string, not {self.id!r}")
        if self.restart not in RESTART_TYPES:
            raise ValueError(
                f"child {self.id!r}: unknown restart type {self.restart!r} "
                f"(expected one of {', '.join(RESTART_TYPES)})"
            )
        if self.kind not in ("worker", "supervisor"):
            raise ValueError(f"child {self.id!r}: kind must be 'worker' or 'supervisor', not {self.kind!r}")
        if self.shutdown is not None and not self.shutdown >= 0:
            raise ValueError(f"child {self.id!r}: shutdown timeout must be >= 0, not {self.shutdown!r}")

    @property
    def shutdown_timeout(self) -> float:
        if self.shutdown is not None:
            return self.shutdown
        return math.inf if self.kind == "supervisor" else 5.0


@dataclass(frozen=True)
class StartChildren:
    """Start these children, in this order."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class StopChildren:
    """Stop these children, one after the other in this order (graceful, then kill)."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class Escalate:
    """Give up: exit the supervisor with ``reason`` (after the preceding StopChildren)."""

    reason: Reason = field(default=INTENSITY_REASON)


Effect = StartChildren | StopChildren | Escalate


# Does an exit with this reason call for a restart?
RESTART_TYPES: dict[str, Callable[[Reason], bool]] = {
    "permanent": lambda reason: True,
    "transient": lambda reason: not reason.is_clean,
    "temporary": lambda reason: False,
}


# Which children (in start order) a failure of `failed` affects.
def _one_for_one(order: list[str], failed: str) -> list[str]:
    return [failed]


def _one_for_all(order: list[str], failed: str) -> list[str]:
    return list(order)


def _rest_for_one(order: list[str], failed: str) -> list[str]:
    return order[order.index(failed) :]


STRATEGIES: dict[str, Callable[[list[str], str], list[str]]] = {
    "one_for_one": _one_for_one,
    "one_for_all": _one_for_all,
    "rest_for_one": _rest_for_one,
}


class SupervisorCore:
    """The decision state of one supervisor; see the module docstring."""

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        within: float = 5.0,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, not {max_restarts}")
        if not within > 0:
            raise ValueError(f"within must be > 0 seconds, not {within}")
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within = within
        self._order: list[str] = []  # start order
        self._specs: dict[str, ChildSpec] = {}
        self._running: set[str] = set()
        self._restarts: deque[float] = deque()  # times of recent restarts
        self.escalated = False
        for spec in children:
            self._add(spec)

    # ------------------------------------------------------------ queries

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self._order)

    def spec(self, child_id: str) -> ChildSpec:
        try:
            return self._specs[child_id]
        except KeyError:
            raise SupervisorError(f"no child with id {child_id!r}") from None

    def is_running(self, child_id: str) -> bool:
        return child_id in self._running

    def running(self) -> tuple[str, ...]:
        return tuple(c for c in self._order if c in self._running)

    def restarts_in_window(self, now: float) -> int:
        self._expire(now)
        return len(self._restarts)

    # ------------------------------------------------------------ events

    def start(self) -> list[Effect]:
        """Initial start of every child, in order."""
        ids = tuple(self._order)
        self._running.update(ids)
        return [StartChildren(ids)] if ids else []

    def child_exited(self, child_id: str, reason: Reason, now: float) -> list[Effect]:
        """A running child ended (crash, normal return, or failed to start)."""
        if child_id not in self._running or self.escalated:
            return []  # stopped by us, or already dealt with
        self._running.discard(child_id)
        spec = self._specs[child_id]
        if not RESTART_TYPES[spec.restart](reason):
            if spec.restart == "temporary":
                self._remove(child_id)
            return []
        if self._note_restart(now):
            return self._escalate()
        affected = STRATEGIES[self.strategy](self._order, child_id)
        to_stop = tuple(c for c in reversed(affected) if c in self._running)
        effects: list[Effect] = [StopChildren(to_stop)] if to_stop else []
        for c in to_stop:
            self._running.discard(c)
            if self._specs[c].restart == "temporary":
                self._remove(c)  # temporary children are never restarted
        restart = set(to_stop) | {child_id}
        to_start = tuple(c for c in self._order if c in restart)
        self._running.update(to_start)
        effects.append(StartChildren(to_start))
        return effects

    def add_child(self, spec: ChildSpec) -> list[Effect]:
        """A dynamic child: appended to the start order and started."""
        self._add(spec)
        self._running.add(spec.id)
        return [StartChildren((spec.id,))]

    def terminate_child(self, child_id: str) -> list[Effect]:
        """Stop a child but keep its spec (``restart_child`` starts it again)."""
        spec = self.spec(child_id)
        if child_id not in self._running:
            return []
        self._running.discard(child_id)
        if spec.restart == "temporary":
            self._remove(child_id)
        return [StopChildren((child_id,))]

    def restart_child(self, child_id: str) -> list[Effect]:
        self.spec(child_id)
        if child_id in self._running:
            raise SupervisorError(f"child {child_id!r} is running; terminate it first")
        self._running.add(child_id)
        return [StartChildren((child_id,))]

    def delete_child(self, child_id: str) -> list[Effect]:
        self.spec(child_id)
        if child_id in self._running:
            raise SupervisorError(f"child {child_id!r} is running; terminate it before deleting it")
        self._remove(child_id)
        return []

    def shutdown(self) -> list[Effect]:
        """Stop every running child in reverse start order."""
        ids = tuple(reversed(self.running()))
        self._running.clear()
        return [StopChildren(ids)] if ids else []

    # ------------------------------------------------------------ helpers

    def _add(self, spec: ChildSpec) -> None:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"a supervisor child must be a ChildSpec, not {spec!r}")
        if spec.id in self._specs:
            raise SupervisorError(f"a child with id {spec.id!r} already exists")
        self._specs[spec.id] = spec
        self._order.append(spec.id)

    def _remove(self, child_id: str) -> None:
        del self._specs[child_id]
        self._order.remove(child_id)

    def _expire(self, now: float) -> None:
        horizon = now - self.within
        restarts = self._restarts
        while restarts and restarts[0] <= horizon:
            restarts.popleft()

    def _note_restart(self, now: float) -> bool:
        """Record a restart at ``now``; True if that exceeds the intensity."""
        self._restarts.append(now)
        self._expire(now)
        return len(self._restarts) > self.max_restarts

    def _escalate(self) -> list[Effect]:
        self.escalated = True
        effects: list[Effect] = self.shutdown()
        effects.append(Escalate(INTENSITY_REASON))
        return effects
