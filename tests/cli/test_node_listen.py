"""``ecoc node`` whose listen address is taken: one clear line and exit 1, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from eco.plan import Cluster, NodeSpec, Plan, save_plan

pytestmark = pytest.mark.timeout(60)


def test_a_taken_listen_address_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        plan = tmp_path / "plan.json"
        save_plan(Plan(clusters=(Cluster(name="c", nodes=(NodeSpec(name="n1", host="127.0.0.1", port=port),)),)), plan)
        run = subprocess.run([sys.executable, "-m", "eco.runtime.node_main", "--plan", str(plan), "--name", "n1"],
                             capture_output=True, text=True, timeout=30, env={**os.environ, "ECO_COOKIE": "k" * 40})
    assert run.returncode == 1, run.stderr
    assert "cannot listen on 127.0.0.1" in run.stderr and "Traceback" not in run.stderr
