"""A small mesh of transport connections carrying Raft messages between a fixed set of peers.

Each node dials every peer (``reconnecting``, with the transport's backoff) and sends its Raft
messages on that outgoing connection; whatever arrives on any connection, outgoing or accepted,
is handed to the driver. So no tie-breaking between the two connections of a pair is needed.
Messages travel as ``Envelope(Kind.RAFT, "raft", payload=message_to_wire(msg))``.

::

    mesh = RaftMesh(transport, {"n2": "127.0.0.1:7002", "n3": "127.0.0.1:7003"})
    driver = RaftDriver("n1", ["n1", "n2", "n3"], storage, mesh.send)
    mesh.deliver = driver.deliver
    await transport.listen(mesh.handle_connection, "127.0.0.1:7001")
    nursery.start_soon(mesh.run)

Sending never blocks: a message for a peer that is not connected, or whose send buffer is
full, is dropped (Raft retransmits).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import trio

from .transport import Backoff, Connection, ConnectionClosed, Transport, reconnecting
from .wire import Envelope, Kind

log = logging.getLogger("eco.raft")

RAFT_CHANNEL = "raft"
_RAFT_KIND = int(Kind.RAFT)


class RaftMesh:
    """Connections to every Raft peer; see the module docstring."""

    def __init__(
        self,
        transport: Transport,
        peers: Mapping[str, Any],
        *,
        deliver: Callable[[Any, Any], None] | None = None,
        backoff: Backoff = Backoff(initial=0.02, maximum=0.5, reset_after=2.0),
        rng: random.Random | None = None,
    ) -> None:
        self.transport = transport
        self.peers = dict(peers)  # peer id -> address
        self.deliver = deliver
        self.backoff = backoff
        self._rng = rng or random.Random()
        self._out: dict[str, Connection] = {}
        self.dropped = 0

    def send(self, peer_id: Any, wire_msg: list) -> None:
        """Send one Raft message if ``peer_id`` is connected; drop it otherwise."""
        conn = self._out.get(peer_id)
        if conn is None:
            self.dropped += 1
            return
        try:
            # The wire's fast path: no Envelope object per message.
            conn.send_raw_nowait(_RAFT_KIND, RAFT_CHANNEL, None, None, 0, wire_msg)
        except (trio.WouldBlock, ConnectionClosed):
            self.dropped += 1

    def connected(self) -> set[str]:
        """Peers with an open outgoing connection."""
        return {p for p, c in self._out.items() if not c.closed}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a connection to every peer until cancelled."""
        async with trio.open_nursery() as nursery:
            for peer, address in sorted(self.peers.items()):
                nursery.start_soon(self._keep_peer, peer, address)
            task_status.started()

    async def _keep_peer(self, peer: str, address: Any) -> None:
        async def session(conn: Connection) -> None:
            self._out[peer] = conn
            try:
                conn.set_receiver(self.on_frame_from(conn), raw=True)
                await conn.wait_closed()
            finally:
                if self._out.get(peer) is conn:
                    del self._out[peer]

        await reconnecting(self.transport, address, session, backoff=self.backoff, rng=self._rng, expect_node=peer)

    def on_envelope_from(self, conn: Connection) -> Callable[[Envelope], None]:
        """A ``set_receiver`` callback delivering the Raft envelopes of ``conn``."""
        peer = conn.peer.node

        def on_envelope(env: Envelope) -> None:
            if env.kind == Kind.RAFT and self.deliver is not None:
                self.deliver(peer, env.payload)

        return on_envelope

    def on_frame_from(self, conn: Connection) -> Callable[[list], None]:
        """A raw ``set_receiver(..., raw=True)`` callback delivering the Raft frames of ``conn``.

        The frame is ``[version, kind, channel, source, destination, sequence, payload]``; no
        object is built per message (the replication hot path).
        """
        peer = conn.peer.node
        raft_kind = _RAFT_KIND

        def on_frame(frame: list) -> None:
            deliver = self.deliver
            if frame[1] == raft_kind and deliver is not None:
                deliver(peer, frame[6])

        return on_frame

    async def handle_connection(self, conn: Connection) -> None:
        """Listener handler for connections dialled by peers."""
        conn.set_receiver(self.on_frame_from(conn), raw=True)
        await conn.wait_closed()
