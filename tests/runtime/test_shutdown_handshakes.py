"""A node that is stopping refuses newcomers with ``stopping``, and nobody warns about it.

In an orderly cluster shutdown every node stops at about the same time; a node still up may
dial one that is going away (to repair its overlay view, say).  That is no misconfiguration:
the refusal (or a connection lost mid-handshake) is logged at info.  A refusal from a live
peer (wrong cookie, wrong cluster, garbage) is still a warning.
"""

import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from eco.runtime.handshake import Handshake, Identity, Reason, Refused, Role, Send
from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_config
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import TcpAddress, TcpTransport, _Framed, open_tcp_transport
from eco.runtime.transport import HandshakeRefused, TransportConfig, drive_handshake
from eco.runtime.wire import Envelope, Kind

COOKIE = Cookie("shutdown-test-cookie-0123456789abcdef")

pytestmark = pytest.mark.timeout(30)


def _config(node: str, cookie: Cookie = COOKIE) -> TransportConfig:
    return TransportConfig(Identity("c", node, 1, cookie), handshake_timeout=2.0)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@asynccontextmanager
async def _closing_server() -> AsyncIterator[tuple[TcpTransport, TcpAddress]]:
    """A transport listening as node ``server`` that closes each connection it accepts: ``(transport, address)``."""

    async def close(conn):
        await conn.aclose("done")

    async with open_tcp_transport(_config("server")) as server:
        yield server, await server.listen(close)


def test_a_stopping_acceptor_refuses_the_hello_with_stopping():
    initiator = Handshake(Identity("c", "n1", 1, COOKIE), Role.INITIATOR, b"1" * 16)
    acceptor = Handshake(Identity("c", "n2", 1, COOKIE), Role.ACCEPTOR, b"2" * 16, stopping=True)
    [hello] = [e.envelope for e in initiator.start(0.0) if isinstance(e, Send)]
    acceptor.start(0.0)
    effects = acceptor.receive(hello)
    [refuse] = [e.envelope for e in effects if isinstance(e, Send)]
    assert [e.reason for e in effects if isinstance(e, Refused)] == [Reason.STOPPING]
    [refused] = initiator.receive(refuse)
    assert refused.reason is Reason.STOPPING and refused.by_peer


async def test_dialling_a_stopping_transport_is_refused_without_a_warning_a_bad_cookie_still_warns(caplog):
    caplog.set_level(logging.INFO)
    with trio.fail_after(20):
        async with _closing_server() as (server, address):
            server.stopping = True
            async with open_tcp_transport(_config("client")) as client:
                with pytest.raises(HandshakeRefused) as info:
                    await client.connect(address)
                assert info.value.refusal.reason is Reason.STOPPING
            assert _warnings(caplog) == []
            assert any("stopping" in r.getMessage() for r in caplog.records if r.name == "eco.transport")
            server.stopping = False
            async with open_tcp_transport(_config("intruder", Cookie("wrong-cookie-wrong-cookie-000"))) as bad:
                with pytest.raises(HandshakeRefused):
                    await bad.connect(address)
    assert any("bad_cookie" in m for m in _warnings(caplog))


async def test_a_peer_hanging_up_mid_handshake_is_logged_at_info(caplog):
    caplog.set_level(logging.INFO)
    with trio.fail_after(20):
        async with _closing_server() as (_, address):
            stream = await trio.open_tcp_stream(address.host, address.port)
            await stream.receive_some(4096)  # the server's HELLO
            await stream.aclose()  # a dialler that stopped before it said HELLO
            with trio.fail_after(5):
                while not any("connection lost during the handshake" in r.getMessage() for r in caplog.records):
                    await trio.sleep(0.01)
    assert _warnings(caplog) == []


async def test_a_node_that_stopped_serving_refuses_newcomers_with_stopping(caplog):
    caplog.set_level(logging.INFO)
    with trio.fail_after(20):
        kernel = Kernel("n1", incarnation=1)
        async with kernel, open_tcp_transport(node_transport_config("c", "n1", 1, COOKIE)) as transport:
            node = Node(kernel, transport)
            async with trio.open_nursery() as nursery:
                address = await nursery.start(node.serve, "127.0.0.1:0")
                nursery.cancel_scope.cancel()  # the node stops; its transport (listener) still runs a moment
            assert transport.stopping
            async with open_tcp_transport(node_transport_config("c", "n2", 1, COOKIE)) as other:
                with pytest.raises(HandshakeRefused) as info:
                    await other.connect(address)
                assert info.value.refusal.reason is Reason.STOPPING
    assert _warnings(caplog) == []



async def test_a_peer_resetting_while_this_side_closes_is_no_warning(caplog):
    """Closing a connection while the peer's process exits (both stopping): the reset that
    interrupts the goodbye is how such a close ends, not a broken connection to report."""
    caplog.set_level(logging.INFO)
    closed: list = []

    async def handler(conn):
        for i in range(12):  # queued at once (under send_buffer_bytes); the writer is busy for a while
            conn.send_nowait(Envelope(Kind.SEND, "c", None, None, i, b"x" * 65536))
        await conn.aclose("node stopping")  # closing from here on, whatever the peer does
        closed.append(conn.close_reason)

    with trio.fail_after(20):
        async with open_tcp_transport(_config("server")) as server:
            address = await server.listen(handler)
            stream = await trio.open_tcp_stream(address.host, address.port)
            framed = _Framed(stream, _config("client"))
            hs = Handshake(Identity("c", "client", 1, COOKIE), Role.INITIATOR, os.urandom(16), timeout=2.0)
            await drive_handshake(hs, framed.send, framed.receive, str(address))
            await stream.receive_some(1024)  # the server is sending
            # The client's process exits without reading: its socket closes with a reset.
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.socket.close()
            while not closed:
                await trio.sleep(0.01)
    assert _warnings(caplog) == []
