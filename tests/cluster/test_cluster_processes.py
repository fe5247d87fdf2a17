"""Membership with real node OS processes on loopback: `ecoc node --join`, SIGKILL, restart, `ecoc status`.

LAN settings (phi accrual, heartbeat 200 ms, acceptable pause 600 ms).  Every
wait polls an observable condition with a deadline; every process is killed
in a ``finally``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from process_helpers import kill_group

from eco.plan import Cluster, NodeSpec, Plan, Secret, Security, save_plan
from eco.plan.models import PhiDetector
from eco.runtime.launcher import free_ports
from eco.runtime.node_status import StatusError, fetch_status
from eco.runtime.secrets import Cookie

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

DETECTION_BOUND = 5.0  # SIGKILL -> every survivor reports "down" (measured: about 2 s)
LEAVE_BOUND = 0.5  # SIGTERM -> every peer reports "left" (no timeout involved)


class ProcCluster:
    def __init__(self, tmp_path: Path, n: int) -> None:
        self.dir = tmp_path
        self.cookie = secrets.token_hex(32)
        ports = free_ports(n)
        nodes = tuple(NodeSpec(name=f"n{i + 1}", host="127.0.0.1", port=p, zone=f"z{i % 2}", labels={"tier": "t"})
                      for i, p in enumerate(ports))
        cluster = Cluster(name="mp", nodes=nodes, seeds=("n1",), failure_detector=PhiDetector(heartbeat=0.2, acceptable_pause=0.6),
                          security=Security(cookie=Secret(source="env", name="ECO_COOKIE")))
        self.plan_path = tmp_path / "plan.json"
        save_plan(Plan(clusters=(cluster,)), self.plan_path)
        self.address = {n.name: n.address for n in nodes}
        self.procs: dict[str, subprocess.Popen] = {}

    def env(self) -> dict[str, str]:
        return {**os.environ, "ECO_COOKIE": self.cookie, "PYTHONUNBUFFERED": "1"}

    def start(self, name: str) -> None:
        cmd = [sys.executable, "-m", "eco.runtime.node_main", "--plan", str(self.plan_path), "--name", name,
               "--exit-on-stdin-eof", "--log-level", "info"]
        if name != "n1":
            cmd += ["--join", self.address["n1"]]
        log = open(self.dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log,
                                            env=self.env(), start_new_session=True)
        log.close()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        kill_group(self.procs[name], sig)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            kill_group(proc)

    def status(self, name: str) -> dict | None:
        try:
            return trio.run(lambda: fetch_status(self.address[name], Cookie(self.cookie), cluster="mp", timeout=2.0))
        except StatusError:
            return None

    def view(self, observer: str) -> dict[str, tuple[str, int]]:
        status = self.status(observer)
        return {} if status is None else {m["name"]: (m["state"], m["incarnation"]) for m in status["members"]}

    def wait(self, predicate, within: float, what: str) -> float:
        """Poll ``predicate()`` until true; returns when it became true (monotonic)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if predicate():
                return time.monotonic()
            time.sleep(0.02)  # polling interval of an observable condition, not a synchronisation sleep
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.dir.glob("n*.log")))
        raise AssertionError(f"timed out after {within}s waiting for {what}\n{logs}")

    def ecoc(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "eco.compiler.cli", *args], capture_output=True, text=True,
                              env=env or self.env(), timeout=30)


def test_four_processes_detect_a_sigkill_and_see_the_restart_as_a_new_incarnation(tmp_path):
    c = ProcCluster(tmp_path, 4)
    names = ["n1", "n2", "n3", "n4"]
    try:
        for name in names:
            c.start(name)
        all_up = lambda obs: (v := c.view(obs)) and all(v.get(n, ("?",))[0] == "up" for n in names)
        c.wait(lambda: all(all_up(o) for o in names), 30, "all four nodes to see each other up")
        old_incarnation = c.view("n1")["n3"][1]

        killed = time.monotonic()
        c.kill("n3")
        survivors = ["n1", "n2", "n4"]
        detected = {}
        for obs in survivors:
            detected[obs] = c.wait(lambda: c.view(obs).get("n3", ("?",))[0] == "down", DETECTION_BOUND + 5,
                                   f"{obs} to report n3 down") - killed
        print(f"\nSIGKILL -> down (heartbeat 200ms): " + ", ".join(f"{o} {t:.2f}s" for o, t in detected.items()))
        assert max(detected.values()) <= DETECTION_BOUND, detected

        c.start("n3")
        c.wait(lambda: all(c.view(o).get("n3", ("?", 0)) [0] == "up" and c.view(o)["n3"][1] > old_incarnation
                           for o in names), 30, "n3 to rejoin with a new incarnation")

        # `ecoc status` (json) shows it all: members with labels, and the history.
        done = c.ecoc("status", "--node", c.address["n2"], "--format", "json")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        members = {m["name"]: m for m in doc["members"]}
        assert sorted(members) == names and all(m["state"] == "up" for m in members.values())
        assert members["n3"]["incarnation"] > old_incarnation
        assert members["n4"]["labels"] == {"zone": "z1", "tier": "t"} and members["n4"]["address"] == c.address["n4"]
        kinds = [(e["event"], e.get("node")) for e in doc["events"]]
        assert ("member_down", "n3") in kinds and kinds.index(("member_down", "n3")) < len(kinds) - 1
        assert doc["cluster"] == "mp" and doc["topology"] == "full_mesh" and doc["failure_detector"] == "phi"

        human = c.ecoc("status", "--node", c.address["n1"])
        assert human.returncode == 0 and "members:" in human.stdout and "n3" in human.stdout

        # Graceful stop: peers see "left" at once, never "down".
        stopped = time.monotonic()
        c.kill("n4", signal.SIGTERM)
        for obs in ["n1", "n2", "n3"]:
            at = c.wait(lambda: c.view(obs).get("n4", ("?",))[0] == "left", 10, f"{obs} to see n4 leave")
            assert at - stopped <= LEAVE_BOUND + 1.0  # (+ the polling round trips of this test)
    finally:
        c.stop_all()


def test_ecoc_status_errors_are_clear(tmp_path):
    c = ProcCluster(tmp_path, 1)
    try:
        c.start("n1")
        c.wait(lambda: c.status("n1") is not None, 20, "n1 to answer")
        # Without --cluster the handshake learns the name: no refused attempt, no warning on the node.
        plain = c.ecoc("status", "--node", c.address["n1"], "--format", "json")
        assert plain.returncode == 0 and json.loads(plain.stdout)["cluster"] == "mp", plain.stderr
        assert " WARNING " not in (tmp_path / "n1.log").read_text()
        wrong = c.ecoc("status", "--node", c.address["n1"], env={**c.env(), "ECO_COOKIE": "x" * 40})
        assert wrong.returncode == 4 and "refused the cookie" in wrong.stderr and "Traceback" not in wrong.stderr
        c.kill("n1")
        gone = c.ecoc("status", "--node", c.address["n1"], "--timeout", "2")
        assert gone.returncode == 1 and "cannot reach" in gone.stderr and "Traceback" not in gone.stderr
        bad = c.ecoc("status", "--node", "nowhere")
        assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
        env = {k: v for k, v in c.env().items() if k != "ECO_COOKIE"}
        nocookie = c.ecoc("status", "--node", c.address["n1"], env=env)
        assert nocookie.returncode == 2 and "cookie" in nocookie.stderr
    finally:
        c.stop_all()
