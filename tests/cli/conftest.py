"""Fixtures for the `ecoc` command-line tests."""

from __future__ import annotations

import pytest
from ecoc_helpers import Run


@pytest.fixture
def ecoc(capsys, monkeypatch, tmp_path):
    """Run `ecoc` in process, in ``tmp_path``; returns a Run."""
    from eco.compiler import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ECO_DEBUG", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)

    def run(*args: str) -> Run:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run
