"""The trio driver of :class:`~eco.runtime.supervisor_core.SupervisorCore`.

A :class:`Supervisor` is a spec you spawn (``await kernel.spawn(sup)``) or
nest as a child (``ChildSpec("sub", Supervisor(...), kind="supervisor")``).
The running supervisor traps exits, links to its children, feeds their exits
to the core with the current trio time, and carries out the effects:
starting children in order, stopping them one by one (exit signal
``shutdown``, wait up to the child's ``shutdown`` timeout, then kill), and
escalating by exiting itself.  An exit signal from its parent (or from the
node, as in ``kernel.exit(sup)``) stops all children in reverse start order
and ends the supervisor with that reason.

Dynamic children are managed with calls to the running supervisor:
:func:`start_child`, :func:`terminate_child`, :func:`restart_child`,
:func:`delete_child`, :func:`which_children`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .errors import SupervisorError
from .pid import PID
from .process import Context
from .signals import SHUTDOWN, CallRequest, Dest, Down, Exited, ProcessExit, Reason, Started
from .supervisor_core import ChildSpec, Effect, Escalate, StartChildren, StopChildren, SupervisorCore

if TYPE_CHECKING:
    from eco.plan.models import Supervision

    from .kernel import Kernel

__all__ = [
    "Supervisor",
    "ChildSpec",
    "ChildInfo",
    "start_supervisor",
    "start_child",
    "terminate_child",
    "restart_child",
    "delete_child",
    "which_children",
]


@dataclass(frozen=True)
class ChildInfo:
    """One row of :func:`which_children`; ``pid`` is None while the child is not running."""

    id: str
    pid: PID | None
    kind: str
    restart: str


class Supervisor:
    """A supervisor spec: children (started in order), strategy and restart intensity."""

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        within: float = 5.0,
    ) -> None:
        self.children = tuple(children)
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within = within
        self._new_core()  # validate now, not when the process starts

    @classmethod
    def from_plan(cls, supervision: Supervision, children: Iterable[ChildSpec] = ()) -> Supervisor:
        """Strategy and intensity from an ecosystem's ``supervision`` block in the plan."""
        return cls(
            children,
            strategy=supervision.strategy,
            max_restarts=supervision.max_restarts,
            within=supervision.within,
        )

    def __repr__(self) -> str:
        return f"Supervisor({len(self.children)} children, {self.strategy})"

    def _new_core(self) -> SupervisorCore:
        return SupervisorCore(
            self.children, strategy=self.strategy, max_restarts=self.max_restarts, within=self.within  # type: ignore[arg-type]
        )

    def as_process(self) -> Any:
        """The process entry point (used by ``Kernel.spawn``)."""
        return partial(_supervise, self)


async def _supervise(spec: Supervisor, ctx: Context) -> None:
    ctx.trap_exit = True
    await _Driver(ctx, spec._new_core()).run()


# Requests understood by a running supervisor (local calls only: specs hold Python objects).
@dataclass(frozen=True)
class _StartChild:
    spec: ChildSpec


@dataclass(frozen=True)
class _ChildOp:
    op: str  # terminate | restart | delete
    id: str


@dataclass(frozen=True)
class _WhichChildren:
    pass


class _Driver:
    def __init__(self, ctx: Context, core: SupervisorCore) -> None:
        self.ctx = ctx
        self.kernel: Kernel = ctx.kernel
        self.core = core
        self.pids: dict[str, PID] = {}
        self.ids: dict[PID, str] = {}
        self.timeouts: dict[str, float] = {}  # graceful stop timeout of each started child

    async def run(self) -> None:
        ctx = self.ctx
        await self.apply(self.core.start())
        self.kernel.notify_started(ctx)
        while True:
            msg = await ctx.receive()
            kind = type(msg)
            if kind is Exited:
                await self.on_exit_signal(msg)
            elif kind is CallRequest:
                await self.on_call(msg)
            # Anything else is not for a supervisor; dropping it keeps the mailbox clean.

    async def on_exit_signal(self, msg: Exited) -> None:
        child_id = self.ids.pop(msg.pid, None) if msg.pid is not None else None
        if child_id is not None:
            del self.pids[child_id]
            await self.apply(self.core.child_exited(child_id, msg.reason, trio.current_time()))
        elif msg.pid is not None and msg.pid == self.ctx.parent or msg.pid is None and msg.reason.kind != "normal":
            await self.apply(self.core.shutdown())
            raise ProcessExit(msg.reason)
        # Exits of former children (already replaced) and unrelated links are ignored.

    async def apply(self, effects: Sequence[Effect]) -> None:
        pending = list(effects)
        while pending:
            effect = pending.pop(0)
            if isinstance(effect, StopChildren):
                for child_id in effect.ids:
                    await self.stop(child_id)
            elif isinstance(effect, StartChildren):
                for i, child_id in enumerate(effect.ids):
                    failure = await self.start(child_id)
                    if failure is not None:
                        # Could not even spawn it: count it as a crash of that child.
                        more = self.core.child_exited(child_id, failure, trio.current_time())
                        pending[:0] = [StartChildren(effect.ids[i + 1 :]), *more]
                        break
            elif isinstance(effect, Escalate):
                raise ProcessExit(effect.reason)

    async def start(self, child_id: str) -> Reason | None:
        """Spawn a child and wait until its init is done (so children start strictly in order)."""
        spec = self.core.spec(child_id)
        try:
            pid = self.kernel._spawn(self.ctx, spec.start, spec.args, link=True, ack=True)
        except Exception as exc:
            self.ctx.log.error("cannot start child %r: %s", child_id, exc)
            return Reason.error(exc)

        def started_or_gone(m: Any) -> bool:
            return (type(m) is Started or type(m) is Exited) and m.pid == pid

        outcome = await self.ctx.mailbox.get(started_or_gone)
        if type(outcome) is Exited:
            return outcome.reason  # died during init: the caller treats it as a crash
        self.pids[child_id] = pid
        self.ids[pid] = child_id
        self.timeouts[child_id] = spec.shutdown_timeout
        return None

    async def stop(self, child_id: str) -> None:
        pid = self.pids.pop(child_id, None)
        if pid is None:
            return
        del self.ids[pid]
        ctx = self.ctx
        timeout = self.timeouts.pop(child_id, 5.0)  # the spec may already be gone (temporary child)
        ref = ctx.monitor(pid)

        def is_down(m: Any) -> bool:
            return type(m) is Down and m.ref == ref

        ctx.exit_signal(pid, SHUTDOWN)
        with trio.move_on_after(timeout):
            await ctx.mailbox.get(is_down)
            self._forget_exit_of(pid)
            return
        self.kernel.kill(pid)
        await ctx.mailbox.get(is_down)
        self._forget_exit_of(pid)

    def _forget_exit_of(self, pid: PID) -> None:
        self.ctx.mailbox.remove_where(lambda m: type(m) is Exited and m.pid == pid)

    async def on_call(self, call: CallRequest) -> None:
        request = call.request
        core = self.core
        try:
            if isinstance(request, _StartChild):
                await self.apply(core.add_child(request.spec))
                value: Any = self.pids.get(request.spec.id)
            elif isinstance(request, _ChildOp):
                if request.op == "terminate":
                    await self.apply(core.terminate_child(request.id))
                    value = None
                elif request.op == "restart":
                    await self.apply(core.restart_child(request.id))
                    value = self.pids.get(request.id)
                else:
                    await self.apply(core.delete_child(request.id))
                    value = None
            elif isinstance(request, _WhichChildren):
                value = [
                    ChildInfo(cid, self.pids.get(cid), core.spec(cid).kind, core.spec(cid).restart)
                    for cid in core.order
                ]
            else:
                value = SupervisorError(f"a supervisor does not understand {request!r}")
        except (SupervisorError, TypeError, ValueError) as exc:
            value = SupervisorError(str(exc))
        self.ctx.reply(call, value)


# ---------------------------------------------------------------- client API


async def start_supervisor(
    kernel: Kernel | Context, children: Iterable[ChildSpec] = (), *, name: str | None = None, **options: Any
) -> PID:
    """Spawn a :class:`Supervisor` (``options``: strategy, max_restarts, within)."""
    return await kernel.spawn(Supervisor(children, **options), name=name)


async def _ask(via: Kernel | Context, sup: Dest, request: Any, timeout: float | None) -> Any:
    value = await via.call(sup, request, timeout=timeout)
    if isinstance(value, SupervisorError):
        raise SupervisorError(str(value))
    return value


async def start_child(via: Kernel | Context, sup: Dest, spec: ChildSpec, timeout: float | None = 5.0) -> PID:
    """Add a dynamic child to a running supervisor and start it; returns its PID."""
    return await _ask(via, sup, _StartChild(spec), timeout)  # type: ignore[no-any-return]


async def terminate_child(via: Kernel | Context, sup: Dest, child_id: str, timeout: float | None = None) -> None:
    """Stop a child (graceful, then kill) and keep its spec."""
    await _ask(via, sup, _ChildOp("terminate", child_id), timeout)


async def restart_child(via: Kernel | Context, sup: Dest, child_id: str, timeout: float | None = 5.0) -> PID:
    """Start a terminated child again; returns its new PID."""
    return await _ask(via, sup, _ChildOp("restart", child_id), timeout)  # type: ignore[no-any-return]


async def delete_child(via: Kernel | Context, sup: Dest, child_id: str, timeout: float | None = 5.0) -> None:
    """Forget the spec of a terminated child."""
    await _ask(via, sup, _ChildOp("delete", child_id), timeout)


async def which_children(via: Kernel | Context, sup: Dest, timeout: float | None = 5.0) -> list[ChildInfo]:
    """The children in start order with their PIDs (None when not running)."""
    return await _ask(via, sup, _WhichChildren(), timeout)  # type: ignore[no-any-return]
