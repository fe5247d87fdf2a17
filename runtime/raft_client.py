"""Client of ``eco.runtime.raft_server``: key-value commands with sessions, leader following, retries.

The client connects with the same transport and handshake as the servers (same cluster name
and cookie). A request is ``Envelope(Kind.CALL, "raft-client", sequence=call_id,
payload=[op, key, value, client_id, request_id])``; the answer is ``Envelope(Kind.REPLY,
"raft-client", sequence=call_id, payload={"ok": result})`` or ``{"error": code, "message": text,
"leader": id, "leader_address": "host:port"}`` with ``code`` in ``not_leader``, ``timeout``,
``dropped``, ``rejected``, ``stopped``, ``bad_request``.

::

    async with open_tcp_transport(config) as transport:
        async with open_raft_client(transport, ["127.0.0.1:7001", "127.0.0.1:7002"], client_id="c1") as client:
            await client.put("k", "v"); n = await client.incr("hits"); v = await client.get("k")

Writes carry a session ``(client_id/lane, request_id)``: a write retried after a lost answer
or a leader change is applied exactly once. Concurrent calls use separate session lanes
(each lane sends one request at a time, as the state machine's sessions require).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .transport import Connection, ConnectionClosed, ConnectError, Transport, TransportError
from .wire import Envelope, Kind

CLIENT_CHANNEL = "raft-client"
WRITE_OPS = ("put", "incr", "append", "delete")
READ_OPS = ("get", "status", "bench")


class RaftClientError(Exception):
    """A request failed for good (bad request, or no leader answered before the deadline)."""


class _Call:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: Any = None


class _ServerConn:
    """One connection to one server, with its calls in flight."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.calls: dict[int, _Call] = {}
        conn.set_receiver(self._on_envelope)

    def _on_envelope(self, env: Envelope) -> None:
        if env.kind == Kind.REPLY:
            call = self.calls.pop(env.sequence, None)
            if call is not None:
                call.reply = env.payload
                call.event.set()

    def fail_all(self) -> None:
        for call in self.calls.values():
            call.event.set()  # reply None: connection lost
        self.calls.clear()


class RaftClient:
    """Talks to a raft_server cluster; see the module docstring. Use from one trio run."""

    def __init__(self, transport: Transport, addresses: list[str], *, client_id: str,
                 timeout: float = 10.0, attempt_timeout: float = 1.0) -> None:
        if not addresses:
            raise ValueError("RaftClient needs at least one server address")
        self.transport = transport
        self.addresses = list(addresses)
        self.client_id = client_id
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self._conns: dict[str, _ServerConn] = {}
        self._connecting: dict[str, trio.Event] = {}
        self._leader_address: str | None = None
        self._seq = itertools.count(1)
        self._lanes: list[list] = []  # free [lane id, next request id]
        self._lane_ids = itertools.count(1)
        self.retries = 0
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------ commands

    async def put(self, key: str, value: str) -> None:
        return await self.request("put", key, value)

    async def incr(self, key: str, delta: int = 1) -> int:
        return await self.request("incr", key, delta)

    async def get(self, key: str) -> Any:
        """Linearizable read (served by the leader after a ReadIndex round)."""
        return await self.request("get", key)

    async def status(self, address: str) -> dict:
        """One server's view: id, term, leader, is_leader, applied (no retries, no leader following)."""
        reply = await self._attempt(address, ["status", None, None, None, 0], self.attempt_timeout)
        if reply is None or "ok" not in reply:
            raise RaftClientError(f"no status from {address}: {reply!r}")
        return reply["ok"]

    async def request(self, op: str, key: Any, value: Any = None) -> Any:
        """Run one command on the leader, following redirects and retrying until ``timeout``."""
        if op not in WRITE_OPS and op not in READ_OPS:
            raise RaftClientError(f"unknown operation {op!r}")
        lane = self._lanes.pop() if op in WRITE_OPS and self._lanes else None
        if op in WRITE_OPS and lane is None:
            lane = [f"{self.client_id}/{next(self._lane_ids)}", 1]
        payload = [op, key, value, lane[0] if lane else None, lane[1] if lane else 0]
        try:
            return await self._run(payload)
        finally:
            if lane is not None:
                lane[1] += 1  # whatever happened, the next request on this lane is a new one
                self._lanes.append(lane)

    async def aclose(self) -> None:
        for sc in list(self._conns.values()):
            with trio.CancelScope(shield=True):
                await sc.conn.aclose("client done")
        self._conns.clear()

    # ------------------------------------------------------------ internals

    async def _run(self, payload: list) -> Any:
        deadline = trio.current_time() + self.timeout
        rotation = itertools.cycle(self.addresses)
        target = self._leader_address or next(rotation)
        last = "no answer"
        while trio.current_time() < deadline:
            budget = min(self.attempt_timeout, deadline - trio.current_time())
            reply = await self._attempt(target, payload, budget)
            if isinstance(reply, dict) and "ok" in reply:
                self._leader_address = target
                return reply["ok"]
            self.retries += 1
            if isinstance(reply, dict):
                code = reply.get("error")
                last = f"{code}: {reply.get('message', '')}"
                if code == "bad_request":
                    raise RaftClientError(last)
                hint = reply.get("leader_address")
                if code == "not_leader" and hint and hint != target:
                    target = self._leader_address = hint
                    continue
            else:
                last = f"no answer from {target}"
            self._leader_address = None
            target = next(rotation)
            await trio.sleep(0.01)  # an election takes a few ticks; do not spin
        raise RaftClientError(f"{payload[0]} {payload[1]!r} failed within {self.timeout:g}s ({last})")

    async def _attempt(self, address: str, payload: list, budget: float) -> dict | None:
        with trio.move_on_after(max(budget, 0.0)):
            try:
                sc = await self._connection(address)
            except (ConnectError, TransportError, OSError):
                return None
            seq = next(self._seq)
            call = _Call()
            sc.calls[seq] = call
            try:
                sc.conn.send_nowait(Envelope(Kind.CALL, CLIENT_CHANNEL, None, None, seq, payload))
            except trio.WouldBlock:
                sc.calls.pop(seq, None)
                await sc.conn.send(Envelope(Kind.CALL, CLIENT_CHANNEL, None, None, seq, payload))
                sc.calls[seq] = call
            except ConnectionClosed:
                sc.calls.pop(seq, None)
                return None
            await call.event.wait()
            return call.reply
        return None

    async def _connection(self, address: str) -> _ServerConn:
        while True:
            sc = self._conns.get(address)
            if sc is not None and not sc.conn.closed:
                return sc
            pending = self._connecting.get(address)
            if pending is None:
                break
            await pending.wait()
        done = self._connecting[address] = trio.Event()
        try:
            conn = await self.transport.connect(address)
            sc = _ServerConn(conn)
            self._conns[address] = sc
            self._watch(sc)
            return sc
        finally:
            del self._connecting[address]
            done.set()

    def _watch(self, sc: _ServerConn) -> None:
        """Fail the calls of ``sc`` as soon as its connection closes (no waiting for a timeout)."""
        async def watch() -> None:
            await sc.conn.wait_closed()
            sc.fail_all()

        if self._nursery is None:
            raise RuntimeError("use RaftClient through open_raft_client()")
        self._nursery.start_soon(watch)


@asynccontextmanager
async def open_raft_client(transport: Transport, addresses: list[str], *, client_id: str,
                           **options: Any) -> AsyncIterator[RaftClient]:
    """A :class:`RaftClient` whose connections are closed when the block ends."""
    client = RaftClient(transport, addresses, client_id=client_id, **options)
    async with trio.open_nursery() as nursery:
        client._nursery = nursery
        try:
            yield client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()
