"""Pure pieces of coordinator failover: the --chaos kill-coordinator option and checkpoint URL resolution."""

from __future__ import annotations

import pytest

from eco.runtime.chaos import ChaosPlan, parse_chaos
from eco.runtime.ecosystem_leader import DATA_DIR_ENV, generation_base, resolve_checkpoint_url, term_of_generation


def test_kill_coordinator_parses_with_and_without_delay():
    assert parse_chaos("kill-coordinator") == ChaosPlan("kill-coordinator", 1.0, False)
    assert parse_chaos("kill-coordinator:500ms") == ChaosPlan("kill-coordinator", 0.5, False)
    assert parse_chaos("kill-node:2s:restart") == ChaosPlan("kill-node", 2.0, True)


@pytest.mark.parametrize("text, message", [
    ("kill-coordinator:1s:restart", "expected kill-coordinator[:AFTER]"),
    ("kill-leader", "supported: kill-node[:AFTER[:restart]], kill-coordinator[:AFTER]"),
    ("kill-coordinator:soon", "is not a duration"),
])
def test_bad_chaos_values_are_explained(text, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_chaos(text)


def test_relative_checkpoint_urls_resolve_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert resolve_checkpoint_url("sqlite://ck/x.db") == f"sqlite://{tmp_path.resolve()}/ck/x.db"
    assert resolve_checkpoint_url("file://ck") == f"file://{tmp_path.resolve()}/ck"
    assert resolve_checkpoint_url("sqlite:///abs/x.db") == "sqlite:///abs/x.db"  # absolute: untouched
    monkeypatch.delenv(DATA_DIR_ENV)
    assert resolve_checkpoint_url("sqlite://ck/x.db") == "sqlite://ck/x.db"  # the working directory


def test_generations_of_a_newer_term_are_above_every_older_terms():
    assert term_of_generation(generation_base(3) + 999) == 3
    assert generation_base(4) > generation_base(3) + 10_000
