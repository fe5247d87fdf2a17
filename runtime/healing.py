"""Pure bookkeeping for self-healing ecosystems: where each worker slot runs, and restart budgets.

An ecosystem has ``worker_count`` *slots*.  The host places each slot on a
node; when that node is declared down, the slot is re-placed on a healthy node
with its *generation* raised by one.  The generation travels with the worker
(:class:`~eco.runtime.component.WorkerStarted`), so a worker of an older
generation that resurfaces (its node was only partitioned away) is recognised
as fenced: the coordinator ignores it and the host tells its node to stop it.

Nothing here does IO or reads a clock: callers pass ``now``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["Slot", "SlotTable", "RestartBudget"]


@dataclass(frozen=True, slots=True)
class Slot:
    """Worker ``index`` of an ecosystem: on ``node``, in its ``generation``-th placement."""

    index: int
    node: str
    generation: int = 0


class SlotTable:
    """Where every worker slot of one ecosystem runs."""

    def __init__(self) -> None:
        self._slots: dict[int, Slot] = {}

    def place(self, index: int, node: str) -> Slot:
        """Put slot ``index`` on ``node``: generation 0 the first time, one more on every move."""
        old = self._slots.get(index)
        slot = Slot(index, node, 0 if old is None else old.generation + 1)
        self._slots[index] = slot
        return slot

    def get(self, index: int) -> Slot | None:
        return self._slots.get(index)

    def on(self, node: str) -> list[Slot]:
        """The slots placed on ``node``, by index."""
        return sorted((s for s in self._slots.values() if s.node == node), key=lambda s: s.index)

    def counts(self) -> dict[str, int]:
        """Slots per node (placement's ``current``)."""
        counts: dict[str, int] = {}
        for slot in self._slots.values():
            counts[slot.node] = counts.get(slot.node, 0) + 1
        return counts

    def layout(self) -> dict[int, str]:
        """``{index: node}`` for every slot."""
        return {i: s.node for i, s in sorted(self._slots.items())}

    def __len__(self) -> int:
        return len(self._slots)


class RestartBudget:
    """Restart intensity: at most ``max_restarts`` restarts within any ``within`` seconds.

    The same rule as a supervisor's (``supervision { max_restarts: N within T }``),
    applied to the re-spawns of workers lost with their node.
    """

    def __init__(self, max_restarts: int, within: float) -> None:
        self.max_restarts = max_restarts
        self.within = within
        self._times: deque[float] = deque()

    def allow(self, now: float, count: int = 1) -> bool:
        """Record ``count`` restarts at ``now``; False if that exceeds the intensity (escalate)."""
        while self._times and now - self._times[0] > self.within:
            self._times.popleft()
        self._times.extend([now] * count)
        return len(self._times) <= self.max_restarts

    def in_window(self, now: float) -> int:
        return sum(1 for t in self._times if now - t <= self.within)
