"""``ecoc status`` without ``--cluster``: the handshake lets a tool learn the cluster name.

The tool announces an unknown cluster, adopts the node's, and both proofs cover
it, so the cookie still authenticates both sides and the node logs no
``wrong_cluster`` warning.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import pytest
import trio

from eco.runtime.cluster import ConnectionMembers
from eco.runtime.handshake import PROTOCOL_VERSION, UNKNOWN_CLUSTER, Established, Handshake, Identity, Reason, Refused, Role, Send
from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_config
from eco.runtime.node_status import StatusError, StatusService, fetch_status
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import open_tcp_transport
from eco.runtime.wire import Envelope, Kind

COOKIE = Cookie("status-cookie-0123456789abcdef")
OTHER = Cookie("another-cookie-entirely-9876543210")
pytestmark = pytest.mark.timeout(30)


def _make(node, role, cluster, cookie=COOKIE):
    return Handshake(Identity(cluster, node, 1, cookie), role, (node.encode() * 16)[:16])


def _run_pair(a, b):
    """Shuttle envelopes between two machines until both stop; their final effects."""
    to_b = [e.envelope for e in a.start(0.0) if isinstance(e, Send)]
    to_a = [e.envelope for e in b.start(0.0) if isinstance(e, Send)]
    outcome = {}
    while to_a or to_b:
        for queue, machine, back, side in ((to_b, b, to_a, "b"), (to_a, a, to_b, "a")):
            if queue:
                for e in machine.receive(queue.pop(0)):
                    if isinstance(e, Send):
                        back.append(e.envelope)
                    else:
                        outcome[side] = e
    return outcome.get("a"), outcome.get("b")


def test_a_tool_learns_the_cluster_and_both_sides_authenticate():
    tool, node = _make("ecoc-status-1", Role.INITIATOR, UNKNOWN_CLUSTER), _make("n1", Role.ACCEPTOR, "prod")
    ra, rb = _run_pair(tool, node)
    assert isinstance(ra, Established) and ra.peer.node == "n1" and ra.peer.cluster == "prod"
    assert isinstance(rb, Established) and rb.peer.node == "ecoc-status-1" and rb.peer.cluster == "prod"


def test_the_cookie_still_decides_when_the_cluster_is_learnt():
    tool, node = _make("ecoc-status-1", Role.INITIATOR, UNKNOWN_CLUSTER, OTHER), _make("n1", Role.ACCEPTOR, "prod")
    ra, rb = _run_pair(tool, node)
    assert isinstance(rb, Refused) and rb.reason is Reason.BAD_COOKIE
    assert isinstance(ra, Refused) and ra.reason is Reason.BAD_COOKIE  # each side checks the other


def test_a_proof_made_for_another_cluster_name_is_rejected():
    """The learnt name is in the transcript: a tool cannot authenticate under a name the node does not have."""
    node = _make("n1", Role.ACCEPTOR, "prod")
    node.start(0.0)
    hello = {"version": PROTOCOL_VERSION, "cluster": UNKNOWN_CLUSTER, "node": "ecoc-x", "incarnation": 1, "nonce": b"x" * 16}
    [auth] = [e.envelope for e in node.receive(Envelope(Kind.HELLO, payload=hello)) if isinstance(e, Send)]
    assert auth.kind is Kind.AUTH
    forged = Handshake(Identity("staging", "ecoc-x", 1, COOKIE), Role.INITIATOR, b"x" * 16)
    forged.start(0.0)
    forged.receive(Envelope(Kind.HELLO, payload={"version": PROTOCOL_VERSION, "cluster": "staging", "node": "n1", "incarnation": 1,
                                                 "nonce": ("n1".encode() * 16)[:16]}))
    proof = forged.identity.cookie.mac(forged._transcript(prover=Role.INITIATOR))
    effects = node.receive(Envelope(Kind.AUTH, payload={"proof": proof}))
    assert any(isinstance(e, Refused) and e.reason is Reason.BAD_COOKIE for e in effects)


def test_only_a_tool_may_leave_the_cluster_unknown():
    with pytest.raises(ValueError, match="tool"):
        _make("n2", Role.INITIATOR, UNKNOWN_CLUSTER)
    with pytest.raises(ValueError, match="tool"):
        _make("ecoc-status-1", Role.ACCEPTOR, UNKNOWN_CLUSTER)
    node = _make("n1", Role.ACCEPTOR, "prod")
    node.start(0.0)
    hello = {"version": PROTOCOL_VERSION, "cluster": UNKNOWN_CLUSTER, "node": "n2", "incarnation": 1, "nonce": b"y" * 16}
    [*_, refused] = node.receive(Envelope(Kind.HELLO, payload=hello))
    assert isinstance(refused, Refused) and refused.reason is Reason.MALFORMED and "names no cluster" in refused.detail
    # A tool that answers a tool's unknown cluster with an unknown one learns nothing: refused.
    tool = _make("ecoc-status-1", Role.INITIATOR, UNKNOWN_CLUSTER)
    tool.start(0.0)
    [*_, refused] = tool.receive(Envelope(Kind.HELLO, payload={**hello, "node": "ecoc-other"}))
    assert isinstance(refused, Refused) and refused.reason is Reason.MALFORMED


@asynccontextmanager
async def _status_node(cluster: str):
    kernel = Kernel("n1", incarnation=1)
    async with kernel, open_tcp_transport(node_transport_config(cluster, "n1", 1, COOKIE)) as transport:
        node = Node(kernel, transport)
        service = StatusService(node, ConnectionMembers(node), cluster=cluster)
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "127.0.0.1:0")
            await nursery.start(service.run)
            yield str(address)
            nursery.cancel_scope.cancel()


async def test_status_without_a_cluster_name_makes_the_node_log_no_warning(caplog):
    caplog.set_level(logging.INFO)
    async with _status_node("prod") as address:
        status = await fetch_status(address, COOKIE, timeout=5.0)
        assert status["cluster"] == "prod" and status["node"] == "n1"
        assert [m["name"] for m in status["members"]] == ["n1"]  # the tool is never a member
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings == []
        # A wrong explicit name is still refused, clearly (and logged by the node, as it should be).
        with pytest.raises(StatusError, match="another cluster"):
            await fetch_status(address, COOKIE, cluster="staging", timeout=5.0)
        with pytest.raises(StatusError, match="refused the cookie"):
            await fetch_status(address, OTHER, timeout=5.0)
