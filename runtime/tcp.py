"""The TCP transport (trio).

Each connection runs three tasks: a reader (bytes -> :class:`FrameDecoder` ->
inbox or receiver callback, every frame of a read in one step), a writer
(drains the :class:`FrameEncoder` send buffer in one write per wake-up, so
frames queued while a write is in flight go out together), and the keepalive.
A message sent while the writer is idle is written directly by ``send``, with
no task switch.  Sockets use TCP_NODELAY.  A connection that
fails (refused handshake, garbage, oversized frame, silence) is closed and
logged; the listener keeps serving everyone else.

Use::

    async with open_tcp_transport(config) as transport:
        address = await transport.listen(handler, ("127.0.0.1", 0))
        conn = await transport.connect(other_address)
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import trio

from .fd_lending import FdLending, fd_lending
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
from .wire import _KIND_INT, _SEND_BATCH, WIRE_VERSION, Envelope, FrameDecoder, FrameEncoder, Kind, ProtocolError

log = logging.getLogger("eco.transport")

_READ_SIZE = 65536


class TcpAddress(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, address: Any) -> TcpAddress:
        """Accept ``"host:port"``, ``(host, port)`` or a :class:`TcpAddress`."""
        if isinstance(address, str):
            host, sep, port = address.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"invalid TCP address {address!r}: expected HOST:PORT")
            return cls(host.strip("[]") or "127.0.0.1", int(port))
        if isinstance(address, tuple) and len(address) == 2:
            return cls(str(address[0]), int(address[1]))
        raise ValueError(f"invalid TCP address {address!r}")


class _Framed:
    """A stream plus its decoder, used for the handshake before the connection exists."""

    def __init__(self, stream: trio.SocketStream, config: TransportConfig):
        self.stream = stream
        self.decoder = FrameDecoder(max_frame_size=config.max_frame_size, read_size=_READ_SIZE, ext_hook=config.ext_hook)
        self.encoder = FrameEncoder(max_frame_size=config.max_frame_size, default=config.packer_default)
        self.pending: deque[Envelope] = deque()
        # A bad frame after the good ones of a read: raised when the handshake gets to it,
        # else (it came after the handshake's last frame) by the connection, after those.
        self.error: ProtocolError | None = None

    async def send(self, env: Envelope) -> None:
        await self.stream.send_all(self.encoder.encode(env))

    async def receive(self) -> Envelope:
        pending = self.pending
        while not pending:
            if self.error is not None:
                raise self.error
            data = await self.stream.receive_some(_READ_SIZE)
            if not data:
                raise ConnectionClosed("the peer closed the connection")
            self.decoder.feed(data)
            try:
                for env in self.decoder.envelopes():
                    pending.append(env)
            except ProtocolError as exc:
                self.error = exc
        return pending.popleft()


class TcpConnection(Connection):
    """A connection over a trio socket stream (see :class:`Connection` for the API)."""

    def __init__(self, config: TransportConfig, peer: PeerInfo, framed: _Framed, lending: FdLending | None = None):
        super().__init__(config, peer)
        self._stream = framed.stream
        self._decoder = framed.decoder
        self._encoder = framed.encoder
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._space_lot = trio.lowlevel.ParkingLot()
        self._scope: trio.CancelScope | None = None
        self._limit = config.send_buffer_bytes
        self._sendbuf = framed.encoder.buffer
        self._writer_idle = False
        self._goodbye_reason: str | None = None
        self._flushed = trio.Event()
        # Envelopes that arrived in the same reads as the handshake's last frame, and a bad
        # frame after them (the connection closes once those are delivered).
        self._early = framed.pending
        self._early_error = framed.error
        self._add = framed.encoder.add
        self._encode = framed.encoder.encode
        self._encode_fields = framed.encoder.encode_fields
        self._pack = framed.encoder._pack
        self._max_frame = config.max_frame_size
        # Direct writes (see _buffer): the socket's descriptor, and whether a
        # frame was written directly since the writer or reader last ran.
        self._fd = stream_fd(framed.stream)
        self._wrote_directly = False
        # Lending the reader's wait to a parked process (see lend_read).
        self._lending = lending if self._fd >= 0 else None
        self._reader_task: trio.lowlevel.Task | None = None
        self._reader_gone = False
        self._borrower: trio.lowlevel.Task | None = None
        self._borrow_mb: Any = None
        self._lent_record: Any = None  # trio's registration record the borrower sits in
        self._rearm_owed = False  # the reader waits unarmed since a lent read (see _pay_rearm)
        self.lent_reads = 0
        """Reads done by a process in place of this connection's reader (see lend_read)."""

    async def send(self, env: Envelope) -> None:
        if self._closing:
            raise ConnectionClosed(self.close_reason or "the connection is closing")
        sendbuf = self._sendbuf
        if len(sendbuf) >= self._limit:
            await self._wait_send_space()
        self._append(self._encode(env))

    def send_nowait(self, env: Envelope) -> None:
        if self._closing:
            raise ConnectionClosed(self.close_reason or "the connection is closing")
        sendbuf = self._sendbuf
        if len(sendbuf) >= self._limit:
            raise trio.WouldBlock
        self._append(self._encode(env))

    def send_raw_nowait(self, kind: int, channel: str, source: Any, destination: Any, sequence: int, payload: Any) -> None:
        if self._closing:
            raise ConnectionClosed(self.close_reason or "the connection is closing")
        sendbuf = self._sendbuf
        if len(sendbuf) >= self._limit:
            raise trio.WouldBlock
        # FrameEncoder.encode_fields inlined for the common case (a known kind
        # that is a Kind or a plain int): this is the node's per-message path.
        value = _KIND_INT.get(kind)
        if value is None or value == 1 or value == _SEND_BATCH or type(channel) is not str or type(sequence) is not int:
            data = self._encode_fields(kind, channel, source, destination, sequence, payload)  # explains the error
        else:
            try:
                data = self._pack((WIRE_VERSION, value, channel, source, destination, sequence, payload))
            except (TypeError, ValueError, OverflowError):
                data = self._encode_fields(kind, channel, source, destination, sequence, payload)  # raises ProtocolError
            if len(data) > self._max_frame:
                data = self._encode_fields(kind, channel, source, destination, sequence, payload)  # raises FrameTooLarge
        self._append(data)

    def frame_head(self, kind: int, channel: str, source: Any, destination: Any, sequence: int) -> bytes:
        return self._encoder.encode_head(kind, channel, source, destination, sequence)

    def send_payload_nowait(self, head: bytes, payload: Any) -> None:
        # The node's per-message send path: only the payload is packed.
        if self._closing:
            raise ConnectionClosed(self.close_reason or "the connection is closing")
        sendbuf = self._sendbuf
        if len(sendbuf) >= self._limit:
            raise trio.WouldBlock
        try:
            data = self._pack(payload)
        except (TypeError, ValueError, OverflowError):
            data = self._encoder.encode_with_head(head, payload)  # raises ProtocolError
        if len(data) + len(head) > self._max_frame:
            data = self._encoder.encode_with_head(head, payload)  # raises FrameTooLarge
        self._append(head + data)

    def payload_sender(self, head: bytes) -> Callable[[Any], None]:
        return self._payload_closure(head, offer=False)  # type: ignore[return-value]

    def payload_offer(self, head: bytes) -> Callable[[Any], bool]:
        return self._payload_closure(head, offer=True)  # type: ignore[return-value]

    def _payload_closure(self, head: bytes, *, offer: bool) -> Callable[[Any], bool | None]:
        # send_payload_nowait as a closure over the connection's state: the
        # node's per-message send path, with as few lookups as possible.
        # (offer=True: return False instead of raising WouldBlock / ConnectionClosed.)
        #
        # Payloads of a SEND head that queue up behind the writer are batched:
        # the first opens a SEND_BATCH frame (FrameEncoder.open_batch), the
        # next ones are appended to it as they are, so the receiver decodes
        # one frame, and delivers one list, per run of messages to the same
        # destination.  A lone message (idle writer) goes out as a plain SEND.
        # While this head's batch is open, a payload is only packed and
        # appended: the batch's limit (FrameEncoder.batch_limit) keeps the
        # frame within max_frame_size and the buffer within send_buffer_bytes,
        # and closing the connection closes the batch first.
        encoder = self._encoder
        sendbuf, limit, pack, max_frame = self._sendbuf, self._limit, self._pack, self._max_frame
        encode_with_head, buffer = encoder.encode_with_head, self._buffer
        room = max_frame - len(head)
        batch_head = FrameEncoder.batch_head(head)
        batch_room = max_frame - len(batch_head) - 4 if batch_head is not None else -1
        batch_key: object = batch_head if batch_head is not None else object()  # (never open)
        open_batch = encoder.open_batch

        def send_payload(payload: Any) -> bool | None:
            nonlocal sendbuf  # (+= extends the one bytearray in place)
            if encoder.batch is batch_key:
                try:
                    data = pack(payload)
                except (TypeError, ValueError, OverflowError):
                    data = encode_with_head(head, payload)  # raises ProtocolError
                sendbuf += data  # one more element of the open SEND_BATCH frame...
                if len(sendbuf) <= encoder.batch_limit:
                    encoder.batch_count += 1
                    return True
                del sendbuf[-len(data):]  # ...unless that makes it too long (rare)
            else:
                data = None
            if self._closing:
                if offer:
                    return False
                raise ConnectionClosed(self.close_reason or "the connection is closing")
            if len(sendbuf) >= limit:
                if offer:
                    return False
                raise trio.WouldBlock
            if data is None:
                try:
                    data = pack(payload)
                except (TypeError, ValueError, OverflowError):
                    data = encode_with_head(head, payload)  # raises ProtocolError
            if len(data) > room:
                encode_with_head(head, payload)  # raises FrameTooLarge
            if self._writer_idle:  # a lone message: a reply will likely come back here (see lend_read)
                if self._lending is not None:
                    self._lending.wrote(self)
                buffer(head + data)
            elif len(data) <= batch_room:
                open_batch(batch_head, data, limit)  # type: ignore[arg-type]
            else:
                if encoder.batch is not None:
                    encoder.close_batch()
                sendbuf += head
                sendbuf += data
            return True

        return send_payload

    def _append(self, data: bytes) -> None:
        """Queue one encoded frame (after any open batch), or send it now on an idle line."""
        if self._lending is not None:  # (a call's request: its reply will come back here)
            self._lending.wrote(self)
        if self._writer_idle:
            self._buffer(data)
        else:
            encoder = self._encoder
            if encoder.batch is not None:
                encoder.close_batch()
            self._sendbuf += data

    def _buffer(self, data: bytes) -> None:
        """Send the encoded frame now if the line is idle, else queue it for the writer task.

        When the writer is parked with nothing queued and no frame went out
        directly since it or the reader last ran, the frame is written to the
        non-blocking socket right here: a lone message (a request, a reply)
        costs no task switch and no added latency.  Anything sent after that
        in the same burst is queued and the writer sends the lot in one write,
        so a flood still costs one system call per batch, not per message.
        """
        sendbuf = self._sendbuf
        if self._writer_idle:
            if not sendbuf and not self._wrote_directly and self._fd >= 0:
                self._wrote_directly = True
                try:
                    sent = os.write(self._fd, data)
                except OSError:  # would block, or broken: the writer deals with it
                    sent = 0
                if sent == len(data):
                    self._tx += 1
                    return
                data = data[sent:]
            if self._encoder.batch is not None:
                self._encoder.close_batch()
            sendbuf += data
            self._writer_idle = False  # (one wake-up is enough)
            self._writer_lot.unpark()
        else:
            if self._encoder.batch is not None:
                self._encoder.close_batch()
            sendbuf += data

    async def _wait_send_space(self) -> None:
        while len(self._sendbuf) >= self._limit:
            await self._space_lot.park()
            if self._closing:
                raise ConnectionClosed(self.close_reason or "the connection is closing")

    def _send_control(self, env: Envelope) -> None:
        if self.close_reason is None:
            self._add(env)
            if self._writer_idle:
                self._writer_idle = False
                self._writer_lot.unpark()

    async def aclose(self, reason: str = "closed") -> None:
        if self.close_reason is not None:
            return
        if not self._closing:
            self._closing = True
            self._goodbye_reason = reason
            self._encoder.add(Envelope(Kind.GOODBYE, payload=reason))
            self._writer_lot.unpark_all()
            self._space_lot.unpark_all()
        # Wait for the peer's EOF (the reader then finishes the close).
        with trio.move_on_after(self.config.close_timeout):
            await self._closed_event.wait()
        self._abort(reason, error=False)

    def set_receiver(self, on_envelope: Callable[[Any], object] | None, *, raw: bool = False) -> None:
        super().set_receiver(on_envelope, raw=raw)
        self._decoder.stop()  # (if called from the old receiver: the rest of the read goes the new way)

    def _peer_goodbye(self, reason: str) -> None:
        # Stop sending, flush, then half-close; the reader finishes at EOF.
        self._goodbye_reason = f"closed by the peer: {reason}" if reason else "closed by the peer"
        if not self._closing:
            self._encoder.close_batch()
            self._closing = True
            self._writer_lot.unpark_all()
            self._space_lot.unpark_all()

    def _mark_closed(self, reason: str, *, error: bool) -> bool:
        self._encoder.close_batch()  # (no payload may join an open batch once closing)
        return super()._mark_closed(reason, error=error)

    def _abort(self, reason: str, *, error: bool = True) -> None:
        self._mark_closed(reason, error=error)
        if self._scope is not None:
            self._scope.cancel()

    # ------------------------------------------------------------------ tasks

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                if self.close_reason is not None:
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._reader)
                nursery.start_soon(self._writer)
                nursery.start_soon(self._keepalive, self._abort)
                task_status.started()
        finally:
            self._mark_closed("connection closed", error=False)
            await trio.aclose_forcefully(self._stream)

    async def _reader(self) -> None:
        stream, decoder = self._stream, self._decoder
        fd, wait_readable, read = self._fd, trio.lowlevel.wait_readable, os.read
        inbox, limit = self._inbox, self.config.receive_queue
        consume = self._consume
        self._reader_task = trio.lowlevel.current_task()
        try:
            while self._early:
                self._deliver(self._early.popleft())
            if self._early_error is not None:
                raise self._early_error
            while True:
                if fd >= 0:
                    # stream.receive_some without trio's wrappers (and without a coroutine
                    # per read): wait until the socket is readable, then read.  Waiting
                    # first (rather than trying a read that usually fails between
                    # messages) saves a system call and an exception per message on a
                    # request/response pattern, and the wait is the reader's scheduling
                    # point, so a busy connection cannot starve others.  While it waits,
                    # a process may borrow its place (see lend_read).
                    await wait_readable(fd)
                    try:
                        data = read(fd, _READ_SIZE)
                    except BlockingIOError:
                        continue
                else:
                    data = await stream.receive_some(_READ_SIZE)
                if not data:
                    break
                self._wrote_directly = False  # (we went through a scheduling point)
                self._rx += 1
                if not consume(data):
                    return
                if len(inbox) >= limit:
                    await self._wait_inbox_space()
        except ProtocolError as exc:
            self._abort(f"protocol error: {exc}")
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if self.close_reason is None and not self._closing:
                self._abort(f"connection broken: {exc or type(exc).__name__}")
            else:
                self._abort(self._goodbye_reason or "connection closed", error=False)
            return
        finally:
            self._reader_left()
        if self._goodbye_reason is not None:
            self._abort(self._goodbye_reason, error=False)
        else:
            self._abort("the peer closed the connection without saying goodbye")

    def _consume(self, data: bytes) -> bool:
        """Decode one read: every complete frame goes straight to the receiver callback,
        or onto the inbox with one wake-up.  False if the receiver failed (the
        connection is then aborting).  Raises ProtocolError on a malformed stream."""
        feed, drain_to = self._decoder.feed, self._decoder.drain_to
        inbox = self._inbox
        feed(data)
        while True:
            receiver = self._receiver
            if receiver is None:
                was_empty = not inbox
                stopped = drain_to(inbox.append, self._deliver)
                if was_empty and inbox and self._readers_waiting:
                    self._readers.unpark()
            else:
                try:
                    stopped = drain_to(receiver, self._deliver, raw=self._receiver_raw)
                except (ProtocolError, trio.Cancelled):
                    raise
                except Exception as exc:
                    self._receiver_failed(exc)
                    return False
            if not stopped:
                return True

    # ------------------------------------------------------------ lending the reader's wait

    def lend_read(self, task: trio.lowlevel.Task, mailbox: Any) -> bool:
        """Let ``task``, about to park on ``mailbox``, be the one the socket wakes.

        Only while the reader waits for the socket and frames go to a receiver
        callback.  Whoever wakes the task first undoes the loan: a delivery to
        the mailbox (``Mailbox`` calls :meth:`lend_return`), the socket (the task
        calls :meth:`lent_read_ready`), a cancellation (:meth:`lend_abort`) or the
        reader leaving (:meth:`_reader_left`).
        """
        lending, reader = self._lending, self._reader_task
        if (
            lending is None or reader is None or self._borrower is not None or self._reader_gone
            or self._receiver is None or self._closing or self.close_reason is not None
        ):
            return False
        if self._rearm_owed:  # the reader still waits, unarmed since the last loan: arm for task
            self._rearm_owed = False
            record = self._lent_record
            if not lending.blocked(reader) or not lending.rearm(self._fd, record, task):
                self._rearm_owed = True
                self._pay_rearm()
                return False
        else:
            record = lending.lend(self._fd, reader, task)
            if record is None:
                return False
        self._lent_record = record
        self._borrower = task
        self._borrow_mb = mailbox
        mailbox._borrow = self
        return True

    def _end_loan(self) -> None:
        mailbox = self._borrow_mb
        self._borrower = self._borrow_mb = None
        if mailbox is not None:
            mailbox._borrow = None

    def lend_return(self, task: trio.lowlevel.Task) -> bool:
        """A message reached the borrower's mailbox: True if it still waits (the reader has
        its place back and the caller wakes it), False if the socket already woke it."""
        if self._borrower is not task:
            return True
        lending = self._lending
        assert lending is not None
        if not lending.swap(self._fd, self._lent_record, task, self._reader_task):
            if not lending.blocked(task):
                return False  # scheduled by the socket: it reads, then finds the message
            # Parked, yet no longer the one the socket wakes: the reader was cancelled
            # and has not run yet.  Wake it now; the reader then finds the loan over.
        self._end_loan()
        return True

    def lend_abort(self) -> None:
        """The borrower was cancelled while parked: the reader gets its place back."""
        task = self._borrower
        if task is not None:
            self._lending.swap(self._fd, self._lent_record, task, self._reader_task)  # type: ignore[union-attr]
            self._end_loan()

    def lent_read_ready(self, task: trio.lowlevel.Task) -> None:
        """In the borrower, woken by the socket: do the reader's read; the socket is armed
        again before trio next waits for I/O (see _pay_rearm)."""
        if self._borrower is not task:
            return  # the reader left meanwhile
        lending = self._lending
        assert lending is not None
        self._end_loan()
        if self._lent_record.read_task is task:  # (trio clears it when the socket wakes us)
            lending.swap(self._fd, self._lent_record, task, self._reader_task)
            return  # not woken by the socket after all
        try:
            data = os.read(self._fd, _READ_SIZE)
        except OSError:  # nothing after all, or broken: the reader finds out itself
            data = None
        try:
            if data:
                self._wrote_directly = False
                self._rx += 1
                self.lent_reads += 1
                self._consume(data)
            # (data == b"": end of stream, which stays readable: the reader sees it too)
        except ProtocolError as exc:
            self._abort(f"protocol error: {exc}")
        finally:  # whatever happened, the socket is watched again before trio waits for I/O
            if not self._reader_gone and not self._rearm_owed:
                self._rearm_owed = True
                lending.owed.append(self)

    def _pay_rearm(self) -> None:
        # (FdLending.before_io_wait) The reader watches the socket again, unless a process
        # borrowed it meanwhile (lend_read paid) or the reader is gone or going.
        if not self._rearm_owed:
            return
        self._rearm_owed = False
        lending, reader = self._lending, self._reader_task
        assert lending is not None and reader is not None  # (owed only after a lent read)
        if self._reader_gone or not lending.blocked(reader):
            return
        if not lending.rearm(self._fd, self._lent_record, reader):
            trio.lowlevel.reschedule(reader)  # it returns from its wait and waits again by itself

    def _reader_left(self) -> None:
        self._reader_gone = True
        self._rearm_owed = False
        task, mailbox = self._borrower, self._borrow_mb
        if task is None:
            return
        lending = self._lending
        assert lending is not None
        lending.swap(self._fd, self._lent_record, task, None)
        self._end_loan()
        # Still parked: it now waits on its mailbox only, as any process does.  Already
        # woken by the socket: it finds the loan over and simply looks at its mailbox.
        if not lending.blocked(task) and mailbox is not None and mailbox._waiter is task:
            mailbox._waiter = None

    async def _writer(self) -> None:
        stream, encoder, fd = self._stream, self._encoder, self._fd
        sendbuf, space_lot = self._sendbuf, self._space_lot
        try:
            while True:
                while not sendbuf:
                    if self._closing:
                        self._flushed.set()
                        await stream.send_eof()
                        return
                    self._wrote_directly = False
                    self._writer_idle = True
                    try:
                        await self._writer_lot.park()
                    finally:
                        self._writer_idle = False
                data = encoder.take()
                if space_lot:
                    space_lot.unpark_all()
                # Try the non-blocking socket first; trio waits for the rest.
                sent = 0
                if fd >= 0:
                    try:
                        sent = os.write(fd, data)
                    except BlockingIOError:
                        pass
                if sent < len(data):
                    await stream.send_all(memoryview(data)[sent:])
                self._tx += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            # (Once closing, the peer going away mid-goodbye is how a close ends, as in _reader.)
            self._abort(f"connection broken while sending: {exc or type(exc).__name__}", error=not self._closing)


class TcpTransport(Transport):
    """TCP transport; create with :func:`open_tcp_transport`."""

    def __init__(self, config: TransportConfig, nursery: trio.Nursery):
        self.config = config
        self._nursery = nursery
        self.addresses: list[TcpAddress] = []
        self._lending = fd_lending(config.busy_wait) if config.lend_reads else None
        if self._lending is not None:
            trio.lowlevel.add_instrument(self._lending)

    async def listen(self, handler: ConnectionHandler, address: Any = None) -> TcpAddress:
        """Listen on ``address`` (default ``127.0.0.1:0``); returns the bound address."""
        host, port = TcpAddress.parse(address) if address is not None else TcpAddress("127.0.0.1", 0)
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise ConnectError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        sockname = listeners[0].socket.getsockname()
        bound = TcpAddress(sockname[0], sockname[1])
        self.addresses.append(bound)

        async def serve(stream: trio.SocketStream) -> None:
            await self._serve_one(stream, handler)

        await self._nursery.start(trio.serve_listeners, serve, listeners)
        log.info("node %s listening on %s", self.identity.node, bound)
        return bound

    async def _serve_one(self, stream: trio.SocketStream, handler: ConnectionHandler) -> None:
        # Nothing that happens on one connection may escape into the listener.
        address = _peer_address(stream)
        try:
            conn = await self._establish(stream, Role.ACCEPTOR, address, None)
        except HandshakeRefused:
            return
        except Exception:
            log.exception("accepting a connection from %s failed", address)
            await trio.aclose_forcefully(stream)
            return
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(conn._run)
                try:
                    await handler(conn)
                except Exception:
                    log.exception("connection handler for node %s at %s failed", conn.peer.node, address)
                finally:
                    with trio.CancelScope(shield=True):
                        await conn.aclose("handler finished")
        except Exception:
            log.exception("connection to node %s at %s failed", conn.peer.node, address)

    async def connect(self, address: Any, *, expect_node: str | None = None) -> TcpConnection:
        target = TcpAddress.parse(address)
        try:
            with trio.fail_after(self.config.connect_timeout):
                stream = await trio.open_tcp_stream(target.host, target.port)
        except trio.TooSlowError:
            raise ConnectError(f"connecting to {target} timed out after {self.config.connect_timeout:g}s") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {target}: {exc.strerror or exc}") from None
        conn = await self._establish(stream, Role.INITIATOR, str(target), expect_node)
        await self._nursery.start(conn._run)
        return conn

    async def _establish(self, stream: trio.SocketStream, role: Role, address: str, expect_node: str | None) -> TcpConnection:
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        except OSError:
            pass
        framed = _Framed(stream, self.config)
        handshake = Handshake(self.identity, role, os.urandom(16), timeout=self.config.handshake_timeout, expect_node=expect_node,
                              stopping=self.stopping and role is Role.ACCEPTOR)
        try:
            peer = await drive_handshake(handshake, framed.send, framed.receive, address)
        except HandshakeRefused:
            await trio.aclose_forcefully(stream)
            raise
        return TcpConnection(self.config, PeerInfo(peer.node, peer.incarnation, address), framed, self._lending)

    def _stop_lending(self) -> None:
        lending, self._lending = self._lending, None
        if lending is not None:
            try:
                trio.lowlevel.remove_instrument(lending)
            except KeyError:  # (trio drops an instrument that raised)
                pass

    def lend_read(self, task: trio.lowlevel.Task, mailbox: Any) -> bool:
        """Let ``task``, about to park on ``mailbox``, wait on the socket of the connection
        it last sent a lone message or a request to, if no other task sent one since (see
        :meth:`TcpConnection.lend_read`)."""
        lending = self._lending
        if lending is None or lending.writer is not task:
            return False
        conn = lending.last
        return conn is not None and conn.lend_read(task, mailbox)


@asynccontextmanager
async def open_tcp_transport(config: TransportConfig) -> AsyncIterator[TcpTransport]:
    """A TCP transport whose listeners and connections live inside this block."""
    transport: TcpTransport | None = None
    try:
        async with trio.open_nursery() as nursery:
            transport = TcpTransport(config, nursery)
            try:
                yield transport
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if transport is not None:  # (after every connection has closed: they may still lend)
            transport._stop_lending()


def stream_fd(stream: trio.SocketStream) -> int:
    """The socket's file descriptor for direct non-blocking writes, or -1 where
    ``os.write`` cannot write to sockets (Windows)."""
    if os.name != "posix":
        return -1
    try:
        return stream.socket.fileno()
    except (AttributeError, OSError):
        return -1


def _peer_address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "unknown address"
