"""The standard `.eco` modules (``import std.channels``), shipped as package data."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def _std_dir() -> Traversable:
    return resources.files(__name__).joinpath("std")


def std_module_names() -> list[str]:
    """Names of the standard modules, such as ``"channels"`` (imported as ``std.channels``)."""
    return sorted(p.name[: -len(".eco")] for p in _std_dir().iterdir() if p.name.endswith(".eco"))


def std_module_file(name: str) -> Traversable | None:
    """The file of standard module ``name`` (``"channels"``), or None if there is no such module."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        return None
    candidate = _std_dir().joinpath(*name.split(".")[:-1], name.split(".")[-1] + ".eco")
    return candidate if candidate.is_file() else None


def read_std_module(name: str) -> str | None:
    """The source text of standard module ``name``, or None if there is no such module."""
    f = std_module_file(name)
    return None if f is None else f.read_text(encoding="utf-8")
