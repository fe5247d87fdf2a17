"""SEND_BATCH frames: runs of sends to one destination travel as one frame (wire, TCP, node)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from eco.runtime.handshake import Identity
from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_config
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import TcpConnection, _Framed, open_tcp_transport
from eco.runtime.transport import PeerInfo, TransportConfig
from eco.runtime.wire import WIRE_VERSION, Envelope, FrameDecoder, FrameEncoder, Kind, ProtocolError, decode_frames, encode_envelope

pytestmark = pytest.mark.timeout(30)

COOKIE = Cookie("send-batch-test-cookie-0123456789")


# ----------------------------------------------------------------------- wire


def _batched(encoder: FrameEncoder, dest: str, payloads: list) -> None:
    head = encoder.encode_head(Kind.SEND, "ch", None, dest, 0)
    batch_head = FrameEncoder.batch_head(head)
    assert batch_head is not None
    encoder.open_batch(batch_head, encoder.encode_with_head(head, payloads[0]))
    for p in payloads[1:]:
        encoder.buffer += encoder.encode_with_head(head, p)
        encoder.batch_count += 1


def test_an_open_batch_is_one_send_batch_frame_once_closed():
    encoder = FrameEncoder()
    _batched(encoder, "a", [1, b"two", {"three": 3}])
    encoder.add(Envelope(Kind.CAST, "", None, "b", 0, "after"))  # closes the batch first
    _batched(encoder, "c", ["x"])
    envs = decode_frames(encoder.take())
    assert envs == [
        Envelope(Kind.SEND_BATCH, "ch", None, "a", 0, [1, b"two", {"three": 3}]),
        Envelope(Kind.CAST, "", None, "b", 0, "after"),
        Envelope(Kind.SEND_BATCH, "ch", None, "c", 0, ["x"]),
    ]
    assert encoder.batch is None and encoder.take() == b""
    assert FrameEncoder.batch_head(encoder.encode_head(Kind.CAST, "", None, "b", 0)) is None


def test_receivers_get_batches_whole_when_raw_and_as_sends_otherwise():
    data = encode_envelope(Envelope(Kind.SEND_BATCH, "ch", None, "d", 0, [1, 2, 3])) + encode_envelope(Envelope(Kind.SEND, "", None, "d", 0, 4))
    raw: list = []
    decoder = FrameDecoder()
    decoder.feed(data)
    decoder.drain_to(raw.append, pytest.fail, raw=True)
    assert raw == [[WIRE_VERSION, Kind.SEND_BATCH, "ch", None, "d", 0, [1, 2, 3]], [WIRE_VERSION, Kind.SEND, "", None, "d", 0, 4]]

    # Non-raw: one SEND per payload; a stop() in the middle of a batch keeps the rest for the next call.
    decoder = FrameDecoder()
    decoder.feed(data)
    first: list[Envelope] = []

    def take_two(env: Envelope) -> None:
        first.append(env)
        if len(first) == 2:
            decoder.stop()

    assert decoder.drain_to(take_two, pytest.fail) is True
    rest: list[Envelope] = []
    assert decoder.drain_to(rest.append, pytest.fail) is False
    assert [(e.kind, e.channel, e.payload) for e in first + rest] == [(Kind.SEND, "ch", 1), (Kind.SEND, "ch", 2), (Kind.SEND, "ch", 3), (Kind.SEND, "", 4)]


@pytest.mark.parametrize("payload", [None, 5, b"list?", {"k": 1}])
def test_a_send_batch_whose_payload_is_not_a_list_is_refused(payload):
    frame = msgpack.packb([WIRE_VERSION, int(Kind.SEND_BATCH), "", None, "d", 0, payload])
    for raw in (True, False):
        decoder = FrameDecoder()
        decoder.feed(frame)
        with pytest.raises(ProtocolError, match="SEND_BATCH"):
            decoder.drain_to(pytest.fail, pytest.fail, raw=raw)
    with pytest.raises(ProtocolError, match="SEND_BATCH"):
        decode_frames(frame)
    with pytest.raises(ProtocolError, match="SEND_BATCH"):
        FrameEncoder().encode(Envelope(Kind.SEND_BATCH, "", None, "d", 0, payload))


_ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 10**6) | st.binary(max_size=120) | st.text(max_size=60)),
        st.tuples(st.just("cast"), st.integers(0, 100)),
        st.tuples(st.just("flush"), st.none()),
    ),
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(_ops, st.sampled_from([200, 400, 1000]))
def test_batched_sends_decode_to_the_same_messages_in_order_within_the_frame_limit(ops, max_frame):
    # The TCP connection's batching logic without a socket: the writer is "busy"
    # (everything queues), and "flush" plays the writer taking the buffer.
    config = TransportConfig(Identity("c", "x", 1, COOKIE), max_frame_size=max_frame, send_buffer_bytes=1500)
    conn = TcpConnection(config, PeerInfo("y", 1, "nowhere"), _Framed(object(), config))  # type: ignore[arg-type]
    assert conn._fd == -1 and not conn._writer_idle
    offers = {d: conn.payload_offer(conn.frame_head(Kind.SEND, "", None, d, 0)) for d in ("a", "b")}
    wire = bytearray()
    expected = []
    for op, value in ops:
        if op == "flush":
            wire += conn._encoder.take()
            continue
        while True:
            if op == "cast":
                try:
                    conn.send_nowait(Envelope(Kind.CAST, "", None, "a", 0, value))
                    break
                except trio.WouldBlock:
                    pass
            elif offers[op](value):
                break
            wire += conn._encoder.take()  # full: let the "writer" drain it
        expected.append((op, value))
    wire += conn._encoder.take()
    got = []
    for env in decode_frames(bytes(wire), max_frame_size=max_frame):  # (raises FrameTooLarge past the limit)
        if env.kind is Kind.CAST:
            got.append(("cast", env.payload))
        elif env.kind is Kind.SEND_BATCH:
            got.extend((env.destination, p) for p in env.payload)
        else:  # a plain SEND only for a payload too big to share a batch frame
            assert len(msgpack.packb(env.payload)) > max_frame - 40
            got.append((env.destination, env.payload))
    assert got == expected


# ----------------------------------------------------------------------- TCP


def _config(node: str, **kw) -> TransportConfig:
    return TransportConfig(Identity("c", node, 1, COOKIE), keepalive_interval=0.2, **kw)


async def _transport(cfg, *, task_status=trio.TASK_STATUS_IGNORED):
    async with open_tcp_transport(cfg) as transport:
        task_status.started(transport)
        await trio.sleep_forever()


async def test_queued_sends_travel_as_batches_within_the_frame_limit_and_in_order():
    max_frame = 1000
    frames: list[list] = []
    sizes: list[int] = []
    done = trio.Event()

    def on_frame(frame: list) -> None:
        frames.append(frame)
        sizes.append(len(msgpack.packb(frame)))
        if frame[1] is Kind.CAST and frame[6] == "end":
            done.set()

    async def handler(conn):
        conn.set_receiver(on_frame, raw=True)
        await conn.wait_closed()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_transport, _config("server", max_frame_size=max_frame))
            client = await nursery.start(_transport, _config("client", max_frame_size=max_frame))
            conn = await client.connect(await server.listen(handler))
            to_a = conn.payload_sender(conn.frame_head(Kind.SEND, "", None, "a", 0))
            to_b = conn.payload_offer(conn.frame_head(Kind.SEND, "", None, "b", 0))
            expected = []
            for i in range(300):  # no checkpoint in between: all but the first queue behind the writer
                if i % 100 == 99:
                    conn.send_nowait(Envelope(Kind.CAST, "", None, "a", 0, i))
                    expected.append(("cast", i))
                elif i % 50 < 40:
                    to_a(b"%03d" % i + b"." * 90)
                    expected.append(("a", i))
                else:
                    assert to_b(i) is True
                    expected.append(("b", i))
            conn.send_nowait(Envelope(Kind.CAST, "", None, None, 0, "end"))
            await done.wait()
            got = []
            for frame in frames[:-1]:
                kind, dest, payload = frame[1], frame[4], frame[6]
                if kind is Kind.CAST:
                    got.append(("cast", payload))
                else:
                    for p in payload if kind is Kind.SEND_BATCH else [payload]:
                        got.append((dest, int(p[:3]) if type(p) is bytes else p))
            assert got == expected
            assert sum(1 for f in frames if f[1] is Kind.SEND_BATCH) >= 6  # (frames are split at max_frame)
            assert max(sizes) <= max_frame
            await conn.aclose()
            assert to_b(1) is False  # closed: the offer declines instead of raising
            nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------- node


@asynccontextmanager
async def _node(name: str, join=(), **kernel_options):
    kernel = Kernel(name, incarnation=1, **kernel_options)
    async with kernel, open_tcp_transport(node_transport_config("t", name, 1, COOKIE, keepalive_interval=0.2)) as transport:
        node = Node(kernel, transport)
        async with trio.open_nursery() as nursery:
            node.address = await nursery.start(node.serve, "127.0.0.1:0", list(join))
            yield node
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("overflow", "kept"), [("reject", list(range(10))), ("drop_oldest", list(range(90, 100)))])
async def test_a_batch_into_a_nearly_full_mailbox_follows_its_overflow_policy(overflow, kept):
    go = trio.Event()
    got: list[int] = []
    finished = trio.Event()

    async def idle_then_drain(ctx):
        ctx.register("sink")
        await go.wait()
        while True:
            msg = await ctx.receive()
            if msg == "end":
                finished.set()
                return
            got.append(msg)

    with trio.fail_after(15):
        async with _node("a", mailbox_size=10, overflow=overflow) as a, _node("b", join=[str(a.address)]) as b:
            await b.wait_connected(["a"])
            pid = await a.kernel.spawn(idle_then_drain)
            all_delivered = trio.Event()

            async def probe(ctx):
                ctx.register("probe")
                await ctx.receive()
                all_delivered.set()

            await a.kernel.spawn(probe)

            async def sender(ctx):
                for n in range(100):  # one burst: travels in SEND_BATCH frames
                    await ctx.send(("a", "sink"), n)
                await ctx.send(("a", "probe"), "after")  # (one connection: it arrives after them)

            await b.kernel.spawn(sender)
            await all_delivered.wait()
            assert a.kernel.context(pid).mailbox.snapshot() == kept
            go.set()
            while len(got) < 10:
                await trio.sleep(0.01)
            await b.kernel.send(("a", "sink"), "end")
            await finished.wait()
            assert got == kept
            assert b.is_connected("a")


class Tagged:
    """A stand-in for a generated message class (travels as a message extension)."""

    TYPE_NAME = "Tagged"
    TYPE_TAG = 1

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return type(other) is Tagged and other.n == self.n

    def to_msgpack(self) -> bytes:
        return msgpack.packb(self.n)

    @classmethod
    def from_msgpack(cls, data: bytes) -> Tagged:
        return cls(msgpack.unpackb(data))


async def test_ctx_send_follows_message_types_and_channels_in_order():
    got: list = []
    finished = trio.Event()
    sent = [b"raw", {"k": 1}, Tagged(1), Tagged(2), "text", Tagged(3), b"end"]

    async def sink(ctx):
        ctx.register("sink")
        while len(got) < len(sent):
            got.append(await ctx.receive())
        finished.set()

    with trio.fail_after(15):
        async with _node("a") as a, _node("b", join=[str(a.address)]) as b:
            b.use_channels({"Tagged": "tags"})
            await b.wait_connected(["a"])
            await a.kernel.spawn(sink)
            # The channel each message arrives on, as a's connection decodes the frames.
            channel_of: list[str] = []
            conn = a._conns["b"]
            deliver = conn._receiver

            def watch(frame):
                payloads = frame[6] if frame[1] == Kind.SEND_BATCH else [frame[6]]
                channel_of.extend(frame[2] for _ in payloads)
                return deliver(frame)

            conn._receiver = watch

            async def sender(ctx):
                for msg in sent:
                    await ctx.send(("a", "sink"), msg)

            await b.kernel.spawn(sender)
            await finished.wait()
            assert got == sent
            assert channel_of == ["", "", "tags", "tags", "", "tags", ""]


async def test_an_unsendable_value_fails_in_the_sender_and_leaves_the_stream_intact():
    got: list = []
    finished = trio.Event()

    async def sink(ctx):
        ctx.register("sink")
        while True:
            got.append(await ctx.receive())
            if got[-1] == "end":
                finished.set()

    with trio.fail_after(15):
        async with _node("a") as a, _node("b", join=[str(a.address)]) as b:
            await b.wait_connected(["a"])
            await a.kernel.spawn(sink)
            errors: list[str] = []

            async def sender(ctx):
                for n in range(60):  # a first send, then the cached sender, then open batches
                    if n % 20 == 5:
                        with pytest.raises(ProtocolError, match="cannot be sent to another node") as info:
                            await ctx.send(("a", "sink"), object())
                        errors.append(str(info.value))
                    await ctx.send(("a", "sink"), n)
                await ctx.send(("a", "sink"), "end")

            await b.kernel.spawn(sender)
            await finished.wait()
            assert got == [*range(60), "end"]
            assert len(errors) == 3
            assert b.is_connected("a")


async def test_a_process_stops_using_a_sender_the_node_dropped():
    # ctx.send keeps the last destination's sender entry; when the node drops entries (an
    # idle-link sweep samples use this way), the next send must go through the node again;
    # and a process that exits leaves the node's table of processes keeping entries.
    got: list = []
    first, second = trio.Event(), trio.Event()
    go_on, exited = trio.Event(), trio.Event()
    kept: list[bool] = []

    async def sink(ctx):
        while True:
            got.append(await ctx.receive())
            if len(got) == 20:
                first.set()
            if len(got) == 22:
                second.set()

    with trio.fail_after(15):
        async with _node("a") as a, _node("b", join=[str(a.address)]) as b:
            await b.wait_connected(["a"])
            await a.kernel.spawn(sink, name="sink")

            async def sender(ctx):
                for i in range(20):
                    await ctx.send(("a", "sink"), i)
                await go_on.wait()
                await ctx.send(("a", "sink"), 20)
                await ctx.send(("a", "sink"), 21)
                kept.append(ctx in b.kernel._send_cachers)

            async def watcher(ctx):
                await ctx.spawn(sender, monitor=True)
                await ctx.receive()  # its Down: it has exited
                exited.set()

            await b.kernel.spawn(watcher)
            await first.wait()
            before = b.sample_use("a")  # drops b's entries for a
            assert ("a", "sink") not in b.remote_senders
            await trio.sleep(0.01)  # (so that a recorded use is visibly later)
            go_on.set()
            await second.wait()
            assert got == list(range(22))
            assert ("a", "sink") in b.remote_senders  # made again, through the node
            assert b.last_used("a") > before
            await exited.wait()
            assert kept == [True]
            assert not b.kernel._send_cachers  # (a dead process is not kept alive by the table)
