"""Two node OS processes on loopback: eco's Node/kernel send path against a raw trio + msgpack socket pair.

    /work/venv/bin/python bench/bench_node.py [--messages 200000] [--round-trips 20000] [--repeat 5] [--no-lend-reads] [--no-busy-wait]

Set ``ECO_BENCH_PROFILE=DIR`` to write cProfile files of both eco node
processes (``DIR/client.prof``, ``DIR/server.prof``; view with
``python -m pstats``).

Both sides do the same work in two OS processes each:

* one-way: the sender sends ``--messages`` messages with a 100-byte payload,
  then a marker; the receiver counts them and answers the marker; the rate
  is messages / (time until the answer arrives);
* ping-pong: one message out, wait for the echo, ``--round-trips`` times.

eco: this process runs a kernel + Node (TCP transport, handshake, envelopes)
and a process that ``send``s to a process on the other node (``--serve``
mode of this script); ping-pong is ``send`` + ``receive`` between processes.
raw: this process talks to ``bench_raw_peer.py`` over a plain trio socket,
packing with msgpack and batching writes, decoding with a streaming Unpacker.

Each repeat runs raw and eco back to back (alternating which goes first),
so both see the same machine load; the medians over the repeats are
reported, with the median of the per-repeat ratios.  The CPU time each side
spends per one-way message (sender: this process; receiver: the peer, from
/proc) is reported too: it is much steadier than rates on a shared machine.  Prints a table and a one-line JSON summary at the end.
Targets: one-way >= 0.8x raw, round trips >= 1.0x raw.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import trio

from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_config
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import open_tcp_transport

HERE = Path(__file__).resolve().parent
PAYLOAD = bytes(range(100))
_COOKIE_ENV = "ECO_BENCH_COOKIE"
_PROFILE_ENV = "ECO_BENCH_PROFILE"


def _run_profiled(name: str, fn, *args):
    """``trio.run(fn, *args)``, under cProfile into ``$ECO_BENCH_PROFILE/<name>.prof`` if set."""
    directory = os.environ.get(_PROFILE_ENV)
    if not directory:
        return trio.run(fn, *args)
    import cProfile

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(trio.run, fn, *args)
    finally:
        profiler.dump_stats(os.path.join(directory, f"{name}.prof"))


# ------------------------------------------------------------------ eco: serving side


async def _sink(ctx):
    ctx.register("sink")
    count = 0
    receive = ctx.receive
    while True:
        msg = await receive()
        if type(msg) is bytes:
            count += 1
        elif type(msg) is dict and "done" in msg:
            await ctx.send(msg["done"], count)
            count = 0


async def _batch_sink(ctx):
    # The same as _sink with receive_batch: one await per batch of queued messages,
    # as the raw receiver handles every frame of a read in one loop.
    ctx.register("batch_sink")
    count = 0
    receive_batch = getattr(ctx, "receive_batch", None)
    if receive_batch is None:  # a runtime from before receive_batch (before/after comparisons)

        async def receive_batch():
            return [await ctx.receive()]
    while True:
        for msg in await receive_batch():
            if type(msg) is bytes:
                count += 1
            elif type(msg) is dict and "done" in msg:
                await ctx.send(msg["done"], count)
                count = 0


async def _echo(ctx):
    ctx.register("echo")
    receive, send = ctx.receive, ctx.send
    while True:
        sender, payload = await receive()
        await send(sender, payload)


def _transport_options() -> dict:
    # ``--no-lend-reads`` / ``--no-busy-wait`` (passed on to the server): measure without fd
    # lending, or without the busy-wait on a lent socket (runtime/fd_lending.py).
    options: dict = {}
    if "--no-lend-reads" in sys.argv:
        options["lend_reads"] = False
    if "--no-busy-wait" in sys.argv:
        options["busy_wait"] = 0.0
    return options


async def _serve_node() -> None:
    cookie = Cookie(os.environ[_COOKIE_ENV])
    kernel = Kernel("server", incarnation=1, mailbox_size=100_000)
    async with kernel, open_tcp_transport(node_transport_config("bench", "server", 1, cookie, **_transport_options())) as transport:
        node = Node(kernel, transport)
        await kernel.spawn(_sink)
        await kernel.spawn(_batch_sink)
        await kernel.spawn(_echo)
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "127.0.0.1:0")
            print(address, flush=True)
            stdin = trio.lowlevel.FdStream(os.dup(0))
            while await stdin.receive_some(100):  # exit with the parent
                pass
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ eco: driving side


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _spawn_peer(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise SystemExit(f"bench peer failed to start: {cmd}")
    return proc, line


async def _eco_bench(address: str, cookie: Cookie, messages: int, round_trips: int, peer_pid: int) -> dict[str, float]:
    kernel = Kernel("client", incarnation=1, mailbox_size=100_000)
    async with kernel, open_tcp_transport(node_transport_config("bench", "client", 1, cookie, **_transport_options())) as transport:
        node = Node(kernel, transport)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.serve, "127.0.0.1:0", [address])
            await node.wait_connected(["server"])
            out: dict[str, float] = {}
            done = trio.Event()

            async def driver(ctx):
                sink = ("server", "sink")
                echo = ("server", "echo")
                send = ctx.send
                # warm-up
                for _ in range(1000):
                    await send(sink, PAYLOAD)
                await send(sink, {"done": ctx.self})
                await ctx.receive()
                start, cpu, peer_cpu = time.perf_counter(), time.process_time(), _cpu_of(peer_pid)
                for _ in range(messages):
                    await send(sink, PAYLOAD)
                await send(sink, {"done": ctx.self})
                got = await ctx.receive()
                out["one_way"] = messages / (time.perf_counter() - start)
                out["send_cpu_us"] = (time.process_time() - cpu) / messages * 1e6
                out["receive_cpu_us"] = (_cpu_of(peer_pid) - peer_cpu) / messages * 1e6
                assert got == messages, (got, messages)
                batch_sink = ("server", "batch_sink")
                start, peer_cpu = time.perf_counter(), _cpu_of(peer_pid)
                for _ in range(messages):
                    await send(batch_sink, PAYLOAD)
                await send(batch_sink, {"done": ctx.self})
                got = await ctx.receive()
                out["one_way_batch"] = messages / (time.perf_counter() - start)
                out["receive_batch_cpu_us"] = (_cpu_of(peer_pid) - peer_cpu) / messages * 1e6
                assert got == messages, (got, messages)
                me = ctx.self
                receive = ctx.receive
                lending = getattr(transport, "_lending", None)
                spins = (lending.spins, lending.spin_hits) if lending is not None and hasattr(lending, "spins") else None
                start, cpu, peer_cpu = time.perf_counter(), time.process_time(), _cpu_of(peer_pid)
                for _ in range(round_trips):
                    await send(echo, (me, PAYLOAD))
                    await receive()
                out["round_trips"] = round_trips / (time.perf_counter() - start)
                out["round_trip_cpu_us"] = (time.process_time() - cpu + _cpu_of(peer_pid) - peer_cpu) / round_trips * 1e6
                if spins is not None:  # this side's busy-waits during the ping-pong, and how many found the reply
                    out["spins"] = lending.spins - spins[0]
                    out["spin_hits"] = lending.spin_hits - spins[1]
                done.set()

            await kernel.spawn(driver)
            await done.wait()
            nursery.cancel_scope.cancel()
    return out


# ------------------------------------------------------------------ raw baseline


async def _raw_bench(port: int, messages: int, round_trips: int, peer_pid: int) -> dict[str, float]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    import socket

    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    pack = msgpack.Packer().pack
    unpacker = msgpack.Unpacker()
    out: dict[str, float] = {}

    async def next_reply():
        while True:
            for obj in unpacker:
                return obj
            data = await stream.receive_some(65536)
            unpacker.feed(data)

    async def one_way(n: int) -> float:
        start, cpu, peer_cpu = time.perf_counter(), time.process_time(), _cpu_of(peer_pid)
        buf = bytearray()
        for seq in range(n):
            buf += pack((0, seq, PAYLOAD))
            if len(buf) >= 65536:
                await stream.send_all(buf)
                buf = bytearray()
        buf += pack((0, -1, b""))
        await stream.send_all(buf)
        reply = await next_reply()
        assert reply[1] == n, reply
        out["send_cpu_us"] = (time.process_time() - cpu) / n * 1e6
        out["receive_cpu_us"] = (_cpu_of(peer_pid) - peer_cpu) / n * 1e6
        return n / (time.perf_counter() - start)

    await one_way(1000)
    out["one_way"] = await one_way(messages)
    out["one_way_batch"] = out["one_way"]  # (the raw receiver always handles a read's frames in one loop)
    out["receive_batch_cpu_us"] = out["receive_cpu_us"]
    start, cpu, peer_cpu = time.perf_counter(), time.process_time(), _cpu_of(peer_pid)
    for seq in range(round_trips):
        await stream.send_all(pack((1, seq, PAYLOAD)))
        await next_reply()
    out["round_trips"] = round_trips / (time.perf_counter() - start)
    out["round_trip_cpu_us"] = (time.process_time() - cpu + _cpu_of(peer_pid) - peer_cpu) / round_trips * 1e6
    await stream.aclose()
    return out


# ------------------------------------------------------------------ main


def _stop(proc: subprocess.Popen) -> None:
    # Closing stdin stops a peer gracefully (so a profiled server writes its profile).
    try:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, OSError):
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; medians are reported")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-lend-reads", action="store_true",
                        help="eco without fd lending (a process never waits on a socket itself)")
    parser.add_argument("--no-busy-wait", action="store_true",
                        help="eco without the busy-wait on a lent socket before trio sleeps")
    args = parser.parse_args()
    if args.serve:
        _run_profiled("server", _serve_node)
        return
    cookie_text = os.urandom(16).hex()
    env = dict(os.environ, **{_COOKIE_ENV: cookie_text})
    runs: dict[str, dict[str, list[float]]] = {"eco": {}, "raw": {}, "ratio": {}}
    def run_raw() -> dict[str, float]:
        raw_proc, raw_port = _spawn_peer([sys.executable, str(HERE / "bench_raw_peer.py")], env)
        try:
            return trio.run(_raw_bench, int(raw_port), args.messages, args.round_trips, raw_proc.pid)
        finally:
            _stop(raw_proc)

    def run_eco() -> dict[str, float]:
        eco_proc, address = _spawn_peer([sys.executable, str(Path(__file__).resolve()), "--serve", *(["--no-lend-reads"] if args.no_lend_reads else []),
                                      *(["--no-busy-wait"] if args.no_busy_wait else [])], env)
        try:
            return _run_profiled("client", _eco_bench, address, Cookie(cookie_text), args.messages, args.round_trips, eco_proc.pid)
        finally:
            _stop(eco_proc)

    for i in range(args.repeat):
        # Alternate which goes first, so neither systematically gets the quieter moment.
        if i % 2 == 0:
            raw, eco = run_raw(), run_eco()
        else:
            eco, raw = run_eco(), run_raw()
        if "spins" in eco:
            print(f"busy-waits on this side during the ping-pong: {eco['spins']:,}, {eco['spin_hits']:,} found the reply",
                  file=sys.stderr)
        for key in raw:
            runs["raw"].setdefault(key, []).append(raw[key])
            runs["eco"].setdefault(key, []).append(eco[key])
            runs["ratio"].setdefault(key, []).append(eco[key] / raw[key] if raw[key] else float("nan"))  # (CPU ticks: 0 on short runs)
        print(
            f"run: one-way {eco['one_way']:,.0f} vs {raw['one_way']:,.0f} "
            f"(CPU µs/msg sender {eco['send_cpu_us']:.2f} vs {raw['send_cpu_us']:.2f}, "
            f"receiver {eco['receive_cpu_us']:.2f} vs {raw['receive_cpu_us']:.2f}), "
            f"one-way with receive_batch {eco['one_way_batch']:,.0f} (receiver CPU {eco['receive_batch_cpu_us']:.2f}), "
            f"round trips {eco['round_trips']:,.0f} vs {raw['round_trips']:,.0f} "
            f"(CPU µs per round trip, both sides {eco.get('round_trip_cpu_us', 0):.1f} vs {raw['round_trip_cpu_us']:.1f})",
            file=sys.stderr,
        )
    median = {name: {key: statistics.median(values) for key, values in figures.items()} for name, figures in runs.items() if name != "ratio"}
    ratio = {key: statistics.median(values) for key, values in runs["ratio"].items()}
    print(f"{'':14}{'eco node':>14}{'raw socket':>14}{'ratio':>8}{'target':>8}")
    for key, label, target in (
        ("one_way", "one-way msg/s", 0.8),
        ("one_way_batch", "  with batch", 0.8),
        ("round_trips", "round trips/s", 1.0),
    ):
        print(f"{label:14}{median['eco'][key]:>14,.0f}{median['raw'][key]:>14,.0f}{ratio[key]:>8.2f}{target:>8.1f}")
    for key, label in (
        ("send_cpu_us", "send CPU µs"),
        ("receive_cpu_us", "recv CPU µs"),
        ("receive_batch_cpu_us", "  with batch"),
        ("round_trip_cpu_us", "CPU µs/trip"),
    ):
        print(f"{label:14}{median['eco'][key]:>14.2f}{median['raw'][key]:>14.2f}{ratio[key]:>8.2f}")
    summary = {
        "bench": "node",
        "messages": args.messages,
        "repeat": args.repeat,
        "statistic": "median",
        "round_trips": args.round_trips,
        "eco_one_way_per_s": round(median["eco"]["one_way"]),
        "raw_one_way_per_s": round(median["raw"]["one_way"]),
        "one_way_ratio": round(ratio["one_way"], 3),
        "eco_one_way_batch_per_s": round(median["eco"]["one_way_batch"]),
        "one_way_batch_ratio": round(ratio["one_way_batch"], 3),
        "eco_round_trips_per_s": round(median["eco"]["round_trips"]),
        "raw_round_trips_per_s": round(median["raw"]["round_trips"]),
        "round_trip_ratio": round(ratio["round_trips"], 3),
        # CPU per one-way message on each side (µs; steadier than rates on a loaded machine)
        "eco_send_cpu_us": round(median["eco"]["send_cpu_us"], 3),
        "raw_send_cpu_us": round(median["raw"]["send_cpu_us"], 3),
        "eco_receive_cpu_us": round(median["eco"]["receive_cpu_us"], 3),
        "eco_receive_batch_cpu_us": round(median["eco"]["receive_batch_cpu_us"], 3),
        "raw_receive_cpu_us": round(median["raw"]["receive_cpu_us"], 3),
        # CPU per round trip, both processes together (µs)
        "eco_round_trip_cpu_us": round(median["eco"]["round_trip_cpu_us"], 1),
        "raw_round_trip_cpu_us": round(median["raw"]["round_trip_cpu_us"], 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
