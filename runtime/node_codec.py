"""How application payloads travel between nodes: msgpack plus a few extension types.

Plain msgpack values (None, bool, int, float, str, bytes, lists, dicts) go as
they are; tuples arrive as lists.  The runtime's own values and the generated
message classes travel as msgpack extension types, so a PID put in a message
on one node is a PID again on the other:

==== ======================================================================
code value
==== ======================================================================
1    :class:`~eco.runtime.pid.PID`  (``[node, serial, incarnation]``)
2    :class:`~eco.runtime.pid.Ref`  (``[node, incarnation, n]``)
3    :class:`~eco.runtime.signals.Reason`
4    a generated message (``ecoc codegen``): ``[module, class, to_msgpack() bytes]``
5    :class:`~eco.runtime.component.WorkerStarted`
6    :class:`~eco.runtime.component.NodeDown`
==== ======================================================================

Anything else cannot be sent to another node: the send fails with a clear
``ProtocolError`` naming the type, in the sending process.
"""

from __future__ import annotations

import importlib
from typing import Any

import msgpack

from .component import NodeDown, WorkerStarted
from .pid import PID, Ref
from .signals import Reason

EXT_PID, EXT_REF, EXT_REASON, EXT_MESSAGE, EXT_WORKER_STARTED, EXT_NODE_DOWN = 1, 2, 3, 4, 5, 6

_packb = msgpack.Packer(use_bin_type=True).pack

# PIDs recur in nearly every message (reply addresses, call senders), so their
# encodings and decodings are cached.  PIDs are immutable; the caches are
# bounded by being emptied when they reach _CACHE_MAX entries.
_CACHE_MAX = 4096
_pid_ext: dict[PID, msgpack.ExtType] = {}
_pid_of: dict[bytes, PID] = {}


def packer_default(obj: Any) -> Any:
    """msgpack ``default`` hook: the runtime types and generated messages as extension types."""
    t = type(obj)
    if t is PID:
        ext = _pid_ext.get(obj)
        if ext is None:
            if len(_pid_ext) >= _CACHE_MAX:
                _pid_ext.clear()
            ext = _pid_ext[obj] = msgpack.ExtType(EXT_PID, _packb((obj.node, obj.serial, obj.incarnation)))
        return ext
    if t is Ref:
        return msgpack.ExtType(EXT_REF, _packb((obj.node, obj.incarnation, obj.n)))
    if t is Reason:
        return msgpack.ExtType(EXT_REASON, _packb(obj.to_msgpack()))
    if t is WorkerStarted:
        return msgpack.ExtType(EXT_WORKER_STARTED, _packb(obj.to_msgpack()))
    if t is NodeDown:
        return msgpack.ExtType(EXT_NODE_DOWN, _packb(obj.to_msgpack()))
    if isinstance(obj, (set, frozenset)):
        return sorted(obj) if all(isinstance(x, (int, str)) for x in obj) else list(obj)
    to_msgpack = getattr(t, "to_msgpack", None)
    if to_msgpack is not None and hasattr(t, "TYPE_TAG"):
        return msgpack.ExtType(EXT_MESSAGE, _packb((t.__module__, t.__qualname__, obj.to_msgpack())))
    raise TypeError(f"a {t.__module__}.{t.__qualname__} cannot be sent to another node (use plain data or a generated message)")


def ext_hook(code: int, data: bytes) -> Any:
    """msgpack ``ext_hook``: the inverse of :func:`packer_default` (ValueError on bad data)."""
    if code == EXT_PID:
        pid = _pid_of.get(data)
        if pid is None:
            pid = PID.from_msgpack(msgpack.unpackb(data))
            if len(_pid_of) >= _CACHE_MAX:
                _pid_of.clear()
            _pid_of[data] = pid
        return pid
    if code == EXT_REF:
        return Ref.from_msgpack(msgpack.unpackb(data))
    if code == EXT_REASON:
        return Reason.from_msgpack(msgpack.unpackb(data))
    if code == EXT_WORKER_STARTED:
        return WorkerStarted.from_msgpack(msgpack.unpackb(data))
    if code == EXT_NODE_DOWN:
        return NodeDown.from_msgpack(msgpack.unpackb(data))
    if code == EXT_MESSAGE:
        return _decode_message(data)
    return msgpack.ExtType(code, data)


def _decode_message(data: bytes) -> Any:
    raw = msgpack.unpackb(data)
    if not (isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], str) and isinstance(raw[1], str)):
        raise ValueError("malformed message extension")
    module_name, cls_name, body = raw
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"message module {module_name!r} is not importable on this node: {exc}") from None
    cls = getattr(module, cls_name, None)
    if cls is None or not hasattr(cls, "TYPE_TAG") or not hasattr(cls, "from_msgpack"):
        raise ValueError(f"{module_name}.{cls_name} is not a generated message class")
    return cls.from_msgpack(body)
