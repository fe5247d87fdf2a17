"""Load reports for ``least_loaded`` placement: measured on each node, gossiped to its peers.

Every node measures its own load (number of processes, total queued messages
over their mailboxes, and event-loop lag: how late a short ``trio.sleep`` wakes
up, smoothed) and sends it to every connected peer as a ``LOAD`` envelope every
``interval`` seconds.  Peers keep the latest report per node, stamped with
their own clock on arrival (:class:`~eco.runtime.placement.LoadReport`).
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .placement import LoadReport
from .wire import Envelope, Kind

__all__ = ["LoadMonitor"]

log = logging.getLogger("eco.runtime.node")


class LoadMonitor:
    """Measures this node's load and collects its peers' reports."""

    def __init__(self, node: Any, *, interval: float = 0.5, lag_probe: float = 0.05) -> None:
        self.node = node
        self.kernel = node.kernel
        self.interval = interval
        self.lag_probe = lag_probe
        self.loop_lag = 0.0
        self._reports: dict[str, LoadReport] = {}
        node.handle(Kind.LOAD, self._on_report)

    def local(self) -> LoadReport:
        """This node's load now."""
        kernel = self.kernel
        depth = 0
        pids = kernel.processes()
        for pid in pids:
            ctx = kernel.context(pid)
            if ctx is not None:
                depth += len(ctx.mailbox)
        return LoadReport(self.node.name, trio.current_time(), len(pids), depth, round(self.loop_lag, 6))

    def reports(self) -> dict[str, LoadReport]:
        """The latest report of every node (this one measured now)."""
        reports = dict(self._reports)
        reports[self.node.name] = self.local()
        return reports

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._measure_lag)
            while True:
                self._gossip()
                await trio.sleep(self.interval)

    async def _measure_lag(self) -> None:
        # A short sleep wakes up late when the loop is busy; the excess is the lag (smoothed).
        while True:
            start = trio.current_time()
            await trio.sleep(self.lag_probe)
            late = max(0.0, trio.current_time() - start - self.lag_probe)
            self.loop_lag = 0.8 * self.loop_lag + 0.2 * late

    def _gossip(self) -> None:
        report = self.local()
        payload = [report.processes, report.mailbox_depth, report.loop_lag]
        for peer in self.node.peers:
            self.node.send_envelope(peer, Envelope(Kind.LOAD, "std.control", None, None, 0, payload))

    def _on_report(self, conn: Any, env: Envelope) -> None:
        raw = env.payload
        try:
            processes, depth, lag = int(raw[0]), int(raw[1]), float(raw[2])
        except (TypeError, ValueError, IndexError):
            log.warning("node %s: malformed load report from %s", self.node.name, conn.peer.node)
            return
        peer = conn.peer.node
        self._reports[peer] = LoadReport(peer, trio.current_time(), processes, depth, lag)
