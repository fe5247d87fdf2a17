"""Recovery time: from SIGKILL of a worker node to all its workers running on other nodes.

Each run is a real ``ecoc run examples/tokens/tokens.eco --chaos kill-node:AFTER``
on loopback node processes; the launcher measures from the moment it sends
SIGKILL to the moment the coordinators' node reports every lost worker
re-spawned (its ``recovered`` event).  Prints one JSON line:

    python bench/bench_recovery.py --runs 10

Detection: the membership layer's verdict, with the example's LAN settings
(``failure_detector phi { heartbeat: 200ms, acceptable_pause: 600ms }``).  The
killed process's connections are reset by the OS at once, which makes every
survivor suspect it (it cannot refute); it is declared ``down`` when the
0.6 s suspicion expires, and only then re-spawned (docs/membership.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tokens" / "tokens.eco"


def one_run(nodes: int, after: str, limit: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="eco-bench-recovery-") as tmp:
        env = dict(os.environ, ECO_TOKENS_LIMIT=str(limit), ECO_TOKENS_BATCH="4")
        proc = subprocess.run(
            [sys.executable, "-m", "eco.compiler.cli", "run", str(EXAMPLE), "--nodes", str(nodes), "--format", "json",
             "--timeout", "120", "--state-dir", str(Path(tmp) / "state"), "--chaos", f"kill-node:{after}"],
            capture_output=True, text=True, env=env, timeout=150,
        )
    if proc.returncode != 0:
        raise SystemExit(f"run failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    doc = json.loads(proc.stdout)
    return {**doc["chaos"], "job_elapsed": doc["ecosystems"]["tokens"]["elapsed"]}


def detector() -> str:
    """The example's failure detector settings, as the plan has them."""
    text = EXAMPLE.read_text()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("failure_detector")), None)
    return line or "phi (defaults)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--after", default="1s")
    parser.add_argument("--limit", type=int, default=1000, help="files per run (the job must outlast AFTER)")
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        chaos = one_run(args.nodes, args.after, args.limit)
        if chaos.get("recovery_seconds") is None:
            raise SystemExit(f"no recovery measured: {chaos}")
        times.append(chaos["recovery_seconds"])
        print(json.dumps(chaos), file=sys.stderr)
    print(json.dumps({
        "bench": "recovery", "runs": len(times), "nodes": args.nodes, "detector": detector(),
        "median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4),
        "min_s": round(min(times), 4), "target_median_s": 1.5,
    }))


if __name__ == "__main__":
    main()
