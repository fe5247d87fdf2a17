"""The supervisor driver under trio: strategies, restart types, intensity, shutdown, dynamic children."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from eco.plan.models import Supervision
from eco.runtime import (
    KILLED,
    ChildSpec,
    Kernel,
    Reason,
    Supervisor,
    SupervisorError,
    Worker,
    delete_child,
    restart_child,
    start_child,
    start_supervisor,
    terminate_child,
    which_children,
)

INTENSITY = "shutdown: reached max restart intensity"


class Rec(Worker):
    """Records init/terminate in a shared log; "crash" raises, "stop" exits normally."""

    def __init__(self, name: str, log: list, linger: float = 0.0):
        self.name, self.log, self.linger = name, log, linger

    async def init(self, ctx):
        self.log.append(("init", self.name))

    async def handle(self, msg):
        if msg == "crash":
            raise RuntimeError(f"{self.name} crashed")
        if msg == "stop":
            self.ctx.exit()

    async def handle_call(self, request):
        return (self.name, request)

    async def terminate(self, reason):
        await trio.sleep(self.linger)
        self.log.append(("terminate", self.name, str(reason)))


def specs(log, restarts=("permanent",) * 3, **kw):
    return [ChildSpec(n, Rec, (n, log), restart=r, **kw) for n, r in zip("abc", restarts)]


async def pids(kernel, sup):
    await trio.testing.wait_all_tasks_blocked()
    return {c.id: c.pid for c in await which_children(kernel, sup)}


async def wait_down(kernel, pid):
    with kernel.inbox() as me:
        me.monitor(pid)
        return (await me.receive()).reason


@pytest.mark.parametrize(
    "strategy, changed",
    [("one_for_one", {"b"}), ("one_for_all", {"a", "b", "c"}), ("rest_for_one", {"b", "c"})],
)
async def test_strategies(strategy, changed):
    log: list = []
    async with Kernel("n1") as kernel:
        sup = await start_supervisor(kernel, specs(log), strategy=strategy)
        before = await pids(kernel, sup)
        assert log == [("init", "a"), ("init", "b"), ("init", "c")]  # started in order
        log.clear()
        await kernel.send(before["b"], "crash")
        after = await pids(kernel, sup)
        assert {k for k in before if before[k] != after[k]} == changed
        assert all(after.values()) and kernel.is_alive(sup)
        # Siblings were stopped in reverse start order before the restart.
        stopped = [e[1] for e in log if e[0] == "terminate" and e[2] == "shutdown"]
        assert stopped == [n for n in "cba" if n in changed and n != "b"]
        assert await kernel.call(after["b"], "ping") == ("b", "ping")


async def test_restart_types():
    log: list = []
    async with Kernel("n1") as kernel:
        sup = await start_supervisor(kernel, specs(log, ("permanent", "transient", "temporary")))
        first = await pids(kernel, sup)
        for child in "abc":
            await kernel.send(first[child], "stop")  # normal exits
        after_stop = await pids(kernel, sup)
        assert after_stop["a"] not in (None, first["a"])  # permanent: always restarted
        assert after_stop["b"] is None  # transient: a normal exit is final
        assert "c" not in after_stop  # temporary: never restarted, spec forgotten

        await restart_child(kernel, sup, "b")
        second = await pids(kernel, sup)
        await kernel.send(second["b"], "crash")
        third = await pids(kernel, sup)
        assert third["b"] not in (None, second["b"])  # transient: a crash is restarted


async def test_intensity_escalation(autojump_clock):
    log: list = []
    async with Kernel("n1") as kernel:
        sup = await start_supervisor(kernel, specs(log), max_restarts=2, within=10)
        with kernel.inbox() as me:
            me.monitor(sup)
            for _ in range(2):
                await kernel.send((await pids(kernel, sup))["a"], "crash")
                await trio.sleep(1)
            assert kernel.is_alive(sup)
            await kernel.send((await pids(kernel, sup))["b"], "crash")
            down = await me.receive()
        assert down.reason == INTENSITY
        assert kernel.processes() == []  # the children were stopped too
        assert [e[1] for e in log if e[0] == "terminate" and e[2] == "shutdown"] == ["c", "a"]


async def test_restarts_spread_over_time_do_not_escalate(autojump_clock):
    async with Kernel("n1") as kernel:
        sup = await start_supervisor(kernel, specs([]), max_restarts=1, within=5)
        for _ in range(4):
            await kernel.send((await pids(kernel, sup))["a"], "crash")
            await trio.sleep(6)
        assert kernel.is_alive(sup)


async def test_nested_trees_escalate_to_the_parent():
    log: list = []
    async with Kernel("n1") as kernel:
        inner = Supervisor([ChildSpec("w", Rec, ("w", log))], max_restarts=0)
        top = await start_supervisor(
            kernel,
            [ChildSpec("sibling", Rec, ("sibling", log)), ChildSpec("inner", inner, kind="supervisor")],
            max_restarts=1,
            within=60,
        )
        top_children = await pids(kernel, top)
        inner_pid = top_children["inner"]
        worker = (await pids(kernel, inner_pid))["w"]
        await kernel.send(worker, "crash")  # inner gives up at once; top restarts it
        again = await pids(kernel, top)
        assert again["inner"] != inner_pid and again["sibling"] == top_children["sibling"]
        new_worker = (await pids(kernel, again["inner"]))["w"]
        assert new_worker != worker

        with kernel.inbox() as me:
            me.monitor(top)
            await kernel.send(new_worker, "crash")  # second restart within 60 s: top gives up too
            assert (await me.receive()).reason == INTENSITY
        assert kernel.processes() == []


async def test_ordered_shutdown_with_graceful_timeout_then_kill(autojump_clock):
    log: list = []
    async with Kernel("n1") as kernel:
        children = [
            ChildSpec("a", Rec, ("a", log)),
            ChildSpec("b", Rec, ("b", log, 100.0), shutdown=2.0),  # terminate outlasts its timeout
            ChildSpec("c", Rec, ("c", log, 1.0), shutdown=2.0),  # slow but within its timeout
        ]
        sup = await start_supervisor(kernel, children)
        child_pids = await pids(kernel, sup)
        log.clear()
        with kernel.inbox() as me:
            for pid in child_pids.values():
                me.monitor(pid)
            # Monitor the supervisor before it is told to stop: it may be gone by the
            # time the last child's DOWN has been read.
            me.monitor(sup)
            start = trio.current_time()
            kernel.exit(sup, "shutdown")
            reasons = {}
            for _ in range(4):
                down = await me.receive()
                reasons[down.pid] = (down.reason, trio.current_time() - start)
        assert reasons.pop(sup)[0] == "shutdown"
        assert log == [("terminate", "c", "shutdown"), ("terminate", "a", "shutdown")]
        assert reasons[child_pids["c"]] == ("shutdown", pytest.approx(1.0))
        assert reasons[child_pids["b"]] == (KILLED, pytest.approx(3.0))  # 1 s for c, then b's 2 s
        assert reasons[child_pids["a"]][1] == pytest.approx(3.0)


async def test_dynamic_children():
    log: list = []
    async with Kernel("n1") as kernel:
        sup = await start_supervisor(kernel, [], name="dyn")
        pid = await start_child(kernel, "dyn", ChildSpec("x", Rec, ("x", log)))
        assert await kernel.call(pid, 1) == ("x", 1)
        with pytest.raises(SupervisorError, match="'x' already exists"):
            await start_child(kernel, sup, ChildSpec("x", Rec, ("x", log)))
        with pytest.raises(SupervisorError, match="running"):
            await delete_child(kernel, sup, "x")
        await terminate_child(kernel, sup, "x")
        assert log[-1] == ("terminate", "x", "shutdown")
        assert [(c.id, c.pid, c.kind, c.restart) for c in await which_children(kernel, sup)] == [
            ("x", None, "worker", "permanent")
        ]
        new = await restart_child(kernel, sup, "x")
        assert new != pid and kernel.is_alive(new)
        await terminate_child(kernel, sup, "x")
        await delete_child(kernel, sup, "x")
        assert await which_children(kernel, sup) == []
        with pytest.raises(SupervisorError, match="no child with id 'nope'"):
            await terminate_child(kernel, sup, "nope")

        # From inside a process, with the Context.
        async def manager(ctx):
            return await start_child(ctx, sup, ChildSpec("y", Rec, ("y", log), restart="temporary"))

        await wait_down(kernel, await kernel.spawn(manager))
        assert [c.id for c in await which_children(kernel, sup)] == ["y"]


async def test_kernel_shutdown_stops_trees_in_order():
    log: list = []
    async with Kernel("n1") as kernel:
        inner = Supervisor([ChildSpec("i1", Rec, ("i1", log)), ChildSpec("i2", Rec, ("i2", log))])
        await start_supervisor(
            kernel, [ChildSpec("a", Rec, ("a", log)), ChildSpec("in", inner, kind="supervisor"), ChildSpec("z", Rec, ("z", log))]
        )
        await trio.testing.wait_all_tasks_blocked()
        log.clear()
    assert [e[1] for e in log] == ["z", "i2", "i1", "a"]


async def test_unstartable_child_counts_as_a_crash():
    async with Kernel("n1") as kernel:
        sup = await start_supervisor(kernel, [ChildSpec("bad", 42)], max_restarts=3)
        assert await wait_down(kernel, sup) == INTENSITY


async def test_crashing_init_is_restarted_until_intensity():
    class BadInit(Worker):
        async def init(self, ctx):
            raise ValueError("cannot start")

    async with Kernel("n1") as kernel:
        sup = await start_supervisor(kernel, [ChildSpec("w", BadInit)], max_restarts=2)
        assert await wait_down(kernel, sup) == INTENSITY


async def test_from_plan():
    sup = Supervisor.from_plan(Supervision(strategy="rest_for_one", max_restarts=7, within=9.0))
    assert (sup.strategy, sup.max_restarts, sup.within) == ("rest_for_one", 7, 9.0)
    with pytest.raises(ValueError, match="strategy"):
        Supervisor(strategy="nope")
    assert isinstance(Reason.coerce(INTENSITY), Reason)
