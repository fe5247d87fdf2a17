"""The ``ecoc run`` driver: runs a compiled plan on N node OS processes on loopback.

The launcher

1. rewrites the plan's cluster to N loopback nodes ``n1..nN`` on free ports and
   points its cookie at ``ECO_COOKIE`` (a fresh random cookie, handed to the
   nodes through the environment only: never on a command line or in a log);
2. writes the plan to ``<state-dir>/plan.json`` (default: a temporary
   directory, removed after a successful run, kept for inspection otherwise);
3. starts each node as ``python -m eco.runtime.node_main`` in its own process
   group, with node ``i`` joining nodes ``1..i-1`` (a full mesh), its stderr
   going to ``<state-dir>/<node>.log`` and ``PYTHONPATH`` extended with the
   directory of the ``.eco`` file so ``module:Class`` components import;
4. follows the nodes' reports (see ``node_report``) to show progress, and
   when every ecosystem has completed or failed, or on Ctrl-C/SIGTERM, a
   crashed node or the timeout, stops all nodes: SIGTERM, then SIGKILL after a
   grace period.  Nodes also exit by themselves when the launcher dies (their
   stdin pipe reaches EOF), so no process is ever left behind.

Each node gets ``ECO_DATA_DIR=<state-dir>/data`` (emptied when a run starts):
its Raft logs for ``leader: consensus`` ecosystems go to ``data/<node>/`` and
relative checkpoint URLs resolve under ``data/``.  A ``leader: consensus``
ecosystem's coordinator runs on whichever node was last ``elected``; losing
that node is not fatal: another node is elected and takes over.

Exit status: 0 when every ecosystem completed, 1 when a job failed, a node
died or the timeout passed, 130 after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trio

from eco.plan import Cluster, NodeSpec, Plan, Secret, Security, save_plan

from .chaos import ChaosPlan, parse_chaos
from .consensus import consensus_enabled
from .ecosystem_leader import DATA_DIR_ENV
from .node_report import LineSplitter
from .progress import ProgressView

COOKIE_ENV = "ECO_COOKIE"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunOptions:
    nodes: int | None = None
    state_dir: Path | None = None
    timeout: float | None = None
    format: str = "human"  # human | json
    python_path: list[str] = field(default_factory=list)
    grace: float = 5.0  # seconds between SIGTERM and SIGKILL
    host: str = "127.0.0.1"
    chaos: str | None = None  # kill-node[:AFTER[:restart]] | kill-coordinator[:AFTER] (see eco.runtime.chaos)


class LaunchError(Exception):
    """A problem that stops ``ecoc run`` before any node starts (clear message, exit 2)."""


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports that were free a moment ago (all held open until all are picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def prepare_plan(plan: Plan, nodes: int | None, host: str = "127.0.0.1") -> Plan:
    """The plan rewritten for a loopback run: one cluster of ``nodes`` local nodes, cookie from ``ECO_COOKIE``."""
    if not plan.ecosystems:
        raise LaunchError("the plan declares no ecosystem: there is nothing to run")
    base: Cluster | None = None
    names = {e.cluster for e in plan.ecosystems if e.cluster}
    if len(names) > 1:
        raise LaunchError(f"`ecoc run` runs one cluster at a time; the ecosystems use {', '.join(sorted(names))}")
    if names:
        base = plan.cluster(next(iter(names)))
    elif len(plan.clusters) == 1:
        base = plan.clusters[0]
    count = nodes if nodes is not None else (len(base.nodes) if base is not None and base.nodes else 1)
    if count < 1:
        raise LaunchError(f"--nodes must be at least 1, got {count}")
    ports = free_ports(count, host)
    specs = tuple(NodeSpec(name=f"n{i + 1}", host=host, port=p) for i, p in enumerate(ports))
    security = Security(cookie=Secret(source="env", name=COOKIE_ENV), tls=None)
    if base is not None:
        cluster = base.model_copy(update={"nodes": specs, "seeds": (specs[0].name,), "security": security})
    else:
        cluster = Cluster(name="local", nodes=specs, seeds=(specs[0].name,), security=security)
    ecosystems = tuple(e.model_copy(update={"cluster": cluster.name}) for e in plan.ecosystems)
    return plan.model_copy(update={"clusters": (cluster,), "ecosystems": ecosystems})


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def describe_exit(code: int) -> str:
    return f"killed by {_signal_name(code)}" if code < 0 else f"exit status {code}"


@dataclass
class _NodeProc:
    name: str
    address: str
    log_path: Path
    proc: Any = None  # trio.Process
    exited: trio.Event = field(default_factory=trio.Event)
    returncode: int | None = None
    up: bool = False
    ready: bool = False  # reported `ready`: it reaches every node of the cluster
    chaos_victim: bool = False  # killed on purpose by --chaos: its death is expected


@dataclass
class _EcoState:
    name: str
    done: int = 0
    total: int | None = None
    unit: str = "items"
    status: str = "starting"  # starting | running | complete | failed
    result: Any = None
    reason: str | None = None
    elapsed: float | None = None
    placement: dict[str, str] = field(default_factory=dict)  # worker slot -> node


@dataclass
class _ChaosState:
    plan: ChaosPlan
    victim: str | None = None
    killed_at: float | None = None  # launcher clock (monotonic)
    recovered_at: float | None = None
    waiting: set[str] = field(default_factory=set)  # ecosystems that still have to re-spawn the victim's workers
    moved: int = 0
    restarted: bool = False
    rejoined_at: float | None = None
    note: str | None = None
    elected_at: float | None = None  # kill-coordinator: another node reported `elected`
    elected: str | None = None  # ... that node
    term: int | None = None  # ... and its term

    def summary(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"action": self.plan.action, "node": self.victim, "after": self.plan.after}
        if self.killed_at is None:
            doc["note"] = self.note or "the job finished before the node was killed"
            return doc
        if self.plan.action == "kill-coordinator":
            # failover: kill -> a new coordinator is active; takeover: ... and its workers run.
            doc["new_coordinator_node"] = self.elected
            doc["term"] = self.term
            doc["failover_seconds"] = None if self.elected_at is None else round(self.elected_at - self.killed_at, 4)
            doc["takeover_seconds"] = None if self.recovered_at is None else round(self.recovered_at - self.killed_at, 4)
            if self.note:
                doc["note"] = self.note
            return doc
        doc["workers_moved"] = self.moved
        doc["recovery_seconds"] = None if self.recovered_at is None else round(self.recovered_at - self.killed_at, 4)
        if self.plan.restart:
            doc["restarted"] = self.restarted
            doc["rejoined_seconds"] = None if self.rejoined_at is None else round(self.rejoined_at - self.killed_at, 4)
        if self.note:
            doc["note"] = self.note
        return doc


class Launcher:
    """Runs one prepared plan; ``await run()`` returns the exit status."""

    def __init__(self, plan: Plan, options: RunOptions, *, out: TextIO | None = None, err: TextIO | None = None):
        self.options = options
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.plan = prepare_plan(plan, options.nodes, options.host)
        self.cluster = self.plan.clusters[0]
        self.ecosystems = {e.name: _EcoState(e.name) for e in self.plan.ecosystems}
        self._own_state_dir = options.state_dir is None
        self.state_dir = Path(options.state_dir) if options.state_dir else Path(tempfile.mkdtemp(prefix="eco-run-"))
        self.nodes = [_NodeProc(n.name, n.address, self.state_dir / f"{n.name}.log") for n in self.cluster.nodes]
        self.failure: str | None = None
        self.interrupted = False
        self.timed_out = False
        self._shutting_down = False
        self._finished = trio.Event()
        self._view = ProgressView(self.err) if options.format == "human" else ProgressView(self.err, tty=False)
        self._started = time.monotonic()
        self.home = self.cluster.nodes[0].name
        self.chaos: _ChaosState | None = None
        self._job_started = trio.Event()
        self._recovered = trio.Event()
        self._plan_path: Path | None = None
        self._env: dict[str, str] = {}
        if options.chaos:
            try:
                chaos = parse_chaos(options.chaos)
            except ValueError as exc:
                raise LaunchError(str(exc)) from None
            if chaos.action == "kill-coordinator":
                if not any(consensus_enabled(e) for e in self.plan.ecosystems):
                    raise LaunchError("--chaos kill-coordinator needs an ecosystem with `state { leader: consensus }`: "
                                      "without it the coordinators cannot move to another node")
                if len(self.nodes) < 3:
                    raise LaunchError("--chaos kill-coordinator needs at least 3 nodes: after the kill, "
                                      "a majority must remain to elect a new coordinator")
            elif len(self.nodes) < 2:
                raise LaunchError("--chaos kill-node needs at least 2 nodes: the first one hosts the coordinators")
            self.chaos = _ChaosState(chaos)
        self._elected: dict[str, tuple[str, int]] = {}  # consensus ecosystem -> (node, term) last elected
        self._elected_event = trio.Event()
        self._classic = [e.name for e in self.plan.ecosystems if not consensus_enabled(e)]

    # ------------------------------------------------------------ main flow

    async def run(self) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # A run is a new job: consensus logs and checkpoints of an earlier run in this state dir are dropped.
        shutil.rmtree(self.state_dir / "data", ignore_errors=True)
        plan_path = self.state_dir / "plan.json"
        save_plan(self.plan, plan_path)
        env = self._node_env()
        self._plan_path, self._env = plan_path, env
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, nursery.cancel_scope)
                self._status(f"starting {len(self.nodes)} node(s); state in {self.state_dir}")
                for i, node in enumerate(self.nodes):
                    joins = [n.address for n in self.nodes[:i]]
                    await nursery.start(self._run_node, node, plan_path, joins, env)
                if self.chaos is not None:
                    nursery.start_soon(self._inject_chaos, nursery)
                with trio.move_on_after(self.options.timeout if self.options.timeout else float("inf")) as scope:
                    await self._finished.wait()
                if scope.cancelled_caught:
                    self.timed_out = True
                    self._fail(self._timeout_message())
                await self._shutdown()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                self._kill_all_now()
            self._view.close()
        return self._report()

    def _node_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[COOKIE_ENV] = secrets.token_hex(32)
        extra = [str(Path(p).resolve()) for p in self.options.python_path]
        if env.get("PYTHONPATH"):
            extra.append(env["PYTHONPATH"])
        if extra:
            env["PYTHONPATH"] = os.pathsep.join(extra)
        env["PYTHONUNBUFFERED"] = "1"
        env[DATA_DIR_ENV] = str((self.state_dir / "data").resolve())
        return env

    async def _run_node(self, node: _NodeProc, plan_path: Path, joins: list[str], env: dict, task_status=trio.TASK_STATUS_IGNORED):
        cmd = [sys.executable, "-m", "eco.runtime.node_main", "--plan", str(plan_path), "--name", node.name,
               "--listen", node.address, "--report", "--exit-on-stdin-eof"]
        for j in joins:
            cmd += ["--join", j]
        with open(node.log_path, "ab") as log:
            node.proc = await trio.lowlevel.open_process(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True
            )
        task_status.started()
        splitter = LineSplitter(lambda ev: self._on_event(node, ev), lambda text: self._on_text(node, text))
        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(self._pump_stdout, node, splitter)
                node.returncode = await node.proc.wait()
        finally:
            node.exited.set()
        if self._shutting_down:
            return
        if node.chaos_victim:
            self._status(f"chaos: node {node.name} is gone ({describe_exit(node.returncode)})")
            return
        msg = f"node {node.name} (pid {node.proc.pid}) died unexpectedly: {describe_exit(node.returncode)}"
        if node.name != self.home or not self._classic:
            if any(n == node.name for n, _ in self._elected.values()):
                self._status(f"{msg}; it hosted an elected coordinator: another node takes over")
                return
            # Its workers are re-spawned elsewhere by the coordinators' node; the run goes on.
            self._status(f"{msg}; its workers are re-spawned on the other nodes")
            return
        msg += " (it hosts the coordinators, which cannot move to another node in this version)"
        tail = self._log_tail(node)
        if tail:
            msg += "\n" + "\n".join(f"  {node.name}| {line}" for line in tail)
        self._fail(msg)

    # ---------------------------------------------------------------- chaos

    def _pick_victim(self) -> _NodeProc:
        if self.chaos is not None and self.chaos.plan.action == "kill-coordinator":
            running = [n for name, (n, _) in self._elected.items() if self.ecosystems[name].status == "running"]
            target = running[-1] if running else next(iter(self._elected.values()))[0]
            return next(n for n in self.nodes if n.name == target)
        # The last node that runs workers (never the home node, which hosts the coordinators).
        used = {n for e in self.ecosystems.values() for n in e.placement.values()}
        others = [n for n in self.nodes if n.name != self.home]
        hosting = [n for n in others if n.name in used]
        return (hosting or others)[-1]

    async def _inject_chaos(self, nursery: trio.Nursery) -> None:
        chaos = self.chaos
        assert chaos is not None
        await self._job_started.wait()
        if chaos.plan.action == "kill-coordinator":
            await self._elected_event.wait()
        await trio.sleep(chaos.plan.after)
        if self._finished.is_set():
            return
        victim = self._pick_victim()
        chaos.victim = victim.name
        chaos.waiting = {e.name for e in self.ecosystems.values()
                         if victim.name in e.placement.values() and e.status == "running"}
        chaos.moved = sum(1 for e in self.ecosystems.values() for n in e.placement.values() if n == victim.name)
        victim.chaos_victim = True
        chaos.killed_at = time.monotonic()
        self._signal(victim, signal.SIGKILL)
        if chaos.plan.action == "kill-coordinator":
            chaos.waiting = {name for name, (n, _) in self._elected.items()
                             if n == victim.name and self.ecosystems[name].status == "running"}
            self._status(f"chaos: SIGKILL node {victim.name} (pid {victim.proc.pid}), the active coordinator's node")
            if not chaos.waiting:
                chaos.note = "no job was running on the coordinator's node any more"
            return
        self._status(f"chaos: SIGKILL node {victim.name} (pid {victim.proc.pid}), running {chaos.moved} worker(s)")
        if not chaos.waiting:
            chaos.recovered_at = chaos.killed_at
        await victim.exited.wait()
        if not chaos.plan.restart or self._finished.is_set():
            return
        while chaos.recovered_at is None and not self._finished.is_set():
            await self._recovered.wait()
        if self._finished.is_set():
            return
        fresh = _NodeProc(victim.name, victim.address, victim.log_path)
        self.nodes[self.nodes.index(victim)] = fresh
        joins = [n.address for n in self.nodes if n is not fresh]
        await nursery.start(self._run_node, fresh, self._plan_path, joins, self._env)
        chaos.restarted = True
        self._status(f"chaos: restarted node {fresh.name} (pid {fresh.proc.pid})")

    async def _pump_stdout(self, node: _NodeProc, splitter: LineSplitter) -> None:
        try:
            while True:
                data = await node.proc.stdout.receive_some(65536)
                if not data:
                    break
                splitter.feed(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        splitter.close()

    async def _watch_signals(self, cancel_scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not self.interrupted:
                    self.interrupted = True
                    self._status(f"{signal.Signals(signum).name} received: stopping all nodes")
                    self._finished.set()
                else:
                    self._status("second interrupt: killing all nodes now")
                    self._kill_all_now()

    async def _shutdown(self) -> None:
        """SIGTERM every node, wait up to the grace period, then SIGKILL the rest."""
        self._shutting_down = True
        for node in self.nodes:
            self._signal(node, signal.SIGTERM)
        with trio.move_on_after(self.options.grace):
            for node in self.nodes:
                await node.exited.wait()
        for node in self.nodes:
            if not node.exited.is_set():
                self._status(f"node {node.name} did not stop within {self.options.grace:g}s: killing it")
                self._signal(node, signal.SIGKILL)
        with trio.move_on_after(5):
            for node in self.nodes:
                await node.exited.wait()

    def _signal(self, node: _NodeProc, signum: int) -> None:
        if node.proc is None or node.proc.returncode is not None:
            return
        try:
            os.killpg(node.proc.pid, signum)  # the node's whole process group: nothing it started survives
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_all_now(self) -> None:
        self._shutting_down = True
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                os.killpg(node.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if node.proc.returncode is None:
                try:
                    os.waitpid(node.proc.pid, 0)  # reap it so no zombie is left either
                except ChildProcessError:
                    pass
                except OSError:
                    pass

    # --------------------------------------------------------------- events

    def _on_event(self, node: _NodeProc, ev: dict) -> None:
        kind = ev.get("ev")
        if kind == "up":
            node.up = True
        elif kind == "ready":
            node.ready = True
            self._status(f"node {node.name} connected to all {len(self.nodes) - 1} peer(s)")
            chaos = self.chaos
            if chaos is not None and chaos.restarted and node.name == chaos.victim and chaos.rejoined_at is None:
                chaos.rejoined_at = time.monotonic()
                self._status(f"chaos: node {node.name} rejoined after {chaos.rejoined_at - chaos.killed_at:.2f}s")
        elif kind == "recovered":
            eco = self.ecosystems.get(ev.get("ecosystem"))
            if eco is not None and isinstance(ev.get("workers"), dict):
                eco.placement.update({str(k): str(v) for k, v in ev["workers"].items()})
                self._status(f"ecosystem {eco.name}: the {len(ev['workers'])} worker(s) of node {ev.get('node')} "
                             f"run on {', '.join(sorted(set(ev['workers'].values())))} now")
                chaos = self.chaos
                if chaos is not None and ev.get("node") == chaos.victim and chaos.killed_at is not None:
                    chaos.waiting.discard(eco.name)
                    if not chaos.waiting and chaos.recovered_at is None:
                        chaos.recovered_at = time.monotonic()
                        self._status(f"chaos: all workers of {chaos.victim} run elsewhere "
                                     f"{chaos.recovered_at - chaos.killed_at:.3f}s after SIGKILL")
                        self._recovered.set()
        elif kind == "peer_down" and not self._shutting_down:
            self._status(f"node {node.name} lost its connection to {ev.get('peer')}: {ev.get('reason')}")
        elif kind == "elected":
            eco = self.ecosystems.get(ev.get("ecosystem"))
            if eco is not None and type(ev.get("term")) is int:
                self._elected[eco.name] = (node.name, ev["term"])
                self._elected_event.set()
                self._status(f"ecosystem {eco.name}: node {node.name} is elected to host the coordinator (term {ev['term']})")
                chaos = self.chaos
                if (chaos is not None and chaos.killed_at is not None and node.name != chaos.victim
                        and eco.name in chaos.waiting and chaos.elected_at is None):
                    chaos.elected_at, chaos.elected, chaos.term = time.monotonic(), node.name, ev["term"]
                    self._status(f"chaos: node {node.name} elected {chaos.elected_at - chaos.killed_at:.3f}s after SIGKILL")
        elif kind == "deposed" and not self._shutting_down:
            self._status(f"ecosystem {ev.get('ecosystem')}: node {node.name} lost the lead (term {ev.get('term')}); "
                         f"its coordinator stopped")
        elif kind == "started":
            eco = self.ecosystems.get(ev.get("ecosystem"))
            if eco is not None and eco.status not in ("complete", "failed"):
                eco.status = "running"
                if isinstance(ev.get("placement"), dict):
                    eco.placement = {str(k): str(v) for k, v in ev["placement"].items()}
                self._job_started.set()
                self._status(f"ecosystem {eco.name} started: {ev.get('workers')} worker(s) on {len(self.nodes)} node(s)")
                chaos = self.chaos
                if (chaos is not None and chaos.plan.action == "kill-coordinator" and chaos.killed_at is not None
                        and node.name != chaos.victim and eco.name in chaos.waiting):
                    chaos.waiting.discard(eco.name)
                    if not chaos.waiting and chaos.recovered_at is None:
                        chaos.recovered_at = time.monotonic()
                        self._status(f"chaos: the new coordinator on {node.name} runs its workers "
                                     f"{chaos.recovered_at - chaos.killed_at:.3f}s after SIGKILL")
                        self._recovered.set()
        elif kind == "progress":
            eco = self.ecosystems.get(ev.get("ecosystem"))
            if eco is not None and isinstance(ev.get("done"), int):
                eco.done, eco.total, eco.unit = ev["done"], ev.get("total"), str(ev.get("unit") or "items")
                self._view.update(eco.name, eco.done, eco.total, eco.unit)
        elif kind in ("complete", "failed"):
            eco = self.ecosystems.get(ev.get("ecosystem"))
            if eco is not None and eco.status not in ("complete", "failed"):
                eco.status = kind
                eco.result = ev.get("result")
                eco.reason = ev.get("reason")
                eco.elapsed = ev.get("elapsed")
                if kind == "failed":
                    self._fail(f"ecosystem {eco.name} failed: {eco.reason}")
                if all(e.status in ("complete", "failed") for e in self.ecosystems.values()):
                    self._finished.set()
        elif kind == "fatal":
            self._fail(f"node {node.name}: {ev.get('message')}")

    def _on_text(self, node: _NodeProc, text: str) -> None:
        self._status(f"{node.name}| {text}")

    def _timeout_message(self) -> str:
        """What the run was still waiting for when the timeout passed (the node logs may say nothing)."""
        waiting = [f"ecosystem {e.name} {'never started' if e.status == 'starting' else 'still running'}"
                   + (f" ({e.done}/{e.total} {e.unit})" if e.status == "running" and e.total is not None else "")
                   for e in self.ecosystems.values() if e.status in ("starting", "running")]
        silent = [n.name for n in self.nodes if not n.up]
        if silent:
            waiting.append(f"never up: {', '.join(silent)}")
        unready = [n.name for n in self.nodes if n.up and not n.ready]
        if unready:
            waiting.append(f"not (yet) reaching every node of the cluster: {', '.join(unready)}")
        return f"timed out after {self.options.timeout:g}s" + (f": {'; '.join(waiting)}" if waiting else "")

    def _fail(self, message: str) -> None:
        if self.failure is None and not self.interrupted:
            self.failure = message
            self._status(f"error: {message}")
        self._finished.set()

    def _status(self, text: str) -> None:
        if self.options.format == "human":
            self._view.status(text)

    def _log_tail(self, node: _NodeProc, lines: int = 8) -> list[str]:
        try:
            text = node.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if ln.strip()][-lines:]

    # -------------------------------------------------------------- summary

    def _report(self) -> int:
        elapsed = time.monotonic() - self._started
        if self.interrupted:
            code = EXIT_INTERRUPTED
        elif self.failure is not None or any(e.status != "complete" for e in self.ecosystems.values()):
            code = EXIT_FAILED
        else:
            code = EXIT_OK
        if self.options.format == "json":
            doc = {
                "version": 1,
                "status": {EXIT_OK: "ok", EXIT_FAILED: "failed", EXIT_INTERRUPTED: "interrupted"}[code],
                "error": self.failure,
                "elapsed": round(elapsed, 3),
                "nodes": [n.name for n in self.nodes],
                "ecosystems": {
                    e.name: {"status": e.status, "result": e.result, "reason": e.reason, "elapsed": e.elapsed}
                    for e in self.ecosystems.values()
                },
            }
            if self.chaos is not None:
                doc["chaos"] = self.chaos.summary()
            self.out.write(json.dumps(doc) + "\n")
            # Also on stderr: CI logs often show only stderr, and stdout may go to a file or a parser.
            if self.interrupted:
                self.err.write("interrupted: all nodes stopped\n")
            elif self.failure is not None:
                self.err.write(f"error: {self.failure}\n")
            for eco in self.ecosystems.values():
                if eco.status == "failed" and eco.reason and eco.reason not in (self.failure or ""):
                    self.err.write(f"ecosystem {eco.name} failed: {eco.reason}\n")
        else:
            self.out.write(render_summary(self.ecosystems.values(), len(self.nodes), elapsed))
            if self.chaos is not None:
                self.out.write(render_chaos(self.chaos.summary()))
            if self.interrupted:
                self.err.write("interrupted: all nodes stopped\n")
            elif self.failure is not None:
                self.err.write(f"error: {self.failure}\n")
        self.out.flush()
        if code == EXIT_OK and self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        elif code != EXIT_OK:
            self.err.write(f"node logs and the plan are kept in {self.state_dir}\n")
        return code


def _fmt(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


def render_summary(ecosystems, node_count: int, elapsed: float) -> str:
    """A readable summary of every ecosystem's result (generic over JSON results)."""
    lines: list[str] = []
    for eco in ecosystems:
        head = f"ecosystem {eco.name}: {eco.status}"
        if eco.elapsed is not None:
            head += f" in {eco.elapsed:.2f}s"
        lines.append(head)
        if eco.status == "failed" and eco.reason:
            lines.append(f"  reason: {eco.reason}")
        result = eco.result
        if isinstance(result, dict):
            width = max((len(str(k)) for k in result), default=0)
            for key, value in result.items():
                if isinstance(value, list) and value and all(isinstance(v, list) and len(v) == 2 for v in value):
                    lines.append(f"  {key}:")
                    for i, (a, b) in enumerate(value, 1):
                        lines.append(f"    {i:>2}. {str(a):<24} {_fmt(b)}")
                elif isinstance(value, dict):
                    lines.append(f"  {key}:")
                    for k, v in value.items():
                        lines.append(f"    {str(k):<24} {_fmt(v)}")
                else:
                    lines.append(f"  {str(key) + ':':<{width + 1}} {_fmt(value)}")
        elif result is not None:
            lines.append(f"  result: {_fmt(result)}")
    lines.append(f"{node_count} node(s), {elapsed:.2f}s wall time")
    return "\n".join(lines) + "\n"


def render_chaos(doc: dict[str, Any]) -> str:
    """One line about the injected fault and the recovery."""
    if doc["action"] == "kill-coordinator" and "failover_seconds" in doc:
        line = f"chaos: SIGKILL node {doc['node']} (the active coordinator's) after {doc['after']:g}s; "
        if doc["failover_seconds"] is None:
            return line + f"no other node took over ({doc.get('note') or 'the job ended first'})\n"
        line += f"node {doc['new_coordinator_node']} elected {doc['failover_seconds']:.3f}s later (term {doc['term']})"
        if doc["takeover_seconds"] is not None:
            line += f", its workers ran {doc['takeover_seconds']:.3f}s after the kill"
        return line + "\n"
    if doc.get("recovery_seconds", "absent") == "absent":
        return f"chaos: {doc['action']} did not happen: {doc.get('note')}\n"
    line = f"chaos: SIGKILL node {doc['node']} after {doc['after']:g}s; "
    if doc["recovery_seconds"] is None:
        line += f"its {doc['workers_moved']} worker(s) were not all re-spawned"
    else:
        line += f"its {doc['workers_moved']} worker(s) ran elsewhere {doc['recovery_seconds']:.3f}s later"
    if "restarted" in doc:
        if doc.get("rejoined_seconds") is not None:
            line += f"; restarted, rejoined after {doc['rejoined_seconds']:.2f}s"
        else:
            line += "; restarted, did not rejoin before the end" if doc["restarted"] else "; not restarted"
    return line + "\n"


def run_plan(plan: Plan, options: RunOptions, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``plan`` on local node processes; returns the exit status (never raises for expected problems)."""
    err = err if err is not None else sys.stderr
    try:
        launcher = Launcher(plan, options, out=out, err=err)
    except LaunchError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    try:
        return trio.run(launcher.run)
    except KeyboardInterrupt:  # only possible before the signal watcher is installed
        launcher._kill_all_now()
        err.write("interrupted: all nodes stopped\n")
        return EXIT_INTERRUPTED
    except OSError as exc:
        launcher._kill_all_now()
        err.write(f"error: cannot start the nodes: {exc}\n")
        return EXIT_FAILED
