"""Plumtree epidemic broadcast trees (Leitão, Pereira, Rodrigues, SRDS 2007) as a pure state machine.

Runs over the neighbours of a peer-sampling overlay (HyParView's active view:
feed it ``neighbor_up`` / ``neighbor_down``). Every neighbour starts as an
*eager* peer, which receives full messages (:class:`Gossip`); the others are
*lazy* and only receive announcements (:class:`IHave`). A node that receives a
message twice tells the later sender to move it to its lazy set
(:class:`Prune`), so the eager links settle into a spanning tree: one copy per
node in the steady state. When a tree link breaks, an announced message that
does not arrive within ``graft_timeout`` is requested from its announcer
(:class:`Graft`), which also makes that link eager again, repairing the tree.

``broadcast(now, payload)`` returns effects including a :class:`Deliver` for the
local node; every other node that receives the message emits one
:class:`Deliver` (exactly once per message id).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from .membership import Effect, Send, SetTimer

MessageId = tuple[str, int]  # (origin, sequence number at the origin)


@dataclass(frozen=True, slots=True)
class Gossip:
    id: MessageId
    payload: Any
    hops: int = 0


@dataclass(frozen=True, slots=True)
class IHave:
    id: MessageId
    hops: int = 0


@dataclass(frozen=True, slots=True)
class Graft:
    id: MessageId


@dataclass(frozen=True, slots=True)
class Prune:
    pass


BroadcastMessage = Gossip | IHave | Graft | Prune


@dataclass(frozen=True, slots=True)
class Deliver:
    """Effect: a broadcast message reached this node (once per id)."""

    id: MessageId
    payload: Any
    hops: int


class PlumtreeNode:
    """One node's broadcast state machine."""

    def __init__(self, name: str, *, graft_timeout: float = 0.5, retry_timeout: float = 0.25, cache_size: int = 10_000) -> None:
        self.name = name
        self.graft_timeout = graft_timeout
        self.retry_timeout = retry_timeout
        self.cache_size = cache_size
        self.eager: set[str] = set()
        self.lazy: set[str] = set()
        self._seq = 0
        self._received: OrderedDict[MessageId, Gossip] = OrderedDict()  # kept to answer grafts
        self._missing: dict[MessageId, list[str]] = {}  # announced but not received -> announcers

    # ------------------------------------------------------------ driver API

    def neighbor_up(self, now: float, peer: str) -> list[Effect]:
        self.lazy.discard(peer)
        self.eager.add(peer)
        return []

    def neighbor_down(self, now: float, peer: str) -> list[Effect]:
        self.eager.discard(peer)
        self.lazy.discard(peer)
        for announcers in self._missing.values():
            while peer in announcers:
                announcers.remove(peer)
        return []

    def broadcast(self, now: float, payload: Any) -> list[Effect]:
        """Send ``payload`` to every node in the overlay."""
        self._seq += 1
        msg = Gossip((self.name, self._seq), payload, 0)
        out: list[Effect] = []
        self._accept(msg, None, out)
        return out

    def receive(self, now: float, src: str, msg: BroadcastMessage) -> list[Effect]:
        out: list[Effect] = []
        kind = type(msg)
        if kind is Gossip:
            if msg.id in self._received:  # type: ignore[union-attr]
                # A second copy: this link is redundant in the tree.
                self.eager.discard(src)
                self.lazy.add(src)
                out.append(Send(src, Prune()))
            else:
                self.lazy.discard(src)
                self.eager.add(src)
                self._accept(msg, src, out)  # type: ignore[arg-type]
        elif kind is IHave:
            if msg.id not in self._received:  # type: ignore[union-attr]
                announcers = self._missing.get(msg.id)  # type: ignore[union-attr]
                if announcers is None:
                    self._missing[msg.id] = [src]  # type: ignore[union-attr]
                    out.append(SetTimer(("graft", msg.id), now + self.graft_timeout))  # type: ignore[union-attr]
                elif src not in announcers:
                    announcers.append(src)
        elif kind is Graft:
            self.lazy.discard(src)
            self.eager.add(src)
            cached = self._received.get(msg.id)  # type: ignore[union-attr]
            if cached is not None:
                out.append(Send(src, Gossip(cached.id, cached.payload, cached.hops + 1)))
        elif kind is Prune:
            if src in self.eager:
                self.eager.discard(src)
                self.lazy.add(src)
        return out

    def timer(self, now: float, key: Hashable) -> list[Effect]:
        out: list[Effect] = []
        if key[0] == "graft":  # type: ignore[index]
            msg_id = key[1]  # type: ignore[index]
            announcers = self._missing.get(msg_id)
            if msg_id in self._received or not announcers:
                self._missing.pop(msg_id, None)
                return out
            peer = announcers.pop(0)
            self.lazy.discard(peer)
            self.eager.add(peer)
            out.append(Send(peer, Graft(msg_id)))
            # If this graft goes unanswered, try the next announcer.
            out.append(SetTimer(("graft", msg_id), now + self.retry_timeout))
        return out

    def has_delivered(self, msg_id: MessageId) -> bool:
        return msg_id in self._received

    # ------------------------------------------------------------ internals

    def _accept(self, msg: Gossip, src: str | None, out: list[Effect]) -> None:
        self._received[msg.id] = msg
        if len(self._received) > self.cache_size:
            self._received.popitem(last=False)
        self._missing.pop(msg.id, None)
        out.append(Deliver(msg.id, msg.payload, msg.hops))
        forward = Gossip(msg.id, msg.payload, msg.hops + 1)
        for peer in sorted(self.eager):
            if peer != src:
                out.append(Send(peer, forward))
        announce = IHave(msg.id, msg.hops + 1)
        for peer in sorted(self.lazy):
            if peer != src:
                out.append(Send(peer, announce))
