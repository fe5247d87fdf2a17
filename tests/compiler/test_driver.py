"""The driver's public API, its robustness and its cost."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import eco.compiler
from eco.compiler.driver import CompileResult, compile_file, compile_source
from eco.language.source import SourceIOError


def test_lazy_reexports():
    assert eco.compiler.compile_file is compile_file
    assert eco.compiler.CompileResult is CompileResult
    with pytest.raises(AttributeError):
        eco.compiler.nope  # noqa: B018


def test_unreadable_root_raises_source_io_error(tmp_path):
    with pytest.raises(SourceIOError):
        compile_file(tmp_path / "missing.eco")
    with pytest.raises(SourceIOError):
        compile_file(tmp_path)


def test_undecodable_root_is_a_diagnostic(tmp_path):
    path = tmp_path / "bad.eco"
    path.write_bytes(b"message M { a: int }\n\xff\xfe")
    result = compile_file(path)
    assert [d.code for d in result.diagnostics] == ["ECO0002"]
    assert result.plan is None and result.module is None
    assert str(path) in result.sources


def test_diagnostics_are_sorted_across_files(tmp_path):
    (tmp_path / "t.eco").write_text("message T { a: nope }\n")
    (tmp_path / "main.eco").write_text('import "t.eco"\nchannel c { priority: hihg, carries T }\n')
    result = compile_file(tmp_path / "main.eco")
    keys = [d.sort_key() for d in result.diagnostics]
    assert keys == sorted(keys) and len(keys) >= 3


def test_check_only_never_imports_pydantic():
    code = (
        "import sys\n"
        "from eco.compiler.driver import compile_source\n"
        "r = compile_source('channel c { priority: high }\\n')\n"
        "assert r.diagnostics and not r.has_errors\n"
        "assert 'pydantic' not in sys.modules, 'pydantic imported on the check path'\n"
        "assert 'jinja2' not in sys.modules\n"
        "assert r.plan is not None and 'pydantic' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("text", [
    "",
    "\ufeffchannel c { }\n",
    "channel c {\r\n  priority: high\r\n}\r\n",
    "ecosystem e { " * 200,
    "message M { a: " + "list[" * 500 + "int" + "]" * 500 + " }",
    "channel c { carries " + ", ".join(f"M{i}" for i in range(300)) + " }",
    "ecosystem e { state { checkpoint } partition { resolver: static_quorum(a, b) } scaling { workers: a..b } }",
    "ecosystem e { workers: a:W x -1, coordinator: a:C x 2, distribution { policy: explicit_nodes [1, \"x\"] } }",
    "cluster c { nodes { n1 at 5 zone 7 labels 3 } seeds 4 topology { } failure_detector 3 security 1 }",
    "cluster c { nodes [n1] topology hyparview { active: 0 } failure_detector swim { probe_timeout: 0s } }",
    "message M { a: map[list[int], str] = {}, b: int? = nil, c: any = [1, [2, {}]], d: bool = yes }",
    "ecosystem e on c on d { }",
    "import std\nimport std.channels.control\nimport \"\"\n",
])
def test_pathological_input_never_crashes(text):
    result = compile_source(text)
    assert isinstance(result.diagnostics, list)
    result.plan  # noqa: B018 - lowering must not crash either


def test_check_throughput_on_a_large_generated_spec():
    parts = ['import std.channels\ncluster c {\n  nodes {\n']
    parts += [f'    n{i} at "127.0.0.1:{7000 + i}" zone "z{i % 3}"\n' for i in range(50)]
    parts.append("  }\n}\n")
    for i in range(400):
        parts.append(f"message M{i} {{\n  a: str\n  b: int = {i}\n  c: list[str] = []\n}}\n")
        parts.append(f"channel ch{i} {{\n  priority: normal\n  chunk: 64KB\n  carries M{i}\n}}\n")
        parts.append(
            f"ecosystem e{i} {{\n  coordinator: app.mod:C\n  workers: app.mod:W x 4\n"
            f"  channels {{ data: ch{i}, control: std.control }}\n"
            "  supervision { strategy: one_for_one, max_restarts: 5 within 10s }\n"
            "  distribution { spread: zone }\n  scaling {\n    workers: 1..8\n    when mailbox_depth > 10: add 1\n  }\n}\n"
        )
    text = "".join(parts)
    lines = text.count("\n")
    start = time.perf_counter()
    result = compile_source(text)
    elapsed = time.perf_counter() - start
    assert not result.has_errors, [d.message for d in result.diagnostics[:5]]
    assert len(result.plan.ecosystems) == 400
    # Generous bound for a loaded CI machine; docs/benchmarks.md has the real figure.
    assert lines / elapsed > 5000, f"{lines / elapsed:.0f} lines/s"


@pytest.mark.parametrize("text", [
    "import std.channels\nchannel jobs { priority: high, carries Job }\nmessage Job { path: str }\n",
    "cluster c { nodes { n1 at \"127.0.0.1:1\" } \nmessage M { a: 5zz }\necosystem e { workers: x:Y x 2 }\n",
])
def test_a_dropped_result_leaves_no_cyclic_garbage(text):
    """Parser and symbol tables break their reference cycles: a result is freed without the collector."""
    import gc

    from eco.language import SourceFile, parse

    compile_source(text, "t.eco")  # imports and first-use caches
    gc.collect()
    result = parse(SourceFile("t.eco", text))
    del result
    assert gc.collect() == 0
    result = compile_source(text, "t.eco")
    assert result.diagnostics is not None
    del result
    assert gc.collect() == 0
