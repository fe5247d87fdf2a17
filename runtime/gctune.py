"""Garbage-collector settings for a node process.

A node holds many long-lived processes, each a handful of GC-tracked objects
(coroutine, task, mailbox, context, cancel scope).  With CPython's default
thresholds (700, 10, 10) spawning 50,000 processes triggers about 1,700
young collections and several full ones that walk the whole growing heap:
half of the spawn time.  :func:`tune_gc` makes young collections rarer and
freezes the objects that exist at startup (modules, the plan) so full
collections skip them.  Cyclic garbage is still collected; only the cadence
changes.  ``ecoc node`` and ``bench/bench_local.py`` call it at startup.
"""

from __future__ import annotations

import gc

__all__ = ["NODE_GC_THRESHOLDS", "tune_gc"]

# gen0 allocations between young collections, then CPython's defaults for gen1/gen2.
NODE_GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc(thresholds: tuple[int, int, int] = NODE_GC_THRESHOLDS, *, freeze: bool = True) -> None:
    """Apply ``thresholds`` (see :func:`gc.set_threshold`) and freeze what is alive now.

    Call once at process startup, after imports and before spawning processes.
    """
    gc.set_threshold(*thresholds)
    if freeze:
        gc.collect()  # do not freeze garbage that is already unreachable
        gc.freeze()
