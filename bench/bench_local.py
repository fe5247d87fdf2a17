"""Local kernel benchmark: spawn rate, message throughput, memory per idle process.

Each figure is measured side by side with a baseline doing the same work with
bare trio (a task plus a memory channel per process) in the same run.

    /work/venv/bin/python bench/bench_local.py [--spawn 50000] [--rounds 3] [--messages 200000]
        [--processes 100000] [--cpython-gc]

The garbage collector is configured as a node configures it
(:func:`eco.runtime.gctune.tune_gc`) unless ``--cpython-gc`` keeps CPython's
defaults.  Spawn is measured ``--rounds`` times (medians, and the best run) and
also per CPU second of this process, which is steadier than wall time on a
shared machine.

The last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc

import trio
import trio.testing

from eco.runtime import Kernel
from eco.runtime.gctune import tune_gc


async def _idle(ctx):
    await ctx.receive()


async def _idle_baseline(receive_channel):
    await receive_channel.receive()


async def spawn_rate(n: int) -> tuple[float, float, float]:
    """Processes per second (wall, then baseline), until all are running and parked in receive,
    and processes per CPU second of this process."""
    async with Kernel("bench") as kernel:
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await kernel.spawn(_idle)
        await trio.testing.wait_all_tasks_blocked()
        ours = n / (time.perf_counter() - start)
        ours_cpu = n / (time.process_time() - start_cpu)
        kernel._kill_all()
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        for i in range(n):
            _, receive_channel = trio.open_memory_channel(1000)
            nursery.start_soon(_idle_baseline, receive_channel)
            if not i & 63:
                await trio.lowlevel.checkpoint()  # same scheduling cadence as the kernel
        await trio.testing.wait_all_tasks_blocked()
        base = n / (time.perf_counter() - start)
        nursery.cancel_scope.cancel()
    return ours, base, ours_cpu


async def spawn_rounds(n: int, rounds: int) -> dict[str, float]:
    """:func:`spawn_rate` ``rounds`` times: medians and bests (wall rates swing with machine load)."""
    runs = [await spawn_rate(n) for _ in range(rounds)]
    wall, base, cpu = (sorted(column) for column in zip(*runs))
    return {
        "wall": statistics.median(wall),
        "wall_best": wall[-1],
        "base": statistics.median(base),
        "cpu": statistics.median(cpu),
        "cpu_best": cpu[-1],
    }


async def throughput(n: int) -> tuple[float, float]:
    """Messages per second from one process to another (send + receive)."""
    async with Kernel("bench") as kernel:
        done = trio.Event()

        async def consumer(ctx):
            for _ in range(n):
                await ctx.receive()
            done.set()

        sink = await kernel.spawn(consumer)

        async def producer(ctx):
            for i in range(n):
                await ctx.send(sink, i)

        start = time.perf_counter()
        await kernel.spawn(producer)
        await done.wait()
        ours = n / (time.perf_counter() - start)

    send_channel, receive_channel = trio.open_memory_channel(1000)
    async with trio.open_nursery() as nursery:

        async def consumer_baseline():
            for _ in range(n):
                await receive_channel.receive()

        async def producer_baseline():
            for i in range(n):
                await send_channel.send(i)

        start = time.perf_counter()
        nursery.start_soon(consumer_baseline)
        nursery.start_soon(producer_baseline)
    base = n / (time.perf_counter() - start)
    return ours, base


async def memory_per_process(n: int) -> tuple[float, float]:
    """tracemalloc bytes per idle process (task, mailbox, bookkeeping)."""

    async def measure(spawn_all) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await spawn_all()
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - before) / n
        finally:
            tracemalloc.stop()

    async with Kernel("bench") as kernel:

        async def spawn_ours():
            for _ in range(n):
                await kernel.spawn(_idle)

        ours = await measure(spawn_ours)
        kernel._kill_all()
    async with trio.open_nursery() as nursery:
        channels = []

        async def spawn_base():
            for _ in range(n):
                send_channel, receive_channel = trio.open_memory_channel(1000)
                channels.append(send_channel)  # a sender keeps each channel reachable, as a PID would
                nursery.start_soon(_idle_baseline, receive_channel)

        base = await measure(spawn_base)
        nursery.cancel_scope.cancel()
    return ours, base


async def main(args: argparse.Namespace) -> None:
    if not args.cpython_gc:
        tune_gc()
    rates = await spawn_rounds(args.spawn, args.rounds)
    spawn, spawn_base, spawn_cpu = rates["wall"], rates["base"], rates["cpu"]
    print(
        f"spawn:      {spawn:>10,.0f} processes/s   baseline {spawn_base:>10,.0f}/s   ratio {spawn / spawn_base:.2f}"
        f"   ({spawn_cpu:,.0f} per CPU second; best of {args.rounds}: {rates['wall_best']:,.0f}/s,"
        f" {rates['cpu_best']:,.0f} per CPU second)"
    )
    msgs, msgs_base = await throughput(args.messages)
    print(f"local send: {msgs:>10,.0f} msgs/s        baseline {msgs_base:>10,.0f}/s   ratio {msgs / msgs_base:.2f}")
    mem, mem_base = await memory_per_process(args.processes)
    print(
        f"memory:     {mem:>10,.0f} B/idle process  baseline {mem_base:>10,.0f} B     "
        f"({args.processes:,} processes: {mem * args.processes / 2**20:,.0f} MiB)"
    )
    summary = {
        "bench": "local_kernel",
        "spawn_per_s": round(spawn),
        "spawn_baseline_per_s": round(spawn_base),
        "spawn_ratio": round(spawn / spawn_base, 2),
        "spawn_per_cpu_s": round(spawn_cpu),
        "spawn_best_per_s": round(rates["wall_best"]),
        "spawn_best_per_cpu_s": round(rates["cpu_best"]),
        "spawn_rounds": args.rounds,
        "gc": "cpython-default" if args.cpython_gc else "node (eco.runtime.gctune)",
        "local_msgs_per_s": round(msgs),
        "local_msgs_baseline_per_s": round(msgs_base),
        "local_msgs_ratio": round(msgs / msgs_base, 2),
        "bytes_per_idle_process": round(mem),
        "bytes_per_idle_process_baseline": round(mem_base),
        "idle_processes": args.processes,
        "targets_met": {
            "spawn_ge_50k": spawn >= 50_000,
            "send_ge_200k": msgs >= 200_000,
            "memory_le_8k": mem <= 8192,
        },
    }
    print(json.dumps(summary))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawn", type=int, default=50_000, help="processes spawned for the spawn rate")
    parser.add_argument("--rounds", type=int, default=3, help="spawn runs (medians and bests are reported)")
    parser.add_argument("--messages", type=int, default=200_000, help="messages for the throughput run")
    parser.add_argument("--processes", type=int, default=100_000, help="idle processes for the memory run")
    parser.add_argument("--cpython-gc", action="store_true", help="keep CPython's GC defaults instead of the node's")
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, _parse())
