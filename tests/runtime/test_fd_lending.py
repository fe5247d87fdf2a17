"""A process parked in ``receive`` right after a request waits on the socket itself
(runtime/fd_lending.py): replies reach it in one scheduling pass, and every other
way of waking it (a local message, a kill, the connection going away) still works."""

from __future__ import annotations

import select
import socket
import sys
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from eco.runtime import fd_lending as fd_lending_module
from eco.runtime.kernel import Kernel
from eco.runtime.node import Node, node_transport_config
from eco.runtime.secrets import Cookie
from eco.runtime.tcp import open_tcp_transport

pytestmark = pytest.mark.timeout(30)

COOKIE = Cookie("fd-lending-test-cookie-0123456789")


@asynccontextmanager
async def running_node(name: str, join=(), **options):
    kernel = Kernel(name, incarnation=1)
    config = node_transport_config("t", name, 1, COOKIE, keepalive_interval=0.2, **options)
    async with kernel, open_tcp_transport(config) as transport:
        node = Node(kernel, transport)
        async with trio.open_nursery() as nursery:
            node.address = await nursery.start(node.serve, "127.0.0.1:0", list(join))
            node.stop = nursery.cancel_scope.cancel  # type: ignore[attr-defined]
            yield node
            nursery.cancel_scope.cancel()


async def echo(ctx):
    while True:
        sender, payload = await ctx.receive()
        await ctx.send(sender, payload)


async def round_trips(a: Node, b: Node, count: int) -> list[int]:
    """``count`` request/response exchanges from a process on ``a`` to an echo on ``b``."""
    await b.kernel.spawn(echo, name="echo")
    got: list[int] = []
    done = trio.Event()

    async def client(ctx):
        for i in range(count):
            await ctx.send(("b", "echo"), (ctx.self, i))
            got.append(await ctx.receive())
        done.set()

    await a.kernel.spawn(client)
    await done.wait()
    return got


def lent_reads(node: Node) -> int:
    return sum(getattr(conn, "lent_reads", 0) for conn in node._conns.values())


async def spawn_collector(node: Node, name: str, count: int) -> tuple[list, trio.Event]:
    """A process registered as ``name`` that keeps the first ``count`` messages it receives."""
    got: list = []
    done = trio.Event()

    async def collector(ctx):
        while len(got) < count:
            got.append(await ctx.receive())
        done.set()

    await node.kernel.spawn(collector, name=name)
    return got, done


async def spawn_borrower(node: Node, peer: str) -> tuple[Any, list, trio.Event]:
    """A process registered as ``waiter`` that sends a lone message to ``peer`` (nobody
    answers it) and keeps the next message it receives; returns once it waits on that
    connection's socket.  Returns its PID, what it got, and an event set when it got it."""
    parked = trio.Event()
    got: list = []
    done = trio.Event()

    async def waiter(ctx):
        await ctx.send((peer, "nobody"), "ping")
        parked.set()
        got.append(await ctx.receive())
        done.set()

    pid = await node.kernel.spawn(waiter, name="waiter")
    await parked.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert node._conns[peer]._borrower is not None
    return pid, got, done


async def test_request_response_replies_wake_the_waiting_process_directly(caplog):
    with trio.fail_after(20):
        async with running_node("b") as b:
            async with running_node("a", join=[b.address]) as a:
                await a.wait_connected(["b"])
                assert await round_trips(a, b, 500) == list(range(500))
                # Both sides waited on the socket themselves for nearly every hop.
                assert lent_reads(a) >= 450, lent_reads(a)
                assert lent_reads(b) >= 450, lent_reads(b)
    assert not [r for r in caplog.records if "disabled" in r.getMessage() or r.levelname == "ERROR"]


async def test_without_lending_the_same_exchange_goes_through_the_reader():
    with trio.fail_after(20):
        async with running_node("b", lend_reads=False) as b:
            async with running_node("a", join=[b.address], lend_reads=False) as a:
                await a.wait_connected(["b"])
                assert await round_trips(a, b, 100) == list(range(100))
                assert lent_reads(a) == lent_reads(b) == 0


async def test_unsupported_trio_internals_mean_no_lending(monkeypatch):
    monkeypatch.setattr(fd_lending_module, "fd_lending", lambda *args: None)
    import eco.runtime.tcp as tcp

    monkeypatch.setattr(tcp, "fd_lending", lambda *args: None)
    with trio.fail_after(20):
        async with running_node("b") as b:
            async with running_node("a", join=[b.address]) as a:
                await a.wait_connected(["b"])
                assert await round_trips(a, b, 50) == list(range(50))
                assert lent_reads(a) == 0


async def test_a_local_message_wakes_a_borrower_and_the_reader_takes_over():
    with trio.fail_after(20):
        async with running_node("b") as b:
            async with running_node("a", join=[b.address]) as a:
                await a.wait_connected(["b"])
                sink_got, sink_done = await spawn_collector(a, "sink", 20)
                borrowed = trio.Event()
                phase: list[str] = []
                second = trio.Event()

                async def waiter(ctx):
                    # A lone request to b (nobody answers it), then park: this borrows the socket.
                    await ctx.send(("b", "nobody"), "hello")
                    borrowed.set()
                    phase.append(await ctx.receive())  # woken by a *local* message
                    phase.append(await ctx.receive())  # and later by a remote one
                    second.set()

                await a.kernel.spawn(waiter, name="waiter")
                await borrowed.wait()
                await trio.testing.wait_all_tasks_blocked()
                conn = a._conns["b"]
                assert conn._borrower is not None  # the waiter is the one the socket would wake
                await a.kernel.send("waiter", "local")
                await trio.testing.wait_all_tasks_blocked()
                assert phase == ["local"]
                # Parked again, and still the last to write a lone message: it borrows again,
                # and traffic for anyone else still flows through it.
                for i in range(20):
                    await b.kernel.send(("a", "sink"), i)
                await sink_done.wait()
                assert sink_got == list(range(20))
                await b.kernel.send(("a", "waiter"), "remote")
                await second.wait()
                assert phase == ["local", "remote"]


async def test_messages_for_others_read_by_a_borrower_reach_them():
    with trio.fail_after(20):
        async with running_node("b") as b:
            async with running_node("a", join=[b.address]) as a:
                await a.wait_connected(["b"])
                others, others_done = await spawn_collector(a, "other", 30)
                _, waiter_got, waiter_done = await spawn_borrower(a, "b")
                for i in range(30):  # read by the waiter, for someone else
                    await b.kernel.send(("a", "other"), i)
                await others_done.wait()
                assert others == list(range(30))
                assert waiter_got == []
                await b.kernel.send(("a", "waiter"), "yours")
                await waiter_done.wait()
                assert waiter_got == ["yours"]


async def test_killing_a_borrower_gives_the_socket_back():
    with trio.fail_after(20):
        async with running_node("b") as b:
            async with running_node("a", join=[b.address]) as a:
                await a.wait_connected(["b"])
                pid, _, _ = await spawn_borrower(a, "b")
                conn = a._conns["b"]
                a.kernel.kill(pid)
                await trio.testing.wait_all_tasks_blocked()
                assert conn._borrower is None
                got, done = await spawn_collector(a, "sink", 10)
                for i in range(10):
                    await b.kernel.send(("a", "sink"), i)
                await done.wait()
                assert got == list(range(10))


@pytest.mark.parametrize("how", ["the peer stops", "the connection is aborted"])
async def test_a_borrower_still_gets_messages_after_its_connection_ends(how):
    with trio.fail_after(20):
        async with running_node("a") as a:
            async with running_node("b", join=[a.address]) as b:
                await b.wait_connected(["a"])
                _, got, done = await spawn_borrower(b, "a")
                conn = b._conns["a"]
                if how == "the peer stops":
                    a.stop()  # b's reader sees the end of the stream
                    await b.wait_disconnected("a")
                else:
                    conn._abort("aborted by the test")  # b's reader is cancelled while lent out
                await trio.testing.wait_all_tasks_blocked()
                assert conn._borrower is None
                await b.kernel.send("waiter", "after the end")
                await done.wait()
                assert got == ["after the end"]


async def test_calls_wait_on_the_socket_too():
    async def adder(ctx):
        while True:
            msg = await ctx.receive()
            ctx.reply(msg, sum(msg.request))

    with trio.fail_after(20):
        async with running_node("b") as b:
            async with running_node("a", join=[b.address]) as a:
                await a.wait_connected(["b"])
                await b.kernel.spawn(adder, name="adder")
                answers: list[int] = []
                done = trio.Event()

                async def caller(ctx):
                    for i in range(200):
                        answers.append(await ctx.call(("b", "adder"), [i, 1]))
                    done.set()

                await a.kernel.spawn(caller)
                await done.wait()
                assert answers == [i + 1 for i in range(200)]
                assert lent_reads(a) >= 180, lent_reads(a)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fd lending needs trio's epoll I/O manager")
async def test_the_trio_internals_lending_needs_are_there():
    # If this fails after a trio upgrade, lending silently switched itself off (everything
    # still works, one scheduling pass slower per request/response hop): update fd_lending.py.
    assert fd_lending_module.fd_lending() is not None


async def test_after_a_lent_read_the_reader_watches_again_even_if_the_borrower_does_not_park():
    with trio.fail_after(20):
        async with running_node("b") as b:
            async with running_node("a", join=[b.address]) as a:
                await a.wait_connected(["b"])
                conn = a._conns["b"]
                parked = trio.Event()
                woken = trio.Event()
                never = trio.Event()

                async def waiter(ctx):
                    await ctx.send(("b", "nobody"), "ping")
                    parked.set()
                    await ctx.receive()  # read by itself from the socket...
                    woken.set()
                    await never.wait()  # ...then waits on something else, for good

                await a.kernel.spawn(waiter, name="waiter")
                got, done = await spawn_collector(a, "sink", 10)
                await parked.wait()
                await trio.testing.wait_all_tasks_blocked()
                before = conn.lent_reads
                await b.kernel.send(("a", "waiter"), "wake up")
                await woken.wait()
                assert conn.lent_reads == before + 1
                for i in range(10):  # only the reader can read these now
                    await b.kernel.send(("a", "sink"), i)
                await done.wait()
                assert got == list(range(10))


# ------------------------------------------------------------ busy-waiting before trio sleeps


class _Epoll:
    """A socket pair watched by a private epoll, standing in for trio's, and an FdLending on it
    whose last connection has a borrower (a process waits for a reply on it)."""

    def __init__(self, busy_wait: float, *, clock_step: float | None = None, monkeypatch=None) -> None:
        self.ours, self.peer = socket.socketpair()
        self.epoll = select.epoll()
        self.epoll.register(self.ours.fileno(), select.EPOLLIN)
        self.lending = fd_lending_module.FdLending({}, lambda fd: None, busy_wait, self.epoll.fileno())
        self.lending.last = SimpleNamespace(_borrower=object(), _fd=self.ours.fileno())
        self.polls = 0
        poll = self.lending._poll

        def counting_poll(timeout):
            self.polls += 1
            return poll(timeout)

        self.lending._poll = counting_poll
        if clock_step is not None:  # a clock that moves on by clock_step at each reading
            now = [0.0]

            def clock():
                now[0] += clock_step
                return now[0]

            monkeypatch.setattr(fd_lending_module.time, "perf_counter", clock)

    def close(self) -> None:
        self.epoll.close()
        self.ours.close()
        self.peer.close()


@pytest.fixture
def watched(monkeypatch):
    made: list[_Epoll] = []

    def make(busy_wait: float, clock_step: float | None = None) -> _Epoll:
        made.append(_Epoll(busy_wait, clock_step=clock_step, monkeypatch=monkeypatch))
        return made[-1]

    yield make
    for w in made:
        w.close()


def test_a_reply_already_there_ends_the_busy_wait_at_once(watched):
    w = watched(0.005)
    w.peer.send(b"reply")
    w.lending.before_io_wait(1.0)
    assert (w.lending.spins, w.lending.spin_hits, w.polls) == (1, 1, 1)
    assert w.ours.recv(10) == b"reply"  # polling took no event and no data


def test_no_reply_within_the_budget_backs_off_exponentially_and_a_hit_starts_over(watched):
    w = watched(0.001, clock_step=0.0001)
    lending = w.lending
    lending.before_io_wait(1.0)  # a miss: about budget / clock_step polls
    assert (lending.spins, lending.spin_hits) == (1, 0)
    assert 5 <= w.polls <= 12, w.polls
    chances = [lending.spins]
    for _ in range(11):
        lending.before_io_wait(1.0)
        chances.append(lending.spins)
    # After the 1st miss one chance is passed up, after the 2nd three, after the 3rd seven.
    assert chances == [1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3]
    for _ in range(2):  # the rest of the third back-off (seven chances)
        lending.before_io_wait(1.0)
    assert lending.spins == 3
    w.peer.send(b"reply")
    lending.before_io_wait(1.0)
    assert (lending.spins, lending.spin_hits) == (4, 1)
    w.ours.recv(10)
    lending.before_io_wait(1.0)  # a miss right after a hit passes up one chance only
    lending.before_io_wait(1.0)
    lending.before_io_wait(1.0)
    assert lending.spins == 6


def test_the_busy_wait_never_outlasts_trio_s_own_timeout(watched):
    w = watched(0.01, clock_step=0.0001)
    w.lending.before_io_wait(0.0003)  # a timer is due in 0.3 ms: poll for that long at most
    assert w.lending.spins == 1 and w.polls <= 4, w.polls


def test_no_busy_wait_when_tasks_are_ready_nobody_waits_for_a_reply_or_it_is_off(watched):
    w = watched(0.005)
    w.lending.before_io_wait(0.0)  # other tasks are ready to run: trio will not sleep
    w.lending.last = SimpleNamespace(_borrower=None, _fd=w.ours.fileno())
    w.lending.before_io_wait(1.0)  # nobody waits on a lent socket
    w.lending.last = None
    w.lending.before_io_wait(1.0)
    assert w.polls == 0 and w.lending.spins == 0
    off = fd_lending_module.FdLending({}, lambda fd: None, 0.0, w.epoll.fileno())
    no_epoll = fd_lending_module.FdLending({}, lambda fd: None, 0.005, -1)
    assert off.busy_wait == no_epoll.busy_wait == 0.0
    for lending in (off, no_epoll):
        lending.last = SimpleNamespace(_borrower=object(), _fd=w.ours.fileno())
        lending.before_io_wait(1.0)
        assert lending.spins == 0


def test_a_closed_epoll_turns_the_busy_wait_off_without_raising(watched):
    w = watched(0.005)
    w.epoll.close()
    w.lending.before_io_wait(1.0)
    assert w.lending.busy_wait == 0.0 and w.lending.spin_hits == 0 and w.polls == 1


def test_busy_wait_must_be_a_small_non_negative_duration():
    for bad in (-1e-6, 0.5):
        with pytest.raises(ValueError, match="busy_wait"):
            node_transport_config("t", "a", 1, COOKIE, busy_wait=bad)


@pytest.mark.parametrize("busy_wait", [50e-6, 0.0])
async def test_round_trips_busy_wait_only_when_it_is_on(busy_wait):
    with trio.fail_after(20):
        async with running_node("b", busy_wait=busy_wait) as b:
            async with running_node("a", join=[b.address], busy_wait=busy_wait) as a:
                await a.wait_connected(["b"])
                assert await round_trips(a, b, 200) == list(range(200))
                lendings = [a.transport._lending, b.transport._lending]
                if busy_wait:
                    # Both nodes share this trio loop: the request or the reply is always
                    # ready when trio is about to sleep, so nearly every spin finds it.
                    assert sum(x.spin_hits for x in lendings) >= 150, [(x.spins, x.spin_hits) for x in lendings]
                else:
                    assert sum(x.spins for x in lendings) == 0
