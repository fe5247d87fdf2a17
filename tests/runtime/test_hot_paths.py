"""The per-message hot paths: pre-encoded frame heads, the node's synchronous remote
send, the inlined receive and receive_batch (kernel, wire, TCP and simulated network)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from eco.runtime.errors import NotInProcess, ReceiveTimeout
from eco.runtime.handshake import Identity
from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_config
from eco.runtime.pid import PID
from eco.runtime.secrets import Cookie
from eco.runtime.simulator import Simulation
from eco.runtime.tcp import open_tcp_transport
from eco.runtime.transport import Backoff, ConnectionClosed, TransportConfig
from eco.runtime.wire import Envelope, FrameEncoder, FrameTooLarge, Kind, ProtocolError

pytestmark = pytest.mark.timeout(30)

COOKIE = Cookie("hot-path-test-cookie-0123456789")


def config(node, **kw):
    kw.setdefault("keepalive_interval", 0.2)
    return TransportConfig(Identity("c", node, 1, COOKIE), **kw)


async def _transport(cfg, *, task_status=trio.TASK_STATUS_IGNORED):
    async with open_tcp_transport(cfg) as transport:
        task_status.started(transport)
        await trio.sleep_forever()


@asynccontextmanager
async def running_node(name: str, join=(), **options):
    kernel = Kernel(name, incarnation=1)
    async with kernel, open_tcp_transport(node_transport_config("t", name, 1, COOKIE)) as transport:
        node = Node(kernel, transport, **options)
        async with trio.open_nursery() as nursery:
            node.address = await nursery.start(node.serve, "127.0.0.1:0", list(join))
            yield node
            nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------- wire


def test_a_head_plus_its_payload_is_the_whole_frame():
    encoder = FrameEncoder(max_frame_size=300)
    for dest in ("sink", PID("n", 3, 4).to_msgpack(), None):
        head = encoder.encode_head(Kind.SEND, "chan", None, dest, 7)
        for payload in (b"x" * 100, {"k": [1, 2]}, None):
            frame = head + encoder.encode_with_head(head, payload)
            assert frame == encoder.encode(Envelope(Kind.SEND, "chan", None, dest, 7, payload))
    with pytest.raises(ProtocolError):
        encoder.encode_head(999, "", None, None, 0)
    with pytest.raises(ProtocolError):
        encoder.encode_head(Kind.SEND, 5, None, None, 0)
    head = encoder.encode_head(Kind.SEND, "", None, None, 0)
    with pytest.raises(ProtocolError, match="payload"):
        encoder.encode_with_head(head, object())
    with pytest.raises(FrameTooLarge):
        encoder.encode_with_head(head, b"x" * 300)


# ----------------------------------------------------------------------- TCP


async def test_payload_sender_over_tcp_keeps_order_and_reports_errors():
    got: list[Envelope] = []
    enough = trio.Event()

    async def handler(conn):
        async for env in conn:
            got.append(env)
            if got[-1].payload == "end":
                enough.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_transport, config("server"))
            client = await nursery.start(_transport, config("client", send_buffer_bytes=4000, max_frame_size=1000))
            conn = await client.connect(await server.listen(handler))
            head = conn.frame_head(Kind.SEND, "c", None, "sink", 0)
            send = conn.payload_sender(head)
            with pytest.raises(ProtocolError):
                send(object())
            with pytest.raises(FrameTooLarge):
                send(b"x" * 1000)
            with pytest.raises(ProtocolError):
                conn.frame_head(Kind.SEND, "c", None, "sink", "not an int")
            sent = 0
            with pytest.raises(trio.WouldBlock):  # no checkpoint: the writer cannot drain the buffer
                while True:
                    (send if sent % 2 else lambda p: conn.send_payload_nowait(head, p))(sent)
                    sent += 1
            assert 20 < sent < 1000
            total = sent + 50
            while sent < total:
                try:
                    send(sent)
                    sent += 1
                except trio.WouldBlock:
                    await trio.sleep(0.001)
            await conn.send(Envelope(Kind.SEND, payload="end"))
            await enough.wait()
            got.pop()
            assert [env.payload for env in got] == list(range(total))
            assert {(env.kind, env.channel, env.destination) for env in got} == {(Kind.SEND, "c", "sink")}
            await conn.aclose()
            with pytest.raises(ConnectionClosed):
                send(1)
            nursery.cancel_scope.cancel()


def test_frame_heads_work_the_same_on_the_simulated_network():
    sim = Simulation(2, transport_options={"keepalive_interval": 0.5})
    got = []

    async def b(transport, ctx):
        async def handler(conn):
            async for env in conn:
                got.append((env.kind, env.destination, env.payload))

        await transport.listen(handler)
        await trio.sleep(30)

    async def a(transport, ctx):
        await trio.sleep(0.01)
        conn = await transport.connect("b")
        send = conn.payload_sender(conn.frame_head(Kind.CAST, "", None, "x", 0))
        for i in range(20):
            send(i)
        with pytest.raises(ProtocolError):
            conn.frame_head(Kind.CAST, 1, None, "x", 0)
        await trio.sleep(1)
        await conn.aclose()

    sim.add_host("b", b)
    sim.add_host("a", a)
    sim.run(max_time=40)
    assert got == [(Kind.CAST, "x", i) for i in range(20)]


# ----------------------------------------------------------------------- kernel


async def test_receive_batch_takes_what_is_queued_in_order():
    async with Kernel("n1") as kernel:
        out: list = []
        done, timed_out = trio.Event(), trio.Event()

        async def proc(ctx):
            out.append(await ctx.receive_batch())
            out.append(await ctx.receive_batch(max_items=2))
            out.append(await ctx.receive())  # the rest is still queued, in order
            out.append(await ctx.receive_batch())
            with pytest.raises(ReceiveTimeout):
                await ctx.receive_batch(timeout=0.01)
            with pytest.raises(ValueError):
                await ctx.receive_batch(max_items=0)
            timed_out.set()
            out.append(await ctx.receive_batch(timeout=5))  # waits for the next message
            done.set()

        pid = await kernel.spawn(proc)
        await trio.testing.wait_all_tasks_blocked()
        for m in range(3):
            kernel.cast(pid, m)
        await trio.testing.wait_all_tasks_blocked()
        for m in range(3, 8):
            kernel.cast(pid, m)
        await timed_out.wait()
        kernel.cast(pid, "last")
        await done.wait()
        assert out == [[0, 1, 2], [3, 4], 5, [6, 7], ["last"]]
        with pytest.raises(NotInProcess):
            await kernel.receive_batch()


async def test_receive_batch_frees_room_for_blocked_senders():
    async with Kernel("n1", mailbox_size=3) as kernel:
        got: list = []

        async def proc(ctx):
            while len(got) < 10:
                got.extend(await ctx.receive_batch())
                await trio.sleep(0)

        pid = await kernel.spawn(proc)
        for m in range(10):
            await kernel.send(pid, m)  # blocks while the mailbox is full
        with trio.fail_after(5):
            while len(got) < 10:
                await trio.sleep(0.01)
        assert got == list(range(10))


async def test_a_busy_receive_is_still_a_schedule_point():
    async with Kernel("n1", mailbox_size=10_000) as kernel:
        ran_meanwhile = []
        done = trio.Event()

        async def proc(ctx):
            for _ in range(1000):
                kernel.cast(ctx.self, "m")  # (own mailbox: never blocks under capacity)
            for _ in range(1000):
                assert await ctx.receive() == "m"
            done.set()

        async def other():
            while not done.is_set():
                ran_meanwhile.append(1)
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            await kernel.spawn(proc)
            await done.wait()
        assert len(ran_meanwhile) >= 1000 // 64 - 1


async def test_receive_from_a_helper_task_is_refused_even_with_messages_queued():
    async with Kernel("n1") as kernel:
        errors = []
        done = trio.Event()

        async def proc(ctx):
            ctx.kernel.cast(ctx.self, "m")

            async def helper():
                try:
                    await ctx.receive()
                except NotInProcess as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(helper)
            assert await ctx.receive() == "m"
            done.set()

        await kernel.spawn(proc)
        await done.wait()
        assert len(errors) == 1


# ----------------------------------------------------------------------- node


async def test_remote_sends_use_the_new_connection_after_a_peer_restarts():
    got: list = []
    arrived = trio.Event()

    async def sink(ctx):
        ctx.register("sink")
        while True:
            got.append(await ctx.receive())
            if got[-1] == "last":
                arrived.set()

    async def one_node(port: int, incarnation: int, *, task_status=trio.TASK_STATUS_IGNORED):
        kernel = Kernel("a", incarnation=incarnation)
        async with kernel, open_tcp_transport(node_transport_config("t", "a", incarnation, COOKIE)) as transport:
            node = Node(kernel, transport)
            await kernel.spawn(sink)
            async with trio.open_nursery() as nursery:
                task_status.started(await nursery.start(node.serve, f"127.0.0.1:{port}"))

    with trio.fail_after(20):
        async with trio.open_nursery() as outer:
            first = trio.CancelScope()

            async def first_a(*, task_status=trio.TASK_STATUS_IGNORED):
                with first:
                    await one_node(0, 1, task_status=task_status)

            address = await outer.start(first_a)
            fast = Backoff(initial=0.02, maximum=0.05)
            async with running_node("b", join=[str(address)], backoff=fast) as b:
                await b.wait_connected(["a"])
                for m in [*range(100), "last"]:
                    await b.kernel.send(("a", "sink"), m)
                await arrived.wait()
                assert got == [*range(100), "last"]
                first.cancel()
                await b.wait_disconnected("a")
                await b.kernel.send(("a", "sink"), "dropped")  # not connected: dropped, no error
                got.clear()
                arrived = trio.Event()
                await outer.start(one_node, address.port, 2)
                await b.wait_connected(["a"])
                for m in ["again", "last"]:
                    await b.kernel.send(("a", "sink"), m)
                await arrived.wait()
                assert got == ["again", "last"]
            outer.cancel_scope.cancel()
