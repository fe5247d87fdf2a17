"""Envelope encoding and streaming frame decoding."""

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eco.runtime.wire import (
    WIRE_VERSION,
    Envelope,
    FrameDecoder,
    FrameEncoder,
    FrameTooLarge,
    Kind,
    ProtocolError,
    decode_frame,
    decode_frames,
    encode_envelope,
)

# msgpack values as they come back from the decoder (lists, not tuples).
_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=40)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(-1000, 1000), inner, max_size=4),
    max_leaves=12,
)
envelopes = st.builds(
    Envelope,
    kind=st.sampled_from([k for k in Kind if k is not Kind.SEND_BATCH]),
    channel=st.text(max_size=30),
    source=_values,
    destination=_values,
    sequence=st.integers(0, 2**64 - 1),
    payload=_values,
) | st.builds(  # a SEND_BATCH's payload is the list of its SENDs' payloads
    Envelope,
    kind=st.just(Kind.SEND_BATCH),
    channel=st.text(max_size=30),
    source=_values,
    destination=_values,
    sequence=st.integers(0, 2**64 - 1),
    payload=st.lists(_values, max_size=4),
)


@given(envelopes)
def test_round_trip(env):
    [decoded] = decode_frames(encode_envelope(env))
    assert decoded == env
    assert type(decoded.kind) is Kind
    assert decode_frame(encode_envelope(env)) == env


@given(st.lists(envelopes, max_size=12), st.lists(st.integers(1, 50), min_size=1, max_size=30))
def test_stream_decoding_across_arbitrary_chunk_boundaries(envs, cuts):
    encoder = FrameEncoder()
    for env in envs:
        encoder.add(env)
    assert encoder.pending_frames == len(envs)
    data = encoder.take()
    assert encoder.pending_bytes == 0
    decoder = FrameDecoder(read_size=64)
    out, pos, i = [], 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        out += decoder.decode(data[pos : pos + step])
        pos += step
        i += 1
    assert out == envs


def test_tuples_encode_as_arrays():
    env = Envelope(Kind.SEND, "c", ("n1", 3, 1), ("n2", 4, 1), 1, {"k": (1, 2)})
    [decoded] = decode_frames(encode_envelope(env))
    assert decoded.source == ["n1", 3, 1]
    assert decoded.payload == {"k": [1, 2]}


def test_codec_hooks_let_the_node_encode_its_own_types():
    class Pid:  # not a tuple subclass: msgpack encodes those as arrays itself
        def __init__(self, parts):
            self.parts = tuple(parts)

    def default(obj):
        if isinstance(obj, Pid):
            return msgpack.ExtType(1, msgpack.packb(obj.parts))
        raise TypeError(f"cannot encode {obj!r}")

    def ext_hook(code, data):
        return Pid(msgpack.unpackb(data)) if code == 1 else msgpack.ExtType(code, data)

    encoder = FrameEncoder(default=default)
    encoder.add(Envelope(Kind.SEND, source=Pid(("n1", 1, 1))))
    [env] = FrameDecoder(ext_hook=ext_hook).decode(encoder.take())
    assert isinstance(env.source, Pid) and env.source.parts == ("n1", 1, 1)


def test_oversized_frame_is_rejected_on_decode():
    big = encode_envelope(Envelope(Kind.SEND, payload=b"x" * 5000))
    decoder = FrameDecoder(max_frame_size=1000, read_size=100)
    with pytest.raises(FrameTooLarge):
        for i in range(0, len(big), 100):
            decoder.decode(big[i : i + 100])


def test_a_huge_declared_frame_is_refused_with_bounded_buffering():
    # A bin header announcing 1 GiB: refused once max_frame_size + one read is buffered.
    header = bytes([0x97, WIRE_VERSION, Kind.SEND, 0xA0, 0xC0, 0xC0, 0x00, 0xC6]) + (1 << 30).to_bytes(4, "big")
    decoder = FrameDecoder(max_frame_size=10_000, read_size=1000)
    fed = len(header)
    decoder.decode(header)
    with pytest.raises(FrameTooLarge):
        while True:
            decoder.decode(b"x" * 1000)
            fed += 1000
    assert fed <= 10_000 + 2 * 1000


def test_exact_frame_limit_uses_encoded_size():
    env = Envelope(Kind.SEND, payload=b"x" * 100)
    size = len(encode_envelope(env))
    assert decode_frames(encode_envelope(env), max_frame_size=size) == [env]
    with pytest.raises(FrameTooLarge):
        decode_frames(encode_envelope(env), max_frame_size=size - 1)


def test_encoder_refuses_oversized_and_unencodable_envelopes_and_keeps_its_buffer():
    encoder = FrameEncoder(max_frame_size=200)
    encoder.add(Envelope(Kind.SEND, payload=b"ok"))
    with pytest.raises(FrameTooLarge):
        encoder.add(Envelope(Kind.SEND, payload=b"x" * 500))
    with pytest.raises(ProtocolError, match="cannot encode"):
        encoder.add(Envelope(Kind.SEND, payload=object()))
    assert decode_frames(encoder.take()) == [Envelope(Kind.SEND, payload=b"ok")]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xc1", "malformed msgpack"),
        (msgpack.packb(42), "expected a 7-element array"),
        (msgpack.packb([1, 2, 3]), "expected a 7-element array"),
        (msgpack.packb([WIRE_VERSION, 250, "", None, None, 0, None]), "unknown envelope kind 250"),
        (msgpack.packb([WIRE_VERSION, "SEND", "", None, None, 0, None]), "unknown envelope kind"),
        (msgpack.packb([WIRE_VERSION, True, "", None, None, 0, None]), "unknown envelope kind"),
        (msgpack.packb([99, Kind.SEND, "", None, None, 0, None]), "unsupported frame version 99"),
        (msgpack.packb([WIRE_VERSION, Kind.SEND, 5, None, None, 0, None]), "channel must be a str"),
        (msgpack.packb([WIRE_VERSION, Kind.SEND, "", None, None, "x", None]), "sequence an int"),
        (b"GET / HTTP/1.1\r\n\r\n", "expected a 7-element array"),
    ],
)
def test_malformed_frames_raise_protocol_error(data, message):
    with pytest.raises(ProtocolError, match=message):
        FrameDecoder().decode(data)
    with pytest.raises(ProtocolError):
        decode_frame(data)


def test_good_frames_before_a_bad_one_are_delivered_then_the_decoder_is_broken():
    good = encode_envelope(Envelope(Kind.SEND, sequence=1))
    decoder = FrameDecoder()
    decoder.feed(good + good + b"\xc1")
    got = []
    with pytest.raises(ProtocolError):
        for env in decoder.envelopes():
            got.append(env.sequence)
    assert got == [1, 1]
    with pytest.raises(ProtocolError):
        decoder.feed(good)


def test_truncated_data_is_an_error_for_decode_frames():
    data = encode_envelope(Envelope(Kind.SEND, payload=b"abc"))
    with pytest.raises(ProtocolError, match="truncated"):
        decode_frames(data[:-1])


def test_kind_values_are_stable():
    # These numbers are on the wire; changing one breaks compatibility.
    assert (Kind.HELLO, Kind.PING, Kind.SEND, Kind.LINK, Kind.DOWN, Kind.SPAWN_REQ) == (1, 16, 32, 48, 53, 64)
