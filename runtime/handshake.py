"""The connection handshake as a sans-IO state machine.

Both ends run the same machine; they differ only in their :class:`Role` (the
side that dialled is the initiator).  Each side sends, in order::

    HELLO  {version, cluster, node, incarnation, nonce}
    AUTH   {proof}      # after the peer's HELLO
    ACCEPT {}           # after verifying the peer's AUTH

and expects exactly the same sequence from its peer.  ``proof`` is
HMAC-SHA256, keyed with the cluster cookie, over a transcript binding the
prover's role, the cluster name and both sides' names, incarnations and nonces,
so a proof can neither be replayed on another connection (fresh nonces) nor
reflected back to its author (the role is part of the transcript).  Any
deviation produces a REFUSE with a reason code and ends the handshake.

A *tool* (an identity named ``ecoc-...``, such as ``ecoc status``; nodes serve
its requests but never make it a peer) may not know the cluster's name: it
announces :data:`UNKNOWN_CLUSTER` and adopts the name in the acceptor's HELLO.
Both proofs then cover that name, so the cookie still authenticates both sides
(the name is not secret; the cookie is).  Only tools may do this, and only as
initiators: a node never accepts a peer node that does not name its cluster.

The machine does no I/O and reads no clock: feed it peer envelopes with
:meth:`Handshake.receive` and it returns effects (:class:`Send`,
:class:`Established`, :class:`Refused`).  The caller supplies the nonce and
the current time, which keeps simulations deterministic.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .secrets import Cookie
from .wire import Envelope, Kind

PROTOCOL_VERSION = 2
"""Version of the node-to-node protocol (handshake, envelope kinds and semantics).
2: SEND_BATCH frames.  Peers of another version are refused (``wrong_version``)."""

NONCE_BYTES = 16
UNKNOWN_CLUSTER = ""
"""A tool's HELLO cluster when it does not know the name: it learns it from the acceptor."""
TOOL_PREFIX = "ecoc-"
"""Identities named like this are tools (``ecoc status``): served, never peers."""
_MAX_NAME = 255
_TRANSCRIPT_TAG = b"eco-handshake-v1"


class Role(enum.Enum):
    INITIATOR = "initiator"
    ACCEPTOR = "acceptor"


class State(enum.Enum):
    AWAIT_HELLO = "await_hello"
    AWAIT_AUTH = "await_auth"
    AWAIT_ACCEPT = "await_accept"
    ESTABLISHED = "established"
    REFUSED = "refused"


class Reason(str, enum.Enum):
    """Why a handshake was refused (sent to the peer in REFUSE and logged)."""

    BAD_COOKIE = "bad_cookie"
    WRONG_CLUSTER = "wrong_cluster"
    WRONG_VERSION = "wrong_version"
    MALFORMED = "malformed"
    UNEXPECTED = "unexpected"
    TIMEOUT = "timeout"
    SELF_CONNECTION = "self_connection"
    WRONG_PEER = "wrong_peer"
    REFUSED_BY_PEER = "refused_by_peer"
    STOPPING = "stopping"
    """The acceptor is shutting down (an orderly stop): no misconfiguration, nothing to warn about."""


@dataclass(frozen=True)
class Identity:
    """Who this node is, as announced in HELLO.  ``cookie`` is redacted in repr."""

    cluster: str
    node: str
    incarnation: int
    cookie: Cookie = field(repr=False)


@dataclass(frozen=True)
class PeerHello:
    """What the peer announced (and, once established, proved)."""

    node: str
    incarnation: int
    cluster: str
    version: int


@dataclass(frozen=True)
class Send:
    envelope: Envelope


@dataclass(frozen=True)
class Established:
    peer: PeerHello


@dataclass(frozen=True)
class Refused:
    """The handshake failed.  ``by_peer`` is true when the peer sent the REFUSE."""

    reason: Reason
    detail: str
    by_peer: bool = False


Effect = Send | Established | Refused

# State machine transitions as data: what each state accepts from the peer,
# the handler that processes it, and the state that follows.
_TRANSITIONS: dict[State, tuple[Kind, str, State]] = {
    State.AWAIT_HELLO: (Kind.HELLO, "_on_hello", State.AWAIT_AUTH),
    State.AWAIT_AUTH: (Kind.AUTH, "_on_auth", State.AWAIT_ACCEPT),
    State.AWAIT_ACCEPT: (Kind.ACCEPT, "_on_accept", State.ESTABLISHED),
}


class Handshake:
    """One side of one handshake.

    Usage: ``effects = hs.start(now)``; then for each peer envelope
    ``effects = hs.receive(env)``; call ``hs.timeout(now)`` once ``now`` reaches
    ``hs.deadline``.  Perform every :class:`Send`; stop at :class:`Established`
    or :class:`Refused`.
    """

    def __init__(
        self,
        identity: Identity,
        role: Role,
        nonce: bytes,
        *,
        timeout: float = 5.0,
        expect_node: str | None = None,
        protocol_version: int = PROTOCOL_VERSION,
        stopping: bool = False,
    ):
        if len(nonce) < NONCE_BYTES:
            raise ValueError(f"nonce must be at least {NONCE_BYTES} bytes")
        self.identity = identity
        self.role = role
        self.state = State.AWAIT_HELLO
        self.timeout_seconds = timeout
        self.deadline: float | None = None
        self.peer: PeerHello | None = None
        self.refusal: Refused | None = None
        self._nonce = nonce
        self._peer_nonce: bytes | None = None
        self._expect_node = expect_node
        self._version = protocol_version
        self._peer_authenticated = False
        self._stopping = stopping  # an acceptor shutting down refuses every HELLO (Reason.STOPPING)
        self._cluster = identity.cluster  # the name both proofs cover (a tool may learn it)
        if identity.cluster == UNKNOWN_CLUSTER and not (role is Role.INITIATOR and identity.node.startswith(TOOL_PREFIX)):
            raise ValueError(f"only a tool ({TOOL_PREFIX}...) dialling a node may leave the cluster name unknown")

    def __repr__(self) -> str:
        return f"<Handshake {self.identity.node} {self.role.value} {self.state.value}>"

    @property
    def done(self) -> bool:
        return self.state in (State.ESTABLISHED, State.REFUSED)

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Effect]:
        """Begin: returns the HELLO to send and fixes the deadline."""
        self.deadline = now + self.timeout_seconds
        me = self.identity
        hello = {
            "version": self._version,
            "cluster": me.cluster,
            "node": me.node,
            "incarnation": me.incarnation,
            "nonce": self._nonce,
        }
        return [Send(Envelope(Kind.HELLO, payload=hello))]

    def receive(self, env: Envelope) -> list[Effect]:
        """Process one envelope from the peer."""
        if self.done:
            return []
        if env.kind == Kind.REFUSE:
            return self._peer_refused(env.payload)
        expected, handler, next_state = _TRANSITIONS[self.state]
        if env.kind != expected:
            return self._refuse(Reason.UNEXPECTED, f"expected {expected.name} but received {Kind(env.kind).name}")
        effects = getattr(self, handler)(env.payload)
        if self.state != State.REFUSED:
            self.state = next_state
            if next_state == State.ESTABLISHED:
                assert self.peer is not None
                effects.append(Established(self.peer))
        return effects

    def timeout(self, now: float) -> list[Effect]:
        """The deadline passed without completion."""
        if self.done or self.deadline is None or now < self.deadline:
            return []
        return self._refuse(Reason.TIMEOUT, f"handshake did not complete within {self.timeout_seconds:g}s (state {self.state.value})")

    # ---------------------------------------------------------------- handlers

    def _on_hello(self, payload: Any) -> list[Effect]:
        if self._stopping:
            return self._refuse(Reason.STOPPING, "this node is shutting down")
        if not isinstance(payload, dict):
            return self._refuse(Reason.MALFORMED, "HELLO payload is not a map")
        version = payload.get("version")
        if type(version) is not int:
            return self._refuse(Reason.MALFORMED, "HELLO has no protocol version")
        if version != self._version:
            return self._refuse(Reason.WRONG_VERSION, f"peer speaks protocol version {version}, this node speaks {self._version}")
        cluster, node, incarnation, nonce = (payload.get(k) for k in ("cluster", "node", "incarnation", "nonce"))
        if not (isinstance(cluster, str) and isinstance(node, str) and 0 < len(node) <= _MAX_NAME and len(cluster) <= _MAX_NAME):
            return self._refuse(Reason.MALFORMED, "HELLO cluster/node names are missing or invalid")
        if type(incarnation) is not int or incarnation < 0:
            return self._refuse(Reason.MALFORMED, "HELLO incarnation is missing or invalid")
        if not isinstance(nonce, bytes) or not NONCE_BYTES <= len(nonce) <= 64:
            return self._refuse(Reason.MALFORMED, "HELLO nonce is missing or has the wrong length")
        if cluster == UNKNOWN_CLUSTER and not (self.role is Role.ACCEPTOR and node.startswith(TOOL_PREFIX)):
            return self._refuse(Reason.MALFORMED, f"HELLO from {node!r} names no cluster (only a tool dialling a node may)")
        if self._cluster == UNKNOWN_CLUSTER:
            self._cluster = cluster  # a tool learns the node's cluster (the proofs below cover it)
        elif cluster not in (self._cluster, UNKNOWN_CLUSTER):
            return self._refuse(Reason.WRONG_CLUSTER, f"peer belongs to cluster {cluster!r}, this node to {self.identity.cluster!r}")
        if nonce == self._nonce:
            return self._refuse(Reason.MALFORMED, "peer echoed this node's nonce (replay or reflection)")
        if node == self.identity.node and incarnation == self.identity.incarnation:
            return self._refuse(Reason.SELF_CONNECTION, "connected to itself")
        if self._expect_node is not None and node != self._expect_node:
            return self._refuse(Reason.WRONG_PEER, f"expected node {self._expect_node!r} but the peer is {node!r}")
        self.peer = PeerHello(node=node, incarnation=incarnation, cluster=self._cluster, version=version)
        self._peer_nonce = nonce
        proof = self.identity.cookie.mac(self._transcript(prover=self.role))
        return [Send(Envelope(Kind.AUTH, payload={"proof": proof}))]

    def _on_auth(self, payload: Any) -> list[Effect]:
        proof = payload.get("proof") if isinstance(payload, dict) else None
        if not isinstance(proof, bytes):
            return self._refuse(Reason.MALFORMED, "AUTH carries no proof")
        peer_role = Role.ACCEPTOR if self.role is Role.INITIATOR else Role.INITIATOR
        expected = self.identity.cookie.mac(self._transcript(prover=peer_role))
        if not hmac.compare_digest(proof, expected):
            return self._refuse(Reason.BAD_COOKIE, "the peer's proof does not match this node's cookie")
        self._peer_authenticated = True
        return [Send(Envelope(Kind.ACCEPT, payload={}))]

    def _on_accept(self, payload: Any) -> list[Effect]:
        return []

    # ------------------------------------------------------------------ helpers

    def _transcript(self, prover: Role) -> bytes:
        """Bytes the prover MACs: fixed field order, initiator first."""
        assert self.peer is not None and self._peer_nonce is not None
        me = (self.identity.node, self.identity.incarnation, self._nonce)
        them = (self.peer.node, self.peer.incarnation, self._peer_nonce)
        initiator, acceptor = (me, them) if self.role is Role.INITIATOR else (them, me)
        return msgpack.packb([_TRANSCRIPT_TAG, prover.value, self._cluster, initiator, acceptor])

    def _refuse(self, reason: Reason, detail: str) -> list[Effect]:
        self.state = State.REFUSED
        self.refusal = Refused(reason, detail)
        # The peer learns the reason code only; the detail stays in our log.
        return [Send(Envelope(Kind.REFUSE, payload={"reason": reason.value})), self.refusal]

    def _peer_refused(self, payload: Any) -> list[Effect]:
        self.state = State.REFUSED
        code = payload.get("reason") if isinstance(payload, dict) else None
        try:
            reason = Reason(code)
        except ValueError:
            reason = Reason.REFUSED_BY_PEER
        self.refusal = Refused(reason, f"the peer refused the connection ({code or 'no reason given'})", by_peer=True)
        return [self.refusal]
