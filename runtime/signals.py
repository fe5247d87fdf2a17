"""Exit reasons and the system messages the kernel puts in mailboxes.

Exit reasons (:class:`Reason`):

* ``normal``: the process returned (or called ``ctx.exit()``).
* ``shutdown``: it was asked to stop (a supervisor stopping it, node
  shutdown); ``shutdown: <detail>`` carries why, e.g. a supervisor that
  reached its restart intensity exits with
  ``shutdown: reached max restart intensity``.
* ``killed``: it was stopped without grace (after a shutdown timeout).
* ``error``: it raised; ``exc_type`` and ``text`` describe the exception.
* ``noproc``: monitored or linked to a process that did not exist.
* ``noconnection``: the node the process lived on was lost.

A reason compares equal to its text form, so ``reason == "normal"`` works.

System messages: :class:`Down` (a monitor fired), :class:`Exited` (an exit
signal from a link, delivered as a message because the process traps exits),
:class:`CallRequest` / :class:`CallReply` (the two halves of ``call``).
Every one has ``to_msgpack`` / ``from_msgpack`` so the node can put them on
the wire; payloads (requests, replies) must then be msgpack-able themselves.
"""

from __future__ import annotations

from typing import Any

from .pid import PID, Ref

__all__ = [
    "Reason",
    "NORMAL",
    "SHUTDOWN",
    "KILLED",
    "NOPROC",
    "NOCONNECTION",
    "Down",
    "Exited",
    "CallRequest",
    "CallReply",
    "Started",
    "ProcessExit",
    "dest_to_msgpack",
    "dest_from_msgpack",
]

_KINDS = ("normal", "shutdown", "killed", "error", "noproc", "noconnection")


class Reason:
    """Why a process exited. Immutable; see the module docstring for the kinds."""

    __slots__ = ("kind", "detail", "exc_type")

    kind: str
    detail: str
    exc_type: str | None

    def __init__(self, kind: str, detail: str = "", exc_type: str | None = None) -> None:
        if kind not in _KINDS:
            raise ValueError(f"unknown exit reason kind {kind!r} (expected one of {', '.join(_KINDS)})")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "detail", detail)
        object.__setattr__(self, "exc_type", exc_type)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Reason is immutable")

    @classmethod
    def error(cls, exc: BaseException) -> Reason:
        """The reason for a process that raised ``exc`` (a lone exception group is unwrapped)."""
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        return cls("error", str(exc), type(exc).__name__)

    @classmethod
    def coerce(cls, value: Reason | str) -> Reason:
        """Accept a Reason or its text form (``"normal"``, ``"shutdown: why"``, ...)."""
        if isinstance(value, Reason):
            return value
        if not isinstance(value, str):
            raise TypeError(f"an exit reason is a Reason or a str, not {type(value).__name__}")
        kind, sep, detail = value.partition(":")
        kind = kind.strip()
        if kind in _KINDS:
            return cls(kind, detail.strip() if sep else "")
        # Any other text is an application-defined failure.
        return cls("error", value, None)

    @property
    def is_clean(self) -> bool:
        """normal or shutdown: not a failure (transient children are not restarted)."""
        return self.kind == "normal" or self.kind == "shutdown"

    @property
    def text(self) -> str:
        if self.kind == "error":
            if self.exc_type:
                return f"error: {self.exc_type}: {self.detail}" if self.detail else f"error: {self.exc_type}"
            return f"error: {self.detail}"
        return f"{self.kind}: {self.detail}" if self.detail else self.kind

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Reason({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reason):
            return (self.kind, self.detail, self.exc_type) == (other.kind, other.detail, other.exc_type)
        if isinstance(other, str):
            return self.text == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.text)

    def to_msgpack(self) -> list[Any]:
        return [self.kind, self.detail, self.exc_type]

    @classmethod
    def from_msgpack(cls, data: Any) -> Reason:
        if isinstance(data, (list, tuple)) and len(data) == 3 and isinstance(data[0], str):
            kind, detail, exc_type = data
            if kind in _KINDS and isinstance(detail, str) and (exc_type is None or isinstance(exc_type, str)):
                return cls(kind, detail, exc_type)
        raise ValueError(f"not an exit reason: {data!r}")


NORMAL = Reason("normal")
SHUTDOWN = Reason("shutdown")
KILLED = Reason("killed")
NOPROC = Reason("noproc")
NOCONNECTION = Reason("noconnection")


class ProcessExit(Exception):
    """Raised by ``ctx.exit(reason)`` to end the calling process with ``reason``."""

    def __init__(self, reason: Reason) -> None:
        self.reason = reason
        super().__init__(str(reason))


# A destination is a PID, a local registered name, or (node, name) for a name on another node.
Dest = PID | str | tuple[str, str]


def dest_to_msgpack(dest: Dest) -> Any:
    """Wire form of a destination: a PID array, a name string, or ``[node, name]`` (tagged)."""
    if type(dest) is PID:
        return ["pid", dest.to_msgpack()]
    if isinstance(dest, str):
        return ["name", dest]
    node, name = dest
    return ["remote_name", [node, name]]


def dest_from_msgpack(data: Any) -> Dest:
    if isinstance(data, (list, tuple)) and len(data) == 2:
        tag, body = data
        if tag == "pid":
            return PID.from_msgpack(body)
        if tag == "name" and isinstance(body, str):
            return body
        if tag == "remote_name" and isinstance(body, (list, tuple)) and len(body) == 2:
            if isinstance(body[0], str) and isinstance(body[1], str):
                return (body[0], body[1])
    raise ValueError(f"not a destination: {data!r}")


class Down:
    """A monitor fired: ``pid`` (or the name monitored) exited with ``reason``."""

    __slots__ = ("ref", "pid", "reason")

    def __init__(self, ref: Ref, pid: Dest, reason: Reason) -> None:
        self.ref = ref
        self.pid = pid
        self.reason = reason

    def __repr__(self) -> str:
        return f"Down({self.ref!r}, {self.pid}, {self.reason.text!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is Down and (self.ref, self.pid, self.reason) == (other.ref, other.pid, other.reason)  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def to_msgpack(self) -> list[Any]:
        return [self.ref.to_msgpack(), dest_to_msgpack(self.pid), self.reason.to_msgpack()]

    @classmethod
    def from_msgpack(cls, data: Any) -> Down:
        try:
            ref, pid, reason = data
            return cls(Ref.from_msgpack(ref), dest_from_msgpack(pid), Reason.from_msgpack(reason))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a Down message: {data!r}") from exc


class Exited:
    """An exit signal from ``pid`` (a linked process, or ``None`` for the node itself) as a message."""

    __slots__ = ("pid", "reason")

    def __init__(self, pid: PID | None, reason: Reason) -> None:
        self.pid = pid
        self.reason = reason

    def __repr__(self) -> str:
        return f"Exited({self.pid}, {self.reason.text!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is Exited and (self.pid, self.reason) == (other.pid, other.reason)  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def to_msgpack(self) -> list[Any]:
        return [None if self.pid is None else self.pid.to_msgpack(), self.reason.to_msgpack()]

    @classmethod
    def from_msgpack(cls, data: Any) -> Exited:
        try:
            pid, reason = data
            return cls(None if pid is None else PID.from_msgpack(pid), Reason.from_msgpack(reason))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not an Exited message: {data!r}") from exc


class CallRequest:
    """The request half of ``call``: answer it with ``ctx.reply(request, value)``."""

    __slots__ = ("ref", "sender", "request")

    def __init__(self, ref: Ref, sender: PID, request: Any) -> None:
        self.ref = ref
        self.sender = sender
        self.request = request

    def __repr__(self) -> str:
        return f"CallRequest({self.ref!r}, {self.sender}, {self.request!r})"

    def to_msgpack(self) -> list[Any]:
        """The request payload must itself be msgpack-able (or already encoded by the node)."""
        return [self.ref.to_msgpack(), self.sender.to_msgpack(), self.request]

    @classmethod
    def from_msgpack(cls, data: Any) -> CallRequest:
        try:
            ref, sender, request = data
            return cls(Ref.from_msgpack(ref), PID.from_msgpack(sender), request)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a CallRequest: {data!r}") from exc


class CallReply:
    """The reply half of ``call``; the kernel drops replies nobody waits for any more."""

    __slots__ = ("ref", "value")

    def __init__(self, ref: Ref, value: Any) -> None:
        self.ref = ref
        self.value = value

    def __repr__(self) -> str:
        return f"CallReply({self.ref!r}, {self.value!r})"

    def to_msgpack(self) -> list[Any]:
        return [self.ref.to_msgpack(), self.value]

    @classmethod
    def from_msgpack(cls, data: Any) -> CallReply:
        try:
            ref, value = data
            return cls(Ref.from_msgpack(ref), value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a CallReply: {data!r}") from exc


class Started:
    """Sent to the parent by a process spawned with ``ack=True`` once its ``init`` finished."""

    __slots__ = ("pid",)

    def __init__(self, pid: PID) -> None:
        self.pid = pid

    def __repr__(self) -> str:
        return f"Started({self.pid})"

    def __eq__(self, other: object) -> bool:
        return type(other) is Started and self.pid == other.pid  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]
