"""Links, monitors, exit signals, and the remote hooks (node_down) with a fake router."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from eco.runtime import (
    KILLED,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    CallFailed,
    Down,
    Exited,
    Kernel,
    NotConnected,
    PID,
    Reason,
)


async def idle(ctx):
    while True:
        await ctx.receive()


async def crash_on_message(ctx):
    await ctx.receive()
    raise RuntimeError("kaboom")


async def watch(kernel: Kernel, *pids: PID) -> dict[PID, Reason]:
    """Wait until every pid is down; return their exit reasons."""
    with kernel.inbox() as me:
        refs = {me.monitor(p): p for p in pids}
        reasons = {}
        while len(reasons) < len(pids):
            down = await me.receive()
            reasons[refs[down.ref]] = down.reason
        return reasons


# ---------------------------------------------------------------- links


async def test_crash_propagates_along_links_but_normal_exit_does_not():
    async with Kernel("n1") as kernel:
        a = await kernel.spawn(crash_on_message)

        async def linked(ctx):
            ctx.link(a)
            await ctx.receive()

        b = await kernel.spawn(linked)
        c = await kernel.spawn(idle)
        await trio.testing.wait_all_tasks_blocked()
        assert b in kernel.context(a).links
        await kernel.send(a, "go")
        reasons = await watch(kernel, a, b)
        assert reasons[a] == reasons[b] == "error: RuntimeError: kaboom"
        assert kernel.is_alive(c)

        async def quitter(ctx):
            await ctx.receive()

        q = await kernel.spawn(quitter)

        async def linked_to_quitter(ctx):
            ctx.link(q)
            await ctx.receive()

        survivor = await kernel.spawn(linked_to_quitter)
        await trio.testing.wait_all_tasks_blocked()
        await kernel.send(q, "bye")
        assert (await watch(kernel, q))[q] == NORMAL
        await trio.testing.wait_all_tasks_blocked()
        assert kernel.is_alive(survivor)
        assert kernel.context(survivor).links == frozenset()


async def test_trap_exit_turns_signals_into_messages_and_spawn_link():
    async with Kernel("n1") as kernel:
        got = []

        async def trapper(ctx):
            ctx.trap_exit = True
            child = await ctx.spawn(crash_on_message, link=True)
            await ctx.send(child, "go")
            got.append(await ctx.receive())
            got.append(child)
            ctx.link(PID("n1", 10**6, kernel.incarnation))  # a process that never existed
            got.append(await ctx.receive())

        t = await kernel.spawn(trapper)
        assert (await watch(kernel, t))[t] == NORMAL
        exited, child, noproc = got
        assert exited == Exited(child, Reason("error", "kaboom", "RuntimeError"))
        assert noproc.reason == NOPROC


async def test_exit_signals_and_kill():
    async with Kernel("n1") as kernel:
        a = await kernel.spawn(idle)
        kernel.exit(a, "normal")  # ignored by a process that does not trap exits
        await trio.testing.wait_all_tasks_blocked()
        assert kernel.is_alive(a)
        kernel.exit(a, "error: custom")
        assert (await watch(kernel, a))[a] == "error: custom"

        async def trapping(ctx):
            ctx.trap_exit = True
            await trio.sleep_forever()

        b = await kernel.spawn(trapping)
        await trio.testing.wait_all_tasks_blocked()
        kernel.exit(b, "shutdown")  # trapped: only a message
        await trio.testing.wait_all_tasks_blocked()
        assert kernel.is_alive(b)
        assert kernel.context(b).mailbox.snapshot() == [Exited(None, Reason("shutdown"))]
        kernel.kill(b)  # cannot be trapped
        assert (await watch(kernel, b))[b] == KILLED


# ---------------------------------------------------------------- monitors


async def test_monitors():
    async with Kernel("n1") as kernel:
        with kernel.inbox() as me:
            a = await kernel.spawn(crash_on_message, name="a")
            ref = me.monitor(a)
            ref_by_name = me.monitor("a")
            await kernel.send(a, "go")
            downs = [await me.receive(), await me.receive()]
            assert {d.ref for d in downs} == {ref, ref_by_name}
            assert all(d.pid == a and d.reason == "error: RuntimeError: kaboom" for d in downs)

            # Monitoring the dead or the unknown delivers noproc at once.
            dead = me.monitor(a)
            assert await me.receive() == Down(dead, a, NOPROC)
            unknown = me.monitor("nobody")
            assert await me.receive() == Down(unknown, "nobody", NOPROC)

            # demonitor: no Down afterwards; flush removes one already queued.
            b = await kernel.spawn(idle)
            ref_b = me.monitor(b)
            me.demonitor(ref_b)
            c = await kernel.spawn(idle)
            ref_c = me.monitor(c)
            kernel.kill(b)
            kernel.kill(c)
            await trio.testing.wait_all_tasks_blocked()
            assert me.mailbox.snapshot() == [Down(ref_c, c, KILLED)]
            me.demonitor(ref_c, flush=True)
            assert len(me.mailbox) == 0
            assert not kernel.context(me.pid)._monitors  # nothing left behind


async def test_monitor_bookkeeping_is_released_when_watcher_dies():
    async with Kernel("n1") as kernel:
        target = await kernel.spawn(idle)

        async def watcher(ctx):
            ctx.monitor(target)

        await watch(kernel, await kernel.spawn(watcher))
        assert not kernel.context(target)._watchers


# ---------------------------------------------------------------- remote hooks


class FakeRouter:
    """Records what the kernel asks of the node layer."""

    def __init__(self):
        self.log: list[tuple] = []

    async def send_remote(self, dest, msg, *, sender):
        self.log.append(("send", dest, msg, sender))

    def cast_remote(self, dest, msg, *, sender):
        self.log.append(("cast", dest, msg, sender))

    def monitor_remote(self, watcher, target, ref):
        self.log.append(("monitor", watcher, target, ref))

    def demonitor_remote(self, watcher, target, ref):
        self.log.append(("demonitor", watcher, target, ref))

    def link_remote(self, local, remote):
        self.log.append(("link", local, remote))

    def unlink_remote(self, local, remote):
        self.log.append(("unlink", local, remote))

    def exit_remote(self, target, sender, reason):
        self.log.append(("exit", target, sender, reason))

    def down_remote(self, watcher, ref, target, reason):
        self.log.append(("down", watcher, ref, target, reason))

    def kinds(self):
        return [entry[0] for entry in self.log]


REMOTE = PID("n2", 7, 1)


async def test_node_down_fires_monitors_and_links_with_noconnection():
    router = FakeRouter()
    async with Kernel("n1") as kernel:
        kernel.set_router(router)
        with kernel.inbox() as me:
            ref = me.monitor(REMOTE)
            name_ref = me.monitor(("n2", "svc"))
            assert router.log[:2] == [("monitor", me.pid, REMOTE, ref), ("monitor", me.pid, ("n2", "svc"), name_ref)]

            async def linked(ctx):
                ctx.link(REMOTE)
                await ctx.receive()

            async def trapping(ctx):
                ctx.trap_exit = True
                ctx.link(REMOTE)
                await ctx.send(me.pid, ("trapped", await ctx.receive()))

            victim = await kernel.spawn(linked)
            trapper = await kernel.spawn(trapping)
            await trio.testing.wait_all_tasks_blocked()
            assert ("link", victim, REMOTE) in router.log
            kernel.node_down("n3")  # another node: nothing happens
            await trio.testing.wait_all_tasks_blocked()
            assert kernel.is_alive(victim) and len(me.mailbox) == 0

            me.monitor(victim)
            kernel.node_down("n2")
            got = [await me.receive() for _ in range(4)]
        by_kind = {type(m).__name__ if not isinstance(m, tuple) else m[0]: m for m in got}
        assert Down(ref, REMOTE, NOCONNECTION) in got
        assert Down(name_ref, ("n2", "svc"), NOCONNECTION) in got
        assert by_kind["trapped"] == ("trapped", Exited(REMOTE, NOCONNECTION))
        assert any(isinstance(m, Down) and m.pid == victim and m.reason == NOCONNECTION for m in got)
        assert kernel._remote_monitors == {} and kernel._remote_links == {}
        assert not kernel.is_alive(trapper)


async def test_remote_call_fails_with_noconnection_when_node_is_lost():
    router = FakeRouter()
    async with Kernel("n1") as kernel:
        kernel.set_router(router)
        errors = []

        async def caller(ctx):
            try:
                await ctx.call(REMOTE, "q", timeout=None)
            except CallFailed as exc:
                errors.append(exc)

        pid = await kernel.spawn(caller)
        await trio.testing.wait_all_tasks_blocked()
        kinds = router.kinds()
        assert kinds == ["monitor", "send"]
        request = router.log[1][2]
        assert request.sender == pid and request.request == "q"
        kernel.node_down("n2")
        await trio.testing.wait_all_tasks_blocked()
        assert errors and errors[0].reason == NOCONNECTION


async def test_requests_from_remote_nodes():
    router = FakeRouter()
    async with Kernel("n1") as kernel:
        kernel.set_router(router)
        local = await kernel.spawn(crash_on_message, name="svc")
        ref = kernel.make_ref()
        remote_ref = type(ref)("n2", 1, 1)
        kernel.monitor_from_remote(REMOTE, "svc", remote_ref)
        kernel.link_from_remote(REMOTE, local)
        kernel.monitor_from_remote(REMOTE, PID("n1", 999, 1), type(ref)("n2", 1, 2))
        assert router.log[-1] == ("down", REMOTE, type(ref)("n2", 1, 2), PID("n1", 999, 1), NOPROC)
        await kernel.send(local, "go")
        await watch(kernel, local)
        reason = Reason("error", "kaboom", "RuntimeError")
        assert ("exit", REMOTE, local, reason) in router.log
        assert ("down", REMOTE, remote_ref, local, reason) in router.log
        assert kernel._remote_watchers == {} and kernel._remote_links == {}

        # An exit signal from a linked remote process kills a local one.
        victim = await kernel.spawn(idle)
        kernel.link_from_remote(REMOTE, victim)
        kernel.exit_from_remote(victim, REMOTE, Reason("error", "remote crash"))
        assert (await watch(kernel, victim))[victim] == "error: remote crash"

        # A Down from the remote node reaches the local watcher once.
        with kernel.inbox() as me:
            r = me.monitor(REMOTE)
            kernel.down_from_remote(me.pid, r, REMOTE, NORMAL)
            kernel.down_from_remote(me.pid, r, REMOTE, NORMAL)  # duplicate: ignored
            assert await me.receive() == Down(r, REMOTE, NORMAL)
            assert len(me.mailbox) == 0
            # A remote demonitor request forgets the watcher.
            w = await kernel.spawn(idle)
            kernel.monitor_from_remote(REMOTE, w, type(ref)("n2", 1, 3))
            kernel.demonitor_from_remote(type(ref)("n2", 1, 3))
            assert not kernel.context(w)._watchers


async def test_remote_destinations_without_router():
    async with Kernel("n1") as kernel:
        with pytest.raises(NotConnected, match="'n2'"):
            await kernel.send(REMOTE, "x")
        with pytest.raises(NotConnected):
            kernel.cast(("n2", "svc"), "x")
        with kernel.inbox() as me:
            ref = me.monitor(REMOTE)
            assert await me.receive() == Down(ref, REMOTE, NOCONNECTION)
        with pytest.raises(ValueError):
            kernel.node_down("n1")


async def test_remote_send_and_reply_go_through_the_router():
    router = FakeRouter()
    async with Kernel("n1") as kernel:
        kernel.set_router(router)
        await kernel.send(REMOTE, "hello")
        kernel.cast(("n2", "svc"), "hi")
        assert router.log == [("send", REMOTE, "hello", None), ("cast", ("n2", "svc"), "hi", None)]
        from eco.runtime import CallRequest

        kernel.reply(CallRequest(type(kernel.make_ref())("n2", 1, 5), REMOTE, "q"), "answer")
        assert router.log[-1][0] == "cast" and router.log[-1][2].value == "answer"
