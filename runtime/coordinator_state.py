"""Consensus-backed coordinator state (``self.state``) and coordinator checkpoints.

The active coordinator of a ``leader: consensus`` ecosystem reads and writes a
small replicated key-value store through :class:`ReplicatedState`::

    done = await self.state.get("done", 0)           # linearizable (ReadIndex)
    await self.state.put("batch/7", {"files": 8})    # replicated, durable on a majority
    n = await self.state.incr("merged")              # -> the new value
    await self.state.update("seen", lambda s: (s or []) + [7])
    await self.state.put_many({"a": 1, "b": 2})      # atomically
    await self.state.delete("tmp")
    batches = await self.state.items("batch/")       # {key: value} under a prefix

Keys are strings, values any msgpack value (dicts, lists, numbers, strings,
bytes).  Every write carries the coordinator's term; the state machine refuses
a term older than the newest activation in the log, and the API raises
:class:`~eco.runtime.consensus.Fenced` on a coordinator that is no longer the
active one (it lost leadership, or its term is stale).  A write whose outcome is
unknown after a timeout is retried with the same session request id, so it is
applied exactly once.

Checkpoints (``checkpoint every T to URL``): :class:`Checkpointer` stores the
KV contents plus the coordinator's ``snapshot_state()`` bytes atomically via
:mod:`eco.runtime.checkpoint` (in a worker thread) and loads the newest one when
a coordinator takes over.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import trio

from .checkpoint import CheckpointStore, open_checkpoint_store
from .consensus import ConsensusGroup, Fenced
from .errors import EcoRuntimeError
from .raft import Entry, EntryKind
from .raft_driver import NotLeaderError, ProposalDropped, RaftError, RaftTimeout
from .raft_kv import Applied

__all__ = ["CoordinatorStateMachine", "ReplicatedState", "NoState", "StateUnavailable", "Checkpointer",
           "encode_state_command", "decode_checkpoint", "encode_checkpoint"]

_OPS = ("activate", "put", "put_many", "delete", "incr", "cas", "get")
_FENCED = "__fenced__"
_CAS_FAILED = "__cas_failed__"


class StateUnavailable(EcoRuntimeError):
    """``self.state`` was used by a coordinator whose ecosystem declares no consensus state."""


def encode_state_command(client_id: str, request_id: int, term: int, op: str, key: str | None = None,
                         value: Any = None) -> bytes:
    """One command of :class:`CoordinatorStateMachine`: ``[client, request id, term, op, key, value]``."""
    if op not in _OPS:
        raise ValueError(f"unknown coordinator state operation {op!r}; expected one of {', '.join(_OPS)}")
    return msgpack.packb([client_id, request_id, term, op, key, value], use_bin_type=True)


class CoordinatorStateMachine:
    """Deterministic replicated key-value store with sessions and term fencing.

    ``epoch`` is the newest term an ``activate`` command recorded; a command tagged
    with an older term is refused (its result is the fenced marker) on every replica.
    """

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.sessions: dict[str, tuple[int, Any]] = {}
        self.applied_index = 0
        self.epoch = 0
        self.active: str | None = None  # node of the newest activation
        self.activations: list[tuple[int, str]] = []  # (term, node), oldest first: the history of active coordinators

    def apply(self, entry: Entry) -> Applied | None:
        if entry.index <= self.applied_index:
            raise ValueError(f"entry {entry.index} applied twice (state machine at {self.applied_index})")
        self.applied_index = entry.index
        if entry.kind is not EntryKind.NORMAL or not entry.data:
            return None
        try:
            client_id, request_id, term, op, key, value = msgpack.unpackb(entry.data, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            return None  # deterministic: every replica ignores the same garbage
        last = self.sessions.get(client_id)
        if last is not None and request_id <= last[0]:
            return Applied(client_id, request_id, last[1] if request_id == last[0] else None, duplicate=True)
        if op == "activate":
            if term > self.epoch:
                self.epoch, self.active = term, value
                self.activations.append((term, value))
                result: Any = None
            else:
                result = [_FENCED, self.epoch]
        elif term < self.epoch:
            result = [_FENCED, self.epoch]
        else:
            result = self._execute(op, key, value)
        self.sessions[client_id] = (request_id, result)
        return Applied(client_id, request_id, result)

    def _execute(self, op: str, key: Any, value: Any) -> Any:
        data = self.data
        if op == "put":
            data[key] = value
            return None
        if op == "put_many":
            if isinstance(value, dict):
                data.update(value)
            return None
        if op == "delete":
            return data.pop(key, None)
        if op == "incr":
            current = data.get(key, 0)
            if type(current) is not int or type(value) is not int:
                return [_CAS_FAILED, current]  # not a number: a deterministic refusal
            data[key] = current + value
            return current + value
        if op == "cas":
            expected, new = value
            if data.get(key) != expected:
                return [_CAS_FAILED, data.get(key)]
            if new is None:
                data.pop(key, None)
            else:
                data[key] = new
            return None
        return data.get(key)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def snapshot(self) -> bytes:
        return msgpack.packb([self.applied_index, self.data, {c: list(s) for c, s in self.sessions.items()},
                              self.epoch, self.active, self.activations], use_bin_type=True)

    def restore(self, blob: bytes, index: int | None = None) -> None:
        applied, data, sessions, epoch, active, activations = msgpack.unpackb(blob, strict_map_key=False)
        self.applied_index = applied if index is None else index
        self.data = dict(data)
        self.sessions = {c: (s[0], s[1]) for c, s in sessions.items()}
        self.epoch, self.active = epoch, active
        self.activations = [(t, n) for t, n in activations]


def _copy(value: Any) -> Any:
    # Callers get their own copy: mutating it must never change the local replica.
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), strict_map_key=False)


class NoState:
    """``self.state`` of a coordinator without consensus: every use explains what is missing."""

    def __init__(self, ecosystem: str | None = None) -> None:
        self.ecosystem = ecosystem

    def __getattr__(self, name: str) -> Any:
        where = f"ecosystem {self.ecosystem}" if self.ecosystem else "this coordinator's ecosystem"
        raise StateUnavailable(f"{where} has no consensus-backed state: declare `state {{ leader: consensus }}` "
                               f"to use self.state.{name}")


class ReplicatedState:
    """The active coordinator's handle on the replicated state (see the module docstring).

    ``timeout``: how long one operation may take in total (retries included) before
    :class:`~eco.runtime.raft_driver.RaftTimeout` is raised.
    """

    def __init__(self, group: ConsensusGroup, term: int, *, timeout: float = 5.0) -> None:
        self.group = group
        self.term = term
        self.timeout = timeout
        self.client_id = f"{group.node_id}@{term}"
        self._request_id = 0
        self._lock = trio.Lock()  # one command at a time per session (exactly-once retries need it)

    @property
    def active(self) -> bool:
        """True while this node leads in this handle's term (local check, no round trip)."""
        return self.group.holds(self.term)

    def _check(self) -> None:
        if not self.group.holds(self.term):
            raise Fenced(f"ecosystem {self.group.ecosystem}: the coordinator of term {self.term} is no longer "
                         f"active (term now {self.group.term}, leader {self.group.leader})")

    async def activate(self) -> None:
        """Record this term as the newest activation (older terms' writes are refused from now on)."""
        await self._write("activate", None, self.group.node_id)

    async def _write(self, op: str, key: Any, value: Any) -> Any:
        async with self._lock:
            self._check()
            self._request_id += 1
            command = encode_state_command(self.client_id, self._request_id, self.term, op, key, value)
            deadline = trio.current_time() + self.timeout
            while True:
                self._check()
                left = deadline - trio.current_time()
                if left <= 0:
                    raise RaftTimeout(f"coordinator state {op} {key!r} not acknowledged within {self.timeout:g}s")
                try:
                    applied = await self.group.driver.propose(command, timeout=min(left, 1.0))
                    break
                except RaftTimeout:
                    continue  # outcome unknown: the same request id is applied at most once
                except (NotLeaderError, ProposalDropped) as exc:
                    raise Fenced(f"ecosystem {self.group.ecosystem}: term {self.term} lost leadership: {exc}") from None
        result = applied.result if applied is not None else None
        if isinstance(result, list) and len(result) == 2 and result[0] == _FENCED:
            raise Fenced(f"ecosystem {self.group.ecosystem}: term {self.term} is stale (newest activation: term {result[1]})")
        return result

    async def _barrier(self) -> None:
        self._check()
        try:
            await self.group.driver.read_barrier(self.timeout)
        except NotLeaderError as exc:
            raise Fenced(f"ecosystem {self.group.ecosystem}: term {self.term} lost leadership: {exc}") from None
        self._check()

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (linearizable: reflects every write acknowledged before the call)."""
        await self._barrier()
        data = self.group.state_machine.data
        return _copy(data[key]) if key in data else default

    async def items(self, prefix: str = "") -> dict[str, Any]:
        """Every ``{key: value}`` whose key starts with ``prefix`` (linearizable)."""
        await self._barrier()
        return {k: _copy(v) for k, v in self.group.state_machine.data.items() if k.startswith(prefix)}

    async def put(self, key: str, value: Any) -> None:
        _check_key(key)
        await self._write("put", key, value)

    async def put_many(self, values: Mapping[str, Any]) -> None:
        """Write several keys in one atomic command."""
        for key in values:
            _check_key(key)
        await self._write("put_many", None, dict(values))

    async def delete(self, key: str) -> Any:
        """Remove ``key``; returns its old value (None if absent)."""
        _check_key(key)
        return await self._write("delete", key, None)

    async def incr(self, key: str, n: int = 1) -> int:
        """Add ``n`` to the integer at ``key`` (0 if absent) and return the new value."""
        _check_key(key)
        if type(n) is not int:
            raise TypeError(f"incr takes an int, not {type(n).__name__}")
        result = await self._write("incr", key, n)
        if isinstance(result, list):
            raise TypeError(f"coordinator state key {key!r} holds {result[1]!r}, not an integer")
        return result

    async def update(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Replace the value of ``key`` with ``fn(old)`` atomically (compare-and-set, retried); returns the new value.

        ``fn`` may run more than once; a result of None deletes the key.
        """
        _check_key(key)
        while True:
            expected = await self.get(key)  # None: absent
            new = fn(_copy(default) if expected is None else expected)
            result = await self._write("cas", key, [expected, new])
            if not (isinstance(result, list) and result and result[0] == _CAS_FAILED):
                return new


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"coordinator state keys are strings, not {type(key).__name__}")


# ------------------------------------------------------------------ checkpoints


def encode_checkpoint(kv: Mapping[str, Any] | None, app: bytes | None) -> bytes:
    return msgpack.packb({"kv": None if kv is None else dict(kv), "app": app}, use_bin_type=True)


def decode_checkpoint(blob: bytes) -> tuple[dict[str, Any] | None, bytes | None]:
    """``(kv, app)`` from a checkpoint; ValueError if it is not one of ours."""
    try:
        raw = msgpack.unpackb(blob, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a coordinator checkpoint: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("kv"), (dict, type(None))) \
            or not isinstance(raw.get("app"), (bytes, type(None))):
        raise ValueError("not a coordinator checkpoint")
    return raw.get("kv"), raw.get("app")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Checkpointer:
    """Saves and loads one ecosystem's coordinator checkpoints (blocking I/O in worker threads).

    ``in_thread=False`` runs the store inline instead: under the simulator's MockClock a
    worker thread would let simulated time jump while the disk is busy, which makes a
    seeded run irreproducible.
    """

    def __init__(self, url: str, ecosystem: str, every: float, *, keep: int = 3, in_thread: bool = True) -> None:
        self.url = url
        self.ecosystem = ecosystem
        self.every = every
        self._store: CheckpointStore = open_checkpoint_store(url, keep=keep)
        self._in_thread = in_thread
        self.saved = 0

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._in_thread:
            return await trio.to_thread.run_sync(fn, *args)
        await trio.lowlevel.checkpoint()
        return fn(*args)

    async def save(self, kv: Mapping[str, Any] | None, app: bytes | None, meta: Mapping[str, Any] | None = None) -> int:
        blob = encode_checkpoint(kv, app)
        version = await self._blocking(self._store.save, self.ecosystem, blob, dict(meta or {}))
        self.saved += 1
        return version

    async def load_latest(self) -> tuple[int, dict[str, Any] | None, bytes | None, dict[str, Any]] | None:
        """``(version, kv, app, meta)`` of the newest intact checkpoint, or None."""
        loaded = await self._blocking(self._store.load_latest, self.ecosystem)
        if loaded is None:
            return None
        version, blob, meta = loaded
        kv, app = decode_checkpoint(blob)
        return version, kv, app, meta

    def close(self) -> None:
        self._store.close()


async def snapshot_coordinator(coordinator: Any) -> tuple[dict[str, Any] | None, bytes | None]:
    """What a checkpoint of ``coordinator`` holds: its replicated KV (if any) and ``snapshot_state()``."""
    state = getattr(coordinator, "state", None)
    kv = None
    if isinstance(state, ReplicatedState):
        # Runtime keys (the job's outcome) belong to this run's consensus group, not to checkpoints.
        kv = {k: v for k, v in (await state.items()).items() if not k.startswith("__eco.")}
    app = await _maybe_await(coordinator.snapshot_state())
    if app is not None and not isinstance(app, (bytes, bytearray)):
        raise TypeError(f"{type(coordinator).__name__}.snapshot_state() must return bytes or None")
    return kv, None if app is None else bytes(app)


async def restore_coordinator(coordinator: Any, checkpointer: Checkpointer) -> int | None:
    """On takeover: load the newest checkpoint; seed an empty replicated state from it, hand
    ``app`` to ``restore_state``. Returns the version loaded (None when there is none)."""
    loaded = await checkpointer.load_latest()
    if loaded is None:
        return None
    version, kv, app, _meta = loaded
    state = getattr(coordinator, "state", None)
    if kv and isinstance(state, ReplicatedState) and not await state.items():
        await state.put_many(kv)  # no consensus state survived (a fresh cluster): seed it
    if app is not None:
        await _maybe_await(coordinator.restore_state(app))
    return version


__all__ += ["snapshot_coordinator", "restore_coordinator"]
