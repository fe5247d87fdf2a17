"""Generate Python message classes from a compiled plan.

``generate_messages(plan, source_name)`` renders ``templates/messages.py.j2``
into the text of a self-contained module: one validated class per message
type, compact positional msgpack encoding, and a registry the runtime uses to
decode payloads.  The generated module imports only ``msgpack``.

Output is deterministic (same plan, same text), so builds are reproducible and
generated files diff cleanly.
"""

from __future__ import annotations

import keyword
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from eco.plan.models import FieldType, MessageField, MessageType, Plan

_TEMPLATES = Path(__file__).parent / "templates"
_MAX_LINE = 100

_SCALARS = {"str": "_STR", "bytes": "_BYTES", "bool": "_BOOL", "int": "_INT", "float": "_FLOAT", "any": "_ANY"}
_ANNOTATIONS = {"str": "str", "bytes": "bytes", "bool": "bool", "int": "int", "float": "float", "any": "Any"}

# Names the generated module defines itself; a message class may not take them.
_MODULE_NAMES = frozenset(
    {"Message", "MESSAGE_TYPES", "MESSAGE_TAGS", "decode", "msgpack", "Any", "ClassVar", "annotations"}
)
# Attributes and parameters a field may not take (they would shadow the class's own).
_RESERVED_FIELDS = frozenset(
    {"self", "TYPE_NAME", "TYPE_TAG", "FIELDS", "to_msgpack", "from_msgpack", "_encode_fields", "_decode_fields"}
)


class CodegenError(ValueError):
    """The plan cannot be turned into message classes (e.g. an unknown field type)."""


@dataclass
class _Field:
    name: str
    attr: str
    annotation: str
    spec: str
    encode: str
    decode: str
    param: str


@dataclass
class _Message:
    name: str
    name_literal: str
    class_name: str
    where: str
    source: str
    tag: str
    attrs_tuple: str
    fields: list[_Field]
    params: list[str]
    signature_fits: bool
    notes: list[str] = field(default_factory=list)


def generate_messages(plan: Plan, source_name: str) -> str:
    """The text of a Python module with one class per message type in ``plan``."""
    import jinja2  # imported lazily: only `ecoc build` needs it

    gen = _Generator(plan)
    messages = [gen.message(m) for m in plan.messages]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    text = env.get_template("messages.py.j2").render(
        source_name=_one_line(source_name),
        messages=messages,
        composite_types=[{"const": c, "expr": e} for c, e in gen.composites.items()],
    )
    return text


def type_tag(message: MessageType) -> int:
    """A 31-bit fingerprint of a message's name and field types (its wire identity)."""
    signature = message.name + "{" + ",".join(f"{f.name}:{f.type.render()}" for f in message.fields) + "}"
    return zlib.crc32(signature.encode("utf-8")) & 0x7FFFFFFF


class _Generator:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.class_names = _class_names([m.name for m in plan.messages])
        self.composites: dict[str, str] = {}  # constant name -> constructor expression, in first-use order
        self._composite_by_type: dict[str, str] = {}
        self._check_tags()

    def _check_tags(self) -> None:
        seen: dict[int, str] = {}
        for m in self.plan.messages:
            tag = type_tag(m)
            if tag in seen:  # astronomically unlikely, but a silent clash would misroute payloads
                raise CodegenError(f"messages {seen[tag]!r} and {m.name!r} have the same type tag {tag:#x}")
            seen[tag] = m.name

    def message(self, m: MessageType) -> _Message:
        class_name = self.class_names[m.name]
        attrs = _field_attrs([f.name for f in m.fields])
        notes = [
            f"field `{f.name}` is the attribute `{attrs[f.name]}` (`{f.name}` is reserved in Python)"
            for f in m.fields
            if attrs[f.name] != f.name
        ]
        fields = [self._field(m, i, f, attrs[f.name]) for i, f in enumerate(m.fields)]
        params = [f.param for f in fields]
        one_line = f"    def __init__(self, *, {', '.join(params)}) -> None:"
        return _Message(
            name=m.name,
            name_literal=_py_str(m.name),
            class_name=class_name,
            where=_py_str(m.name)[1:-1],
            source=_one_line(m.source or "the plan"),
            tag=f"{type_tag(m):#010x}",
            attrs_tuple=_tuple_literal([f.attr for f in fields], indent=4),
            fields=fields,
            params=params,
            signature_fits=len(one_line) <= _MAX_LINE,
            notes=notes,
        )

    def _field(self, m: MessageType, index: int, f: MessageField, attr: str) -> _Field:
        spec = self._spec(f.type, f"{m.name}.{f.name}")
        annotation = self._annotation(f.type)
        param = f"{attr}: {annotation}"
        if f.has_default:
            param += f" = {_default_literal(f.default, f.type, f'{m.name}.{f.name}')}"
        nested = self._has_message(f.type)
        return _Field(
            name=f.name,
            attr=attr,
            annotation=annotation,
            spec=spec,
            encode=f"{spec}.encode(self.{attr})" if nested else f"self.{attr}",
            decode=(
                f'{spec}.decode(values[{index}], f"{{where}}.{attr}")'
                if nested
                else f"values[{index}]"
            ),
            param=param,
        )

    # -- types

    def _resolve(self, t: FieldType, where: str) -> None:
        if t.name in _SCALARS:
            arity = 0
        elif t.name in ("list", "optional"):
            arity = 1
        elif t.name == "map":
            arity = 2
        elif t.name in self.class_names:
            arity = 0
        else:
            raise CodegenError(f"{where}: unknown field type {t.render()!r}")
        if len(t.args) != arity:
            raise CodegenError(f"{where}: type {t.name!r} takes {arity} argument(s), got {len(t.args)}")

    def _spec(self, t: FieldType, where: str) -> str:
        """The module constant that validates/encodes type ``t`` (defining it on first use)."""
        self._resolve(t, where)
        if t.name in _SCALARS:
            return _SCALARS[t.name]
        key = t.render()
        if key in self._composite_by_type:
            return self._composite_by_type[key]
        if t.name == "list":
            expr = f"_ListOf({self._spec(t.args[0], where)})"
        elif t.name == "optional":
            expr = f"_Optional({self._spec(t.args[0], where)})"
        elif t.name == "map":
            expr = f"_MapOf({self._spec(t.args[0], where)}, {self._spec(t.args[1], where)})"
        else:
            expr = f"_MessageRef({_py_str(t.name)})"
        const = "_T_" + re.sub(r"[^0-9A-Za-z]+", "_", key).strip("_")
        base, n = const, 2
        while const in self.composites:
            const, n = f"{base}_{n}", n + 1
        self.composites[const] = expr
        self._composite_by_type[key] = const
        return const

    def _annotation(self, t: FieldType) -> str:
        if t.name in _ANNOTATIONS:
            return _ANNOTATIONS[t.name]
        if t.name == "list":
            return f"list[{self._annotation(t.args[0])}]"
        if t.name == "map":
            return f"dict[{self._annotation(t.args[0])}, {self._annotation(t.args[1])}]"
        if t.name == "optional":
            return f"{self._annotation(t.args[0])} | None"
        return self.class_names[t.name]

    def _has_message(self, t: FieldType) -> bool:
        if t.name in self.class_names and t.name not in _SCALARS:
            return True
        return any(self._has_message(a) for a in t.args)


# ---------------------------------------------------------------- helpers


def _class_names(names: list[str]) -> dict[str, str]:
    """Map message names (possibly dotted, like ``std.Envelope``) to unique Python class names."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        base = re.sub(r"\W", "_", name.replace(".", "_"), flags=re.ASCII) or "Message_"
        if base[0].isdigit():
            base = "M" + base
        if keyword.iskeyword(base) or keyword.issoftkeyword(base) or base in _MODULE_NAMES or base.startswith("_"):
            base = base.lstrip("_") + "_" if base.startswith("_") else base + "_"
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}{n}", n + 1
        taken.add(candidate)
        out[name] = candidate
    return out


def _field_attrs(names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        attr = re.sub(r"\W", "_", name, flags=re.ASCII) or "field_"
        if attr.startswith("__"):
            attr = "field" + attr
        if attr[0].isdigit():
            attr = "f_" + attr
        if keyword.iskeyword(attr) or attr in _RESERVED_FIELDS:
            attr += "_"
        while attr in taken:
            attr += "_"
        taken.add(attr)
        out[name] = attr
    return out


def _default_literal(value: object, t: FieldType, where: str) -> str:
    """Python source for a field default (lists and dicts are safe: validation copies them)."""
    if value is None:
        return "None"
    name = t.name
    if name == "optional":
        return _default_literal(value, t.args[0], where)
    if name == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            return f'float("{value}")'
        return repr(value)
    if name == "bytes" and isinstance(value, str):
        return repr(value.encode("utf-8"))
    if name == "list" and isinstance(value, (list, tuple)):
        items = ", ".join(_default_literal(v, t.args[0], where) for v in value)
        return f"[{items}]"
    if name == "map" and isinstance(value, dict):
        items = ", ".join(
            f"{_default_literal(k, t.args[0], where)}: {_default_literal(v, t.args[1], where)}"
            for k, v in value.items()
        )
        return "{" + items + "}"
    if name == "any" or name in ("str", "int", "bool", "bytes"):
        return _plain_literal(value, where)
    raise CodegenError(f"{where}: cannot use {value!r} as the default of a {t.render()} field")


def _plain_literal(value: object, where: str) -> str:
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else f'float("{value}")'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain_literal(v, where) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_plain_literal(k, where)}: {_plain_literal(v, where)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise CodegenError(f"{where}: cannot write default {value!r} as Python")


def _py_str(text: str) -> str:
    """A double-quoted Python string literal."""
    body = repr(text)[1:-1]
    if repr(text).startswith("'"):
        body = body.replace('"', '\\"').replace("\\'", "'")
    return f'"{body}"'


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _tuple_literal(items: list[str], indent: int) -> str:
    if not items:
        return "()"
    quoted = [_py_str(i) for i in items]
    if len(quoted) == 1:
        return f"({quoted[0]},)"
    flat = "(" + ", ".join(quoted) + ")"
    if indent + len("__match_args__ = ") + len(flat) <= _MAX_LINE:
        return flat
    pad = " " * (indent + 4)
    return "(\n" + "".join(f"{pad}{q},\n" for q in quoted) + " " * indent + ")"
