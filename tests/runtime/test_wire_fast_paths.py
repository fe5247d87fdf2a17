"""The connection fast paths a node uses: send_nowait / send_raw_nowait,
receive_batch, and direct delivery to a receiver callback (TCP and simulated)."""

import logging

import msgpack
import pytest
import trio

from eco.runtime.handshake import Identity
from eco.runtime.secrets import Cookie
from eco.runtime.simulator import Simulation
from eco.runtime.tcp import open_tcp_transport
from eco.runtime.transport import ConnectionClosed, TransportConfig
from eco.runtime.wire import WIRE_VERSION, Envelope, FrameDecoder, FrameEncoder, Kind, ProtocolError

COOKIE = Cookie("fast-path-test-cookie-0123456789")


def config(node, **kw):
    kw.setdefault("keepalive_interval", 0.2)
    return TransportConfig(Identity("c", node, 1, COOKIE), **kw)


async def pair(nursery, server_handler, **server_kw):
    """A listening server transport and a client connection to it."""
    server = await nursery.start(_transport, config("server", **server_kw))
    client = await nursery.start(_transport, config("client"))
    address = await server.listen(server_handler)
    return await client.connect(address)


async def _transport(cfg, *, task_status=trio.TASK_STATUS_IGNORED):
    async with open_tcp_transport(cfg) as transport:
        task_status.started(transport)
        await trio.sleep_forever()


# ----------------------------------------------------------------------- decoder


def test_drain_to_splits_kinds_and_raw_mode_hands_over_frame_lists():
    encoder = FrameEncoder()
    encoder.add(Envelope(Kind.SEND, "a", ["n", 1], None, 1, b"x"))
    encoder.add(Envelope(Kind.PING, payload=2.5))
    encoder.add(Envelope(Kind.CAST, "b", None, ["m", 2], 3, {"k": [1]}))
    data = encoder.take()
    for raw in (False, True):
        decoder = FrameDecoder()
        decoder.feed(data)
        messages, others = [], []
        assert decoder.drain_to(messages.append, others.append, raw=raw) is False
        assert others == [Envelope(Kind.PING, payload=2.5)]
        if raw:
            assert messages == [[WIRE_VERSION, Kind.SEND, "a", ["n", 1], None, 1, b"x"], [WIRE_VERSION, Kind.CAST, "b", None, ["m", 2], 3, {"k": [1]}]]
            assert type(messages[0][1]) is Kind
        else:
            assert messages == [Envelope(Kind.SEND, "a", ["n", 1], None, 1, b"x"), Envelope(Kind.CAST, "b", None, ["m", 2], 3, {"k": [1]})]


def test_drain_to_delivers_good_frames_before_a_bad_one():
    good = FrameEncoder().encode(Envelope(Kind.SEND, sequence=1))
    bad = msgpack.packb([WIRE_VERSION, 9999, "", None, None, 0, None])
    decoder = FrameDecoder()
    decoder.feed(good + good + bad + good)
    got = []
    with pytest.raises(ProtocolError, match="unknown envelope kind 9999"):
        decoder.drain_to(got.append, got.append)
    assert [env.sequence for env in got] == [1, 1]
    with pytest.raises(ProtocolError):
        decoder.feed(good)


def test_drain_to_lets_callback_errors_through_unchanged_and_can_stop():
    encoder = FrameEncoder()
    for i in range(4):
        encoder.add(Envelope(Kind.SEND, sequence=i))
    decoder = FrameDecoder()
    decoder.feed(encoder.take())

    def boom(env):
        raise ValueError("callback bug")

    with pytest.raises(ValueError, match="callback bug"):  # not reported as malformed msgpack
        decoder.drain_to(boom, boom)
    got = []

    def take_one(env):
        got.append(env.sequence)
        decoder.stop()

    assert decoder.drain_to(take_one, take_one) is True
    assert decoder.drain_to(got.append, got.append) is False
    assert got[0] == 1 and [env.sequence for env in got[1:]] == [2, 3]


def test_encode_fields_matches_encode_and_validates():
    encoder = FrameEncoder()
    env = Envelope(Kind.CALL, "ch", ["a", 1], ["b", 2], 7, [1, 2])
    assert encoder.encode_fields(*env) == encoder.encode(env)
    assert encoder.encode_fields(34, *env[1:]) == encoder.encode(env)  # plain ints work too
    with pytest.raises(ProtocolError, match="unknown envelope kind"):
        encoder.encode_fields(9999, "", None, None, 0, None)
    with pytest.raises(ProtocolError, match="sequence must be an int"):
        encoder.encode_fields(Kind.SEND, "", None, None, "1", None)
    with pytest.raises(ProtocolError, match="cannot encode"):
        encoder.encode_fields(Kind.SEND, "", None, None, 0, object())


# --------------------------------------------------------------------------- TCP


async def test_send_nowait_and_receiver_callback_keep_order():
    got = []
    done = trio.Event()

    def on_envelope(env):
        got.append(env)
        if len(got) == 3000:
            done.set()

    async def handler(conn):
        conn.set_receiver(on_envelope)
        await conn.wait_closed()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            conn = await pair(nursery, handler)
            for i in range(3000):
                try:
                    if i % 2:
                        conn.send_nowait(Envelope(Kind.CAST, "c", None, ["p", 1], i, b"x" * 100))
                    else:
                        conn.send_raw_nowait(Kind.CAST, "c", None, ["p", 1], i, b"x" * 100)
                except trio.WouldBlock:
                    await conn.send(Envelope(Kind.CAST, "c", None, ["p", 1], i, b"x" * 100))
            await done.wait()
            await conn.aclose()
            nursery.cancel_scope.cancel()
    assert [env.sequence for env in got] == list(range(3000))
    assert got[1] == Envelope(Kind.CAST, "c", None, ["p", 1], 1, b"x" * 100)


async def test_raw_receiver_echo_and_receive_batch():
    async def handler(conn):
        def echo(frame):
            assert frame[0] == WIRE_VERSION
            conn.send_raw_nowait(*frame[1:])

        conn.set_receiver(echo, raw=True)
        await conn.wait_closed()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            conn = await pair(nursery, handler)
            # One round trip at a time (the latency path), then a burst.
            for i in range(20):
                conn.send_nowait(Envelope(Kind.CALL, "c", None, None, i, i))
                assert (await conn.receive()).payload == i
            for i in range(20, 520):
                await conn.send(Envelope(Kind.CALL, "c", None, None, i, i))
            seen = []
            while len(seen) < 500:
                batch = await conn.receive_batch(max_items=64)
                assert 1 <= len(batch) <= 64
                seen += [env.sequence for env in batch]
            assert seen == list(range(20, 520))
            await conn.aclose()
            with pytest.raises(ConnectionClosed):
                await conn.receive_batch()
            nursery.cancel_scope.cancel()


async def test_send_nowait_raises_would_block_when_the_buffer_is_full_and_closed_after_close():
    async def handler(conn):
        await conn.wait_closed()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_transport, config("server"))
            client = await nursery.start(_transport, config("client", send_buffer_bytes=1000))
            conn = await client.connect(await server.listen(handler))
            with pytest.raises(ProtocolError):
                conn.send_nowait(Envelope(Kind.CAST, sequence="not an int"))
            with pytest.raises(trio.WouldBlock):
                for i in range(100):  # no checkpoint in between, so the writer cannot drain
                    conn.send_nowait(Envelope(Kind.CAST, sequence=i, payload=b"x" * 100))
            await conn.send(Envelope(Kind.CAST))  # waits for space instead
            await conn.aclose()
            with pytest.raises(ConnectionClosed):
                conn.send_nowait(Envelope(Kind.CAST))
            with pytest.raises(ConnectionClosed):
                conn.send_raw_nowait(Kind.CAST, "", None, None, 0, None)
            nursery.cancel_scope.cancel()


async def test_switching_back_to_the_queue_from_the_callback_keeps_order():
    got = []
    queued = []
    done = trio.Event()

    async def handler(conn):
        def first_five(env):
            got.append(env.sequence)
            if len(got) == 5:
                conn.set_receiver(None)

        conn.set_receiver(first_five)
        while len(queued) < 195:
            queued.append((await conn.receive()).sequence)
        done.set()
        await conn.wait_closed()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            conn = await pair(nursery, handler)
            for i in range(200):  # one burst: usually one read
                conn.send_nowait(Envelope(Kind.CAST, sequence=i))
            await done.wait()
            await conn.aclose()
            nursery.cancel_scope.cancel()
    assert got == [0, 1, 2, 3, 4]
    assert queued == list(range(5, 200))


async def test_a_failing_receiver_closes_only_its_connection(caplog):
    async def handler(conn):
        def broken(env):
            if env.sequence == 3:
                raise RuntimeError("node bug")

        conn.set_receiver(broken)
        await conn.wait_closed()

    with trio.fail_after(10), caplog.at_level(logging.ERROR, logger="eco.transport"):
        async with trio.open_nursery() as nursery:
            conn = await pair(nursery, handler)
            for i in range(10):
                conn.send_nowait(Envelope(Kind.CAST, sequence=i))
            await conn.wait_closed()
            # The server transport still accepts and serves others.
            conn2 = await pair(nursery, lambda c: c.wait_closed())
            conn2.send_nowait(Envelope(Kind.CAST))
            await conn2.aclose()
            nursery.cancel_scope.cancel()
    assert any("receiver of connection" in r.getMessage() for r in caplog.records)


async def test_queued_envelopes_go_to_a_receiver_set_later():
    got = []
    all_in = trio.Event()

    async def handler(conn):
        while len(conn._inbox) < 10:  # (wait until the reader queued them all)
            await trio.sleep(0.01)
        conn.set_receiver(got.append)
        all_in.set()
        await conn.wait_closed()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            conn = await pair(nursery, handler)
            for i in range(10):
                conn.send_nowait(Envelope(Kind.CAST, sequence=i))
            await all_in.wait()
            await conn.aclose()
            nursery.cancel_scope.cancel()
    assert [env.sequence for env in got] == list(range(10))


# --------------------------------------------------------------------- simulated


def test_fast_paths_work_the_same_on_the_simulated_network():
    sim = Simulation(3, transport_options={"keepalive_interval": 0.5})
    got = []

    async def b(transport, ctx):
        async def handler(conn):
            def echo(frame):
                got.append(frame[5])
                conn.send_raw_nowait(*frame[1:])

            conn.set_receiver(echo, raw=True)
            await conn.wait_closed()

        await transport.listen(handler)
        await trio.sleep(30)

    replies = []

    async def a(transport, ctx):
        await trio.sleep(0.01)
        conn = await transport.connect("b")
        for i in range(50):
            conn.send_nowait(Envelope(Kind.CALL, sequence=i))
        while len(replies) < 50:
            replies.extend(env.sequence for env in await conn.receive_batch())
        await conn.aclose()

    sim.add_host("b", b)
    sim.add_host("a", a)
    sim.run(max_time=40)
    assert got == list(range(50))
    assert replies == list(range(50))
