"""Seed handling for the Raft scenario tests.

Every randomized test runs over a list of seeds. ``RAFT_SEED=17`` reruns exactly one seed;
``RAFT_SEEDS=500`` widens the sweep (the slow tests read it too). A failure names the seed and
the command that reproduces it.
"""

from __future__ import annotations

import functools
import os

import pytest


def seed_list(default: int, offset: int = 0) -> list[int]:
    one = os.environ.get("RAFT_SEED")
    if one is not None:
        return [int(one)]
    return list(range(offset, offset + int(os.environ.get("RAFT_SEEDS", default))))


def seeded(ci: int, *, slow: bool = False):
    """Parametrize a test over ``ci`` seeds (``RAFT_SEEDS`` overrides the count)."""
    seeds = seed_list(ci if not slow else 200, offset=10_000 if slow else 0)

    def decorate(fn):
        @functools.wraps(fn)
        def run(*args, seed, **kwargs):
            try:
                return fn(*args, seed=seed, **kwargs)
            except Exception as exc:
                where = f"{fn.__module__}.py::{fn.__name__}"
                raise AssertionError(
                    f"{type(exc).__name__}: {exc}\n"
                    f"  seed {seed}; rerun: RAFT_SEED={seed} python -m pytest -q tests/raft/{where}"
                    + (" -m slow" if slow else "")
                ) from exc

        marked = pytest.mark.parametrize("seed", seeds)(run)
        return pytest.mark.slow(marked) if slow else marked

    return decorate
