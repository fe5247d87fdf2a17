"""Errors raised by the runtime kernel; all derive from :class:`EcoRuntimeError`."""

from __future__ import annotations

from typing import Any

__all__ = [
    "EcoRuntimeError",
    "CallTimeout",
    "CallFailed",
    "NoProc",
    "MailboxFull",
    "NameTaken",
    "NotInProcess",
    "ReceiveTimeout",
    "NotConnected",
    "SupervisorError",
    "ComponentLoadError",
]


class EcoRuntimeError(Exception):
    """Base class of every error the runtime raises on purpose."""


class CallTimeout(EcoRuntimeError):
    """A ``call`` got no reply in time."""

    def __init__(self, target: Any, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        super().__init__(f"call to {target} timed out after {timeout:g}s without a reply")


class CallFailed(EcoRuntimeError):
    """The process being called exited (or its node was lost) before replying."""

    def __init__(self, target: Any, reason: Any) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"call to {target} failed: the process exited ({reason})")


class NoProc(EcoRuntimeError):
    """No process is alive under that PID or registered name."""

    def __init__(self, target: Any, detail: str = "") -> None:
        self.target = target
        what = f"registered name {target!r}" if isinstance(target, str) else str(target)
        super().__init__(f"no process {what}" + (f": {detail}" if detail else ""))


class MailboxFull(EcoRuntimeError):
    """The destination's bounded mailbox is full and its overflow policy refuses more."""

    def __init__(self, target: Any, capacity: int) -> None:
        self.target = target
        self.capacity = capacity
        super().__init__(f"mailbox of {target} is full ({capacity} messages)")


class NameTaken(EcoRuntimeError):
    """``register`` with a name another live process already holds."""

    def __init__(self, name: str, holder: Any) -> None:
        self.name = name
        self.holder = holder
        super().__init__(f"name {name!r} is already registered by {holder}")


class NotInProcess(EcoRuntimeError):
    """An operation that needs a calling process ran outside one (or from a helper task)."""


class ReceiveTimeout(EcoRuntimeError):
    """``receive(timeout=...)`` found no (matching) message in time."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"no matching message within {timeout:g}s")


class NotConnected(EcoRuntimeError):
    """A remote PID or name was addressed but this kernel has no route to its node."""

    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(f"no route to node {node!r} (the kernel has no remote router)")


class SupervisorError(EcoRuntimeError):
    """A dynamic-children request was refused (unknown id, duplicate id, child still running)."""


class ComponentLoadError(EcoRuntimeError):
    """A ``module:Class`` component reference cannot be imported or is not a Worker."""
