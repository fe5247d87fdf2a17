"""Imports: standard modules, project files, aliases, search paths, cycles and unreadable files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eco.compiler.driver import compile_file
from eco.stdlib import read_std_module, std_module_file, std_module_names

ECO = "ecosystem e {{ coordinator: a:C, workers: a:W, channels {{ {channels} }} }}\n"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_std_modules_are_shipped_and_located():
    assert "channels" in std_module_names()
    assert std_module_file("channels") is not None and std_module_file("nope") is None
    assert std_module_file("../etc") is None
    assert "channel control" in read_std_module("channels")


def test_std_channels_compile_cleanly(project):
    uses = ", ".join(f"{n}: std.{n}" for n in ("control", "data", "bulk", "events"))
    write(project, {"main.eco": "import std.channels\n" + ECO.format(channels=uses)})
    result = compile_file("main.eco")
    assert result.diagnostics == []
    plan = result.plan
    assert [c.name for c in plan.channels] == ["std.control", "std.data", "std.bulk", "std.events"]
    bulk = plan.channel("std.bulk")
    assert (bulk.priority, bulk.chunk) == ("low", 1024 * 1024)


def test_project_files_dotted_string_and_alias(project):
    write(project, {
        "main.eco": 'import common.types\nimport "lib/extra.eco" as lib\n'
                    "channel jobs { carries Job, lib.Extra, Other }\n" + ECO.format(channels="d: jobs"),
        "common/types.eco": "message Job { path: str }\n",
        "lib/extra.eco": "message Extra { n: int }\nmessage Other { n: int }\n",
    })
    result = compile_file("main.eco")
    assert result.diagnostics == []
    plan = result.plan
    assert plan.channel("jobs").carries == ("Job", "Extra", "Other")
    assert plan.sources == ("main.eco", os.path.join("common", "types.eco"), os.path.join("lib", "extra.eco"))
    assert plan.message("Job").source == os.path.join("common", "types.eco")
    assert set(result.sources) == {"main.eco", os.path.join("common", "types.eco"), os.path.join("lib", "extra.eco")}


def test_imported_clusters_and_ecosystems_are_inlined(project):
    write(project, {
        "main.eco": 'import "infra.eco"\n',
        "infra.eco": 'cluster c { nodes { n1 at "127.0.0.1:7101" } }\necosystem e { coordinator: a:C, workers: a:W }\n',
    })
    result = compile_file("main.eco")
    assert result.diagnostics == []  # an import that contributes declarations is not unused
    assert result.plan.ecosystem("e").cluster == "c"


def test_search_paths(project):
    write(project, {"app/main.eco": "import shared\nchannel j { carries S }\n" + ECO.format(channels="d: j"),
                    "vendor/shared.eco": "message S { a: int }\n"})
    assert "ECO1010" in codes(compile_file("app/main.eco"))
    result = compile_file("app/main.eco", search_paths=[project / "vendor"])
    assert result.diagnostics == []


def test_missing_module_lists_where_it_looked(project):
    write(project, {"main.eco": 'import "nope.eco"\n', "nopes.eco": ""})
    (d,) = compile_file("main.eco").diagnostics
    assert d.code == "ECO1010" and d.span.text == '"nope.eco"'
    assert "nope.eco" in d.notes[0]
    assert d.help == 'did you mean `"nopes.eco"`?'


def test_cycle_shows_the_path(project):
    write(project, {"a.eco": 'import "b.eco"\nmessage A { b: B }\n', "b.eco": 'import "c.eco"\nmessage B { a: A }\n',
                    "c.eco": 'import "a.eco"\n'})
    result = compile_file("a.eco")
    (d,) = [d for d in result.diagnostics if d.code == "ECO1011"]
    assert d.message == "import cycle: a.eco → b.eco → c.eco → a.eco"
    assert d.path == "c.eco"
    assert [l.span.source.path for l in d.labels] == ["a.eco", "b.eco"]


def test_self_import_is_a_cycle(project):
    write(project, {"a.eco": 'import "a.eco"\n'})
    assert codes(compile_file("a.eco")) == ["ECO1011"]


def test_diamond_imports_load_once(project):
    write(project, {
        "main.eco": 'import "x.eco"\nimport "y.eco"\nchannel j { carries X, Y }\n' + ECO.format(channels="d: j"),
        "x.eco": 'import "base.eco"\nmessage X { b: Base }\n',
        "y.eco": 'import "base.eco"\nmessage Y { b: Base }\n',
        "base.eco": "message Base { a: int }\n",
    })
    result = compile_file("main.eco")
    assert result.diagnostics == []
    assert [m.name for m in result.plan.messages] == ["X", "Base", "Y"]


def test_duplicates_across_files(project):
    write(project, {"main.eco": 'import "t.eco"\nmessage Job { a: int }\n', "t.eco": "message Job { b: int }\n"})
    (d,) = [d for d in compile_file("main.eco").diagnostics if d.code == "ECO1001"]
    assert d.path == "t.eco" and d.labels[0].span.source.path == "main.eco"


def test_name_only_reachable_transitively(project):
    write(project, {"main.eco": 'import "lib/a.eco"\nchannel j { carries Base }\n' + ECO.format(channels="d: j"),
                    "lib/a.eco": 'import "b.eco"\nmessage A { b: Base }\n', "lib/b.eco": "message Base { a: int }\n"})
    (d,) = [d for d in compile_file("main.eco").diagnostics if d.code == "ECO1015"]
    assert d.span.text == "Base"
    assert d.help == 'add `import "lib/b.eco"` at the top of this file'
    assert d.fix.edits[0].replacement == 'import "lib/b.eco"\n'


def test_unreadable_imports_are_diagnostics(project):
    write(project, {"main.eco": 'import "dir"\nimport "bin.eco"\n'})
    (project / "dir").mkdir()
    (project / "bin.eco").write_bytes(b"\x00\x01binary")
    result = compile_file("main.eco")
    assert sorted(codes(result)) == ["ECO0001", "ECO1012"]
    assert "bin.eco" in result.sources  # so the renderer can show where


def test_unused_imports(project):
    write(project, {"main.eco": 'import std.channels\nimport "t.eco"\n', "t.eco": "message T { a: int }\n"})
    result = compile_file("main.eco")
    unused = [d for d in result.diagnostics if d.code == "ECO4003"]
    assert [d.span.text for d in unused] == ["import std.channels", 'import "t.eco"']
    assert all(d.severity.label == "warning" for d in unused)


def test_std_name_without_import_suggests_the_import(project):
    write(project, {"main.eco": ECO.format(channels="c: std.bulk")})
    (d,) = compile_file("main.eco").diagnostics
    assert d.code == "ECO1013" and d.help == "add `import std.channels` at the top of this file"
    assert d.fix.edits[0].replacement == "import std.channels\n"


def test_unqualified_std_name_suggests_qualifying(project):
    write(project, {"main.eco": "import std.channels\n" + ECO.format(channels="c: control")})
    d = [d for d in compile_file("main.eco").diagnostics if d.code == "ECO1003"][0]
    assert d.help == "did you mean `std.control`?"
