"""The wire format: envelopes and their framing on a byte stream.

An :class:`Envelope` is the unit every transport carries.  On the wire each
envelope is one msgpack array (the *frame*)::

    [WIRE_VERSION, kind, channel, source, destination, sequence, payload]

A ``SEND_BATCH`` frame carries the payloads of consecutive ``SEND`` envelopes
with the same other fields as one list (see :meth:`FrameEncoder.open_batch`).
Frames are written back to back as a plain msgpack stream, with no length
prefix.  Decoding feeds received bytes into msgpack's streaming ``Unpacker``,
which parses whole frames at C speed.  Limits are enforced two ways: the
unpacker's buffer is capped at ``max_frame_size`` plus one read chunk, so a peer
announcing a huge frame is refused once that much is buffered and can never
make us hold more; and each decoded frame's exact encoded length (from
``Unpacker.tell()``) is checked against ``max_frame_size``.  See docs/wire.md for the full protocol.

The codec is pure (no I/O): :class:`FrameEncoder` accumulates encoded frames
into a send buffer that a writer drains in one write, and :class:`FrameDecoder`
turns chunks of bytes into envelopes.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import msgpack

WIRE_VERSION = 1
"""Version of the frame layout; every frame starts with it."""

DEFAULT_MAX_FRAME_SIZE = 8 * 1024 * 1024
"""Default upper bound for one encoded frame, in bytes."""

_ENVELOPE_FIELDS = 7


class Kind(enum.IntEnum):
    """Envelope kinds.  Values are grouped in ranges so later issues can add kinds.

    * 1-15 handshake, 16-31 connection control (these never reach the node),
    * 32-47 messaging, 48-63 links and monitors, 64-79 remote spawning and ecosystem services,
    * 80-127 reserved for cluster membership, 128-191 for consensus and
      replicated state, 192-255 for applications and extensions.
    """

    HELLO = 1
    AUTH = 2
    ACCEPT = 3
    REFUSE = 4

    PING = 16
    PONG = 17
    GOODBYE = 18

    SEND = 32
    CAST = 33
    CALL = 34
    REPLY = 35
    SEND_BATCH = 36  # consecutive SENDs with the same head; payload: the list of their payloads

    LINK = 48
    UNLINK = 49
    EXIT = 50
    MONITOR = 51
    DEMONITOR = 52
    DOWN = 53

    SPAWN_REQ = 64
    SPAWN_REPLY = 65

    MEMBERSHIP = 80  # a membership core message (channel "membership", payload: cluster.encode_message)
    STATUS_REQ = 81  # `ecoc status` asks a node for its status
    STATUS_REPLY = 82
    NAMES = 66  # the cluster-wide name table (runtime.names), gossiped between nodes
    LOAD = 67  # a node's load report (placement's least_loaded)

    RAFT = 128  # a Raft peer message (payload: raft.message_to_wire list)


HANDSHAKE_KINDS = frozenset({Kind.HELLO, Kind.AUTH, Kind.ACCEPT, Kind.REFUSE})
CONTROL_KINDS = frozenset({Kind.PING, Kind.PONG, Kind.GOODBYE})

_KIND_BY_VALUE: dict[int, Kind] = {k.value: k for k in Kind}
_SEND_BATCH = Kind.SEND_BATCH
_BATCH_COUNT = b"\0\0\0\0"  # placeholder for an open batch's element count (patched on close)
# Kind (or plain int) -> plain int.  msgpack packs an IntEnum member several
# times slower than an int, so the encoder converts first.
_KIND_INT: dict[int, int] = {k.value: k.value for k in Kind}


class ProtocolError(Exception):
    """The peer sent bytes that break the protocol; the connection must be closed."""


class FrameTooLarge(ProtocolError):
    """A frame exceeds the configured maximum frame size."""


class Envelope(NamedTuple):
    """One message on the wire.

    ``source`` and ``destination`` are opaque msgpack values (the kernel encodes
    a PID as a tuple; note that msgpack returns tuples as lists unless the
    decoder is given an ``ext_hook`` or ``list_hook``).  ``payload`` is any
    msgpack value, including ``bytes``.
    """

    kind: Kind
    channel: str = ""
    source: Any = None
    destination: Any = None
    sequence: int = 0
    payload: Any = None


_new_envelope = tuple.__new__


def validate_envelope(env: Envelope) -> None:
    """Raise :class:`ProtocolError` if ``env`` could not be decoded by a peer's
    :class:`FrameDecoder` (unknown kind, non-str channel, non-int sequence)."""
    if not isinstance(env.kind, int) or isinstance(env.kind, bool) or env.kind not in _KIND_BY_VALUE:
        raise ProtocolError(f"unknown envelope kind {env.kind!r}")
    if type(env.channel) is not str:
        raise ProtocolError(f"envelope channel must be a str, not {type(env.channel).__name__}")
    if type(env.sequence) is not int:
        raise ProtocolError(f"envelope sequence must be an int, not {type(env.sequence).__name__}")
    if env.kind == _SEND_BATCH and type(env.payload) is not list:
        raise ProtocolError(f"a SEND_BATCH envelope's payload must be a list, not {type(env.payload).__name__}")


class FrameEncoder:
    """Encodes envelopes into a send buffer; the writer takes it all at once.

    ``default`` is passed to msgpack for application types (for example to turn
    a PID into an ``ExtType``).  Encoding errors (an unserialisable payload, an
    oversized frame) raise in the caller and leave the buffer unchanged.
    """

    __slots__ = ("_pack", "buffer", "_frames", "max_frame_size", "batch", "batch_limit", "batch_count", "_batch_at")

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, default: Callable[[Any], Any] | None = None):
        self.max_frame_size = max_frame_size
        self._pack = msgpack.Packer(default=default).pack
        self.buffer = bytearray()
        """The live send buffer (read its length; only :meth:`take` empties it)."""
        self._frames = 0
        self.batch: bytes | None = None
        """The batch head (:meth:`batch_head`) of the SEND_BATCH frame still open at the end of
        the buffer, or None.  A sender may append one more encoded payload to it directly
        (``buffer += payload``, ``batch_count += 1``) while the buffer stays within
        ``batch_limit`` (which keeps the frame within ``max_frame_size``); anything else
        must :meth:`close_batch` first."""
        self.batch_limit = 0
        self.batch_count = 0
        self._batch_at = 0  # offset of the open batch's 4-byte element count

    def encode(self, env: Envelope) -> bytes:
        """Return the frame for ``env`` without buffering it."""
        kind, channel, source, destination, sequence, payload = env
        value = _KIND_INT.get(kind)
        try:
            data = self._pack((WIRE_VERSION, kind if value is None else value, channel, source, destination, sequence, payload))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"cannot encode {_kind_label(kind)} envelope: {exc}") from exc
        if (
            len(data) > self.max_frame_size or value is None or type(channel) is not str or type(sequence) is not int
            or (value == 1 and type(kind) is bool) or (value == _SEND_BATCH and type(payload) is not list)
        ):
            self._reject(env, data)
        return data

    def encode_fields(self, kind: int, channel: str, source: Any, destination: Any, sequence: int, payload: Any) -> bytes:
        """Like :meth:`encode`, from the fields, without building an :class:`Envelope`."""
        value = _KIND_INT.get(kind)
        try:
            data = self._pack((WIRE_VERSION, kind if value is None else value, channel, source, destination, sequence, payload))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"cannot encode {_kind_label(kind)} envelope: {exc}") from exc
        if (
            len(data) > self.max_frame_size or value is None or type(channel) is not str or type(sequence) is not int
            or (value == 1 and type(kind) is bool) or (value == _SEND_BATCH and type(payload) is not list)
        ):
            self._reject(_new_envelope(Envelope, (kind, channel, source, destination, sequence, payload)), data)
        return data

    def encode_head(self, kind: int, channel: str, source: Any, destination: Any, sequence: int) -> bytes:
        """The encoded start of a frame, everything but the payload (validated like :meth:`encode`).

        ``head + pack(payload)`` is the complete frame (see :meth:`encode_with_head`),
        so a sender that sends many payloads with the same other fields packs
        those fields once instead of once per message.
        """
        data = self.encode_fields(kind, channel, source, destination, sequence, None)  # validates
        return data[:-1]  # (the payload None is the one byte 0xc0 at the end)

    def encode_with_head(self, head: bytes, payload: Any) -> bytes:
        """The payload's encoding, to follow ``head`` (from :meth:`encode_head`) on the wire.

        Raises :class:`ProtocolError` if the payload cannot be encoded and
        :class:`FrameTooLarge` if head and payload exceed the maximum frame size.
        """
        try:
            data = self._pack(payload)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"cannot encode envelope payload: {exc}") from exc
        if len(data) + len(head) > self.max_frame_size:
            raise FrameTooLarge(f"frame of {len(data) + len(head)} bytes exceeds the maximum frame size of {self.max_frame_size} bytes")
        return data

    def add(self, env: Envelope) -> int:
        """Append ``env``'s frame to the send buffer; return the buffered byte count."""
        data = self.encode(env)
        if self.batch is not None:
            self.close_batch()
        buffer = self.buffer
        buffer += data
        self._frames += 1
        return len(buffer)

    @staticmethod
    def batch_head(head: bytes) -> bytes | None:
        """The head of a SEND_BATCH frame carrying the payloads of SEND frames with ``head``
        (from :meth:`encode_head`), up to the payload list's array header; None if ``head``
        is not a SEND head.  (The version and the kind each pack as one byte: the kind is
        the third byte of a frame.)"""
        if len(head) < 3 or head[0] != 0x97 or head[2] != Kind.SEND:
            return None
        return head[:2] + bytes((_SEND_BATCH,)) + head[3:] + b"\xdd"  # array 32: a 4-byte count follows

    def open_batch(self, batch_head: bytes, payload: bytes, buffer_limit: int | None = None) -> None:
        """Close any open batch and start a SEND_BATCH frame with ``batch_head`` and one
        encoded payload.  The caller checked that ``batch_head`` plus ``payload`` fit in a
        frame.  ``buffer_limit`` also caps :attr:`batch_limit` (the send buffer's bound)."""
        if self.batch is not None:
            self.close_batch()
        buffer = self.buffer
        start = len(buffer)
        self.batch_limit = start + self.max_frame_size if buffer_limit is None else min(start + self.max_frame_size, buffer_limit)
        buffer += batch_head
        self._batch_at = len(buffer)
        buffer += _BATCH_COUNT
        buffer += payload
        self.batch = batch_head
        self.batch_count = 1
        self._frames += 1

    def close_batch(self) -> None:
        """Write the open batch's element count into its frame; no-op when none is open."""
        if self.batch is not None:
            at = self._batch_at
            self.buffer[at : at + 4] = self.batch_count.to_bytes(4, "big")
            self.batch = None

    def _reject(self, env: Envelope, data: bytes) -> None:
        if len(data) > self.max_frame_size:
            raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the maximum frame size of {self.max_frame_size} bytes")
        validate_envelope(env)

    @property
    def pending_bytes(self) -> int:
        return len(self.buffer)

    @property
    def pending_frames(self) -> int:
        return self._frames

    def take(self) -> bytes:
        """Return everything buffered so far and empty the buffer."""
        if self.batch is not None:
            self.close_batch()
        data = bytes(self.buffer)
        self.buffer.clear()
        self._frames = 0
        return data


class FrameDecoder:
    """Turns received bytes into envelopes, frame by frame, across any chunking.

    Call :meth:`feed` with each received chunk (at most ``read_size`` bytes),
    then iterate :meth:`envelopes`.  Complete frames before a bad one are
    yielded first; the bad one raises :class:`ProtocolError` and the decoder
    must then be discarded.  ``ext_hook`` is passed to msgpack.
    """

    __slots__ = ("_unpacker", "_offset", "_fed", "_stop", "max_frame_size", "read_size", "_broken", "_carry")

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        read_size: int = 65536,
        ext_hook: Callable[[int, bytes], Any] | None = None,
    ):
        self.max_frame_size = max_frame_size
        self.read_size = read_size
        kwargs: dict[str, Any] = {}
        if ext_hook is not None:
            kwargs["ext_hook"] = ext_hook
        self._unpacker = msgpack.Unpacker(
            max_buffer_size=max_frame_size + read_size,
            max_str_len=max_frame_size,
            max_bin_len=max_frame_size,
            max_array_len=max_frame_size,
            max_map_len=max_frame_size // 2,
            max_ext_len=max_frame_size,
            strict_map_key=False,
            **kwargs,
        )
        self._offset = 0  # stream offset of the end of the last decoded frame
        self._fed = 0  # stream offset of the end of the fed bytes
        self._stop = False
        self._broken = False
        self._carry: deque[Envelope] = deque()  # SEND envelopes of a batch not yet passed on (drain_to)

    def feed(self, data: bytes) -> None:
        if self._broken:
            raise ProtocolError("decoder already failed")
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            self._broken = True
            raise FrameTooLarge(f"frame exceeds the maximum frame size of {self.max_frame_size} bytes") from None
        self._fed += len(data)

    def drain_to(self, on_message: Callable[[Any], object], on_other: Callable[[Envelope], object], *, raw: bool = False) -> bool:
        """Pass every complete envelope buffered so far, in order, to
        ``on_message`` (kinds 32 and above: messaging) or ``on_other``
        (handshake and connection control).  With ``raw=True``, ``on_message``
        gets the validated frame list ``[WIRE_VERSION, kind, channel, source,
        destination, sequence, payload]`` (``kind`` a :class:`Kind`) instead
        of an :class:`Envelope`, which saves building one per message.

        This is the receive hot path: no generator and no per-envelope list,
        and when at most ``max_frame_size`` bytes are buffered (the usual
        case) no frame can be too large, so the per-frame size check is
        skipped.  Envelopes before a bad frame are handed on before
        :class:`ProtocolError` is raised.  Exceptions raised by the callbacks
        propagate unchanged (the decoder stays usable).  Returns True if
        :meth:`stop` was called from a callback; the remaining envelopes stay
        buffered for the next call.
        """
        self._stop = False
        if self._carry and self._pass_carry(on_message, raw):
            return True
        if self._fed - self._offset > self.max_frame_size:
            # Rare (huge frames): take the exact per-frame path.
            for env in self.envelopes():
                if env[0] < 32:
                    on_other(env)
                elif raw:
                    on_message([WIRE_VERSION, *env])
                elif env[0] is _SEND_BATCH:
                    self._carry.extend(expand_batch(env))
                    if self._pass_carry(on_message, raw):
                        return True
                else:
                    on_message(env)
                if self._stop:
                    return True
            return False
        unpacker = self._unpacker
        kinds = _KIND_BY_VALUE
        new = _new_envelope
        version = WIRE_VERSION
        batch, send = _SEND_BATCH, Kind.SEND
        delivering = False
        try:
            for obj in unpacker:
                try:
                    v, k, c, s, d, q, p = obj
                    kind = kinds[k]
                except (ValueError, TypeError, KeyError):
                    kind = None
                if (
                    kind is not None and type(obj) is list and v == version and type(k) is int and type(c) is str and type(q) is int
                    and (kind is not batch or type(p) is list)
                ):
                    if kind >= 32:
                        delivering = True
                        if raw:
                            obj[1] = kind
                            on_message(obj)
                        elif kind is batch:
                            self._carry.extend([new(Envelope, (send, c, s, d, q, x)) for x in p])
                            if self._pass_carry(on_message, raw):
                                return True
                        else:
                            on_message(new(Envelope, (kind, c, s, d, q, p)))
                    else:
                        delivering = True
                        on_other(new(Envelope, (kind, c, s, d, q, p)))
                else:
                    _to_envelope(obj)  # raises, explaining what is wrong with the frame
                    raise ProtocolError("malformed frame")  # (not reached)
                delivering = False
                if self._stop:
                    return True
        except (msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
            if delivering:
                raise
            self._broken = True
            if isinstance(exc, ProtocolError):
                raise
            if "exceeds max" in str(exc):
                raise FrameTooLarge(f"frame exceeds the maximum frame size of {self.max_frame_size} bytes ({exc})") from None
            raise ProtocolError(f"malformed msgpack: {exc}") from None
        except ProtocolError:
            if not delivering:
                self._broken = True
            raise
        finally:
            self._offset = unpacker.tell()
        return False

    def _pass_carry(self, on_message: Callable[[Any], object], raw: bool) -> bool:
        # The rest of an expanded SEND_BATCH (kept across a stop()); True if stopped.
        carry = self._carry
        while carry:
            env = carry.popleft()
            on_message([WIRE_VERSION, *env] if raw else env)
            if self._stop:
                return True
        return False

    def stop(self) -> None:
        """Make a running :meth:`drain_to` return after the current envelope."""
        self._stop = True

    def envelopes(self) -> Iterator[Envelope]:
        """Yield every complete envelope buffered so far (a SEND_BATCH as one envelope:
        see :func:`expand_batch`)."""
        unpacker = self._unpacker
        limit = self.max_frame_size
        offset = self._offset
        tell = unpacker.tell
        kinds = _KIND_BY_VALUE
        new = _new_envelope
        version = WIRE_VERSION
        try:
            for obj in unpacker:
                end = tell()
                if end - offset > limit:
                    raise FrameTooLarge(f"frame of {end - offset} bytes exceeds the maximum frame size of {limit} bytes")
                offset = end
                # Fast path for a well-formed frame; _to_envelope explains any problem.
                if type(obj) is list and len(obj) == 7 and obj[0] == version and type(obj[2]) is str and type(obj[5]) is int:
                    kind = kinds.get(obj[1])
                    if kind is not None and type(obj[1]) is int and (kind is not _SEND_BATCH or type(obj[6]) is list):
                        obj[1] = kind
                        yield new(Envelope, obj[1:])
                        continue
                yield _to_envelope(obj)
        except ProtocolError:
            self._broken = True
            raise
        except (msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
            self._broken = True
            if "exceeds max" in str(exc):
                raise FrameTooLarge(f"frame exceeds the maximum frame size of {limit} bytes ({exc})") from None
            raise ProtocolError(f"malformed msgpack: {exc}") from None
        finally:
            self._offset = offset

    def decode(self, data: bytes) -> list[Envelope]:
        """Feed ``data`` and return the envelopes it completes."""
        self.feed(data)
        return list(self.envelopes())


def _to_envelope(obj: Any) -> Envelope:
    """Validate one decoded frame and build its envelope."""
    if type(obj) is not list or len(obj) != _ENVELOPE_FIELDS:
        raise ProtocolError(f"malformed frame: expected a {_ENVELOPE_FIELDS}-element array, got {_describe(obj)}")
    if obj[0] != WIRE_VERSION:
        raise ProtocolError(f"unsupported frame version {obj[0]!r} (this node speaks {WIRE_VERSION})")
    kind = _KIND_BY_VALUE.get(obj[1]) if type(obj[1]) is int else None
    if kind is None:
        raise ProtocolError(f"unknown envelope kind {obj[1]!r}")
    if type(obj[2]) is not str or type(obj[5]) is not int:
        raise ProtocolError("malformed frame: channel must be a str and sequence an int")
    if kind is _SEND_BATCH and type(obj[6]) is not list:
        raise ProtocolError(f"malformed SEND_BATCH frame: the payload must be an array, got {_describe(obj[6])}")
    obj[1] = kind
    return _new_envelope(Envelope, obj[1:])


def expand_batch(env: Envelope) -> list[Envelope]:
    """The SEND envelopes a (validated) SEND_BATCH envelope stands for, in order."""
    kind, channel, source, destination, sequence, payloads = env
    send = Kind.SEND
    return [_new_envelope(Envelope, (send, channel, source, destination, sequence, p)) for p in payloads]


def decode_frame(data: bytes, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, ext_hook: Callable[[int, bytes], Any] | None = None) -> Envelope:
    """Decode exactly one complete frame (used where frames arrive whole, as in the simulator)."""
    if len(data) > max_frame_size:
        raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the maximum frame size of {max_frame_size} bytes")
    try:
        if ext_hook is None:
            obj = msgpack.unpackb(data, strict_map_key=False)
        else:
            obj = msgpack.unpackb(data, strict_map_key=False, ext_hook=ext_hook)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise ProtocolError(f"malformed msgpack: {exc}") from None
    return _to_envelope(obj)


def encode_envelope(env: Envelope) -> bytes:
    """One frame for ``env`` (convenience for tests and simple tools)."""
    return FrameEncoder().encode(env)


def decode_frames(data: bytes, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> list[Envelope]:
    """Decode a complete byte string of frames; trailing partial frames raise."""
    decoder = FrameDecoder(max_frame_size=max_frame_size, read_size=max(len(data), 1))
    out = decoder.decode(data)
    if decoder._unpacker.tell() != len(data):
        raise ProtocolError("truncated frame at end of data")
    return out


def _kind_label(kind: Any) -> str:
    return _KIND_BY_VALUE[kind].name if isinstance(kind, int) and kind in _KIND_BY_VALUE else repr(kind)


def _describe(obj: Any) -> str:
    if isinstance(obj, list):
        return f"an array of {len(obj)} elements"
    return f"a {type(obj).__name__}"
