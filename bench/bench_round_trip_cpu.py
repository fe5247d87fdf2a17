"""Round trips with both ends in one process: the CPU cost of a request/response hop.

    /work/venv/bin/python bench/bench_round_trip_cpu.py [--round-trips 20000] [--repeat 5]

``bench_node.py`` measures ping-pong between two OS processes, where how much of each side's
work overlaps with the other's matters as much as the work itself.  Here both ends run in one
``trio.run``, one after the other, so the time per round trip is the work of both sides (plus
two loopback system calls each way), with no overlap:

* eco: two ``Node``s on loopback TCP; a process sends ``(self, payload)`` to an echo process
  on the other node and waits in ``receive`` for the answer;
  (also without the busy-wait before trio sleeps, and without fd lending at all);
* raw: a trio socket pair with msgpack (``Packer``/streaming ``Unpacker``), the echo side
  answering every frame of a read, as ``bench_raw_peer.py`` does.

Runs alternate; medians are reported.  Prints a one-line JSON summary last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgpack
import trio

from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_config
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import open_tcp_transport

PAYLOAD = bytes(range(100))
WARM_UP = 2000


async def _echo(ctx):
    receive, send = ctx.receive, ctx.send
    while True:
        sender, payload = await receive()
        await send(sender, payload)


_VARIANTS = {"eco": {}, "eco_no_busy_wait": {"busy_wait": 0.0}, "eco_no_lending": {"lend_reads": False}}


@asynccontextmanager
async def two_nodes(**options) -> AsyncIterator[tuple[Node, Node]]:
    """Nodes ``a`` and ``b`` on loopback TCP in this ``trio.run``, connected (``options``:
    TransportConfig fields)."""
    cookie = Cookie("round-trip-cpu-bench-cookie-0123")
    ka, kb = Kernel("a", incarnation=1), Kernel("b", incarnation=1)
    async with ka, kb, open_tcp_transport(node_transport_config("t", "a", 1, cookie, **options)) as ta, \
            open_tcp_transport(node_transport_config("t", "b", 1, cookie, **options)) as tb:
        a, b = Node(ka, ta), Node(kb, tb)
        async with trio.open_nursery() as nursery:
            address = await nursery.start(b.serve, "127.0.0.1:0")
            await nursery.start(a.serve, "127.0.0.1:0", [address])
            await a.wait_connected(["b"])
            yield a, b
            nursery.cancel_scope.cancel()


async def _eco(round_trips: int, options: dict) -> float:
    out: list[float] = []
    async with two_nodes(**options) as (a, b):
        await b.kernel.spawn(_echo, name="echo")
        done = trio.Event()

        async def driver(ctx):
            me, echo, send, receive = ctx.self, ("b", "echo"), ctx.send, ctx.receive
            for _ in range(WARM_UP):
                await send(echo, (me, PAYLOAD))
                await receive()
            start = time.perf_counter()
            for _ in range(round_trips):
                await send(echo, (me, PAYLOAD))
                await receive()
            out.append((time.perf_counter() - start) / round_trips)
            done.set()

        await a.kernel.spawn(driver)
        await done.wait()
    return out[0]


async def _raw(round_trips: int) -> float:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def serve(stream: trio.SocketStream) -> None:
        unpacker, pack = msgpack.Unpacker(), msgpack.Packer().pack
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            unpacker.feed(data)
            out = bytearray()
            for _tag, seq, payload in unpacker:
                out += pack((1, seq, payload))
            if out:
                await stream.send_all(out)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve, listeners)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        pack, unpacker = msgpack.Packer().pack, msgpack.Unpacker()

        async def next_reply():
            while True:
                for obj in unpacker:
                    return obj
                unpacker.feed(await stream.receive_some(65536))

        for seq in range(WARM_UP):
            await stream.send_all(pack((1, seq, PAYLOAD)))
            await next_reply()
        start = time.perf_counter()
        for seq in range(round_trips):
            await stream.send_all(pack((1, seq, PAYLOAD)))
            await next_reply()
        elapsed = (time.perf_counter() - start) / round_trips
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {name: [] for name in (*_VARIANTS, "raw")}
    for i in range(args.repeat):
        order = list(runs) if i % 2 == 0 else list(reversed(runs))
        for name in order:
            if name == "raw":
                runs[name].append(trio.run(_raw, args.round_trips))
            else:
                runs[name].append(trio.run(_eco, args.round_trips, _VARIANTS[name]))
    median_us = {name: statistics.median(values) * 1e6 for name, values in runs.items()}
    for name, value in median_us.items():
        print(f"{name:16}{value:8.1f} µs per round trip (both ends in one process)")
    summary = {
        "bench": "round_trip_cpu",
        "round_trips": args.round_trips,
        "repeat": args.repeat,
        "statistic": "median",
        **{f"{name}_us": round(value, 1) for name, value in median_us.items()},
        "eco_over_raw": round(median_us["eco"] / median_us["raw"], 3),
        "eco_no_busy_wait_over_raw": round(median_us["eco_no_busy_wait"] / median_us["raw"], 3),
        "eco_no_lending_over_raw": round(median_us["eco_no_lending"] / median_us["raw"], 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
