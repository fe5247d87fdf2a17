"""Raft benchmark: three raft_server OS processes on loopback, side by side with pysyncobj.

    pip install pysyncobj        # the baseline; only for this benchmark
    python bench/bench_raft.py [--count 20000] [--failovers 5] [--quick]

Measured, for eco (``python -m eco.runtime.raft_server``, SQLite log with fsync per group
commit, 10 ms ticks, election timeout 10-20 ticks) and for pysyncobj (3 processes, default
in-memory journal, ``bench/pysyncobj_counter.py``), in the same run:

* pipelined commits/s: ``--count`` increments run on the leader, many in flight (eco: 256
  concurrent sessions; pysyncobj: a window of 1000 callbacks);
* one-at-a-time commit latency p50/p99 on the leader;
* eco only, through the TCP client protocol: pipelined increments from another process, and
  leader failover: SIGKILL the leader, time until a new leader acknowledges a write (median
  over ``--failovers`` runs).

Prints a table, then one line of JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from eco.runtime.handshake import Identity
from eco.runtime.raft_client import RaftClientError, open_raft_client
from eco.runtime.raft_local import LocalRaftGroup, free_ports
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import open_tcp_transport
from eco.runtime.transport import TransportConfig

HERE = Path(__file__).resolve().parent
COOKIE = Cookie.generate()


def _client_config() -> TransportConfig:
    return TransportConfig(Identity("eco-raft", f"bench-{os.getpid()}", 1, COOKIE), keepalive_interval=0.25,
                           connect_timeout=1.0)


async def _leader(client, group) -> str:
    with trio.fail_after(20):
        while True:
            for node in list(group.procs):
                try:
                    if (await client.status(group.address(node)))["is_leader"]:
                        return node
                except RaftClientError:
                    pass
            await trio.sleep(0.01)


async def _eco_run(base: Path, count: int, latency_n: int, client_count: int, failovers: int) -> dict:
    out: dict = {}
    with LocalRaftGroup(3, base, COOKIE) as group:
        group.start_all()
        async with open_tcp_transport(_client_config()) as transport:
            async with open_raft_client(transport, group.addresses(), client_id="bench", timeout=20) as client:
                leader = await _leader(client, group)
                await client.incr("warmup")
                addr = group.address(leader)
                pipe = await client._attempt(addr, ["bench", None, [count, 256], None, 0], 120)
                out["pipelined_commits_per_s"] = round(pipe["ok"]["ops"] / pipe["ok"]["seconds"])
                lat = await client._attempt(addr, ["bench", None, [latency_n, 1], None, 0], 120)
                out["latency_p50_ms"] = round(lat["ok"]["p50_ms"], 3)
                out["latency_p99_ms"] = round(lat["ok"]["p99_ms"], 3)

                # Through the client protocol, from this process.
                done = 0

                async def worker() -> None:
                    nonlocal done
                    while done < client_count:
                        done += 1
                        await client.incr("client-bench")

                t0 = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for _ in range(128):
                        nursery.start_soon(worker)
                out["client_pipelined_commits_per_s"] = round(done / (time.perf_counter() - t0))
                lats = []
                for _ in range(latency_n):
                    t = time.perf_counter()
                    await client.incr("client-latency")
                    lats.append(time.perf_counter() - t)
                lats.sort()
                out["client_latency_p50_ms"] = round(lats[len(lats) // 2] * 1000, 3)
                out["client_latency_p99_ms"] = round(lats[int(len(lats) * 0.99) - 1] * 1000, 3)

                # Failover: SIGKILL the leader, time until a new leader acknowledges a write.
                times = []
                for run in range(failovers):
                    leader = await _leader(client, group)
                    await client.incr("failover")
                    t_kill = time.perf_counter()
                    group.kill(leader)
                    await client.incr("failover")
                    times.append(time.perf_counter() - t_kill)
                    group.start(leader)
                    # Let the restarted node catch up before the next kill (a majority must remain).
                    with trio.fail_after(20):
                        while True:
                            st = await client.status(group.address(leader))
                            if st["leader"] is not None and st["applied"] > 0:
                                break
                            await trio.sleep(0.02)
                out["failover_ms_median"] = round(statistics.median(times) * 1000, 1) if times else None
                out["failover_ms_all"] = [round(t * 1000, 1) for t in times]
    return out


def _pysyncobj_run(base: Path, count: int, latency_n: int) -> dict | None:
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        print("pysyncobj is not installed (pip install pysyncobj): skipping the baseline", file=sys.stderr)
        return None
    ports = free_ports(3)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    result = base / "pysyncobj.json"
    procs = []
    try:
        for a in addrs:
            partners = [f"--partner={b}" for b in addrs if b != a]
            procs.append(subprocess.Popen(
                [sys.executable, str(HERE / "pysyncobj_counter.py"), "--self", a, *partners, "--result", str(result),
                 "--count", str(count), "--latency", str(latency_n)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 300
        while not result.exists():
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the pysyncobj benchmark did not finish")
            time.sleep(0.1)  # waiting for another process's result file
        data = json.loads(result.read_text())
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    return {"pipelined_commits_per_s": round(data["ops"] / data["seconds"]),
            "latency_p50_ms": round(data["p50_ms"], 3), "latency_p99_ms": round(data["p99_ms"], 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=20000, help="pipelined increments per system")
    p.add_argument("--latency", type=int, default=300, help="one-at-a-time increments for p50/p99")
    p.add_argument("--client-count", type=int, default=10000, help="pipelined increments through the client protocol")
    p.add_argument("--failovers", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    args = p.parse_args()
    if args.quick:
        args.count, args.latency, args.client_count, args.failovers = 3000, 100, 2000, 2
    with tempfile.TemporaryDirectory(prefix="bench-raft-") as tmp:
        eco = trio.run(_eco_run, Path(tmp) / "eco", args.count, args.latency, args.client_count, args.failovers)
        base = _pysyncobj_run(Path(tmp), args.count, args.latency)
    print(f"{'':34} {'eco':>10} {'pysyncobj':>10}")
    for key in ("pipelined_commits_per_s", "latency_p50_ms", "latency_p99_ms"):
        print(f"{key:34} {eco[key]:>10} {base[key] if base else '-':>10}")
    for key in ("client_pipelined_commits_per_s", "client_latency_p50_ms", "client_latency_p99_ms", "failover_ms_median"):
        print(f"{key:34} {eco[key]:>10} {'-':>10}")
    summary = {"eco": eco, "pysyncobj": base}
    if base:
        summary["throughput_ratio"] = round(eco["pipelined_commits_per_s"] / base["pipelined_commits_per_s"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
