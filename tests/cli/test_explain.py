"""Parsing explain pages and the `ecoc explain` command."""

from __future__ import annotations

import pytest

from eco.compiler import cli, explain

PAGE = """\
# ECO1003: unknown channel

An ecosystem maps a local name to a channel that is not declared.

```eco
ecosystem e { channels { data: jbos } }
```

Fixed:

```eco
channel jobs { carries Job }
```
"""


@pytest.fixture
def docs(tmp_path, monkeypatch):
    (tmp_path / "ECO1003.md").write_text(PAGE, encoding="utf-8")
    (tmp_path / "ECO2001.md").write_text("# ECO2001 — unknown setting\n\nNo example here.\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("not a code\n", encoding="utf-8")
    monkeypatch.setattr(explain, "EXPLAIN_DIR", tmp_path)
    explain.load.cache_clear()
    yield tmp_path
    explain.load.cache_clear()


def test_parse_title_and_first_eco_block():
    doc = explain.parse("ECO1003", PAGE)
    assert doc.title == "unknown channel"
    assert doc.example == "ecosystem e { channels { data: jbos } }\n"


def test_parse_tolerates_other_heading_styles_and_missing_example():
    assert explain.parse("ECO2001", "# ECO2001 — unknown setting\n").title == "unknown setting"
    assert explain.parse("ECO2001", "\n# Unknown setting\n").title == "Unknown setting"
    assert explain.parse("ECO2001", "no heading\n").title == ""
    assert explain.parse("ECO2001", "# t\n```python\nx\n```\n").example is None


@pytest.mark.parametrize(("raw", "code"), [("ECO1003", "ECO1003"), ("eco1003", "ECO1003"), (" 1003 ", "ECO1003")])
def test_normalize_code(raw, code):
    assert explain.normalize_code(raw) == code


@pytest.mark.parametrize("raw", ["E1003", "ECO13", "hello", "", "ECO10031"])
def test_normalize_rejects_non_codes(raw):
    assert explain.normalize_code(raw) is None


def test_codes_and_load(docs):
    assert explain.codes() == ["ECO1003", "ECO2001"]
    assert explain.load("ECO1003").title == "unknown channel"
    assert explain.load("ECO9999") is None
    assert explain.load("../etc/passwd") is None


def test_explain_prints_the_page_plain_when_not_a_tty(docs, capsys):
    assert cli.main(["explain", "eco1003"]) == 0
    assert capsys.readouterr().out == PAGE


def test_explain_unknown_code_suggests_close_ones(docs, capsys):
    assert cli.main(["explain", "ECO1030"]) == 2
    err = capsys.readouterr().err
    assert "no explanation for `ECO1030`" in err
    assert "did you mean `ECO1003`?" in err


def test_explain_garbage_code(docs, capsys):
    assert cli.main(["explain", "banana"]) == 2
    assert "codes look like ECO1001" in capsys.readouterr().err


def test_explain_list(docs, capsys):
    assert cli.main(["explain", "--list"]) == 0
    assert capsys.readouterr().out == "ECO1003  unknown channel\nECO2001  unknown setting\n"


def test_explain_needs_a_code(docs, capsys):
    assert cli.main(["explain"]) == 2
    assert "missing CODE" in capsys.readouterr().err


def test_explain_renders_markdown_with_rich_on_a_tty(docs, capsys, monkeypatch):
    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert cli.main(["explain", "ECO1003"]) == 0
    out = capsys.readouterr().out
    assert "unknown channel" in out
    assert "```" not in out  # the fences were rendered, not printed
