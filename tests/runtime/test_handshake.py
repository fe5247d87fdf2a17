"""The sans-IO handshake state machine, driven by hand."""

import pytest

from eco.runtime.handshake import (
    PROTOCOL_VERSION,
    Established,
    Handshake,
    Identity,
    Reason,
    Refused,
    Role,
    Send,
    State,
)
from eco.runtime.secrets import Cookie
from eco.runtime.wire import Envelope, Kind

COOKIE = Cookie("a-shared-cluster-cookie-0123456789")
OTHER = Cookie("another-cookie-entirely-9876543210")


def make(node, role, *, cookie=COOKIE, cluster="c", incarnation=1, nonce=None, **kw):
    nonce = nonce or (node.encode() * 16)[:16]
    return Handshake(Identity(cluster, node, incarnation, cookie), role, nonce, **kw)


def sends(effects):
    return [e.envelope for e in effects if isinstance(e, Send)]


def run_pair(a, b):
    """Shuttle messages between two machines until both stop; return their final effects."""
    queue_ab, queue_ba = sends(a.start(0.0)), sends(b.start(0.0))
    outcome = {}
    while queue_ab or queue_ba:
        if queue_ab:
            for e in b.receive(queue_ab.pop(0)):
                if isinstance(e, Send):
                    queue_ba.append(e.envelope)
                else:
                    outcome["b"] = e
        if queue_ba:
            for e in a.receive(queue_ba.pop(0)):
                if isinstance(e, Send):
                    queue_ab.append(e.envelope)
                else:
                    outcome["a"] = e
    return outcome.get("a"), outcome.get("b")


def test_success_both_sides_learn_the_authenticated_peer():
    a, b = make("n1", Role.INITIATOR), make("n2", Role.ACCEPTOR, incarnation=7)
    ra, rb = run_pair(a, b)
    assert isinstance(ra, Established) and ra.peer.node == "n2" and ra.peer.incarnation == 7
    assert isinstance(rb, Established) and rb.peer.node == "n1" and rb.peer.incarnation == 1
    assert a.state is b.state is State.ESTABLISHED


def test_message_order_is_hello_auth_accept():
    a, b = make("n1", Role.INITIATOR), make("n2", Role.ACCEPTOR)
    [hello] = sends(a.start(0.0))
    b.start(0.0)
    assert hello.kind is Kind.HELLO and hello.payload["version"] == PROTOCOL_VERSION
    [auth] = sends(b.receive(hello))
    assert auth.kind is Kind.AUTH and len(auth.payload["proof"]) == 32


@pytest.mark.parametrize("wrong_side", ["initiator", "acceptor"])
def test_wrong_cookie_is_refused_in_both_directions(wrong_side):
    a = make("n1", Role.INITIATOR, cookie=OTHER if wrong_side == "initiator" else COOKIE)
    b = make("n2", Role.ACCEPTOR, cookie=OTHER if wrong_side == "acceptor" else COOKIE)
    ra, rb = run_pair(a, b)
    # Both sides check the other's proof, so both refuse; neither is established.
    assert isinstance(ra, Refused) and isinstance(rb, Refused)
    assert Reason.BAD_COOKIE in (ra.reason, rb.reason)
    assert a.state is b.state is State.REFUSED


def test_wrong_cluster():
    ra, rb = run_pair(make("n1", Role.INITIATOR, cluster="prod"), make("n2", Role.ACCEPTOR, cluster="test"))
    assert ra.reason is rb.reason is Reason.WRONG_CLUSTER
    assert "prod" in ra.detail and "test" in ra.detail


def test_wrong_protocol_version():
    ra, rb = run_pair(make("n1", Role.INITIATOR, protocol_version=PROTOCOL_VERSION + 1), make("n2", Role.ACCEPTOR))
    assert ra.reason is Reason.WRONG_VERSION and rb.reason is Reason.WRONG_VERSION
    assert f"version {PROTOCOL_VERSION + 1}" in rb.detail


def test_a_peer_of_the_previous_protocol_version_is_refused():
    # Version 1 had no SEND_BATCH frames: such a peer must be refused, not sent frames it cannot read.
    assert PROTOCOL_VERSION == 2
    ra, rb = run_pair(make("n1", Role.INITIATOR, protocol_version=1), make("n2", Role.ACCEPTOR))
    assert ra.reason is rb.reason is Reason.WRONG_VERSION
    assert "peer speaks protocol version 1, this node speaks 2" in rb.detail


def test_refusal_tells_the_peer_the_reason_code_only():
    b = make("n2", Role.ACCEPTOR, cluster="other")
    b.start(0.0)
    effects = b.receive(sends(make("n1", Role.INITIATOR).start(0.0))[0])
    [refuse] = sends(effects)
    assert refuse.kind is Kind.REFUSE and refuse.payload == {"reason": "wrong_cluster"}
    a = make("n1", Role.INITIATOR)
    a.start(0.0)
    [refused] = a.receive(refuse)
    assert refused.by_peer and refused.reason is Reason.WRONG_CLUSTER


def test_a_proof_reflected_back_to_its_author_is_refused():
    a = make("n1", Role.INITIATOR)
    b = make("n2", Role.ACCEPTOR)
    [hello_a] = sends(a.start(0.0))
    [hello_b] = sends(b.start(0.0))
    [auth_a] = sends(a.receive(hello_b))
    b.receive(hello_a)
    # An attacker without the cookie sends a's own proof back to a.
    [refused] = [e for e in a.receive(auth_a) if isinstance(e, Refused)]
    assert refused.reason is Reason.BAD_COOKIE


def test_a_proof_from_another_connection_is_refused():
    # Record a successful exchange, then replay the acceptor's AUTH on a new connection.
    a1, b1 = make("n1", Role.INITIATOR), make("n2", Role.ACCEPTOR)
    [h_a1], [h_b1] = sends(a1.start(0.0)), sends(b1.start(0.0))
    a1.receive(h_b1)
    [old_auth] = sends(b1.receive(h_a1))
    a2 = make("n1", Role.INITIATOR, nonce=b"\x01" * 16)
    a2.start(0.0)
    a2.receive(h_b1)  # replayed HELLO (same nonce as before)
    [refused] = [e for e in a2.receive(old_auth) if isinstance(e, Refused)]
    assert refused.reason is Reason.BAD_COOKIE


def test_a_hello_echoing_our_nonce_is_refused():
    a = make("n1", Role.INITIATOR)
    [hello] = sends(a.start(0.0))
    echoed = Envelope(Kind.HELLO, payload=dict(hello.payload, node="n9"))
    [_, refused] = a.receive(echoed)
    assert refused.reason is Reason.MALFORMED and "nonce" in refused.detail


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "hello",
        {},
        {"version": PROTOCOL_VERSION},
        {"version": PROTOCOL_VERSION, "cluster": "c", "node": "", "incarnation": 1, "nonce": b"x" * 16},
        {"version": PROTOCOL_VERSION, "cluster": "c", "node": "n", "incarnation": -1, "nonce": b"x" * 16},
        {"version": PROTOCOL_VERSION, "cluster": "c", "node": "n", "incarnation": 1, "nonce": b"short"},
        {"version": PROTOCOL_VERSION, "cluster": "c", "node": 5, "incarnation": 1, "nonce": b"x" * 16},
    ],
)
def test_malformed_hello_is_refused(payload):
    b = make("n2", Role.ACCEPTOR)
    b.start(0.0)
    effects = b.receive(Envelope(Kind.HELLO, payload=payload))
    assert effects[-1].reason is Reason.MALFORMED
    assert b.state is State.REFUSED


@pytest.mark.parametrize("kind", [Kind.AUTH, Kind.ACCEPT, Kind.SEND, Kind.PING])
def test_anything_but_hello_first_is_unexpected(kind):
    b = make("n2", Role.ACCEPTOR)
    b.start(0.0)
    effects = b.receive(Envelope(kind, payload={"proof": b"x" * 32}))
    assert effects[-1].reason is Reason.UNEXPECTED


def test_a_second_hello_is_unexpected():
    a, b = make("n1", Role.INITIATOR), make("n2", Role.ACCEPTOR)
    [hello] = sends(a.start(0.0))
    b.start(0.0)
    b.receive(hello)
    assert b.receive(hello)[-1].reason is Reason.UNEXPECTED


def test_garbage_auth_is_malformed():
    a, b = make("n1", Role.INITIATOR), make("n2", Role.ACCEPTOR)
    [hello] = sends(a.start(0.0))
    b.start(0.0)
    b.receive(hello)
    assert b.receive(Envelope(Kind.AUTH, payload=[1, 2]))[-1].reason is Reason.MALFORMED


def test_self_connection_and_wrong_peer():
    a = make("n1", Role.INITIATOR)
    [hello] = sends(a.start(0.0))
    b = make("n1", Role.ACCEPTOR, nonce=b"z" * 16)
    b.start(0.0)
    assert b.receive(hello)[-1].reason is Reason.SELF_CONNECTION
    c = make("n3", Role.ACCEPTOR, expect_node="n7")
    c.start(0.0)
    assert c.receive(hello)[-1].reason is Reason.WRONG_PEER


def test_timeout_only_after_the_deadline_and_only_once():
    a = make("n1", Role.INITIATOR, timeout=5.0)
    a.start(100.0)
    assert a.deadline == 105.0
    assert a.timeout(104.9) == []
    effects = a.timeout(105.0)
    assert sends(effects)[0].kind is Kind.REFUSE and effects[-1].reason is Reason.TIMEOUT
    assert a.timeout(200.0) == [] and a.receive(Envelope(Kind.HELLO)) == []


def test_the_cookie_never_appears_in_reprs():
    a = make("n1", Role.INITIATOR)
    for text in (repr(a), repr(a.identity), str(a.identity), repr(COOKIE), str(COOKIE)):
        assert "a-shared-cluster-cookie" not in text
