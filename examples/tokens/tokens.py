"""Components of the ``tokens`` ecosystem (see tokens.eco and tokencount.py).

The :class:`Coordinator` lists the files, cuts them into batches and pushes
them to the workers with the Coordinator's generic work queue, at most
``CREDIT`` batches in flight per worker.  Delivery is at-least-once: when a
worker goes down (crash, or its node is lost) the runtime hands its
unacknowledged batches to the others, and because each batch's counts are
merged only once (``acknowledge`` by batch id), the result is exact even if
a batch was counted twice.  When every batch is in, it completes the job
with a summary: files, skipped, tokens, distinct, top 10, a digest of all
counts, elapsed seconds and the files each node counted.

Settings (environment, read by the coordinator): ``ECO_TOKENS_LIMIT`` (only the
first N files), ``ECO_TOKENS_ROOT`` (another directory), ``ECO_TOKENS_BATCH``
(files per batch, default 8), ``ECO_TOKENS_VERIFY=1`` (also compute the
single-process reference at the end and add ``exact: true/false`` to the
result: used to show that a run that lost a node is still exact).
"""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from typing import Any

import trio

from eco.runtime.component import Coordinator as BaseCoordinator
from eco.runtime.component import Worker

from tokencount import count_files, default_limit, default_root, list_files, reference, summarize

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
    """Hands out batches of files, merges the counts, completes with the summary.

    Re-sending is the runtime's (``submit`` / ``acknowledge``): a batch held by
    a worker that goes down is handed out again, and a late or duplicate
    answer is refused by ``acknowledge``, so each batch is merged exactly once.
    """

    in_flight_limit = CREDIT

    async def init(self, ctx) -> None:
        self.started = time.monotonic()
        files = list_files(default_root(), default_limit())
        size = _batch_size()
        self.batches: dict[int, list[str]] = {i: files[j:j + size] for i, j in enumerate(range(0, len(files), size))}
        self.total_files = len(files)
        self.merged = 0
        self.counts: Tally[str] = Tally()
        self.files_ok = self.skipped = 0
        self.per_node: Tally[str] = Tally()
        self.ignored = 0
        self.progress(0, self.total_files, "files")
        for batch, paths in self.batches.items():
            await self.submit({"op": "count", "batch": batch, "paths": paths, "reply_to": ctx.self}, key=batch)
        if not self.batches:
            await self._finish()

    async def worker_down(self, pid, reason) -> None:
        if self.outstanding or self.queued:
            self.ctx.log.warning("worker %s went down (%s); its batches are handed out again", pid, reason)

    async def handle(self, msg: Any) -> None:
        if not (isinstance(msg, dict) and msg.get("op") == "counts"):
            return
        if not self.acknowledge(msg["batch"], msg["worker"]):
            self.ignored += 1  # a duplicate, or a late answer from a worker that was given up on
            return
        self.merged += 1
        self.counts.update(msg["counts"])
        self.files_ok += msg["files"]
        self.skipped += msg["skipped"]
        self.per_node[msg["node"]] += msg["files"] + msg["skipped"]
        self.progress(self.files_ok + self.skipped, self.total_files, "files")
        if self.merged == len(self.batches):
            await self._finish()

    async def _finish(self) -> None:
        result = summarize(self.counts, self.files_ok, self.skipped)
        result["elapsed"] = round(time.monotonic() - self.started, 3)
        result["per_node"] = dict(sorted(self.per_node.items()))
        if self.ignored:
            result["answers_ignored"] = self.ignored
        if _verify():
            # In a thread: counting everything again must not stall this node's event loop.
            expected = await trio.to_thread.run_sync(reference, default_root(), default_limit())
            result["exact"] = expected["digest"] == result["digest"] and expected["files"] == result["files"]
        self.complete(result)


def _verify() -> bool:
    return os.environ.get("ECO_TOKENS_VERIFY", "").strip().lower() in ("1", "true", "yes")
