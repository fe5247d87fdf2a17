"""Cluster-wide names (``register as "name"`` / ``requires "name"``) as a mergeable, pure state.

Every node keeps a :class:`NameTable` and gossips it (:meth:`NameTable.to_wire`);
peers fold what they hear in with :meth:`NameTable.merge`. The table is a
join-semilattice, so merging is idempotent, commutative and associative and
all nodes that have seen the same updates agree, whatever the order:

* per name, the table keeps the single greatest :class:`NameEntry` by
  :attr:`NameEntry.key` = ``(epoch, node, incarnation, removed, pid, at)``.
  **Conflict rule**: of two registrations racing for a name, the higher
  ``epoch`` wins; at equal epochs the lexically greater ``node`` name wins
  (then the higher node incarnation). Unregistering writes a tombstone with
  the same epoch/node/incarnation and ``removed=True``, which beats the entry
  it removes but loses to any later registration (higher epoch);
* per node, the highest incarnation known to be ``down`` (or ``left``).
  An entry registered by incarnation ``i`` of a node is dead once that node is
  down at an incarnation ``>= i``: lookups ignore it, even if a peer that has
  not yet heard of the failure gossips it again. A node that restarts gets a
  new incarnation, so its fresh registrations are live.

A re-registration after failover uses :meth:`NameTable.next_epoch`, so it
outranks every earlier registration of the name on every node after merge.

:class:`NameWaiters` implements ``requires "name"`` without IO: it records who
waits for which name and, after a change, says which waiters are satisfied;
the driver owns the timeouts (and calls :meth:`NameWaiters.cancel`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["NameEntry", "NameTable", "NameWaiters"]


@dataclass(frozen=True, slots=True)
class NameEntry:
    """One registration (or, with ``removed``, its tombstone)."""

    name: str
    pid: Any  # the registered process (a PID at run time); must be hashable and have a stable repr
    node: str  # node the process runs on
    incarnation: int  # that node's incarnation when it registered
    epoch: int  # raised by each re-registration of the name (failover)
    at: float = 0.0  # registration time on the registering node (informative)
    removed: bool = False

    @property
    def key(self) -> tuple:
        """Total order used for conflict resolution; the greatest entry wins."""
        return (self.epoch, self.node, self.incarnation, self.removed, repr(self.pid), self.at)


class NameTable:
    """The registry state of one node: entries per name plus the down incarnation per node."""

    def __init__(self) -> None:
        self._entries: dict[str, NameEntry] = {}
        self._down: dict[str, int] = {}

    # ---------------------------------------------------------------- queries

    def lookup(self, name: str) -> NameEntry | None:
        """The live registration of ``name``, or None (never registered, unregistered or its node is down)."""
        entry = self._entries.get(name)
        return entry if entry is not None and self._live(entry) else None

    def names(self) -> dict[str, NameEntry]:
        """Every live registration, by name."""
        return {name: e for name, e in sorted(self._entries.items()) if self._live(e)}

    def next_epoch(self, name: str) -> int:
        """The epoch a new registration of ``name`` needs to outrank everything this node has seen."""
        entry = self._entries.get(name)
        return 0 if entry is None else entry.epoch + 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameTable):
            return NotImplemented
        return self._entries == other._entries and self._down == other._down

    def __repr__(self) -> str:
        return f"NameTable({self.names()!r}, down={self._down!r})"

    # ---------------------------------------------------------------- updates
    # Each update returns the names whose lookup() result changed.

    def register(self, name: str, pid: Any, node: str, incarnation: int, now: float,
                 epoch: int | None = None) -> tuple[NameEntry, set[str]]:
        """Register ``pid`` (on ``node`` at ``incarnation``) as ``name``; ``epoch`` defaults to :meth:`next_epoch`.

        Returns the new entry and the changed names. The entry may lose to a
        concurrent one (check ``lookup(name) == entry``), and the caller must
        not register for a node it knows to be down at that incarnation.
        """
        entry = NameEntry(name, pid, node, incarnation, self.next_epoch(name) if epoch is None else epoch, now)
        return entry, self._absorb([entry], {})

    def unregister(self, name: str, pid: Any | None = None) -> set[str]:
        """Remove the registration of ``name`` (only if it is ``pid``'s, when ``pid`` is given)."""
        entry = self._entries.get(name)
        if entry is None or entry.removed or (pid is not None and entry.pid != pid):
            return set()
        tombstone = NameEntry(entry.name, entry.pid, entry.node, entry.incarnation, entry.epoch, entry.at, True)
        return self._absorb([tombstone], {})

    def node_down(self, node: str, incarnation: int) -> set[str]:
        """``node`` at ``incarnation`` is down or left: its registrations up to that incarnation die."""
        return self._absorb([], {node: incarnation})

    def merge(self, remote: NameTable | Mapping[str, Any]) -> set[str]:
        """Fold in another node's table (or its :meth:`to_wire` form)."""
        if not isinstance(remote, NameTable):
            remote = NameTable.from_wire(remote)
        return self._absorb(remote._entries.values(), remote._down)

    # ------------------------------------------------------------------ wire

    def to_wire(self) -> dict[str, Any]:
        """Plain lists and dicts (pids left as they are, for the node codec)."""
        return {
            "entries": [[e.name, e.pid, e.node, e.incarnation, e.epoch, e.at, e.removed] for e in self._entries.values()],
            "down": dict(self._down),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> NameTable:
        """Inverse of :meth:`to_wire`; ValueError on a malformed message."""
        table = cls()
        try:
            entries = [
                NameEntry(str(n), pid, str(node), int(inc), int(epoch), float(at), bool(removed))
                for n, pid, node, inc, epoch, at, removed in data["entries"]
            ]
            down = {str(node): int(inc) for node, inc in dict(data["down"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed name table: {exc}") from None
        table._absorb(entries, down)
        return table

    # -------------------------------------------------------------- internals

    def _live(self, entry: NameEntry) -> bool:
        return not entry.removed and self._down.get(entry.node, -1) < entry.incarnation

    def _absorb(self, entries: Iterable[NameEntry], down: Mapping[str, int]) -> set[str]:
        touched = {e.name for e in entries}
        touched.update(name for name, e in self._entries.items() if e.node in down)
        before = {name: self.lookup(name) for name in touched}
        for node, incarnation in down.items():
            if incarnation > self._down.get(node, -1):
                self._down[node] = incarnation
        for entry in entries:
            current = self._entries.get(entry.name)
            if current is None or entry.key > current.key:
                self._entries[entry.name] = entry
        return {name for name in touched if self.lookup(name) != before[name]}


class NameWaiters:
    """Who waits for which name (``requires``); pure bookkeeping, the driver owns the timeouts."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, str] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def wait(self, waiter: Hashable, name: str, table: NameTable) -> NameEntry | None:
        """The registration if ``name`` is already live (nothing recorded); otherwise records the waiter."""
        entry = table.lookup(name)
        if entry is None:
            self._waiting[waiter] = name
        return entry

    def cancel(self, waiter: Hashable) -> None:
        """Forget ``waiter`` (it timed out or went away); unknown waiters are ignored."""
        self._waiting.pop(waiter, None)

    def ready(self, table: NameTable, changed: Iterable[str] | None = None) -> list[tuple[Hashable, NameEntry]]:
        """Waiters whose name is now live (after an update that changed ``changed``, default: check all).

        Returned waiters are forgotten; the driver wakes them with the entry.
        """
        names = None if changed is None else set(changed)
        done = []
        for waiter, name in list(self._waiting.items()):
            if names is not None and name not in names:
                continue
            entry = table.lookup(name)
            if entry is not None:
                del self._waiting[waiter]
                done.append((waiter, entry))
        return done
