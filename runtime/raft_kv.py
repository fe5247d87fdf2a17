"""A small replicated key-value state machine with client sessions.

Commands are msgpack-encoded ``[client_id, request_id, op, key, value]``. Each client numbers
its requests 1, 2, 3, ... and sends one at a time; the state machine remembers the last request
id and result per client, so a command retried after a timeout (and thus appended to the log
twice) is applied exactly once and the retry gets the original result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from eco.runtime.raft import Entry, EntryKind

OPS = ("put", "append", "delete", "get", "incr")


def encode_command(client_id: str, request_id: int, op: str, key: str, value: str | int | None = None) -> bytes:
    """One command. ``incr`` adds the integer ``value`` (default 1) to the key's integer value."""
    if op not in OPS:
        raise ValueError(f"unknown key-value operation {op!r}; expected one of {', '.join(OPS)}")
    return msgpack.packb([client_id, request_id, op, key, value])


@dataclass(frozen=True)
class Applied:
    """Outcome of applying one command: ``duplicate`` when a retry was answered from the session."""

    client_id: str
    request_id: int
    result: Any
    duplicate: bool = False


class KVStateMachine:
    """Deterministic key-value store; feed it committed entries in log order."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.sessions: dict[str, tuple[int, Any]] = {}  # client_id -> (last request id, its result)
        self.applied_index = 0

    def apply(self, entry: Entry) -> Applied | None:
        """Apply one committed entry; returns None for entries that are not client commands."""
        if entry.index <= self.applied_index:
            raise ValueError(f"entry {entry.index} applied twice (state machine at {self.applied_index})")
        self.applied_index = entry.index
        if entry.kind is not EntryKind.NORMAL or not entry.data:
            return None
        client_id, request_id, op, key, value = msgpack.unpackb(entry.data)
        last = self.sessions.get(client_id)
        if last is not None and request_id <= last[0]:
            # A retry: never apply twice. Older ids than the last are stale (nobody waits for them).
            return Applied(client_id, request_id, last[1] if request_id == last[0] else None, duplicate=True)
        result = self._execute(op, key, value)
        self.sessions[client_id] = (request_id, result)
        return Applied(client_id, request_id, result)

    def _execute(self, op: str, key: str, value: str | None) -> Any:
        if op == "put":
            self.data[key] = value
            return None
        if op == "append":
            self.data[key] = self.data.get(key, "") + value
            return None
        if op == "incr":
            try:
                total = int(self.data.get(key) or 0) + (1 if value is None else int(value))
            except (TypeError, ValueError):
                return None  # not a number: deterministic no-op on every replica
            self.data[key] = str(total)
            return total
        if op == "delete":
            return self.data.pop(key, None)
        return self.data.get(key)  # get through the log

    def get(self, key: str) -> str | None:
        """Local read: linearizable only after a ReadIndex round and applying up to its index."""
        return self.data.get(key)

    def snapshot(self) -> bytes:
        return msgpack.packb([self.applied_index, self.data, {c: list(s) for c, s in self.sessions.items()}])

    def restore(self, blob: bytes, index: int | None = None) -> None:
        applied, data, sessions = msgpack.unpackb(blob, strict_map_key=False)
        self.applied_index = applied if index is None else index
        self.data = dict(data)
        self.sessions = {c: (s[0], s[1]) for c, s in sessions.items()}
