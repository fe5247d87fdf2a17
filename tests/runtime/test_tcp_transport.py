"""The TCP transport on real loopback sockets, including misbehaving peers."""

import logging
import os
import random

import msgpack
import pytest
import trio

from eco.runtime.handshake import Handshake, Identity, Reason, Role
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import TcpAddress, _Framed, open_tcp_transport
from eco.runtime.transport import (
    ConnectError,
    ConnectionClosed,
    HandshakeRefused,
    TransportConfig,
    drive_handshake,
)
from eco.runtime.wire import Envelope, FrameEncoder, Kind

COOKIE = Cookie("tcp-test-cookie-0123456789abcdef")


def config(node, *, cookie=COOKIE, cluster="c", **kw):
    kw.setdefault("keepalive_interval", 0.1)
    kw.setdefault("handshake_timeout", 1.0)
    return TransportConfig(Identity(cluster, node, 1, cookie), **kw)


class EchoServer:
    """Echoes every message back and remembers what each peer sent."""

    def __init__(self):
        self.received = {}
        self.closed = {}

    async def handler(self, conn):
        got = self.received.setdefault(conn.peer.node, [])
        async for env in conn:
            got.append(env.sequence)
            await conn.send(env)
        self.closed[conn.peer.node] = conn.close_reason


async def good_peer_exchange(address, count, name="good"):
    """A well-behaved peer: sends ``count`` messages paced by the echoes, checks order."""
    async with open_tcp_transport(config(name)) as transport:
        conn = await transport.connect(address)
        echoes = []
        for i in range(count):
            await conn.send(Envelope(Kind.SEND, "ch", None, None, i, b"payload"))
            if i % 10 == 9:  # keep it running alongside the bad peer
                while len(echoes) < i + 1:
                    echoes.append((await conn.receive()).sequence)
        while len(echoes) < count:
            echoes.append((await conn.receive()).sequence)
        assert echoes == list(range(count))
        await conn.aclose("done")


async def raw_handshake(address, *, node="raw", then=b""):
    """Authenticate a bare socket (no connection tasks), for peers that then misbehave;
    ``then`` goes out in the same write as this side's ACCEPT, its last handshake frame."""
    stream = await trio.open_tcp_stream(address.host, address.port)
    framed = _Framed(stream, config(node))

    async def send(env):
        data = framed.encoder.encode(env)
        await stream.send_all(data + then if env.kind == Kind.ACCEPT else data)

    hs = Handshake(Identity("c", node, 1, COOKIE), Role.INITIATOR, os.urandom(16), timeout=1.0)
    await drive_handshake(hs, send, framed.receive, str(address))
    return stream


async def read_until_eof(stream):
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_listen_on_port_zero_reports_the_bound_port_and_exchanges_10k_messages_in_order():
    server = EchoServer()
    with trio.fail_after(20):
        async with open_tcp_transport(config("server")) as transport:
            address = await transport.listen(server.handler, "127.0.0.1:0")
            assert address.host == "127.0.0.1" and address.port > 0
            async with open_tcp_transport(config("client")) as client:
                conn = await client.connect(str(address))
                assert conn.peer.node == "server" and conn.peer.incarnation == 1

                async def sender():
                    for i in range(10_000):
                        await conn.send(Envelope(Kind.SEND, "ch", ["client", 1, 1], ["server", 2, 1], i, {"n": i}))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sender)
                    got = [(await conn.receive()).sequence for _ in range(10_000)]
                assert got == list(range(10_000))
                assert server.received["client"] == list(range(10_000))
                await conn.aclose("finished")
                assert conn.close_reason == "finished"


async def test_graceful_close_delivers_everything_already_sent():
    received = []
    done = trio.Event()

    async def handler(conn):
        async for env in conn:
            received.append(env.sequence)
        received.append(conn.close_reason)
        done.set()

    with trio.fail_after(10):
        async with open_tcp_transport(config("server")) as server, open_tcp_transport(config("client")) as client:
            address = await server.listen(handler)
            conn = await client.connect(address)
            for i in range(1000):
                await conn.send(Envelope(Kind.CAST, sequence=i))
            await conn.aclose("bye")
            await done.wait()
    assert received == [*range(1000), "closed by the peer: bye"]
    with pytest.raises(ConnectionClosed):
        await conn.send(Envelope(Kind.CAST))


async def test_connect_errors_are_clear():
    async with open_tcp_transport(config("client")) as client:
        # Grab a free port and close it again so nothing listens there.
        sock = trio.socket.socket()
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        with pytest.raises(ConnectError, match=f"cannot connect to 127.0.0.1:{port}"):
            await client.connect(("127.0.0.1", port))
    with pytest.raises(ValueError, match="HOST:PORT"):
        TcpAddress.parse("nonsense")


async def test_wrong_cookie_and_wrong_cluster_are_refused_while_a_good_peer_continues(caplog):
    server = EchoServer()
    with trio.fail_after(20):
        async with open_tcp_transport(config("server")) as transport:
            address = await transport.listen(server.handler)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(good_peer_exchange, address, 300)
                async with open_tcp_transport(config("intruder", cookie=Cookie("wrong-cookie-wrong-cookie-000"))) as bad:
                    with pytest.raises(HandshakeRefused) as info:
                        await bad.connect(address)
                    assert info.value.refusal.reason is Reason.BAD_COOKIE
                async with open_tcp_transport(config("stranger", cluster="other")) as bad:
                    with pytest.raises(HandshakeRefused) as info:
                        await bad.connect(address)
                    assert info.value.refusal.reason is Reason.WRONG_CLUSTER
    assert server.received["good"] == list(range(300))
    assert "intruder" not in server.received and "stranger" not in server.received
    refusals = [r.getMessage() for r in caplog.records if r.name == "eco.transport" and "handshake" in r.getMessage()]
    assert any("127.0.0.1:" in m and "bad_cookie" in m for m in refusals)
    assert any("wrong_cluster" in m for m in refusals)
    assert "wrong-cookie" not in caplog.text and "tcp-test-cookie" not in caplog.text


async def test_garbage_bytes_are_refused_while_a_good_peer_continues(caplog):
    server = EchoServer()
    with trio.fail_after(20):
        async with open_tcp_transport(config("server")) as transport:
            address = await transport.listen(server.handler)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(good_peer_exchange, address, 300)
                # Seeded noise: unseeded bytes can start with what reads as the header of a huge
                # frame, which then ends in a handshake timeout rather than "malformed".
                noise = random.Random(4096).randbytes(4096)
                for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xc1\xc1\xc1", noise):
                    stream = await trio.open_tcp_stream(address.host, address.port)
                    await stream.send_all(garbage)
                    reply = await read_until_eof(stream)  # the server closes on us
                    await stream.aclose()
                    frames = list(msgpack.Unpacker(__import__("io").BytesIO(reply)))
                    assert frames[-1][1] == Kind.REFUSE and frames[-1][6] == {"reason": "malformed"}
    assert server.received["good"] == list(range(300))
    assert any("malformed" in r.getMessage() and "127.0.0.1:" in r.getMessage() for r in caplog.records)


async def test_an_oversized_frame_closes_only_that_connection_and_keeps_what_came_before(caplog):
    server = EchoServer()
    with trio.fail_after(20):
        async with open_tcp_transport(config("server", max_frame_size=64 * 1024)) as transport:
            address = await transport.listen(server.handler)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(good_peer_exchange, address, 300)
                stream = await raw_handshake(address)
                encoder = FrameEncoder()
                for i in range(5):
                    encoder.add(Envelope(Kind.SEND, sequence=i))
                encoder.add(Envelope(Kind.SEND, sequence=99, payload=b"x" * 200_000))
                with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
                    await stream.send_all(encoder.take())
                    await read_until_eof(stream)
                    await stream.send_all(b"x" * 1_000_000)  # the server is gone
                await stream.aclose()
    assert server.received["raw"] == [0, 1, 2, 3, 4]
    assert "exceeds the maximum frame size" in server.closed["raw"]
    assert server.received["good"] == list(range(300))
    assert any("protocol error" in r.getMessage() and "raw" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("with_the_handshake", [False, True], ids=["after", "in-the-handshake-s-last-read"])
async def test_a_send_batch_without_a_payload_list_closes_only_that_connection(caplog, with_the_handshake):
    # (in-the-handshake-s-last-read: both frames reach the server in the read that ends its
    # handshake; the good one is still delivered, then the bad one closes the connection)
    server = EchoServer()
    raw_got: list[Envelope] = []
    raw_closed: list[str] = []

    async def handler(conn):
        if conn.peer.node != "raw":
            return await server.handler(conn)
        async for env in conn:  # (no echo: the connection is closed by then)
            raw_got.append(env)
        raw_closed.append(conn.close_reason)

    with trio.fail_after(20):
        async with open_tcp_transport(config("server")) as transport:
            address = await transport.listen(handler)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(good_peer_exchange, address, 300)
                good = FrameEncoder().encode(Envelope(Kind.SEND_BATCH, "c", None, None, 7, [b"a", b"b"]))
                bad = msgpack.packb([1, int(Kind.SEND_BATCH), "", None, None, 8, b"not a list"])
                if with_the_handshake:
                    stream = await raw_handshake(address, then=good + bad)
                else:
                    stream = await raw_handshake(address)
                    await stream.send_all(good + bad)
                await read_until_eof(stream)  # the server closes on us
                await stream.aclose()
    # The good batch arrived as its two SENDs; the bad one closed that connection only.
    assert raw_got == [Envelope(Kind.SEND, "c", None, None, 7, b"a"), Envelope(Kind.SEND, "c", None, None, 7, b"b")]
    assert "SEND_BATCH" in raw_closed[0]
    assert server.received["good"] == list(range(300))
    assert any("protocol error" in r.getMessage() and "raw" in r.getMessage() for r in caplog.records)


async def test_silent_peers_are_dropped_by_handshake_timeout_and_keepalive(caplog):
    server = EchoServer()
    with trio.fail_after(20):
        async with open_tcp_transport(config("server", keepalive_interval=0.1, keepalive_misses=3, handshake_timeout=0.5)) as transport:
            address = await transport.listen(server.handler)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(good_peer_exchange, address, 300)
                # 1. Connects and never says HELLO.
                mute = await trio.open_tcp_stream(address.host, address.port)
                # 2. Completes the handshake, then goes silent (a half-open peer).
                half_open = await raw_handshake(address, node="zombie")
                start = trio.current_time()
                await read_until_eof(mute)
                await read_until_eof(half_open)  # pings arrive, then the server gives up
                assert trio.current_time() - start < 5
                await mute.aclose()
                await half_open.aclose()
    assert "keepalive timeout" in server.closed["zombie"]
    assert server.received["good"] == list(range(300))
    messages = [r.getMessage() for r in caplog.records]
    assert any("timeout" in m and "did not complete" in m for m in messages)


async def test_a_failing_handler_does_not_stop_the_listener(caplog):
    calls = []

    async def handler(conn):
        calls.append(conn.peer.node)
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        await conn.send(Envelope(Kind.SEND, sequence=7))
        await conn.receive()

    with trio.fail_after(10):
        async with open_tcp_transport(config("server")) as server:
            address = await server.listen(handler)
            async with open_tcp_transport(config("a")) as a, open_tcp_transport(config("b")) as b:
                first = await a.connect(address)
                await first.wait_closed()
                second = await b.connect(address)
                assert (await second.receive()).sequence == 7
                await second.aclose()
    assert calls == ["a", "b"]
    assert "handler bug" in caplog.text


async def test_backpressure_with_a_slow_receiver_is_not_mistaken_for_a_dead_peer():
    release = trio.Event()
    got = []

    async def handler(conn):
        await release.wait()
        async for env in conn:
            got.append(env.sequence)
            if len(got) == 3000:
                return

    with trio.fail_after(20):
        async with open_tcp_transport(config("server", receive_queue=16, keepalive_interval=0.05)) as server:
            address = await server.listen(handler)
            async with open_tcp_transport(config("client", send_buffer_bytes=4096, keepalive_interval=0.05)) as client:
                conn = await client.connect(address)
                blocked = False
                for i in range(3000):
                    with trio.move_on_after(0.5) as scope:
                        await conn.send(Envelope(Kind.SEND, sequence=i, payload=b"x" * 1000))
                    if scope.cancelled_caught:
                        blocked = True  # the buffers are full: the sender is held back
                        await trio.sleep(0.3)  # several keepalive intervals while stuck
                        release.set()
                        await conn.send(Envelope(Kind.SEND, sequence=i, payload=b"x" * 1000))
                assert blocked
                await conn.wait_closed()
    assert got == list(range(3000))
