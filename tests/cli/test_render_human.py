"""The human (rustc-style) renderer, on hand-built diagnostics."""

from __future__ import annotations

import textwrap

from eco.compiler.render import FileReport, RunReport, ToolError
from eco.compiler.render_human import MAX_LINE_WIDTH, render_diagnostic, render_summary
from eco.language.diagnostics import Edit, Fix, Label, Severity, error, note, warning
from eco.language.spans import SourceFile

APP = textwrap.dedent(
    """\
    channel jobs {
      carries Job
    }

    ecosystem e {
      channels { data: jbos, ctl: jobs }
    }
    """
)


def _at(src: SourceFile, needle: str, nth: int = 0):
    i = -1
    for _ in range(nth + 1):
        i = src.text.index(needle, i + 1)
    return src.span(i, i + len(needle))


def _expect(actual: str, expected: str) -> None:
    assert actual == textwrap.dedent(expected).rstrip("\n")


def test_primary_label_secondary_label_note_and_help():
    src = SourceFile("app.eco", APP)
    d = error(
        "ECO1003", "unknown channel `jbos`", _at(src, "jbos"), label="not declared",
        labels=[Label(_at(src, "jobs"), "declared here")],
        notes=["channels must be declared before use"], help="did you mean `jobs`?",
    )
    _expect(
        render_diagnostic(d),
        """\
        error[ECO1003]: unknown channel `jbos`
         --> app.eco:6:20
          |
        1 | channel jobs {
          |         ---- declared here
        ...
        6 |   channels { data: jbos, ctl: jobs }
          |                    ^^^^ not declared
          |
          = note: channels must be declared before use
          = help: did you mean `jobs`?
        """,
    )


def test_two_labels_on_one_line_get_a_connector():
    src = SourceFile("app.eco", APP)
    d = error("ECO1001", "dup", _at(src, "jbos"), label="primary", labels=[Label(_at(src, "channels"), "secondary")])
    _expect(
        render_diagnostic(d),
        """\
        error[ECO1001]: dup
         --> app.eco:6:20
          |
        6 |   channels { data: jbos, ctl: jobs }
          |   --------         ^^^^ primary
          |   |
          |   secondary
        """,
    )


def test_label_left_of_an_unlabelled_marker_is_put_below():
    src = SourceFile("a.eco", "x = y\n")
    d = error("ECO1001", "m", _at(src, "y"), labels=[Label(_at(src, "x"), "left")])
    _expect(
        render_diagnostic(d),
        """\
        error[ECO1001]: m
         --> a.eco:1:5
          |
        1 | x = y
          | -   ^
          | |
          | left
        """,
    )


def test_multi_line_span_marks_first_and_last_line():
    src = SourceFile("app.eco", APP)
    start = src.text.index("ecosystem")
    end = src.text.rindex("}") + 1
    d = warning("ECO4001", "unused ecosystem", src.span(start, end), label="never used")
    _expect(
        render_diagnostic(d),
        """\
        warning[ECO4001]: unused ecosystem
         --> app.eco:5:1
          |
        5 | ecosystem e {
          | ^^^^^^^^^^^^^
        6 |   channels { data: jbos, ctl: jobs }
        7 | }
          | ^ never used
        """,
    )


def test_long_multi_line_span_elides_its_middle():
    text = "block {\n" + "".join(f"  line{i}\n" for i in range(10)) + "}\n"
    src = SourceFile("b.eco", text)
    d = error("ECO2001", "m", src.span(0, len(text) - 1), label="whole block")
    out = render_diagnostic(d).splitlines()
    assert out[3] == " 1 | block {"
    assert out[5] == "..."
    assert out[6] == "12 | }"
    assert out[7] == "   | ^ whole block"


def test_span_ending_after_a_newline_ends_on_the_previous_line():
    src = SourceFile("c.eco", "abc\ndef\n")
    d = error("ECO2001", "m", src.span(0, 4), label="line one")
    _expect(
        render_diagnostic(d),
        """\
        error[ECO2001]: m
         --> c.eco:1:1
          |
        1 | abc
          | ^^^ line one
        """,
    )


def test_labels_in_another_file_get_their_own_section():
    main = SourceFile("app.eco", "message Job {}\n")
    lib = SourceFile("lib/common.eco", "\n\nmessage Job { a: int }\n")
    d = error(
        "ECO1001", "duplicate message `Job`", _at(main, "Job"), label="second declaration",
        labels=[Label(_at(lib, "Job"), "first declared here")],
    )
    _expect(
        render_diagnostic(d),
        """\
        error[ECO1001]: duplicate message `Job`
         --> app.eco:1:9
          |
        1 | message Job {}
          |         ^^^ second declaration
         ::: lib/common.eco:3:9
          |
        3 | message Job { a: int }
          |         --- first declared here
        """,
    )


def test_tabs_are_expanded_and_carets_stay_aligned():
    src = SourceFile("t.eco", "\tx:\tbad\n")
    d = error("ECO2003", "m", _at(src, "bad"), label="here")
    lines = render_diagnostic(d).splitlines()
    assert "\t" not in "\n".join(lines)
    code_line, caret_line = lines[3], lines[4]
    assert code_line == "1 |     x:  bad"
    assert caret_line.index("^^^") == code_line.index("bad")


def test_wide_characters_take_two_columns():
    src = SourceFile("w.eco", 'name: "日本" bad\n')
    d = error("ECO2003", "m", _at(src, "bad"))
    code_line, caret_line = render_diagnostic(d).splitlines()[3:5]
    # "日本" occupies 4 terminal columns but 2 characters: the caret must sit under `bad`.
    assert caret_line.index("^") == len('1 | name: "') + 4 + len('" ')


def test_crlf_line_endings_do_not_leak_into_output():
    src = SourceFile("w.eco", "a: 1\r\nb: bad\r\n")
    d = error("ECO2003", "m", _at(src, "bad"), label="x")
    out = render_diagnostic(d)
    assert "\r" not in out
    assert " --> w.eco:2:4" in out
    assert "2 | b: bad\n  |    ^^^ x" in out


def test_control_characters_are_replaced():
    src = SourceFile("bin.eco", "a\x00\x1b[31mb\n")
    d = error("ECO0001", "m", src.span(0, 1))
    out = render_diagnostic(d)
    assert "\x00" not in out and "\x1b" not in out
    assert "\ufffd" in out


def test_very_long_line_is_cut_around_the_span():
    text = "x = " + "a" * 500 + " bad " + "b" * 500 + "\n"
    src = SourceFile("l.eco", text)
    d = error("ECO2003", "m", _at(src, "bad"), label="here")
    code_line, caret_line = render_diagnostic(d).splitlines()[3:5]
    assert len(code_line) <= MAX_LINE_WIDTH + 12
    assert code_line.startswith("1 | ...") and code_line.endswith("...")
    assert code_line[caret_line.index("^^^"):].startswith("bad")


def test_long_line_span_near_the_end_is_visible():
    text = "a" * 1000 + "bad\n"
    src = SourceFile("l.eco", text)
    d = error("ECO2003", "m", _at(src, "bad"))
    code_line, caret_line = render_diagnostic(d).splitlines()[3:5]
    assert code_line.endswith("bad") and not code_line.endswith("...")
    assert code_line[caret_line.index("^^^"):] == "bad"


def test_empty_span_at_end_of_file_gets_one_caret():
    src = SourceFile("e.eco", "")
    d = error("ECO0001", "unexpected end of file", src.span(0, 0), label="expected a declaration")
    _expect(
        render_diagnostic(d),
        """\
        error[ECO0001]: unexpected end of file
         --> e.eco:1:1
          |
        1 |
          | ^ expected a declaration
        """,
    )


def test_span_at_end_of_line_points_past_the_text():
    src = SourceFile("e.eco", "abc\n")
    d = error("ECO0001", "m", src.span(3, 4))
    assert render_diagnostic(d).splitlines()[4] == "  |    ^"


def test_diagnostic_without_span_and_multiline_note():
    d = note("ECO4005", "no location", notes=["first line\nsecond line"])
    _expect(
        render_diagnostic(d),
        """\
        note[ECO4005]: no location
          = note: first line
                  second line
        """,
    )


def test_fix_description_shown_as_help_only_without_a_help_line():
    src = SourceFile("f.eco", "policy: clustr_wide\n")
    span = _at(src, "clustr_wide")
    fix = Fix("replace with `cluster_wide`", (Edit(span, "cluster_wide"),))
    out = render_diagnostic(error("ECO2004", "m", span, fix=fix))
    assert "= help: replace with `cluster_wide`" in out
    out = render_diagnostic(error("ECO2004", "m", span, fix=fix, help="did you mean `cluster_wide`?"))
    assert "= help: did you mean `cluster_wide`?" in out and "replace with" not in out


def test_gutter_width_follows_the_largest_line_number():
    src = SourceFile("g.eco", "x\n" * 120 + "bad\n")
    d = error("ECO0001", "m", _at(src, "bad"), labels=[Label(src.span(0, 1), "top")])
    lines = render_diagnostic(d).splitlines()
    assert lines[1] == "   --> g.eco:121:1"
    assert lines[3] == "  1 | x"
    assert lines[6] == "121 | bad"


def test_colour_only_when_asked():
    src = SourceFile("app.eco", APP)
    d = error("ECO1003", "m", _at(src, "jbos"), label="l")
    assert "\x1b[" not in render_diagnostic(d)
    coloured = render_diagnostic(d, color=True)
    assert "\x1b[1;31merror[ECO1003]\x1b[0m" in coloured
    # Stripping the escapes gives back exactly the plain rendering.
    import re

    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == render_diagnostic(d)


def test_summary_lines():
    src = SourceFile("a.eco", "x\n")
    err = error("ECO0001", "m", src.span(0, 1))
    warn = warning("ECO4001", "m", src.span(0, 1))
    ok = RunReport(files=[FileReport("a.eco"), FileReport("b.eco"), FileReport("c.eco")])
    assert render_summary(ok) == "ok: 3 files checked"
    warned = RunReport(files=[FileReport("a.eco", [warn])])
    assert render_summary(warned) == "ok: 1 file checked (1 warning)"
    bad = RunReport(files=[FileReport("a.eco", [err, err, warn]), FileReport("b.eco"), FileReport("c.eco")])
    assert render_summary(bad) == "error: 2 errors, 1 warning in 3 files"
    werror = RunReport(files=[FileReport("a.eco", [warn])], werror=True)
    assert render_summary(werror) == "error: 1 warning in 1 file (--werror)"
    io = RunReport(files=[FileReport("a.eco", [err])], tool_errors=[ToolError("b.eco", "no such file")])
    assert render_summary(io) == "error: 1 path could not be checked; 1 error in 1 file"
    assert bad.exit_code == 1 and ok.exit_code == 0 and warned.exit_code == 0
    assert werror.exit_code == 1 and io.exit_code == 2
    assert RunReport(tool_errors=[ToolError(None, "boom", internal=True)]).exit_code == 3
    assert Severity.ERROR.label == "error"
