"""Linearizability checking of key-value histories (Wing & Gong search with Lowe's memoisation).

A history is a list of :class:`Operation`: what a client invoked, when, and what it got back.
An operation whose client gave up (timeout, crash) has ``ret=None``: it may or may not have
taken effect, so it is treated as returning after everything else with an unconstrained result.
A history is linearizable if every operation can be given a point between its invocation and
its return such that the sequence of points is a legal run of the sequential model.

Keys are independent, so the history is checked per key. The search keeps, for each
(set of linearized operations, model state) it has already explored, a cache entry, which
prunes the exponential search to something practical for test-sized histories.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable

INFINITY = float("inf")


@dataclass(frozen=True)
class Operation:
    """One client call on the key-value model: ``op`` in put/append/delete/get."""

    client: Any
    op: str
    key: str
    value: Any = None  # argument of put/append
    output: Any = None  # result: value for get and delete, ignored for put/append
    call: float = 0
    ret: float | None = None  # None: never returned (outcome unknown)


class History:
    """Records invoke/return events with a logical clock that the caller advances."""

    def __init__(self) -> None:
        self._clock = itertools.count()
        self._open: dict[int, dict] = {}
        self.operations: list[Operation] = []
        self._ids = itertools.count()

    def invoke(self, client: Any, op: str, key: str, value: Any = None) -> int:
        op_id = next(self._ids)
        self._open[op_id] = dict(client=client, op=op, key=key, value=value, call=next(self._clock))
        return op_id

    def complete(self, op_id: int, output: Any = None) -> None:
        o = self._open.pop(op_id)
        self.operations.append(Operation(output=output, ret=next(self._clock), **o))

    def abandon(self, op_id: int) -> None:
        """The client gave up: the operation may or may not have happened."""
        o = self._open.pop(op_id)
        self.operations.append(Operation(ret=None, **o))

    def all_operations(self) -> list[Operation]:
        """Completed and abandoned operations plus those still open (treated as abandoned)."""
        return self.operations + [Operation(ret=None, **o) for o in self._open.values()]


def kv_step(state: Any, op: Operation) -> tuple[bool, Any]:
    """Sequential model of one key: ``state`` is its value (None when absent)."""
    if op.op == "put":
        return True, op.value
    if op.op == "append":
        return True, (state or "") + op.value
    unknown = op.ret is None
    if op.op == "delete":
        return unknown or op.output == state, None
    if op.op == "get":
        return unknown or op.output == state, state
    raise ValueError(f"unknown operation {op.op!r}")


@dataclass
class CheckResult:
    ok: bool | None  # None: gave up after ``max_steps`` (neither proven nor refuted)
    bad_key: str | None = None
    bad_operations: list = field(default_factory=list)  # the key's history when it failed
    steps: int = 0

    def __bool__(self) -> bool:
        return self.ok is True

    def explain(self) -> str:
        if self.ok:
            return "linearizable"
        if self.ok is None:
            return f"undecided after {self.steps} search steps"
        lines = [f"not linearizable: key {self.bad_key!r}"]
        for o in sorted(self.bad_operations, key=lambda o: o.call):
            end = "..." if o.ret is None else o.ret
            lines.append(f"  [{o.call}, {end}] client {o.client}: {o.op}({o.value!r}) -> {o.output!r}")
        return "\n".join(lines)


def check_kv(operations: Iterable[Operation], max_steps: int = 2_000_000) -> CheckResult:
    """Check a key-value history; every key is checked separately."""
    by_key: dict[str, list[Operation]] = {}
    for o in operations:
        if o.op == "get" and o.ret is None:
            continue  # an unanswered read constrains nothing
        by_key.setdefault(o.key, []).append(o)
    total = 0
    for key in sorted(by_key, key=repr):
        ok, steps = check_operations(by_key[key], None, kv_step, max_steps)
        total += steps
        if ok is not True:
            return CheckResult(ok, key, by_key[key], total)
    return CheckResult(True, steps=total)


class _Event:
    __slots__ = ("op_id", "is_call", "match", "prev", "next")

    def __init__(self, op_id: int, is_call: bool) -> None:
        self.op_id = op_id
        self.is_call = is_call
        self.match: _Event | None = None  # the call's return event
        self.prev: _Event | None = None
        self.next: _Event | None = None


def check_operations(ops: list[Operation], init: Hashable, step: Callable[[Any, Operation], tuple[bool, Any]],
                     max_steps: int = 2_000_000) -> tuple[bool | None, int]:
    """Search for a linearization of ``ops`` (one partition) under the model ``step``."""
    timed: list[tuple[float, int, int]] = []  # (time, 0 call / 1 return, op id): calls sort first on ties
    for i, o in enumerate(ops):
        ret = INFINITY if o.ret is None else o.ret
        if ret < o.call:
            raise ValueError(f"operation returns ({ret}) before it is called ({o.call}): {o}")
        timed.append((o.call, 0, i))
        timed.append((ret, 1, i))
    timed.sort()
    head = _Event(-1, False)
    tail = head
    calls: dict[int, _Event] = {}
    for _, kind, i in timed:
        ev = _Event(i, kind == 0)
        if kind == 0:
            calls[i] = ev
        else:
            calls[i].match = ev
        ev.prev, tail.next, tail = tail, ev, ev

    def lift(call: _Event) -> None:
        call.prev.next = call.next
        if call.next:
            call.next.prev = call.prev
        ret = call.match
        ret.prev.next = ret.next
        if ret.next:
            ret.next.prev = ret.prev

    def unlift(call: _Event) -> None:
        ret = call.match
        ret.prev.next = ret
        if ret.next:
            ret.next.prev = ret
        call.prev.next = call
        if call.next:
            call.next.prev = call

    state = init
    linearized = 0  # bitset of op ids
    cache: set[tuple[int, Any]] = set()
    stack: list[tuple[_Event, Any]] = []
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            return None, steps
        if entry.is_call:
            ok, new_state = step(state, ops[entry.op_id])
            if ok:
                key = (linearized | (1 << entry.op_id), new_state)
                if key not in cache:
                    cache.add(key)
                    stack.append((entry, state))
                    state = new_state
                    linearized |= 1 << entry.op_id
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # Reached the return of an operation we could not place: undo the last choice.
            if not stack:
                return False, steps
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op_id)
            unlift(entry)
            entry = entry.next
    return True, steps
