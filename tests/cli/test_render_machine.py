"""The machine-readable renderers: JSON (validated against its schema), GitHub annotations, SARIF."""

from __future__ import annotations

import json
from importlib.resources import files

import jsonschema
import pytest

from eco.compiler.render import FileReport, RunReport, ToolError, render
from eco.compiler.render_github import escape_data, escape_property
from eco.language.diagnostics import Edit, Fix, Label, error, note, warning
from eco.language.spans import SourceFile

SCHEMA = json.loads(files("eco.compiler").joinpath("diagnostics-schema.json").read_text(encoding="utf-8"))


def _report() -> RunReport:
    src = SourceFile("app.eco", "channel jobs {}\necosystem e { channels { data: jbos } }\n")
    lib = SourceFile("lib.eco", "message Job {}\n")
    i = src.text.index("jbos")
    span = src.span(i, i + 4)
    d1 = error(
        "ECO1003", "unknown channel `jbos`", span, label="not declared",
        labels=[Label(src.span(8, 12), "a channel with a similar name"), Label(lib.span(8, 11), "elsewhere")],
        notes=["note, with: punctuation\nand a second line"], help="did you mean `jobs`?",
        fix=Fix("replace with `jobs`", (Edit(span, "jobs"),)),
    )
    d2 = warning("ECO4002", "channel `jobs` is never used", src.span(8, 12))
    d3 = note("ECO4005", "no location at all")
    return RunReport(
        files=[FileReport("app.eco", [d1, d2, d3]), FileReport("clean.eco")],
        tool_errors=[ToolError("missing.eco", "no such file or directory")],
    )


# ------------------------------------------------------------------ json


def test_json_is_one_object_matching_the_schema():
    data = json.loads(render(_report(), "json"))
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    assert data["format_version"] == 1
    assert data["tool"]["name"] == "ecoc"
    assert data["summary"] == {"files": 2, "errors": 1, "warnings": 1, "notes": 1}
    assert data["exit_code"] == 2
    assert data["tool_errors"] == [{"path": "missing.eco", "message": "no such file or directory"}]
    app, clean = data["files"]
    assert (app["path"], app["error_count"], app["warning_count"]) == ("app.eco", 1, 1)
    assert clean == {"path": "clean.eco", "diagnostics": [], "error_count": 0, "warning_count": 0}


def test_json_diagnostic_fields():
    d = json.loads(render(_report(), "json"))["files"][0]["diagnostics"][0]
    assert d["code"] == "ECO1003" and d["severity"] == "error"
    assert d["span"] == {
        "path": "app.eco", "start_line": 2, "start_column": 32, "end_line": 2, "end_column": 36,
        "start_offset": 47, "end_offset": 51,
    }
    assert d["label"] == "not declared"
    assert [lb["message"] for lb in d["labels"]] == ["a channel with a similar name", "elsewhere"]
    assert d["labels"][1]["span"]["path"] == "lib.eco"
    assert d["help"] == "did you mean `jobs`?"
    assert d["fix"]["edits"] == [{"span": d["span"], "replacement": "jobs"}]
    spanless = json.loads(render(_report(), "json"))["files"][0]["diagnostics"][2]
    assert spanless["span"] is None and spanless["fix"] is None


def test_schema_rejects_a_broken_document():
    data = json.loads(render(_report(), "json"))
    data["files"][0]["diagnostics"][0]["severity"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_json_absolute_paths_under_cwd_become_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = SourceFile(str(tmp_path / "sub" / "a.eco"), "x\n")
    report = RunReport(files=[FileReport(src.path, [error("ECO0001", "m", src.span(0, 1))])])
    data = json.loads(render(report, "json"))
    assert data["files"][0]["path"] == "sub/a.eco"
    assert data["files"][0]["diagnostics"][0]["span"]["path"] == "sub/a.eco"


# ------------------------------------------------------------------ github


def test_github_escaping_rules():
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("a,b:c%") == "a%2Cb%3Ac%25"


def test_github_annotations():
    lines = render(_report(), "github").splitlines()
    assert lines[0] == "::error file=missing.eco,title=ecoc::no such file or directory"
    assert lines[1] == (
        "::error file=app.eco,line=2,col=32,endLine=2,endColumn=36,title=ECO1003::"
        "unknown channel `jbos` (not declared)%0Anote: note, with: punctuation%0Aand a second line"
        "%0Ahelp: did you mean `jobs`?"
    )
    assert lines[2].startswith("::warning file=app.eco,line=1,col=9,endLine=1,endColumn=13,title=ECO4002::")
    # A diagnostic without a span is still attached to the file being checked.
    assert lines[3] == "::notice file=app.eco,title=ECO4005::no location at all"
    assert lines[-1].startswith("error: ")


def test_github_property_values_with_commas_are_escaped():
    src = SourceFile("dir,with:odd/a.eco", "x\n")
    report = RunReport(files=[FileReport(src.path, [error("ECO0001", "m", src.span(0, 1))])])
    assert "file=dir%2Cwith%3Aodd/a.eco," in render(report, "github")


# ------------------------------------------------------------------ sarif


def test_sarif_structure():
    log = json.loads(render(_report(), "sarif"))
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "ecoc" and driver["version"] and driver["informationUri"].startswith("https://")
    assert [r["id"] for r in driver["rules"]] == ["ECO1003", "ECO4002", "ECO4005"]
    assert all(r["shortDescription"]["text"] for r in driver["rules"])
    assert run["columnKind"] == "unicodeCodePoints"
    results = run["results"]
    assert [(r["ruleId"], r["ruleIndex"], r["level"]) for r in results] == [
        ("ECO1003", 0, "error"), ("ECO4002", 1, "warning"), ("ECO4005", 2, "note"),
    ]
    first = results[0]
    loc = first["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "app.eco", "uriBaseId": "%SRCROOT%"}
    assert loc["region"] == {
        "startLine": 2, "startColumn": 32, "endLine": 2, "endColumn": 36, "charOffset": 47, "charLength": 4,
    }
    assert first["locations"][0]["message"]["text"] == "not declared"
    related = first["relatedLocations"]
    assert [r["id"] for r in related] == [1, 2]
    assert related[1]["physicalLocation"]["artifactLocation"]["uri"] == "lib.eco"
    assert related[1]["message"]["text"] == "elsewhere"
    (fix,) = first["fixes"]
    assert fix["description"]["text"] == "replace with `jobs`"
    (change,) = fix["artifactChanges"]
    assert change["replacements"][0]["insertedContent"]["text"] == "jobs"
    assert change["replacements"][0]["deletedRegion"]["startColumn"] == 32
    # A spanless diagnostic is located at its file, without a region.
    assert results[2]["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "app.eco", "uriBaseId": "%SRCROOT%"}
    }
    (inv,) = run["invocations"]
    assert inv["executionSuccessful"] is False and inv["exitCode"] == 2
    assert inv["toolExecutionNotifications"][0]["message"]["text"] == "no such file or directory"
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].startswith("file:///")


def test_sarif_uses_the_explain_title_for_rules(monkeypatch):
    from eco.compiler import explain

    monkeypatch.setattr(explain, "load", lambda code: explain.parse(code, f"# {code}: a fine title\n"))
    log = json.loads(render(_report(), "sarif"))
    rule = log["runs"][0]["tool"]["driver"]["rules"][0]
    assert rule["shortDescription"]["text"] == "a fine title"
    assert rule["help"]["markdown"].startswith("# ECO1003")


def test_sarif_percent_encodes_uris():
    src = SourceFile("my dir/a b.eco", "x\n")
    report = RunReport(files=[FileReport(src.path, [error("ECO0001", "m", src.span(0, 1))])])
    log = json.loads(render(report, "sarif"))
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "my%20dir/a%20b.eco"


def test_unknown_format_is_rejected():
    with pytest.raises(ValueError):
        render(RunReport(), "xml")
