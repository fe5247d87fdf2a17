"""``resolve_imports=True``: coordinator/worker references are imported and their classes checked."""

from __future__ import annotations

import sys

import pytest

from eco.compiler.driver import compile_file


def compile_with(tmp_path, module_source: str, refs: str, **kw):
    pkg = tmp_path / "compapp"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(module_source)
    (tmp_path / "main.eco").write_text(f"ecosystem e {{ {refs} }}\n")
    for name in ("compapp", "compapp.mod"):
        sys.modules.pop(name, None)
    saved = list(sys.path)
    result = compile_file(tmp_path / "main.eco", resolve_imports=True, **kw)
    assert sys.path == saved, "sys.path must be restored"
    return result


def codes(result):
    return [d.code for d in result.diagnostics]


def test_without_the_flag_nothing_is_imported(tmp_path):
    (tmp_path / "main.eco").write_text("ecosystem e { coordinator: surely_missing_mod:C, workers: x:W }\n")
    assert codes(compile_file(tmp_path / "main.eco")) == []


def test_missing_module(tmp_path):
    result = compile_with(tmp_path, "", "coordinator: compapp.nothere:C, workers: compapp.mod:W")
    (d,) = [d for d in result.diagnostics if d.code == "ECO1017"]
    assert d.span.text == "compapp.nothere:C" and "ModuleNotFoundError" in d.notes[0]


@pytest.mark.parametrize("body", ["raise RuntimeError('boom')\n", "import sys\nsys.exit(3)\n", "def broken(:\n"])
def test_errors_while_importing_become_diagnostics(tmp_path, body):
    result = compile_with(tmp_path, body, "coordinator: compapp.mod:C, workers: compapp.mod:W")
    # The module is imported once and its failure reported once, at the first reference.
    (d,) = result.diagnostics
    assert d.code == "ECO1017" and d.span.text == "compapp.mod:C"


def test_missing_class_suggests_the_closest(tmp_path):
    result = compile_with(tmp_path, "class Resizer: pass\nclass Coordinator: pass\n",
                          "coordinator: compapp.mod:Coordinator, workers: compapp.mod:Resiser")
    d = [d for d in result.diagnostics if d.code == "ECO1018"][0]
    assert d.span.text == "compapp.mod:Resiser" and d.help == "did you mean `compapp.mod:Resizer`?"


def test_search_paths_are_used(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "elsewhere_mod.py").write_text("class C: pass\nclass W: pass\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.eco").write_text("ecosystem e { coordinator: elsewhere_mod:C, workers: elsewhere_mod:W }\n")
    sys.modules.pop("elsewhere_mod", None)
    assert "ECO1017" in codes(compile_file(tmp_path / "app" / "main.eco", resolve_imports=True))
    sys.modules.pop("elsewhere_mod", None)
    result = compile_file(tmp_path / "app" / "main.eco", resolve_imports=True, search_paths=[lib])
    assert "ECO1017" not in codes(result)


def test_base_classes_are_checked(tmp_path):
    runtime = pytest.importorskip("eco.runtime")
    if not (isinstance(getattr(runtime, "Worker", None), type) and isinstance(getattr(runtime, "Coordinator", None), type)):
        pytest.skip("eco.runtime does not export Worker/Coordinator yet")
    source = (
        "from eco.runtime import Coordinator, Worker\n"
        "class C(Coordinator): pass\nclass W(Worker): pass\nclass Plain: pass\n"
    )
    ok = compile_with(tmp_path, source, "coordinator: compapp.mod:C, workers: compapp.mod:W")
    assert codes(ok) == []
    bad = compile_with(tmp_path, source, "coordinator: compapp.mod:W, workers: compapp.mod:Plain")
    assert codes(bad) == ["ECO3011", "ECO3011"]
