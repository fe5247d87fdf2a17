"""Letting a process wait on a connection's socket in place of the connection's reader.

On a request/response exchange between nodes, the answer normally takes two
trio scheduling passes to reach the process waiting for it: the socket wakes
the connection's reader task, which decodes the frame and wakes the process.
The reply the process then writes sits behind both passes.  When a process
is about to park in ``receive`` right after writing a lone message to a
connection whose reader is idle, it can instead *borrow* the reader's place
in trio's I/O registration: the socket then wakes the process directly, and
the process reads and delivers that one read itself (to any mailboxes, its own
included).  One pass per hop, as for a bare socket.  The socket is armed again
just before trio next waits for I/O (:meth:`FdLending.before_io_wait`), by
then usually for the same process, parked again after writing its reply.

A :class:`FdLending` reaches into trio's epoll I/O manager (private, hence the
check below): the per-descriptor registration records and their update
function, and a task's "scheduled" marker.  If anything is missing (another
platform's I/O manager, a future trio), :func:`fd_lending` returns None and
connections never lend: a trio upgrade can cost speed, never correctness.

**Busy-waiting.**  Between two nodes, most of a round trip's time is the
kernel waking a process that went to sleep in ``epoll_wait``: the peer
answers within tens of microseconds, yet the sleeping side pays for a
context switch and a CPU leaving its idle state.  So when trio is about to
block and a process waits on a lent socket (a reply is expected there), the
loop first polls trio's epoll descriptor (readable as soon as any watched
socket is, without taking its events) for up to ``busy_wait`` seconds, as the
BEAM's schedulers spin briefly before sleeping.  Whatever became ready
meanwhile is then picked up by trio's wait at once.  The poll is adaptive:
after a miss (no reply within the budget) the next ``2**misses - 1`` chances are skipped, so
a slow peer costs a spin now and then, never one per request; a hit starts
over.  ``TransportConfig.busy_wait = 0`` turns it off.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any

import trio
from trio.lowlevel import Task

try:
    from trio._core._run import GLOBAL_RUN_CONTEXT as _RUN_CONTEXT
except ImportError:  # (fd_lending() then returns None)
    _RUN_CONTEXT = None

_log = logging.getLogger("eco.transport")

__all__ = ["FdLending", "fd_lending"]


class FdLending(trio.abc.Instrument):
    """The running trio loop's epoll registrations, as one transport's connections use them.

    Also a trio instrument: after a borrower's read, re-arming the socket for the reader
    waits until trio is about to wait for I/O (``before_io_wait``), by which time the
    borrower has usually written its reply, or borrowed the socket again, which re-arms
    it for itself instead.  Either way the re-arm is off the request/response path.
    """

    __slots__ = ("registered", "update", "last", "writer", "owed", "busy_wait", "spins", "spin_hits", "_misses", "_skip", "_poll")

    def __init__(self, registered: Any, update: Any, busy_wait: float = 0.0, epoll_fd: int = -1) -> None:
        self.registered = registered  # fd -> record with .read_task (a defaultdict: use .get)
        self.update = update  # re-arm a descriptor after changing its record
        self.last: Any = None  # the connection that last sent a lone message or a request
        self.writer: Task | None = None  # the task that sent it
        self.owed: list[Any] = []  # connections whose reader must watch the socket again
        self.busy_wait = busy_wait  # seconds to poll trio's epoll before it blocks on a loan (0: never)
        self.spins = 0  # busy-waits started
        self.spin_hits = 0  # ... that found the reply
        self._misses = 0  # busy-waits in a row that found nothing
        self._skip = 0  # chances to busy-wait still to pass up after a miss
        self._poll: Any = None
        if busy_wait > 0.0 and epoll_fd >= 0:
            poller = select.poll()
            poller.register(epoll_fd, select.POLLIN)
            self._poll = poller.poll
        else:
            self.busy_wait = 0.0

    def wrote(self, conn: Any) -> None:
        """``conn`` is sending a lone message or a request for the running task: the answer
        will likely come back there, for that task (see ``TcpTransport.lend_read``)."""
        self.last = conn
        self.writer = trio.lowlevel.current_task()

    def before_io_wait(self, timeout: float) -> None:
        owed = self.owed
        if owed:
            self.owed = []
            for conn in owed:
                try:
                    conn._pay_rearm()
                except Exception:  # (never let trio disable this instrument: sockets would go unwatched)
                    _log.exception("re-arming the reader of %r failed", conn)
        if timeout > 0.0 and self.busy_wait > 0.0:  # (0: other tasks are ready to run)
            conn = self.last
            if conn is not None and conn._borrower is not None:
                self._busy_wait(min(timeout, self.busy_wait))

    def _busy_wait(self, budget: float) -> None:
        """Poll trio's epoll descriptor (readable once any watched socket is ready, without
        taking its events) until it is, or ``budget`` seconds passed (see the module doc)."""
        if self._skip:
            self._skip -= 1
            return
        self.spins += 1
        poll, clock = self._poll, time.perf_counter
        deadline = clock() + budget
        try:
            while not (ready := poll(0)):
                if clock() >= deadline:
                    self._misses = misses = min(self._misses + 1, 10)
                    self._skip = (1 << misses) - 1
                    return
        except (OSError, ValueError):
            ready = None
        if ready is None or ready[0][1] & select.POLLNVAL:  # (trio's epoll went away: no more busy-waiting)
            self.busy_wait = 0.0
            return
        self.spin_hits += 1
        self._misses = 0

    def lend(self, fd: int, reader: Task, borrower: Task) -> Any:
        """Make ``borrower`` the task woken for ``fd`` if ``reader`` waits on it now; returns
        the registration record (keep it for :meth:`rearm`), or None.  No system call: the
        descriptor stays armed."""
        record = self.registered.get(fd)
        if record is None or record.read_task is not reader:
            return None
        record.read_task = borrower
        return record

    def swap(self, fd: int, record: Any, old: Task, new: Task | None) -> bool:
        """Make ``new`` the task woken for ``fd`` if ``old`` is, in this same ``record``."""
        if self.registered.get(fd) is not record or record.read_task is not old:
            return False
        record.read_task = new
        return True

    def rearm(self, fd: int, record: Any, reader: Task) -> bool:
        """After trio woke the borrower (which disarms ``fd`` and may drop its record), put
        ``reader`` (or a new borrower) back in the reader's own record, armed.  False if
        that cannot be done as it was (another record took its place): the caller then
        wakes the reader instead, which waits again by itself.  (The reader's cancellation
        clears *its* record, so the record must be the very one it registered in.)"""
        registered = self.registered
        current = registered.get(fd)
        if current is None:
            registered[fd] = current = record
        if current is not record or record.read_task is not None:
            return False
        record.read_task = reader
        self.update(fd)
        return True

    @staticmethod
    def blocked(task: Task) -> bool:
        """True if ``task`` is parked (neither running nor scheduled to run)."""
        return task._next_send_fn is None and task is not getattr(_RUN_CONTEXT, "task", None)


def fd_lending(busy_wait: float = 0.0) -> FdLending | None:
    """An :class:`FdLending` for the running trio loop, or None where it cannot work.

    ``busy_wait``: seconds to poll trio's epoll descriptor before it blocks while a
    process waits on a lent socket (0: never)."""
    try:
        io_manager = _RUN_CONTEXT.runner.io_manager
    except AttributeError:  # (no trio internals, or not inside trio.run)
        return None
    registered = getattr(io_manager, "_registered", None)
    update = getattr(io_manager, "_update_registrations", None)
    task_fields = {field.name for field in getattr(Task, "__attrs_attrs__", ())}
    if (
        type(io_manager).__name__ != "EpollIOManager"
        or not callable(update)
        or not hasattr(registered, "get")
        or not hasattr(registered, "__getitem__")
        or "_next_send_fn" not in task_fields
    ):
        return None
    probe = registered.default_factory() if hasattr(registered, "default_factory") else None
    if probe is None or not hasattr(probe, "read_task"):
        return None
    try:
        epoll_fd = io_manager._epoll.fileno()
    except (AttributeError, ValueError):  # (lending still works; no busy-wait)
        epoll_fd = -1
    return FdLending(registered, update, busy_wait, epoll_fd)
