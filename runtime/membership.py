"""The cluster member list and the effect types shared by the sans-IO membership cores.

Every membership core (:mod:`eco.runtime.swim`, :mod:`eco.runtime.hyparview`,
:mod:`eco.runtime.broadcast`) is a pure state machine. A driver feeds it events
together with the current time and carries out the effects it returns:

* :class:`Send` -- send ``msg`` to node ``to`` (best effort; loss is tolerated);
* :class:`SetTimer` -- call the core's ``timer(now, key)`` at time ``at``. Timers
  are never cancelled: a core ignores a timer that has become stale, so a driver
  may fire a timer late or twice without harm;
* :class:`MemberEvent` -- a member changed state; runtime and user code subscribe
  to these (:meth:`MemberList.subscribe`).

:class:`MemberList` merges membership updates with SWIM's precedence rules: a
record with a higher incarnation wins; at equal incarnations ``left`` beats
``down`` beats ``suspect`` beats ``up``. Only the member itself raises its own
incarnation, which is how it refutes a false suspicion and how a restarted node
with the same name rejoins as a new incarnation.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class MemberState(enum.IntEnum):
    """Life-cycle of a member; the value is its precedence at equal incarnations."""

    UP = 0
    SUSPECT = 1
    DOWN = 2
    LEFT = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Member:
    """One node as this node believes it to be. Immutable: updates replace records."""

    name: str
    incarnation: int = 0
    state: MemberState = MemberState.UP
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)

    def supersedes(self, other: Member) -> bool:
        """True if this record should replace ``other`` (a record about the same node)."""
        return (self.incarnation, self.state) > (other.incarnation, other.state)

    @property
    def alive(self) -> bool:
        return self.state in (MemberState.UP, MemberState.SUSPECT)


# ------------------------------------------------------------------ effects


@dataclass(frozen=True, slots=True)
class Send:
    """Effect: send ``msg`` to node ``to``."""

    to: str
    msg: Any


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Effect: call ``timer(now, key)`` on the same core at time ``at``."""

    key: Hashable
    at: float


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """Effect: ``member`` entered ``member.state`` (``previous`` is None for a new member)."""

    member: Member
    previous: MemberState | None = None

    @property
    def kind(self) -> str:
        return self.member.state.label


@dataclass(frozen=True, slots=True)
class Merge:
    """Outcome of :meth:`MemberList.apply`."""

    changed: bool
    event: MemberEvent | None = None
    refutation: Member | None = None  # our own new record, to disseminate


Effect = Send | SetTimer | MemberEvent


class MemberList:
    """The member list of one node: itself plus every node it has heard of."""

    def __init__(self, self_name: str, *, labels: Mapping[str, str] | None = None, incarnation: int = 0) -> None:
        self.self_name = self_name
        self._members: dict[str, Member] = {self_name: Member(self_name, incarnation, MemberState.UP, dict(labels or {}))}
        self._subscribers: list[Callable[[MemberEvent], None]] = []
        self._leaving = False

    # ---------------------------------------------------------------- queries

    @property
    def me(self) -> Member:
        return self._members[self.self_name]

    def get(self, name: str) -> Member | None:
        return self._members.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self._members.values())

    def members(self) -> list[Member]:
        """All known records, sorted by name."""
        return [self._members[n] for n in sorted(self._members)]

    def alive_names(self, *, include_self: bool = False) -> list[str]:
        """Names of members that are up or suspect."""
        return [m.name for m in self._members.values() if m.alive and (include_self or m.name != self.self_name)]

    def count_alive(self) -> int:
        return sum(1 for m in self._members.values() if m.alive)

    # ---------------------------------------------------------------- changes

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every :class:`MemberEvent`; returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def apply(self, update: Member) -> Merge:
        """Merge a record heard from somewhere; returns what changed."""
        if update.name == self.self_name:
            return self._about_me(update)
        current = self._members.get(update.name)
        if current is not None and not update.supersedes(current):
            return Merge(False)
        if current is not None and not update.labels and current.labels:
            update = replace(update, labels=current.labels)  # updates need not repeat labels
        self._members[update.name] = update
        if current is not None and current.state == update.state:
            return Merge(True)  # same state, newer incarnation: nothing to report
        event = MemberEvent(update, None if current is None else current.state)
        self._notify(event)
        return Merge(True, event)

    def leave(self) -> Member:
        """Mark ourselves as leaving gracefully; returns the record to disseminate."""
        self._leaving = True
        me = replace(self.me, state=MemberState.LEFT)
        self._members[self.self_name] = me
        return me

    def _about_me(self, update: Member) -> Merge:
        me = self.me
        if self._leaving or update.state == MemberState.UP or update.incarnation < me.incarnation:
            return Merge(False)
        # Someone believes we are suspect, down or gone: outbid that belief.
        mine = replace(me, incarnation=update.incarnation + 1)
        self._members[self.self_name] = mine
        return Merge(True, None, mine)

    def _notify(self, event: MemberEvent) -> None:
        for callback in list(self._subscribers):
            callback(event)
