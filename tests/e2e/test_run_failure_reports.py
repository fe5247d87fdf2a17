"""A failing ``ecoc run --format json`` says why on stderr too, and a timeout says what it waited for.

CI logs often show only stderr (stdout goes to a parser or a file), and node logs may be empty
(nothing went wrong on any node: the run was still waiting).  One node per run, bounded in time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from process_helpers import run_bounded

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

COMPONENTS = '''
from eco.runtime.component import Coordinator, Worker


class Idle(Worker):
    async def handle(self, msg):
        pass


class GivesUp(Coordinator):
    async def init(self, ctx):
        self.fail("the input is empty")


class NeverDone(Coordinator):
    async def init(self, ctx):
        self.progress(1, 3, "steps")
'''

SOURCE = '''
cluster local {{
  nodes {{ n1 at "127.0.0.1:7301" }}
  topology full_mesh
  security {{ cookie: env("ECO_COOKIE") }}
}}

ecosystem job {{
  coordinator: jobparts:{coordinator}
  workers: jobparts:Idle x 1
  supervision {{ strategy: one_for_one, max_restarts: 3 within 5s }}
}}
'''


def _run(tmp_path: Path, coordinator: str, *args: str) -> tuple[int, str, str]:
    (tmp_path / "jobparts.py").write_text(COMPONENTS)
    (tmp_path / "job.eco").write_text(SOURCE.format(coordinator=coordinator))
    done = run_bounded([sys.executable, "-m", "eco.compiler.cli", "run", str(tmp_path / "job.eco"), "--nodes", "1",
                        "--format", "json", "--state-dir", str(tmp_path / "state"), *args], timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_a_failed_job_in_json_mode_prints_its_reason_on_stderr(tmp_path):
    code, out, err = _run(tmp_path, "GivesUp", "--timeout", "45")
    assert code == 1, out + err
    doc = json.loads(out)
    assert doc["status"] == "failed" and doc["ecosystems"]["job"]["reason"] == "the input is empty"
    assert "error: ecosystem job failed: the input is empty" in err
    assert "node logs and the plan are kept in" in err
    assert "Traceback" not in out + err


def test_a_timeout_says_what_the_run_was_waiting_for(tmp_path):
    code, out, err = _run(tmp_path, "NeverDone", "--timeout", "4")
    assert code == 1, out + err
    doc = json.loads(out)
    assert doc["error"].startswith("timed out after 4s: ecosystem job still running (1/3 steps)"), doc["error"]
    assert f"error: {doc['error']}" in err
    assert "Traceback" not in out + err
