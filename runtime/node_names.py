"""Cluster-wide names on a running node: ``register as "name"`` and ``requires "name"``.

The state is a :class:`~eco.runtime.names.NameTable` (a mergeable
semilattice).  Each node sends its whole table to every connected peer as a
``NAMES`` envelope whenever it changes and to a peer that (re)connects; a
receiver folds it in with :meth:`NameTable.merge`, so every node converges on
the same registrations whatever the order.  When a node is declared down, its
registrations die (:meth:`NameTable.node_down` with its incarnation); a
re-registration elsewhere (a higher epoch) wins on every node, so lookups
follow failovers.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .errors import EcoRuntimeError
from .names import NameEntry, NameTable, NameWaiters
from .wire import Envelope, Kind

__all__ = ["ClusterNames", "NameTimeout"]

log = logging.getLogger("eco.runtime.node")


class NameTimeout(EcoRuntimeError):
    """``requires "name"``: nothing registered ``name`` in time."""


class ClusterNames:
    """This node's copy of the cluster-wide name table, kept in sync with its peers."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.table = NameTable()
        self._waiters = NameWaiters()
        self._wake: dict[object, trio.Event] = {}
        self._changed = trio.Event()
        node.handle(Kind.NAMES, self._on_table)

    # ---------------------------------------------------------------- queries

    def lookup(self, name: str) -> NameEntry | None:
        """The live registration of ``name`` as this node knows it, or None."""
        return self.table.lookup(name)

    def whereis(self, name: str) -> Any:
        """The PID registered as ``name``, or None."""
        entry = self.table.lookup(name)
        return None if entry is None else entry.pid

    async def wait_for(self, name: str, timeout: float) -> NameEntry:
        """The registration of ``name``, waiting up to ``timeout`` seconds for it (NameTimeout)."""
        waiter = object()
        entry = self._waiters.wait(waiter, name, self.table)
        if entry is not None:
            return entry
        event = self._wake[waiter] = trio.Event()
        try:
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            self._wake.pop(waiter, None)
            self._waiters.cancel(waiter)
        entry = self.table.lookup(name)
        if entry is None:
            known = ", ".join(f'"{n}"' for n in self.table.names()) or "none"
            raise NameTimeout(f'no ecosystem registered as "{name}" within {timeout:g}s (registered names: {known})')
        return entry

    async def wait_changed(self) -> None:
        """Wait for the next change of any lookup result (for tests and tools)."""
        await self._changed.wait()

    # ---------------------------------------------------------------- updates

    def register(self, name: str, pid: Any) -> NameEntry:
        """Register ``pid`` (a process on this node) as ``name``, outranking earlier registrations."""
        entry, changed = self.table.register(name, pid, self.node.name, self.node.incarnation, trio.current_time())
        self._after(changed)
        return entry

    def unregister(self, name: str, pid: Any | None = None) -> None:
        self._after(self.table.unregister(name, pid))

    def node_down(self, node: str, incarnation: int) -> None:
        """``node`` at ``incarnation`` is down: its registrations stop resolving."""
        changed = self.table.node_down(node, incarnation)
        if changed:
            self._after(changed)

    def peer_up(self, peer: str) -> None:
        """A peer (re)connected: bring it up to date."""
        self._send(peer)

    # ------------------------------------------------------------ internals

    def _after(self, changed: set[str]) -> None:
        if not changed:
            return
        for waiter, _entry in self._waiters.ready(self.table, changed):
            event = self._wake.get(waiter)
            if event is not None:
                event.set()
        self._changed.set()
        self._changed = trio.Event()
        for peer in self.node.peers:
            self._send(peer)

    def _send(self, peer: str) -> None:
        self.node.send_envelope(peer, Envelope(Kind.NAMES, "std.control", None, None, 0, self.table.to_wire()))

    def _on_table(self, conn: Any, env: Envelope) -> None:
        try:
            changed = self.table.merge(env.payload)
        except ValueError as exc:
            log.warning("node %s: malformed name table from %s: %s", self.node.name, conn.peer.node, exc)
            return
        self._after(changed)
