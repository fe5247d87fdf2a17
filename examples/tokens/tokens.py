"""Components of the ``tokens`` ecosystem (see tokens.eco and tokencount.py).

The :class:`Coordinator` lists the files, cuts them into batches and pushes
them to the workers, at most ``CREDIT`` batches in flight per worker, giving a
worker its next batch as soon as its counts come back.  Delivery is
at-least-once: when a worker goes down (crash, or its node is lost) its
batches in flight go back to the queue for the others, and because each
batch's counts are merged only once (by batch id), the result is exact even
if a batch was counted twice.  When every batch is in, it completes the job
with a summary: files, skipped, tokens, distinct, top 10, a digest of all
counts, elapsed seconds and the files each node counted.

Settings (environment, read by the coordinator): ``ECO_TOKENS_LIMIT`` (only the
first N files), ``ECO_TOKENS_ROOT`` (another directory), ``ECO_TOKENS_BATCH``
(files per batch, default 8).
"""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from collections import deque
from typing import Any

import trio

from eco.runtime.component import Coordinator as BaseCoordinator
from eco.runtime.component import Worker

from tokencount import count_files, default_limit, default_root, list_files, summarize

CREDIT = 2  # batches in flight per worker: one being counted, one waiting


def _batch_size() -> int:
    raw = os.environ.get("ECO_TOKENS_BATCH", "").strip()
    return max(1, int(raw)) if raw.isdigit() else 8


class Counter(Worker):
    """Counts the tokens of each batch it gets and sends the counts back."""

    async def handle(self, msg: Any) -> None:
        if not (isinstance(msg, dict) and msg.get("op") == "count"):
            return
        # Tokenizing is CPU work: a thread keeps this node's event loop (keepalives,
        # other processes) responsive meanwhile.
        counts, ok, skipped = await trio.to_thread.run_sync(count_files, msg["paths"])
        await self.ctx.send(msg["reply_to"], {
            "op": "counts",
            "batch": msg["batch"],
            "worker": self.ctx.self,
            "node": self.ctx.node,
            "files": ok,
            "skipped": skipped,
            "counts": dict(counts),
        })


class Coordinator(BaseCoordinator):
    """Hands out batches of files, merges the counts, completes with the summary."""

    async def init(self, ctx) -> None:
        self.started = time.monotonic()
        files = list_files(default_root(), default_limit())
        size = _batch_size()
        self.batches: dict[int, list[str]] = {i: files[j:j + size] for i, j in enumerate(range(0, len(files), size))}
        self.total_files = len(files)
        self.queue: deque[int] = deque(self.batches)
        self.in_flight: dict[Any, set[int]] = {}  # worker PID -> batch ids
        self.merged: set[int] = set()
        self.counts: Tally[str] = Tally()
        self.files_ok = self.skipped = 0
        self.per_node: Tally[str] = Tally()
        self.duplicates = 0
        self.progress(0, self.total_files, "files")
        if not self.batches:
            self._finish()

    async def worker_started(self, pid) -> None:
        self.in_flight.setdefault(pid, set())
        await self._fill(pid)

    async def worker_down(self, pid, reason) -> None:
        lost = self.in_flight.pop(pid, set()) - self.merged
        if lost:
            self.ctx.log.warning("worker %s went down (%s): re-sending %d batch(es)", pid, reason, len(lost))
            self.queue.extendleft(sorted(lost, reverse=True))
            for other in list(self.in_flight):
                await self._fill(other)

    async def handle(self, msg: Any) -> None:
        if not (isinstance(msg, dict) and msg.get("op") == "counts"):
            return
        batch, worker = msg["batch"], msg["worker"]
        self.in_flight.get(worker, set()).discard(batch)
        if batch in self.merged:
            self.duplicates += 1  # counted twice after a re-send: merge once only
        else:
            self.merged.add(batch)
            self.counts.update(msg["counts"])
            self.files_ok += msg["files"]
            self.skipped += msg["skipped"]
            self.per_node[msg["node"]] += msg["files"] + msg["skipped"]
            self.progress(self.files_ok + self.skipped, self.total_files, "files")
        if len(self.merged) == len(self.batches):
            self._finish()
        if worker in self.in_flight:
            await self._fill(worker)

    async def _fill(self, pid) -> None:
        mine = self.in_flight.get(pid)
        while mine is not None and len(mine) < CREDIT and self.queue:
            batch = self.queue.popleft()
            if batch in self.merged:
                continue
            mine.add(batch)
            await self.ctx.send(pid, {"op": "count", "batch": batch, "paths": self.batches[batch], "reply_to": self.ctx.self})

    def _finish(self) -> None:
        result = summarize(self.counts, self.files_ok, self.skipped)
        result["elapsed"] = round(time.monotonic() - self.started, 3)
        result["per_node"] = dict(sorted(self.per_node.items()))
        if self.duplicates:
            result["batches_counted_twice"] = self.duplicates
        self.complete(result)
