"""Components of the highly available ``tokens`` ecosystem (see tokens_ha.eco).

The same counting as ``examples/tokens`` (reused from there), with a coordinator
that survives the loss of its node: each merged batch is written to the
consensus-backed state (``self.state``) *before* it counts as merged, so a
coordinator that takes over (``leader: consensus``) rebuilds the totals from the
replicated state and hands out only the batches that are not in it.  The key
``job`` holds a fingerprint of the file list and batch size: state of another job
(for instance seeded from an old checkpoint) is discarded.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

_TOKENS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tokens")
if _TOKENS not in sys.path:
    sys.path.append(_TOKENS)  # tokens.py and tokencount.py of the plain example

import tokens  # noqa: E402
from tokens import Counter  # noqa: E402,F401  (the workers are the plain example's)


class Coordinator(tokens.Coordinator):
    """Resumes from the replicated state: finished batches are never handed out again."""

    async def init(self, ctx) -> None:
        self.resumed = 0
        await super().init(ctx)

    async def submit(self, work: Any, *, key: Any) -> None:
        # Called by the base init for every batch: on the first call, load what earlier
        # coordinators merged, and skip those batches.
        if not hasattr(self, "_done"):
            await self._load_done()
        if key in self._done:
            return
        await super().submit(work, key=key)

    async def _load_done(self) -> None:
        fingerprint = hashlib.sha256(repr(sorted(self.batches.items())).encode()).hexdigest()
        if await self.state.get("job") != fingerprint:
            stale = await self.state.items("batch/")
            for key in stale:
                await self.state.delete(key)
            await self.state.put("job", fingerprint)
        self._done = {}
        for key, value in (await self.state.items("batch/")).items():
            self._merge(int(key.split("/", 1)[1]), value)
        self.resumed = len(self._done)
        if self.resumed:
            self.ctx.log.warning("resuming: %d of %d batches were merged by an earlier coordinator (term %s)",
                                 self.resumed, len(self.batches), self.term)
            self.progress(self.files_ok + self.skipped, self.total_files, "files")
        if self.merged == len(self.batches):
            await self._finish()

    def _merge(self, batch: int, value: dict) -> None:
        self._done[batch] = True
        self.merged += 1
        self.counts.update(value["counts"])
        self.files_ok += value["files"]
        self.skipped += value["skipped"]
        self.per_node[value["node"]] += value["files"] + value["skipped"]

    async def handle(self, msg: Any) -> None:
        if not (isinstance(msg, dict) and msg.get("op") == "counts"):
            return
        batch = msg["batch"]
        if batch in self._done or not self.acknowledge(batch, msg["worker"]):
            self.ignored += 1
            return
        # Replicated first: once acknowledged by a majority, no takeover recounts this batch.
        await self.state.put(f"batch/{batch}", {k: msg[k] for k in ("counts", "files", "skipped", "node")})
        self._merge(batch, msg)
        self.progress(self.files_ok + self.skipped, self.total_files, "files")
        if self.merged == len(self.batches):
            await self._finish()

    def complete(self, result: Any = None) -> None:
        if isinstance(result, dict):
            result["resumed"] = self.resumed  # batches merged by earlier coordinators (0 without a takeover)
        super().complete(result)

    async def _finish(self) -> None:
        if getattr(self, "_finishing", False):
            return
        self._finishing = True
        if self.resumed:
            self.ctx.log.warning("finished after resuming %d batches", self.resumed)
        await super()._finish()
