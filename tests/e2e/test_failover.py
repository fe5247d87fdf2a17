"""`leader: consensus` with real node OS processes: SIGKILL the active coordinator's node mid-run.

Three nodes run examples/tokens_ha; ``--chaos kill-coordinator`` kills the node that was
elected to host the coordinator.  Another node must be elected and take over within a
bounded time, the result must equal the single-process reference, and every batch the
first coordinator merged must survive (it is resumed from the replicated state, not lost).
Bounded in time; every process is killed in a ``finally`` and "no orphans" is checked.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from test_run_tokens import ECOC, _env, _kill_all, _wait_gone, tokencount

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(150)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tokens_ha" / "tokens_ha.eco"
FAILOVER_BOUND = 1.5  # s from SIGKILL to a new active coordinator (LAN settings: typically 0.1-0.3 s)
TAKEOVER_BOUND = 5.0  # s from SIGKILL to the new coordinator's workers running
LIMIT, BATCH = 600, 4


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([*ECOC, "run", str(EXAMPLE), "--state-dir", str(tmp_path / "state"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(**env), text=True,
                            start_new_session=True)


def test_kill_coordinator_node_new_coordinator_takes_over_exactly(tmp_path):
    state = str(tmp_path / "state")
    proc = _run(tmp_path, "--nodes", "3", "--format", "json", "--timeout", "120", "--chaos", "kill-coordinator:1s",
                ECO_TOKENS_LIMIT=str(LIMIT), ECO_TOKENS_BATCH=str(BATCH), ECO_TOKENS_VERIFY="1")
    try:
        out, err = proc.communicate(timeout=130)
    finally:
        proc.kill()
        _kill_all(state)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    chaos = doc["chaos"]
    assert chaos["action"] == "kill-coordinator" and chaos["node"] in ("n1", "n2", "n3"), chaos
    assert chaos["new_coordinator_node"] not in (None, chaos["node"]), chaos
    assert chaos["term"] >= 2, chaos
    assert chaos["failover_seconds"] is not None and chaos["failover_seconds"] < FAILOVER_BOUND, chaos
    assert chaos["takeover_seconds"] is not None and chaos["failover_seconds"] <= chaos["takeover_seconds"] < TAKEOVER_BOUND
    result = doc["ecosystems"]["tokens"]["result"]
    expected = tokencount.reference(limit=LIMIT)
    assert {k: result[k] for k in expected} == expected
    assert result["exact"] is True
    # Killed mid-run: some batches were merged by the first coordinator and resumed, not recounted.
    assert 1 <= result["resumed"] < LIMIT // BATCH, result
    assert sum(result["per_node"].values()) == LIMIT  # every file merged exactly once
    assert "Traceback" not in out + err
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "state").glob("n*.log"))
    assert "Traceback" not in logs
    assert _wait_gone(state) == []


def test_kill_coordinator_needs_a_consensus_ecosystem(tmp_path):
    plain = EXAMPLE.parents[1] / "tokens" / "tokens.eco"
    proc = subprocess.run([*ECOC, "run", str(plain), "--nodes", "3", "--chaos", "kill-coordinator"],
                          capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 2
    assert "kill-coordinator needs an ecosystem with `state { leader: consensus }`" in proc.stderr
    few = subprocess.run([*ECOC, "run", str(EXAMPLE), "--nodes", "2", "--chaos", "kill-coordinator:1s"],
                         capture_output=True, text=True, timeout=60, env=_env())
    assert few.returncode == 2 and "at least 3 nodes" in few.stderr
    assert "Traceback" not in proc.stderr + few.stderr
