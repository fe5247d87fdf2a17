"""Instructions per operation on the runtime's hot paths, counted by valgrind (steady on a noisy machine).

    /work/venv/bin/python bench/bench_instructions.py [--count 100000] [--paths receive,send,raw-send,round-trip]

Wall-clock rates on these shared 2-core machines swing by 1.5-2x from one minute to the
next; instruction counts do not.  Each path runs in a child Python under
``valgrind --tool=callgrind`` twice, with 0 and with ``--count`` operations, and the
difference divided by ``--count`` is reported (start-up, imports and set-up cancel out):

* ``receive``: ``await ctx.receive()`` on a mailbox that already holds the messages;
* ``send``: ``await ctx.send(remote, 100-byte payload)`` to a process on a second node in
  the same ``trio.run`` whose connection discards what arrives (the sender, its writer and
  the receiving node's frame decoding);
* ``raw-send``: the raw baseline's sender loop (``buf += pack((0, seq, payload))``, a
  checkpoint per 64 KiB), no socket: the floor the ``send`` path is compared with;
* ``round-trip``: a request/response round trip between two nodes in one process (both
  ends' work), without the busy-wait.

Needs valgrind (``apt-get install valgrind``); prints a one-line JSON summary last.  To
count an older commit's runtime, put a directory holding ``eco/runtime`` (and ``eco/plan``)
from that commit first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

PAYLOAD = bytes(range(100))
PATHS = ("receive", "send", "raw-send", "round-trip")


# ------------------------------------------------------------------ the measured loops (child side)


async def _receive(count: int) -> None:
    import trio

    from eco.runtime.kernel import Kernel

    async with Kernel("a", incarnation=1, mailbox_size=max(count, 1)) as kernel:
        done = trio.Event()

        async def process(ctx):
            ctx.mailbox._items.extend([PAYLOAD] * count)  # (queued as a burst would leave them)
            receive = ctx.receive
            for _ in range(count):
                await receive()
            done.set()

        await kernel.spawn(process)
        await done.wait()


async def _two_nodes(body, **options) -> None:
    from bench_round_trip_cpu import two_nodes  # (this folder is on sys.path: run as a script)

    from eco.runtime.transport import TransportConfig

    options.setdefault("keepalive_interval", 1000.0)  # (no timer work proportional to valgrind's slowness)
    known = TransportConfig.__dataclass_fields__  # (an older runtime, for before/after runs: its options only)
    async with two_nodes(**{k: v for k, v in options.items() if k in known}) as (a, b):
        await body(a, b)


async def _send(count: int) -> None:
    import trio

    async def body(a, b):
        b._conns["a"].set_receiver(lambda frame: None, raw=True)  # decoded, then dropped
        done = trio.Event()

        async def sender(ctx):
            send, dest = ctx.send, ("b", "sink")
            for _ in range(count):
                await send(dest, PAYLOAD)
            done.set()

        await a.kernel.spawn(sender)
        await done.wait()

    await _two_nodes(body)


async def _raw_send(count: int) -> None:
    import msgpack
    import trio

    pack = msgpack.Packer().pack
    buf = bytearray()
    for seq in range(count):
        buf += pack((0, seq, PAYLOAD))
        if len(buf) >= 65536:
            buf = bytearray()
            await trio.lowlevel.checkpoint()


async def _round_trip(count: int) -> None:
    import trio

    async def body(a, b):
        async def echo(ctx):
            while True:
                sender, payload = await ctx.receive()
                await ctx.send(sender, payload)

        await b.kernel.spawn(echo, name="echo")
        done = trio.Event()

        async def client(ctx):
            me, echo_at = ctx.self, ("b", "echo")
            for _ in range(count):
                await ctx.send(echo_at, (me, PAYLOAD))
                await ctx.receive()
            done.set()

        await a.kernel.spawn(client)
        await done.wait()

    await _two_nodes(body, busy_wait=0.0)


_LOOPS = {"receive": _receive, "send": _send, "raw-send": _raw_send, "round-trip": _round_trip}


# ------------------------------------------------------------------ the parent side


def _instructions(path: str, count: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           sys.executable, os.path.abspath(__file__), "--child", path, str(count)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED="0"), check=False)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run of {path} ({count}) failed:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="operations per measured run (round trips: a fifth)")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated, from: " + ", ".join(PATHS))
    parser.add_argument("--child", nargs=2, metavar=("PATH", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import trio

        trio.run(_LOOPS[args.child[0]], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_instructions.py needs valgrind (apt-get install valgrind)")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in _LOOPS]
    if unknown:
        raise SystemExit(f"unknown path(s): {', '.join(unknown)} (choose from {', '.join(PATHS)})")
    summary: dict[str, object] = {"bench": "instructions", "count": args.count}
    for path in paths:
        count = max(args.count // 5, 1) if path == "round-trip" else args.count
        per_op = (_instructions(path, count) - _instructions(path, 0)) / count
        print(f"{path:12}{per_op:12,.0f} instructions per operation ({count:,} operations)")
        summary[path.replace("-", "_")] = round(per_op)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
