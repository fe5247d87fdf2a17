"""Kernel basics: PIDs, spawning, send/cast/call/receive, registry, overflow policies."""

from __future__ import annotations

import pickle

import pytest
import trio
import trio.testing

from eco.runtime import (
    NORMAL,
    CallFailed,
    CallReply,
    CallRequest,
    CallTimeout,
    Down,
    Kernel,
    MailboxFull,
    NameTaken,
    NoProc,
    NotInProcess,
    PID,
    Reason,
    ReceiveTimeout,
    Ref,
)


async def echo(ctx):
    """Replies to calls with ("echo", request); "crash" makes it raise."""
    while True:
        msg = await ctx.receive()
        if type(msg) is CallRequest:
            if msg.request == "crash":
                raise ValueError("asked to crash")
            ctx.reply(msg, ("echo", msg.request))


async def collector(ctx, out: list, n: int, done: trio.Event):
    for _ in range(n):
        out.append(await ctx.receive())
    done.set()


async def wait_down(kernel: Kernel, pid: PID) -> Down:
    with kernel.inbox() as me:
        me.monitor(pid)
        return await me.receive()


# ---------------------------------------------------------------- identifiers


def test_pid_forms():
    pid = PID("n1", 42, 3)
    assert str(pid) == "<n1.42.3>"
    assert PID.from_msgpack(pid.to_msgpack()) == pid
    assert PID.parse("<my.node.7.1>") == PID("my.node", 7, 1)
    assert hash(PID("n1", 42, 3)) == hash(pid)
    assert PID("n1", 42, 4) != pid  # another incarnation of the node
    assert pickle.loads(pickle.dumps(pid)) == pid
    with pytest.raises(AttributeError):
        pid.serial = 1  # type: ignore[misc]
    for bad in (["n1", "x", 1], ["n1", 1], "n1.1.1", None):
        with pytest.raises(ValueError):
            PID.from_msgpack(bad)
    with pytest.raises(ValueError, match="expected <node.serial.incarnation>"):
        PID.parse("n1.4")


def test_ref_and_reason_forms():
    ref = Ref("n1", 2, 9)
    assert Ref.from_msgpack(ref.to_msgpack()) == ref
    err = Reason.error(ValueError("bad input"))
    assert err == "error: ValueError: bad input"
    assert Reason.from_msgpack(err.to_msgpack()) == err
    assert Reason.coerce("shutdown: going home").kind == "shutdown"
    assert Reason.coerce("normal") is not None and Reason.coerce("normal").is_clean
    assert not err.is_clean
    assert Reason.error(ExceptionGroup("g", [KeyError("k")])).exc_type == "KeyError"
    with pytest.raises(ValueError):
        Reason.from_msgpack(["weird", "", None])


# ---------------------------------------------------------------- spawn, call


async def test_spawn_and_call_from_outside_and_inside():
    async with Kernel("n1", incarnation=5) as kernel:
        server = await kernel.spawn(echo)
        assert server.node == "n1" and server.incarnation == 5
        assert await kernel.call(server, 1) == ("echo", 1)

        results = []

        async def client(ctx):
            results.append(await ctx.call(server, "hi"))
            results.append(ctx.parent)

        done = await kernel.spawn(client)
        await wait_down(kernel, done)
        assert results == [("echo", "hi"), None]


async def test_call_timeout_names_target_and_drops_late_reply(autojump_clock):
    async with Kernel("n1") as kernel:
        held = []

        async def slow(ctx):
            held.append(await ctx.receive())  # never replies in time
            await trio.sleep(10)
            ctx.reply(held[0], "late")
            await ctx.receive()

        server = await kernel.spawn(slow)
        mailbox_after = []

        async def client(ctx):
            with pytest.raises(CallTimeout) as info:
                await ctx.call(server, "q", timeout=2.5)
            assert info.value.target == server
            assert str(server) in str(info.value) and "2.5s" in str(info.value)
            await trio.sleep(20)  # the late reply arrives meanwhile
            mailbox_after.extend(ctx.mailbox.snapshot())

        await wait_down(kernel, await kernel.spawn(client))
        assert mailbox_after == []  # the late reply was dropped, not queued
        assert isinstance(held[0], CallRequest)


async def test_call_dead_unknown_and_crashing_targets():
    async with Kernel("n1") as kernel:
        server = await kernel.spawn(echo)
        with pytest.raises(CallFailed) as info:
            await kernel.call(server, "crash")
        assert info.value.reason == "error: ValueError: asked to crash"
        with pytest.raises(NoProc):
            await kernel.call(server, "again")  # dead by now
        with pytest.raises(NoProc, match="registered name 'nobody'"):
            await kernel.call("nobody", 1)


async def test_reply_is_only_accepted_for_pending_calls():
    async with Kernel("n1") as kernel:
        with kernel.inbox() as me:
            kernel.cast(me.pid, CallReply(Ref("n1", 1, 999), "stray"))
            await kernel.send(me.pid, CallReply(Ref("n1", 1, 998), "stray"))
            assert len(me.mailbox) == 0


# ---------------------------------------------------------------- receive


async def test_selective_receive_keeps_order_of_the_rest(autojump_clock):
    async with Kernel("n1") as kernel:
        got = []

        async def proc(ctx):
            got.append(await ctx.receive(match=lambda m: m[0] == "b"))
            got.append(await ctx.receive(match=lambda m: m[0] == "late"))
            got.extend([await ctx.receive() for _ in range(3)])
            with pytest.raises(ReceiveTimeout, match="within 1s"):
                await ctx.receive(timeout=1)
            before = trio.current_time()
            with pytest.raises(ReceiveTimeout):
                await ctx.receive(timeout=3, match=lambda m: False)
            got.append(trio.current_time() - before)

        pid = await kernel.spawn(proc)
        for m in [("a", 1), ("c", 1), ("b", 1), ("a", 2)]:
            await kernel.send(pid, m)
        await trio.sleep(1)
        await kernel.send(pid, ("late", 0))
        await wait_down(kernel, pid)
        assert got == [("b", 1), ("late", 0), ("a", 1), ("c", 1), ("a", 2), pytest.approx(3)]


async def test_a_selective_receive_waiting_while_drop_oldest_makes_room_still_finds_its_message():
    # Plain receives before it do not count removals (only the owner takes messages); the
    # drops made while it waits must, or its next scan would start past the new message.
    async with Kernel("n1") as kernel:
        got = []
        waiting = trio.Event()

        async def proc(ctx):
            got.extend([await ctx.receive(), await ctx.receive()])
            waiting.set()
            got.append(await ctx.receive(match=lambda m: m[0] == "want"))
            got.extend(ctx.mailbox.snapshot())

        pid = await kernel.spawn(proc, mailbox_size=3, overflow="drop_oldest")
        for m in [("x", 1), ("x", 2)]:
            await kernel.send(pid, m)
        await waiting.wait()
        for m in [("n", 1), ("n", 2), ("n", 3)]:
            await kernel.send(pid, m)
        await trio.testing.wait_all_tasks_blocked()  # it scanned those three and waits
        await kernel.send(pid, ("n", 4))  # drops ("n", 1)
        await kernel.send(pid, ("want", 0))  # drops ("n", 2)
        with trio.fail_after(5):
            await wait_down(kernel, pid)
        assert got == [("x", 1), ("x", 2), ("want", 0), ("n", 3), ("n", 4)]


async def test_receive_outside_a_process_is_refused():
    async with Kernel("n1") as kernel:
        with pytest.raises(NotInProcess):
            await kernel.receive()
        with pytest.raises(NotInProcess):
            kernel.monitor(PID("n1", 1, 1))


# ---------------------------------------------------------------- sending


async def test_send_to_dead_pid_is_dropped_and_unknown_name_raises():
    async with Kernel("n1") as kernel:
        pid = await kernel.spawn(echo)
        kernel.kill(pid)
        await wait_down(kernel, pid)
        await kernel.send(pid, "into the void")  # no error, as in Erlang
        kernel.cast(pid, "into the void")
        await kernel.send(PID("n1", 99999, 1), "never existed")
        with pytest.raises(NoProc):
            await kernel.send("ghost", 1)
        with pytest.raises(NoProc):
            kernel.cast("ghost", 1)
        with pytest.raises(TypeError, match="destination"):
            await kernel.send(42, 1)  # type: ignore[arg-type]


async def test_overflow_block_makes_sender_wait():
    async with Kernel("n1") as kernel:
        out: list = []
        done = trio.Event()
        gate = trio.Event()

        async def slow_reader(ctx):
            await gate.wait()
            await collector(ctx, out, 10, done)

        pid = await kernel.spawn(slow_reader, mailbox_size=3, overflow="block")
        sent = []

        async def sender(ctx):
            for i in range(10):
                await ctx.send(pid, i)
                sent.append(i)

        await kernel.spawn(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [0, 1, 2]  # the fourth send waits for space
        assert len(kernel.context(pid).mailbox) == 3
        with pytest.raises(MailboxFull):
            kernel.cast(pid, "no waiting for casts")
        gate.set()
        await done.wait()
        assert out == list(range(10))


async def test_overflow_drop_oldest_and_reject():
    async with Kernel("n1") as kernel:
        gate = trio.Event()
        out: list = []
        done = trio.Event()

        async def reader(ctx):
            await gate.wait()
            await collector(ctx, out, 3, done)

        dropper = await kernel.spawn(reader, mailbox_size=3, overflow="drop_oldest")
        for i in range(5):
            await kernel.send(dropper, i)
        kernel.cast(dropper, 5)
        assert kernel.context(dropper).mailbox.dropped == 3
        gate.set()
        await done.wait()
        assert out == [3, 4, 5]

        rejecter = await kernel.spawn(echo, mailbox_size=2, overflow="reject")
        kernel.cast(rejecter, "a")
        await kernel.send(rejecter, "b")
        with pytest.raises(MailboxFull) as info:
            await kernel.send(rejecter, "c")
        assert info.value.capacity == 2 and str(rejecter) in str(info.value)
        with pytest.raises(MailboxFull):
            kernel.cast(rejecter, "d")


async def test_system_messages_bypass_capacity():
    async with Kernel("n1", mailbox_size=1, overflow="reject") as kernel:
        with kernel.inbox() as me:
            a = await kernel.spawn(echo)
            b = await kernel.spawn(echo)
            kernel.cast(me.pid, "fills the mailbox")
            me.monitor(a)
            me.monitor(b)
            kernel.kill(a)
            kernel.kill(b)
            msgs = [await me.receive() for _ in range(3)]
            assert msgs[0] == "fills the mailbox"
            assert {m.pid for m in msgs[1:]} == {a, b}


async def test_sending_to_a_full_own_mailbox_raises_instead_of_deadlocking():
    async with Kernel("n1", mailbox_size=1) as kernel:
        errors = []

        async def proc(ctx):
            await ctx.send(ctx.pid, 1)
            try:
                await ctx.send(ctx.pid, 2)
            except MailboxFull as exc:
                errors.append(exc)

        await wait_down(kernel, await kernel.spawn(proc))
        assert len(errors) == 1


# ---------------------------------------------------------------- registry


async def test_registry():
    async with Kernel("n1") as kernel:
        a = await kernel.spawn(echo, name="svc")
        assert kernel.whereis("svc") == a
        assert await kernel.call("svc", 1) == ("echo", 1)
        assert await kernel.call(("n1", "svc"), 2) == ("echo", 2)  # (node, name) on this node
        with pytest.raises(NameTaken, match="'svc' is already registered by <n1"):
            await kernel.spawn(echo, name="svc")
        b = await kernel.spawn(echo)
        with pytest.raises(NameTaken):
            kernel.register("svc", b)
        kernel.register("other", b)
        assert kernel.registered() == {"svc": a, "other": b}
        kernel.kill(a)
        await wait_down(kernel, a)
        assert kernel.whereis("svc") is None  # released when the holder died
        assert kernel.unregister("other") and not kernel.unregister("other")
        kernel.register("svc", b)
        assert kernel.whereis("svc") == b
        with pytest.raises(NoProc):
            kernel.register("x", a)

        async def self_registering(ctx):
            ctx.register("me")
            await ctx.receive()

        c = await kernel.spawn(self_registering)
        await trio.testing.wait_all_tasks_blocked()
        assert kernel.whereis("me") == c


# ---------------------------------------------------------------- lifecycle


async def test_bad_targets():
    async with Kernel("n1") as kernel:
        with pytest.raises(TypeError, match="cannot spawn 42"):
            await kernel.spawn(42)

        def not_async(ctx):
            return None

        pid = await kernel.spawn(not_async)
        down = await wait_down(kernel, pid)
        assert down.reason.kind in ("error", "noproc")


async def test_exit_reasons_and_kernel_shutdown(autojump_clock):
    reasons = {}
    async with Kernel("n1", shutdown_timeout=3) as kernel:

        async def returns(ctx):
            return None

        async def exits(ctx):
            ctx.exit("shutdown: done here")

        async def stubborn(ctx):
            try:
                await trio.sleep_forever()
            finally:
                with ctx.kernel.grace(ctx):
                    await trio.sleep(100)  # cleanup that outlasts the shutdown timeout

        with kernel.inbox() as me:
            for fn in (returns, exits):
                pid = await kernel.spawn(fn)
                me.monitor(pid)
                reasons[fn.__name__] = (await me.receive()).reason
        await kernel.spawn(stubborn)
        idle = await kernel.spawn(echo)
        assert set(kernel.processes()) >= {idle}
        start = trio.current_time()
    assert reasons == {"returns": NORMAL, "exits": "shutdown: done here"}
    assert trio.current_time() - start == pytest.approx(3)  # waited the timeout, then killed
    assert kernel.processes() == []


async def test_kernel_must_be_running():
    kernel = Kernel("n1")
    with pytest.raises(RuntimeError, match="not running"):
        await kernel.spawn(echo)
    with pytest.raises(ValueError, match="overflow"):
        Kernel("n1", overflow="explode")
