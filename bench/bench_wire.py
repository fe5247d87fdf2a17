"""Wire benchmark: framing throughput, and eco's TCP Connection vs a raw trio+msgpack socket.

Run:  /work/venv/bin/python bench/bench_wire.py [--messages 200000] [--round-trips 20000] [--runs 5]

Both sides run as two trio tasks in one process over real loopback TCP (the
two-OS-process node benchmark comes with the Node).  The raw baseline does the
same work with a bare trio socket and msgpack: the sender packs messages into a
buffer and flushes it in batches, the receiver feeds a streaming Unpacker.
eco is measured two ways: the queue API (``await send`` / ``async for``) and
the fast paths a node uses (``send_raw_nowait`` and a ``set_receiver`` callback,
and ``payload_offer``, whose queued sends travel as SEND_BATCH frames).
Each run measures raw and eco back to back; the figures are medians over the
runs (the ratio is the median of the per-run ratios).  The last line is a JSON
summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import msgpack
import trio

from eco.runtime.handshake import Identity
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import open_tcp_transport
from eco.runtime.transport import TransportConfig
from eco.runtime.wire import Envelope, FrameDecoder, FrameEncoder, Kind

PAYLOAD = b"x" * 100
CAST, CALL = int(Kind.CAST), int(Kind.CALL)  # the raw baseline packs plain ints
SEND_BATCH = Kind.SEND_BATCH
COOKIE = Cookie.generate()


def _config(node: str) -> TransportConfig:
    return TransportConfig(Identity("bench", node, 1, COOKIE), keepalive_interval=5.0)


def bench_framing(n: int) -> dict[str, float]:
    env = Envelope(Kind.SEND, "bench", ["a", 1, 1], ["b", 2, 1], 0, PAYLOAD)
    encoder = FrameEncoder()
    start = time.perf_counter()
    chunks = []
    for i in range(n):
        encoder.add(env)
        if encoder.pending_bytes > 65536:
            chunks.append(encoder.take())
    chunks.append(encoder.take())
    encode = n / (time.perf_counter() - start)
    decoder = FrameDecoder(read_size=1 << 20)
    start = time.perf_counter()
    count = 0
    for chunk in chunks:
        count += len(decoder.decode(chunk))
    decode = n / (time.perf_counter() - start)
    assert count == n
    return {"encode_per_s": encode, "decode_per_s": decode, "frame_bytes": sum(map(len, chunks)) / n}


# ------------------------------------------------------------------ eco connection


async def eco_one_way(n: int) -> float:
    done = trio.Event()

    async def handler(conn):
        count = 0
        async for _ in conn:
            count += 1
            if count == n:
                done.set()
                return

    async with open_tcp_transport(_config("server")) as server, open_tcp_transport(_config("client")) as client:
        address = await server.listen(handler)
        conn = await client.connect(address)
        start = time.perf_counter()
        for i in range(n):
            await conn.send(Envelope(Kind.CAST, "bench", None, None, i, PAYLOAD))
        await done.wait()
        elapsed = time.perf_counter() - start
        await conn.aclose()
    return n / elapsed


async def eco_one_way_fast(n: int) -> float:
    """One-way with the node's fast paths: send_raw_nowait, and a raw receiver callback."""
    done = trio.Event()
    count = 0

    def on_frame(frame):
        nonlocal count
        count += 1
        if count == n:
            done.set()

    async def handler(conn):
        conn.set_receiver(on_frame, raw=True)
        await done.wait()

    async with open_tcp_transport(_config("server")) as server, open_tcp_transport(_config("client")) as client:
        address = await server.listen(handler)
        conn = await client.connect(address)
        send = conn.send_raw_nowait
        start = time.perf_counter()
        for i in range(n):
            try:
                send(CAST, "bench", None, None, i, PAYLOAD)
            except trio.WouldBlock:
                await conn.send(Envelope(CAST, "bench", None, None, i, PAYLOAD))
        await done.wait()
        elapsed = time.perf_counter() - start
        await conn.aclose()
    return n / elapsed


async def eco_one_way_batched(n: int) -> float:
    """One-way as the node sends: a payload_offer per destination (SEND frames, coalesced into
    SEND_BATCH frames while the writer is busy) and a raw receiver callback."""
    done = trio.Event()
    count = 0

    def on_frame(frame):
        nonlocal count
        count += len(frame[6]) if frame[1] is SEND_BATCH else 1
        if count >= n:
            done.set()

    async def handler(conn):
        conn.set_receiver(on_frame, raw=True)
        await done.wait()

    async with open_tcp_transport(_config("server")) as server, open_tcp_transport(_config("client")) as client:
        address = await server.listen(handler)
        conn = await client.connect(address)
        offer = conn.payload_offer(conn.frame_head(Kind.SEND, "bench", None, None, 0))
        start = time.perf_counter()
        for i in range(n):
            if not offer(PAYLOAD):
                await conn.send(Envelope(Kind.SEND, "bench", None, None, 0, PAYLOAD))
        await done.wait()
        elapsed = time.perf_counter() - start
        await conn.aclose()
    return n / elapsed


async def eco_ping_pong_fast(n: int) -> float:
    """Ping-pong where the server echoes from its receiver callback (as a node routes)."""
    async def handler(conn):
        send = conn.send_raw_nowait
        conn.set_receiver(lambda frame: send(*frame[1:]), raw=True)
        await conn.wait_closed()

    async with open_tcp_transport(_config("server")) as server, open_tcp_transport(_config("client")) as client:
        address = await server.listen(handler)
        conn = await client.connect(address)
        start = time.perf_counter()
        for i in range(n):
            conn.send_raw_nowait(CALL, "bench", None, None, i, PAYLOAD)
            await conn.receive()
        elapsed = time.perf_counter() - start
        await conn.aclose()
    return n / elapsed


async def eco_ping_pong(n: int) -> float:
    async def handler(conn):
        async for env in conn:
            await conn.send(env)

    async with open_tcp_transport(_config("server")) as server, open_tcp_transport(_config("client")) as client:
        address = await server.listen(handler)
        conn = await client.connect(address)
        start = time.perf_counter()
        for i in range(n):
            await conn.send(Envelope(Kind.CALL, "bench", None, None, i, PAYLOAD))
            await conn.receive()
        elapsed = time.perf_counter() - start
        await conn.aclose()
    return n / elapsed


# --------------------------------------------------------------------- raw baseline




async def raw_one_way(n: int) -> float:
    done = trio.Event()

    async def receiver(stream):
        unpacker = msgpack.Unpacker()
        count = 0
        while count < n:
            data = await stream.receive_some(65536)
            if not data:
                break
            unpacker.feed(data)
            for _ in unpacker:
                count += 1
        done.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_listeners, receiver, await trio.open_tcp_listeners(0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        packer = msgpack.Packer(autoreset=False)
        start = time.perf_counter()
        for i in range(n):
            packer.pack([1, CAST, "bench", None, None, i, PAYLOAD])
            if packer.getbuffer().nbytes > 65536:
                await stream.send_all(packer.bytes())
                packer.reset()
        await stream.send_all(packer.bytes())
        await done.wait()
        elapsed = time.perf_counter() - start
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return n / elapsed


async def raw_ping_pong(n: int) -> float:
    async def echo(stream):
        unpacker = msgpack.Unpacker()
        while data := await stream.receive_some(65536):
            unpacker.feed(data)
            for msg in unpacker:
                await stream.send_all(msgpack.packb(msg))

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_listeners, echo, await trio.open_tcp_listeners(0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        unpacker = msgpack.Unpacker()
        start = time.perf_counter()
        for i in range(n):
            await stream.send_all(msgpack.packb([1, CALL, "bench", None, None, i, PAYLOAD]))
            got = False
            while not got:
                unpacker.feed(await stream.receive_some(65536))
                for _ in unpacker:
                    got = True
        elapsed = time.perf_counter() - start
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return n / elapsed


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5, help="repetitions; medians are reported")
    args = parser.parse_args()

    framing = bench_framing(args.messages)
    print(f"framing: encode {framing['encode_per_s']:,.0f} envelopes/s, decode {framing['decode_per_s']:,.0f} envelopes/s, {framing['frame_bytes']:.0f} bytes/frame")
    runs: dict[str, list[float]] = {k: [] for k in ("ow_raw", "ow_eco", "ow_fast", "ow_batched", "pp_raw", "pp_eco", "pp_fast")}
    for run in range(args.runs):
        # Raw and eco back to back in each run, so both see the same machine load.
        runs["ow_raw"].append(trio.run(raw_one_way, args.messages))
        runs["ow_eco"].append(trio.run(eco_one_way, args.messages))
        runs["ow_fast"].append(trio.run(eco_one_way_fast, args.messages))
        runs["ow_batched"].append(trio.run(eco_one_way_batched, args.messages))
        runs["pp_raw"].append(trio.run(raw_ping_pong, args.round_trips))
        runs["pp_eco"].append(trio.run(eco_ping_pong, args.round_trips))
        runs["pp_fast"].append(trio.run(eco_ping_pong_fast, args.round_trips))
        print(
            f"run {run + 1}: one-way raw {runs['ow_raw'][-1]:,.0f}, eco {runs['ow_eco'][-1]:,.0f}, eco fast {runs['ow_fast'][-1]:,.0f}, "
            f"eco batched {runs['ow_batched'][-1]:,.0f} msgs/s; "
            f"ping-pong raw {runs['pp_raw'][-1]:,.0f}, eco {runs['pp_eco'][-1]:,.0f}, eco fast {runs['pp_fast'][-1]:,.0f} round trips/s"
        )

    def ratio(eco: str, raw: str) -> float:
        return _median([e / r for e, r in zip(runs[eco], runs[raw])])

    med = {k: _median(v) for k, v in runs.items()}
    print(
        f"one-way (100-byte payload), medians of {args.runs}: raw trio+msgpack {med['ow_raw']:,.0f} msgs/s; "
        f"eco send/receive {med['ow_eco']:,.0f} (ratio {ratio('ow_eco', 'ow_raw'):.2f}); "
        f"eco send_raw_nowait/raw receiver {med['ow_fast']:,.0f} (ratio {ratio('ow_fast', 'ow_raw'):.2f}); "
        f"eco payload_offer/raw receiver (SEND_BATCH) {med['ow_batched']:,.0f} (ratio {ratio('ow_batched', 'ow_raw'):.2f})"
    )
    print(
        f"ping-pong, medians of {args.runs}: raw trio+msgpack {med['pp_raw']:,.0f} round trips/s; "
        f"eco send/receive {med['pp_eco']:,.0f} (ratio {ratio('pp_eco', 'pp_raw'):.2f}); "
        f"eco receiver echo {med['pp_fast']:,.0f} (ratio {ratio('pp_fast', 'pp_raw'):.2f})"
    )
    summary = {
        "bench": "wire",
        "runs": args.runs,
        "encode_per_s": round(framing["encode_per_s"]),
        "decode_per_s": round(framing["decode_per_s"]),
        "one_way_raw": round(med["ow_raw"]),
        "one_way_eco": round(med["ow_eco"]),
        "one_way_ratio": round(ratio("ow_eco", "ow_raw"), 3),
        "one_way_eco_fast": round(med["ow_fast"]),
        "one_way_fast_ratio": round(ratio("ow_fast", "ow_raw"), 3),
        "one_way_eco_batched": round(med["ow_batched"]),
        "one_way_batched_ratio": round(ratio("ow_batched", "ow_raw"), 3),
        "round_trips_raw": round(med["pp_raw"]),
        "round_trips_eco": round(med["pp_eco"]),
        "round_trip_ratio": round(ratio("pp_eco", "pp_raw"), 3),
        "round_trips_eco_fast": round(med["pp_fast"]),
        "round_trip_fast_ratio": round(ratio("pp_fast", "pp_raw"), 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
