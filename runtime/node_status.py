"""A node's status, served to ``ecoc status`` and to peers.

Every node answers a ``STATUS_REQ`` envelope with ``STATUS_REPLY``: the
members it sees (state, incarnation, address, labels), the ecosystems with the
node each worker runs on, and its recent membership events.  For the
ecosystem part the node asks every live peer for its *local* view (the workers
its own supervisors run) and merges the answers, so one request to any node
shows the whole cluster.

:func:`fetch_status` is the client side: it connects like a node (cookie
handshake), asks, and returns the reply as plain data (JSON-ready).
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable
from typing import Any

import trio

from .handshake import TOOL_PREFIX, UNKNOWN_CLUSTER, Identity
from .secrets import Cookie
from .transport import ConnectError, ConnectionClosed, HandshakeRefused, TransportConfig
from .wire import Envelope, Kind

__all__ = ["StatusService", "StatusError", "fetch_status", "STATUS_VERSION"]

STATUS_VERSION = 1
STATUS_CHANNEL = "status"
PEER_TIMEOUT = 1.0


class StatusError(Exception):
    """``fetch_status`` failed; ``kind`` is ``unreachable``, ``refused`` or ``no_answer``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class StatusService:
    """Answers status requests for one node.

    ``ecosystems()`` (optional) returns this node's local view:
    ``{ecosystem: {"coordinator": pid-or-None, "workers": {worker id: pid-or-None}}}``;
    an async callable is awaited.
    """

    def __init__(self, node: Any, membership: Any, *, cluster: str, ecosystems: Callable[[], Any] | None = None) -> None:
        self.node = node
        self.membership = membership
        self.cluster = cluster
        self.ecosystems = ecosystems
        self._refs = itertools.count(1)
        self._pending: dict[int, tuple[trio.MemorySendChannel, str]] = {}
        self._nursery: trio.Nursery | None = None
        node.handle(Kind.STATUS_REQ, self._on_request)
        node.handle(Kind.STATUS_REPLY, self._on_reply)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # ------------------------------------------------------------ serving

    def _on_request(self, conn: Any, env: Envelope) -> None:
        req = env.payload if isinstance(env.payload, dict) else {}
        if self._nursery is not None:
            self._nursery.start_soon(self._answer, conn, req)

    async def _answer(self, conn: Any, req: dict) -> None:
        if req.get("scope") == "local":
            body: Any = await self._local_ecosystems()
        else:
            body = await self.status()
        reply = {"ref": req.get("ref"), "status": body}
        # Straight on the asking connection: a status client is not a member the node routes to.
        try:
            await conn.send(Envelope(Kind.STATUS_REPLY, STATUS_CHANNEL, None, None, 0, reply))
        except ConnectionClosed:
            pass

    def _on_reply(self, conn: Any, env: Envelope) -> None:
        reply = env.payload if isinstance(env.payload, dict) else {}
        pending = self._pending.pop(reply.get("ref"), None)  # type: ignore[arg-type]
        if pending is not None and pending[1] == conn.peer.node:
            try:
                pending[0].send_nowait((conn.peer.node, reply.get("status")))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def status(self) -> dict[str, Any]:
        """This node's full status (members, ecosystems across live peers, events)."""
        m = self.membership
        members = [info.to_json() for info in m.members]
        return {
            "version": STATUS_VERSION,
            "node": self.node.name,
            "incarnation": self.node.incarnation,
            "cluster": self.cluster,
            "topology": getattr(m, "topology", None),
            "failure_detector": getattr(m, "detector", None),
            "time": round(time.time(), 3),
            "members": members,
            "ecosystems": await self._cluster_ecosystems(members),
            "events": list(getattr(m, "events", ())),
        }

    async def _local_ecosystems(self) -> dict[str, Any]:
        if self.ecosystems is None:
            return {}
        result = self.ecosystems()
        if hasattr(result, "__await__"):
            result = await result
        return _jsonable(result)

    async def _cluster_ecosystems(self, members: list[dict]) -> dict[str, Any]:
        views: dict[str, Any] = {self.node.name: await self._local_ecosystems()}
        # (hyparview: the membership driver opens a link to any member on demand, and closes it once idle)
        on_demand = getattr(self.membership, "manages_links", False)
        peers = [x["name"] for x in members if x["name"] != self.node.name and x["state"] in ("up", "suspect")
                 and (on_demand or self.node.is_connected(x["name"]))]
        send, receive = trio.open_memory_channel[tuple[str, Any]](len(peers) + 1)
        asked = 0
        for peer in peers:
            ref = next(self._refs)
            self._pending[ref] = (send, peer)
            env = Envelope(Kind.STATUS_REQ, STATUS_CHANNEL, None, None, 0, {"ref": ref, "scope": "local"})
            if self.node.send_envelope(peer, env):
                asked += 1
            else:
                self._pending.pop(ref, None)
        with trio.move_on_after(PEER_TIMEOUT):
            for _ in range(asked):
                peer, view = await receive.receive()
                views[peer] = view
        unanswered = sorted(set(peers) - set(views))
        merged: dict[str, Any] = {}
        for node_name, view in sorted(views.items()):
            for eco, local in (view or {}).items() if isinstance(view, dict) else ():
                entry = merged.setdefault(eco, {"coordinator": None, "workers": []})
                if isinstance(local, dict):
                    if local.get("coordinator"):
                        entry["coordinator"] = {"node": node_name, "pid": local["coordinator"]}
                    for wid, pid in sorted((local.get("workers") or {}).items()):
                        entry["workers"].append({"id": wid, "node": node_name, "pid": pid, "running": pid is not None})
        for entry in merged.values():
            entry["workers"].sort(key=lambda w: _natural(w["id"]))
        if unanswered:
            merged["_unanswered"] = unanswered  # type: ignore[assignment]
        return merged


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # PIDs and the like: their readable form


# ------------------------------------------------------------------ client


async def fetch_status(address: str, cookie: Cookie, *, cluster: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the node at ``address`` for its status.  StatusError when unreachable, refused or silent.

    Without ``cluster`` the handshake learns the node's cluster name (a tool may leave it unknown,
    see :mod:`eco.runtime.handshake`); the cookie still authenticates both sides.
    """
    from .tcp import open_tcp_transport

    name = UNKNOWN_CLUSTER if cluster is None else cluster
    identity = Identity(name, f"{TOOL_PREFIX}status-{os.getpid()}", time.time_ns() // 1_000_000, cookie)
    config = TransportConfig(identity, connect_timeout=timeout, handshake_timeout=timeout)
    async with open_tcp_transport(config) as transport:
        # Errors are returned, not raised, so they do not leave the transport's nursery as a group.
        outcome = await _ask(transport, address, timeout)
    if isinstance(outcome, dict):
        return outcome
    if isinstance(outcome, HandshakeRefused):
        reason = outcome.refusal.reason.value
        if reason == "bad_cookie":
            raise StatusError("refused", f"node at {address} refused the cookie: check ECO_COOKIE or --cookie-file")
        if reason == "wrong_cluster":
            raise StatusError("refused", f"node at {address} belongs to another cluster ({outcome.refusal.detail})")
        raise StatusError("refused", f"node at {address} refused the connection: {reason}")
    if isinstance(outcome, ConnectError):
        raise StatusError("unreachable", f"cannot reach a node at {address}: {outcome}")
    if isinstance(outcome, ConnectionClosed):
        raise StatusError("no_answer", f"node at {address} closed the connection before answering: {outcome.reason}")
    raise StatusError("no_answer", f"node at {address} did not answer a status request within {timeout:g}s")


async def ecosystem_view(service: Any) -> dict[str, Any]:
    """The local view of an :class:`~eco.runtime.node_ecosystem.EcosystemService` for :class:`StatusService`:
    coordinators hosted here and the workers this node's supervisors run."""
    custom = getattr(service, "status_view", None)
    if custom is not None:  # the service knows better (e.g. placement slots)
        result = custom()
        return await result if hasattr(result, "__await__") else result
    from .supervisor import which_children

    view: dict[str, Any] = {}
    for eco, sup in sorted(dict(getattr(service, "_supervisors", {})).items()):
        try:
            children = await which_children(service.kernel, sup, timeout=1.0)
        except Exception:  # a supervisor that just stopped: nothing runs there
            children = []
        view[eco] = {"coordinator": None, "workers": {c.id: c.pid for c in children}}
    for eco, pid in sorted(dict(getattr(service, "_coordinators", {})).items()):
        view.setdefault(eco, {"coordinator": None, "workers": {}})["coordinator"] = pid
    return view


def render_status(status: dict[str, Any]) -> str:
    """``ecoc status`` for humans."""
    lines = [f"node {status.get('node')}#{status.get('incarnation')}  cluster {status.get('cluster')}  "
             f"topology {status.get('topology')}  detector {status.get('failure_detector')}", "", "members:"]
    for m in status.get("members", []):
        labels = " ".join(f"{k}={v}" for k, v in sorted((m.get("labels") or {}).items()))
        lines.append(f"  {m['name']:<12} {str(m.get('address') or '-'):<22} {m['state']:<8} #{m['incarnation']:<14} {labels}".rstrip())
    ecosystems = {k: v for k, v in (status.get("ecosystems") or {}).items() if not k.startswith("_")}
    lines += ["", "ecosystems:" if ecosystems else "ecosystems: none running"]
    for name, eco in sorted(ecosystems.items()):
        coord = eco.get("coordinator")
        lines.append(f"  {name}: coordinator on {coord['node'] if coord else '-'}")
        for w in eco.get("workers", []):
            lines.append(f"    {w['id']:<14} {w['node']:<12} {w['pid'] if w.get('running') else 'not running'}")
    missing = (status.get("ecosystems") or {}).get("_unanswered")
    if missing:
        lines.append(f"  (no answer from {', '.join(missing)})")
    events = status.get("events") or []
    lines += ["", f"recent events ({len(events)}):"]
    for ev in events[-20:]:
        stamp = time.strftime("%H:%M:%S", time.localtime(ev.get("time", 0))) + f".{int(ev.get('time', 0) * 1000) % 1000:03d}"
        extra = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("time", "event", "node", "labels") and v is not None)
        lines.append(f"  {stamp} {ev.get('event'):<14} {ev.get('node', '')} {extra}".rstrip())
    return "\n".join(lines) + "\n"


async def _ask(transport: Any, address: str, timeout: float) -> Any:
    """The status dict, or the exception that prevented it (None on timeout)."""
    with trio.move_on_after(timeout):
        try:
            conn = await transport.connect(address)
        except (HandshakeRefused, ConnectError) as exc:
            return exc
        try:
            await conn.send(Envelope(Kind.STATUS_REQ, STATUS_CHANNEL, None, None, 0, {"ref": 0, "scope": "cluster"}))
            async for env in conn:
                if env.kind == Kind.STATUS_REPLY and isinstance(env.payload, dict) and isinstance(env.payload.get("status"), dict):
                    return env.payload["status"]
            return ConnectionClosed(conn.close_reason or "closed")
        except ConnectionClosed as exc:
            return exc
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose("status received")
    return None
