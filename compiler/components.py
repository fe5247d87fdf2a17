"""``--resolve-imports``: import the Python classes named by ``module:Class`` references.

Importing runs user code, so this only happens on request.  Any failure while
importing (syntax errors, missing dependencies, ``sys.exit`` at import time)
becomes a diagnostic at the reference, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from eco.language.diagnostics import DiagnosticBag, error, suggest

from . import codes
from .check_ecosystem import EcoInfo
from .values import replace_fix

_BASES = {"coordinator": "Coordinator", "workers": "Worker"}


def check_components(bag: DiagnosticBag, ecosystems: Sequence[EcoInfo], search_paths: Sequence[Path]) -> None:
    if not any(e.components for e in ecosystems):
        return
    bases = _runtime_bases()
    cache: dict[str, object] = {}
    for eco in ecosystems:
        extra = [str(eco.module.directory), *(str(p) for p in search_paths)]
        for role, ref in eco.components.items():
            module = _import(bag, ref, extra, cache)
            if module is None:
                continue
            cls = getattr(module, ref.cls, None)
            if not isinstance(cls, type):
                classes = [n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_")]
                guess = suggest(ref.cls, classes)
                found = "is not a class" if hasattr(module, ref.cls) else "does not exist"
                bag.add(error(
                    codes.COMPONENT_CLASS_MISSING, f"`{ref.module}.{ref.cls}` {found}", ref.span,
                    label=f"no class `{ref.cls}` in `{ref.module}`",
                    help=f"did you mean `{ref.module}:{guess}`?" if guess else None,
                    fix=replace_fix(ref.span, f"{ref.module}:{guess}") if guess else None,
                ))
                continue
            base = bases.get(_BASES[role])
            if base is not None and not issubclass(cls, base):
                bag.add(error(
                    codes.COMPONENT_WRONG_BASE,
                    f"`{ref.text}` must subclass `eco.runtime.{_BASES[role]}`", ref.span,
                    label=f"not a {_BASES[role].lower()} class",
                    help=f"write `class {ref.cls}(eco.runtime.{_BASES[role]}): ...`",
                ))


def _runtime_bases() -> dict[str, type]:
    """The runtime's base classes, looked up by name (absent while the runtime lacks them)."""
    try:
        import eco.runtime as runtime
    except Exception:  # noqa: BLE001 - a broken runtime must not break checking
        return {}
    out = {}
    for name in _BASES.values():
        value = getattr(runtime, name, None)
        if isinstance(value, type):
            out[name] = value
    return out


def _import(bag: DiagnosticBag, ref, extra_paths: list[str], cache: dict[str, object]):
    if ref.module in cache:
        return cache[ref.module]
    saved = list(sys.path)
    sys.path[:0] = [p for p in extra_paths if p not in sys.path]
    try:
        module = importlib.import_module(ref.module)
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        bag.add(error(
            codes.COMPONENT_IMPORT_FAILED, f"cannot import the module `{ref.module}`", ref.span,
            label="import failed", notes=[detail],
            help="check the module name and that it is on the Python path (use `-I DIR` for extra directories)"
            if isinstance(exc, ModuleNotFoundError) else "fix the error raised while importing the module",
        ))
        module = None
    finally:
        sys.path[:] = saved
    cache[ref.module] = module
    return module
