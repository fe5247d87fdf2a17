"""Self-healing with real node OS processes: SIGKILL a worker node mid-run, the job still finishes exactly.

Bounded in time (pytest timeout plus subprocess timeouts); every process the run
started is killed in a ``finally`` and "no orphans" is checked at the end.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from test_run_tokens import _kill_all, _processes_mentioning, _start, _wait_for_line, _wait_gone, tokencount

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(150)]

RECOVERY_BOUND = 5.0  # seconds from SIGKILL to every lost worker running elsewhere (loopback; typically < 0.2)


def test_chaos_kill_node_restart_completes_exactly_and_the_node_rejoins(tmp_path):
    state = str(tmp_path / "state")
    proc = _start(tmp_path, "--nodes", "4", "--format", "json", "--timeout", "120", "--chaos", "kill-node:1s:restart",
                  ECO_TOKENS_LIMIT="600", ECO_TOKENS_BATCH="4", ECO_TOKENS_VERIFY="1")
    try:
        out, err = proc.communicate(timeout=130)
    finally:
        _kill_all(state)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    chaos = doc["chaos"]
    assert chaos["node"] in ("n2", "n3", "n4"), chaos  # never n1, which hosts the coordinator
    assert chaos["workers_moved"] >= 1
    assert chaos["recovery_seconds"] is not None and chaos["recovery_seconds"] < RECOVERY_BOUND, chaos
    assert chaos["restarted"] is True and chaos["rejoined_seconds"] is not None, chaos
    result = doc["ecosystems"]["tokens"]["result"]
    expected = tokencount.reference(limit=600)
    assert {k: result[k] for k in expected} == expected
    assert result["exact"] is True
    assert sum(result["per_node"].values()) == 600  # every file merged exactly once
    assert "Traceback" not in out + err
    assert _wait_gone(state) == []


def test_a_worker_node_killed_from_outside_is_healed(tmp_path):
    state = str(tmp_path / "state")
    proc = _start(tmp_path, "--nodes", "3", "--timeout", "120", ECO_TOKENS_LIMIT="400", ECO_TOKENS_BATCH="4")
    try:
        _wait_for_line(proc, "tokens: 0/")
        victims = [p for p in _processes_mentioning(state)
                   if "--name n3" in Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()]
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        _kill_all(state)
    assert proc.returncode == 0, err
    assert "node n3" in err and "died unexpectedly: killed by SIGKILL" in err and "re-spawned" in err
    expected = tokencount.reference(limit=400)
    assert expected["digest"] in out and "ecosystem tokens: complete" in out
    assert "Traceback" not in out + err
    assert _wait_gone(state) == []
