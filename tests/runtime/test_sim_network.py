"""The simulated network and the deterministic simulation harness."""

import random
import time

import pytest
import trio

from eco.runtime.simnet import Exponential, Fixed, LinkSpec, LogNormal, Uniform
from eco.runtime.simulator import Simulation, SimulationFailure, sim_seeds
from eco.runtime.transport import Backoff, ConnectError, ConnectionClosed, connect_with_backoff
from eco.runtime.wire import Envelope, Kind

FAST = {"keepalive_interval": 0.5, "keepalive_misses": 3, "handshake_timeout": 2.0, "connect_timeout": 2.0}


def gossip_scenario(seed, *, hosts=5, rounds=40, faults=True):
    """Hosts call random peers and record replies, through drops, dups, reorders, a partition and a crash."""
    link = LinkSpec(delay=Uniform(0.001, 0.02), drop=0.05, duplicate=0.05, reorder=0.1) if faults else LinkSpec()
    sim = Simulation(seed, link=link, transport_options=FAST)
    names = [f"n{i}" for i in range(hosts)]

    async def main(transport, ctx):
        async def handler(conn):
            async for env in conn:
                ctx.record(f"got {conn.peer.node} {env.payload}")
                await conn.send(Envelope(Kind.REPLY, sequence=env.sequence, payload=env.payload))

        await transport.listen(handler)
        await trio.sleep(ctx.rng.random())
        for i in range(rounds):
            peer = ctx.rng.choice([n for n in names if n != ctx.name])
            try:
                conn = await transport.connect(peer)
            except ConnectError as exc:
                ctx.record(f"connect {peer} failed: {exc}")
                continue
            await conn.send(Envelope(Kind.CALL, sequence=i, payload=f"{ctx.name}-{i}"))
            with trio.move_on_after(0.5):
                try:
                    ctx.record(f"reply {(await conn.receive()).payload}")
                except ConnectionClosed as exc:
                    ctx.record(f"closed {exc.reason}")
            await conn.aclose()
            await trio.sleep(ctx.rng.expovariate(2.0))

    for name in names:
        sim.add_host(name, main)
    sim.at(3.0, lambda: sim.partition({"n0", "n1"}, set(names[2:])))
    sim.at(6.0, sim.heal)
    sim.at(7.0, lambda: sim.crash("n2"))
    sim.at(9.0, lambda: sim.restart("n2"))
    return sim, sim.run(max_time=300)


def test_same_seed_same_trace_and_another_seed_differs():
    sim, first = gossip_scenario(11)
    _, again = gossip_scenario(11)
    _, other = gossip_scenario(12)
    assert first == again
    assert first != other
    events = [e.event.split()[0] for e in first]
    # The scenario really exercised the faults.
    for expected in ("drop", "partition", "heal", "crash", "restart", "reply", "connect"):
        assert expected in events, expected
    assert sim.network.dropped > 0 and sim.network.delivered > 500


@sim_seeds(default=3)
def test_every_call_is_answered_without_faults(seed):
    sim = Simulation(seed, link=LinkSpec(delay=Exponential(0.005, minimum=0.001)), transport_options=FAST)
    replies = []

    async def server(transport, ctx):
        async def handler(conn):
            async for env in conn:
                await conn.send(Envelope(Kind.REPLY, sequence=env.sequence))

        await transport.listen(handler)
        await trio.sleep_forever()

    async def client(transport, ctx):
        await trio.sleep(0.01)
        conn = await transport.connect("server")
        for i in range(200):
            await conn.send(Envelope(Kind.CALL, sequence=i))
        replies.extend([(await conn.receive()).sequence for _ in range(200)])

    sim.add_host("server", server)
    sim.add_host("client", client)
    sim.run(until=lambda: len(replies) == 200, max_time=60)
    assert replies == list(range(200))  # FIFO without reorder faults


def _one_way_run(link, count=300, seed=1):
    """``count`` messages from a to b; returns the sequence numbers b saw."""
    sim = Simulation(seed, link=link, transport_options=FAST)
    seen = []

    async def b(transport, ctx):
        async def handler(conn):
            async for env in conn:
                seen.append(env.sequence)

        await transport.listen(handler)
        await trio.sleep(30)

    async def a(transport, ctx):
        await trio.sleep(0.01)
        conn = await transport.connect("b")
        for i in range(count):
            await conn.send(Envelope(Kind.CAST, sequence=i))
            await trio.sleep(0.001)
        await trio.sleep(5)

    sim.add_host("b", b)
    sim.add_host("a", a)
    sim.run(max_time=40)
    return seen


def test_drop_duplicate_and_reorder_faults():
    assert _one_way_run(LinkSpec(delay=Uniform(0.001, 0.05))) == list(range(300))
    assert _one_way_run(LinkSpec(drop=1.0)) == []
    dropped = _one_way_run(LinkSpec(drop=0.3))
    assert 150 < len(dropped) < 260 and dropped == sorted(dropped)
    duplicated = _one_way_run(LinkSpec(duplicate=1.0))
    assert duplicated == [i for i in range(300) for _ in (0, 1)]
    reordered = _one_way_run(LinkSpec(delay=Fixed(0.002), reorder=0.2, reorder_delay=Uniform(0.0, 0.05)))
    assert sorted(reordered) == list(range(300)) and reordered != list(range(300))


def test_delay_distributions_are_seeded_and_in_range():
    rng = random.Random(3)
    assert Fixed(0.25).sample(rng) == 0.25
    assert all(0.1 <= Uniform(0.1, 0.2).sample(rng) <= 0.2 for _ in range(100))
    assert all(Exponential(0.01, minimum=0.002).sample(rng) >= 0.002 for _ in range(100))
    samples = [LogNormal(0.01, 0.5, maximum=0.05).sample(rng) for _ in range(1000)]
    assert max(samples) <= 0.05 and 0.007 < sorted(samples)[500] < 0.013
    with pytest.raises(ValueError):
        LinkSpec(drop=1.5)


def test_partitions_symmetric_one_way_and_heal():
    sim = Simulation(5, transport_options=FAST)
    log = []

    async def listener(transport, ctx):
        async def handler(conn):
            async for env in conn:
                log.append(f"{ctx.name} got {env.payload}")

        await transport.listen(handler)
        await trio.sleep_forever()

    async def driver(transport, ctx):
        await trio.sleep(0.1)
        conn = await transport.connect("b")
        await conn.send(Envelope(Kind.CAST, payload="before"))
        await trio.sleep(0.1)
        sim.partition({"a"}, {"b"})
        await conn.send(Envelope(Kind.CAST, payload="during"))
        with pytest.raises(ConnectError, match="timed out"):
            await transport.connect("c" if False else "b")
        sim.heal()
        # The old connection died of keepalive silence during the cut.
        assert conn.closed and "keepalive" in conn.close_reason
        conn = await transport.connect("b")
        await conn.send(Envelope(Kind.CAST, payload="after"))
        # One way: a -> b cut, b -> a fine: a's messages vanish.
        await trio.sleep(0.1)
        sim.partition({"a"}, {"b"}, one_way=True)
        assert sim.network.blocked("a", "b") and not sim.network.blocked("b", "a")
        await conn.send(Envelope(Kind.CAST, payload="one-way"))
        await trio.sleep(0.1)
        sim.heal()
        await conn.send(Envelope(Kind.CAST, payload="healed"))
        await trio.sleep(0.1)

    sim.add_host("b", listener)
    sim.add_host("a", driver)
    sim.run(until=lambda: "b got healed" in log, max_time=60)
    assert log == ["b got before", "b got after", "b got healed"]


def test_crash_restart_and_resets():
    sim = Simulation(9, transport_options=FAST)
    events = []

    async def server(transport, ctx):
        async def handler(conn):
            async for env in conn:
                await conn.send(Envelope(Kind.REPLY, payload=ctx.incarnation))

        await transport.listen(handler)
        await trio.sleep_forever()

    async def client(transport, ctx):
        await trio.sleep(0.1)
        conn = await transport.connect("server")
        assert conn.peer.incarnation == 1
        sim.crash("server")  # silent: nobody tells us
        await conn.wait_closed()
        events.append(conn.close_reason)
        with pytest.raises(ConnectError):
            await transport.connect("server")
        sim.restart("server")
        await trio.sleep(0.1)
        conn = await transport.connect("server")
        assert conn.peer.incarnation == 2
        await conn.send(Envelope(Kind.CALL))
        events.append((await conn.receive()).payload)
        # A loud crash (process died, the OS resets its sockets).
        sim.crash("server", silent=False)
        await conn.wait_closed()
        events.append(conn.close_reason)
        sim.restart("server")
        await trio.sleep(0.1)
        stale = conn
        conn = await transport.connect("server")
        events.append(conn.peer.incarnation)
        assert stale.closed

    sim.add_host("server", server)
    sim.add_host("client", client)
    sim.run(until=lambda: len(events) == 4, max_time=60)
    assert "keepalive timeout" in events[0]
    assert events[1:] == [2, "connection reset by the peer", 3]


def test_sending_on_a_half_open_connection_after_a_restart_gets_a_reset():
    sim = Simulation(2, transport_options={**FAST, "keepalive_interval": 100.0})
    out = []

    async def server(transport, ctx):
        await transport.listen(lambda conn: trio.sleep_forever())
        await trio.sleep_forever()

    async def client(transport, ctx):
        await trio.sleep(0.1)
        conn = await transport.connect("server")
        sim.crash("server")
        sim.restart("server")
        await conn.send(Envelope(Kind.CAST))
        await conn.wait_closed()
        out.append(conn.close_reason)

    sim.add_host("server", server)
    sim.add_host("client", client)
    sim.run(until=lambda: out, max_time=10)
    assert out == ["connection reset by the peer"]


def test_backoff_policy():
    policy = Backoff(initial=0.1, maximum=2.0, multiplier=2.0, jitter=0.0)
    assert [policy.delay(n, random.Random()) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert policy.delay(10_000, random.Random()) == 2.0
    jittered = Backoff(initial=1.0, maximum=1.0, jitter=0.5)
    draws = [jittered.delay(3, random.Random(s)) for s in range(200)]
    assert all(0.5 <= d <= 1.0 for d in draws) and len(set(draws)) > 100
    with pytest.raises(ValueError):
        Backoff(initial=2.0, maximum=1.0)


def test_connect_with_backoff_waits_for_a_late_listener():
    sim = Simulation(4, transport_options=FAST)
    result = []

    async def late(transport, ctx):
        await trio.sleep(3.0)
        await transport.listen(lambda conn: trio.sleep_forever())
        await trio.sleep_forever()

    async def eager(transport, ctx):
        conn = await connect_with_backoff(transport, "late", backoff=Backoff(initial=0.1, maximum=1.0), rng=ctx.rng)
        result.append((ctx.now(), conn.peer.node))

    sim.add_host("late", late)
    sim.add_host("eager", eager)
    sim.run(until=lambda: result, max_time=20)
    [(when, node)] = result
    assert node == "late" and 3.0 <= when < 5.0


def test_failures_name_the_seed_and_the_rerun_command():
    sim = Simulation(1234)

    async def broken(transport, ctx):
        await trio.sleep(1.5)
        raise KeyError("boom")

    sim.add_host("x", broken)
    with pytest.raises(SimulationFailure) as info:
        sim.run(max_time=10)
    message = str(info.value)
    assert "host x failed" in message and "KeyError" in message
    assert "seed 1234" in message and "ECO_SIM_SEED=1234" in message and "test_sim_network.py" in message
    assert "1.5" in message

    sim = Simulation(77)
    sim.add_host("idle", lambda transport, ctx: trio.sleep_forever())
    with pytest.raises(SimulationFailure, match="(?s)not reached within 5s.*ECO_SIM_SEED=77"):
        sim.run(until=lambda: False, max_time=5)


def test_simulated_time_is_fast():
    sim = Simulation(0)
    out = []

    async def sleeper(transport, ctx):
        await trio.sleep(3600 * 24)
        out.append(ctx.now())

    sim.add_host("s", sleeper)
    start = time.perf_counter()
    sim.run(max_time=3600 * 48)
    assert out == [3600 * 24] and time.perf_counter() - start < 1.0


def test_fifty_hosts_and_thousands_of_messages_run_quickly():
    sim = Simulation(8, link=LinkSpec(delay=Uniform(0.001, 0.01), drop=0.01), trace_messages=False)
    names = [f"h{i:02}" for i in range(50)]
    delivered = [0]

    async def main(transport, ctx):
        async def handler(conn):
            async for _ in conn:
                delivered[0] += 1

        await transport.listen(handler)
        await trio.sleep(0.05)
        peers = ctx.rng.sample([n for n in names if n != ctx.name], 3)
        conns = [await transport.connect(p) for p in peers]
        for i in range(100):
            for conn in conns:
                await conn.send(Envelope(Kind.CAST, sequence=i, payload=b"x" * 50))
            await trio.sleep(ctx.rng.expovariate(100.0))
        await trio.sleep(1.0)
        for conn in conns:
            await conn.aclose()

    for name in names:
        sim.add_host(name, main)
    start = time.perf_counter()
    sim.run(max_time=600)
    elapsed = time.perf_counter() - start
    assert 14_000 < delivered[0] <= 15_000
    assert elapsed < 8.0, f"50 hosts x 15k messages took {elapsed:.2f}s"


def test_run_async_requires_a_mock_clock():
    async def go():
        await Simulation(0).run_async()

    with pytest.raises(RuntimeError, match="MockClock"):
        trio.run(go)
