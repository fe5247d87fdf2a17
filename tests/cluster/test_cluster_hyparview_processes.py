"""``ecoc run`` on a ``topology hyparview`` cluster: five node processes started together, active view 2.

The membership driver owns every link (no ``--join`` links kept): the nodes
join the overlay through contacts that may still be starting, the ecosystem's
spawn requests open links on demand, and the links carrying monitors stay
open, so the job's result is exact and no worker is lost to a swept link.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from process_helpers import run_bounded

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tokens"

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]

sys.path.insert(0, str(EXAMPLE))
import tokencount  # noqa: E402


def test_ecoc_run_on_a_hyparview_overlay_gives_the_exact_result(tmp_path):
    source = (EXAMPLE / "tokens.eco").read_text()
    assert "topology full_mesh" in source
    (tmp_path / "tokens.eco").write_text(source.replace("topology full_mesh", "topology hyparview { active: 2, passive: 4 }"))
    for name in ("tokens.py", "tokencount.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    state = tmp_path / "state"
    env = {**os.environ, "ECO_TOKENS_LIMIT": "200"}
    done = run_bounded([sys.executable, "-m", "eco.compiler.cli", "run", str(tmp_path / "tokens.eco"), "--nodes", "5",
                        "--format", "json", "--timeout", "60", "--state-dir", str(state)], timeout=100, env=env)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, out + err + "".join(p.read_text()[-2000:] for p in sorted(state.glob("n*.log")))
    doc = json.loads(out)
    result = doc["ecosystems"]["tokens"]["result"]
    expected = tokencount.reference(limit=200)
    assert {k: result[k] for k in expected} == expected
    assert sorted(result["per_node"]) == ["n1", "n2", "n3", "n4", "n5"]  # every node worked, neighbour or not
    assert sum(result["per_node"].values()) == 200
    plan = json.loads((state / "plan.json").read_text())
    assert plan["clusters"][0]["topology"]["kind"] == "hyparview"
    for log in sorted(state.glob("n*.log")):  # no worker lost to a closed link, no refused handshake
        text = log.read_text()
        assert "noconnection" not in text and "handshake" not in text and "did not settle" not in text, (log.name, text[-2000:])
