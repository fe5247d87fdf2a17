"""Killing processes, with the cheap cancel-scope entry (scope_entry) and with trio's public one."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import eco.runtime.kernel as kernel_module
from eco.runtime import KILLED, NORMAL, Kernel
from eco.runtime.scope_entry import FAST_ENTRY, enter_fresh_scope, enter_scope_public


@pytest.fixture(params=["fast", "public"])
def scope_entry(request, monkeypatch):
    """Runs each test with both ways of entering a process's scope."""
    if request.param == "public":
        monkeypatch.setattr(kernel_module, "enter_fresh_scope", enter_scope_public)
    return request.param


def test_the_installed_trio_supports_the_fast_entry():
    # If a trio upgrade moves its internals the kernel silently falls back to the public
    # (slower) entry; this test makes that visible instead of a spawn-rate regression.
    assert FAST_ENTRY, "trio's CancelScope internals changed: eco.runtime.scope_entry uses the slow path"


async def _down(me, pid):
    me.monitor(pid)
    return await me.receive()


async def test_kill_before_the_process_first_runs(scope_entry):
    seen = []

    async def body(ctx):
        seen.append("started")
        await trio.lowlevel.checkpoint()
        seen.append("passed a checkpoint")

    async with Kernel("n1") as kernel:
        with kernel.inbox() as me:
            pid = kernel.spawn_nowait(body)
            me.monitor(pid)
            kernel.kill(pid)
            down = await me.receive()
    assert down.reason == KILLED
    assert "passed a checkpoint" not in seen


async def test_kill_is_persistent_across_cleanup_that_awaits(scope_entry, autojump_clock):
    seen = []

    async def body(ctx):
        try:
            await ctx.receive()  # parked in the mailbox when killed
        finally:
            try:
                await trio.sleep(10)
                seen.append("cleanup slept")
            except trio.Cancelled:
                seen.append("cleanup cancelled")
                raise

    async with Kernel("n1") as kernel:
        with kernel.inbox() as me:
            pid = await kernel.spawn(body)
            await trio.testing.wait_all_tasks_blocked()
            me.monitor(pid)
            kernel.kill(pid)
            down = await me.receive()
    assert down.reason == KILLED
    assert seen == ["cleanup cancelled"]
    assert not kernel.is_alive(pid)


async def test_kill_reaches_a_process_inside_its_own_scopes(scope_entry, autojump_clock):
    async def in_user_scope(ctx):
        with trio.move_on_after(100):
            await trio.sleep_forever()
        await ctx.send(ctx.self, "must not get here")  # (it would then exit normally)

    async def in_receive_with_timeout(ctx):
        await ctx.receive(timeout=100)

    async with Kernel("n1") as kernel:
        with kernel.inbox() as me:
            for fn in (in_user_scope, in_receive_with_timeout):
                pid = await kernel.spawn(fn)
                await trio.testing.wait_all_tasks_blocked()
                me.monitor(pid)
                kernel.kill(pid)
                assert (await me.receive()).reason == KILLED, fn.__name__


async def test_own_scopes_and_errors_behave_normally_inside_a_process(scope_entry, autojump_clock):
    async def times_out_then_returns(ctx):
        with trio.move_on_after(1) as scope:
            await trio.sleep_forever()
        assert scope.cancelled_caught

    async def raises(ctx):
        await trio.sleep(1)
        raise KeyError("boom")

    async with Kernel("n1") as kernel:
        with kernel.inbox() as me:
            a = await kernel.spawn(times_out_then_returns)
            b = await kernel.spawn(raises)
            ref_a, ref_b = me.monitor(a), me.monitor(b)
            downs = {down.ref: down.reason for down in [await me.receive(), await me.receive()]}
    assert downs[ref_a] == NORMAL
    assert downs[ref_b].kind == "error" and "boom" in downs[ref_b].text


async def test_shutdown_and_exit_signals_still_end_parked_processes(scope_entry):
    async def idle(ctx):
        await ctx.receive()

    async with Kernel("n1") as kernel:
        pids = [await kernel.spawn(idle) for _ in range(100)]
        await trio.testing.wait_all_tasks_blocked()
        with kernel.inbox() as me:
            kernel.exit(pids[0], "shutdown: asked")
            assert str((await _down(me, pids[0])).reason) == "shutdown: asked"
    assert not any(kernel.is_alive(p) for p in pids)


async def test_enter_fresh_scope_leaves_trio_consistent():
    task = trio.lowlevel.current_task()
    with trio.CancelScope() as outer:
        scope = trio.CancelScope()
        enter_fresh_scope(scope, task)
        try:
            with trio.CancelScope() as inner:  # nests under it as under a normally entered scope
                scope.cancel()
                await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            assert scope.__exit__(type(exc), exc, exc.__traceback__)  # the scope catches its own cancel
        else:
            raise AssertionError("the cancelled scope did not cancel the task")
        assert scope.cancelled_caught and not inner.cancelled_caught
        await trio.lowlevel.checkpoint()  # no longer cancelled: the task's scope stack is intact
    assert not outer.cancelled_caught

    # Cases the shortcut does not cover go through trio: a deadline, a second entry.
    timed = trio.CancelScope(deadline=trio.current_time() - 1)
    enter_fresh_scope(timed, task)
    with pytest.raises(trio.Cancelled):
        await trio.lowlevel.checkpoint()
    timed.__exit__(None, None, None)
    with pytest.raises(RuntimeError, match="single 'with' block"):
        enter_fresh_scope(timed, task)
