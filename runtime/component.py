"""User-facing base classes: :class:`Worker` and :class:`Coordinator`.

The ``module:Class`` names in an ``.eco`` ecosystem point at subclasses of
these.  A running component is a process whose loop receives one message at a
time and dispatches it:

* a :class:`~eco.runtime.signals.CallRequest` goes to ``handle_call`` and
  its return value is the reply;
* anything else (any msgpack-able value or generated message instance, plus
  ``Down``/``Exited`` system messages) goes to ``handle``.

``init(ctx)`` runs first (``self.ctx`` is already set); ``terminate(reason)``
runs last whenever ``init`` succeeded: on a normal stop (``self.ctx.exit()``),
on a crash, and when a supervisor or a link stops the process (it is then
shielded from that cancellation until the supervisor's shutdown timeout
passes).  Keep it short.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Hashable
from functools import partial
from typing import Any, ClassVar

import trio

from .consensus import Fenced, TermWork
from .errors import ComponentLoadError, EcoRuntimeError
from .pid import PID, Ref
from .process import Context
from .signals import CallRequest, Down, Exited, ProcessExit, Reason

__all__ = ["Worker", "Coordinator", "Context", "WorkerStarted", "NodeDown", "JobProgress", "JobOutcome", "FENCED", "load_component"]


class Worker:
    """Base class of workers; override the ``async`` hooks you need.

    Subclasses are spawned by class (``await kernel.spawn(MyWorker, *args)``);
    ``args`` go to the constructor.  Set ``trap_exit = True`` to receive exit
    signals from linked processes as ``Exited`` messages in ``handle``.
    """

    trap_exit: ClassVar[bool] = False
    ctx: Context

    async def init(self, ctx: Context) -> None:
        """Called once before the first message."""

    async def handle(self, msg: Any) -> None:
        """A message arrived (sent with ``send``/``cast``, or a system message)."""
        self.ctx.log.debug("%s ignored message %r", type(self).__name__, msg)

    async def handle_call(self, request: Any) -> Any:
        """A ``call`` arrived; return the reply. Raising crashes the process (the caller gets CallFailed)."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls (define handle_call)")

    async def terminate(self, reason: Reason) -> None:
        """The process is ending with ``reason``; release resources here."""

    @classmethod
    def as_process(cls, *args: Any) -> Any:
        """The process entry point (used by ``Kernel.spawn``)."""
        return partial(_run_component, cls, args)

    def _prepare(self) -> None:
        pass

    async def _setup(self) -> None:
        """Runtime work before ``init`` (a coordinator restores its checkpoint here)."""

    async def _dispatch(self, msg: Any) -> None:
        if type(msg) is TermWork:
            # Work from a `leader: consensus` coordinator: drop it if a newer coordinator's term was seen.
            term = msg.term
            if term < getattr(self, "_term_seen", 0):
                self.ctx.log.info("dropping work of stale coordinator term %d (seen %d)", term, self._term_seen)
                return
            self._term_seen = term
            msg = msg.work
        await self.handle(msg)


async def _run_component(cls: type[Worker], args: tuple[Any, ...], ctx: Context,
                         attrs: dict[str, Any] | None = None) -> None:
    component = cls(*args)
    component.ctx = ctx
    if attrs:
        component.__dict__.update(attrs)  # runtime-provided attributes (a coordinator's term and state)
    component._prepare()
    ctx.trap_exit = cls.trap_exit
    try:
        await component._setup()
        await component.init(ctx)
    except Fenced as exc:
        raise ProcessExit(_deposed(exc)) from None
    kernel = ctx.kernel
    kernel.notify_started(ctx)
    unwinding: BaseException | None = None
    try:
        receive = ctx.receive
        parent = ctx.parent
        while True:
            msg = await receive()
            kind = type(msg)
            if kind is CallRequest:
                ctx.reply(msg, await component.handle_call(msg.request))
            elif kind is Exited and (msg.pid is None or msg.pid == parent) and msg.reason.kind != "normal":
                raise ProcessExit(msg.reason)  # a trapping component still obeys its parent
            else:
                await component._dispatch(msg)
    except Fenced as exc:
        # A coordinator whose term no longer leads stops quietly: expected under `leader: consensus`.
        unwinding = ProcessExit(_deposed(exc))
        raise unwinding from None
    except BaseException as exc:
        unwinding = exc
        raise
    finally:
        reason = kernel.exit_reason_for(ctx, unwinding)
        with kernel.grace(ctx):
            await component.terminate(reason)


def _deposed(exc: Fenced) -> Reason:
    return Reason("shutdown", f"deposed: {exc}")


class WorkerStarted:
    """Tells a coordinator that a worker runs (sent by whoever starts the workers).

    ``index`` and ``generation`` (both optional) say which worker slot of the
    ecosystem this is and which placement of that slot: the ecosystem host
    raises a slot's generation each time it re-spawns the slot elsewhere after
    a node loss, so a coordinator can tell a fenced (stale) worker from the
    current one.
    """

    __slots__ = ("pid", "index", "generation")

    def __init__(self, pid: PID, index: int | None = None, generation: int | None = None) -> None:
        self.pid = pid
        self.index = index
        self.generation = generation

    def __repr__(self) -> str:
        if self.index is None:
            return f"WorkerStarted({self.pid})"
        return f"WorkerStarted({self.pid}, index={self.index}, generation={self.generation})"

    def to_msgpack(self) -> list[Any]:
        data = self.pid.to_msgpack()
        if self.index is not None:
            data = [*data, self.index, self.generation or 0]
        return data

    @classmethod
    def from_msgpack(cls, data: Any) -> WorkerStarted:
        if isinstance(data, (list, tuple)) and len(data) == 5:
            index, generation = data[3], data[4]
            if type(index) is not int or type(generation) is not int:
                raise ValueError(f"not a WorkerStarted message: {data!r}")
            return cls(PID.from_msgpack(data[:3]), index, generation)
        return cls(PID.from_msgpack(data))


class NodeDown:
    """Tells a coordinator that a cluster node was lost (sent by the node layer)."""

    __slots__ = ("node",)

    def __init__(self, node: str) -> None:
        self.node = node

    def __repr__(self) -> str:
        return f"NodeDown({self.node!r})"

    def to_msgpack(self) -> str:
        return self.node

    @classmethod
    def from_msgpack(cls, data: Any) -> NodeDown:
        if not isinstance(data, str):
            raise ValueError(f"not a NodeDown message: {data!r}")
        return cls(data)


class JobProgress:
    """A coordinator's progress report (see :meth:`Coordinator.progress`)."""

    __slots__ = ("done", "total", "unit")

    def __init__(self, done: int, total: int | None = None, unit: str = "items") -> None:
        self.done, self.total, self.unit = done, total, unit

    def __repr__(self) -> str:
        return f"JobProgress({self.done}, {self.total}, {self.unit!r})"


class JobOutcome:
    """A coordinator finished its job: ``ok`` with ``value`` as the result, or failed with ``value`` as the reason."""

    __slots__ = ("ok", "value")

    def __init__(self, ok: bool, value: Any) -> None:
        self.ok, self.value = ok, value

    def __repr__(self) -> str:
        return f"JobOutcome({self.ok}, {self.value!r})"


FENCED = Reason("shutdown", "fenced: a newer generation of this worker runs")
"""The reason ``worker_down`` gets for a worker replaced by a newer generation of its slot."""


class Coordinator(Worker):
    """A worker that hands out work to a set of workers and hears about their fate.

    ``self.workers`` lists live workers in the order they started.  A
    :class:`WorkerStarted` message adds one (and monitors it), a worker's
    exit removes it and calls ``worker_down`` (reason ``noconnection`` when
    its node is lost), a :class:`NodeDown` message calls ``node_down``.

    Work handed out with a ``key`` is tracked until acknowledged
    (at-least-once delivery, generically): when a worker goes down, every
    item it had not acknowledged goes back to the front of the queue and is
    handed to the other workers, so nothing is lost; a result that arrives
    late from a worker that was given up on is refused by ``acknowledge``.

    * ``assign(work, key=...)`` sends at once to the next worker (round-robin);
    * ``submit(work, key=...)`` queues the item; it is sent as soon as a worker
      has fewer than ``in_flight_limit`` unacknowledged items (class
      attribute; None: no limit, i.e. at once);
    * ``acknowledge(key, worker)`` in ``handle`` when the item's reply comes:
      True the first time (merge the result), False for a duplicate or a late
      reply from a lost or fenced worker (ignore it).

    Workers started with a slot ``index`` and ``generation`` (as the node
    runtime does) are fenced by generation: a worker of an older generation
    of a slot than one already seen is never used, and a newer one replaces
    the older (which is treated as down with reason :data:`FENCED`).
    """

    workers: list[PID]
    in_flight_limit: ClassVar[int | None] = None
    term: int | None = None
    """The Raft term this coordinator is active in (``leader: consensus``), else None."""
    state: Any
    """Consensus-backed state (:class:`~eco.runtime.coordinator_state.ReplicatedState`) under ``leader: consensus``."""

    @classmethod
    def with_runtime(cls, attrs: dict[str, Any], *args: Any) -> Any:
        """The process entry point with runtime attributes (``term``, ``state``, ``checkpointer``) set before ``init``."""
        return partial(_run_component, cls, args, attrs=attrs)

    def snapshot_state(self) -> bytes | None:
        """Bytes to checkpoint (``checkpoint every T to URL``), besides the replicated state; None: nothing.

        May be ``async``. Override together with :meth:`restore_state`.
        """
        return None

    def restore_state(self, blob: bytes) -> None:
        """Called before ``init`` with the newest checkpoint's :meth:`snapshot_state` bytes. May be ``async``."""

    async def _setup(self) -> None:
        from .coordinator_state import restore_coordinator

        self._last_checkpoint = trio.current_time()
        checkpointer = self.__dict__.get("checkpointer")
        if checkpointer is not None:
            version = await restore_coordinator(self, checkpointer)
            if version is not None:
                self.ctx.log.info("restored checkpoint version %d", version)

    async def checkpoint(self) -> int | None:
        """Write a checkpoint now (the runtime also does every ``checkpoint every T``); returns its version."""
        from .coordinator_state import snapshot_coordinator

        checkpointer = self.__dict__.get("checkpointer")
        if checkpointer is None:
            return None
        self._last_checkpoint = trio.current_time()
        kv, app = await snapshot_coordinator(self)
        return await checkpointer.save(kv, app, {"term": self.term or 0, "node": self.ctx.node})

    async def _maybe_checkpoint(self) -> None:
        checkpointer = self.__dict__.get("checkpointer")
        if checkpointer is not None and trio.current_time() - self._last_checkpoint >= checkpointer.every:
            await self.checkpoint()

    def _prepare(self) -> None:
        # Here rather than in __init__, so subclasses need not call super().__init__().
        if "state" not in self.__dict__:
            from .coordinator_state import NoState

            self.state = NoState()
        self.workers = []
        self._worker_refs: dict[Ref, PID] = {}
        self._next = 0
        self._unacked: dict[PID, dict[Hashable, Any]] = {}  # worker -> {key: work}, in hand-out order
        self._holder: dict[Hashable, PID] = {}  # key -> worker holding it
        self._backlog: deque[tuple[Hashable, Any]] = deque()
        self._slot_of: dict[PID, int] = {}
        self._generation: dict[int, int] = {}  # slot index -> newest generation seen
        self._given_up: set[PID] = set()  # workers that went down or were fenced: their replies are refused

    async def worker_started(self, pid: PID) -> None:
        """A worker joined ``self.workers``."""

    async def worker_down(self, pid: PID, reason: Reason) -> None:
        """A worker left ``self.workers`` (it exited, its node was lost, or it was fenced).

        Its unacknowledged items are already back in the queue; they are handed
        out again right after this hook returns.
        """

    async def node_down(self, node: str) -> None:
        """A node of the cluster was lost (its workers also get ``worker_down``)."""

    # ------------------------------------------------------------ handing out work

    async def assign(self, work: Any, *, key: Hashable | None = None, to: PID | None = None) -> PID:
        """Send ``work`` to ``to`` or the next worker (round-robin) and return its PID (EcoRuntimeError if none).

        With a ``key`` the item is tracked until acknowledged (see the class docstring).
        """
        if to is None:
            if not self.workers:
                raise EcoRuntimeError(f"{type(self).__name__} has no live workers to assign work to")
            self._next %= len(self.workers)
            to = self.workers[self._next]
            self._next += 1
        if key is not None:
            if key in self._holder:
                raise ValueError(f"work key {key!r} is already handed out and not acknowledged")
            self._unacked.setdefault(to, {})[key] = work
            self._holder[key] = to
        await self.ctx.send(to, work if self.term is None else TermWork(self.term, work))
        return to

    async def submit(self, work: Any, *, key: Hashable) -> None:
        """Queue ``work`` (tracked by ``key``); it goes out when a worker has room."""
        if key in self._holder:
            raise ValueError(f"work key {key!r} is already handed out and not acknowledged")
        self._backlog.append((key, work))
        await self._drain()

    def acknowledge(self, key: Hashable, worker: PID | None = None) -> bool:
        """The reply for ``key`` arrived (from ``worker``, if known): True if it was outstanding.

        False means: already acknowledged (a duplicate), or held by another
        worker than ``worker`` (a late reply from a worker that went down or
        was fenced, after the item was handed out again): ignore the reply.
        """
        holder = self._holder.get(key)
        if holder is None or (worker is not None and worker != holder):
            return False
        del self._holder[key]
        items = self._unacked.get(holder)
        if items is not None:
            items.pop(key, None)
        return True

    @property
    def outstanding(self) -> int:
        """Items handed out and not yet acknowledged."""
        return len(self._holder)

    @property
    def queued(self) -> int:
        """Items waiting for a worker with room (including re-queued ones)."""
        return len(self._backlog)

    def unacknowledged(self, worker: PID) -> list[Hashable]:
        """Keys ``worker`` holds, in the order they were handed to it."""
        return list(self._unacked.get(worker, ()))

    async def broadcast(self, msg: Any) -> None:
        """Send ``msg`` to every live worker."""
        for pid in list(self.workers):
            await self.ctx.send(pid, msg)

    async def _drain(self) -> None:
        """Hand queued items to workers with room, round-robin."""
        limit = self.in_flight_limit
        while self._backlog and self.workers:
            n = len(self.workers)
            for step in range(n):
                pid = self.workers[(self._next + step) % n]
                if limit is None or len(self._unacked.get(pid, ())) < limit:
                    self._next = (self._next + step + 1) % n
                    break
            else:
                return  # every worker is full
            key, work = self._backlog.popleft()
            await self.assign(work, key=key, to=pid)

    def _requeue(self, pid: PID) -> None:
        items = self._unacked.pop(pid, {})
        for key in items:
            if self._holder.get(key) == pid:
                del self._holder[key]
        # Back to the front, in the order they were handed out.
        self._backlog.extendleft(reversed(list(items.items())))

    async def _lose(self, pid: PID, reason: Reason) -> None:
        if pid in self.workers:
            self.workers.remove(pid)
        self._given_up.add(pid)
        self._slot_of.pop(pid, None)
        self._requeue(pid)
        await self.worker_down(pid, reason)
        await self._drain()

    # The job's outcome goes to the process that started the coordinator (the node's
    # ecosystem host under `ecoc run`/`ecoc node`); without one it is only logged.

    def progress(self, done: int, total: int | None = None, unit: str = "items") -> None:
        """Report progress (``done`` of ``total`` ``unit``); ``ecoc run`` shows it live."""
        self._tell_host(JobProgress(done, total, unit))

    def complete(self, result: Any = None) -> None:
        """Finish the job with ``result`` (plain data) and stop this coordinator normally."""
        self._tell_host(JobOutcome(True, result))
        self.ctx.exit()

    def fail(self, reason: str) -> None:
        """Finish the job as failed with ``reason`` (``ecoc run`` exits non-zero) and stop."""
        self._tell_host(JobOutcome(False, str(reason)))
        self.ctx.exit()

    def _tell_host(self, msg: Any) -> None:
        parent = self.ctx.parent
        if parent is None:
            self.ctx.log.info("%s: %r (no ecosystem host to report to)", type(self).__name__, msg)
            return
        self.ctx.cast(parent, msg)

    async def _worker_started(self, msg: WorkerStarted) -> None:
        pid = msg.pid
        if pid in self.workers or pid in self._given_up:
            return
        if msg.index is not None:
            generation = msg.generation or 0
            newest = self._generation.get(msg.index, -1)
            if generation < newest:
                self.ctx.log.info("ignoring worker %s: generation %d of slot %d is fenced (newest %d)",
                                  pid, generation, msg.index, newest)
                self._given_up.add(pid)
                return
            self._generation[msg.index] = generation
            for old, slot in list(self._slot_of.items()):
                if slot == msg.index and old != pid and generation > newest:
                    await self._lose(old, FENCED)  # an older generation of the same slot still runs somewhere
            self._slot_of[pid] = msg.index
        self.workers.append(pid)
        self._unacked.setdefault(pid, {})
        self._worker_refs[self.ctx.monitor(pid)] = pid
        await self.worker_started(pid)
        await self._drain()

    async def _dispatch(self, msg: Any) -> None:
        kind = type(msg)
        if kind is WorkerStarted:
            await self._worker_started(msg)
        elif kind is Down and msg.ref in self._worker_refs:
            pid = self._worker_refs.pop(msg.ref)
            if pid in self.workers:
                await self._lose(pid, msg.reason)
        elif kind is NodeDown:
            await self.node_down(msg.node)
        else:
            await self.handle(msg)
            if self._backlog:
                await self._drain()  # acknowledgements in handle may have made room
        await self._maybe_checkpoint()


def load_component(ref: str, base: type[Worker] = Worker) -> type[Worker]:
    """Import ``"package.module:Class"`` and check it subclasses ``base``.

    Raises :class:`ComponentLoadError` with a readable message otherwise.
    """
    module_name, sep, class_name = ref.partition(":")
    if not sep or not module_name or not class_name:
        raise ComponentLoadError(f"{ref!r} is not a component reference (expected 'module:Class')")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ComponentLoadError(f"cannot import module {module_name!r} for component {ref!r}: {exc}") from None
    except Exception as exc:  # the module itself failed while loading
        raise ComponentLoadError(
            f"module {module_name!r} raised {type(exc).__name__} while being imported: {exc}"
        ) from None
    obj: Any = module
    for part in class_name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ComponentLoadError(f"module {module_name!r} has no attribute {class_name!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise ComponentLoadError(f"{ref!r} is not a subclass of {base.__module__}.{base.__qualname__}")
    return obj
