"""The node's garbage-collector settings (eco.runtime.gctune)."""

import gc

from eco.runtime.gctune import NODE_GC_THRESHOLDS, tune_gc


def test_tune_gc_sets_thresholds_and_freezes_startup_objects():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == NODE_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        tune_gc((5000, 20, 30), freeze=False)
        assert gc.get_threshold() == (5000, 20, 30)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert gc.get_freeze_count() == 0
