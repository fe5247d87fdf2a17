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
from functools import partial
from typing import Any, ClassVar

from .errors import ComponentLoadError, EcoRuntimeError
from .pid import PID, Ref
from .process import Context
from .signals import CallRequest, Down, Exited, ProcessExit, Reason

__all__ = ["Worker", "Coordinator", "Context", "WorkerStarted", "NodeDown", "JobProgress", "JobOutcome", "load_component"]


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

    async def _dispatch(self, msg: Any) -> None:
        await self.handle(msg)


async def _run_component(cls: type[Worker], args: tuple[Any, ...], ctx: Context) -> None:
    component = cls(*args)
    component.ctx = ctx
    component._prepare()
    ctx.trap_exit = cls.trap_exit
    await component.init(ctx)
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
    except BaseException as exc:
        unwinding = exc
        raise
    finally:
        reason = kernel.exit_reason_for(ctx, unwinding)
        with kernel.grace(ctx):
            await component.terminate(reason)


class WorkerStarted:
    """Tells a coordinator that a worker runs (sent by whoever starts the workers)."""

    __slots__ = ("pid",)

    def __init__(self, pid: PID) -> None:
        self.pid = pid

    def __repr__(self) -> str:
        return f"WorkerStarted({self.pid})"

    def to_msgpack(self) -> list[Any]:
        return self.pid.to_msgpack()

    @classmethod
    def from_msgpack(cls, data: Any) -> WorkerStarted:
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


class Coordinator(Worker):
    """A worker that hands out work to a set of workers and hears about their fate.

    ``self.workers`` lists live workers in the order they started.  A
    :class:`WorkerStarted` message adds one (and monitors it), a worker's
    exit removes it and calls ``worker_down`` (reason ``noconnection`` when
    its node is lost), a :class:`NodeDown` message calls ``node_down``.
    ``assign`` hands a piece of work to the next worker round-robin.
    """

    workers: list[PID]

    def _prepare(self) -> None:
        # Here rather than in __init__, so subclasses need not call super().__init__().
        self.workers = []
        self._worker_refs: dict[Ref, PID] = {}
        self._next = 0

    async def worker_started(self, pid: PID) -> None:
        """A worker joined ``self.workers``."""

    async def worker_down(self, pid: PID, reason: Reason) -> None:
        """A worker left ``self.workers`` (it exited, or its node was lost)."""

    async def node_down(self, node: str) -> None:
        """A node of the cluster was lost (its workers also get ``worker_down``)."""

    async def assign(self, work: Any) -> PID:
        """Send ``work`` to the next worker (round-robin) and return its PID (EcoRuntimeError if none)."""
        if not self.workers:
            raise EcoRuntimeError(f"{type(self).__name__} has no live workers to assign work to")
        self._next %= len(self.workers)
        pid = self.workers[self._next]
        self._next += 1
        await self.ctx.send(pid, work)
        return pid

    async def broadcast(self, msg: Any) -> None:
        """Send ``msg`` to every live worker."""
        for pid in list(self.workers):
            await self.ctx.send(pid, msg)

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

    async def _dispatch(self, msg: Any) -> None:
        kind = type(msg)
        if kind is WorkerStarted:
            if msg.pid not in self.workers:
                self.workers.append(msg.pid)
                self._worker_refs[self.ctx.monitor(msg.pid)] = msg.pid
                await self.worker_started(msg.pid)
        elif kind is Down and msg.ref in self._worker_refs:
            pid = self._worker_refs.pop(msg.ref)
            if pid in self.workers:
                self.workers.remove(pid)
            await self.worker_down(pid, msg.reason)
        elif kind is NodeDown:
            await self.node_down(msg.node)
        else:
            await self.handle(msg)


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
