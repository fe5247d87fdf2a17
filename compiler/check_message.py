"""Checks for ``message`` declarations: field names, field types and default values."""

from __future__ import annotations

from eco.language import ast
from eco.language.diagnostics import Label, error

from . import codes
from .resolve import LoadedModule, Program
from .values import Reader, replace_fix, show

# builtin type name -> number of type arguments
BUILTIN_TYPES = {"str": 0, "int": 0, "float": 0, "bool": 0, "bytes": 0, "any": 0, "list": 1, "map": 2}
MAP_KEY_TYPES = ("str", "int", "bool")
MAX_TYPE_DEPTH = 32


def check_message(reader: Reader, program: Program, module: LoadedModule, decl: ast.MessageDecl,
                  qualified: str) -> dict:
    """The plan-shaped message (eco.plan.MessageType fields)."""
    fields: list[dict] = []
    seen: dict[str, ast.Ident] = {}
    for f in decl.fields:
        name = f.name.name
        if name in seen:
            reader.bag.add(error(
                codes.DUPLICATE_ENTRY, f"the field `{name}` is declared twice in message `{decl.name.name}`",
                f.name.span, label="declared again here", labels=[Label(seen[name].span, "first declared here")],
            ))
            continue
        seen[name] = f.name
        ftype = field_type(reader, program, module, f.type, 0)
        if ftype is None:
            continue
        out = {"name": name, "type": ftype}
        if f.default is not None:
            ok, value = _default(reader, f.default, ftype, 0)
            if not ok:
                continue
            out["has_default"] = True
            out["default"] = value
        fields.append(out)
    return {"name": qualified, "fields": tuple(fields), "source": module.name}


def field_type(reader: Reader, program: Program, module: LoadedModule, t: ast.TypeExpr, depth: int) -> dict | None:
    if depth > MAX_TYPE_DEPTH:
        reader.bag.add(error(codes.TYPE_TOO_DEEP, f"this type is nested more than {MAX_TYPE_DEPTH} levels deep",
                             t.span, label="too deep", help="declare an intermediate message type"))
        return None
    inner = _plain_type(reader, program, module, t, depth)
    if inner is None:
        return None
    return {"name": "optional", "args": (inner,)} if t.optional else inner


def _plain_type(reader, program, module, t: ast.TypeExpr, depth: int) -> dict | None:
    name = t.name.dotted
    arity = BUILTIN_TYPES.get(name)
    if arity is None:
        if t.args:
            reader.bag.add(error(codes.BAD_TYPE_ARGS, f"the message type `{name}` takes no type arguments",
                                 t.span, label="unexpected `[...]`"))
            return None
        symbol = program.lookup(module, "message", t.name, extra=tuple(BUILTIN_TYPES))
        return {"name": symbol.qualified} if symbol is not None else None
    if len(t.args) != arity:
        example = {0: name, 1: f"{name}[str]", 2: f"{name}[str, int]"}[arity]
        reader.bag.add(error(
            codes.BAD_TYPE_ARGS,
            f"`{name}` takes {arity} type argument{'s' if arity != 1 else ''}, found {len(t.args)}",
            t.span, label="wrong number of type arguments", help=f"write `{example}`",
        ))
        return None
    args = []
    for arg in t.args:
        a = field_type(reader, program, module, arg, depth + 1)
        if a is None:
            return None
        args.append(a)
    if name == "map" and args[0]["name"] not in MAP_KEY_TYPES:
        reader.bag.add(error(codes.WRONG_TYPE, f"map keys must be str, int or bool, found `{args[0]['name']}`",
                             t.args[0].span, label="not a valid key type"))
        return None
    return {"name": name, "args": tuple(args)} if args else {"name": name}


def render_type(t: dict) -> str:
    if t["name"] == "optional":
        return render_type(t["args"][0]) + "?"
    args = t.get("args") or ()
    return t["name"] + (f"[{', '.join(render_type(a) for a in args)}]" if args else "")


# --------------------------------------------------------------- defaults


def _default(reader: Reader, term: ast.Node, t: dict, depth: int) -> tuple[bool, object]:
    """(ok, JSON-compatible value) for a default of type ``t``; reports a mismatch once."""
    name = t["name"]
    if depth > MAX_TYPE_DEPTH:
        _bad(reader, term, t, "the value is nested too deeply")
        return False, None
    if isinstance(term, ast.Name) and term.dotted in ("none", "null", "nil", "None"):
        if name in ("optional", "any") and term.dotted == "none":
            return True, None
        if name in ("optional", "any"):
            reader.bag.add(error(codes.BAD_DEFAULT, f"{show(term)} is not a value; write `none`", term.span,
                                 label="unknown literal", fix=replace_fix(term.span, "none")))
            return False, None
        _bad(reader, term, t, "only optional fields (`T?`) can default to `none`")
        return False, None
    if name == "optional":
        return _default(reader, term, t["args"][0], depth + 1)
    if name == "any":
        return _any_value(reader, term, t, depth)
    if name in ("str", "bytes") and isinstance(term, ast.String):
        return True, term.value
    if name == "int" and isinstance(term, ast.Integer):
        return True, term.value
    if name == "float" and isinstance(term, (ast.Integer, ast.Float)):
        return True, float(term.value)
    if name == "bool" and isinstance(term, ast.Name) and term.dotted in ("true", "false"):
        return True, term.dotted == "true"
    if name == "list" and isinstance(term, ast.ListExpr):
        out = []
        for item in term.items:
            ok, value = _default(reader, item, t["args"][0], depth + 1)
            if not ok:
                return False, None
            out.append(value)
        return True, out
    if name == "map" and isinstance(term, ast.ObjectExpr):
        if term.items and t["args"][0]["name"] != "str":
            _bad(reader, term, t, "map literals can only spell `str` keys")
            return False, None
        out_map: dict = {}
        for item in term.items:
            if not isinstance(item, ast.Property) or len(item.terms) != 1:
                _bad(reader, item, t, "write map entries as `key: value`")
                return False, None
            ok, value = _default(reader, item.terms[0], t["args"][1], depth + 1)
            if not ok:
                return False, None
            out_map[item.key.name] = value
        return True, out_map
    if name not in BUILTIN_TYPES:
        _bad(reader, term, t, "message-typed fields cannot have a default (except `none` when optional)")
        return False, None
    hint = None
    if name == "float" and isinstance(term, ast.String):
        hint = "remove the quotes"
    elif name == "str" and not isinstance(term, ast.String):
        hint = f"write `\"{term.span.text}\"`"
    _bad(reader, term, t, hint)
    return False, None


def _any_value(reader: Reader, term: ast.Node, t: dict, depth: int) -> tuple[bool, object]:
    if isinstance(term, (ast.String, ast.Integer, ast.Float)):
        return True, term.value
    if isinstance(term, ast.Name) and term.dotted in ("true", "false"):
        return True, term.dotted == "true"
    if isinstance(term, ast.ListExpr):
        out = []
        for item in term.items:
            ok, value = _any_value(reader, item, t, depth + 1) if depth < MAX_TYPE_DEPTH else (False, None)
            if not ok:
                if depth >= MAX_TYPE_DEPTH:
                    _bad(reader, term, t, "the value is nested too deeply")
                return False, None
            out.append(value)
        return True, out
    if isinstance(term, ast.ObjectExpr) and not term.items:
        return True, {}
    _bad(reader, term, t, None)
    return False, None


def _bad(reader: Reader, term: ast.Node, t: dict, hint: str | None) -> None:
    reader.bag.add(error(
        codes.BAD_DEFAULT, f"the default {show(term)} does not match the type `{render_type(t)}`", term.span,
        label=f"expected a `{render_type(t)}` value", help=hint,
    ))
