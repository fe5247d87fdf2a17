"""The transport interface shared by real TCP (:mod:`eco.runtime.tcp`) and the
simulated network (:mod:`eco.runtime.simnet`).

A :class:`Transport` belongs to one node.  It listens for peers
(:meth:`Transport.listen`) and dials them (:meth:`Transport.connect`); both
yield authenticated :class:`Connection` objects, after the handshake of
:mod:`eco.runtime.handshake`.  A connection carries :class:`~eco.runtime.wire.Envelope`
values in order (on TCP), batches sends, answers keepalive pings and closes
itself when the peer goes silent.  Node code only sees this module's API and
cannot tell which implementation it runs on.

Also here: :class:`Backoff` (exponential backoff with jitter, pure) and the
:func:`connect_with_backoff` / :func:`reconnecting` helpers built on it.
"""

from __future__ import annotations

import abc
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .handshake import Established, Handshake, Identity, PeerHello, Reason, Refused, Role, Send
from .wire import DEFAULT_MAX_FRAME_SIZE, WIRE_VERSION, Envelope, Kind, ProtocolError, expand_batch, validate_envelope

log = logging.getLogger("eco.transport")


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TransportConfig:
    """Everything a transport needs.  Durations in seconds, sizes in bytes."""

    identity: Identity
    handshake_timeout: float = 5.0
    connect_timeout: float = 5.0
    keepalive_interval: float = 1.0
    keepalive_misses: int = 3
    """A connection with no received traffic for this many intervals is declared dead."""
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    send_buffer_bytes: int = 1 << 20
    """``send`` waits while this much encoded data is waiting for the writer."""
    receive_queue: int = 8192
    """Envelopes received but not yet taken by ``receive``; beyond it the reader stops reading."""
    close_timeout: float = 2.0
    """How long a graceful close waits for buffered data to flush."""
    packer_default: Callable[[Any], Any] | None = field(default=None, repr=False)
    ext_hook: Callable[[int, bytes], Any] | None = field(default=None, repr=False)
    lend_reads: bool = True
    """A process parking right after writing a lone message may wait on that socket
    itself (one scheduling pass per request/response hop instead of two)."""
    busy_wait: float = 50e-6
    """With ``lend_reads``: before trio sleeps while a process waits on a lent socket, poll
    trio's epoll descriptor for up to this many seconds (a reply found meanwhile costs no
    wake-up; adaptive, see runtime/fd_lending.py).  0 turns it off."""

    def __post_init__(self) -> None:
        if self.keepalive_interval <= 0 or self.keepalive_misses < 1:
            raise ValueError("keepalive_interval must be > 0 and keepalive_misses >= 1")
        if self.handshake_timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        if not 0.0 <= self.busy_wait <= 0.01:
            raise ValueError("busy_wait must be between 0 and 0.01 seconds")


@dataclass(frozen=True)
class PeerInfo:
    """The authenticated peer of a connection.  ``address`` is transport-specific
    (``"host:port"`` on TCP, the host name on the simulated network)."""

    node: str
    incarnation: int
    address: Any


# ------------------------------------------------------------------- exceptions


class TransportError(Exception):
    """Base class of transport failures."""


class ConnectionClosed(TransportError):
    """The connection is closed; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ConnectError(TransportError):
    """A connection could not be opened (refused, unreachable, timed out)."""


class HandshakeRefused(ConnectError):
    """The handshake failed; ``refusal.reason`` is a :class:`~eco.runtime.handshake.Reason`."""

    def __init__(self, refusal: Refused, address: Any):
        who = "the peer refused" if refusal.by_peer else "refused"
        super().__init__(f"handshake with {address} {who}: {refusal.reason.value}: {refusal.detail}")
        self.refusal = refusal
        self.address = address


# ------------------------------------------------------------------- connection


class Connection(abc.ABC):
    """An authenticated, ordered stream of envelopes to one peer.

    * ``await send(env)``: buffers ``env`` for the writer (sends are coalesced
      into few writes).  Returns without yielding unless the send buffer is full,
      in which case it waits (backpressure).  Raises :class:`ConnectionClosed`
      once the connection is closing, and :class:`~eco.runtime.wire.ProtocolError`
      if ``env`` cannot be encoded.
    * ``send_nowait(env)``: the same without ``await``, for code that must
      not block (such as routing inside a node); raises ``trio.WouldBlock``
      when the send buffer is full instead of waiting.
    * ``await receive()`` / ``async for env in conn``: the next envelope.
      Envelopes received before the connection closed are always delivered
      first; then ``receive`` raises :class:`ConnectionClosed` and iteration stops.
    * ``await receive_batch(max_items=None)``: every envelope queued so far
      (at least one), in order; raises :class:`ConnectionClosed` like ``receive``.
    * ``set_receiver(on_envelope)``: direct mode.  The connection calls
      ``on_envelope(env)`` synchronously, in its own reader task, for every
      messaging envelope instead of queueing it for ``receive``.
    * ``await aclose(reason)``: graceful close (flushes, tells the peer).
    * ``peer``, ``closed``, ``close_reason``, ``rtt`` (last keepalive round trip).
    """

    def __init__(self, config: TransportConfig, peer: PeerInfo):
        self.config = config
        self.peer = peer
        self.close_reason: str | None = None
        self.rtt: float | None = None
        self._inbox: deque[Envelope] = deque()
        self._readers = trio.lowlevel.ParkingLot()
        self._inbox_space = trio.lowlevel.ParkingLot()
        # Waiter counts, so the hot path avoids ParkingLot.__bool__ (a Python call).
        self._readers_waiting = 0
        self._space_waiting = 0
        self._closing = False
        self._closed_event = trio.Event()
        self._receiver: Callable[[Any], object] | None = None
        self._receiver_raw = False
        self._rx = 0  # activity counters, sampled by keepalive
        self._tx = 0

    def __repr__(self) -> str:
        state = f"closed: {self.close_reason}" if self.close_reason is not None else "open"
        return f"<{type(self).__name__} {self.peer.node}#{self.peer.incarnation} at {self.peer.address} {state}>"

    # ----------------------------------------------------------------- public

    @abc.abstractmethod
    async def send(self, env: Envelope) -> None: ...

    def send_nowait(self, env: Envelope) -> None:
        """Buffer ``env`` for sending without waiting.

        Raises ``trio.WouldBlock`` when the send buffer is full (nothing is
        buffered then: retry with ``await send(env)`` to wait for space),
        :class:`ConnectionClosed` once the connection is closing, and
        :class:`~eco.runtime.wire.ProtocolError` if ``env`` cannot be encoded.
        """
        raise NotImplementedError

    def send_raw_nowait(self, kind: int, channel: str, source: Any, destination: Any, sequence: int, payload: Any) -> None:
        """:meth:`send_nowait` from the envelope's fields, skipping the
        :class:`~eco.runtime.wire.Envelope` (the fastest way to send; same errors)."""
        self.send_nowait(Envelope(kind, channel, source, destination, sequence, payload))

    def frame_head(self, kind: int, channel: str, source: Any, destination: Any, sequence: int) -> Any:
        """A pre-encoded frame head (every field but the payload) for :meth:`send_payload_nowait`.

        Validated now (``ProtocolError`` as for :meth:`send_nowait`).  A head is
        opaque and belongs to this connection; a sender that sends many
        payloads with the same other fields makes it once and keeps it.
        """
        validate_envelope(Envelope(kind, channel, source, destination, sequence, None))
        return (kind, channel, source, destination, sequence)

    def send_payload_nowait(self, head: Any, payload: Any) -> None:
        """:meth:`send_raw_nowait` with the fields of ``head`` (from :meth:`frame_head`):
        only the payload is encoded per message.  Same errors."""
        self.send_raw_nowait(*head, payload)

    def payload_sender(self, head: Any) -> Callable[[Any], None]:
        """``send(payload)``: :meth:`send_payload_nowait` with ``head`` bound (the cheapest
        per-message call; same errors).  Keep it no longer than the connection."""
        send = self.send_payload_nowait

        def send_payload(payload: Any) -> None:
            send(head, payload)

        return send_payload

    def payload_offer(self, head: Any) -> Callable[[Any], bool]:
        """``offer(payload) -> bool``: :meth:`payload_sender` that returns False instead of
        raising ``trio.WouldBlock`` or :class:`ConnectionClosed` (nothing is sent then;
        ``await send(...)`` waits or explains).  Encoding errors still raise."""
        send = self.payload_sender(head)

        def offer(payload: Any) -> bool:
            try:
                send(payload)
            except (trio.WouldBlock, ConnectionClosed):
                return False
            return True

        return offer

    @abc.abstractmethod
    async def aclose(self, reason: str = "closed") -> None: ...

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    async def receive(self) -> Envelope:
        inbox = self._inbox
        if not inbox:
            await self._wait_inbox()
        env = inbox.popleft()
        if inbox and self._readers_waiting:
            self._readers.unpark()  # another receiver may take the rest
        if self._space_waiting and len(inbox) < self.config.receive_queue:
            self._inbox_space.unpark_all()
        return env

    async def receive_batch(self, max_items: int | None = None) -> list[Envelope]:
        """Wait for at least one envelope, then return all queued ones (at most ``max_items``), in order.

        One call per batch instead of one per envelope: the cheapest way to
        drain a busy connection while keeping the receive queue's backpressure.
        Raises :class:`ConnectionClosed` once the connection is closed and
        everything received before has been returned.
        """
        if max_items is not None and max_items < 1:
            raise ValueError("max_items must be at least 1")
        inbox = self._inbox
        if not inbox:
            await self._wait_inbox()
        if max_items is None or len(inbox) <= max_items:
            batch = list(inbox)
            inbox.clear()
        else:
            popleft = inbox.popleft
            batch = [popleft() for _ in range(max_items)]
            if self._readers_waiting:
                self._readers.unpark()
        if self._space_waiting and len(inbox) < self.config.receive_queue:
            self._inbox_space.unpark_all()
        return batch

    async def _wait_inbox(self) -> None:
        inbox = self._inbox
        while not inbox:
            if self.close_reason is not None:
                raise ConnectionClosed(self.close_reason)
            self._readers_waiting += 1
            try:
                await self._readers.park()
            finally:
                self._readers_waiting -= 1

    def set_receiver(self, on_envelope: Callable[[Any], object] | None, *, raw: bool = False) -> None:
        """Switch to direct delivery: call ``on_envelope(env)`` for each messaging envelope.

        With ``raw=True`` the callback gets the validated frame as a list,
        ``[WIRE_VERSION, kind, channel, source, destination, sequence, payload]``
        (``kind`` a :class:`~eco.runtime.wire.Kind`, so ``frame[1:]`` lines up
        with the envelope's fields), instead of an ``Envelope``: the fastest
        way to receive, as no object is built per message.  The list is the
        callback's to keep or change.  A raw receiver also gets ``SEND_BATCH``
        frames as they are (``payload``: the list of the SEND payloads, in
        order); everyone else gets the SEND envelopes they stand for.

        The callback runs synchronously in the connection's reader task (on
        TCP, once per decoded envelope of each read, with no task switch per
        message), in order, and must not block; its return value is ignored.
        Envelopes already queued for ``receive`` are passed to it first, here.
        While a receiver is set, ``receive`` gets nothing but still raises
        :class:`ConnectionClosed` when the connection closes (so does
        ``wait_closed``).  There is no receive-side backpressure in this mode:
        the callback decides what to do with a message it cannot take.  If the
        callback raises, the error is logged and the connection is closed.
        ``set_receiver(None)`` goes back to queueing for ``receive``.
        """
        self._receiver = on_envelope
        self._receiver_raw = raw
        inbox = self._inbox
        while on_envelope is not None and inbox and self._receiver is on_envelope:
            env = inbox.popleft()
            on_envelope([WIRE_VERSION, *env] if raw else env)
        if self._space_waiting:
            self._inbox_space.unpark_all()
        if on_envelope is None and inbox and self._readers_waiting:
            self._readers.unpark()

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> Envelope:
        inbox = self._inbox
        if inbox and not self._space_waiting and not self._readers_waiting:  # (receive() inlined for a busy connection)
            return inbox.popleft()
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    # ------------------------------------------------------ for implementations

    def _deliver(self, env: Envelope) -> None:
        """Handle one received envelope: control kinds here, the rest to the receiver or inbox."""
        self._rx += 1
        kind = env[0]
        if kind >= 32:  # messaging and above; control kinds are 16..31
            receiver = self._receiver
            if receiver is not None:
                try:
                    if self._receiver_raw:
                        receiver([WIRE_VERSION, *env])
                    elif kind == Kind.SEND_BATCH:
                        envs = expand_batch(env)
                        for i, one in enumerate(envs):
                            receiver(one)
                            if self._receiver is not receiver:  # switched mid-batch: the rest goes the new way
                                for later in envs[i + 1 :]:
                                    self._deliver(later)
                                break
                    else:
                        receiver(env)
                except Exception as exc:
                    self._receiver_failed(exc)
                return
            inbox = self._inbox
            was_empty = not inbox
            if kind == Kind.SEND_BATCH:
                inbox.extend(expand_batch(env))
            else:
                inbox.append(env)
            if self._readers_waiting and was_empty and inbox:
                self._readers.unpark()
        elif kind == Kind.PING:
            if not self._closing:
                self._send_control(Envelope(Kind.PONG, payload=env.payload))
        elif kind == Kind.PONG:
            if isinstance(env.payload, (int, float)):
                self.rtt = max(0.0, trio.current_time() - env.payload)
        elif kind == Kind.GOODBYE:
            self._peer_goodbye(env.payload if isinstance(env.payload, str) else "")
        elif kind == Kind.REFUSE:
            # The peer gave up on a handshake we already considered complete (its timeout).
            code = env.payload.get("reason") if isinstance(env.payload, dict) else None
            self._peer_goodbye(f"the peer refused the connection ({code or 'no reason given'})")
        else:  # a handshake kind after the handshake
            raise ProtocolError(f"unexpected {Kind(kind).name} after the handshake")

    def _receiver_failed(self, exc: Exception) -> None:
        log.error(
            "receiver of connection to node %s at %s failed; closing the connection",
            self.peer.node, self.peer.address, exc_info=exc,
        )
        self._abort(f"receiver failed: {type(exc).__name__}: {exc}")

    def _abort(self, reason: str, *, error: bool = True) -> None:
        """Close now (implementations cancel their tasks)."""
        raise NotImplementedError

    def _inbox_full(self) -> bool:
        return len(self._inbox) >= self.config.receive_queue

    async def _wait_inbox_space(self) -> None:
        while len(self._inbox) >= self.config.receive_queue and self.close_reason is None:
            self._space_waiting += 1
            try:
                await self._inbox_space.park()
            finally:
                self._space_waiting -= 1

    @abc.abstractmethod
    def _send_control(self, env: Envelope) -> None:
        """Send a control envelope without waiting (best effort)."""

    @abc.abstractmethod
    def _peer_goodbye(self, reason: str) -> None:
        """The peer announced it is closing."""

    def _mark_closed(self, reason: str, *, error: bool) -> bool:
        """Record the final state; log abnormal closes.  Returns False if already closed."""
        if self.close_reason is not None:
            return False
        self.close_reason = reason
        self._closing = True
        if error:
            log.warning("connection to node %s at %s closed: %s", self.peer.node, self.peer.address, reason)
        else:
            log.debug("connection to node %s at %s closed: %s", self.peer.node, self.peer.address, reason)
        self._readers.unpark_all()
        self._inbox_space.unpark_all()
        self._closed_event.set()
        return True

    async def _keepalive(self, abort: Callable[[str], None]) -> None:
        """Ping when idle; declare the connection dead after ``keepalive_misses`` silent intervals."""
        interval = self.config.keepalive_interval
        misses = self.config.keepalive_misses
        silent = 0
        last_rx, last_tx = self._rx, self._tx
        while True:
            await trio.sleep(interval)
            if self._closing:
                continue
            if self._rx == last_rx and not self._inbox_full():
                # (A full inbox means we stopped reading, not that the peer is silent.)
                silent += 1
                if silent >= misses:
                    abort(f"keepalive timeout: no traffic from the peer for {silent * interval:g}s")
                    return
            else:
                silent = 0
            if self._tx == last_tx:
                self._send_control(Envelope(Kind.PING, payload=trio.current_time()))
            last_rx, last_tx = self._rx, self._tx


ConnectionHandler = Callable[[Connection], Awaitable[None]]


# -------------------------------------------------------------------- transport


class Transport(abc.ABC):
    """A node's endpoint on a network (TCP or simulated).

    * ``await listen(handler, address=None) -> bound_address``: accept peers;
      each authenticated connection is passed to ``handler`` in its own task,
      and closed when the handler returns.  Refused or broken connections are
      logged (logger ``eco.transport``) and never stop the listener.
    * ``await connect(address, expect_node=None) -> Connection``: dial and
      authenticate a peer; raises :class:`ConnectError` or :class:`HandshakeRefused`.
      The caller owns the connection and must ``aclose`` it.
    """

    config: TransportConfig
    stopping: bool = False
    """Set by the node as it stops: handshakes of new peers are refused with ``stopping`` (the
    dialler learns the node is going away, and logs no warning about it)."""

    @property
    def identity(self) -> Identity:
        return self.config.identity

    @abc.abstractmethod
    async def listen(self, handler: ConnectionHandler, address: Any = None) -> Any: ...

    @abc.abstractmethod
    async def connect(self, address: Any, *, expect_node: str | None = None) -> Connection: ...


# ------------------------------------------------------------- handshake driver


async def drive_handshake(
    handshake: Handshake,
    send: Callable[[Envelope], Awaitable[None]],
    receive: Callable[[], Awaitable[Envelope]],
    address: Any,
) -> PeerHello:
    """Run ``handshake`` over ``send``/``receive`` until it succeeds or fails.

    On failure a REFUSE is sent when possible, the refusal is logged with the
    peer address, and :class:`HandshakeRefused` is raised.  Protocol errors and
    disconnects during the handshake count as refusals.
    """
    refusal: Refused | None = None
    lost = False
    effects = handshake.start(trio.current_time())
    assert handshake.deadline is not None
    with trio.move_on_at(handshake.deadline):
        try:
            while refusal is None:
                for effect in effects:
                    if isinstance(effect, Send):
                        await send(effect.envelope)
                    elif isinstance(effect, Established):
                        return effect.peer
                    elif isinstance(effect, Refused):
                        refusal = effect
                if refusal is None:
                    effects = handshake.receive(await receive())
        except ProtocolError as exc:
            refusal = Refused(Reason.MALFORMED, str(exc))
            await _try_send(send, Envelope(Kind.REFUSE, payload={"reason": Reason.MALFORMED.value}))
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            refusal = Refused(Reason.UNEXPECTED, f"connection lost during the handshake ({_describe_exc(exc)})")
            lost = True
    if refusal is None:
        for effect in handshake.timeout(trio.current_time()):
            if isinstance(effect, Send):
                await _try_send(send, effect.envelope)
            elif isinstance(effect, Refused):
                refusal = effect
    assert refusal is not None
    # A refusal (cookie, cluster, version, garbage, silence) means misconfiguration: a warning.
    # A peer that is stopping, or a connection lost before it was authenticated (the peer
    # stopped or crashed meanwhile: what a refused TCP connect is a moment later), is no such
    # thing; the dialler gets the error and decides.
    quiet = lost or refusal.reason is Reason.STOPPING
    log.log(
        logging.INFO if quiet else logging.WARNING,
        "handshake with %s (%s) failed: %s: %s",
        address, handshake.peer.node if handshake.peer else "unknown node", refusal.reason.value, refusal.detail,
    )
    raise HandshakeRefused(refusal, address)


async def _try_send(send: Callable[[Envelope], Awaitable[None]], env: Envelope) -> None:
    with trio.move_on_after(1.0):
        try:
            await send(env)
        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


def _describe_exc(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------------- backoff


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter (pure policy).

    ``delay(attempt, rng)`` for attempt 0, 1, 2, ... grows as
    ``initial * multiplier**attempt`` capped at ``maximum``; a random fraction
    ``jitter`` of it is drawn uniformly so reconnecting peers spread out.
    """

    initial: float = 0.05
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.5
    reset_after: float = 10.0
    """A connection that lived this long resets the attempt counter."""

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need 0 < initial <= maximum, multiplier >= 1, 0 <= jitter <= 1")

    def base(self, attempt: int) -> float:
        # Cap the exponent so huge attempt counts cannot overflow.
        return min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = self.base(attempt)
        return base * (1.0 - self.jitter) + base * self.jitter * rng.random()


async def connect_with_backoff(
    transport: Transport,
    address: Any,
    *,
    backoff: Backoff = Backoff(),
    rng: random.Random | None = None,
    expect_node: str | None = None,
    max_attempts: int | None = None,
) -> Connection:
    """Dial ``address`` until it works, sleeping ``backoff.delay(n)`` between attempts.

    Raises the last :class:`ConnectError` after ``max_attempts`` failures.
    """
    rng = rng or random.Random()
    attempt = 0
    while True:
        try:
            return await transport.connect(address, expect_node=expect_node)
        except ConnectError as exc:
            attempt += 1
            if max_attempts is not None and attempt >= max_attempts:
                raise
            delay = backoff.delay(attempt - 1, rng)
            log.info("connecting to %s failed (%s); retrying in %.3fs", address, exc, delay)
            await trio.sleep(delay)


async def reconnecting(
    transport: Transport,
    address: Any,
    session: ConnectionHandler,
    *,
    backoff: Backoff = Backoff(),
    rng: random.Random | None = None,
    expect_node: str | None = None,
) -> None:
    """Keep a connection to ``address`` up forever, running ``session(conn)`` on each.

    When the session returns or the connection drops, the connection is closed
    and redialled with backoff.  Cancel the calling scope to stop.
    """
    rng = rng or random.Random()
    attempt = 0
    while True:
        try:
            conn = await transport.connect(address, expect_node=expect_node)
        except ConnectError:
            await trio.sleep(backoff.delay(attempt, rng))
            attempt += 1
            continue
        started = trio.current_time()
        try:
            await session(conn)
        except ConnectionClosed:
            pass
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose("session ended")
        if trio.current_time() - started >= backoff.reset_after:
            attempt = 0
        await trio.sleep(backoff.delay(attempt, rng))
        attempt += 1
