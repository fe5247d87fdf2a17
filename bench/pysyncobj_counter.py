"""A pysyncobj counter node for bench_raft.py (the comparison baseline; needs ``pip install pysyncobj``).

    python bench/pysyncobj_counter.py --self 127.0.0.1:9001 --partner 127.0.0.1:9002 \\
        --partner 127.0.0.1:9003 --result OUT.json --count 20000 --window 1000 --latency 300

Every node serves the replicated counter; the node that becomes leader runs the benchmark in
process (the same shape as bench_raft.py's in-process run on our leader): ``--count``
increments with at most ``--window`` in flight (pipelined), then ``--latency`` increments one at
a time, and writes the figures as JSON to ``--result``. It then keeps serving until killed.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from pysyncobj import SyncObj, SyncObjConf, replicated


class Counter(SyncObj):
    def __init__(self, self_address: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(self_address, partners, conf)
        self.value = 0

    @replicated
    def incr(self) -> int:
        self.value += 1
        return self.value


def _pipelined(counter: Counter, count: int, window: int) -> float:
    cond = threading.Condition()
    state = {"inflight": 0, "done": 0, "errors": 0}

    def on_done(result, error) -> None:
        with cond:
            state["inflight"] -= 1
            state["done"] += 1
            if error:
                state["errors"] += 1
            cond.notify()

    start = time.perf_counter()
    for _ in range(count):
        with cond:
            while state["inflight"] >= window:
                cond.wait()
            state["inflight"] += 1
        counter.incr(callback=on_done)
    with cond:
        while state["done"] < count:
            cond.wait()
    elapsed = time.perf_counter() - start
    if state["errors"]:
        raise RuntimeError(f"{state['errors']} increments failed")
    return elapsed


def _latencies(counter: Counter, count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        counter.incr(sync=True, timeout=5)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--self", dest="me", required=True)
    p.add_argument("--partner", action="append", default=[])
    p.add_argument("--result", required=True)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--latency", type=int, default=300)
    args = p.parse_args()
    conf = SyncObjConf(appendEntriesUseBatch=True, raftMinTimeout=0.4, raftMaxTimeout=1.4)
    counter = Counter(args.me, args.partner, conf)
    while not counter.isReady() or counter._getLeader() is None:
        time.sleep(0.01)
    if counter._isLeader():
        counter.incr(sync=True, timeout=10)  # warm up: the leader's first commit
        elapsed = _pipelined(counter, args.count, args.window)
        lat = sorted(_latencies(counter, args.latency))
        with open(args.result + ".tmp", "w") as f:
            json.dump({"ops": args.count, "seconds": elapsed, "p50_ms": lat[len(lat) // 2] * 1000,
                       "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000}, f)
        import os
        os.replace(args.result + ".tmp", args.result)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
