"""The check path stays linear on large, error-heavy files without changing what it reports."""

from __future__ import annotations

import gc

import pytest

from eco.compiler import resolve
from eco.compiler.driver import compile_source
from eco.language.parser import gc_paused


def _units(n: int, ref: str) -> str:
    eco = "ecosystem e{i} {{\n  coordinator: app:C\n  workers: app:W x 1\n  channels {{ data: %s }}\n}}\n" % ref
    return "".join(f"channel jobs{i} {{}}\n" + eco.format(i=i) for i in range(n))


def test_repeated_unknown_names_get_the_same_suggestion():
    result = compile_source(_units(30, "jbos{i}"), "t.eco")
    unknown = [d for d in result.diagnostics if d.code == "ECO1003"]
    assert len(unknown) == 30
    assert all(d.help == f"did you mean `jobs{d.span.text[4:]}`?" for d in unknown)


def test_fuzzy_suggestions_stop_at_the_budget_but_exact_case_matches_remain(monkeypatch):
    monkeypatch.setattr(resolve, "_SUGGEST_BUDGET", 0)
    fuzzy = compile_source(_units(3, "jbos{i}"), "t.eco")
    assert all(d.help is None for d in fuzzy.diagnostics if d.code == "ECO1003")
    # Without a guess the note lists the names that are visible (computed once, same text each time).
    notes = {tuple(d.notes) for d in fuzzy.diagnostics if d.code == "ECO1003"}
    assert notes == {("known channels here: `jobs0`, `jobs1`, `jobs2`",)}
    exact = compile_source(_units(3, "JOBS{i}"), "t.eco")
    helps = sorted(d.help for d in exact.diagnostics if d.code == "ECO1003")
    assert helps == ["did you mean `jobs0`?", "did you mean `jobs1`?", "did you mean `jobs2`?"]


def test_gc_paused_restores_the_collector_and_leaves_frozen_objects_alone():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            [[i] for i in range(1000)]
        assert gc.get_freeze_count() == frozen  # the caller's frozen objects stay frozen
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("enabled", [True, False])
def test_compile_keeps_the_callers_gc_setting(enabled):
    if not enabled:
        gc.disable()
    try:
        compile_source(_units(2, "jobs{i}"), "t.eco")
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
