"""Memory per idle process: its task, mailbox and bookkeeping must stay within 8 KB."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import trio.testing

from eco.runtime import Kernel, Worker

N = 10_000
BUDGET = 8 * 1024


async def idle(ctx):
    await ctx.receive()


@pytest.mark.parametrize("target", [idle, Worker], ids=["function", "worker"])
async def test_idle_process_memory_within_budget(target):
    async with Kernel("n1") as kernel:
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(N):
                await kernel.spawn(target)
            await trio.testing.wait_all_tasks_blocked()  # every process is parked in receive
            gc.collect()
            per_process = (tracemalloc.get_traced_memory()[0] - before) / N
        finally:
            tracemalloc.stop()
        assert len(kernel.processes()) == N
        assert per_process <= BUDGET, f"{per_process:.0f} bytes per idle process"
