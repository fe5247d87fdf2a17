"""Garbage-collector settings for a node process.

A node holds many long-lived processes, each about twenty GC-tracked objects
(coroutines, task, mailbox, context, cancel scope).  CPython's default
thresholds (700, 10, 10) were tuned for short-lived objects: spawning 50,000
processes then runs about 1,700 young collections, and every 1,000,000
allocations or so a full collection walks the whole (growing) heap again.
Measured on 200,000 idle processes, the collector took half of the spawn time.
:func:`tune_gc` makes young collections rarer (every 10,000 allocations: they
stay cheap, the young objects are still in cache) and full collections ten
times rarer (every 100 middle-generation collections, about 10 million
allocations), and freezes the objects that exist at startup (modules, the
plan) so full collections skip them.  Cyclic garbage is still collected; only
the cadence changes.  Exited processes do not wait for the collector at all:
the kernel breaks their reference cycles, so reference counting frees them.
``ecoc node`` and ``bench/bench_local.py`` call it at startup.
"""

from __future__ import annotations

import gc

__all__ = ["NODE_GC_THRESHOLDS", "tune_gc"]

# Allocations between young collections; young collections per middle one (CPython's
# default); middle collections per full one (CPython: 10).
NODE_GC_THRESHOLDS = (10_000, 10, 100)


def tune_gc(thresholds: tuple[int, int, int] = NODE_GC_THRESHOLDS, *, freeze: bool = True) -> None:
    """Apply ``thresholds`` (see :func:`gc.set_threshold`) and freeze what is alive now.

    Call once at process startup, after imports and before spawning processes.
    """
    gc.set_threshold(*thresholds)
    if freeze:
        gc.collect()  # do not freeze garbage that is already unreachable
        gc.freeze()
