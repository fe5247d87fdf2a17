"""Deterministic simulation harness: K hosts in one process on a :class:`SimNetwork`.

::

    sim = Simulation(seed=7, link=LinkSpec(delay=Uniform(0.001, 0.01), drop=0.01))
    sim.add_host("n1", main)          # async def main(transport, ctx): ...
    sim.add_host("n2", main)
    sim.at(5.0, lambda: sim.partition({"n1"}, {"n2"}))
    sim.at(9.0, sim.heal)
    trace = sim.run(max_time=60)      # trio.run under MockClock(autojump_threshold=0)

Same seed, same trace: all randomness comes from the seed (network faults,
nonces, each host's ``ctx.rng``), time is trio's ``MockClock``, and trio's
scheduler is switched to its deterministic (seeded) mode for the run.  Host
code must not use wall-clock time, ``os.urandom`` or iteration over sets of
strings (hash-randomised across processes) if it wants reproducible runs.

When a host's main raises, or the ``until`` condition is not reached by
``max_time``, :class:`SimulationFailure` says which seed failed and how to
rerun it (``ECO_SIM_SEED=<seed> python -m pytest <test id>``).  For tests,
:func:`sim_seeds` parametrises a test over seeds (``ECO_SIM_SEEDS=N`` runs more).
"""

from __future__ import annotations

import functools
import os
import random
import shlex
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import trio
import trio.testing

from .handshake import Identity
from .secrets import Cookie
from .simnet import LinkSpec, SimNetwork, SimTransport
from .transport import TransportConfig

HostMain = Callable[[SimTransport, "HostContext"], Awaitable[None]]


class TraceEvent(NamedTuple):
    time: float
    host: str
    event: str


class SimulationFailure(AssertionError):
    """A simulation run failed; the message carries the seed and the rerun command."""


@dataclass
class HostContext:
    """What a host's main gets besides its transport."""

    name: str
    incarnation: int
    rng: random.Random
    sim: Simulation = field(repr=False)

    def record(self, event: str) -> None:
        """Append ``event`` to the simulation trace."""
        self.sim.record(self.name, event)

    def now(self) -> float:
        return trio.current_time()


@dataclass(eq=False)
class _HostEntry:
    name: str
    main: HostMain
    incarnation: int = 0
    scope: trio.CancelScope | None = None
    running: bool = False
    finished: bool = False


class Simulation:
    """Runs hosts, faults and a trace; see the module docstring."""

    def __init__(
        self,
        seed: int,
        *,
        link: LinkSpec = LinkSpec(),
        cluster: str = "sim",
        cookie: Cookie | None = None,
        trace_messages: bool = True,
        transport_options: dict[str, Any] | None = None,
    ):
        self.seed = seed
        self.trace: list[TraceEvent] = []
        self.network = SimNetwork(seed, default_link=link, trace=self.record, trace_messages=trace_messages)
        self.cluster = cluster
        self._cookie = cookie or Cookie(f"simulated-cookie-{seed}-padding")
        self._transport_options = dict(transport_options or {})
        self._hosts: dict[str, _HostEntry] = {}
        self._scheduled: list[tuple[float, int, Callable[[], Any]]] = []
        self._nursery: trio.Nursery | None = None
        self._until: Callable[[], bool] | None = None
        self._stop: trio.CancelScope | None = None
        self._reached = False
        self._error: BaseException | None = None
        self._error_host: str | None = None

    # ---------------------------------------------------------------- setup

    def add_host(self, name: str, main: HostMain) -> None:
        """Add a host that runs ``await main(transport, ctx)`` (again after each restart)."""
        if name in self._hosts:
            raise ValueError(f"host {name!r} already added")
        self._hosts[name] = _HostEntry(name, main)
        self.network.add_host(name)
        if self._nursery is not None:
            self._start_host(self._hosts[name])

    def set_link(self, a: str, b: str, spec: LinkSpec, *, symmetric: bool = True) -> None:
        self.network.set_link(a, b, spec, symmetric=symmetric)

    def at(self, time: float, action: Callable[[], Any]) -> None:
        """Run ``action()`` at simulated ``time`` (seconds since the start)."""
        self._scheduled.append((time, len(self._scheduled), action))

    # --------------------------------------------------------------- faults

    def crash(self, name: str, *, silent: bool = True) -> None:
        """Crash ``name``: its tasks are cancelled and its connections vanish."""
        host = self._entry(name)
        if not host.running:
            return
        self.record(name, "crash")
        host.running = False
        self.network.crash(name, silent=silent)
        if host.scope is not None:
            host.scope.cancel()

    def restart(self, name: str) -> None:
        """Start a new incarnation of a crashed or finished host."""
        host = self._entry(name)
        if host.running:
            return
        self.network.restart(name)
        self.record(name, "restart")
        host.finished = False
        if self._nursery is not None:
            self._start_host(host)

    def partition(self, side_a: Iterable[str], side_b: Iterable[str], *, one_way: bool = False) -> None:
        self.network.partition(side_a, side_b, one_way=one_way)

    def heal(self) -> None:
        self.network.heal()

    # -------------------------------------------------------------- running

    @property
    def now(self) -> float:
        return trio.current_time()

    def record(self, host: str, event: str) -> None:
        self.trace.append(TraceEvent(round(trio.current_time(), 9), host, event))
        if self._until is not None and not self._reached and self._until():
            self._reached = True
            if self._stop is not None:
                self._stop.cancel()

    def run(self, *, until: Callable[[], bool] | None = None, max_time: float = 3600.0) -> list[TraceEvent]:
        """Run to completion (all mains returned), until ``until()`` holds, or ``max_time``.

        Runs its own ``trio.run`` with ``MockClock(autojump_threshold=0)``.
        Raises :class:`SimulationFailure` if a host fails or ``until`` is never met.
        """
        clock = trio.testing.MockClock(autojump_threshold=0)
        return trio.run(functools.partial(self.run_async, until=until, max_time=max_time), clock=clock)

    async def run_async(self, *, until: Callable[[], bool] | None = None, max_time: float = 3600.0) -> list[TraceEvent]:
        """Like :meth:`run` inside an existing trio run (which must use a ``MockClock``)."""
        if not isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
            raise RuntimeError("Simulation.run_async needs trio.testing.MockClock (use Simulation.run, or pytest-trio's autojump_clock)")
        self._until = until
        start = trio.current_time()
        with _deterministic_scheduling(self.seed):
            with trio.move_on_after(max_time) as self._stop:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self.network.run)
                    for when, _, action in sorted(self._scheduled):
                        nursery.start_soon(self._run_at, start + when, action)
                    for host in self._hosts.values():
                        self._start_host(host)
                    self.network.on_idle = self._check_done
                    self._check_done()
            self._nursery = None
        if self._error is not None:
            raise SimulationFailure(self._failure_message(f"host {self._error_host} failed: {self._error!r}")) from self._error
        if until is not None and not self._reached:
            raise SimulationFailure(self._failure_message(f"the condition was not reached within {max_time:g}s of simulated time"))
        return self.trace

    def failure_hint(self) -> str:
        """How to rerun this simulation with the same seed."""
        return f"simulation seed {self.seed}; rerun with: {rerun_command(self.seed)}"

    # ------------------------------------------------------------- internals

    def _start_host(self, host: _HostEntry) -> None:
        assert self._nursery is not None
        host.incarnation += 1
        host.running = True
        host.scope = trio.CancelScope()
        self._nursery.start_soon(self._run_host, host, host.incarnation, host.scope)

    async def _run_host(self, host: _HostEntry, incarnation: int, scope: trio.CancelScope) -> None:
        identity = Identity(self.cluster, host.name, incarnation, self._cookie)
        config = TransportConfig(identity, **self._transport_options)
        ctx = HostContext(host.name, incarnation, random.Random(f"{self.seed}:{host.name}:{incarnation}"), self)
        with scope:
            try:
                async with trio.open_nursery() as nursery:
                    transport = SimTransport(self.network, host.name, config, nursery)
                    self.record(host.name, f"start #{incarnation}")
                    await host.main(transport, ctx)
                    # A host whose main returned is stopped: its connections close.
                    nursery.cancel_scope.cancel()
            except Exception as exc:
                if self._error is None:
                    self._error, self._error_host = exc, host.name
                    self.record(host.name, f"failed: {exc!r}")
                if self._stop is not None:
                    self._stop.cancel()
                return
        if host.running and host.incarnation == incarnation:
            host.running = False
            host.finished = True
            self.record(host.name, "stop")
            self.network.crash(host.name, silent=False)
            self._check_done()

    async def _run_at(self, when: float, action: Callable[[], Any]) -> None:
        await trio.sleep_until(when)
        action()

    def _check_done(self) -> None:
        # Finished when every host's main has returned (crashed hosts do not count).
        if self._hosts and all(h.finished for h in self._hosts.values()) and self._until is None:
            if self._stop is not None:
                self._stop.cancel()

    def _entry(self, name: str) -> _HostEntry:
        try:
            return self._hosts[name]
        except KeyError:
            raise ValueError(f"unknown host {name!r}") from None

    def _failure_message(self, what: str) -> str:
        return f"{what}\n  at simulated time {trio.current_time():.6f}s\n  {self.failure_hint()}"


class _deterministic_scheduling:
    """Seed trio's scheduler shuffling and make it deterministic for one run.

    trio normally randomises the order of runnable tasks with an unseeded RNG;
    it has a deterministic mode (used under Hypothesis) that we enable here.
    These are private trio globals, restored on exit.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self) -> None:
        from trio._core import _run

        self._run = _run
        self._saved = (_run._ALLOW_DETERMINISTIC_SCHEDULING, _run._r.getstate())
        _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
        _run._r.seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        self._run._ALLOW_DETERMINISTIC_SCHEDULING = self._saved[0]  # type: ignore[misc]
        self._run._r.setstate(self._saved[1])


# ----------------------------------------------------------------- test helpers


def rerun_command(seed: int) -> str:
    """The shell command that reruns the current test (or program) with ``seed``."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if current:
        test_id = current.rsplit(" ", 1)[0]
        return f"ECO_SIM_SEED={seed} {shlex.quote(sys.executable)} -m pytest {shlex.quote(test_id)}"
    return f"ECO_SIM_SEED={seed} {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}"


def seeds(default: int = 5) -> list[int]:
    """Seeds to run: ``ECO_SIM_SEED`` (one), else ``range(ECO_SIM_SEEDS or default)``."""
    if os.environ.get("ECO_SIM_SEED"):
        return [int(os.environ["ECO_SIM_SEED"])]
    return list(range(int(os.environ.get("ECO_SIM_SEEDS") or default)))


def sim_seeds(default: int = 5) -> Callable[[Callable[..., Any]], Any]:
    """Decorator: run a test once per seed (argument ``seed``); a failure names the seed.

    ``ECO_SIM_SEEDS=200 pytest ...`` runs more seeds; ``ECO_SIM_SEED=17`` just one.
    """
    import pytest

    def decorate(test: Callable[..., Any]) -> Any:
        @functools.wraps(test)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return test(*args, **kwargs)
            except Exception as exc:
                seed = kwargs.get("seed")
                if not isinstance(exc, SimulationFailure):
                    exc.add_note(f"simulation seed {seed}; rerun with: {rerun_command(seed)}")
                raise

        return pytest.mark.parametrize("seed", seeds(default), ids=lambda s: f"seed={s}")(wrapper)

    return decorate
