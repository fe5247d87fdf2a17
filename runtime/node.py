"""A node: one kernel glued to a transport, so processes reach processes on other nodes.

::

    kernel = Kernel("n1", incarnation=inc)
    async with kernel, open_tcp_transport(node_transport_config(...)) as transport:
        node = Node(kernel, transport)
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "127.0.0.1:7101", ["127.0.0.1:7102"])

The :class:`Node` is the kernel's :class:`~eco.runtime.kernel.RemoteRouter`:
sends, casts, calls, links, monitors and exit signals whose target lives on
another node become envelopes (:mod:`eco.runtime.wire`) on the connection to
that node, and envelopes arriving from peers are fed back into the kernel.

Connections.  ``serve`` listens and dials every ``join`` address, redialling
with exponential backoff (:class:`~eco.runtime.transport.Backoff`) whenever a
connection is lost, for as long as the node runs.  There is at most one live
connection per peer node; when two appear (both sides dialled), the one
dialled by the node with the smaller name wins on both sides.  When the
connection to a node is lost, :meth:`Kernel.node_down` fires: monitors of its
processes deliver ``Down(..., noconnection)`` and links to them exit with
``noconnection``.  Messages to a node that is not connected are dropped, as
in Erlang (monitor the target to learn about it).  A peer that comes back with
a new incarnation is a new node as far as old PIDs are concerned.
An overlay's membership driver may own the links instead (:meth:`Node.open_links_with`:
connections opened on demand, idle ones closed; see :mod:`eco.runtime.cluster`).

Per-pair ordering: everything one node sends another (messages, signals,
casts) goes through the same connection in order, so two messages from one
process to another arrive in the order they were sent.

The message path is kept short because it is the node's hot path.  Sending
encodes straight into the connection's buffer and only awaits when the buffer
is full: :attr:`Node.remote_senders` holds, per destination, the connection's
``payload_offer`` closure (frame head packed once), which ``ctx.send`` calls
itself; sends that queue behind the connection's writer travel as one
``SEND_BATCH`` frame per run of messages to one destination.  Receiving runs
in the connection's reader task (``set_receiver(raw=True)``): each frame goes
straight into its target's mailbox (a whole batch with one ``extend`` when it
fits), so a round trip costs no task switch besides the target process's.
A full ``block`` mailbox (or a spawn-service handler that must wait) switches
the connection back to queueing until that one message is delivered, which
keeps order and lets backpressure reach the sender (see :class:`_Inbound`).

The spawn service (the *factory*) and ecosystems are in
:mod:`eco.runtime.node_ecosystem`; the node only carries their requests.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio
from trio.lowlevel import reschedule

from .errors import EcoRuntimeError, MailboxFull, NoProc
from .handshake import Identity
from .kernel import Kernel
from .node_codec import ext_hook, packer_default
from .pid import PID, Ref
from .secrets import Cookie
from .signals import NOCONNECTION, CallReply, CallRequest, Dest, Reason
from .transport import Backoff, ConnectError, Connection, ConnectionClosed, Transport, TransportConfig
from .wire import Envelope, Kind, ProtocolError

__all__ = ["Node", "NodeError", "node_transport_config", "node_transport_options", "CONTROL_CHANNEL", "TOOL_PREFIX"]

log = logging.getLogger("eco.runtime.node")

CONTROL_CHANNEL = "std.control"
"""Channel name on the envelopes of links, monitors, exit signals and spawn requests."""

_SEND, _CAST, _CALL, _REPLY, _SEND_BATCH = Kind.SEND, Kind.CAST, Kind.CALL, Kind.REPLY, Kind.SEND_BATCH

TOOL_PREFIX = "ecoc-"
"""Connections from identities named like this (``ecoc status``) are served but never become peers."""
_SEND_INT, _CALL_INT = int(Kind.SEND), int(Kind.CALL)  # msgpack packs plain ints faster than IntEnums


def _envelope(fields: tuple) -> Envelope:
    # Envelope(...) with keyword defaults is measurably slower on the send path.
    return tuple.__new__(Envelope, fields)


class NodeError(EcoRuntimeError):
    """A node-level request failed (peer not connected, spawn refused, ...)."""


def node_transport_options() -> dict[str, Any]:
    """TransportConfig keyword arguments the node needs (its payload codec); e.g. for ``Simulation``."""
    return {"packer_default": packer_default, "ext_hook": ext_hook}


def node_transport_config(cluster: str, node: str, incarnation: int, cookie: Cookie, **options: Any) -> TransportConfig:
    """A :class:`TransportConfig` for a node, with the node's payload codec."""
    return TransportConfig(Identity(cluster, node, incarnation, cookie), **node_transport_options(), **options)


def _dest_node(dest: PID | tuple[str, str]) -> str:
    return dest.node if type(dest) is PID else dest[0]  # type: ignore[union-attr,index]


def _wire_dest(dest: PID | tuple[str, str]) -> Any:
    # The receiving node is the target node, so a remote name travels as the bare name.
    return dest if type(dest) is PID else dest[1]  # type: ignore[index]


def _local_dest(raw: Any) -> Dest:
    if type(raw) is PID or type(raw) is str:
        return raw
    raise ProtocolError(f"bad destination {raw!r}")


class Node:
    """Routes a kernel's remote traffic over a transport; see the module docstring.

    ``on_event(event, **fields)`` (optional) hears ``peer_up`` / ``peer_down``.
    Extra envelope kinds (the spawn service) register with :meth:`handle`.
    """

    def __init__(
        self,
        kernel: Kernel,
        transport: Transport,
        *,
        backoff: Backoff = Backoff(),
        rng: random.Random | None = None,
        on_event: Callable[..., None] | None = None,
    ) -> None:
        if transport.identity.node != kernel.node:
            raise ValueError(f"transport identity {transport.identity.node!r} does not match kernel node {kernel.node!r}")
        self.kernel = kernel
        self.transport = transport
        self.name = kernel.node
        self.incarnation = kernel.incarnation
        self.address: Any = None
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._on_event = on_event
        self._conns: dict[str, Connection] = {}
        self._dialled: set[int] = set()  # id() of connections this node dialled
        self._changed = trio.lowlevel.ParkingLot()  # woken when a peer comes or goes
        self._handlers: dict[int, Callable[[Connection, Envelope], Awaitable[None] | None]] = {}
        self._nursery: trio.Nursery | None = None
        self._down_hooks: list[Callable[[str], None]] = []
        self._peer_hooks: list[tuple[Callable[[str, int], None], Callable[[str], None]]] = []
        self._membership: Any = None  # eco.runtime.cluster.ClusterMembership (or the connection fallback)
        self._link_opener: Callable[[str, Envelope | None], bool] | None = None  # see open_links_with
        self._used: dict[str, float] = {}  # peer -> when it last carried a non-background envelope
        self._epochs: dict[str, int] = {}  # peer -> serial of its current (or last) connection
        self._stopping = False  # serve is closing the connections: no new peer sessions
        self._inbounds: dict[str, _Inbound] = {}  # peer -> its connection's receiving side (see sample_use)
        self._channel_by_type: dict[str, str] = {}
        self._channel_of: dict[type, str] = {}  # message class -> channel, filled on first use
        self.remote_senders: dict[Any, tuple[type, Callable[[Any], bool], str]] = {}
        """dest -> (message type, ``offer(msg) -> bool``, channel): the kernel's per-message
        remote send path (see :meth:`send_remote_nowait`).  Cleared in place, never replaced."""
        # The receive hot path resolves destinations itself (no per-message kernel call):
        self._lookup = kernel._lookup
        self._names = kernel._names
        lend_read = getattr(transport, "lend_read", None)
        if lend_read is not None:
            self.lend_read = lend_read  # (the kernel calls the transport's directly)
        kernel.set_router(self)

    def __repr__(self) -> str:
        return f"<Node {self.name}#{self.incarnation} peers={sorted(self._conns)}>"

    # ============================================================ lifecycle

    async def serve(
        self,
        listen: Any = None,
        join: Iterable[Any] = (),
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``listen``, keep connections to every ``join`` address; runs until cancelled.

        ``task_status.started(bound_address)`` once listening.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._stopping = self.transport.stopping = False  # (serving again after a stop)
            try:
                self.address = await self.transport.listen(self._accepted, listen)
                for address in join:
                    nursery.start_soon(self._dial_forever, address)
                task_status.started(self.address)
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self._stopping = True
                self.transport.stopping = True  # newcomers are refused, told why (Reason.STOPPING)
                with trio.CancelScope(shield=True):
                    for conn in list(self._conns.values()):
                        with trio.move_on_after(1.0):
                            await conn.aclose("node stopping")

    def join(self, address: Any) -> None:
        """Keep a connection to ``address`` (redialled with backoff) from now on."""
        if self._nursery is None:
            raise RuntimeError("the node is not serving")
        self._nursery.start_soon(self._dial_forever, address)

    def connect(self, address: Any, on_failed: Callable[[Exception], None] | None = None) -> None:
        """Open one connection to ``address`` now, with no redial once it ends (overlays such as
        HyParView choose their links themselves); ``on_failed(error)`` if it cannot be opened."""
        if self._nursery is None:
            raise RuntimeError("the node is not serving")
        self._nursery.start_soon(self._dial_once, address, on_failed)

    def disconnect(self, peer: str, reason: str = "disconnected") -> bool:
        """Close the connection to ``peer`` (whoever dialled it); False if there is none.
        A connection kept by :meth:`join` is redialled; one opened by :meth:`connect` is not."""
        conn = self._conns.get(peer)
        if conn is None or self._nursery is None:
            return False
        self._forget(peer, conn, reason)
        self._nursery.start_soon(conn.aclose, reason)
        return True

    async def _dial_once(self, address: Any, on_failed: Callable[[Exception], None] | None) -> None:
        try:
            conn = await self.transport.connect(address)
        except ConnectError as exc:
            if on_failed is not None:
                on_failed(exc)
            return
        self._dialled.add(id(conn))
        try:
            await self._session(conn)
        finally:
            self._dialled.discard(id(conn))

    @property
    def peers(self) -> list[str]:
        """Names of the connected peer nodes, sorted."""
        return sorted(self._conns)

    def is_connected(self, node: str) -> bool:
        return node in self._conns

    def can_send(self, node: str) -> bool:
        """True when an envelope queued for ``node`` now goes out on an open connection: one
        is connected and not closing (the peer may have said goodbye, its session not ended yet)."""
        conn = self._conns.get(node)
        return conn is not None and not conn._closing

    def link_epoch(self, peer: str) -> int:
        """The serial of the current connection to ``peer``, or of the last one once it is lost
        (1, 2, ... per peer; 0 if never connected): ``peer_down`` hooks read the lost one's."""
        return self._epochs.get(peer, 0)

    async def wait_connected(self, nodes: Iterable[str]) -> None:
        """Wait until every node in ``nodes`` (other than this one) is connected; with a link opener
        (:meth:`open_links_with`), until each is reachable (``opener(peer, None)``: say, a member
        known to be up, whose link opens with the first envelope), connected or not."""
        wanted = {n for n in nodes if n != self.name}
        while True:
            opener = self._link_opener
            if opener is None:
                if wanted <= self._conns.keys():
                    return
                await self._changed.park()
                continue
            if all(opener(peer, None) for peer in sorted(wanted)):
                return
            with trio.move_on_after(_REOPEN_INTERVAL):  # (reachability changes without a connection: ask again)
                await self._changed.park()

    async def wait_disconnected(self, node: str) -> None:
        while node in self._conns:
            await self._changed.park()

    def handle(self, kind: Kind, handler: Callable[[Connection, Envelope], Awaitable[None] | None]) -> None:
        """Route incoming envelopes of ``kind`` to ``handler(conn, env)`` (used by the spawn service)."""
        self._handlers[int(kind)] = handler

    def use_channels(self, carries: dict[str, str]) -> None:
        """Tag envelopes of generated messages with their channel: ``{message type name: channel}``.

        Plain data (dicts, lists, ...) travels on the default channel ``""``.
        """
        self._channel_by_type = dict(carries)
        self._channel_of.clear()
        self.remote_senders.clear()
        self.kernel.forget_remote_senders()  # (processes keep entries: see Context.send)

    def send_envelope(self, node: str, env: Envelope) -> bool:
        """Queue ``env`` for ``node`` without waiting; False if it is not connected (and no
        link opener (:meth:`open_links_with`) took it to send once a connection opens)."""
        conn = self._sending_conn(node)
        if conn is None:
            # Background gossip is not worth a connection: it floods over the links there are.
            opener = self._link_opener
            return opener is not None and env.kind not in _BACKGROUND and opener(node, env)
        if env.kind not in _BACKGROUND:
            self._used[node] = trio.current_time()
        return self._queue(conn, env)

    # ============================================================ on-demand links

    def _sending_conn(self, node: str) -> Connection | None:
        """The connection to send to ``node`` over; None if there is none or, with a link
        opener, if it is closing (the peer closed it as idle, say): it would drop what is
        queued, so the opener sends that over the next one."""
        conn = self._conns.get(node)
        if conn is not None and conn._closing and self._link_opener is not None:
            return None
        return conn

    def open_links_with(self, opener: Callable[[str, Envelope | None], bool] | None) -> None:
        """Let ``opener(peer, envelope)`` open connections on demand (an overlay's driver owns the links):
        :meth:`send_envelope` to an unconnected peer (or one whose connection is closing: the opener
        opens the next once it has closed) hands it the envelope (True: it is sent once the
        connection opens; background gossip (membership, load reports, name tables) is not), and
        :meth:`wait_connected` asks ``opener(peer, None)`` whether a peer is reachable."""
        self._link_opener = opener

    @property
    def links_on_demand(self) -> bool:
        """True when a link opener (:meth:`open_links_with`) opens connections on demand and closes
        idle ones: a lost connection is then no sign that its peer is gone."""
        return self._link_opener is not None

    def last_used(self, peer: str) -> float:
        """When (trio time) the connection to ``peer`` last carried an envelope other than background
        gossip (membership, load reports, name tables); 0.0 if never."""
        return self._used.get(peer, 0.0)

    def ties(self, peer: str) -> int:
        """How many monitors and links join processes here with processes on ``peer`` (either way):
        closing the connection would fire them with ``noconnection``."""
        k = self.kernel
        return len(k._remote_monitors.get(peer, ())) + len(k._remote_watchers.get(peer, ())) + \
            len(k._remote_links.get(peer, ()))

    def sample_use(self, peer: str) -> float:
        """:meth:`last_used`, sampled for an idle-link sweep: frames received since the last sample
        count as now.  Sends through the per-destination fast path (:attr:`remote_senders`) do not
        touch the node, so sampling also drops the peer's entries there: the next send to it goes
        through the node once and is recorded."""
        inbound = self._inbounds.get(peer)
        if inbound is not None and inbound.active:
            inbound.active = False
            self._used[peer] = trio.current_time()
        self._drop_senders(peer)
        return self._used.get(peer, 0.0)

    def undeliverable(self, peer: str, envelopes: Iterable[Envelope]) -> None:
        """Envelopes a link opener held for ``peer`` and could not send (the link did not open):
        monitors and links fire with ``noconnection``, as for a node that is not connected;
        anything else is dropped, as a send to a dead process is."""
        for env in envelopes:
            dest = env.destination
            target = dest if type(dest) is PID else (peer, dest)
            if env.kind == Kind.MONITOR and type(env.source) is PID:
                self.kernel.down_from_remote(env.source, env.payload, target, NOCONNECTION)
            elif env.kind == Kind.LINK and type(env.source) is PID and type(dest) is PID:
                self.kernel.exit_from_remote(env.source, dest, NOCONNECTION)

    # ============================================================ connections

    async def _dial_forever(self, address: Any) -> None:
        attempt = 0
        while True:
            try:
                conn = await self.transport.connect(address)
            except ConnectError as exc:
                delay = self._backoff.delay(attempt, self._rng)
                attempt += 1
                log.debug("node %s: dialling %s failed (%s); retry in %.2fs", self.name, address, exc, delay)
                await trio.sleep(delay)
                continue
            started = trio.current_time()
            self._dialled.add(id(conn))
            try:
                await self._session(conn)
            finally:
                self._dialled.discard(id(conn))
            if trio.current_time() - started >= self._backoff.reset_after:
                attempt = 0
            # While the peer is reachable through another connection there is nothing to redial.
            await self.wait_disconnected(conn.peer.node)
            await trio.sleep(self._backoff.delay(attempt, self._rng))
            attempt += 1

    async def _accepted(self, conn: Connection) -> None:
        await self._session(conn)

    def _dialler(self, conn: Connection) -> str:
        return self.name if id(conn) in self._dialled else conn.peer.node

    async def _session(self, conn: Connection) -> None:
        peer = conn.peer.node
        try:
            if peer == self.name:
                log.warning("node %s: refusing a connection to itself at %s", self.name, conn.peer.address)
                return
            if peer.startswith(TOOL_PREFIX):
                await self._read(conn)  # a tool such as `ecoc status`: its requests are served, it is no peer
                return
            if self._stopping:
                with trio.CancelScope(shield=True):
                    await conn.aclose("node stopping")  # (authenticated before the node began to stop)
                return
            old = self._conns.get(peer)
            if old is not None:
                old_by, new_by = self._dialler(old), self._dialler(conn)
                if old.peer.incarnation == conn.peer.incarnation and old_by != new_by and old_by < new_by \
                        and not old._closing:
                    return  # both sides dialled: both keep the connection dialled by the smaller name
                # (A closing one is on its way out: the peer closed it, as idle say, and dialled again.)
                self._forget(peer, old, "replaced by a newer connection")
                with trio.CancelScope(shield=True):
                    await old.aclose("replaced by a newer connection")
            self._conns[peer] = conn
            self._epochs[peer] = self._epochs.get(peer, 0) + 1
            self._changed.unpark_all()
            log.info("node %s: connected to %s#%d at %s", self.name, peer, conn.peer.incarnation, conn.peer.address)
            self._emit("peer_up", peer=peer, incarnation=conn.peer.incarnation)
            for up, _ in list(self._peer_hooks):
                up(peer, conn.peer.incarnation)
            await self._read(conn)
        finally:
            self._forget(peer, conn, conn.close_reason or "connection closed")
            with trio.CancelScope(shield=True):
                await conn.aclose("session ended")

    def _forget(self, peer: str, conn: Connection, reason: str) -> None:
        if self._conns.get(peer) is not conn:
            return
        del self._conns[peer]
        self._used.pop(peer, None)
        self._drop_senders(peer)
        self._changed.unpark_all()
        log.info("node %s: lost %s: %s", self.name, peer, reason)
        self.kernel.node_down(peer)
        for hook in self._down_hooks:
            hook(peer)
        for _, down in list(self._peer_hooks):
            down(peer)
        self._emit("peer_down", peer=peer, reason=reason)

    def on_peer(self, up: Callable[[str, int], None], down: Callable[[str], None]) -> None:
        """Call ``up(peer, incarnation)`` when a connection to a peer opens (now, for those already
        open) and ``down(peer)`` when it closes."""
        self._peer_hooks.append((up, down))
        for peer, conn in list(self._conns.items()):
            up(peer, conn.peer.incarnation)

    # ============================================================ membership

    def attach_membership(self, membership: Any) -> None:
        """Serve :attr:`members` and :meth:`subscribe_members` from ``membership``
        (:class:`eco.runtime.cluster.ClusterMembership` does this itself)."""
        self._membership = membership

    @property
    def members(self) -> list:
        """The cluster's members as this node sees them now, sorted by name: ``MemberInfo(name,
        address, state, incarnation, labels)``.  From the membership driver (gossip and failure
        detector) when one runs, else from this node's connections (connected: up, lost: down)."""
        return self._members_source().members

    def subscribe_members(self, callback: Callable[[Any], None] | None = None) -> Any:
        """``callback(MemberEvent)`` on every member change, returning an unsubscribe function;
        without a callback, an async iterator of ``MemberEvent`` (a context manager that unsubscribes)."""
        return self._members_source().subscribe(callback)

    def _members_source(self) -> Any:
        if self._membership is None:
            from .cluster import ConnectionMembers  # (imported late: cluster builds on node)

            self._membership = ConnectionMembers(self)
        return self._membership

    def on_node_down(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(node)`` whenever a peer node is lost (after the kernel's DOWN/EXIT signals)."""
        self._down_hooks.append(hook)

    def _emit(self, event: str, **fields: Any) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event, **fields)
            except Exception:  # a reporting problem must never break routing
                log.exception("node event hook failed")

    # ============================================================ receiving

    async def _read(self, conn: Connection) -> None:
        inbound = _Inbound(self, conn)
        peer = conn.peer.node
        self._inbounds[peer] = inbound
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(inbound.watch_close)
                await inbound.run()
                nursery.cancel_scope.cancel()
        finally:
            if self._inbounds.get(peer) is inbound:
                del self._inbounds[peer]

    def _deliver(self, conn: Connection, frame: list) -> Any:
        """Deliver a received frame (``[version, kind, channel, source, destination,
        sequence, payload]``) without waiting, in the connection's reader task.

        Returns None when done (delivered or dropped), or what the reader must
        await to finish it: :data:`_BLOCKED` (a full ``block`` mailbox: the
        envelope goes through the waiting :meth:`_dispatch` instead) or the
        awaitable an extension handler returned.
        """
        kind = frame[1]
        if kind in _APPLICATION:
            self._used[conn.peer.node] = trio.current_time()
        try:
            if kind == _SEND or kind == _CALL or kind == _SEND_BATCH:
                dest = frame[4]
                if type(dest) is PID:
                    target = self._lookup(dest)
                elif type(dest) is str:
                    target = self._names.get(dest)
                else:
                    raise ProtocolError(f"bad destination {dest!r}")
                if target is None:
                    return None  # a dead PID or an unknown name: dropped, as for local sends
                if kind == _SEND_BATCH:
                    return self._deliver_batch(target.mailbox, frame)
                if kind == _SEND:
                    msg = frame[6]
                else:
                    ref, sender, request = frame[6]
                    msg = CallRequest(ref, sender, request)
                mailbox = target.mailbox
                if mailbox.offer(msg) or mailbox.overflow == "reject":
                    return None
                return _BLOCKED
            if kind == _CAST:
                self.kernel.cast(_local_dest(frame[4]), frame[6])
            elif kind == _REPLY:
                ref, value = frame[6]
                self.kernel.cast(_local_dest(frame[4]), CallReply(ref, value))
            else:
                return self._control(conn, _envelope(frame[1:]))
        except (NoProc, MailboxFull):
            pass  # as for local sends: unknown names and full rejecting mailboxes drop the message
        except (TypeError, ValueError, ProtocolError) as exc:
            self._malformed(conn, frame[1], exc)
        return None

    @staticmethod
    def _deliver_batch(mailbox: Any, frame: list) -> Any:
        # A SEND_BATCH that does not fit as a whole: message by message, as separate
        # SENDs would be.  Under ``block`` the rest waits (frame[6] becomes the rest).
        payloads = frame[6]
        offer = mailbox.offer
        for i, msg in enumerate(payloads):
            if not offer(msg) and mailbox.overflow != "reject":
                frame[6] = payloads[i:]
                return _BLOCKED
        return None

    async def _dispatch(self, conn: Connection, frame: list) -> None:
        """Deliver a SEND, SEND_BATCH or CALL frame, waiting for mailbox space under the ``block`` policy."""
        try:
            if frame[1] == _SEND_BATCH:
                dest = _local_dest(frame[4])
                send = self.kernel.send
                for msg in frame[6]:
                    await send(dest, msg)
            elif frame[1] == _SEND:
                await self.kernel.send(_local_dest(frame[4]), frame[6])
            else:
                ref, sender, request = frame[6]
                await self.kernel.send(_local_dest(frame[4]), CallRequest(ref, sender, request))
        except (NoProc, MailboxFull):
            pass
        except (TypeError, ValueError, ProtocolError) as exc:
            self._malformed(conn, frame[1], exc)

    def _malformed(self, conn: Connection, kind: Any, exc: Exception) -> None:
        name = kind.name if isinstance(kind, Kind) else repr(kind)
        log.warning("node %s: dropping a malformed %s envelope from %s: %s", self.name, name, conn.peer.node, exc)

    def _control(self, conn: Connection, env: Envelope) -> Any:
        kernel = self.kernel
        kind = env.kind
        if kind == Kind.MONITOR:
            kernel.monitor_from_remote(_pid(env.source), _local_dest(env.destination), _ref(env.payload))
        elif kind == Kind.DEMONITOR:
            kernel.demonitor_from_remote(_ref(env.payload))
        elif kind == Kind.DOWN:
            ref, target, reason = env.payload
            if type(target) is list:
                target = (target[0], target[1])
            kernel.down_from_remote(_pid(env.destination), _ref(ref), target, _reason(reason))
        elif kind == Kind.LINK:
            kernel.link_from_remote(_pid(env.source), _pid(env.destination))
        elif kind == Kind.UNLINK:
            kernel.unlink_from_remote(_pid(env.source), _pid(env.destination))
        elif kind == Kind.EXIT:
            sender = None if env.source is None else _pid(env.source)
            kernel.exit_from_remote(_pid(env.destination), sender, _reason(env.payload))
        else:
            handler = self._handlers.get(int(kind))
            if handler is None:
                log.warning("node %s: no handler for %s envelopes from %s", self.name, kind.name, conn.peer.node)
                return None
            if kind not in _BACKGROUND:
                self._used[conn.peer.node] = trio.current_time()
            return handler(conn, env)
        return None

    # ============================================================ sending (RemoteRouter)

    def _queue(self, conn: Connection, env: Envelope) -> bool:
        # Queue without waiting: the transport's control path encodes at once (so an
        # unencodable payload raises here, in the sender) and never blocks.
        if conn._closing:
            return False
        conn._send_control(env)
        return True

    async def send_remote(self, dest: PID | tuple[str, str], msg: Any, *, sender: PID | None) -> None:
        if type(dest) is PID:
            node = dest.node  # type: ignore[union-attr]
            wire_dest: Any = dest
        else:
            node = dest[0]  # type: ignore[index]
            wire_dest = dest[1]  # type: ignore[index]
        conn = self._sending_conn(node)
        if conn is None and self._link_opener is None:
            return  # not connected: dropped, as a send to a dead process is
        if type(msg) is CallRequest:
            kind, channel, msg = _CALL_INT, "", (msg.ref, msg.sender, msg.request)
        else:
            # The sender is not transmitted: a plain send carries no return address (as in Erlang).
            kind = _SEND_INT
            channel = self._channel_of.get(type(msg))
            if channel is None:
                channel = self._channel_for(type(msg))
        if conn is None:
            # The overlay's driver opens a link and sends it then (dropped if the node is unreachable).
            self.send_envelope(node, _envelope((Kind(kind), channel, None, wire_dest, 0, msg)))
            return
        self._used[node] = trio.current_time()
        try:
            # Cast-like when the send buffer has room: no Envelope, no await.
            conn.send_raw_nowait(kind, channel, None, wire_dest, 0, msg)
        except trio.WouldBlock:
            try:
                await conn.send(_envelope((Kind(kind), channel, None, wire_dest, 0, msg)))
            except ConnectionClosed:
                pass
        except ConnectionClosed:
            pass

    def send_remote_nowait(self, dest: PID | tuple[str, str], msg: Any) -> bool:
        """The fast path of :meth:`send_remote`: True once ``msg`` is sent (or dropped, the
        node being unreachable), False when the caller must ``await send_remote`` instead
        (full send buffer, a call request, a connection that changed).

        The frame head (kind, channel, destination) is packed once per destination and
        channel and kept in the connection's ``payload_offer``, so only the payload is
        packed per message.  The entry is kept in :attr:`remote_senders`, keyed by
        destination, for the message type last sent there: the kernel and ``ctx.send``
        look it up and call it themselves, with no call into the node.
        """
        t = type(msg)
        channel = self._channel_of.get(t)
        if channel is None:
            if t is CallRequest:  # (never in _channel_of)
                return False
            channel = self._channel_for(t)
        senders = self.remote_senders
        try:
            entry = senders.get(dest)
        except TypeError:  # an unhashable (node, name): the slow path explains
            return False
        if entry is None or entry[2] != channel:
            entry = self._sender_for(dest, t, channel)
            if entry is None:
                # Not connected: dropped, as a send to a dead process is; unless links open on
                # demand (an overlay's driver): then the slow path hands it over.
                return self._link_opener is None
        elif entry[0] is not t:
            entry = senders[dest] = (t, entry[1], channel)  # same head, another message type
        if entry[1](msg):
            return True
        senders.pop(dest, None)  # full or closed: the slow path waits or looks for a new connection
        self.kernel.forget_remote_senders()
        return False

    def _drop_senders(self, peer: str) -> None:
        # (Entries of a lost peer would only fail over to the slow path, but they keep the closed connection alive.)
        senders = self.remote_senders
        gone = [d for d in senders if _dest_node(d) == peer]
        for dest in gone:
            del senders[dest]
        if gone:
            self.kernel.forget_remote_senders()  # (processes keep entries: see Context.send)

    def _sender_for(self, dest: PID | tuple[str, str], t: type, channel: str) -> tuple[type, Callable[[Any], bool], str] | None:
        conn = self._conns.get(_dest_node(dest))
        if conn is None or conn._closing:
            return None
        entry = (t, conn.payload_offer(conn.frame_head(_SEND_INT, channel, None, _wire_dest(dest), 0)), channel)
        self._used[conn.peer.node] = trio.current_time()  # (see sample_use)
        senders = self.remote_senders
        if len(senders) >= 4096:  # bounded: many destinations just rebuild their entries
            senders.clear()
            self.kernel.forget_remote_senders()
        senders[dest] = entry
        return entry

    def _channel_for(self, cls: type) -> str:
        channel = self._channel_by_type.get(getattr(cls, "TYPE_NAME", None) or "", "")
        self._channel_of[cls] = channel
        return channel

    def cast_remote(self, dest: PID | tuple[str, str], msg: Any, *, sender: PID | None) -> None:
        node = _dest_node(dest)
        conn = self._sending_conn(node)
        if conn is None and self._link_opener is None:
            return
        if type(msg) is CallReply:
            env = _envelope((_REPLY, "", None, _wire_dest(dest), 0, (msg.ref, msg.value)))
        elif type(msg) is CallRequest:
            env = _envelope((_CALL, "", None, _wire_dest(dest), 0, (msg.ref, msg.sender, msg.request)))
        else:
            channel = self._channel_of.get(type(msg))
            if channel is None:
                channel = self._channel_for(type(msg))
            env = _envelope((_CAST, channel, None, _wire_dest(dest), 0, msg))
        if conn is None:
            self.send_envelope(node, env)  # the overlay's driver opens a link for it
        else:
            self._used[node] = trio.current_time()
            self._queue(conn, env)

    def _control_send(self, node: str, env: Envelope) -> bool:
        conn = self._conns.get(node)
        if conn is None or conn._closing:
            return self.send_envelope(node, env)  # False unless the overlay's driver opens a link for it
        return self._queue(conn, env)

    def monitor_remote(self, watcher: PID, target: PID | tuple[str, str], ref: Ref) -> None:
        env = Envelope(Kind.MONITOR, CONTROL_CHANNEL, watcher, _wire_dest(target), 0, ref)
        if not self._control_send(_dest_node(target), env):
            self.kernel.down_from_remote(watcher, ref, target, NOCONNECTION)

    def demonitor_remote(self, watcher: PID, target: PID | tuple[str, str], ref: Ref) -> None:
        self._control_send(_dest_node(target), Envelope(Kind.DEMONITOR, CONTROL_CHANNEL, watcher, _wire_dest(target), 0, ref))

    def link_remote(self, local: PID, remote: PID) -> None:
        if not self._control_send(remote.node, Envelope(Kind.LINK, CONTROL_CHANNEL, local, remote, 0, None)):
            self.kernel.exit_from_remote(local, remote, NOCONNECTION)

    def unlink_remote(self, local: PID, remote: PID) -> None:
        self._control_send(remote.node, Envelope(Kind.UNLINK, CONTROL_CHANNEL, local, remote, 0, None))

    def exit_remote(self, target: PID, sender: PID | None, reason: Reason) -> None:
        self._control_send(target.node, Envelope(Kind.EXIT, CONTROL_CHANNEL, sender, target, 0, reason))

    def down_remote(self, watcher: PID, ref: Ref, target: Dest, reason: Reason) -> None:
        wire_target = list(target) if type(target) is tuple else target
        self._control_send(watcher.node, Envelope(Kind.DOWN, CONTROL_CHANNEL, None, watcher, 0, (ref, wire_target, reason)))


_BACKGROUND = frozenset({Kind.MEMBERSHIP, Kind.LOAD, Kind.NAMES})
_APPLICATION = frozenset({Kind.SEND, Kind.SEND_BATCH, Kind.CAST, Kind.CALL, Kind.REPLY})
"""Periodic gossip that does not count as using a connection (``Node.last_used``)."""
_REOPEN_INTERVAL = 0.1
"""Seconds between reachability checks of missing peers in ``wait_connected`` (with a link opener)."""

_BLOCKED = object()
"""Returned by ``Node._deliver`` for a message that must wait for mailbox space."""


class _Inbound:
    """The receive side of one session: envelopes go straight from the connection's
    reader into kernel mailboxes (``Connection.set_receiver``), with no task switch
    per message and no added hop for a round trip.

    When one cannot be delivered without waiting (a full ``block`` mailbox, or an
    extension handler that returned an awaitable) the connection is switched back
    to queueing: this task finishes that envelope with ``await``, then replays what
    queued meanwhile, in order.  While it waits the connection's receive queue
    fills and the reader stops reading, so backpressure reaches the sender.
    """

    __slots__ = ("node", "conn", "_pending", "_wake", "_closed", "active")

    def __init__(self, node: Node, conn: Connection) -> None:
        self.node = node
        self.conn = conn
        self._pending: tuple[list, Any] | None = None
        self._wake = trio.Event()
        self._closed = False
        self.active = False  # a message frame arrived since Node.sample_use last looked

    def _make_on_frame(self) -> Callable[[list], None]:
        node, conn = self.node, self.conn
        lookup, names, deliver = node._lookup, node._names, node._deliver

        def on_frame(frame: list) -> None:
            if self._pending is not None:  # (only if the transport delivered after set_receiver(None))
                raise RuntimeError("a frame was delivered while the node is switched to queueing")
            kind = frame[1]
            if kind is _SEND or kind is _SEND_BATCH:
                self.active = True
                # The hot path, inlined: plain sends into a mailbox with room.
                dest = frame[4]
                if type(dest) is str:
                    target = names.get(dest)
                elif type(dest) is PID:
                    target = lookup(dest)
                else:
                    target = _BLOCKED  # malformed: _deliver explains
                if target is None:
                    return  # a dead PID or an unknown name: dropped, as for local sends
                if target is not _BLOCKED:
                    mailbox = target.mailbox  # Mailbox.offer inlined for a mailbox with room
                    items = mailbox._items
                    if kind is _SEND:
                        if len(items) < mailbox.capacity:
                            items.append(frame[6])
                        elif not mailbox.offer(frame[6]):  # (drop_oldest makes room)
                            target = _BLOCKED
                    elif len(items) + len(frame[6]) <= mailbox.capacity:
                        items.extend(frame[6])  # a whole batch: one C call
                    else:
                        target = _BLOCKED  # _deliver takes it message by message
                    if target is not _BLOCKED:
                        waiter = mailbox._waiter
                        if waiter is not None:
                            mailbox._waiter = None
                            if mailbox._borrow is None or mailbox._borrow.lend_return(waiter):
                                reschedule(waiter)
                        return
            waiting = deliver(conn, frame)
            if waiting is not None:
                self._pending = (frame, waiting)
                conn.set_receiver(None)
                self._wake.set()

        return on_frame

    async def watch_close(self) -> None:
        await self.conn.wait_closed()
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        node, conn = self.node, self.conn
        on_frame = self._make_on_frame()
        while True:
            conn.set_receiver(on_frame, raw=True)  # replays anything queued meanwhile
            while self._pending is None:
                if self._closed:
                    return
                await self._wake.wait()
                self._wake = trio.Event()
            frame, waiting = self._pending
            self._pending = None
            if waiting is _BLOCKED:
                await node._dispatch(conn, frame)
            else:
                try:
                    await waiting
                except (NoProc, MailboxFull):
                    pass
                except (TypeError, ValueError, ProtocolError) as exc:
                    node._malformed(conn, frame[1], exc)


def _pid(raw: Any) -> PID:
    if type(raw) is PID:
        return raw
    raise ProtocolError(f"expected a PID, got {raw!r}")


def _ref(raw: Any) -> Ref:
    if type(raw) is Ref:
        return raw
    raise ProtocolError(f"expected a Ref, got {raw!r}")


def _reason(raw: Any) -> Reason:
    if type(raw) is Reason:
        return raw
    raise ProtocolError(f"expected an exit reason, got {raw!r}")
