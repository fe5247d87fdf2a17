"""Membership benchmark (simulated): convergence time and message load at 100 / 1,000 / 10,000 nodes.

Run:  /work/venv/bin/python bench/bench_membership.py [--sizes 100,1000,10000] [--seed 1]

Everything runs on :class:`eco.runtime.membership_sim.SimNet` (simulated time,
latency 1-10 ms, no loss), so the figures are simulated seconds and message
counts, independent of the machine. Per size:

* HyParView + Plumtree: :class:`eco.runtime.overlay.OverlayMembership`, the core
  real nodes run (plan defaults: active 5, passive 30, shuffle 10 s, phi
  heartbeat 1 s), without member lists (``track_members=False``: 10,000 full
  member lists do not fit in one process): ``overlay_s`` -- from the last join
  until every view invariant holds and the overlay is connected; ``event_s`` --
  time for a membership event broadcast to reach every node (mean over 5
  events); ``msgs_node_s`` -- messages sent per node per simulated second in
  steady state with one membership event per second, of which
  ``heartbeats_node_s`` are the phi heartbeats on the active links.
* SWIM (plan defaults: probe 1 s, k = 3, suspicion 5 s), up to 1,000 nodes
  (every node holds the full member list, which for 10,000 simulated nodes in
  one process would be 10^8 records): ``join_s`` -- until every node knows every
  node; ``detect_s`` -- from a crash until every node has it down;
  ``msgs_node_s`` -- steady state.

The last line is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from eco.plan.models import HyParViewTopology, SwimDetector
from eco.runtime.membership import MemberState
from eco.runtime.broadcast import Deliver
from eco.runtime.membership_sim import SimNet, build_overlay, delivered, overlay_problems
from eco.runtime.swim import SwimNode


def bench_overlay(n: int, seed: int) -> dict:
    net = SimNet(seed, fifo=True)
    net.record_effects = lambda e: type(e) is Deliver
    spacing = min(0.02, 50.0 / n)
    names = build_overlay(net, n, HyParViewTopology(), join_spacing=spacing, track_members=False)
    joined = net.now
    # Membership events keep flowing while the overlay settles, one per second as in the
    # steady-state phase below (split probes carry one as evidence; see eco.runtime.overlay).
    done = None
    while net.now - joined < 300:
        if not overlay_problems(net):
            done = net.now
            break
        net.call(net.rng.choice(names), "broadcast", ("member-event",))
        net.run_for(1.0)
    overlay_s = None if done is None else done - joined
    latencies = []
    for _ in range(5):
        src = net.rng.choice(names)
        start = net.now
        net.call(src, "broadcast", ("member-event", src))
        msg_id = (src, net.nodes[src].tree._seq)
        net.run_for(5)
        times = delivered(net, msg_id).values()
        latencies.append(max(times) - start if len(times) == n else None)
    net.record_effects = None
    duration = 20.0 if n <= 1000 else 10.0
    before = sum(net.sent.values())
    heartbeats_before = net.sent_by_type["Heartbeat"]
    end = net.now + duration
    while net.now < end:
        net.call(net.rng.choice(names), "broadcast", ("member-event",))
        net.run_for(1.0)
    load = (sum(net.sent.values()) - before) / n / duration
    heartbeats = (net.sent_by_type["Heartbeat"] - heartbeats_before) / n / duration
    complete = [x for x in latencies if x is not None]
    return {
        "overlay_s": overlay_s,
        "event_s": round(sum(complete) / len(complete), 4) if complete else None,
        "event_all_reached": len(complete) == len(latencies),
        "msgs_node_s": round(load, 2),
        "heartbeats_node_s": round(heartbeats, 2),
    }


def bench_swim(n: int, seed: int) -> dict:
    net = SimNet(seed)
    names = [f"n{i:05d}" for i in range(n)]
    for i, name in enumerate(names):
        net.add(name, SwimNode(name, SwimDetector(), rng=random.Random(f"{seed}/{name}"), seeds=names[:1]))

    def knows(state, who):
        return all(net.nodes[x].members.get(w) is not None and net.nodes[x].members.get(w).state == state
                   for x in net.alive() for w in who)

    def all_joined():
        return all(net.nodes[x].members.count_alive() == n for x in names)

    join_s = net.run_until_true(all_joined, timeout=300, step=1.0)
    net.run_for(10)
    before, start = sum(net.sent.values()), net.now
    net.run_for(20)
    load = (sum(net.sent.values()) - before) / n / (net.now - start)
    victim = names[-1]
    crashed_at = net.now
    net.crash([victim])
    detected = net.run_until_true(lambda: knows(MemberState.DOWN, [victim]), timeout=120, step=0.25)
    return {
        "join_s": join_s,
        "detect_s": None if detected is None else round(detected - crashed_at, 2),
        "msgs_node_s": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--swim-max", type=int, default=100, help="largest size to run SWIM at")
    args = parser.parse_args()
    summary: dict = {"bench": "membership_simulated", "seed": args.seed}
    for n in (int(s) for s in args.sizes.split(",")):
        t0 = time.perf_counter()
        row = {"hyparview_plumtree": bench_overlay(n, args.seed)}
        row["swim"] = bench_swim(n, args.seed) if n <= args.swim_max else None
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"n={n}: {json.dumps(row)}", flush=True)
        summary[str(n)] = row
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
