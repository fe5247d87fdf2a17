"""Running a plan's ecosystems on a set of nodes: the spawn service and the ecosystem hosts.

Every node runs an :class:`EcosystemService`.  It is

* the node's **factory**: a ``SPAWN_REQ`` envelope (on the ``std.control``
  channel) asks it to start worker ``index`` of an ecosystem; it starts the
  worker under the node's local supervisor for that ecosystem (one per
  ecosystem, built from the plan's ``supervision`` block: strategy, restart
  type, intensity, shutdown timeout) and answers ``SPAWN_REPLY`` with the PID
  or an error.  Each time a worker (re)starts it casts
  :class:`~eco.runtime.component.WorkerStarted` to its coordinator, so the
  coordinator also learns about workers its supervisor restarted;
* on the ecosystem's **home node** (the first node of the cluster in the
  plan), the **host** of each ecosystem: a process that starts the
  coordinator, then the workers, round-robin over the nodes the
  ``distribution`` policy allows (``cluster_wide``: all nodes in plan order,
  ``explicit_nodes``: those listed, ``local_only``: the home node), and
  reports the coordinator's progress and outcome (``Coordinator.progress`` /
  ``complete`` / ``fail``) through the ``report`` callback.

Lost nodes are forwarded to each local coordinator as
:class:`~eco.runtime.component.NodeDown`.  Placement policies proper
(least-loaded, topology-aware) arrive with the cluster layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from eco.plan import Cluster, Ecosystem, Plan

from .component import Coordinator, JobOutcome, JobProgress, NodeDown, Worker, WorkerStarted, load_component
from .errors import ComponentLoadError, EcoRuntimeError, MailboxFull
from .node import CONTROL_CHANNEL, Node, NodeError
from .pid import PID
from .process import Context
from .signals import Down
from .supervisor import ChildSpec, Supervisor, start_child
from .transport import Connection
from .wire import Envelope, Kind

__all__ = ["EcosystemService", "home_node", "worker_nodes"]

log = logging.getLogger("eco.runtime.node")

Report = Callable[..., None]


def home_node(cluster: Cluster) -> str:
    """The node that hosts coordinators: the first node declared in the cluster."""
    if not cluster.nodes:
        raise NodeError(f"cluster {cluster.name} declares no nodes")
    return cluster.nodes[0].name


def worker_nodes(eco: Ecosystem, cluster: Cluster) -> list[str]:
    """The nodes workers are spread over, in round-robin order, per the distribution policy."""
    names = [n.name for n in cluster.nodes]
    policy = eco.distribution.policy
    if policy == "local_only":
        return [home_node(cluster)]
    if policy == "explicit_nodes":
        chosen = [n for n in eco.distribution.nodes if n in names]
        return chosen or [home_node(cluster)]
    return names


async def _worker_entry(ctx: Context, cls: type[Worker], coordinator: PID) -> None:
    # Runs on every (re)start, so the coordinator always hears about the current PID.
    try:
        ctx.cast(coordinator, WorkerStarted(ctx.self))
    except (MailboxFull, EcoRuntimeError) as exc:
        ctx.log.warning("could not tell coordinator %s about worker %s: %s", coordinator, ctx.self, exc)
    await cls.as_process()(ctx)


class EcosystemService:
    """The spawn service and ecosystem hosts of one node (see the module docstring)."""

    def __init__(self, node: Node, plan: Plan, cluster: Cluster, *, report: Report | None = None,
                 spawn_timeout: float = 10.0) -> None:
        self.node = node
        self.kernel = node.kernel
        self.plan = plan
        self.cluster = cluster
        self.report: Report = report or (lambda event, **fields: None)
        self.spawn_timeout = spawn_timeout
        self._supervisors: dict[str, PID] = {}
        self._sup_lock = trio.Lock()
        self._pending: dict[int, tuple[str, trio.Event, list[Any]]] = {}
        self._next_ref = 0
        self._coordinators: dict[str, PID] = {}
        self._nursery: trio.Nursery | None = None
        node.handle(Kind.SPAWN_REQ, self._on_spawn_request)
        node.handle(Kind.SPAWN_REPLY, self._on_spawn_reply)
        node.on_node_down(self._on_node_down)
        carries = {}
        for channel in plan.channels:
            for message in channel.carries:
                carries.setdefault(message, channel.name)
        node.use_channels(carries)

    @property
    def is_home(self) -> bool:
        return self.node.name == home_node(self.cluster)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve spawn requests; on the home node, start every ecosystem once all nodes are connected."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self.node.wait_connected(n.name for n in self.cluster.nodes)
            self.report("ready", node=self.node.name, peers=self.node.peers)
            if self.is_home:
                for eco in self.plan.ecosystems:
                    if eco.cluster in (None, self.cluster.name):
                        await self.kernel.spawn(_ecosystem_host, self, eco, name=f"eco.host.{eco.name}")
            await trio.sleep_forever()

    # ------------------------------------------------------------ spawning

    async def spawn_worker(self, node: str, ecosystem: str, index: int, coordinator: PID) -> PID:
        """Start worker ``index`` of ``ecosystem`` on ``node`` (this one or a peer); NodeError on failure."""
        if node == self.node.name:
            return await self._start_local(ecosystem, index, coordinator)
        self._next_ref += 1
        ref = self._next_ref
        done = trio.Event()
        box: list[Any] = []
        self._pending[ref] = (node, done, box)
        try:
            request = {"ref": ref, "ecosystem": ecosystem, "index": index, "coordinator": coordinator}
            if not self.node.send_envelope(node, Envelope(Kind.SPAWN_REQ, CONTROL_CHANNEL, None, None, 0, request)):
                raise NodeError(f"cannot start worker {index} of {ecosystem} on node {node}: not connected")
            with trio.move_on_after(self.spawn_timeout):
                await done.wait()
            if not box:
                raise NodeError(f"node {node} did not answer a spawn request within {self.spawn_timeout:g}s")
            reply = box[0]
            if isinstance(reply, str):
                raise NodeError(reply)
            return reply
        finally:
            self._pending.pop(ref, None)

    def _on_spawn_request(self, conn: Connection, env: Envelope) -> None:
        req = env.payload
        if not (isinstance(req, dict) and type(req.get("ref")) is int and isinstance(req.get("ecosystem"), str)
                and type(req.get("index")) is int and type(req.get("coordinator")) is PID):
            log.warning("node %s: malformed spawn request from %s", self.node.name, conn.peer.node)
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._serve_spawn, conn.peer.node, req)

    async def _serve_spawn(self, peer: str, req: dict) -> None:
        try:
            pid = await self._start_local(req["ecosystem"], req["index"], req["coordinator"])
            reply: dict[str, Any] = {"ref": req["ref"], "pid": pid}
        except NodeError as exc:
            reply = {"ref": req["ref"], "error": str(exc)}
        self.node.send_envelope(peer, Envelope(Kind.SPAWN_REPLY, CONTROL_CHANNEL, None, None, 0, reply))

    def _on_spawn_reply(self, conn: Connection, env: Envelope) -> None:
        reply = env.payload
        if not isinstance(reply, dict):
            return
        pending = self._pending.get(reply.get("ref"))  # type: ignore[arg-type]
        if pending is None or pending[0] != conn.peer.node:
            return
        _, done, box = pending
        pid = reply.get("pid")
        box.append(pid if type(pid) is PID else f"node {conn.peer.node}: {reply.get('error', 'malformed spawn reply')}")
        done.set()

    async def _start_local(self, ecosystem: str, index: int, coordinator: PID) -> PID:
        try:
            eco = self.plan.ecosystem(ecosystem)
        except KeyError:
            raise NodeError(f"node {self.node.name} does not know ecosystem {ecosystem!r}") from None
        try:
            cls = load_component(eco.workers.text, Worker)
        except ComponentLoadError as exc:
            raise NodeError(f"node {self.node.name}: {exc}") from None
        sup = await self._supervisor(eco)
        spec = ChildSpec(
            id=f"worker-{index}",
            start=_worker_entry,
            args=(cls, coordinator),
            restart=eco.supervision.restart,
            shutdown=eco.supervision.shutdown,
        )
        try:
            return await start_child(self.kernel, sup, spec)
        except EcoRuntimeError as exc:
            raise NodeError(f"node {self.node.name}: cannot start worker {index} of {ecosystem}: {exc}") from None

    async def _supervisor(self, eco: Ecosystem) -> PID:
        async with self._sup_lock:
            pid = self._supervisors.get(eco.name)
            if pid is None or not self.kernel.is_alive(pid):
                pid = await self.kernel.spawn(Supervisor.from_plan(eco.supervision), name=f"eco.sup.{eco.name}")
                self._supervisors[eco.name] = pid
            return pid

    def _on_node_down(self, node: str) -> None:
        for ref, (target, done, box) in list(self._pending.items()):
            if target == node:
                box.append(f"node {node} was lost before answering a spawn request")
                done.set()
        for coordinator in list(self._coordinators.values()):
            try:
                self.kernel.cast(coordinator, NodeDown(node))
            except EcoRuntimeError:
                pass


async def _ecosystem_host(ctx: Context, service: EcosystemService, eco: Ecosystem) -> None:
    """Starts one ecosystem's coordinator and workers and reports the job's progress and outcome."""
    report = service.report
    started = trio.current_time()
    try:
        cls = load_component(eco.coordinator.text, Coordinator)
    except ComponentLoadError as exc:
        report("failed", ecosystem=eco.name, reason=str(exc))
        return
    coordinator = await ctx.spawn(cls, monitor=True)
    service._coordinators[eco.name] = coordinator
    nodes = worker_nodes(eco, service.cluster)
    try:
        for index in range(eco.worker_count):
            await service.spawn_worker(nodes[index % len(nodes)], eco.name, index, coordinator)
    except NodeError as exc:
        report("failed", ecosystem=eco.name, reason=str(exc))
        ctx.kernel.kill(coordinator)
        return
    report("started", ecosystem=eco.name, workers=eco.worker_count, nodes=sorted(set(nodes[: max(eco.worker_count, 1)])))
    try:
        while True:
            msg = await ctx.receive()
            kind = type(msg)
            if kind is JobProgress:
                report("progress", ecosystem=eco.name, done=msg.done, total=msg.total, unit=msg.unit)
            elif kind is JobOutcome:
                elapsed = round(trio.current_time() - started, 3)
                if msg.ok:
                    report("complete", ecosystem=eco.name, result=msg.value, elapsed=elapsed)
                else:
                    report("failed", ecosystem=eco.name, reason=str(msg.value), elapsed=elapsed)
                return
            elif kind is Down and msg.pid == coordinator:
                report("failed", ecosystem=eco.name, reason=f"the coordinator exited without finishing the job ({msg.reason})")
                return
    finally:
        service._coordinators.pop(eco.name, None)
