"""The `ecoc` subcommands end to end, in process."""

from __future__ import annotations

import json
import re
from importlib.resources import files

import jsonschema
import pytest
from ecoc_helpers import BROKEN, CLEAN, run_subprocess

SCHEMA = json.loads(files("eco.compiler").joinpath("diagnostics-schema.json").read_text(encoding="utf-8"))
UNUSED = CLEAN + "\nmessage Unused { x: int }\n"  # a warning, no error


@pytest.fixture
def project(tmp_path):
    (tmp_path / "clean.eco").write_text(CLEAN)
    (tmp_path / "broken.eco").write_text(BROKEN)
    (tmp_path / "warn.eco").write_text(UNUSED)
    return tmp_path


# ------------------------------------------------------------------ check


def test_check_clean(ecoc, project):
    run = ecoc("check", "clean.eco")
    assert (run.code, run.out) == (0, "ok: 1 file checked\n")


def test_check_error_human(ecoc, project):
    run = ecoc("check", "broken.eco", "--color", "never")
    assert run.code == 1
    assert run.out.startswith("error[ECO1002]: ")
    assert " --> broken.eco:10:11\n" in run.out
    assert "10 |   carries Jbo\n   |           ^^^" in run.out
    assert "did you mean `Job`" in run.out
    assert run.out.endswith("error: 1 error in 1 file\n")


def test_check_colour_always_and_never(ecoc, project):
    assert "\x1b[" in ecoc("check", "broken.eco", "--color", "always").out
    assert "\x1b[" not in ecoc("check", "broken.eco", "--color", "never").out
    assert "\x1b[" not in ecoc("check", "broken.eco").out  # captured output is not a terminal


def test_warnings_pass_unless_werror(ecoc, project):
    run = ecoc("check", "warn.eco")
    assert run.code == 0 and "warning[ECO4001]" in run.out and "(1 warning)" in run.out
    run = ecoc("check", "--werror", "warn.eco")
    assert run.code == 1 and run.out.endswith("error: 1 warning in 1 file (--werror)\n")


def test_check_recurses_directories_skipping_hidden_and_venvs(ecoc, tmp_path):
    (tmp_path / "app" / "sub").mkdir(parents=True)
    (tmp_path / "app" / "a.eco").write_text(CLEAN)
    (tmp_path / "app" / "sub" / "b.eco").write_text(BROKEN)
    (tmp_path / "app" / "notes.txt").write_text("not eco")
    for skipped in (".git", ".venv", "env"):
        (tmp_path / "app" / skipped).mkdir()
        (tmp_path / "app" / skipped / "bad.eco").write_text("this is not eco {")
    (tmp_path / "app" / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    run = ecoc("check", "--format", "json", "app", "app/a.eco")  # a.eco given twice: checked once
    data = json.loads(run.out)
    assert [f["path"] for f in data["files"]] == ["app/a.eco", "app/sub/b.eco"]
    assert run.code == 1


def test_check_json_validates_and_counts(ecoc, project):
    run = ecoc("check", "--format", "json", "clean.eco", "broken.eco", "warn.eco", "missing.eco")
    data = json.loads(run.out)
    jsonschema.validate(data, SCHEMA)
    assert data["summary"] == {"files": 3, "errors": 1, "warnings": 1, "notes": 0}
    assert [f["error_count"] for f in data["files"]] == [0, 1, 0]
    assert data["tool_errors"][0]["path"] == "missing.eco"
    assert data["exit_code"] == run.code == 2
    assert "missing.eco" in run.err  # also on stderr, for CI logs


def test_check_github_and_sarif(ecoc, project):
    run = ecoc("check", "--format", "github", "broken.eco")
    assert run.code == 1
    assert re.search(r"^::error file=broken\.eco,line=10,col=11,endLine=10,endColumn=14,title=ECO1002::", run.out, re.M)
    run = ecoc("check", "--format", "sarif", "broken.eco", "warn.eco")
    log = json.loads(run.out)
    assert log["version"] == "2.1.0"
    assert {r["ruleId"] for r in log["runs"][0]["results"]} == {"ECO1002", "ECO4001"}
    assert run.code == 1


def test_search_path_option_reaches_the_compiler(ecoc, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "shared.eco").write_text("message Job { path: str }\n")
    (tmp_path / "app.eco").write_text(CLEAN.replace("message Job { path: str }\n", "import shared\n"))
    assert ecoc("check", "app.eco").code == 1
    run = ecoc("check", "-I", "lib", "app.eco")
    assert run.code == 0, run.out


# ------------------------------------------------------------------ build


def test_build_writes_plan_and_messages(ecoc, project):
    from eco.plan import load_plan

    run = ecoc("build", "clean.eco", "-o", "out")
    assert run.code == 0, run.output
    assert "wrote out/plan.json, out/messages.py" in run.out
    plan = load_plan(project / "out" / "plan.json")
    assert [m.name for m in plan.messages] == ["Job"]
    namespace: dict = {}
    code = (project / "out" / "messages.py").read_text()
    assert "clean.eco" in code.splitlines()[0] or "clean.eco" in code[:500]
    exec(compile(code, "messages.py", "exec"), namespace)
    job = namespace["Job"](path="/tmp/x")
    assert type(job).from_msgpack(job.to_msgpack()) == job
    assert (project / "out" / "plan.json").stat().st_mode & 0o044  # readable like any built file


def test_build_with_errors_writes_nothing(ecoc, project):
    run = ecoc("build", "broken.eco", "-o", "out", "--format", "json")
    assert run.code == 1
    assert json.loads(run.out)["outputs"] == []
    assert not (project / "out").exists()


def test_build_into_an_unwritable_place_is_an_io_error(ecoc, project):
    (project / "out").write_text("a file, not a directory")
    run = ecoc("build", "clean.eco", "-o", "out")
    assert run.code == 2
    assert "cannot write `out`" in run.err


def test_build_json_lists_outputs(ecoc, project):
    data = json.loads(ecoc("build", "clean.eco", "-o", "out", "--format", "json").out)
    jsonschema.validate(data, SCHEMA)
    assert data["command"] == "build" and data["outputs"] == ["out/plan.json", "out/messages.py"]


# ------------------------------------------------------------------ schema, version, usage


def test_schema_prints_the_plan_schema(ecoc, project):
    run = ecoc("schema")
    schema = json.loads(run.out)
    assert run.code == 0 and schema["$schema"].startswith("https://json-schema.org/")
    assert "plan_version" in schema["properties"]
    assert ecoc("schema", "--output", "plan.schema.json").code == 0
    assert json.loads((project / "plan.schema.json").read_text()) == schema


def test_version(ecoc):
    run = ecoc("--version")
    assert run.code == 0 and re.fullmatch(r"ecoc \S+\n", run.out)


@pytest.mark.parametrize(
    "args",
    [[], ["frobnicate"], ["check"], ["check", "--format", "xml", "a.eco"], ["check", "--bogus", "a.eco"],
     ["build", "clean.eco"], ["explain", "ECO1001", "--list"], ["graph", "a.eco", "--format", "png"]],
)
def test_usage_errors_exit_2_with_a_hint(ecoc, project, args):
    run = ecoc(*args)
    assert run.code == 2
    assert "Traceback" not in run.output
    if args:
        assert run.err.startswith("ecoc: error: ") or run.err.startswith("ecoc")
        assert "hint:" in run.err or "usage:" in run.err


def test_usage_error_through_the_console_script(tmp_path):
    run = run_subprocess("check", "--format", "xml", "a.eco", cwd=tmp_path)
    assert run.code == 2
    assert run.err.splitlines()[0].startswith("ecoc check: error: argument --format: invalid choice")
    assert run.err.splitlines()[1] == "hint: run `ecoc check --help` for usage"


def test_help_exits_0(ecoc):
    assert ecoc("--help").code == 0
    assert ecoc("check", "--help").code == 0


# ------------------------------------------------------------------ internal errors


def test_internal_error_is_reported_not_a_traceback(ecoc, project, monkeypatch):
    from eco.compiler import driver

    def explode(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(driver, "compile_file", explode)
    run = ecoc("check", "clean.eco")
    assert run.code == 3
    assert "internal error while compiling `clean.eco`: RuntimeError: kaboom" in run.err
    assert "please report" in run.err and "Traceback" not in run.output


def test_internal_error_outside_a_file_is_caught_too(ecoc, project, monkeypatch):
    from eco.compiler import cli

    monkeypatch.setattr(cli, "collect_sources", lambda *a: 1 / 0)
    run = ecoc("check", "clean.eco")
    assert run.code == 3 and "internal error" in run.err and "Traceback" not in run.output


def test_eco_debug_shows_the_traceback(ecoc, project, monkeypatch):
    from eco.compiler import driver

    monkeypatch.setattr(driver, "compile_file", lambda *a, **k: 1 / 0)
    monkeypatch.setenv("ECO_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        ecoc("check", "clean.eco")


# ------------------------------------------------------------------ fmt and graph


def test_fmt_check_diff_and_rewrite(ecoc, tmp_path):
    messy = "message   Job {path:str}\n"
    (tmp_path / "m.eco").write_text(messy)
    run = ecoc("fmt", "--check", "m.eco")
    assert run.code == 1 and "would reformat m.eco" in run.err
    assert (tmp_path / "m.eco").read_text() == messy
    run = ecoc("fmt", "--diff", "m.eco")
    assert run.code == 0 and run.out.startswith("--- a/m.eco\n+++ b/m.eco\n")
    assert (tmp_path / "m.eco").read_text() == messy
    run = ecoc("fmt", "m.eco")
    assert run.code == 0 and "reformatted m.eco" in run.err
    formatted = (tmp_path / "m.eco").read_text()
    assert formatted != messy
    run = ecoc("fmt", "--check", "m.eco")
    assert run.code == 0 and "0 files would be reformatted, 1 unchanged" in run.err


def test_fmt_leaves_files_with_syntax_errors_alone(ecoc, tmp_path):
    (tmp_path / "bad.eco").write_text("message Job {\n")
    run = ecoc("fmt", "bad.eco")
    assert run.code == 1 and "error[" in run.err
    assert (tmp_path / "bad.eco").read_text() == "message Job {\n"


def test_graph_dot_and_mermaid(ecoc, project):
    run = ecoc("graph", "clean.eco")
    assert run.code == 0 and run.out.lstrip().startswith("digraph")
    run = ecoc("graph", "clean.eco", "--format", "mermaid")
    assert run.code == 0 and run.out.startswith("flowchart")


def test_graph_of_a_broken_file_prints_diagnostics_on_stderr(ecoc, project):
    run = ecoc("graph", "broken.eco")
    assert run.code == 1 and run.out == "" and "error[ECO1002]" in run.err


# ------------------------------------------------------------------ start-up cost


def test_check_path_does_not_import_heavy_libraries(tmp_path):
    """`ecoc check` must stay fast as a process: no rich, pydantic, jinja2 or trio on its path."""
    import subprocess
    import sys

    (tmp_path / "clean.eco").write_text(CLEAN)
    (tmp_path / "broken.eco").write_text(BROKEN)
    probe = (
        "import sys\n"
        "from eco.compiler import cli\n"
        "codes = [cli.main(['check', 'clean.eco']), cli.main(['check', '--format', 'json', 'broken.eco'])]\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'pydantic', 'jinja2', 'trio', 'msgpack'})\n"
        "print(codes, heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip().splitlines()[-1] == "[0, 1] []"
