"""The runtime must never depend on the language or the compiler: the plan is the only contract."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _offenders(folder: str, forbidden: tuple[str, ...]):
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in _imports(path):
            if name.startswith(forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_runtime_does_not_import_language_or_compiler():
    assert (ROOT / "runtime").is_dir()
    assert _offenders("runtime", ("eco.language", "eco.compiler", "language", "compiler")) == []


def test_plan_depends_on_nothing_else_in_eco():
    assert _offenders("plan", ("eco.language", "eco.compiler", "eco.runtime")) == []


def test_layering_check_sees_violations(tmp_path, monkeypatch):
    bad = tmp_path / "runtime"
    bad.mkdir()
    (bad / "x.py").write_text("from eco.compiler import driver\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert _offenders("runtime", ("eco.compiler",)) == ["runtime/x.py imports eco.compiler"]
