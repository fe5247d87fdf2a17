"""Entering a process's fresh :class:`trio.CancelScope` cheaply.

Every process runs inside its own cancel scope (``kill`` cancels it), and
``CancelScope.__enter__`` is the largest single cost of a spawn: a context
manager for deadline bookkeeping, a clock read and validation, all useless for
a scope that has no deadline and was never entered.  :func:`enter_fresh_scope`
does only what entering such a scope requires (create the scope's
``CancelStatus`` under the task's current one and make it the task's), using
long-standing trio internals (private, hence the check below).

The internals are checked once at import; if anything is missing (a future
trio), ``FAST_ENTRY`` is False and the public ``__enter__`` is used instead: a
trio upgrade can cost speed, never correctness.  Leave the scope with ``scope.__exit__``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import trio
from trio.lowlevel import Task, enable_ki_protection

__all__ = ["FAST_ENTRY", "enter_fresh_scope", "enter_scope_public"]


def enter_scope_public(scope: trio.CancelScope, task: Task) -> None:
    """Enter ``scope`` in the running ``task`` with trio's public API."""
    scope.__enter__()


def _internals_available() -> bool:
    try:
        from trio._core._run import CancelStatus
    except ImportError:
        return False
    probe = trio.CancelScope()
    task_fields = {field.name for field in getattr(Task, "__attrs_attrs__", ())}
    try:
        status_params = inspect.signature(CancelStatus).parameters
    except (TypeError, ValueError):
        return False
    return (
        isinstance(CancelStatus, type)
        and {"scope", "parent"} <= status_params.keys()
        and all(hasattr(probe, a) for a in ("_has_been_entered", "_cancel_status", "_deadline", "_relative_deadline"))
        and "_cancel_status" in task_fields
        and callable(getattr(Task, "_activate_cancel_status", None))
    )


def _make_fast_entry() -> Callable[[trio.CancelScope, Task], None]:
    from trio._core._run import CancelStatus

    inf = math.inf

    @enable_ki_protection  # as trio's __enter__: a Ctrl-C must not land half-way through
    def enter_fresh_scope(scope: trio.CancelScope, task: Task) -> None:
        """Enter ``scope`` (never entered, no deadline) in the running ``task``."""
        if scope._has_been_entered or scope._deadline != inf or scope._relative_deadline != inf:
            scope.__enter__()  # not the case this shortcut covers: trio handles (or rejects) it
            return
        scope._has_been_entered = True
        status = scope._cancel_status = CancelStatus(scope=scope, parent=task._cancel_status)
        task._activate_cancel_status(status)  # a scope cancelled before entry cancels the task at once

    return enter_fresh_scope


FAST_ENTRY = _internals_available()
enter_fresh_scope = _make_fast_entry() if FAST_ENTRY else enter_scope_public
