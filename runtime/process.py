"""The per-process record, which is also the ``ctx`` handed to process code.

One :class:`Context` exists per live process.  It holds the process's
mailbox and link/monitor bookkeeping (the kernel owns and mutates those) and
offers the process-facing API: ``send``, ``cast``, ``call``, ``receive``, ``receive_batch``,
``reply``, ``spawn``, ``link``, ``monitor``, ``register``, ``exit``, ``log``.
It uses ``__slots__`` and creates its link/monitor tables only when first
needed, so an idle process stays within a few kilobytes.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from trio.lowlevel import current_task, wait_task_rescheduled

from .mailbox import Mailbox
from .pid import PID, Ref
from .signals import NORMAL, CallRequest, Dest, ProcessExit, Reason

try:  # the running task without a function call, for ``receive``'s hot path
    from trio._core._run import GLOBAL_RUN_CONTEXT as _RUN_CONTEXT
except ImportError:  # pragma: no cover - another trio: the public function instead
    _RUN_CONTEXT = None

if TYPE_CHECKING:
    from .kernel import Kernel

__all__ = ["Context"]

_log = logging.getLogger("eco.runtime.process")

_TICKS = 63  # as in the kernel: send/receive are schedule points at least every 64 operations


@types.coroutine
def _done() -> Any:
    return
    yield  # (a generator-based coroutine)


_DONE = _done()
"""An already completed awaitable: ``await _DONE`` returns None at once.  An exhausted
generator-based coroutine can be awaited any number of times and is awaited entirely in C
(no ``__await__`` call, no coroutine per await): the cheapest way to make a synchronous
``ctx.send`` awaitable."""
for _ in _DONE:  # exhaust it
    pass


class Context:
    """A live process: its identity, mailbox and the API its code uses (``ctx``)."""

    __slots__ = (
        "kernel",
        "pid",
        "mailbox",
        "parent",
        "trap_exit",
        "name",
        "_scope",
        "_task",
        "_links",
        "_monitors",
        "_watchers",
        "_calls",
        "_exit_reason",
        "_grace",
        "_ack",
        "_exited",
        "_send_cache",
    )

    def __init__(self, kernel: Kernel, pid: PID, mailbox: Mailbox, parent: PID | None) -> None:
        self.kernel = kernel
        self.pid = pid
        self.mailbox = mailbox
        self.parent = parent  # the process that spawned this one (None: spawned from outside)
        self.trap_exit = False  # True: exit signals from links arrive as Exited messages
        self.name: str | None = None  # registered name, if any
        self._scope: trio.CancelScope | None = None  # cancelled to kill the process
        self._task: trio.lowlevel.Task | None = None
        self._links: set[PID] | None = None
        self._monitors: dict[Ref, Dest] | None = None  # monitors this process holds: ref -> target
        self._watchers: dict[Ref, PID] | None = None  # monitors on this process: ref -> watcher
        self._calls: set[Ref] | None = None  # refs of calls awaiting a reply
        self._exit_reason: Reason | None = None  # set when the kernel decides this process must end
        self._grace: trio.CancelScope | None = None  # the scope running terminate() while exiting
        self._ack = False  # True: tell the parent with a Started message once init is done
        self._exited = False
        self._send_cache: tuple[Any, type, Any] | None = None  # (dest, message type, the router's offer): see send

    def __repr__(self) -> str:
        return f"<process {self.pid}{' ' + repr(self.name) if self.name else ''}>"

    # ------------------------------------------------------------ identity

    @property
    def self(self) -> PID:
        """This process's PID (``ctx.self`` reads like Erlang's ``self()``)."""
        return self.pid

    @property
    def node(self) -> str:
        """Name of the node this process runs on."""
        return self.pid.node

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry this process's PID (``extra={"pid": ...}``)."""
        return logging.LoggerAdapter(_log, {"pid": str(self.pid)})

    @property
    def alive(self) -> bool:
        return not self._exited

    @property
    def links(self) -> frozenset[PID]:
        return frozenset(self._links or ())

    # ------------------------------------------------------------ messaging

    def send(self, dest: Dest, msg: Any) -> Awaitable[None]:
        """Send ``msg`` to a PID or registered name; under ``block`` waits for mailbox space.

        Use as ``await ctx.send(dest, msg)``.  A remote message that fits in the
        connection's send buffer is sent right here and an already completed
        awaitable is returned (no coroutine per message: the node's hot path);
        otherwise this returns the kernel's coroutine.
        """
        cache = self._send_cache
        if cache is not None and cache[0] is dest and cache[1] is type(msg):
            # The same destination object and message type as last time, and the router
            # dropped no sender since (it clears these): its offer, without the routing
            # checks and the dictionary lookup.
            if cache[2](msg):
                return _DONE
        kernel = self.kernel
        t = type(dest)
        if (t is tuple and dest[0] != kernel.node) or (t is PID and dest.node != kernel.node):  # type: ignore[index,union-attr]
            # The router's per-destination sender, called directly (Kernel._send explains the rest).
            try:
                entry = kernel._remote_senders.get(dest)
            except TypeError:  # unhashable: the kernel explains
                entry = None
            if entry is not None and entry[0] is type(msg) and entry[1](msg):
                if cache is None:
                    kernel._send_cachers.add(self)
                self._send_cache = (dest, entry[0], entry[1])
                return _DONE
            nowait = kernel._send_remote_nowait
            if nowait is not None and nowait(dest, msg):
                return _DONE  # (the router made or changed an entry: looked up next time)
        return kernel._send(self, dest, msg)

    def cast(self, dest: Dest, msg: Any) -> None:
        """Fire-and-forget send that never waits (full ``block``/``reject`` mailbox: MailboxFull)."""
        self.kernel._cast(self, dest, msg)

    async def call(self, dest: Dest, request: Any, timeout: float | None = 5.0) -> Any:
        """Send ``request`` and wait for the reply (CallTimeout, CallFailed, NoProc)."""
        return await self.kernel._call(self, dest, request, timeout)

    def reply(self, request: CallRequest, value: Any) -> None:
        """Answer a :class:`CallRequest` received from ``receive``."""
        self.kernel._reply(self, request, value)

    async def receive(self, timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
        """Next message (the first satisfying ``match``); ReceiveTimeout after ``timeout`` seconds."""
        mb = self.mailbox
        items = mb._items
        if match is None and (items or timeout is None):
            try:
                task = _RUN_CONTEXT.task  # type: ignore[union-attr]
            except AttributeError:  # (not in trio, or another trio: the public call explains)
                task = current_task()
            if self._task is task:
                # Kernel._receive inlined for the common cases (one coroutine instead of four).
                if items:  # a message is waiting
                    kernel = self.kernel
                    ticks = kernel._ticks
                    if ticks:
                        kernel._ticks = ticks - 1
                    else:
                        kernel._ticks = _TICKS
                        await trio.lowlevel.checkpoint()  # (only this task takes from the mailbox)
                else:  # park until a message arrives (an idle process waits here)
                    while not items:
                        if mb._waiter is not None:
                            raise RuntimeError("two tasks are receiving from the same mailbox at once")
                        mb._waiter = task
                        lend_read = self.kernel._lend_read
                        if lend_read is not None:
                            lend_read(task, mb)  # may wait on a socket too (runtime/fd_lending.py)
                        await wait_task_rescheduled(mb._abort_park)
                        mb._woken(task)
                msg = items.popleft()  # (the owner's own removals need no _popped count)
                if mb._senders:
                    mb._space_freed()
                return msg
        return await self.kernel._receive(self, timeout, match)

    async def receive_batch(self, max_items: int | None = None, timeout: float | None = None) -> list[Any]:
        """Wait for at least one message, then take every queued one (at most ``max_items``),
        oldest first; ReceiveTimeout after ``timeout`` seconds.  The cheapest way to drain a
        busy mailbox: one ``await`` per batch instead of one per message."""
        return await self.kernel._receive_batch(self, max_items, timeout)

    # ------------------------------------------------------------ processes

    async def spawn(
        self, target: Any, *args: Any, link: bool = False, monitor: bool = False, name: str | None = None
    ) -> PID:
        """Start a process running ``target`` (see ``Kernel.spawn``)."""
        kernel = self.kernel
        ticks = kernel._ticks  # Kernel._tick inlined: one coroutine less per spawn
        if ticks:
            kernel._ticks = ticks - 1
        else:
            kernel._ticks = _TICKS
            await trio.lowlevel.checkpoint()
        return kernel._spawn(self, target, args, link, monitor, name)

    def link(self, pid: PID) -> None:
        """Link to ``pid``: if either exits abnormally the other gets the exit signal."""
        self.kernel._link(self, pid)

    def unlink(self, pid: PID) -> None:
        self.kernel._unlink(self, pid)

    def monitor(self, target: Dest) -> Ref:
        """Watch ``target``: a :class:`Down` message arrives when it exits (at once if it is gone)."""
        return self.kernel._monitor(self, target)

    def demonitor(self, ref: Ref, flush: bool = False) -> None:
        """Stop a monitor; ``flush`` also drops its Down message if already queued."""
        self.kernel._demonitor(self, ref, flush)

    def exit_signal(self, pid: PID, reason: Reason | str) -> None:
        """Send an exit signal to ``pid`` (Erlang's ``exit(Pid, Reason)``)."""
        self.kernel._exit(self, pid, Reason.coerce(reason))

    def register(self, name: str) -> None:
        """Register this process under ``name`` (released when it exits; NameTaken if held)."""
        self.kernel.register(name, self.pid)

    def unregister(self) -> None:
        if self.name is not None:
            self.kernel.unregister(self.name)

    def whereis(self, name: str) -> PID | None:
        return self.kernel.whereis(name)

    def exit(self, reason: Reason | str = NORMAL) -> None:
        """End this process now with ``reason`` (raises; call it from the process's own task)."""
        raise ProcessExit(Reason.coerce(reason))
