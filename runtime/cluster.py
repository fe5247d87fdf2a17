"""Membership in a running node: the trio driver of the sans-IO membership cores.

::

    membership = ClusterMembership(node, cluster, join=["10.0.0.1:7101"])
    async with trio.open_nursery() as nursery:
        await nursery.start(node.serve, listen, join)
        await nursery.start(membership.run)
        ...
        await membership.leave()          # graceful: peers learn it at once

The core is chosen by the plan's ``failure_detector``: ``phi`` runs
:class:`~eco.runtime.mesh.MeshMembership` (phi accrual on heartbeats, gossip
with bounded fanout), ``swim`` runs :class:`~eco.runtime.swim.SwimNode`.  Which
links exist is chosen by ``topology``:

* ``full_mesh``: the node dials its ``join`` addresses and the plan's seeds,
  then every member it learns about (addresses travel with member records);
* ``static``: the node dials every node declared in the plan, and only those
  are members;
* ``client_server``: servers (the topology's ``servers``, else the seeds, else
  the first node) dial each other; clients dial servers only.  Under SWIM,
  clients probe servers only, servers probe everyone, and indirect probes go
  through servers (see :class:`_SwimOverLinks`);
* ``hyparview``: :class:`~eco.runtime.overlay.OverlayMembership` (HyParView
  active/passive views, Plumtree broadcast of member records and of
  :meth:`ClusterMembership.broadcast` payloads).  The driver owns the node's
  links: it opens connections on demand (``Node.connect``, no redial) for the
  messages the overlay sends and, through :meth:`Node.open_links_with`, for any
  other traffic (spawn requests, consensus, status: an envelope for an
  unconnected member waits for its connection; ``Node.wait_connected`` is
  satisfied by an ``up`` member, whose link opens with the first envelope).  Active-view links stay
  open; any other link is closed once *idle* for ``TEMPORARY_LINK_IDLE``
  seconds: no membership message and no other non-background envelope
  (``Node.last_used``) in either direction, nothing waiting for it, and no
  monitor or link between processes across it (``Node.ties``: closing would
  fire them with ``noconnection``; a coordinator's link to its workers'
  nodes is therefore kept while they run).  A link the peer closes just as
  something is sent on it loses nothing: once the peer's goodbye is in
  (``Node.can_send`` false) envelopes and core messages wait here, and the next
  link opens as soon as the old one is gone.  The failure detector's settings
  give the suspicion timeout; detection is the overlay's (a neighbour whose
  link is lost or cannot be opened).

Core messages travel on the node's peer connections as ``MEMBERSHIP``
envelopes (channel ``"membership"``) whose payload is :func:`encode_message`.
Member events go to subscribers (:meth:`subscribe`), into a ring buffer of
recent events (for ``ecoc status``) and, for ``down`` and ``left``, to
:meth:`Kernel.node_down`, so monitors of that node's processes fire with
``noconnection`` even while a connection to it still looks open.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from eco.plan.models import Cluster, PhiDetector, SwimDetector

from . import broadcast, hyparview, mesh, overlay, swim
from .membership import Member, MemberEvent, MemberList, MemberState, Send, SetTimer
from .wire import Envelope, Kind

__all__ = [
    "MEMBERSHIP_CHANNEL",
    "ClusterMembership",
    "ConnectionMembers",
    "MemberInfo",
    "MemberSubscription",
    "decode_message",
    "encode_message",
    "node_labels",
]

log = logging.getLogger("eco.runtime.cluster")

MEMBERSHIP_CHANNEL = "membership"
TEMPORARY_LINK_IDLE = 1.0
"""Seconds a hyparview link outside the active view may stay idle before the driver closes it."""
TOOL_PREFIX = "ecoc-"
"""Peers named like this are tools (``ecoc status``), never members."""
EVENT_RING = 200
ENVELOPE_BACKLOG = 1000
"""hyparview: envelopes held for one member while its connection opens (more are dropped)."""
CONTACT_WAIT = 5.0
"""hyparview: seconds ``ecoc node`` waits for its contacts to accept connections before joining
(nodes started together, as by ``ecoc run``; ``ClusterMembership(contact_wait=...)``)."""
CONTACT_RETRY = 0.2
"""hyparview: seconds between dials of a contact that is not up yet."""


# ------------------------------------------------------------------ public records


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as a node sees it now (``node.members``); compatible with placement's ``Member``."""

    name: str
    address: str | None
    state: MemberState
    incarnation: int
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.state in (MemberState.UP, MemberState.SUSPECT)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "state": self.state.label,
                "incarnation": self.incarnation, "labels": dict(self.labels)}


class MemberSubscription:
    """Member events as an async iterator; close it (or leave its ``with``) to unsubscribe."""

    def __init__(self, unsubscribe: Callable[[], None]) -> None:
        self._send, self._receive = trio.open_memory_channel[MemberEvent](math.inf)
        self._unsubscribe = unsubscribe

    def _push(self, event: MemberEvent) -> None:
        try:
            self._send.send_nowait(event)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def close(self) -> None:
        self._unsubscribe()
        self._send.close()

    def __enter__(self) -> MemberSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> MemberSubscription:
        return self

    async def __anext__(self) -> MemberEvent:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> MemberEvent:
        """The next event (raises ``trio.EndOfChannel`` once closed)."""
        return await self._receive.receive()


class _Subscribers:
    """Callbacks and async subscriptions to member events."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[MemberEvent], None]] = []

    def subscribe(self, callback: Callable[[MemberEvent], None] | None = None) -> Any:
        if callback is None:
            sub: MemberSubscription
            sub = MemberSubscription(lambda: self._remove(sub._push))
            self._callbacks.append(sub._push)
            return sub
        self._callbacks.append(callback)
        return lambda: self._remove(callback)

    def _remove(self, callback: Callable[[MemberEvent], None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def notify(self, event: MemberEvent) -> None:
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:  # a subscriber's bug must not stop membership
                log.exception("member event subscriber failed")


def node_labels(cluster: Cluster, name: str) -> dict[str, str]:
    """A node's labels from the plan: its user labels plus ``zone`` when declared."""
    try:
        spec = cluster.node(name)
    except KeyError:
        return {}
    labels = dict(spec.labels)
    if spec.zone is not None:
        labels["zone"] = spec.zone
    return labels


# ------------------------------------------------------------------ membership from connections


class ConnectionMembers:
    """The fallback member list of a node without a membership driver: itself and its connected peers.

    ``up`` when a connection opens, ``down`` when it closes; labels from the plan if given.
    """

    def __init__(self, node: Any, cluster: Cluster | None = None) -> None:
        self.node = node
        self.cluster = cluster
        self._subscribers = _Subscribers()
        self._known: dict[str, Member] = {}
        self._watching = False

    @property
    def members(self) -> list[MemberInfo]:
        self._ensure_watching()
        me = MemberInfo(self.node.name, _str(self.node.address), MemberState.UP, self.node.incarnation, self._labels(self.node.name))
        others = [MemberInfo(m.name, None, m.state, m.incarnation, m.labels) for m in self._known.values()]
        return sorted([me, *others], key=lambda m: m.name)

    def subscribe(self, callback: Callable[[MemberEvent], None] | None = None) -> Any:
        self._ensure_watching()
        return self._subscribers.subscribe(callback)

    def _labels(self, name: str) -> dict[str, str]:
        return node_labels(self.cluster, name) if self.cluster is not None else {}

    def _ensure_watching(self) -> None:
        if self._watching:
            return
        self._watching = True
        watch_links(self.node, self._up, self._down)

    def _up(self, peer: str, incarnation: int) -> None:
        if peer.startswith(TOOL_PREFIX):
            return
        previous = self._known.get(peer)
        member = Member(peer, incarnation, MemberState.UP, self._labels(peer))
        self._known[peer] = member
        self._subscribers.notify(MemberEvent(member, None if previous is None else previous.state))

    def _down(self, peer: str) -> None:
        previous = self._known.get(peer)
        if previous is None or previous.state != MemberState.UP:
            return
        member = dataclasses.replace(previous, state=MemberState.DOWN)
        self._known[peer] = member
        self._subscribers.notify(MemberEvent(member, MemberState.UP))


def watch_links(node: Any, on_up: Callable[[str, int], None], on_down: Callable[[str], None]) -> None:
    """Call ``on_up(peer, incarnation)`` / ``on_down(peer)`` as the node's connections open and close."""
    hook = getattr(node, "on_peer", None)
    if hook is not None:
        hook(on_up, on_down)
        return
    # Older Node without link hooks: watch its connection table (needs a running nursery).
    nursery = getattr(node, "_nursery", None)
    if nursery is None:
        raise RuntimeError("the node is not serving yet")
    nursery.start_soon(_poll_links, node, on_up, on_down)


async def _poll_links(node: Any, on_up: Callable[[str, int], None], on_down: Callable[[str], None]) -> None:
    seen: dict[str, Any] = {}
    while True:
        current = dict(node._conns)
        for peer, conn in list(seen.items()):
            if current.get(peer) is not conn:
                del seen[peer]
                on_down(peer)
        for peer, conn in current.items():
            if peer not in seen:
                seen[peer] = conn
                on_up(peer, conn.peer.incarnation)
        await node._changed.park()


def _str(address: Any) -> str | None:
    return None if address is None else str(address)


# ------------------------------------------------------------------ codec

_MESSAGES: dict[str, type] = {
    f"{module.__name__.rsplit('.', 1)[1]}.{cls.__name__}": cls
    for module, classes in (
        (mesh, (mesh.Heartbeat, mesh.Rumor, mesh.Digest)),
        (swim, (swim.Ping, swim.Ack, swim.PingReq, swim.Gossip, swim.Sync)),
        (hyparview, (hyparview.Join, hyparview.ForwardJoin, hyparview.Connect, hyparview.Neighbor,
                     hyparview.NeighborReply, hyparview.Disconnect, hyparview.Shuffle, hyparview.ShuffleReply,
                     hyparview.KeepAlive)),
        (broadcast, (broadcast.Gossip, broadcast.IHave, broadcast.Graft, broadcast.Prune)),
        (overlay, (overlay.OverlayDigest,)),
    )
    for cls in classes
}
_TAG_OF: dict[type, str] = {cls: tag for tag, cls in _MESSAGES.items()}
_FIELDS: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _TAG_OF}
_MEMBER_TAG = "@m"


class CodecError(ValueError):
    """A membership payload that does not decode to a core message."""


def encode_message(msg: Any, addresses: Mapping[str, str] | None = None) -> list:
    """A core message as plain msgpack data: ``[tag, field...]``; members carry their address."""
    cls = type(msg)
    tag = _TAG_OF.get(cls)
    if tag is None:
        raise TypeError(f"{cls.__qualname__} is not a membership message")
    return [tag, *(_encode(getattr(msg, name), addresses) for name in _FIELDS[cls])]


def _encode(value: Any, addresses: Mapping[str, str] | None) -> Any:
    if type(value) is Member:
        address = addresses.get(value.name) if addresses else None
        return [_MEMBER_TAG, value.name, value.incarnation, int(value.state), dict(value.labels), address]
    if type(value) in _TAG_OF:
        return {"@": encode_message(value, addresses)}
    if isinstance(value, (tuple, list)):
        return [_encode(v, addresses) for v in value]
    return value


def decode_message(raw: Any, addresses: dict[str, str] | None = None) -> Any:
    """The inverse of :func:`encode_message`; records learnt addresses in ``addresses``. CodecError on bad data."""
    if not (isinstance(raw, list) and raw and isinstance(raw[0], str)):
        raise CodecError("a membership message must be a list starting with its tag")
    cls = _MESSAGES.get(raw[0])
    if cls is None:
        raise CodecError(f"unknown membership message {raw[0]!r}")
    names = _FIELDS[cls]
    if len(raw) != len(names) + 1:
        raise CodecError(f"{raw[0]} needs {len(names)} fields, got {len(raw) - 1}")
    try:
        return cls(*(_decode(v, addresses) for v in raw[1:]))
    except (TypeError, ValueError) as exc:
        raise CodecError(f"malformed {raw[0]}: {exc}") from None


def _decode(value: Any, addresses: dict[str, str] | None) -> Any:
    if isinstance(value, list):
        if len(value) == 6 and value[0] == _MEMBER_TAG:
            _, name, incarnation, state, labels, address = value
            if not (isinstance(name, str) and type(incarnation) is int and isinstance(labels, dict)):
                raise CodecError("malformed member record")
            if addresses is not None and isinstance(address, str):
                addresses[name] = address
            return Member(name, incarnation, MemberState(state), {str(k): str(v) for k, v in labels.items()})
        return tuple(_decode(v, addresses) for v in value)
    if isinstance(value, dict) and set(value) == {"@"}:
        return decode_message(value["@"], addresses)
    return value


# ------------------------------------------------------------------ the driver


class _SwimOverLinks(swim.SwimNode):
    """SWIM whose join contacts are the node's connections rather than names known in advance.

    A link lost for longer than a quarter probe interval counts as a failed probe: the peer
    becomes suspect at once (it refutes if it is alive), instead of at its next probe round.
    With ``servers`` (``client_server``) a client links to servers only, so it is only asked
    about, and only syncs with, servers (see :mod:`eco.runtime.swim`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._links_now: set[str] = set()

    def link_up(self, now: float, peer: str) -> list:
        self._links_now.add(peer)
        if self._stopped or not self.may_contact(peer):
            return []
        return [Send(peer, swim.Sync(self._snapshot()))]

    def link_down(self, now: float, peer: str) -> list:
        self._links_now.discard(peer)
        member = self.members.get(peer)
        if self._stopped or member is None or member.state != MemberState.UP:
            return []
        return [SetTimer(("link_lost", peer, member.incarnation), now + self.config.probe_interval / 4)]

    def timer(self, now: float, key: Hashable) -> list:
        if key[0] != "link_lost":  # type: ignore[index]
            return super().timer(now, key)
        _, name, incarnation = key  # type: ignore[misc]
        current = self.members.get(name)
        out: list = []
        if not self._stopped and name not in self._links_now and current is not None \
                and current.state == MemberState.UP and current.incarnation == incarnation:
            self._apply(now, dataclasses.replace(current, state=MemberState.SUSPECT), out)
        return out


class ClusterMembership:
    """Runs the membership core of a node's cluster (see the module docstring)."""

    def __init__(
        self,
        node: Any,
        cluster: Cluster,
        *,
        join: Iterable[str] = (),
        rng: random.Random | None = None,
        labels: Mapping[str, str] | None = None,
        advertise: str | None = None,
        addresses: Mapping[str, str] | None = None,
        contact_wait: float = 0.0,
    ) -> None:
        self.node = node
        self.contact_wait = contact_wait  # hyparview: see _reach_contacts (`ecoc node` waits CONTACT_WAIT)
        self.kernel = node.kernel
        self.cluster = cluster
        self.name: str = node.name
        self.rng = rng or random.Random()
        self.labels = dict(labels) if labels is not None else node_labels(cluster, self.name)
        self._join = [str(a) for a in join]
        self._advertise = advertise
        # Where to dial each node: the plan's addresses unless overridden; gossip adds the rest.
        self.addresses: dict[str, str] = {n.name: n.address for n in cluster.nodes}
        self.addresses.update(addresses or {})
        topology = cluster.topology.kind
        detector = cluster.failure_detector
        self.topology = topology
        self.servers = self._servers()
        if topology == "hyparview":
            # Neighbours are judged by phi; a swim block gives its period and suspicion timeout.
            if isinstance(detector, SwimDetector):
                phi = PhiDetector(heartbeat=detector.probe_interval, acceptable_pause=detector.probe_interval)
                suspicion = detector.suspicion_timeout
            else:
                phi = detector if isinstance(detector, PhiDetector) else PhiDetector()
                suspicion = max(phi.acceptable_pause, phi.heartbeat)
            self.core: Any = overlay.OverlayMembership(
                self.name, cluster.topology, rng=self.rng, contacts=self._contacts(), labels=self.labels,  # type: ignore[arg-type]
                incarnation=node.incarnation, suspicion_timeout=suspicion, link_grace=phi.heartbeat / 4, phi=phi,
                expected=[n.name for n in cluster.nodes])  # (a start-up split must not hide a declared node)
            self.detector = "hyparview"
        elif isinstance(detector, SwimDetector):
            servers = self.servers if topology == "client_server" else None
            self.core = _SwimOverLinks(self.name, detector, rng=self.rng, labels=self.labels,
                                       incarnation=node.incarnation, servers=servers)
            self.detector = "swim"
        else:
            phi = detector if detector.kind == "phi" else None
            self.core = mesh.MeshMembership(self.name, phi, rng=self.rng, labels=self.labels, incarnation=node.incarnation)
            self.detector = "phi"
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_RING)
        self._subscribers = _Subscribers()
        self._timers: list[tuple[float, int, Hashable]] = []
        self._timer_seq = itertools.count()
        self._wake = trio.Event()
        self._dialling: set[str] = set()
        self._started = False
        self._left = False
        self._links: set[str] = set()
        # hyparview: core messages and node envelopes waiting for a connection, connections being
        # opened, last membership traffic (or tie) per peer
        self._outbox: dict[str, list[Any]] = {}
        self._envelopes: dict[str, list[Envelope]] = {}
        self._connecting: set[str] = set()
        self._traffic: dict[str, float] = {}
        self._broadcasts = _Subscribers()
        node.handle(Kind.MEMBERSHIP, self._on_envelope)
        if self.manages_links and hasattr(node, "open_links_with"):
            node.open_links_with(self._open_on_demand)
        attach = getattr(node, "attach_membership", None)
        if attach is not None:
            attach(self)

    # ------------------------------------------------------------ public API

    @property
    def member_list(self) -> MemberList:
        return self.core.members

    @property
    def members(self) -> list[MemberInfo]:
        """A snapshot of every known member (this node included), sorted by name."""
        return [
            MemberInfo(m.name, self.addresses.get(m.name), m.state, m.incarnation, dict(m.labels))
            for m in self.core.members.members()
        ]

    def member(self, name: str) -> MemberInfo | None:
        m = self.core.members.get(name)
        return None if m is None else MemberInfo(m.name, self.addresses.get(m.name), m.state, m.incarnation, dict(m.labels))

    def subscribe(self, callback: Callable[[MemberEvent], None] | None = None) -> Any:
        """With a callback: call it with every :class:`MemberEvent`, returns an unsubscribe function.
        Without: a :class:`MemberSubscription` (async iterator, context manager)."""
        return self._subscribers.subscribe(callback)

    @property
    def manages_links(self) -> bool:
        """True when this driver opens and closes the node's peer links itself (``hyparview``):
        then ``node.serve`` should get no ``join`` addresses (they are the overlay's contacts)."""
        return self.topology == "hyparview"

    @property
    def neighbors(self) -> set[str]:
        """The overlay neighbours (``hyparview``), else every linked peer."""
        return self.core.neighbors() if self.manages_links else set(self._links)

    def broadcast(self, payload: Any) -> None:
        """Deliver ``payload`` (msgpack-able data) once to every node's broadcast subscribers
        (``hyparview``: over the Plumtree; other topologies: not supported, raises)."""
        if not self.manages_links:
            raise RuntimeError(f"broadcast needs topology hyparview (this cluster uses {self.topology})")
        self._apply(self.core.broadcast(self._now(), payload))

    def subscribe_broadcasts(self, callback: Callable[[str, Any], None]) -> Callable[[], None]:
        """``callback(origin, payload)`` for every broadcast delivered here (this node's own included)."""
        return self._broadcasts.subscribe(lambda d: callback(d.id[0], d.payload))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the core until cancelled; start after ``node.serve`` is listening."""
        if self.node.address is None:
            raise RuntimeError("start ClusterMembership.run after node.serve is listening")
        self.addresses[self.name] = self._advertise or _advertised(self.node.address, self.addresses.get(self.name))
        self._record("member_up", node=self.name, incarnation=self.node.incarnation, labels=self.labels)
        watch_links(self.node, self._link_up, self._link_down)
        try:
            if self.manages_links and self.contact_wait > 0:
                task_status.started()
                await self._reach_contacts()
            self._started = True
            self._apply(self.core.start(self._now()))
            for peer in sorted(self._links):  # (opened while reaching the contacts: fresh from now)
                self._traffic[peer] = self._now()
                self._apply(self.core.link_up(self._now(), peer))
            for address in self._initial_dials():
                self._dial(address)
            if self.manages_links:
                self._push_timer(self._now() + TEMPORARY_LINK_IDLE, ("_sweep",))
            if not (self.manages_links and self.contact_wait > 0):
                task_status.started()
            await self._run_timers()
        finally:
            self.leave_now()

    async def _reach_contacts(self) -> None:
        """hyparview: wait (at most ``contact_wait`` seconds) until the contacts accept connections.

        The overlay joins once, through one contact: one still starting (nodes started together)
        would leave this node outside the overlay until HyParView's periodic rejoin.  So the join
        goes through a contact that answered, once all have or the wait is over."""
        contacts = [c for c in self._contacts() if c in self.addresses]
        with trio.move_on_after(self.contact_wait):
            while missing := [c for c in contacts if not self.node.is_connected(c)]:
                for contact in missing:
                    self._open(contact)
                await trio.sleep(CONTACT_RETRY)  # (a dial that failed is retried)
        reachable = [c for c in contacts if self.node.is_connected(c)]
        if reachable:
            self.core.view.contacts = reachable

    def leave_now(self) -> None:
        """Tell peers at once that this node leaves (queued on the connections, no waiting)."""
        if self._left or not self._started:
            return
        self._left = True
        self._record("member_left", node=self.name, incarnation=self.node.incarnation)
        self._apply(self.core.leave(self._now()))

    async def leave(self, *, flush: float = 0.5) -> None:
        """Graceful leave: announce it, then give the connections up to ``flush`` seconds to send it."""
        self.leave_now()
        # The announcement is already in the send buffers; one scheduling round lets the
        # writers pick it up before the caller closes the connections.
        with trio.move_on_after(flush):
            await trio.sleep(0)

    # ------------------------------------------------------------ links

    def _servers(self) -> list[str]:
        if self.cluster.topology.kind != "client_server":
            return []
        servers = list(self.cluster.topology.servers) or list(self.cluster.seeds)  # type: ignore[union-attr]
        return servers or [self.cluster.nodes[0].name] if self.cluster.nodes else servers

    def _may_link(self, name: str) -> bool:
        if name == self.name:
            return False
        if self.topology == "static":
            return any(n.name == name for n in self.cluster.nodes)
        if self.topology == "client_server":
            return name in self.servers or self.name in self.servers
        return True

    def _contacts(self) -> list[str]:
        """hyparview: the names to join through (the ``join`` addresses' nodes, else the seeds)."""
        by_address = {address: name for name, address in self.addresses.items()}
        named = [by_address.get(a, a) for a in self._join]
        return [n for n in dict.fromkeys(named or list(self.cluster.seeds)) if n != self.name]

    def _initial_dials(self) -> list[str]:
        if self.manages_links:
            return []  # the overlay's Join opens the first link
        wanted: list[str] = []
        if self.topology == "static":
            names = [n.name for n in self.cluster.nodes]
        elif self.topology == "client_server":
            names = [s for s in self.servers]
        else:
            names = list(self.cluster.seeds)
        for name in names:
            if name != self.name and name in self.addresses:
                wanted.append(self.addresses[name])
        # (join addresses are dialled by node.serve already)
        self._dialling.update(self._join)
        return [a for a in dict.fromkeys(wanted) if a not in self._dialling]

    def _dial(self, address: str) -> None:
        if address in self._dialling or address == self.addresses.get(self.name):
            return
        self._dialling.add(address)
        try:
            self.node.join(address)
        except RuntimeError:  # the node stopped serving
            self._dialling.discard(address)

    def _maybe_dial(self, name: str) -> None:
        if self.manages_links:
            return  # links follow the overlay's messages (see _send)
        if name in self._links or self._left or self.node.is_connected(name) or not self._may_link(name):
            return
        # When both sides dial, the Node keeps the connection dialled by the smaller name and drops
        # the other, which fires `noconnection` for monitors: so between members only the smaller
        # name dials (the larger learns of it by gossip and waits).  Clients always dial servers.
        if self.name > name and not (self.topology == "client_server" and name in self.servers):
            return
        address = self.addresses.get(name)
        if address is not None:
            member = self.core.members.get(name)
            if member is not None and member.alive:
                self._dial(address)

    def _link_up(self, peer: str, incarnation: int) -> None:
        if peer.startswith(TOOL_PREFIX):
            return  # a tool such as `ecoc status`, not a member
        self._links.add(peer)
        self._connecting.discard(peer)
        self._traffic[peer] = self._now() if self._started else 0.0  # a new link counts as fresh
        self._record("link_up", node=peer, incarnation=incarnation)
        if self._started and not self._left:
            self._apply(self.core.link_up(self._now(), peer))
        for msg in self._outbox.pop(peer, ()):
            self._send(peer, msg)
        for env in self._envelopes.pop(peer, ()):
            self.node.send_envelope(peer, env)

    def _link_down(self, peer: str) -> None:
        if peer.startswith(TOOL_PREFIX):
            return
        self._links.discard(peer)
        self._record("link_down", node=peer)
        if self._started:
            self._apply(self.core.link_down(self._now(), peer))
        if (self._outbox.get(peer) or self._envelopes.get(peer)) and not self._left:
            # Held while the connection was closing (the peer closed it as idle, say, just as
            # something was sent): the next connection carries them.
            self._open(peer)

    # ------------------------------------------------------------ core plumbing

    def _now(self) -> float:
        return trio.current_time()

    def _on_envelope(self, conn: Any, env: Envelope) -> None:
        if not self._started:
            return
        try:
            msg = decode_message(env.payload, self.addresses)
        except CodecError as exc:
            log.warning("node %s: dropping a malformed membership message from %s: %s", self.name, conn.peer.node, exc)
            return
        self._traffic[conn.peer.node] = self._now()
        self._apply(self.core.receive(self._now(), conn.peer.node, msg))

    def _apply(self, effects: Iterable[Any]) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                self._send(effect.to, effect.msg)
            elif kind is SetTimer:
                seq = next(self._timer_seq)
                heapq.heappush(self._timers, (effect.at, seq, effect.key))
                if self._timers[0][1] == seq:
                    self._wake.set()  # the new timer is the earliest: re-arm the wait
            elif kind is MemberEvent:
                self._member_event(effect)
            elif kind is broadcast.Deliver:
                self._broadcasts.notify(effect)
            elif kind is hyparview.NeighborUp or kind is hyparview.NeighborDown:
                self._record("neighbor_up" if kind is hyparview.NeighborUp else "neighbor_down", node=effect.peer)

    def _send(self, to: str, msg: Any) -> None:
        if not self.node.can_send(to):  # (a closing connection would drop it)
            if self.manages_links:
                self._send_later(to, msg)
            else:
                self._maybe_dial(to)
            return
        self._traffic[to] = self._now()
        payload = encode_message(msg, self.addresses)
        self.node.send_envelope(to, Envelope(Kind.MEMBERSHIP, MEMBERSHIP_CHANNEL, None, None, 0, payload))

    def _member_event(self, event: MemberEvent) -> None:
        member = event.member
        self._record(f"member_{member.state.label}", node=member.name, incarnation=member.incarnation,
                     previous=None if event.previous is None else event.previous.label)
        log.info("node %s: member %s#%d is %s", self.name, member.name, member.incarnation, member.state.label)
        if member.state in (MemberState.DOWN, MemberState.LEFT) and member.name != self.name:
            # Monitors of its processes fire even if a (half-open) connection still looks alive.
            self.kernel.node_down(member.name)
        elif member.state == MemberState.UP:
            self._maybe_dial(member.name)
        self._subscribers.notify(event)

    def _send_later(self, to: str, msg: Any) -> None:
        """hyparview: queue ``msg`` and open a connection to ``to`` (once) if none is being opened."""
        self._outbox.setdefault(to, []).append(msg)
        if not self._left:
            self._open(to)

    def _open_on_demand(self, peer: str, env: Envelope | None) -> bool:
        """hyparview, ``Node.open_links_with``: open a link to ``peer`` and hold ``env`` for it; True
        when ``env`` will be sent once connected, False (dropped) for a member known to be gone, an
        unknown address or a full backlog.  Without ``env``: whether ``peer`` is an ``up`` member."""
        if self._left or not self._started or peer == self.name or peer.startswith(TOOL_PREFIX):
            return False
        member = self.core.members.get(peer)
        if member is not None and not member.alive:
            return False  # as for any node that is not reachable: dropped
        if env is None:
            # Node.wait_connected: a live member is reachable (its link opens with the first envelope).
            # Not dialled now: when both sides dial, the Node keeps one connection and drops the
            # other with whatever was sent on it, and a full mesh at start is what the overlay avoids.
            return member is not None and member.state == MemberState.UP
        queue = self._envelopes.setdefault(peer, [])
        if len(queue) >= ENVELOPE_BACKLOG:
            return False
        queue.append(env)
        return self._open(peer)

    def _open(self, peer: str) -> bool:
        """Open one connection to ``peer`` unless one is open or opening; False if it cannot be."""
        if peer in self._connecting or self.node.is_connected(peer):
            return True
        address = self.addresses.get(peer)
        if address is None:
            self._connect_failed(peer)
            return False
        self._connecting.add(peer)
        try:
            self.node.connect(address, on_failed=lambda exc: self._connect_failed(peer))
        except RuntimeError:  # the node stopped serving
            self._connecting.discard(peer)
            self._outbox.pop(peer, None)
            self.node.undeliverable(peer, self._envelopes.pop(peer, ()))
            return False
        return True

    def _connect_failed(self, peer: str) -> None:
        self._connecting.discard(peer)
        if self.node.is_connected(peer):
            return  # the peer dialled us meanwhile: what waited went out on that link
        self.node.undeliverable(peer, self._envelopes.pop(peer, ()))
        if self._outbox.pop(peer, None) is not None and self._started and not self._left:
            self._apply(self.core.connect_failed(self._now(), peer))

    def _sweep(self, now: float) -> None:
        """hyparview: close links outside the active view once idle (see the module docstring)."""
        keep = self.core.wanted_links()
        # Either side may close an idle link outside its active view: an active link is never
        # idle (heartbeats), and a one-sided one is undone by HyParView's KeepAlive/Disconnect.
        for peer in sorted(self._links - keep):
            if self.node.ties(peer):
                self._traffic[peer] = now  # in use: idle only from when its last monitor/link goes
                continue
            last = max(self._traffic.get(peer, 0.0), self.node.sample_use(peer))
            if now - last >= TEMPORARY_LINK_IDLE and peer not in self._outbox and peer not in self._envelopes:
                self.node.disconnect(peer, "idle, and not an overlay neighbour")
        self._push_timer(now + TEMPORARY_LINK_IDLE / 2, ("_sweep",))

    def _push_timer(self, at: float, key: Hashable) -> None:
        seq = next(self._timer_seq)
        heapq.heappush(self._timers, (at, seq, key))
        if self._timers[0][1] == seq:
            self._wake.set()

    async def _run_timers(self) -> None:
        while True:
            now = self._now()
            while self._timers and self._timers[0][0] <= now:
                _, _, key = heapq.heappop(self._timers)
                if key == ("_sweep",):
                    self._sweep(now)
                    continue
                self._apply(self.core.timer(now, key))
            self._wake = trio.Event()
            if self._timers:
                with trio.move_on_at(self._timers[0][0]):
                    await self._wake.wait()
            else:
                await self._wake.wait()

    def _record(self, event: str, **fields: Any) -> None:
        self.events.append({"time": round(time.time(), 3), "event": event, **fields})


def _advertised(bound: Any, planned: str | None) -> str:
    text = str(bound)
    host, sep, port = text.rpartition(":")
    if sep and host in ("0.0.0.0", "::", "[::]") and planned:
        return planned  # listening on every interface: peers dial the plan's address
    return text
