"""Raft benchmark: three raft_server OS processes on loopback, side by side with pysyncobj.

    pip install pysyncobj        # the baseline; only for this benchmark
    python bench/bench_raft.py [--rounds 5] [--count 20000] [--window 512] [--failovers 5] [--quick]

Measured, for eco (``python -m eco.runtime.raft_server``, SQLite log with fsync per group
commit, 10 ms ticks, election timeout 10-20 ticks) and for pysyncobj (3 processes, default
in-memory journal, ``bench/pysyncobj_counter.py``), in the same run:

* pipelined commits/s: ``--count`` increments run on the leader, in process, the same way on
  both sides: ``--window`` increments in flight through completion callbacks (eco:
  ``RaftDriver.propose_nowait``, one client session per slot; pysyncobj: ``incr(callback=)``). ``--rounds`` rounds alternate eco and
  pysyncobj (each system runs alone: its processes are started for its measurement and
  stopped after it); each round gives a ratio, and the medians are reported. An extra eco group
  started with ``--no-fsync`` (not durable, like pysyncobj's default) is measured in the same
  rounds as a labelled extra row (``--skip-no-fsync`` leaves it out);
* one-at-a-time commit latency p50/p99 on the leader;
* eco only, through the TCP client protocol: pipelined increments from another process, and
  leader failover: SIGKILL the leader, time until a new leader acknowledges a write (median
  over ``--failovers`` runs).

Prints a table, then one line of JSON with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
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
RETRIES: list[str] = []  # rounds measured again after a leader change (reported in the JSON)


def _client_config() -> TransportConfig:
    return TransportConfig(Identity("eco-raft", f"bench-{os.getpid()}", 1, COOKIE), keepalive_interval=0.25,
                           connect_timeout=1.0)


async def _leader(client, group) -> str:
    """The leader, once every running node agrees on it and its term (no election in progress)."""
    with trio.fail_after(30):
        while True:
            views = []
            for node in list(group.procs):
                try:
                    views.append(await client.status(group.address(node)))
                except RaftClientError:
                    views.append(None)
            leaders = [v for v in views if v and v["is_leader"]]
            if (len(leaders) == 1 and all(v and v["leader"] == leaders[0]["id"] and v["term"] == leaders[0]["term"]
                                          for v in views)):
                return leaders[0]["id"]
            await trio.sleep(0.05)


async def _pipelined(client, group, count: int, window: int) -> float | None:
    """Commits/s of ``count`` increments by ``window`` concurrent sessions on the leader.

    A round interrupted by a leader change (a loaded machine can miss a heartbeat deadline) is
    reported on stderr and measured again, at most three times.
    """
    for _ in range(3):
        leader = await _leader(client, group)
        pipe = await client._attempt(group.address(leader), ["bench", None, [count, window, "window"], None, 0], 120)
        if pipe and "ok" in pipe:
            return pipe["ok"]["ops"] / pipe["ok"]["seconds"]
        RETRIES.append(str(pipe))
        print(f"eco pipelined round failed, measuring again: {pipe}", file=sys.stderr)
    print("eco pipelined round failed three times: left out of the medians", file=sys.stderr)
    return None


class _EcoGroup:
    """A started LocalRaftGroup with a connected client (an async context manager)."""

    def __init__(self, base: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.base, self.extra_args = base, extra_args

    async def __aenter__(self):
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        self.group = self._stack.enter_context(LocalRaftGroup(3, self.base, COOKIE, extra_args=self.extra_args))
        self.group.start_all()
        transport = await self._stack.enter_async_context(open_tcp_transport(_client_config()))
        self.client = await self._stack.enter_async_context(
            open_raft_client(transport, self.group.addresses(), client_id="bench", timeout=20))
        await _leader(self.client, self.group)
        await self.client.incr("warmup")
        return self

    async def __aexit__(self, *exc):
        return await self._stack.__aexit__(*exc)


async def _eco_details(eco: _EcoGroup, latency_n: int, client_count: int, failovers: int) -> dict:
    out: dict = {}
    client, group = eco.client, eco.group
    leader = await _leader(client, group)
    lat = await client._attempt(group.address(leader), ["bench", None, [latency_n, 1], None, 0], 120)
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
    for _ in range(failovers):
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


async def _run_all(base: Path, args: argparse.Namespace) -> dict:
    # Each system runs alone: an eco group is started for its measurement and stopped after it,
    # so no idle group of one system takes CPU from the other's round.
    rounds: list[dict] = []
    have_baseline = _pysyncobj_available()
    pso_lat: dict = {}
    for r in range(args.rounds):
        async with _EcoGroup(base / f"eco-{r}") as eco:
            row: dict = {"eco": _round(await _pipelined(eco.client, eco.group, args.count, args.window))}
        if have_baseline:
            data = None
            for attempt in range(3):  # pysyncobj can lose its leader under load too: same treatment
                try:
                    data = await trio.to_thread.run_sync(_pysyncobj_run, base / f"pso-{r}-{attempt}", args.count,
                                                         args.window, args.latency if not pso_lat else 1)
                    break
                except RuntimeError as exc:
                    RETRIES.append(f"pysyncobj: {exc}")
                    print(f"pysyncobj round failed, measuring again: {exc}", file=sys.stderr)
            row["pysyncobj"] = round(data["ops"] / data["seconds"]) if data else None
            row["ratio"] = (round(row["eco"] / row["pysyncobj"], 2)
                            if row["eco"] is not None and row["pysyncobj"] is not None else None)
            if data and not pso_lat:
                pso_lat = data
        if not args.skip_no_fsync:
            async with _EcoGroup(base / f"eco-nofsync-{r}", ("--no-fsync",)) as nofsync:
                row["eco_no_fsync"] = _round(await _pipelined(nofsync.client, nofsync.group, args.count, args.window))
        print(f"round {r + 1}: {row}", file=sys.stderr, flush=True)
        rounds.append(row)
    async with _EcoGroup(base / "eco-details") as eco:
        details = await _eco_details(eco, args.latency, args.client_count, args.failovers)
    summary: dict = {"rounds": rounds, "window": args.window, "count": args.count, "rounds_retried": RETRIES}
    def med(key: str) -> float | None:
        values = [r[key] for r in rounds if r.get(key) is not None]
        return round(statistics.median(values), 2 if key == "ratio" else None) if values else None

    summary["eco"] = {"pipelined_commits_per_s": med("eco"), **details}
    if not args.skip_no_fsync:
        summary["eco_no_fsync"] = {"pipelined_commits_per_s": med("eco_no_fsync")}
    if have_baseline:
        summary["pysyncobj"] = {"pipelined_commits_per_s": med("pysyncobj"),
                                "latency_p50_ms": round(pso_lat["p50_ms"], 3) if pso_lat else None,
                                "latency_p99_ms": round(pso_lat["p99_ms"], 3) if pso_lat else None}
        summary["throughput_ratio_median"] = med("ratio")
    return summary


def _round(value: float | None) -> int | None:
    return None if value is None else round(value)


def _pysyncobj_available() -> bool:
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        print("pysyncobj is not installed (pip install pysyncobj): skipping the baseline", file=sys.stderr)
        return False
    return True


def _pysyncobj_run(base: Path, count: int, window: int, latency_n: int) -> dict:
    """One pysyncobj round: three fresh processes; the leader measures and writes JSON."""
    base.mkdir(parents=True, exist_ok=True)
    ports = free_ports(3)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    result = base / "pysyncobj.json"
    procs = []
    try:
        for a in addrs:
            partners = [f"--partner={b}" for b in addrs if b != a]
            procs.append(subprocess.Popen(
                [sys.executable, str(HERE / "pysyncobj_counter.py"), "--self", a, *partners, "--result", str(result),
                 "--count", str(count), "--window", str(window), "--latency", str(latency_n)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 300
        while not result.exists():
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the pysyncobj benchmark did not finish")
            time.sleep(0.1)  # waiting for another process's result file
        return json.loads(result.read_text())
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="alternating eco/pysyncobj pipelined rounds (medians)")
    p.add_argument("--count", type=int, default=20000, help="pipelined increments per round and system")
    p.add_argument("--window", type=int, default=512, help="increments in flight, the same for both systems")
    p.add_argument("--latency", type=int, default=300, help="one-at-a-time increments for p50/p99")
    p.add_argument("--client-count", type=int, default=10000, help="pipelined increments through the client protocol")
    p.add_argument("--failovers", type=int, default=5)
    p.add_argument("--skip-no-fsync", action="store_true", help="leave out the extra eco --no-fsync row")
    p.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.count, args.latency, args.client_count, args.failovers = 1, 3000, 100, 2000, 2
    with tempfile.TemporaryDirectory(prefix="bench-raft-") as tmp:
        summary = trio.run(_run_all, Path(tmp), args)
    eco, base, nofsync = summary["eco"], summary.get("pysyncobj"), summary.get("eco_no_fsync")
    print(f"{'':40} {'eco':>10} {'pysyncobj':>10}")
    for key in ("pipelined_commits_per_s", "latency_p50_ms", "latency_p99_ms"):
        print(f"{key:40} {eco[key]:>10} {base[key] if base else '-':>10}")
    if nofsync:
        print(f"{'pipelined_commits_per_s (eco --no-fsync)':40} {nofsync['pipelined_commits_per_s']:>10} {'-':>10}")
    for key in ("client_pipelined_commits_per_s", "client_latency_p50_ms", "client_latency_p99_ms", "failover_ms_median"):
        print(f"{key:40} {eco[key]:>10} {'-':>10}")
    if base:
        print(f"{'throughput ratio (median of rounds)':40} {summary['throughput_ratio_median']:>10}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
