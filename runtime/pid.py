"""Process identifiers and unique references.

A :class:`PID` names one process anywhere in a cluster: the node it lives on,
a serial number unique on that node, and the node's *incarnation* (a number
that changes every time the node restarts, so a PID of a dead incarnation
never aliases a process of the new one).  A :class:`Ref` is a cluster-unique
token used for monitors and call replies.

Both are immutable, hashable, cheap (``__slots__``) and travel on the wire as
small msgpack arrays (``to_msgpack`` / ``from_msgpack``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PID", "Ref"]


class PID:
    """``<node.serial.incarnation>``: the address of one process."""

    __slots__ = ("node", "serial", "incarnation", "_hash")

    node: str
    serial: int
    incarnation: int

    def __init__(self, node: str, serial: int, incarnation: int = 0) -> None:
        # The slots' own setters: half the cost of object.__setattr__ (a PID is made per spawn).
        _pid_node(self, node)
        _pid_serial(self, serial)
        _pid_incarnation(self, incarnation)
        _pid_hash(self, hash((node, serial, incarnation)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PID is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not PID:
            return NotImplemented
        return (
            self.serial == other.serial  # type: ignore[attr-defined]
            and self.node == other.node  # type: ignore[attr-defined]
            and self.incarnation == other.incarnation  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: PID) -> bool:
        return (self.node, self.incarnation, self.serial) < (other.node, other.incarnation, other.serial)

    def __repr__(self) -> str:
        return f"<{self.node}.{self.serial}.{self.incarnation}>"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (PID, (self.node, self.serial, self.incarnation))

    def to_msgpack(self) -> list[Any]:
        """The wire form: ``[node, serial, incarnation]``."""
        return [self.node, self.serial, self.incarnation]

    @classmethod
    def from_msgpack(cls, data: Any) -> PID:
        """Rebuild a PID from :meth:`to_msgpack` output; ValueError on anything else."""
        if (
            isinstance(data, (list, tuple))
            and len(data) == 3
            and isinstance(data[0], str)
            and type(data[1]) is int
            and type(data[2]) is int
        ):
            return cls(data[0], data[1], data[2])
        raise ValueError(f"not a PID: {data!r}")

    @classmethod
    def parse(cls, text: str) -> PID:
        """Parse the ``<node.serial.incarnation>`` form (node names may contain dots)."""
        inner = text.strip()
        if inner.startswith("<") and inner.endswith(">"):
            node, _, rest = inner[1:-1].rpartition(".")
            node, _, serial = node.rpartition(".")
            if node and serial.isdigit() and rest.isdigit():
                return cls(node, int(serial), int(rest))
        raise ValueError(f"not a PID: {text!r} (expected <node.serial.incarnation>)")


class Ref:
    """A cluster-unique token (monitor references, call correlation)."""

    __slots__ = ("node", "incarnation", "n", "_hash")

    node: str
    incarnation: int
    n: int

    def __init__(self, node: str, incarnation: int, n: int) -> None:
        _ref_node(self, node)
        _ref_incarnation(self, incarnation)
        _ref_n(self, n)
        _ref_hash(self, hash((n, node, incarnation)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Ref is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Ref:
            return NotImplemented
        return (
            self.n == other.n  # type: ignore[attr-defined]
            and self.node == other.node  # type: ignore[attr-defined]
            and self.incarnation == other.incarnation  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"#Ref<{self.node}.{self.incarnation}.{self.n}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Ref, (self.node, self.incarnation, self.n))

    def to_msgpack(self) -> list[Any]:
        """The wire form: ``[node, incarnation, n]``."""
        return [self.node, self.incarnation, self.n]

    @classmethod
    def from_msgpack(cls, data: Any) -> Ref:
        """Rebuild a Ref from :meth:`to_msgpack` output; ValueError on anything else."""
        if (
            isinstance(data, (list, tuple))
            and len(data) == 3
            and isinstance(data[0], str)
            and type(data[1]) is int
            and type(data[2]) is int
        ):
            return cls(data[0], data[1], data[2])
        raise ValueError(f"not a Ref: {data!r}")


# Slot descriptors' setters, used by the constructors (the classes forbid normal assignment).
_pid_node = PID.__dict__["node"].__set__
_pid_serial = PID.__dict__["serial"].__set__
_pid_incarnation = PID.__dict__["incarnation"].__set__
_pid_hash = PID.__dict__["_hash"].__set__
_ref_node = Ref.__dict__["node"].__set__
_ref_incarnation = Ref.__dict__["incarnation"].__set__
_ref_n = Ref.__dict__["n"].__set__
_ref_hash = Ref.__dict__["_hash"].__set__
