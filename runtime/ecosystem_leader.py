"""Standby and active coordinators of a ``leader: consensus`` ecosystem on one node.

Every candidate node (:func:`~eco.runtime.consensus.candidate_nodes`) runs
:func:`run_elected_ecosystem`: the ecosystem's :class:`ConsensusGroup` and a
standby loop.  When this node's Raft driver becomes the usable leader of a term,
the loop records the activation in the replicated state (older terms' writes are
refused from then on) and starts the ecosystem host with a :class:`Takeover`:
the host starts the coordinator with ``term``, ``state`` and the checkpointer
set, spawns workers in generations above every earlier term's, and confirms the
term (ReadIndex) before reporting the job's outcome.  When leadership is lost the
host and its coordinator are stopped at once (fencing): a deposed coordinator
does not act.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .checkpoint import CheckpointError
from .consensus import ConsensusGroup, Fenced, RaftRouter, candidate_nodes, is_candidate
from .coordinator_state import Checkpointer, ReplicatedState
from .errors import EcoRuntimeError
from .raft_driver import RaftError
from .signals import Down, Reason

__all__ = ["Takeover", "run_elected_ecosystem", "generation_base", "resolve_checkpoint_url", "DATA_DIR_ENV",
           "OUTCOME_KEY"]

log = logging.getLogger("eco.runtime.consensus")

DATA_DIR_ENV = "ECO_DATA_DIR"
"""Where a node keeps its Raft logs when the service names no data directory."""

DEPOSED = Reason("shutdown", "deposed: this node no longer leads the ecosystem's consensus group")

_TERM_SHIFT = 20

OUTCOME_KEY = "__eco.outcome__"
"""Replicated-state key holding a finished job's outcome ``{"ok": bool, "value": ...}``."""


def generation_base(term: int) -> int:
    """Worker generations of the coordinator of ``term`` start here: above every earlier term's."""
    return term << _TERM_SHIFT


def term_of_generation(generation: int) -> int:
    return generation >> _TERM_SHIFT


@dataclass(frozen=True)
class Takeover:
    """What the ecosystem host of an elected coordinator needs."""

    group: ConsensusGroup
    term: int
    state: ReplicatedState
    checkpointer: Checkpointer | None

    def coordinator_attrs(self) -> dict[str, Any]:
        return {"term": self.term, "state": self.state, "checkpointer": self.checkpointer}

    async def confirm(self) -> None:
        """Raise :class:`Fenced` unless this term still leads (a ReadIndex round)."""
        await self.group.confirm(self.term)


def data_dir_for(service: Any) -> Path | None:
    explicit = getattr(service, "data_dir", None)
    if explicit:
        return Path(explicit)
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env) / service.node.name if env else None


def resolve_checkpoint_url(url: str) -> str:
    """``url`` with a relative path (``sqlite://rel/x.db``, ``file://rel/dir``) made absolute.

    Relative paths are relative to ``$ECO_DATA_DIR`` when it is set (``ecoc run`` sets
    it to the run's state directory, so runs never share checkpoints), else to the
    working directory.  Every node of a run resolves it to the same place, so a
    coordinator that takes over on another node finds the checkpoints.
    """
    scheme, sep, rest = url.partition("://")
    root = os.environ.get(DATA_DIR_ENV, "").strip()
    if not sep or not rest or rest.startswith("/") or not root:
        return url
    return f"{scheme}://{Path(root).resolve() / rest}"


def router_for(service: Any) -> RaftRouter:
    router = getattr(service, "_raft_router", None)
    if router is None:
        router = service._raft_router = RaftRouter(service.node)
    return router


async def run_elected_ecosystem(service: Any, eco: Any, host_main: Any, *,
                                task_status: trio.TaskStatus[ConsensusGroup] = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``eco``'s consensus group on this node; host the ecosystem whenever this node leads.

    ``host_main(ctx, service, eco, takeover)`` is the ecosystem host process.
    """
    node = service.node
    members = candidate_nodes(eco, service.cluster)
    group = ConsensusGroup(eco.name, node.name, members, router_for(service), data_dir=data_dir_for(service),
                           candidate=is_candidate(eco, service.cluster))
    checkpointer = None
    if eco.state.checkpoint is not None:
        try:
            checkpointer = Checkpointer(resolve_checkpoint_url(eco.state.checkpoint.url), eco.name,
                                        eco.state.checkpoint.every)
        except CheckpointError as exc:
            service.report("failed", ecosystem=eco.name, reason=f"ecosystem {eco.name}: {exc}")
            return
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(group.run)
            task_status.started(group)
            async for act in group.activations():
                await _serve_term(service, eco, host_main, group, act.term, checkpointer)
    finally:
        if checkpointer is not None:
            checkpointer.close()


async def _serve_term(service: Any, eco: Any, host_main: Any, group: ConsensusGroup, term: int,
                      checkpointer: Checkpointer | None) -> None:
    kernel = service.kernel
    state = ReplicatedState(group, term)
    try:
        await state.activate()
    except (Fenced, RaftError) as exc:
        log.info("ecosystem %s: term %d not activated: %s", eco.name, term, exc)
        return
    try:
        outcome = await state.get(OUTCOME_KEY)
    except (Fenced, RaftError):
        return
    if outcome is not None:
        # The job finished under an earlier term: repeat its outcome, never run it twice.
        service.report("complete" if outcome.get("ok") else "failed", ecosystem=eco.name,
                       **({"result": outcome.get("value")} if outcome.get("ok") else {"reason": outcome.get("value")}))
        await group.wait_deposed(term)
        return
    service.report("elected", ecosystem=eco.name, node=service.node.name, term=term)
    log.info("ecosystem %s: node %s is the active coordinator's node (term %d)", eco.name, service.node.name, term)
    takeover = Takeover(group, term, state, checkpointer)
    with kernel.inbox() as me:
        host = await kernel.spawn(host_main, service, eco, takeover, name=f"eco.host.{eco.name}")
        ref = me.monitor(host)
        async with trio.open_nursery() as nursery:
            async def deposed() -> None:
                await group.wait_deposed(term)
                log.warning("ecosystem %s: node %s lost leadership of term %d; stopping its coordinator",
                            eco.name, service.node.name, term)
                service.report("deposed", ecosystem=eco.name, node=service.node.name, term=term)
                for pid in (service._coordinators.get(eco.name), host):
                    if pid is not None:
                        try:
                            kernel.exit(pid, DEPOSED)
                        except EcoRuntimeError:
                            pass

            nursery.start_soon(deposed)
            await me.receive(match=lambda m: type(m) is Down and m.ref == ref)
            nursery.cancel_scope.cancel()
    # The host is gone (job finished, failed or deposed). If this term still leads and the
    # job is not finished, the standby loop would only re-host on a *new* term: wait for it.
    await group.wait_deposed(term)
