"""A bounded, selectively readable mailbox for one process.

Deliberately not a trio memory channel: an idle process must cost only a few
kilobytes, so the mailbox is a ``deque`` plus the single task parked in
``get`` (woken with ``trio.lowlevel.reschedule``) and, only while the
mailbox is full, a queue of parked senders.  One task reads; many write.

Overflow policies when the mailbox holds ``capacity`` messages:

* ``block``: ``put`` waits for space (``offer`` reports full);
* ``drop_oldest``: the oldest message is discarded to make room;
* ``reject``: ``offer`` reports full and the kernel raises ``MailboxFull``.

System messages (exit signals, monitors' DOWN, call replies) go through
``put_system`` and are never refused: losing them would break supervision.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import trio
from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled

__all__ = ["Mailbox", "OVERFLOW_POLICIES"]

OVERFLOW_POLICIES = ("block", "drop_oldest", "reject")


class Mailbox:
    """Bounded FIFO of messages with selective ``get``; see the module docstring."""

    __slots__ = ("_items", "capacity", "overflow", "_waiter", "_senders", "_popped", "closed", "dropped", "_borrow")

    def __init__(self, capacity: int = 1000, overflow: str = "block") -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, not {capacity}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"unknown overflow policy {overflow!r} (expected one of {', '.join(OVERFLOW_POLICIES)})")
        self._items: deque[Any] = deque()
        self.capacity = capacity
        self.overflow = overflow
        self._waiter: trio.lowlevel.Task | None = None  # the reader, while parked
        self._senders: deque[trio.lowlevel.Task] | None = None  # blocked writers, created on demand
        # Messages removed from the front that a selective get (match) in progress must
        # allow for, which keeps its scans incremental.  Only the owner takes messages and
        # a scan position lives within one get, so the owner's plain takes need not count;
        # drop_oldest, which happens while the owner waits, must.
        self._popped = 0
        self.closed = False
        self.dropped = 0  # messages discarded by drop_oldest
        # While the parked reader also waits on a socket in place of its connection's
        # reader task (runtime/fd_lending.py): that connection, which a waker asks
        # (lend_return) whether the reader is still parked.
        self._borrow: Any = None

    def __len__(self) -> int:
        return len(self._items)

    def snapshot(self) -> list[Any]:
        """A copy of the queued messages, oldest first (for inspection and tests)."""
        return list(self._items)

    # ------------------------------------------------------------ writing

    def offer(self, msg: Any) -> bool:
        """Enqueue unless full; ``drop_oldest`` always makes room. False means full."""
        items = self._items
        if len(items) >= self.capacity:
            if self.overflow != "drop_oldest":
                return False
            items.popleft()
            self._popped += 1
            self.dropped += 1
        items.append(msg)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if self._borrow is None or self._borrow.lend_return(waiter):
                reschedule(waiter)
        return True

    def put_system(self, msg: Any) -> None:
        """Enqueue regardless of capacity (kernel signals must never be lost)."""
        self._items.append(msg)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if self._borrow is None or self._borrow.lend_return(waiter):
                reschedule(waiter)

    async def wait_space(self) -> None:
        """Park the calling sender until a message is taken or the mailbox closes."""
        if self._senders is None:
            self._senders = deque()
        task = current_task()
        senders = self._senders
        senders.append(task)

        def abort(_: Any) -> Abort:
            try:
                senders.remove(task)
            except ValueError:  # already woken
                pass
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def _space_freed(self) -> None:
        senders = self._senders
        if senders:
            reschedule(senders.popleft())

    # ------------------------------------------------------------ reading

    def get_nowait(self, match: Callable[[Any], bool] | None = None) -> tuple[bool, Any]:
        """``(True, message)`` for the first (matching) message, else ``(False, None)``."""
        items = self._items
        if match is None:
            if items:
                msg = items.popleft()
                if self._senders:
                    self._space_freed()
                return True, msg
            return False, None
        found = self._scan(match, 0)
        if found >= 0:
            return True, self._take(found)
        return False, None

    def take_batch(self, max_items: int | None = None) -> list[Any]:
        """Remove and return the queued messages, oldest first (at most ``max_items``; may be empty)."""
        items = self._items
        if max_items is None or max_items >= len(items):
            batch = list(items)
            items.clear()
        else:
            popleft = items.popleft
            batch = [popleft() for _ in range(max_items)]
        self._popped += len(batch)
        if self._senders:
            for _ in range(len(batch)):
                self._space_freed()
        return batch

    async def wait_nonempty(self) -> None:
        """Wait until at least one message is queued (returns at once if one is)."""
        while not self._items:
            await self._park()

    async def get(self, match: Callable[[Any], bool] | None = None, lend: Callable[[Any, Mailbox], bool] | None = None) -> Any:
        """Wait for the first message (satisfying ``match``), remove and return it.

        ``lend(task, mailbox)``, if given, is called each time the task parks: the node
        layer may then have a socket wake it directly (runtime/fd_lending.py)."""
        items = self._items
        if match is None:
            while not items:
                await self._park(lend)
            msg = items.popleft()
            if self._senders:
                self._space_freed()
            return msg
        # Selective receive: only look at messages that arrived since the last scan.
        scanned_abs = self._popped
        while True:
            start = max(0, scanned_abs - self._popped)
            found = self._scan(match, start)
            if found >= 0:
                return self._take(found)
            scanned_abs = self._popped + len(items)
            await self._park(lend)

    def _scan(self, match: Callable[[Any], bool], start: int) -> int:
        items = self._items
        for i in range(start, len(items)):
            if match(items[i]):
                return i
        return -1

    def _take(self, index: int) -> Any:
        items = self._items
        if index == 0:
            self._popped += 1
            msg = items.popleft()
        else:
            msg = items[index]
            del items[index]
        if self._senders:
            self._space_freed()
        return msg

    def remove_where(self, match: Callable[[Any], bool]) -> int:
        """Drop every queued message satisfying ``match``; returns how many."""
        items = self._items
        keep = [m for m in items if not match(m)]
        removed = len(items) - len(keep)
        if removed:
            items.clear()
            items.extend(keep)
            self._popped += removed  # conservative: forces later scans to restart from the front
            if self._senders:
                for _ in range(removed):
                    self._space_freed()
        return removed

    async def _park(self, lend: Callable[[Any, Mailbox], bool] | None = None) -> None:
        if self._waiter is not None:
            raise RuntimeError("two tasks are receiving from the same mailbox at once")
        task = self._waiter = current_task()
        if lend is not None:
            lend(task, self)
        await wait_task_rescheduled(self._abort_park)  # a bound method: cheaper than a closure
        self._woken(task)

    def _woken(self, task: trio.lowlevel.Task) -> None:
        """In the reader, just woken from a park that may have lent it a socket."""
        borrowed = self._borrow
        if borrowed is not None:  # the socket woke us: read it, as its reader would
            self._waiter = None
            borrowed.lent_read_ready(task)
        elif self._waiter is task:  # (woken by the socket, then the loan ended)
            self._waiter = None

    def _abort_park(self, _: Any) -> Abort:
        self._waiter = None
        if self._borrow is not None:
            self._borrow.lend_abort()
        return Abort.SUCCEEDED

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Drop everything and release blocked senders (their messages are discarded)."""
        self.closed = True
        self._items.clear()
        senders = self._senders
        self._senders = None
        while senders:
            reschedule(senders.popleft())
