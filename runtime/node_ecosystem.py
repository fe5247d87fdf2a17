"""Running a plan's ecosystems on a set of nodes: the spawn service and the ecosystem hosts.

Every node runs an :class:`EcosystemService`.  It is

* the node's **factory**: a ``SPAWN_REQ`` envelope (on the ``std.control``
  channel) asks it to start slot ``index`` of an ecosystem at a
  ``generation``; it checks ``allow spawn from`` against the requesting
  member (:func:`~eco.runtime.placement.spawn_allowed`), starts the worker
  under the node's local supervisor for that ecosystem (built from the plan's
  ``supervision`` block) and answers ``SPAWN_REPLY`` with the PID, or with an
  error the requester raises (a refusal is never dropped silently).  A
  ``fence`` request stops every worker of an ecosystem the requester no
  longer places on this node.  Each time a worker (re)starts it casts
  :class:`~eco.runtime.component.WorkerStarted` (with its slot and
  generation) to its coordinator;
* on the ecosystem's **home node** (the first node of the cluster in the
  plan), the **host** of each ecosystem: a process that waits for the names
  the ecosystem ``requires``, starts the coordinator (registering it under
  ``register as``), places the workers with the ``distribution`` policy
  (:mod:`eco.runtime.placement`, load reports from :mod:`eco.runtime.node_load`)
  and asks each chosen node's factory to start them.  It then **heals**: when
  a member is declared down, every slot it hosted is re-placed
  (:func:`~eco.runtime.placement.replace`) and re-spawned one generation up
  (the supervision's restart intensity applies; exceeding it fails the job),
  and a member that comes back is told to stop workers of fenced generations.
  The first placement waits (bounded) until every connected node is ``up`` in
  the membership view, and workers the coordinator dropped with a lost
  connection are re-spawned one generation up when the connection comes back
  without the node having been declared down (a refuted suspicion).
  It reports the coordinator's progress and outcome through ``report``.

Lost nodes are also forwarded to each local coordinator as
:class:`~eco.runtime.component.NodeDown`; the coordinator re-queues the
unacknowledged work of its lost workers itself (``Coordinator.submit`` /
``acknowledge``).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from eco.plan import Cluster, Ecosystem, Plan

from .consensus import Fenced, TermFence, candidate_nodes, consensus_enabled
from .component import Coordinator, JobOutcome, JobProgress, NodeDown, Worker, WorkerStarted, load_component
from .ecosystem_leader import OUTCOME_KEY, Takeover, generation_base, run_elected_ecosystem, term_of_generation
from .errors import ComponentLoadError, EcoRuntimeError, MailboxFull
from .healing import RestartBudget, SlotTable
from .membership import Member, MemberEvent, MemberState
from .node import CONTROL_CHANNEL, Node, NodeError
from .node_load import LoadMonitor
from .node_members import ClusterView
from .node_names import ClusterNames, NameTimeout
from .pid import PID
from .placement import PlacementContext, PlacementError, place, replace, spawn_allowed
from .process import Context
from .raft_driver import RaftError
from .signals import Down
from .supervisor import ChildSpec, Supervisor, delete_child, start_child, terminate_child
from .transport import Connection
from .wire import Envelope, Kind

__all__ = ["EcosystemService", "SpawnRefused", "home_node", "worker_nodes", "settle_timeout", "REQUIRES_TIMEOUT"]

log = logging.getLogger("eco.runtime.node")

Report = Callable[..., None]

REQUIRES_TIMEOUT = 30.0
"""Seconds an ecosystem waits for each name it ``requires`` before its job fails."""
CLUSTER_WAIT_WARNING = 10.0
"""Seconds between warnings while the service waits to reach every node of the cluster."""


class SpawnRefused(NodeError):
    """The factory of the target node refused the spawn (``allow spawn from``)."""


def home_node(cluster: Cluster) -> str:
    """The node that hosts coordinators: the first node declared in the cluster."""
    if not cluster.nodes:
        raise NodeError(f"cluster {cluster.name} declares no nodes")
    return cluster.nodes[0].name


def worker_nodes(eco: Ecosystem, cluster: Cluster) -> list[str]:
    """The nodes the distribution policy allows, in plan order (``local_only``: the home node)."""
    names = [n.name for n in cluster.nodes]
    policy = eco.distribution.policy
    if policy == "local_only":
        return [home_node(cluster)]
    if policy == "explicit_nodes":
        chosen = [n for n in eco.distribution.nodes if n in names]
        return chosen or [home_node(cluster)]
    return names


async def _worker_entry(ctx: Context, cls: type[Worker], coordinator: PID, index: int, generation: int) -> None:
    # Runs on every (re)start, so the coordinator always hears about the current PID.
    try:
        ctx.cast(coordinator, WorkerStarted(ctx.self, index, generation))
    except (MailboxFull, EcoRuntimeError) as exc:
        ctx.log.warning("could not tell coordinator %s about worker %s: %s", coordinator, ctx.self, exc)
    await cls.as_process()(ctx)


class _MemberChange:
    """Local message to an ecosystem host: a member changed state."""

    __slots__ = ("event",)

    def __init__(self, event: MemberEvent) -> None:
        self.event = event


class _LinkChange:
    """Local message to an ecosystem host: the connection to ``peer`` opened (``up``) or was lost;
    ``epoch``: that connection's serial (``Node.link_epoch``)."""

    __slots__ = ("peer", "up", "epoch")

    def __init__(self, peer: str, up: bool, epoch: int = 0) -> None:
        self.peer = peer
        self.up = up
        self.epoch = epoch


def settle_timeout(cluster: Cluster) -> float:
    """How long a first placement waits for the membership view to settle: five heartbeats, at least 1 s."""
    detector = cluster.failure_detector
    beat = getattr(detector, "heartbeat", None) or getattr(detector, "probe_interval", None) or 1.0
    return max(1.0, 5 * float(beat))


class EcosystemService:
    """The spawn service and ecosystem hosts of one node (see the module docstring)."""

    def __init__(self, node: Node, plan: Plan, cluster: Cluster, *, report: Report | None = None,
                 spawn_timeout: float = 10.0, requires_timeout: float = REQUIRES_TIMEOUT,
                 rng: random.Random | None = None, load_interval: float = 0.5,
                 settle: float | None = None) -> None:
        self.node = node
        self.kernel = node.kernel
        self.plan = plan
        self.cluster = cluster
        self.report: Report = report or (lambda event, **fields: None)
        self.spawn_timeout = spawn_timeout
        self.requires_timeout = requires_timeout
        self.settle = settle_timeout(cluster) if settle is None else settle
        self.rng = rng or random.Random()
        self.view = ClusterView(node, cluster)
        self.load = LoadMonitor(node, interval=load_interval)
        self.names = ClusterNames(node)
        self._supervisors: dict[str, PID] = {}
        self._sup_lock = trio.Lock()
        self._children: dict[tuple[str, int], tuple[int, str]] = {}  # (ecosystem, index) -> (generation, child id)
        self._terms: dict[str, TermFence] = {}  # ecosystem -> newest coordinator term seen in a spawn (consensus)
        self._pending: dict[int, tuple[str, trio.Event, list[Any]]] = {}
        self._next_ref = 0
        self._coordinators: dict[str, PID] = {}
        self._hosts: dict[str, PID] = {}
        self._nursery: trio.Nursery | None = None
        node.handle(Kind.SPAWN_REQ, self._on_spawn_request)
        node.handle(Kind.SPAWN_REPLY, self._on_spawn_reply)
        node.on_node_down(self._on_node_down)
        self.view.subscribe(self._on_member)
        node.on_peer(self._on_link_up, self._on_link_down)
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
        try:
            await self._serve(task_status)
        finally:
            self._nursery = None

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.view.run)
            nursery.start_soon(self.load.run)
            task_status.started()
            await self._wait_for_cluster()
            self.report("ready", node=self.node.name, peers=self.node.peers)
            for eco in self.plan.ecosystems:
                if eco.cluster not in (None, self.cluster.name):
                    continue
                if consensus_enabled(eco):
                    # `leader: consensus`: every candidate node runs the Raft group; the leader hosts.
                    if self.node.name in candidate_nodes(eco, self.cluster):
                        nursery.start_soon(partial(run_elected_ecosystem, self, eco, _ecosystem_host))
                elif self.is_home:
                    self._hosts[eco.name] = await self.kernel.spawn(_ecosystem_host, self, eco, name=f"eco.host.{eco.name}")
            await trio.sleep_forever()

    async def _wait_for_cluster(self) -> None:
        """Wait until every node of the cluster is reachable, warning now and then meanwhile
        (a node that is never reached would otherwise stall the start without a word)."""
        names = [n.name for n in self.cluster.nodes]
        began = trio.current_time()
        while True:
            with trio.move_on_after(CLUSTER_WAIT_WARNING):
                await self.node.wait_connected(names)
                return
            unreached = [n for n in names if n != self.node.name and not self.node.is_connected(n)
                         and getattr(self.view.member(n), "state", None) != MemberState.UP]
            log.warning("node %s: waited %.0fs to reach every node of the cluster; not reached yet: %s",
                        self.node.name, trio.current_time() - began, ", ".join(unreached) or "none")

    # ------------------------------------------------------------ spawning (requester side)

    async def spawn_worker(self, node: str, ecosystem: str, index: int, coordinator: PID, generation: int = 0) -> PID:
        """Start slot ``index`` of ``ecosystem`` on ``node`` (this one or a peer).

        Raises :class:`SpawnRefused` when that node's ``allow spawn from`` rules
        refuse this node, :class:`NodeError` on any other failure.
        """
        request = {"op": "spawn", "ecosystem": ecosystem, "index": index, "generation": generation,
                   "coordinator": coordinator}
        if node == self.node.name:
            return await self._serve_locally(self.node.name, request)
        self._next_ref += 1
        ref = self._next_ref
        done = trio.Event()
        box: list[Any] = []
        self._pending[ref] = (node, done, box)
        try:
            request["ref"] = ref
            if not self.node.send_envelope(node, Envelope(Kind.SPAWN_REQ, CONTROL_CHANNEL, None, None, 0, request)):
                raise NodeError(f"cannot start worker {index} of {ecosystem} on node {node}: not connected")
            with trio.move_on_after(self.spawn_timeout):
                await done.wait()
            if not box:
                raise NodeError(f"node {node} did not answer a spawn request within {self.spawn_timeout:g}s")
            reply = box[0]
            if isinstance(reply, BaseException):
                raise reply
            return reply
        finally:
            self._pending.pop(ref, None)

    def fence(self, node: str, ecosystem: str, keep: list[tuple[int, int]]) -> bool:
        """Ask ``node`` to stop every worker of ``ecosystem`` except the ``(index, generation)`` pairs in ``keep``."""
        request = {"op": "fence", "ecosystem": ecosystem, "keep": [list(k) for k in keep]}
        if node == self.node.name:
            return self._start_soon(self._fence_local, ecosystem, keep)
        return self.node.send_envelope(node, Envelope(Kind.SPAWN_REQ, CONTROL_CHANNEL, None, None, 0, request))

    def _on_spawn_reply(self, conn: Connection, env: Envelope) -> None:
        reply = env.payload
        if not isinstance(reply, dict):
            return
        pending = self._pending.get(reply.get("ref"))  # type: ignore[arg-type]
        if pending is None or pending[0] != conn.peer.node:
            return
        _, done, box = pending
        pid = reply.get("pid")
        if type(pid) is PID:
            box.append(pid)
        else:
            error = f"node {conn.peer.node}: {reply.get('error', 'malformed spawn reply')}"
            box.append(SpawnRefused(error) if reply.get("refused") else NodeError(error))
        done.set()

    # ------------------------------------------------------------ the factory (receiving side)

    def _on_spawn_request(self, conn: Connection, env: Envelope) -> None:
        req = env.payload
        if isinstance(req, dict) and req.get("op") == "fence" and isinstance(req.get("ecosystem"), str):
            try:
                keep = [(int(i), int(g)) for i, g in req.get("keep", ())]
            except (TypeError, ValueError):
                keep = None
            if keep is not None:
                self._start_soon(self._fence_local, req["ecosystem"], keep)
                return
        elif (isinstance(req, dict) and req.get("op", "spawn") == "spawn" and type(req.get("ref")) is int
              and isinstance(req.get("ecosystem"), str) and type(req.get("index")) is int
              and type(req.get("generation", 0)) is int and type(req.get("coordinator")) is PID):
            self._start_soon(self._serve_spawn, conn.peer.node, req)
            return
        log.warning("node %s: malformed spawn service request from %s", self.node.name, conn.peer.node)

    def _start_soon(self, fn: Callable[..., Any], *args: Any) -> bool:
        # Requests that arrive while the service is stopping are dropped (the requester times out).
        if self._nursery is None:
            return False
        try:
            self._nursery.start_soon(fn, *args)
        except RuntimeError:
            return False
        return True

    async def _serve_spawn(self, peer: str, req: dict) -> None:
        try:
            pid = await self._serve_locally(peer, req)
            reply: dict[str, Any] = {"ref": req["ref"], "pid": pid}
        except NodeError as exc:
            reply = {"ref": req["ref"], "error": str(exc), "refused": isinstance(exc, SpawnRefused)}
        self.node.send_envelope(peer, Envelope(Kind.SPAWN_REPLY, CONTROL_CHANNEL, None, None, 0, reply))

    async def _serve_locally(self, requester: str, req: dict) -> PID:
        ecosystem, index, generation = req["ecosystem"], req["index"], req.get("generation", 0)
        try:
            eco = self.plan.ecosystem(ecosystem)
        except KeyError:
            raise NodeError(f"node {self.node.name} does not know ecosystem {ecosystem!r}") from None
        member = self.view.member(requester)
        allowed, why = spawn_allowed(eco.allow_spawn_from, member)
        if not allowed:
            log.warning("node %s: %s (ecosystem %s)", self.node.name, why, ecosystem)
            if member is not None and member.state in (MemberState.DOWN, MemberState.LEFT):
                # Not a policy refusal: this node's view is behind (after a partition heals) or the
                # requester is stale. A plain NodeError lets the requester place the worker elsewhere.
                raise NodeError(f"{why} (ecosystem {ecosystem}, worker {index})")
            raise SpawnRefused(f"{why} (ecosystem {ecosystem}, worker {index})")
        return await self._start_local(eco, index, generation, req["coordinator"])

    async def _start_local(self, eco: Ecosystem, index: int, generation: int, coordinator: PID) -> PID:
        try:
            cls = load_component(eco.workers.text, Worker)
        except ComponentLoadError as exc:
            raise NodeError(f"node {self.node.name}: {exc}") from None
        fence = self._terms.setdefault(eco.name, TermFence())
        if not fence.admit(term_of_generation(generation)):
            raise NodeError(f"node {self.node.name}: refusing worker {index} of {eco.name} for coordinator term "
                            f"{term_of_generation(generation)}: a coordinator of term {fence.highest} is newer")
        sup = await self._supervisor(eco)
        old = self._children.get((eco.name, index))
        if old is not None:
            if old[0] >= generation:
                raise NodeError(f"node {self.node.name}: worker {index} of {eco.name} already runs here "
                                f"at generation {old[0]} (asked for {generation})")
            await self._stop_child(sup, eco.name, index)  # an older generation of the slot: fenced
        child_id = f"worker-{index}.{generation}"
        spec = ChildSpec(
            id=child_id,
            start=_worker_entry,
            args=(cls, coordinator, index, generation),
            restart=eco.supervision.restart,
            shutdown=eco.supervision.shutdown,
        )
        try:
            pid = await start_child(self.kernel, sup, spec)
        except EcoRuntimeError as exc:
            raise NodeError(f"node {self.node.name}: cannot start worker {index} of {eco.name}: {exc}") from None
        self._children[(eco.name, index)] = (generation, child_id)
        return pid

    async def _fence_local(self, ecosystem: str, keep: list[tuple[int, int]]) -> None:
        wanted = set(keep)
        sup = self._supervisors.get(ecosystem)
        stopped = 0
        if sup is not None:
            for (name, index), (generation, _child) in list(self._children.items()):
                if name == ecosystem and (index, generation) not in wanted:
                    log.info("node %s: stopping fenced worker %d (generation %d) of %s", self.node.name, index, generation, ecosystem)
                    await self._stop_child(sup, ecosystem, index)
                    stopped += 1
        if stopped:  # (fences are repeated on every reconnection; only report those that stopped something)
            self.report("fenced", ecosystem=ecosystem, node=self.node.name, stopped=stopped)

    async def _stop_child(self, sup: PID, ecosystem: str, index: int) -> None:
        entry = self._children.pop((ecosystem, index), None)
        if entry is None:
            return
        try:
            await terminate_child(self.kernel, sup, entry[1], timeout=self.spawn_timeout)
            await delete_child(self.kernel, sup, entry[1])
        except EcoRuntimeError as exc:
            log.warning("node %s: could not stop worker %s of %s: %s", self.node.name, entry[1], ecosystem, exc)

    async def _supervisor(self, eco: Ecosystem) -> PID:
        async with self._sup_lock:
            pid = self._supervisors.get(eco.name)
            if pid is None or not self.kernel.is_alive(pid):
                pid = await self.kernel.spawn(Supervisor.from_plan(eco.supervision), name=f"eco.sup.{eco.name}")
                self._supervisors[eco.name] = pid
                self._children = {k: v for k, v in self._children.items() if k[0] != eco.name}
            return pid

    # ------------------------------------------------------------ membership

    def _on_node_down(self, node: str) -> None:
        if not self.node.links_on_demand:
            # The reply would come back over this connection: it is lost with it.  (Links opened on
            # demand close when idle, maybe with a request in flight: it went out before the close
            # and the reply opens the next link; only the member's loss fails it, see _on_member.)
            self._fail_pending(node, "was lost")
        for coordinator in list(self._coordinators.values()):
            try:
                self.kernel.cast(coordinator, NodeDown(node))
            except EcoRuntimeError:
                pass

    def _fail_pending(self, node: str, why: str) -> None:
        for target, done, box in list(self._pending.values()):
            if target == node and not done.is_set():
                box.append(NodeError(f"node {node} {why} before answering a spawn request"))
                done.set()

    def _on_link_up(self, peer: str, incarnation: int) -> None:
        # A member can be back `up` (by gossip) before its connection is, and a fence sent then
        # is dropped: so hosts fence again on every new connection (fencing is idempotent).
        self._tell_hosts(_LinkChange(peer, True, self.node.link_epoch(peer)))

    def _on_link_down(self, peer: str) -> None:
        # The coordinators' monitors of workers there just fired `noconnection`: they dropped them.
        self._tell_hosts(_LinkChange(peer, False, self.node.link_epoch(peer)))

    def _tell_hosts(self, msg: Any) -> None:
        for host in list(self._hosts.values()):
            try:
                self.kernel.cast(host, msg)
            except EcoRuntimeError:
                pass

    async def wait_settled(self) -> bool:
        """Wait (at most ``settle`` seconds) until every declared node this node is connected to is ``up``.

        Connections open before the membership layer has gossiped a node ``up``;
        placing workers in between would leave that node out (an uneven first
        placement).  Nodes not connected, or already ``down``, are not waited for
        (a takeover after a node's loss must not wait for it).  Returns whether
        the view settled.
        """
        gone = {m.name for m in self.view.members() if m.state in (MemberState.DOWN, MemberState.LEFT)}
        wanted = [n.name for n in self.cluster.nodes
                  if n.name == self.node.name or (self.node.is_connected(n.name) and n.name not in gone)]
        settled = await self.view.wait_up(wanted, self.settle)
        if not settled:
            log.warning("node %s: membership did not settle within %gs (up: %s); placing on the up members",
                        self.node.name, self.settle,
                        ", ".join(m.name for m in self.view.members() if m.state == MemberState.UP))
        return settled

    def _on_member(self, event: MemberEvent) -> None:
        member = event.member
        if member.state in (MemberState.DOWN, MemberState.LEFT):
            self.names.node_down(member.name, member.incarnation)
            self._fail_pending(member.name, f"is {member.state.label}")
        elif member.state == MemberState.UP:
            self.names.peer_up(member.name)
        for host in list(self._hosts.values()):
            try:
                self.kernel.cast(host, _MemberChange(event))
            except EcoRuntimeError:
                pass

    def placement_context(self, cursor: int = 0, current: dict[str, int] | None = None) -> PlacementContext:
        """What a placement decision made on this node knows right now."""
        return PlacementContext(
            members=self.view.members(), requester=self.node.name, now=trio.current_time(),
            loads=self.load.reports(), rng=self.rng, cursor=cursor, current=dict(current or {}),
        )


class _Host:
    """The state of one ecosystem's host process (see :func:`_ecosystem_host`)."""

    def __init__(self, ctx: Context, service: EcosystemService, eco: Ecosystem, takeover: Takeover | None = None) -> None:
        self.ctx = ctx
        self.service = service
        self.eco = eco
        self.takeover = takeover
        self.report = service.report
        self.slots = SlotTable()
        # An elected coordinator's workers start above every earlier term's generations.
        self.generation_base = generation_base(takeover.term) if takeover is not None else 0
        self.cursor = 0
        self.budget = RestartBudget(eco.supervision.max_restarts, eco.supervision.within)
        # Slots whose worker the coordinator dropped when its node's connection was lost
        # (monitors fire `noconnection`) while the node itself was not declared down.
        self.orphaned: set[int] = set()
        # slot -> serial of the connection its spawn request went over (Node.link_epoch): a
        # link-down handled late (the host was busy placing) must not orphan a newer worker.
        # The coordinator's monitor crosses that link or a later one, so no drop is missed
        # (a link replaced mid-spawn may cost one needless re-spawn, never a lost worker).
        self.spawned_over: dict[int, int] = {}
        self.coordinator: PID | None = None
        self.started = trio.current_time()

    @property
    def deposed(self) -> bool:
        """True for an elected coordinator's host whose term no longer leads: it must not report anything."""
        return self.takeover is not None and not self.takeover.group.holds(self.takeover.term)

    def fail(self, reason: str) -> None:
        if self.deposed:
            log.info("ecosystem %s: deposed coordinator stops (%s)", self.eco.name, reason)
        else:
            self.report("failed", ecosystem=self.eco.name, reason=reason,
                        elapsed=round(trio.current_time() - self.started, 3))
        if self.coordinator is not None:
            self.ctx.kernel.kill(self.coordinator)

    async def finish(self, outcome: JobOutcome) -> None:
        """Report the job's outcome; an elected coordinator's is first confirmed and replicated."""
        elapsed = round(trio.current_time() - self.started, 3)
        if self.takeover is not None:
            try:
                await self.takeover.confirm()
                # A later leader repeats this outcome instead of running the job again.
                await self.takeover.state.put(OUTCOME_KEY, {"ok": outcome.ok, "value": outcome.value})
            except (Fenced, RaftError) as exc:
                log.warning("ecosystem %s: outcome of term %d not reported: %s", self.eco.name, self.takeover.term, exc)
                return
        if outcome.ok:
            self.report("complete", ecosystem=self.eco.name, result=outcome.value, elapsed=elapsed)
        else:
            self.report("failed", ecosystem=self.eco.name, reason=str(outcome.value), elapsed=elapsed)

    async def spawn_slot(self, index: int, node: str, exclude: set[str]) -> str:
        """Spawn slot ``index`` on ``node``, moving on to another placement if that node fails; returns the node."""
        service, eco = self.service, self.eco
        while True:
            slot = self.slots.place(index, node)
            link = service.node.link_epoch(node)
            if not service.node.can_send(node):
                link += 1  # the request opens the next connection
            try:
                assert self.coordinator is not None
                await service.spawn_worker(node, eco.name, index, self.coordinator, self.generation_base + slot.generation)
                self.spawned_over[index] = link
                return node
            except SpawnRefused:
                raise
            except NodeError as exc:
                log.warning("ecosystem %s: worker %d could not start on %s (%s); placing it elsewhere", eco.name, index, node, exc)
                exclude.add(node)
                ctx = service.placement_context(self.cursor, self.slots.counts())
                moved, self.cursor = replace([index], node, eco.distribution,
                                             _excluding(ctx, exclude))
                node = moved[index]

    async def start_workers(self) -> None:
        eco = self.eco
        await self.service.wait_settled()
        placement = place(eco.worker_count, eco.distribution, self.service.placement_context(self.cursor))
        self.cursor = placement.cursor
        exclude: set[str] = set()
        for index, node in enumerate(placement.nodes):
            await self.spawn_slot(index, node, exclude)

    async def heal(self, node: str) -> None:
        """Re-spawn every slot ``node`` hosted on healthy nodes, one generation up."""
        lost = self.slots.on(node)
        if not lost:
            return
        began = trio.current_time()
        eco = self.eco
        if not self.budget.allow(began, len(lost)):
            raise _Escalate(
                f"reached max restart intensity ({eco.supervision.max_restarts} within {eco.supervision.within:g}s) "
                f"re-spawning the {len(lost)} worker(s) lost with node {node}")
        ctx = self.service.placement_context(self.cursor, self.slots.counts())
        moved, self.cursor = replace([s.index for s in lost], node, eco.distribution, ctx)
        exclude = {node}
        placed = {}
        for index, target in moved.items():
            self.orphaned.discard(index)
            placed[index] = await self.spawn_slot(index, target, exclude)
        self.report("recovered", ecosystem=eco.name, node=node,
                    workers={str(i): n for i, n in sorted(placed.items())},
                    seconds=round(trio.current_time() - began, 4))

    def link_lost(self, node: str, epoch: int) -> None:
        """Connection ``epoch`` to ``node`` was lost: the coordinator no longer counts the workers
        whose spawn went over it or an earlier one (their monitors crossed it); a later one's did not."""
        self.orphaned.update(s.index for s in self.slots.on(node) if self.spawned_over.get(s.index, 0) <= epoch)

    async def respawn_orphans(self, node: str) -> None:
        """The connection to ``node`` is back and it was not declared down (a refuted suspicion).

        The coordinator dropped its workers there when the connection was lost,
        so they are re-spawned one generation up, in place (elsewhere if that
        fails): the ecosystem gets back to its declared worker count, and the
        factory (and the coordinator) fence the older generation.  Not counted
        against the restart intensity: no worker failed.
        """
        member = self.service.view.member(node)
        if member is not None and member.state in (MemberState.DOWN, MemberState.LEFT):
            return  # heal() re-places them (or has already)
        lost = [s.index for s in self.slots.on(node) if s.index in self.orphaned]
        if not lost:
            return
        began = trio.current_time()
        placed = {}
        for index in lost:
            self.orphaned.discard(index)
            placed[index] = await self.spawn_slot(index, node, set())
        self.report("respawned", ecosystem=self.eco.name, node=node,
                    workers={str(i): n for i, n in sorted(placed.items())},
                    seconds=round(trio.current_time() - began, 4))

    def fence(self, node: str) -> None:
        """``node`` is (back) up: it must run only the slots placed on it now."""
        keep = [(s.index, self.generation_base + s.generation) for s in self.slots.on(node)]
        self.service.fence(node, self.eco.name, keep)


class _Escalate(Exception):
    pass


def _excluding(ctx: PlacementContext, exclude: set[str]) -> PlacementContext:
    return dataclasses.replace(ctx, exclude=frozenset(ctx.exclude) | exclude)


async def _ecosystem_host(ctx: Context, service: EcosystemService, eco: Ecosystem,
                          takeover: Takeover | None = None) -> None:
    """Starts one ecosystem, heals it when nodes are lost, reports the job's progress and outcome.

    With ``takeover`` (``leader: consensus``, this node was elected) the coordinator
    gets its term and replicated state, workers start above earlier terms'
    generations, every member is fenced once they run (stopping an earlier
    coordinator's workers) and the outcome is confirmed and replicated first.
    """
    host = _Host(ctx, service, eco, takeover)
    if takeover is not None:
        service._hosts[eco.name] = ctx.self  # member changes reach the elected host
    report = service.report
    try:
        cls = load_component(eco.coordinator.text, Coordinator)
    except ComponentLoadError as exc:
        report("failed", ecosystem=eco.name, reason=str(exc))
        return
    for name in eco.requires:
        try:
            await service.names.wait_for(name, service.requires_timeout)
        except NameTimeout as exc:
            report("failed", ecosystem=eco.name, reason=f'ecosystem {eco.name} requires "{name}": {exc}')
            return
    entry = cls if takeover is None else cls.with_runtime(takeover.coordinator_attrs())
    coordinator = host.coordinator = await ctx.spawn(entry, monitor=True)
    service._coordinators[eco.name] = coordinator
    try:
        if eco.register_as:
            service.names.register(eco.register_as, coordinator)
        try:
            await host.start_workers()
        except (NodeError, PlacementError) as exc:
            host.fail(str(exc))
            return
        layout = host.slots.layout()
        if takeover is not None:
            # Stop whatever an earlier term's coordinator left running (other slots, other nodes).
            for member in service.cluster.nodes:
                host.fence(member.name)
        report("started", ecosystem=eco.name, workers=eco.worker_count, nodes=sorted(set(layout.values())),
               placement={str(i): n for i, n in layout.items()},
               **({"term": takeover.term} if takeover is not None else {}))
        while True:
            msg = await ctx.receive()
            kind = type(msg)
            if kind is JobProgress:
                report("progress", ecosystem=eco.name, done=msg.done, total=msg.total, unit=msg.unit)
            elif kind is JobOutcome:
                await host.finish(msg)
                return
            elif kind is Down and msg.pid == coordinator:
                host.fail(f"the coordinator exited without finishing the job ({msg.reason})")
                return
            elif kind is _MemberChange:
                member = msg.event.member
                if member.state in (MemberState.DOWN, MemberState.LEFT):
                    try:
                        await host.heal(member.name)
                    except (NodeError, PlacementError, _Escalate) as exc:
                        host.fail(f"cannot recover from the loss of node {member.name}: {exc}")
                        return
                elif member.state == MemberState.UP:
                    host.fence(member.name)
            elif kind is _LinkChange:
                if not msg.up:
                    host.link_lost(msg.peer, msg.epoch)
                    continue
                try:
                    await host.respawn_orphans(msg.peer)
                except (NodeError, PlacementError) as exc:
                    host.fail(f"cannot re-spawn the workers dropped with the connection to node {msg.peer}: {exc}")
                    return
                host.fence(msg.peer)
    finally:
        service._coordinators.pop(eco.name, None)
        if takeover is not None and service._hosts.get(eco.name) == ctx.self:
            del service._hosts[eco.name]
        if eco.register_as:
            service.names.unregister(eco.register_as, coordinator)
