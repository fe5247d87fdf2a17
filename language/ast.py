"""The typed syntax tree of a `.eco` file.

The tree is *syntactic*: declarations (import, cluster, message, channel,
ecosystem) have their own node types, and the settings inside their bodies are
one of a few item forms:

* ``Property``  -- ``key: term term ...``       (``priority: normal``, ``max_restarts: 5 within 10s``)
* ``Command``   -- ``key term term ...``        (``seeds [n1, n2]``, ``n1 at "h:p" zone "a"``,
                                                  ``topology hyparview { ... }``, ``security { ... }``)
* ``Carries``   -- ``carries A, B``
* ``WhenRule``  -- ``when metric > 100 for 10s: add 4``

What a key means, and which terms it accepts, is decided by the compiler's
schema checks, which is where "did you mean" hints for misspelt settings come
from.  Every node carries the ``Span`` it was parsed from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .spans import Span


@dataclass(eq=False, slots=True)
class Node:
    span: Span


# --------------------------------------------------------------------- terms


@dataclass(eq=False, slots=True)
class Ident(Node):
    """A single identifier token (a key or a declared name)."""

    name: str


@dataclass(eq=False, slots=True)
class Name(Node):
    """A possibly dotted reference: ``normal``, ``std.control``, ``n1``."""

    parts: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(eq=False, slots=True)
class ModuleRef(Node):
    """A Python component reference ``package.module:ClassName``."""

    module: str
    cls: str

    @property
    def text(self) -> str:
        return f"{self.module}:{self.cls}"


@dataclass(eq=False, slots=True)
class String(Node):
    value: str  # escapes already decoded


@dataclass(eq=False, slots=True)
class Integer(Node):
    value: int


@dataclass(eq=False, slots=True)
class Float(Node):
    value: float


@dataclass(eq=False, slots=True)
class Duration(Node):
    """``200ms``, ``5s``, ``2m``, ``1h``; ``seconds`` is the normalised value."""

    seconds: float
    text: str


@dataclass(eq=False, slots=True)
class Size(Node):
    """``256KB``, ``1MB``; ``bytes`` is the normalised value (1KB = 1024 B)."""

    bytes: int
    text: str


@dataclass(eq=False, slots=True)
class ListExpr(Node):
    items: list[Term]


@dataclass(eq=False, slots=True)
class ObjectExpr(Node):
    """A ``{ ... }`` body: items separated by commas or newlines."""

    items: list[Item]
    multiline: bool = False  # written over several lines in the source


@dataclass(eq=False, slots=True)
class Call(Node):
    """``env("ECO_COOKIE")``, ``static_quorum(2)``."""

    func: Name
    args: list[Term]


@dataclass(eq=False, slots=True)
class RangeExpr(Node):
    """``4..64``."""

    low: Term
    high: Term


Term = Union[Name, ModuleRef, String, Integer, Float, Duration, Size, ListExpr, ObjectExpr, Call, RangeExpr]


# --------------------------------------------------------------------- items


@dataclass(eq=False, slots=True)
class Property(Node):
    """``key: term term ...``"""

    key: Ident
    terms: list[Term]


@dataclass(eq=False, slots=True)
class Command(Node):
    """``key term term ...`` (no colon); a block ``key { ... }`` is a Command whose last term is an ObjectExpr."""

    key: Ident
    terms: list[Term]


@dataclass(eq=False, slots=True)
class Carries(Node):
    """``carries Job, Thumb``"""

    types: list[Name]


@dataclass(eq=False, slots=True)
class WhenRule(Node):
    """``when mailbox_depth > 100 for 10s: add 4``"""

    metric: Name
    op: str  # one of > >= < <= == !=
    threshold: Term
    window: Term | None  # the ``for`` clause
    action: Ident
    amount: Term | None


Item = Union[Property, Command, Carries, WhenRule]


# --------------------------------------------------------------- declarations


@dataclass(eq=False, slots=True)
class ImportDecl(Node):
    """``import std.channels`` or ``import "common/types.eco"`` (``as alias`` optional)."""

    target: Name | String
    alias: Ident | None = None


@dataclass(eq=False, slots=True)
class TypeExpr(Node):
    """A message field type: ``str``, ``list[str]``, ``map[str, int]``, ``Job?``."""

    name: Name
    args: list[TypeExpr] = field(default_factory=list)
    optional: bool = False


@dataclass(eq=False, slots=True)
class FieldDecl(Node):
    name: Ident
    type: TypeExpr
    default: Term | None = None


@dataclass(eq=False, slots=True)
class MessageDecl(Node):
    name: Ident
    fields: list[FieldDecl]


@dataclass(eq=False, slots=True)
class ClusterDecl(Node):
    name: Ident
    body: ObjectExpr


@dataclass(eq=False, slots=True)
class ChannelDecl(Node):
    name: Ident
    body: ObjectExpr


@dataclass(eq=False, slots=True)
class EcosystemDecl(Node):
    """``ecosystem name [on cluster] { ... }``"""

    name: Ident
    body: ObjectExpr
    cluster: Ident | None = None


Decl = Union[ImportDecl, ClusterDecl, MessageDecl, ChannelDecl, EcosystemDecl]


@dataclass(eq=False, slots=True)
class Comment(Node):
    text: str  # including the // or /* */ markers
    own_line: bool  # nothing but whitespace before it on its line


@dataclass(eq=False, slots=True)
class Module(Node):
    """One parsed `.eco` file."""

    decls: list[Decl]
    comments: list[Comment] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.span.source.path
