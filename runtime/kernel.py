"""The per-node kernel: process table, registry, links, monitors and delivery.

A :class:`Kernel` runs processes (trio tasks with bounded mailboxes) inside
its own nursery::

    async with Kernel("n1", incarnation=7) as kernel:
        pid = await kernel.spawn(worker_fn, arg)
        reply = await kernel.call(pid, "ping")

Process code is ``async def fn(ctx, *args)`` (``ctx`` is the process's
:class:`~eco.runtime.process.Context`), or anything with an ``as_process``
method such as a :class:`~eco.runtime.component.Worker` subclass or a
:class:`~eco.runtime.supervisor.Supervisor`.

Delivery semantics (as in Erlang): sending to a dead PID is silently dropped
(use a monitor to learn about it), sending to an unregistered name raises
:class:`NoProc`.  Local messages are passed by reference, not copied.
``send`` and ``receive`` are schedule points whenever they wait and at least
every 64 operations otherwise, which keeps local messaging fast.

Remote PIDs (``pid.node != kernel.node``) and ``(node, name)`` destinations go
through a :class:`RemoteRouter` installed with :meth:`Kernel.set_router` by
the node layer, which also feeds remote events back in through the
``*_from_remote`` methods and :meth:`Kernel.node_down`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import FunctionType
from typing import Any, Protocol

import trio
from trio.lowlevel import current_task

from .errors import CallFailed, CallTimeout, EcoRuntimeError, MailboxFull, NameTaken, NoProc, NotConnected, NotInProcess, ReceiveTimeout
from .mailbox import OVERFLOW_POLICIES, Mailbox
from .pid import PID, Ref
from .process import Context
from .scope_entry import enter_fresh_scope
from .signals import (
    KILLED,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    CallReply,
    CallRequest,
    Dest,
    Down,
    Exited,
    ProcessExit,
    Reason,
    Started,
)

__all__ = ["Kernel", "RemoteRouter", "current_process"]

_log = logging.getLogger("eco.runtime.kernel")

_current: ContextVar[Context | None] = ContextVar("eco_current_process", default=None)

_TASK_NAME = "eco.process"  # one shared string: a per-task name would cost memory
_TICKS = 63  # checkpoint every 64 non-waiting send/receive operations (a countdown: small ints, no allocation)


def current_process() -> Context | None:
    """The Context of the process whose code is running, or None outside processes."""
    return _current.get()


class RemoteRouter(Protocol):
    """What the kernel needs from the node layer to reach other nodes.

    The kernel calls these for destinations on other nodes; all but
    ``send_remote`` must not block (queue the frame and return).  ``dest`` is
    a remote :class:`PID` or a ``(node, name)`` pair.  The node delivers what
    arrives from peers with :meth:`Kernel.send` / :meth:`Kernel.cast` (plain
    and :class:`CallReply` messages) and the ``*_from_remote`` methods, and
    calls :meth:`Kernel.node_down` when a peer is lost.  If the target node is
    unknown or unreachable the router should answer as the peer would: call
    ``kernel.down_from_remote(..., NOCONNECTION)`` for a monitor and
    ``kernel.exit_from_remote(..., NOCONNECTION)`` for a link.
    """

    async def send_remote(self, dest: PID | tuple[str, str], msg: Any, *, sender: PID | None) -> None:
        """Deliver ``msg``; may wait for flow control. Drop silently if the peer is gone."""

    def cast_remote(self, dest: PID | tuple[str, str], msg: Any, *, sender: PID | None) -> None:
        """Deliver ``msg`` without waiting."""

    # Optional: ``send_remote_nowait(dest, msg) -> bool``, the fast path of ``send_remote``.
    # True means done (sent, or dropped as ``send_remote`` would); False means the kernel
    # must ``await send_remote(...)`` instead (flow control, or a case it does not cover).
    # Optional: ``remote_senders``, a dict ``dest -> (message type, offer, ...)`` the router
    # keeps up to date: for a message of exactly that type the kernel calls ``offer(msg)``
    # itself (True: sent; False: go through ``send_remote_nowait`` / ``send_remote``).  A
    # router that drops or replaces entries calls ``kernel.forget_remote_senders()``.

    def monitor_remote(self, watcher: PID, target: PID | tuple[str, str], ref: Ref) -> None:
        """Ask the target's node to call ``kernel.monitor_from_remote(watcher, target, ref)``."""

    def demonitor_remote(self, watcher: PID, target: PID | tuple[str, str], ref: Ref) -> None:
        """Ask the target's node to call ``kernel.demonitor_from_remote(ref)``."""

    def link_remote(self, local: PID, remote: PID) -> None:
        """Ask ``remote``'s node to call ``kernel.link_from_remote(local, remote)``."""

    def unlink_remote(self, local: PID, remote: PID) -> None:
        """Ask ``remote``'s node to call ``kernel.unlink_from_remote(local, remote)``."""

    def exit_remote(self, target: PID, sender: PID | None, reason: Reason) -> None:
        """Ask ``target``'s node to call ``kernel.exit_from_remote(target, sender, reason)``."""

    def down_remote(self, watcher: PID, ref: Ref, target: Dest, reason: Reason) -> None:
        """Ask ``watcher``'s node to call ``kernel.down_from_remote(watcher, ref, target, reason)``."""


def _entry(target: Any, args: tuple[Any, ...]) -> tuple[Callable[..., Any], tuple[Any, ...], bool]:
    """(function, args, whether it reports its own start with ``notify_started``)."""
    if type(target) is FunctionType:  # the common case, without a failing attribute lookup
        return target, args, False
    as_process = getattr(target, "as_process", None)
    if as_process is not None:
        return as_process(*args), (), True
    if callable(target):
        return target, args, False
    raise TypeError(
        f"cannot spawn {target!r}: expected an async function fn(ctx, *args), "
        "a Worker subclass or a Supervisor"
    )


def _pop_nested(table: dict[str, dict[Ref, Context]], node: str, ref: Ref) -> Context | None:
    inner = table.get(node)
    if inner is None:
        return None
    ctx = inner.pop(ref, None)
    if not inner:
        del table[node]
    return ctx


class Kernel:
    """Runs the processes of one node; see the module docstring."""

    def __init__(
        self,
        node: str = "local",
        *,
        incarnation: int = 1,
        mailbox_size: int = 1000,
        overflow: str = "block",
        shutdown_timeout: float = 5.0,
    ) -> None:
        if not isinstance(node, str) or not node:
            raise ValueError("a node name must be a non-empty string")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"unknown overflow policy {overflow!r} (expected one of {', '.join(OVERFLOW_POLICIES)})")
        if mailbox_size < 1:
            raise ValueError(f"mailbox_size must be at least 1, not {mailbox_size}")
        self.node = node
        self.incarnation = incarnation
        self.mailbox_size = mailbox_size
        self.overflow = overflow
        self.shutdown_timeout = shutdown_timeout
        self._procs: dict[int, Context] = {}  # serial -> live process (and temporary inboxes)
        self._names: dict[str, Context] = {}
        self._serial = 0
        self._refs = 0
        self._ticks = _TICKS  # operations left before the next forced checkpoint
        self._router: RemoteRouter | None = None
        self._send_remote_nowait: Callable[[Any, Any], bool] | None = None  # the router's optional fast path
        self._remote_senders: dict[Any, tuple[type, Callable[[Any], bool], Any]] = {}  # the router's, if it has them
        self._lend_read: Callable[[Any, Any], bool] | None = None  # the router's, if it has one (see set_router)
        self._send_cachers: set[Context] = set()  # processes whose ctx.send keeps a router entry
        self._nursery: trio.Nursery | None = None
        self._nursery_cm: Any = None
        self._tasks = 0  # live processes that have a task (inboxes excluded)
        self._all_gone: trio.Event | None = None  # set when _tasks drops to 0 (while shutting down)
        # Bookkeeping of cross-node monitors and links, indexed by the other node for node_down.
        self._remote_monitors: dict[str, dict[Ref, Context]] = {}  # target node -> ref -> local watcher
        self._remote_watchers: dict[str, dict[Ref, Context]] = {}  # watcher node -> ref -> local target
        self._remote_links: dict[str, set[tuple[PID, PID]]] = {}  # remote node -> {(local, remote)}

    def __repr__(self) -> str:
        return f"<Kernel {self.node}#{self.incarnation} processes={len(self._procs)}>"

    # ================================================================ lifecycle

    async def __aenter__(self) -> Kernel:
        if self._nursery is not None:
            raise RuntimeError("this kernel is already running")
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        try:
            if exc_info[0] is None:
                await self.shutdown()
            else:
                self._kill_all()
        finally:
            cm, self._nursery_cm = self._nursery_cm, None
            try:
                return await cm.__aexit__(*exc_info)
            finally:
                self._nursery = None

    @property
    def running(self) -> bool:
        return self._nursery is not None

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop every process: ``shutdown`` to each root (trees stop in order), then kill stragglers.

        Roots are processes without a live parent, or not linked to it;
        processes linked to their parent (supervised children) are stopped by it.
        """
        timeout = self.shutdown_timeout if timeout is None else timeout
        if self._tasks:
            self._all_gone = trio.Event()
            for ctx in list(self._procs.values()):
                if ctx._scope is None:
                    continue
                parent = self._lookup(ctx.parent) if ctx.parent is not None else None
                if parent is None or not ctx._links or parent.pid not in ctx._links:
                    self._signal_exit(ctx, None, SHUTDOWN)
            with trio.move_on_after(timeout):
                await self._all_gone.wait()
            self._all_gone = None
        self._kill_all()

    def _kill_all(self) -> None:
        for ctx in list(self._procs.values()):
            if ctx._scope is not None:
                self._terminate(ctx, KILLED, brutal=True)

    # ================================================================ spawning

    async def spawn(
        self,
        target: Any,
        *args: Any,
        link: bool = False,
        monitor: bool = False,
        name: str | None = None,
        mailbox_size: int | None = None,
        overflow: str | None = None,
    ) -> PID:
        """Start a process and return its PID.

        ``target`` is ``async def fn(ctx, *args)`` or has ``as_process(*args)``
        (Worker subclasses, Supervisor specs).  ``link``/``monitor`` tie it to
        the calling process atomically; ``name`` registers it before it runs.
        """
        ticks = self._ticks  # Kernel._tick inlined: one coroutine less per spawn
        if ticks:
            self._ticks = ticks - 1
        else:
            self._ticks = _TICKS
            await trio.lowlevel.checkpoint()
        return self._spawn(_current.get(), target, args, link, monitor, name, mailbox_size, overflow)

    def spawn_nowait(self, target: Any, *args: Any, name: str | None = None, **options: Any) -> PID:
        """Like :meth:`spawn` without the schedule point (for synchronous callers)."""
        return self._spawn(
            _current.get(), target, args, options.pop("link", False), options.pop("monitor", False), name, **options
        )

    def _spawn(
        self,
        caller: Context | None,
        target: Any,
        args: tuple[Any, ...],
        link: bool = False,
        monitor: bool = False,
        name: str | None = None,
        mailbox_size: int | None = None,
        overflow: str | None = None,
        ack: bool = False,
    ) -> PID:
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError(f"kernel {self.node!r} is not running (use `async with Kernel(...)`)")
        if (link or monitor) and caller is None:
            raise NotInProcess("spawn(link=True/monitor=True) needs a calling process to link or monitor from")
        if type(target) is FunctionType:  # the common case, without _entry's checks
            fn, announces = target, False
        else:
            fn, args, announces = _entry(target, args)
        if ack and caller is None:
            raise NotInProcess("spawn(ack=True) needs a calling process to receive Started")
        if name is not None:
            self._check_name_free(name)
        serial = self._serial = self._serial + 1
        ctx = Context(
            self,
            PID(self.node, serial, self.incarnation),
            Mailbox(mailbox_size or self.mailbox_size, overflow or self.overflow),
            caller.pid if caller is not None else None,
        )
        ctx._scope = trio.CancelScope()
        self._procs[serial] = ctx
        self._tasks += 1
        if name is not None:
            self._names[name] = ctx
            ctx.name = name
        if link:
            self._link(caller, ctx.pid)  # type: ignore[arg-type]
        if monitor:
            self._monitor(caller, ctx.pid)  # type: ignore[arg-type]
        if ack:
            if announces:
                ctx._ack = True
            else:  # a plain function has no init phase: it counts as started now
                caller.mailbox.put_system(Started(ctx.pid))  # type: ignore[union-attr]
        nursery.start_soon(self._run, ctx, fn, args, name=_TASK_NAME)
        return ctx.pid

    async def _run(self, ctx: Context, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        _current.set(ctx)
        task = ctx._task = current_task()
        reason = NORMAL
        outer: BaseException | None = None
        scope = ctx._scope
        try:
            enter_fresh_scope(scope, task)  # `with scope:` spelled out, for a cheaper entry
            try:
                coro = fn(ctx, *args)
                if not hasattr(coro, "__await__"):
                    raise TypeError(f"process target {fn!r} must be an async function, it returned {coro!r}")
                await coro
            except BaseException as exc:
                if not scope.__exit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                scope.__exit__(None, None, None)
        except ProcessExit as exc:
            reason = exc.reason
        except trio.Cancelled as exc:  # the kernel's nursery is being torn down
            outer = exc
            reason = SHUTDOWN
        except Exception as exc:
            reason = Reason.error(exc)
            if ctx._exit_reason is None:
                _log.error("process %s crashed: %s", ctx.pid, reason.text, exc_info=exc)
        except BaseException as exc:  # KeyboardInterrupt and friends: record the exit, then propagate
            outer = exc
            reason = Reason.error(exc)
        if ctx._exit_reason is not None:
            reason = ctx._exit_reason
        self._on_exit(ctx, reason)
        if outer is not None:
            raise outer

    def notify_started(self, ctx: Context) -> None:
        """Called by process types with an init phase (Worker, Supervisor) once it is done.

        If the parent asked for it (``ack=True``, as supervisors do to start
        children one after the other), the parent gets a :class:`Started` message.
        """
        if ctx._ack:
            ctx._ack = False
            parent = self._lookup(ctx.parent) if ctx.parent is not None else None
            if parent is not None:
                parent.mailbox.put_system(Started(ctx.pid))

    def exit_reason_for(self, ctx: Context, exc: BaseException | None) -> Reason:
        """The reason ``ctx`` is exiting with, given the exception unwinding it (None: returned)."""
        if ctx._exit_reason is not None:
            return ctx._exit_reason
        if exc is None:
            return NORMAL
        if isinstance(exc, ProcessExit):
            return exc.reason
        if isinstance(exc, trio.Cancelled):
            return SHUTDOWN
        return Reason.error(exc)

    @contextmanager
    def grace(self, ctx: Context, timeout: float = math.inf) -> Iterator[None]:
        """Shield cleanup code (``terminate``) from the cancellation that is ending ``ctx``.

        :meth:`kill` (and kernel shutdown past its timeout) still cancels it.
        """
        with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout) as scope:
            ctx._grace = scope
            if ctx._exit_reason is KILLED:
                scope.cancel()
            try:
                yield
            finally:
                ctx._grace = None

    def _on_exit(self, ctx: Context, reason: Reason) -> None:
        ctx._exited = True
        if ctx._send_cache is not None:
            ctx._send_cache = None
            self._send_cachers.discard(ctx)
        ctx._task = None  # breaks the task -> coroutine -> ctx cycle: a dead process is freed at once, not by the GC
        pid = ctx.pid
        if self._procs.get(pid.serial) is ctx:
            del self._procs[pid.serial]
        if ctx.name is not None and self._names.get(ctx.name) is ctx:
            del self._names[ctx.name]
        ctx.mailbox.close()
        router = self._router
        links, ctx._links = ctx._links, None
        if links:
            for other in links:
                if other.node == self.node:
                    target = self._lookup(other)
                    if target is not None:
                        if target._links:
                            target._links.discard(pid)
                        self._signal_exit(target, pid, reason)
                else:
                    self._forget_remote_link(pid, other)
                    if router is not None:
                        router.exit_remote(other, pid, reason)
        watchers, ctx._watchers = ctx._watchers, None
        if watchers:
            for ref, watcher in watchers.items():
                if watcher.node == self.node:
                    w = self._lookup(watcher)
                    if w is not None and w._monitors is not None and w._monitors.pop(ref, None) is not None:
                        w.mailbox.put_system(Down(ref, pid, reason))
                else:
                    _pop_nested(self._remote_watchers, watcher.node, ref)
                    if router is not None:
                        router.down_remote(watcher, ref, pid, reason)
        monitors, ctx._monitors = ctx._monitors, None
        if monitors:
            for ref, target in monitors.items():
                self._drop_monitor(ctx, ref, target)
        if ctx._scope is not None:
            self._tasks -= 1
            if self._tasks == 0 and self._all_gone is not None:
                self._all_gone.set()

    # ================================================================ lookup

    def _lookup(self, pid: PID) -> Context | None:
        ctx = self._procs.get(pid.serial)
        if ctx is not None and ctx.pid.incarnation == pid.incarnation and pid.node == self.node:
            return ctx
        return None

    def _check_name_free(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a registered name must be a non-empty string, not {name!r}")
        holder = self._names.get(name)
        if holder is not None:
            raise NameTaken(name, holder.pid)

    def _owner(self, ctx: Context | None, what: str) -> Context:
        if ctx is None:
            raise NotInProcess(f"{what} must be called from inside a process (or on a kernel.inbox())")
        if ctx._task is not current_task():
            raise NotInProcess(f"{what} must be called from the process's own task, not a helper task it started")
        return ctx

    def _caller(self) -> Context:
        ctx = _current.get()
        if ctx is None:
            raise NotInProcess("this operation needs a calling process (or use kernel.inbox())")
        return ctx

    def is_alive(self, pid: PID) -> bool:
        """True while the local process ``pid`` runs."""
        return self._lookup(pid) is not None

    def processes(self) -> list[PID]:
        """PIDs of the live local processes (temporary inboxes excluded)."""
        return [ctx.pid for ctx in self._procs.values() if ctx._scope is not None]

    def context(self, pid: PID) -> Context | None:
        """The Context of a live local process (for introspection and tests)."""
        return self._lookup(pid)

    def make_ref(self) -> Ref:
        """A fresh cluster-unique reference."""
        self._refs += 1
        return Ref(self.node, self.incarnation, self._refs)

    async def _tick(self) -> None:
        ticks = self._ticks
        if ticks:
            self._ticks = ticks - 1
        else:
            self._ticks = _TICKS
            await trio.lowlevel.checkpoint()

    # ================================================================ registry

    def register(self, name: str, pid: PID) -> None:
        """Register a live local process under ``name`` (NameTaken if someone holds it)."""
        self._check_name_free(name)
        ctx = self._lookup(pid) if type(pid) is PID else None
        if ctx is None:
            raise NoProc(pid, "only live local processes can be registered")
        if ctx.name is not None:
            raise EcoRuntimeError(f"{pid} is already registered as {ctx.name!r}")
        self._names[name] = ctx
        ctx.name = name

    def unregister(self, name: str) -> bool:
        """Remove ``name`` from the registry; False if it was not registered."""
        ctx = self._names.pop(name, None)
        if ctx is None:
            return False
        ctx.name = None
        return True

    def whereis(self, name: str) -> PID | None:
        ctx = self._names.get(name)
        return ctx.pid if ctx is not None else None

    def registered(self) -> dict[str, PID]:
        return {name: ctx.pid for name, ctx in self._names.items()}

    # ================================================================ sending

    def _resolve(self, dest: Dest) -> Context | None:
        """The local target of ``dest`` (None: a dead PID); NoProc for an unknown name."""
        if type(dest) is PID:
            return self._lookup(dest)
        if isinstance(dest, str):
            ctx = self._names.get(dest)
            if ctx is None:
                raise NoProc(dest)
            return ctx
        if isinstance(dest, tuple) and len(dest) == 2:
            return self._resolve(dest[1])
        raise TypeError(f"a destination is a PID, a registered name or (node, name), not {dest!r}")

    def _is_remote(self, dest: Dest) -> bool:
        if type(dest) is PID:
            return dest.node != self.node
        return type(dest) is tuple and dest[0] != self.node

    def _route(self, node: str) -> RemoteRouter:
        router = self._router
        if router is None:
            raise NotConnected(node)
        return router

    async def send(self, dest: Dest, msg: Any) -> None:
        """Send ``msg`` to a PID, a registered name or ``(node, name)``.

        Under the ``block`` policy this waits while the mailbox is full;
        ``reject`` raises :class:`MailboxFull`; ``drop_oldest`` makes room.
        """
        await self._send(_current.get(), dest, msg)

    async def _send(self, sender: Context | None, dest: Dest, msg: Any) -> None:
        t = type(dest)
        if (t is PID and dest.node != self.node) or (t is tuple and dest[0] != self.node):  # type: ignore[union-attr,index]
            # Remote: without waiting when the router can (the usual case), else its coroutine.
            try:
                entry = self._remote_senders.get(dest)
            except TypeError:  # unhashable: send_remote explains
                entry = None
            if entry is not None and entry[0] is type(msg) and entry[1](msg):
                return
            nowait = self._send_remote_nowait
            if nowait is not None and nowait(dest, msg):
                return
            node = dest.node if t is PID else dest[0]  # type: ignore[union-attr,index]
            await self._route(node).send_remote(dest, msg, sender=sender.pid if sender else None)  # type: ignore[arg-type]
            return
        ctx = self._resolve(dest)
        if ctx is None:
            await self._tick()
            return
        if type(msg) is CallReply:
            self._deliver_reply(ctx, msg)
            return
        mb = ctx.mailbox
        while not mb.offer(msg):
            if mb.overflow == "reject" or sender is ctx:  # waiting on our own mailbox would never end
                raise MailboxFull(dest, mb.capacity)
            await mb.wait_space()
            if mb.closed:
                return
        ticks = self._ticks
        if ticks:
            self._ticks = ticks - 1
        else:
            self._ticks = _TICKS
            await trio.lowlevel.checkpoint()

    def cast(self, dest: Dest, msg: Any) -> None:
        """Send without waiting, ever: a full ``block`` or ``reject`` mailbox raises MailboxFull."""
        self._cast(_current.get(), dest, msg)

    def _cast(self, sender: Context | None, dest: Dest, msg: Any) -> None:
        if self._is_remote(dest):
            node = dest.node if type(dest) is PID else dest[0]  # type: ignore[union-attr,index]
            self._route(node).cast_remote(dest, msg, sender=sender.pid if sender else None)  # type: ignore[arg-type]
            return
        ctx = self._resolve(dest)
        if ctx is None:
            return
        if type(msg) is CallReply:
            self._deliver_reply(ctx, msg)
        elif not ctx.mailbox.offer(msg):
            raise MailboxFull(dest, ctx.mailbox.capacity)

    def _deliver_reply(self, ctx: Context, msg: CallReply) -> None:
        # Late replies (the caller timed out or gave up) are dropped instead of piling up.
        if ctx._calls is not None and msg.ref in ctx._calls:
            ctx.mailbox.put_system(msg)

    # ================================================================ receiving

    async def receive(self, timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
        """Inside a process: the next message, or the first one satisfying ``match``.

        Messages that do not match stay queued in order.  Raises
        :class:`ReceiveTimeout` if nothing (matching) arrives within ``timeout``.
        """
        return await self._receive(_current.get(), timeout, match)

    async def _receive(self, ctx: Context | None, timeout: float | None, match: Callable[[Any], bool] | None) -> Any:
        if ctx is None or ctx._task is not current_task():
            ctx = self._owner(ctx, "receive")  # raises
        mb = ctx.mailbox
        items = mb._items
        if items:
            ticks = self._ticks
            if ticks:
                self._ticks = ticks - 1
            else:
                self._ticks = _TICKS
                await trio.lowlevel.checkpoint()
            if match is None and items:  # the hot path, without Mailbox.get's coroutine
                msg = items.popleft()
                if mb._senders:
                    mb._space_freed()
                return msg
        if timeout is None:
            return await mb.get(match)
        with trio.move_on_after(timeout):
            return await mb.get(match)
        raise ReceiveTimeout(timeout)

    async def receive_batch(self, max_items: int | None = None, timeout: float | None = None) -> list[Any]:
        """Inside a process: wait for at least one message, then take every queued one
        (at most ``max_items``), oldest first.  :class:`ReceiveTimeout` after ``timeout``."""
        return await self._receive_batch(_current.get(), max_items, timeout)

    async def _receive_batch(self, ctx: Context | None, max_items: int | None, timeout: float | None) -> list[Any]:
        if ctx is None or ctx._task is not current_task():
            ctx = self._owner(ctx, "receive_batch")  # raises
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1, not {max_items}")
        mb = ctx.mailbox
        if mb._items:
            ticks = self._ticks
            if ticks:
                self._ticks = ticks - 1
            else:
                self._ticks = _TICKS
                await trio.lowlevel.checkpoint()
        if not mb._items:
            if timeout is None:
                await mb.wait_nonempty()
            else:
                with trio.move_on_after(timeout):
                    await mb.wait_nonempty()
                if not mb._items:
                    raise ReceiveTimeout(timeout)
        return mb.take_batch(max_items)

    # ================================================================ calls

    async def call(self, dest: Dest, request: Any, timeout: float | None = 5.0) -> Any:
        """Send ``request`` to ``dest`` and wait for its reply.

        Raises :class:`CallTimeout` (naming the target and timeout),
        :class:`NoProc` if there is no such process, or :class:`CallFailed` if
        it exited (or its node was lost) before replying.  Works from
        processes, their helper tasks and non-process code alike.
        """
        return await self._call(_current.get(), dest, request, timeout)

    async def _call(self, ctx: Context | None, dest: Dest, request: Any, timeout: float | None) -> Any:
        temporary = ctx is None or ctx._task is not current_task()
        if temporary:
            ctx = self._open_inbox()
        assert ctx is not None
        try:
            ref = self._monitor(ctx, dest)
            calls = ctx._calls
            if calls is None:
                calls = ctx._calls = set()
            calls.add(ref)
            try:

                def is_answer(m: Any) -> bool:
                    return (type(m) is CallReply or type(m) is Down) and m.ref == ref

                with trio.move_on_after(math.inf if timeout is None else timeout):
                    try:
                        await self._send(ctx, dest, CallRequest(ref, ctx.pid, request))
                    except NoProc:
                        raise NoProc(dest) from None
                    answer = await ctx.mailbox.get(is_answer, self._lend_read)
                    if type(answer) is CallReply:
                        return answer.value
                    if answer.reason.kind == "noproc":
                        raise NoProc(dest)
                    raise CallFailed(dest, answer.reason)
                raise CallTimeout(dest, timeout)  # type: ignore[arg-type]
            finally:
                calls.discard(ref)
                self._demonitor(ctx, ref, True)
                ctx.mailbox.remove_where(lambda m: type(m) is CallReply and m.ref == ref)
        finally:
            if temporary:
                self._close_inbox(ctx)

    def reply(self, request: CallRequest, value: Any) -> None:
        """Answer a :class:`CallRequest` (from any task; never blocks)."""
        self._reply(_current.get(), request, value)

    def _reply(self, ctx: Context | None, request: CallRequest, value: Any) -> None:
        if type(request) is not CallRequest:
            raise TypeError(f"reply() answers a CallRequest, not {request!r}")
        msg = CallReply(request.ref, value)
        dest = request.sender
        if dest.node != self.node:
            self._route(dest.node).cast_remote(dest, msg, sender=ctx.pid if ctx else None)
            return
        target = self._lookup(dest)
        if target is not None:
            self._deliver_reply(target, msg)

    # ================================================================ inboxes

    def _open_inbox(self) -> Context:
        self._serial += 1
        pid = PID(self.node, self._serial, self.incarnation)
        ctx = Context(self, pid, Mailbox(self.mailbox_size, self.overflow), None)
        ctx._task = current_task()
        self._procs[pid.serial] = ctx
        return ctx

    def _close_inbox(self, ctx: Context) -> None:
        if not ctx._exited:
            self._on_exit(ctx, NORMAL)

    @contextmanager
    def inbox(self) -> Iterator[Context]:
        """A PID and mailbox for non-process code (tests, the node layer)::

            with kernel.inbox() as me:
                ref = me.monitor(pid)
                down = await me.receive()

        Only the task that opened it may receive from it.
        """
        ctx = self._open_inbox()
        try:
            yield ctx
        finally:
            self._close_inbox(ctx)

    # ================================================================ exit signals

    def exit(self, pid: PID, reason: Reason | str = SHUTDOWN) -> None:
        """Send an exit signal to ``pid`` from the calling process (or from the node itself).

        A process that traps exits gets an :class:`Exited` message; any other
        process ends with ``reason`` unless it is ``normal``.
        """
        self._exit(_current.get(), pid, Reason.coerce(reason))

    def _exit(self, sender: Context | None, pid: PID, reason: Reason) -> None:
        sender_pid = sender.pid if sender is not None else None
        if pid.node != self.node:
            self._route(pid.node).exit_remote(pid, sender_pid, reason)
            return
        target = self._lookup(pid)
        if target is not None:
            self._signal_exit(target, sender_pid, reason)

    def kill(self, pid: PID) -> None:
        """End a local process at once with reason ``killed`` (cannot be trapped; cancels terminate)."""
        target = self._lookup(pid)
        if target is not None:
            self._terminate(target, KILLED, brutal=True)

    def _signal_exit(self, target: Context, sender: PID | None, reason: Reason) -> None:
        if target._exited or target._exit_reason is not None:
            return
        if target.trap_exit or target._scope is None:
            target.mailbox.put_system(Exited(sender, reason))
        elif reason.kind != "normal":
            self._terminate(target, reason)

    def _terminate(self, ctx: Context, reason: Reason, brutal: bool = False) -> None:
        if ctx._exited:
            return
        if ctx._exit_reason is None or brutal:
            ctx._exit_reason = reason
        if ctx._scope is not None:
            ctx._scope.cancel()
        if brutal and ctx._grace is not None:
            ctx._grace.cancel()

    # ================================================================ links

    def link(self, pid: PID) -> None:
        """Link the calling process with ``pid`` (bidirectional exit propagation)."""
        self._link(self._caller(), pid)

    def _link(self, ctx: Context, pid: PID) -> None:
        if pid == ctx.pid:
            return
        if pid.node != self.node:
            if ctx._links is None:
                ctx._links = set()
            if pid in ctx._links:
                return
            if self._router is None:
                self._signal_exit(ctx, pid, NOCONNECTION)
                return
            ctx._links.add(pid)
            self._remote_links.setdefault(pid.node, set()).add((ctx.pid, pid))
            self._router.link_remote(ctx.pid, pid)
            return
        other = self._lookup(pid)
        if other is None or other._exit_reason is not None:
            self._signal_exit(ctx, pid, NOPROC)
            return
        if ctx._links is None:
            ctx._links = set()
        if other._links is None:
            other._links = set()
        ctx._links.add(pid)
        other._links.add(ctx.pid)

    def unlink(self, pid: PID) -> None:
        self._unlink(self._caller(), pid)

    def _unlink(self, ctx: Context, pid: PID) -> None:
        if ctx._links:
            ctx._links.discard(pid)
        if pid.node != self.node:
            if self._forget_remote_link(ctx.pid, pid) and self._router is not None:
                self._router.unlink_remote(ctx.pid, pid)
            return
        other = self._lookup(pid)
        if other is not None and other._links:
            other._links.discard(ctx.pid)

    def _forget_remote_link(self, local: PID, remote: PID) -> bool:
        links = self._remote_links.get(remote.node)
        if links is None or (local, remote) not in links:
            return False
        links.discard((local, remote))
        if not links:
            del self._remote_links[remote.node]
        return True

    # ================================================================ monitors

    def monitor(self, target: Dest) -> Ref:
        """Monitor ``target`` from the calling process; returns the ref its :class:`Down` will carry."""
        return self._monitor(self._caller(), target)

    def _monitor(self, ctx: Context, target: Dest) -> Ref:
        ref = self.make_ref()
        if self._is_remote(target):
            node = target.node if type(target) is PID else target[0]  # type: ignore[union-attr,index]
            if self._router is None:
                ctx.mailbox.put_system(Down(ref, target, NOCONNECTION))
                return ref
            if ctx._monitors is None:
                ctx._monitors = {}
            ctx._monitors[ref] = target
            self._remote_monitors.setdefault(node, {})[ref] = ctx
            self._router.monitor_remote(ctx.pid, target, ref)  # type: ignore[arg-type]
            return ref
        try:
            other = self._resolve(target)
        except NoProc:
            other = None
        if other is None or other._exited:
            ctx.mailbox.put_system(Down(ref, target, NOPROC))
            return ref
        if ctx._monitors is None:
            ctx._monitors = {}
        if other._watchers is None:
            other._watchers = {}
        ctx._monitors[ref] = other.pid
        other._watchers[ref] = ctx.pid
        return ref

    def demonitor(self, ref: Ref, flush: bool = False) -> None:
        """Stop a monitor of the calling process; ``flush`` drops an already queued Down."""
        self._demonitor(self._caller(), ref, flush)

    def _demonitor(self, ctx: Context, ref: Ref, flush: bool) -> None:
        target = ctx._monitors.pop(ref, None) if ctx._monitors else None
        if target is not None:
            self._drop_monitor(ctx, ref, target)
        if flush:
            ctx.mailbox.remove_where(lambda m: type(m) is Down and m.ref == ref)

    def _drop_monitor(self, ctx: Context, ref: Ref, target: Dest) -> None:
        if self._is_remote(target):
            node = target.node if type(target) is PID else target[0]  # type: ignore[union-attr,index]
            _pop_nested(self._remote_monitors, node, ref)
            if self._router is not None:
                self._router.demonitor_remote(ctx.pid, target, ref)  # type: ignore[arg-type]
            return
        other = self._lookup(target) if type(target) is PID else None
        if other is not None and other._watchers:
            other._watchers.pop(ref, None)

    # ================================================================ the node layer

    def set_router(self, router: RemoteRouter | None) -> None:
        """Install the node layer's :class:`RemoteRouter` (None: local only)."""
        self._router = router
        self._send_remote_nowait = getattr(router, "send_remote_nowait", None)
        senders = getattr(router, "remote_senders", None)
        self._remote_senders = senders if senders is not None else {}
        # Optional: ``lend_read(task, mailbox)``, called as a process parks in ``receive``:
        # the router may have a socket wake it directly (runtime/fd_lending.py).
        self._lend_read = getattr(router, "lend_read", None)

    def forget_remote_senders(self) -> None:
        """The router dropped or replaced entries of ``remote_senders``: processes stop using
        the ones they kept (``Context.send`` keeps its last destination's)."""
        cachers = self._send_cachers
        for ctx in cachers:
            ctx._send_cache = None
        cachers.clear()

    def node_down(self, node: str) -> None:
        """The connection to ``node`` is lost: fire every monitor and link that crosses to it.

        Monitors of its processes deliver ``Down(..., noconnection)``; links to
        them deliver exit signals with reason ``noconnection``; monitors its
        processes held on local ones are forgotten.
        """
        if node == self.node:
            raise ValueError("node_down() is for other nodes, not this kernel's own")
        for ref, watcher in self._remote_monitors.pop(node, {}).items():
            target = watcher._monitors.pop(ref, None) if watcher._monitors else None
            if target is not None and not watcher._exited:
                watcher.mailbox.put_system(Down(ref, target, NOCONNECTION))
        for local, remote in self._remote_links.pop(node, set()):
            ctx = self._lookup(local)
            if ctx is not None:
                if ctx._links:
                    ctx._links.discard(remote)
                self._signal_exit(ctx, remote, NOCONNECTION)
        for ref, target in self._remote_watchers.pop(node, {}).items():
            if target._watchers:
                target._watchers.pop(ref, None)

    def monitor_from_remote(self, watcher: PID, target: Dest, ref: Ref) -> None:
        """A process on another node monitors a local process (PID or name)."""
        try:
            ctx = self._resolve(target)
        except NoProc:
            ctx = None
        if ctx is None or ctx._exited:
            self._route(watcher.node).down_remote(watcher, ref, target, NOPROC)
            return
        if ctx._watchers is None:
            ctx._watchers = {}
        ctx._watchers[ref] = watcher
        self._remote_watchers.setdefault(watcher.node, {})[ref] = ctx

    def demonitor_from_remote(self, ref: Ref) -> None:
        """Cancel a remote monitor (the ref was made on the watcher's node)."""
        ctx = _pop_nested(self._remote_watchers, ref.node, ref)
        if ctx is not None and ctx._watchers:
            ctx._watchers.pop(ref, None)

    def down_from_remote(self, watcher: PID, ref: Ref, target: Dest, reason: Reason) -> None:
        """A remote process monitored by a local one exited."""
        node = target.node if type(target) is PID else target[0]  # type: ignore[union-attr,index]
        _pop_nested(self._remote_monitors, node, ref)
        ctx = self._lookup(watcher)
        if ctx is not None and ctx._monitors is not None and ctx._monitors.pop(ref, None) is not None:
            ctx.mailbox.put_system(Down(ref, target, reason))

    def link_from_remote(self, remote: PID, local: PID) -> None:
        """A remote process links to a local one (answers noproc if it is gone)."""
        ctx = self._lookup(local)
        if ctx is None or ctx._exit_reason is not None:
            self._route(remote.node).exit_remote(remote, local, NOPROC)
            return
        if ctx._links is None:
            ctx._links = set()
        ctx._links.add(remote)
        self._remote_links.setdefault(remote.node, set()).add((local, remote))

    def unlink_from_remote(self, remote: PID, local: PID) -> None:
        ctx = self._lookup(local)
        if ctx is not None and ctx._links:
            ctx._links.discard(remote)
        self._forget_remote_link(local, remote)

    def exit_from_remote(self, target: PID, sender: PID | None, reason: Reason) -> None:
        """An exit signal from another node (a linked process died, or an explicit exit)."""
        ctx = self._lookup(target)
        if ctx is None:
            return
        if sender is not None and ctx._links and sender in ctx._links:
            ctx._links.discard(sender)
            self._forget_remote_link(target, sender)
        self._signal_exit(ctx, sender, reason)
