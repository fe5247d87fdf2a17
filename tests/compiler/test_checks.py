"""Each check fires with the right code, span, severity and help."""

from __future__ import annotations

import pytest

from eco.compiler.driver import compile_source

E = "coordinator: app:Coordinator\n  workers: app:Worker x 4\n"
NODES3 = 'cluster media {\n  nodes {\n    n1 at "127.0.0.1:7101" zone "a"\n    n2 at "127.0.0.1:7102" zone "a"\n    n3 at "127.0.0.1:7103" zone "b"\n  }\n}\n'


def eco(body: str, head: str = "ecosystem e") -> str:
    return f"{head} {{\n  {E}  {body}\n}}\n"


def find(source: str, code: str):
    result = compile_source(source, "t.eco")
    hits = [d for d in result.diagnostics if d.code == code]
    assert hits, f"{code} not reported; got {[(d.code, d.message) for d in result.diagnostics]}"
    return hits[0], result


CASES = [
    # (source, code, text under the primary span, substring of help (or None), severity)
    ("message Job { a: str }\nmessage Job { b: int }\nchannel c { carries Job }\n" + eco("channels { c: c }"),
     "ECO1001", "Job", "rename", "error"),
    ("message Job { a: str }\nchannel c { carries Jb }\n", "ECO1002", "Jb", "did you mean `Job`?", "error"),
    ("message Job { a: Jbo? }\nchannel c { carries Job }\n", "ECO1002", "Jbo", "did you mean `Job`?", "error"),
    ("channel jobs {}\n" + eco("channels { d: jbos }"), "ECO1003", "jbos", "did you mean `jobs`?", "error"),
    ('cluster m { nodes { n1 at "h:1" }\n seeds [n1, n2] }\n', "ECO1004", "n2", None, "error"),
    ('cluster m { nodes { n1 at "h:1" }\n topology client_server { servers: [n11] } }\n', "ECO1004", "n11",
     "did you mean `n1`?", "error"),
    (NODES3 + eco("", "ecosystem e on meda"), "ECO1005", "meda", "did you mean `media`?", "error"),
    ('cluster a { nodes { n1 at "h:1" } }\ncluster b { nodes { n1 at "h:2" } }\n' + eco(""), "ECO1006", "e",
     "on CLUSTER", "error"),
    ('cluster m { nodes {\n n1 at "h:1"\n n1 at "h:2"\n} }\n', "ECO1007", "n1", "own name", "error"),
    (eco('register as "store"', "ecosystem s") + eco('requires "stor"'), "ECO1008", '"stor"',
     'did you mean "store"?', "error"),
    (eco('register as "x"', "ecosystem a") + eco('register as "x"', "ecosystem b"), "ECO1009", '"x"', "unique",
     "error"),
    ("import std.chanels\n", "ECO1010", "std.chanels", "did you mean `std.channels`?", "error"),
    ("import channels\n", "ECO1010", "channels", "std.channels", "error"),
    (eco("channels { c: std.control }"), "ECO1013", "std.control", "import std.channels", "error"),
    ('import std.channels as x\nimport "nope.eco" as x\n', "ECO1014", "x", "own alias", "error"),
    ("message M { a: int, a: str }\nchannel c { carries M }\n", "ECO1016", "a", None, "error"),
    ("message M { a: int }\nchannel c { carries M, M }\n", "ECO1016", "M", None, "error"),
    (eco("state { s: consensus, s: crdt g_counter }"), "ECO1016", "s", None, "error"),
    (eco("channels { c: std.control }"), "ECO1013", "std.control", None, "error"),
    ("import std.channels\n" + eco("channels { c: st.control }"), "ECO1019", "st.control",
     "did you mean `std.control`?", "error"),
    ("channel c { prority: high }\n", "ECO2001", "prority", "did you mean `priority`?", "error"),
    (eco("supervison { strategy: one_for_one }"), "ECO2001", "supervison", "did you mean `supervision`?", "error"),
    ('cluster m { nodes { n1 at "h:1" }\n failure_detector phi { treshold: 3 } }\n', "ECO2001", "treshold",
     "did you mean `threshold`?", "error"),
    ('cluster m { nodes { n1 ta "h:1" } }\n', "ECO2001", "ta", "did you mean `at`?", "error"),
    ("channel c { priority: high\n priority: low }\n", "ECO2002", "priority", "remove one", "error"),
    (eco("supervision { shutdown: 5 }"), "ECO2003", "5", "write `5s`", "error"),
    ("channel c { chunk: 256 }\n", "ECO2003", "256", "write `256B`", "error"),
    (eco("register as thumbnails"), "ECO2003", "thumbnails", 'write `"thumbnails"`', "error"),
    ("channel c { priority: hihg }\n", "ECO2004", "hihg", "did you mean `high`?", "error"),
    (eco("partition { resolver: keep_majorty }"), "ECO2004", "keep_majorty", "did you mean `keep_majority`?", "error"),
    (eco("state { s: crdt pn_countr }"), "ECO2004", "pn_countr", "did you mean `pn_counter`?", "error"),
    (eco("scaling { workers: 1..8\n when mailbox_dept > 3: add 1 }"), "ECO2004", "mailbox_dept",
     "did you mean `mailbox_depth`?", "error"),
    ('cluster m { nodes { n1 at "h:1" }\n topology hyperview }\n', "ECO2004", "hyperview",
     "did you mean `hyparview`?", "error"),
    ("channel c { parallelism: 0 }\n", "ECO2005", "0", None, "error"),
    (eco("backpressure { mailbox: -5 }"), "ECO2005", "-5", None, "error"),
    (eco("scaling { workers: 1..8\n when cpu > 150: add 1 }"), "ECO2005", "150", None, "error"),
    (eco("supervision { shutdown: 5 sec }"), "ECO2006", "sec", "write `5s`", "error"),
    ('cluster m { nodes { n1 at "h:70000" } }\n', "ECO2007", '"h:70000"', "host:port", "error"),
    ('cluster m { nodes { n1 at "localhost" } }\n', "ECO2007", '"localhost"', "host:port", "error"),
    ("ecosystem e { coordinator: a:B }\n", "ECO2008", "e", "workers", "error"),
    ("cluster m { }\n", "ECO2008", "m", "nodes", "error"),
    ('cluster m { nodes { n1 zone "a" } }\n', "ECO2008", "n1", "at", "error"),
    (eco("partition { resolver: static_quorum }"), "ECO2008", "static_quorum", "static_quorum(2)", "error"),
    ("message M { a: map[str] }\nchannel c { carries M }\n", "ECO2009", "map[str]", "map[str, int]", "error"),
    ('message M { a: int = "1" }\nchannel c { carries M }\n', "ECO2010", '"1"', None, "error"),
    ("message M { a: list[str] = [1] }\nchannel c { carries M }\n", "ECO2010", "1", 'write `"1"`', "error"),
    ("message M { a: str = none }\nchannel c { carries M }\n", "ECO2010", "none", "optional", "error"),
    ("ecosystem e { coordinator: Coord, workers: a:W }\n", "ECO2011", "Coord", "module", "error"),
    ('ecosystem e { coordinator: "a.b:C", workers: a:W }\n', "ECO2011", '"a.b:C"', "remove the quotes", "error"),
    ("channel c { priority: high low }\n", "ECO2012", "low", None, "error"),
    ("ecosystem e { coordinator: a:C, workers: a:W 4 }\n", "ECO2012", "4", "a:W x 4", "error"),
    ('cluster m { nodes { n1 at "h:1" }\n security { cookie: "pw" } }\n', "ECO2014", '"pw"', "env(", "error"),
    (NODES3 + eco("distribution { policy: explicit_nodes [n1, n4] }"), "ECO3001", "n4", None, "error"),
    (NODES3 + eco("distribution { policy: explicit_nodes [n1, n33] }"), "ECO3001", "n33", "did you mean `n3`?",
     "error"),
    (NODES3 + eco("distribution { policy: explicit_nodes }"), "ECO3002", "explicit_nodes", "[n1, n2]", "error"),
    ('cluster m { nodes { n1 at "h:1" } }\n' + eco("distribution { spread: zone }"), "ECO3003", "zone", "zone",
     "error"),
    ('cluster m { nodes {\n n1 at "h:1" zone "a"\n n2 at "h:2" } }\n' + eco("distribution { spread: zone }"),
     "ECO3003", "zone", "n2", "error"),
    (NODES3 + eco("partition { resolver: static_quorum(1) }"), "ECO3004", "1", "at least 2", "error"),
    (NODES3 + eco("partition { resolver: static_quorum(4) }"), "ECO3004", "4", "between 2 and 3", "error"),
    (eco("scaling { workers: 8..64 }"), "ECO3005", "8..64", "4..64", "error"),
    (eco("scaling { workers: 9..2 }"), "ECO3005", "9..2", "2..9", "error"),
    (eco("partition { minority: read_only }"), "ECO3006", "read_only", "state", "error"),
    (eco('state { s: consensus\n checkpoint every 1s to "s3://x" }'), "ECO3007", '"s3://x"', None, "error"),
    (eco('state { s: consensus\n checkpoint every 1s to "sqlit://x.db" }'), "ECO3007", '"sqlit://x.db"',
     "sqlite://", "error"),
    ('cluster m { nodes {\n n1 at "h:1"\n n2 at "h:1" } }\n', "ECO3008", 'n2 at "h:1"', "own port", "error"),
    (NODES3 + eco('allow spawn from zone "c"'), "ECO3012", '"c"', None, "error"),
    (NODES3 + eco('allow spawn from zone "A"'), "ECO3012", '"A"', 'did you mean "a"?', "error"),
    ('cluster m { nodes { n1 at "h:1" }\n failure_detector swim { probe_timeout: 3s } }\n', "ECO3015",
     "probe_timeout: 3s", "lower", "warning-free"),
    ("message M { a: int }\n", "ECO4001", "M", None, "warning"),
    ("channel c { }\n", "ECO4002", "c", None, "warning"),
    ("import std.channels\n", "ECO4003", "import std.channels", "remove", "warning"),
    ('cluster m { nodes { n1 at "h:1" } }\n' + eco("state { l: consensus }"), "ECO4004", "consensus",
     "at least 3", "warning"),
    ('cluster m { nodes {\n n1 at "h:1"\n n2 at "h:2"\n n3 at "h:3"\n n4 at "h:4" } }\n' + eco("state { l: consensus }"),
     "ECO4005", "consensus", None, "note"),
    ("import std.channels\nimport std.channels\n" + eco("channels { c: std.control }"), "ECO4006",
     "import std.channels", None, "warning"),
    (eco('requires "object-store"'), "ECO4007", '"object-store"', None, "warning"),
    (eco('state { checkpoint every 1s to "file:///tmp/x" }'), "ECO4009", "checkpoint", None, "warning"),
]


@pytest.mark.parametrize(("source", "code", "text", "help", "severity"), CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_check(source, code, text, help, severity):
    d, _ = find(source, code)
    assert d.span.text == text
    if help is not None:
        assert d.help is not None and help in d.help, d.help
    if severity != "warning-free":
        assert d.severity.label == severity


def test_duplicate_points_at_the_first_declaration():
    d, _ = find("message Job { a: str }\nmessage Job { b: int }\n", "ECO1001")
    assert [(l.message, l.span.start_pos.line) for l in d.labels] == [("first declared here", 1)]
    assert d.span.start_pos.line == 2


def test_did_you_mean_comes_with_a_machine_applicable_fix():
    d, _ = find("channel c { priority: hihg }\n", "ECO2004")
    assert d.fix is not None
    (edit,) = d.fix.edits
    assert edit.span.text == "hihg" and edit.replacement == "high"


def test_missing_unit_fix_adds_the_unit():
    d, _ = find(eco("supervision { shutdown: 5 }"), "ECO2003")
    assert d.message == "expected a duration, found `5`"
    assert d.fix.edits[0].replacement == "5s"


def test_one_mistake_one_diagnostic():
    # A misspelt channel reference must not also make the intended channel "unused".
    result = compile_source("channel jobs {}\n" + eco("channels { d: jbos }"))
    assert [d.code for d in result.diagnostics] == ["ECO1003"]


def test_clean_file_has_no_diagnostics():
    src = ('cluster m { nodes { n1 at "127.0.0.1:7101" } }\nmessage J { a: int }\nchannel c { carries J }\n'
           + eco("channels { c: c }"))
    assert compile_source(src).diagnostics == []


def test_scaling_rule_threshold_types_follow_the_metric():
    result = compile_source(eco(
        "scaling { workers: 1..8\n when idle > 30s: remove 1\n when memory >= 512MB for 1m: add 2\n when cpu > 80: add 1 }"
    ))
    assert not result.has_errors, [d.message for d in result.diagnostics]
    rules = result.plan.ecosystem("e").scaling.rules
    assert [(r.metric, r.threshold, r.window) for r in rules] == [
        ("idle", 30.0, 0.0), ("memory", 512 * 1024 * 1024, 60.0), ("cpu", 80.0, 0.0)]


def test_deeply_nested_type_is_a_diagnostic_not_a_crash():
    deep = "list[" * 40 + "int" + "]" * 40
    result = compile_source(f"message M {{ a: {deep} }}\nchannel c {{ carries M }}\n")
    assert "ECO2015" in [d.code for d in result.diagnostics]
