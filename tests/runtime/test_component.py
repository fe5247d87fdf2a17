"""Worker and Coordinator: hooks, calls, typed payloads, worker tracking, component loading."""

from __future__ import annotations

import sys
import types

import pytest
import trio
import trio.testing

from eco.runtime import (
    NOCONNECTION,
    PID,
    CallFailed,
    ComponentLoadError,
    Coordinator,
    Kernel,
    NodeDown,
    NoProc,
    Worker,
    WorkerStarted,
    load_component,
)


class Point:
    """Stands in for a generated message class."""

    def __init__(self, x: int, y: int):
        self.x, self.y = x, y

    def to_msgpack(self) -> list:
        return [self.x, self.y]


class Adder(Worker):
    def __init__(self, events: list):
        self.events = events
        self.total = 0

    async def init(self, ctx):
        self.events.append(("init", ctx.pid == self.ctx.pid, ctx.node))

    async def handle(self, msg):
        if isinstance(msg, Point):
            self.total += msg.x + msg.y
        elif msg == "stop":
            self.ctx.exit()
        elif msg == "crash":
            raise KeyError("missing")

    async def handle_call(self, request):
        if request == "total":
            return self.total
        raise ValueError(f"bad request {request!r}")

    async def terminate(self, reason):
        self.events.append(("terminate", str(reason)))


async def down_reason(kernel, pid):
    with kernel.inbox() as me:
        me.monitor(pid)
        return (await me.receive()).reason


async def test_worker_lifecycle_and_typed_messages():
    events: list = []
    async with Kernel("n1") as kernel:
        pid = await kernel.spawn(Adder, events)
        await kernel.send(pid, Point(1, 2))
        kernel.cast(pid, Point(3, 4))
        assert await kernel.call(pid, "total") == 10
        await kernel.send(pid, "stop")
        assert await down_reason(kernel, pid) == "normal"
        assert events == [("init", True, "n1"), ("terminate", "normal")]

        events.clear()
        pid = await kernel.spawn(Adder, events)
        await kernel.send(pid, "crash")
        assert await down_reason(kernel, pid) == "error: KeyError: 'missing'"
        assert events[-1] == ("terminate", "error: KeyError: 'missing'")

        events.clear()
        pid = await kernel.spawn(Adder, events)
        with pytest.raises(CallFailed, match="ValueError: bad request 'nope'"):
            await kernel.call(pid, "nope")
        assert events[-1] == ("terminate", "error: ValueError: bad request 'nope'")


async def test_worker_stopped_by_exit_signal_runs_terminate():
    events: list = []
    async with Kernel("n1") as kernel:
        pid = await kernel.spawn(Adder, events)
        await trio.testing.wait_all_tasks_blocked()
        kernel.exit(pid, "shutdown")
        assert await down_reason(kernel, pid) == "shutdown"
        assert events[-1] == ("terminate", "shutdown")


async def test_default_handle_call_crashes_with_a_clear_message():
    async with Kernel("n1") as kernel:
        pid = await kernel.spawn(Worker)
        with pytest.raises(CallFailed, match="Worker does not handle calls"):
            await kernel.call(pid, 1)


async def test_trapping_worker_gets_exits_in_handle_and_obeys_parent():
    got: list = []

    class Trapper(Worker):
        trap_exit = True

        async def handle(self, msg):
            got.append(msg)

    async with Kernel("n1") as kernel:

        async def parent(ctx):
            child = await ctx.spawn(Trapper, link=True)
            buddy = await ctx.spawn(Worker)
            await trio.testing.wait_all_tasks_blocked()  # link the child to a buddy that then crashes
            kernel._link(kernel.context(child), buddy)
            kernel.exit(buddy, "error: boom")
            await trio.testing.wait_all_tasks_blocked()
            got.append(kernel.is_alive(child))
            ctx.exit("shutdown")  # the parent going away stops the trapping child too

        p = await kernel.spawn(parent)
        await down_reason(kernel, p)
        await trio.testing.wait_all_tasks_blocked()
        assert got[0].reason == "error: boom" and got[1] is True
        assert kernel.processes() == []


class Farm(Coordinator):
    def __init__(self, events: list):
        self.events = events

    async def worker_started(self, pid):
        self.events.append(("started", pid))

    async def worker_down(self, pid, reason):
        self.events.append(("down", pid, str(reason)))

    async def node_down(self, node):
        self.events.append(("node_down", node))

    async def handle_call(self, request):
        if request == "workers":
            return list(self.workers)
        return await self.assign(request)


class Sink(Worker):
    def __init__(self, seen: list):
        self.seen = seen

    async def handle(self, msg):
        self.seen.append((self.ctx.pid, msg))


async def test_coordinator_tracks_workers_and_hands_out_work():
    events: list = []
    seen: list = []
    async with Kernel("n1") as kernel:
        coord = await kernel.spawn(Farm, events)
        with pytest.raises(CallFailed, match="no live workers"):
            await kernel.call(coord, "job-0")
        coord = await kernel.spawn(Farm, events)
        workers = [await kernel.spawn(Sink, seen) for _ in range(3)]
        for w in workers:
            await kernel.send(coord, WorkerStarted(w))
        await kernel.send(coord, WorkerStarted(workers[0]))  # duplicate: ignored
        assert await kernel.call(coord, "workers") == workers
        assigned = [await kernel.call(coord, f"job-{i}") for i in range(6)]
        assert assigned == workers * 2
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(seen, key=lambda s: s[1]) == [(workers[i % 3], f"job-{i}") for i in range(6)]

        kernel.kill(workers[1])
        await down_reason(kernel, workers[1])
        await kernel.send(coord, NodeDown("n9"))
        assert await kernel.call(coord, "workers") == [workers[0], workers[2]]
        assert ("down", workers[1], "killed") in events and ("node_down", "n9") in events
        assert events[:3] == [("started", w) for w in workers]


async def test_coordinator_learns_remote_worker_lost_with_node():
    class Router:
        async def send_remote(self, dest, msg, *, sender): ...
        def cast_remote(self, dest, msg, *, sender): ...
        def monitor_remote(self, watcher, target, ref): ...
        def demonitor_remote(self, watcher, target, ref): ...
        def link_remote(self, local, remote): ...
        def unlink_remote(self, local, remote): ...
        def exit_remote(self, target, sender, reason): ...
        def down_remote(self, watcher, ref, target, reason): ...

    events: list = []
    remote = PID("n2", 3, 1)
    async with Kernel("n1") as kernel:
        kernel.set_router(Router())
        coord = await kernel.spawn(Farm, events)
        await kernel.send(coord, WorkerStarted(remote))
        assert await kernel.call(coord, "workers") == [remote]
        kernel.node_down("n2")
        assert await kernel.call(coord, "workers") == []
        assert ("down", remote, str(NOCONNECTION)) in events


def test_messages_round_trip():
    pid = PID("n1", 1, 1)
    assert WorkerStarted.from_msgpack(WorkerStarted(pid).to_msgpack()).pid == pid
    assert NodeDown.from_msgpack(NodeDown("n2").to_msgpack()).node == "n2"
    with pytest.raises(ValueError):
        NodeDown.from_msgpack(3)


def test_load_component(monkeypatch):
    module = types.ModuleType("eco_test_components")
    module.Adder = Adder
    module.NotAWorker = Point

    class Box:
        Inner = Farm

    module.Box = Box
    monkeypatch.setitem(sys.modules, "eco_test_components", module)
    assert load_component("eco_test_components:Adder") is Adder
    assert load_component("eco_test_components:Box.Inner", Coordinator) is Farm
    with pytest.raises(ComponentLoadError, match="expected 'module:Class'"):
        load_component("eco_test_components.Adder")
    with pytest.raises(ComponentLoadError, match="cannot import module 'no_such_mod_xyz'"):
        load_component("no_such_mod_xyz:W")
    with pytest.raises(ComponentLoadError, match="has no attribute 'Missing'"):
        load_component("eco_test_components:Missing")
    with pytest.raises(ComponentLoadError, match="not a subclass"):
        load_component("eco_test_components:NotAWorker")
    with pytest.raises(ComponentLoadError, match="not a subclass of eco.runtime.component.Coordinator"):
        load_component("eco_test_components:Adder", Coordinator)
    assert issubclass(NoProc, Exception)
