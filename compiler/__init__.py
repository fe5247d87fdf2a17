"""The `ecoc` compiler: checks `.eco` files and lowers them to a plan.

``compile_file``, ``compile_source`` and ``CompileResult`` are re-exported
lazily so that ``import eco.compiler`` stays cheap.
"""

from __future__ import annotations

__all__ = ["CompileResult", "compile_file", "compile_source"]


def __getattr__(name: str):
    if name in __all__:
        from . import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
