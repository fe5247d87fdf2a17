"""Coordinator failover: SIGKILL of the active coordinator's node -> a new coordinator active.

Each run is a real ``ecoc run examples/tokens_ha/tokens_ha.eco --chaos
kill-coordinator:AFTER`` on loopback node processes (``leader: consensus``, LAN Raft
settings: 10 ms ticks, 100-200 ms election timeouts).  The launcher measures, on its
clock, from sending SIGKILL to another node's ``elected`` event (failover: the new
coordinator runs with the replicated state) and to its ``started`` event (takeover:
its workers run).  Every run must finish with the exact result.  Prints one JSON line:

    python bench/bench_failover.py --runs 5
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
EXAMPLE = ROOT / "examples" / "tokens_ha" / "tokens_ha.eco"


def one_run(nodes: int, after: str, limit: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="eco-bench-failover-") as tmp:
        env = dict(os.environ, ECO_TOKENS_LIMIT=str(limit), ECO_TOKENS_BATCH="4", ECO_TOKENS_VERIFY="1")
        proc = subprocess.run(
            [sys.executable, "-m", "eco.compiler.cli", "run", str(EXAMPLE), "--nodes", str(nodes), "--format", "json",
             "--timeout", "120", "--state-dir", str(Path(tmp) / "state"), "--chaos", f"kill-coordinator:{after}"],
            capture_output=True, text=True, env=env, timeout=150,
        )
    if proc.returncode != 0:
        raise SystemExit(f"run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    doc = json.loads(proc.stdout)
    if doc["ecosystems"]["tokens"]["result"].get("exact") is not True:
        raise SystemExit(f"inexact result after a failover: {doc}")
    return doc["chaos"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--after", default="1s")
    parser.add_argument("--limit", type=int, default=400, help="files per run (the job must outlast AFTER)")
    args = parser.parse_args()
    failover, takeover = [], []
    for _ in range(args.runs):
        chaos = one_run(args.nodes, args.after, args.limit)
        if chaos.get("failover_seconds") is None:
            print(f"skipped a run: {chaos}", file=sys.stderr)
            continue
        failover.append(chaos["failover_seconds"] * 1000)
        takeover.append(chaos["takeover_seconds"] * 1000)
    if not failover:
        raise SystemExit("no run measured a failover (is the job shorter than --after?)")
    print(json.dumps({
        "nodes": args.nodes, "runs": len(failover),
        "failover_ms_median": round(statistics.median(failover), 1), "failover_ms_max": round(max(failover), 1),
        "takeover_ms_median": round(statistics.median(takeover), 1), "takeover_ms_max": round(max(takeover), 1),
        "failover_ms": [round(t, 1) for t in failover],
    }))


if __name__ == "__main__":
    main()
