"""A simulated network with the same interface as TCP, for deterministic tests.

A :class:`SimNetwork` moves encoded frames between hosts on trio's clock (run
it under ``trio.testing.MockClock(autojump_threshold=0)`` so simulated hours
pass in milliseconds; :class:`eco.runtime.simulator.Simulation` does this for
you).  Every random choice comes from one ``random.Random(seed)``, so a run is
reproducible.  Faults, per directed link (:class:`LinkSpec`):

* delivery delay drawn from :class:`Fixed`, :class:`Uniform`,
  :class:`Exponential` or :class:`LogNormal`;
* ``drop``, ``duplicate`` and ``reorder`` probabilities per message.  Without
  them a connection is FIFO like TCP; with them the simulator deliberately
  breaks TCP's guarantees to stress the protocols built on top.  They apply to
  messaging kinds only: handshake and control frames (PING, PONG, GOODBYE) are
  delayed and cut by partitions but otherwise delivered reliably in order;
* partitions (symmetric or one-way, between sets of hosts) and healing:
  messages crossing a cut are lost, a connection attempt across it times out;
* host crash (``silent``: its connections vanish and peers only notice through
  keepalive or a reset after restart; otherwise peers see a reset at once) and
  restart.

Payloads are encoded with the real wire codec on send and decoded on delivery,
so hosts never share mutable objects and unserialisable payloads fail exactly
as they would on TCP.  :class:`SimTransport` is a :class:`~eco.runtime.transport.Transport`.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from .handshake import Handshake, Role
from .transport import (
    ConnectError,
    Connection,
    ConnectionClosed,
    ConnectionHandler,
    HandshakeRefused,
    PeerInfo,
    Transport,
    TransportConfig,
    drive_handshake,
)
from .wire import Envelope, FrameEncoder, Kind, ProtocolError, decode_frame

# ------------------------------------------------------------ delay distributions


class Delay(Protocol):
    def sample(self, rng: random.Random) -> float: ...


@dataclass(frozen=True)
class Fixed:
    seconds: float = 0.001

    def sample(self, rng: random.Random) -> float:
        return self.seconds


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class Exponential:
    """``minimum`` plus an exponential tail with the given mean."""

    mean: float
    minimum: float = 0.0

    def sample(self, rng: random.Random) -> float:
        return self.minimum + rng.expovariate(1.0 / self.mean)


@dataclass(frozen=True)
class LogNormal:
    """Log-normal with the given median (seconds) and shape ``sigma``, capped at ``maximum``."""

    median: float
    sigma: float = 0.5
    maximum: float = math.inf

    def sample(self, rng: random.Random) -> float:
        return min(self.maximum, rng.lognormvariate(math.log(self.median), self.sigma))


@dataclass(frozen=True)
class LinkSpec:
    """How one direction of a link behaves."""

    delay: Delay = Fixed(0.001)
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: Delay = Uniform(0.0, 0.05)
    """Extra delay of a reordered message (it also skips the FIFO ordering)."""

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"LinkSpec.{name} must be a probability in [0, 1]")


TraceSink = Callable[[str, str], None]
"""``sink(host, event)`` records a trace event (the simulator adds the time)."""


# ---------------------------------------------------------------------- network


@dataclass(eq=False)
class _Host:
    name: str
    up: bool = True
    listener: tuple[SimTransport, ConnectionHandler] | None = None
    endpoints: dict[int, SimConnection] = field(default_factory=dict)


class SimNetwork:
    """The simulated network: hosts, links, faults and the delivery schedule.

    Start :meth:`run` in a nursery (the simulator does) before hosts talk.
    """

    def __init__(self, seed: int, *, default_link: LinkSpec = LinkSpec(), trace: TraceSink | None = None, trace_messages: bool = True):
        self.seed = seed
        self.rng = random.Random(seed)
        self.default_link = default_link
        self._links: dict[tuple[str, str], LinkSpec] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._hosts: dict[str, _Host] = {}
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._pump_lot = trio.lowlevel.ParkingLot()
        self._pump_scope: trio.CancelScope | None = None
        self._trace = trace
        self._trace_messages = trace is not None and trace_messages
        self._conn_serial = 0
        self.delivered = 0
        self.dropped = 0
        self.on_idle: Callable[[], None] | None = None

    # ------------------------------------------------------------- topology

    def add_host(self, name: str) -> None:
        if name in self._hosts:
            raise ValueError(f"host {name!r} already exists")
        self._hosts[name] = _Host(name)

    @property
    def hosts(self) -> list[str]:
        return list(self._hosts)

    def is_up(self, name: str) -> bool:
        return self._host(name).up

    def set_link(self, a: str, b: str, spec: LinkSpec, *, symmetric: bool = True) -> None:
        """Use ``spec`` for messages from ``a`` to ``b`` (and back, if ``symmetric``)."""
        self._links[(a, b)] = spec
        if symmetric:
            self._links[(b, a)] = spec

    def link(self, a: str, b: str) -> LinkSpec:
        return self._links.get((a, b), self.default_link)

    def partition(self, side_a: Iterable[str], side_b: Iterable[str], *, one_way: bool = False) -> None:
        """Cut traffic from ``side_a`` to ``side_b`` (and back unless ``one_way``)."""
        side_a, side_b = sorted(side_a), sorted(side_b)
        for a in side_a:
            for b in side_b:
                self._blocked.add((a, b))
                if not one_way:
                    self._blocked.add((b, a))
        self._note("-", f"partition {','.join(side_a)} {'->' if one_way else '<->'} {','.join(side_b)}")

    def heal(self) -> None:
        """Remove every partition."""
        self._blocked.clear()
        self._note("-", "heal")

    def blocked(self, a: str, b: str) -> bool:
        return (a, b) in self._blocked

    def crash(self, name: str, *, silent: bool = True) -> None:
        """Take ``name`` down: its connections vanish (peers see a reset unless ``silent``)."""
        host = self._host(name)
        if not host.up:
            return
        host.up = False
        host.listener = None
        endpoints, host.endpoints = host.endpoints, {}
        for ep in endpoints.values():
            ep._vanish("host crashed")
            if not silent and ep._remote is not None:
                self._schedule(self._delay(name, ep._remote.host), ep._remote._reset, ())

    def restart(self, name: str) -> None:
        """Bring ``name`` back up (a new incarnation must listen again)."""
        self._host(name).up = True

    # --------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The delivery pump: executes scheduled deliveries in time order."""
        heap = self._heap
        task_status.started()
        while True:
            if not heap:
                if self.on_idle is not None:
                    self.on_idle()
                await self._pump_lot.park()
                continue
            now = trio.current_time()
            due = heap[0][0]
            if due > now:
                with trio.move_on_at(due) as scope:
                    self._pump_scope = scope
                    await trio.sleep_forever()
                self._pump_scope = None
                continue
            while heap and heap[0][0] <= now:
                _, _, fn, args = heapq.heappop(heap)
                fn(*args)
            await trio.lowlevel.checkpoint()

    def _schedule(self, delay: float, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        at = trio.current_time() + delay
        self._push(at, fn, args)

    def _push(self, at: float, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, fn, args))
        if self._pump_lot:
            self._pump_lot.unpark()
        elif self._pump_scope is not None and at < self._pump_scope.deadline:
            self._pump_scope.deadline = at

    def _delay(self, a: str, b: str) -> float:
        return self.link(a, b).delay.sample(self.rng)

    def _host(self, name: str) -> _Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise ValueError(f"unknown host {name!r}") from None

    def _note(self, host: str, event: str) -> None:
        if self._trace is not None:
            self._trace(host, event)

    # ------------------------------------------------------------ transmission

    def _transmit(self, src: SimConnection, data: bytes, kind: int, sequence: int) -> None:
        """Send one frame from ``src`` to its remote endpoint, applying the link's faults."""
        a, b = src.host, src._remote_host
        if (a, b) in self._blocked:
            self.dropped += 1
            if self._trace_messages:
                self._trace(a, f"cut {b} {_kind_name(kind)} {sequence}")
            return
        spec = self._links.get((a, b), self.default_link)
        rng = self.rng
        if kind < 32:
            # Handshake and control frames ride a reliable, FIFO "TCP": only delayed.
            at = max(trio.current_time() + spec.delay.sample(rng), src._fifo_at)
            src._fifo_at = src._control_at = at
            src._in_flight += 1
            self._push(at, self._arrive, (src, data))
            return
        if spec.drop and rng.random() < spec.drop:
            self.dropped += 1
            if self._trace_messages:
                self._trace(a, f"drop {b} {_kind_name(kind)} {sequence}")
            return
        copies = 2 if spec.duplicate and rng.random() < spec.duplicate else 1
        now = trio.current_time()
        for _ in range(copies):
            at = now + spec.delay.sample(rng)
            if spec.reorder and rng.random() < spec.reorder:
                # Overtakes other messages, but never the handshake or control frames before it.
                at = max(at + spec.reorder_delay.sample(rng), src._control_at)
            else:
                at = max(at, src._fifo_at)  # a connection is FIFO unless reordered
                src._fifo_at = at
            src._in_flight += 1
            self._push(at, self._arrive, (src, data))

    def _arrive(self, src: SimConnection, data: bytes) -> None:
        src._in_flight -= 1
        dst = src._remote
        if dst is None:
            return
        if (src.host, dst.host) in self._blocked:
            self.dropped += 1
            return
        if dst._vanished:
            # The endpoint no longer exists; a live (restarted) host answers with a reset.
            if self._hosts[dst.host].up and not src._vanished:
                self._schedule(self._delay(dst.host, src.host), src._reset, ())
            return
        self.delivered += 1
        dst._on_frame(data)

    # -------------------------------------------------------------- connecting

    async def _open(self, transport: SimTransport, address: str, expect_node: str | None) -> SimConnection:
        me = transport.host
        target = self._hosts.get(address)
        if target is None:
            raise ConnectError(f"cannot connect to {address}: no such host")
        # Model the SYN/SYN-ACK round trip: refused if nobody listens, lost across a cut.
        await trio.sleep(self._delay(me, address) + self._delay(address, me))
        if self.blocked(me, address) or self.blocked(address, me) or not target.up:
            await trio.sleep(transport.config.connect_timeout)
            raise ConnectError(f"connecting to {address} timed out after {transport.config.connect_timeout:g}s")
        if target.listener is None:
            raise ConnectError(f"cannot connect to {address}: connection refused")
        remote_transport, handler = target.listener
        local = SimConnection(transport, me, address)
        remote = SimConnection(remote_transport, address, me)
        local._remote, remote._remote = remote, local
        self._conn_serial += 2
        local.serial, remote.serial = self._conn_serial - 1, self._conn_serial
        self._host(me).endpoints[local.serial] = local
        target.endpoints[remote.serial] = remote
        remote_transport._nursery.start_soon(remote_transport._serve_one, remote, handler)
        return await transport._establish(local, Role.INITIATOR, expect_node)


def _kind_name(kind: int) -> str:
    try:
        return Kind(kind).name
    except ValueError:
        return str(kind)


# ------------------------------------------------------------------- connection


class SimConnection(Connection):
    """One end of a simulated connection (see :class:`Connection` for the API)."""

    def __init__(self, transport: SimTransport, host: str, remote_host: str):
        config = transport.config
        super().__init__(config, PeerInfo("?", 0, remote_host))
        self.host = host
        self._transport = transport
        self._network = transport.network
        self._remote_host = remote_host
        self._remote: SimConnection | None = None
        self._fifo_at = 0.0
        self._control_at = 0.0
        self._in_flight = 0
        self._vanished = False
        self._established = False
        self.serial = 0
        self._handshake_inbox: deque[Envelope] = deque()
        self._handshake_lot = trio.lowlevel.ParkingLot()
        self._encoder = FrameEncoder(max_frame_size=config.max_frame_size, default=config.packer_default)
        self._decoder_config = (config.max_frame_size, config.ext_hook)
        self._scope: trio.CancelScope | None = None

    # --- sending

    async def send(self, env: Envelope) -> None:
        if self._closing:
            raise ConnectionClosed(self.close_reason or "the connection is closing")
        remote = self._remote
        limit = self.config.receive_queue
        while remote is not None and not remote._closing and len(remote._inbox) + self._in_flight >= limit:
            await remote._inbox_space.park()
            if self._closing:
                raise ConnectionClosed(self.close_reason or "the connection is closing")
        self._transmit(env)

    def send_nowait(self, env: Envelope) -> None:
        if self._closing:
            raise ConnectionClosed(self.close_reason or "the connection is closing")
        remote = self._remote
        if remote is not None and not remote._closing and len(remote._inbox) + self._in_flight >= self.config.receive_queue:
            raise trio.WouldBlock
        self._transmit(env)

    def _transmit(self, env: Envelope) -> None:
        data = self._encoder.encode(env)  # validates and copies, as on TCP
        self._tx += 1
        self._network._transmit(self, data, env.kind, env.sequence)

    def _send_control(self, env: Envelope) -> None:
        if self.close_reason is None:
            self._transmit(env)

    async def _handshake_send(self, env: Envelope) -> None:
        if self._vanished or self.close_reason is not None:
            raise ConnectionClosed(self.close_reason or "connection reset")
        self._transmit(env)

    # --- receiving

    def _on_frame(self, data: bytes) -> None:
        if self.close_reason is not None and self._established:
            return
        max_frame, ext_hook = self._decoder_config
        try:
            env = decode_frame(data, max_frame_size=max_frame, ext_hook=ext_hook)
            if self._network._trace_messages:
                self._network._trace(self.host, f"recv {self._remote_host} {env.kind.name} {env.sequence}")
            if self._established:
                self._deliver(env)
            else:
                self._handshake_inbox.append(env)
                self._handshake_lot.unpark_all()
        except ProtocolError as exc:
            self._abort(f"protocol error: {exc}")

    async def _handshake_receive(self) -> Envelope:
        while not self._handshake_inbox:
            if self.close_reason is not None:
                raise ConnectionClosed(self.close_reason)
            await self._handshake_lot.park()
        return self._handshake_inbox.popleft()

    # --- closing

    async def aclose(self, reason: str = "closed") -> None:
        if self.close_reason is not None:
            return
        if not self._vanished:
            self._transmit(Envelope(Kind.GOODBYE, payload=reason))
        self._abort(reason, error=False)
        await trio.lowlevel.checkpoint()

    def _peer_goodbye(self, reason: str) -> None:
        self._abort(f"closed by the peer: {reason}" if reason else "closed by the peer", error=False)

    def _abort(self, reason: str, *, error: bool = True) -> None:
        if self._mark_closed(reason, error=error and not self._vanished):
            self._network._hosts[self.host].endpoints.pop(self.serial, None)
            self._handshake_lot.unpark_all()
            if self._remote is not None:
                self._remote._inbox_space.unpark_all()
            if self._scope is not None:
                self._scope.cancel()

    def _vanish(self, reason: str) -> None:
        self._vanished = True
        self._abort(reason, error=False)

    def _reset(self) -> None:
        self._abort("connection reset by the peer")

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            if self.close_reason is not None:
                scope.cancel()
            task_status.started()
            await self._keepalive(self._abort)


# -------------------------------------------------------------------- transport


class SimTransport(Transport):
    """A host's transport on a :class:`SimNetwork`.  Addresses are host names.

    Its tasks live in ``nursery`` (the host's), so cancelling that nursery
    (a crash) stops them all.
    """

    def __init__(self, network: SimNetwork, host: str, config: TransportConfig, nursery: trio.Nursery):
        self.network = network
        self.host = host
        self.config = config
        self._nursery = nursery

    async def listen(self, handler: ConnectionHandler, address: Any = None) -> str:
        if address not in (None, self.host):
            raise ConnectError(f"host {self.host} can only listen on its own address")
        self.network._host(self.host).listener = (self, handler)
        await trio.lowlevel.checkpoint()
        return self.host

    async def connect(self, address: Any, *, expect_node: str | None = None) -> SimConnection:
        return await self.network._open(self, str(address), expect_node)

    async def _establish(self, conn: SimConnection, role: Role, expect_node: str | None) -> SimConnection:
        nonce = self.network.rng.randbytes(16)
        handshake = Handshake(self.identity, role, nonce, timeout=self.config.handshake_timeout, expect_node=expect_node,
                              stopping=self.stopping and role is Role.ACCEPTOR)
        try:
            peer = await drive_handshake(handshake, conn._handshake_send, conn._handshake_receive, conn._remote_host)
        except HandshakeRefused:
            conn._abort("handshake refused", error=False)
            raise
        conn.peer = PeerInfo(peer.node, peer.incarnation, conn._remote_host)
        conn._established = True
        # Frames that arrived right after the peer's ACCEPT belong to the session.
        early, conn._handshake_inbox = conn._handshake_inbox, deque()
        try:
            for env in early:
                conn._deliver(env)
        except ProtocolError as exc:
            conn._abort(f"protocol error: {exc}")
        await self._nursery.start(conn._run)
        return conn

    async def _serve_one(self, conn: SimConnection, handler: ConnectionHandler) -> None:
        try:
            await self._establish(conn, Role.ACCEPTOR, None)
        except HandshakeRefused:
            return
        try:
            await handler(conn)
        except Exception:
            logging.getLogger("eco.transport").exception("connection handler for node %s failed", conn.peer.node)
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose("handler finished")
