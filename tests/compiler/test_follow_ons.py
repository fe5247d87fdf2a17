"""One mistake, one diagnostic: checks stay quiet about tokens the parser already rejected."""

from eco.compiler.driver import compile_source

SRC = """\
message Job { path: str }
channel jobs {
  chunk: %s
  carries Job
}
ecosystem e {
  coordinator: app:Coord
  workers: app:W x 1
  channels { data: jobs }
}
cluster c { nodes { n1 at "127.0.0.1:7101" } }
"""


def _errors(value):
    result = compile_source(SRC % value, "follow.eco")
    return [d.code for d in result.diagnostics if d.severity.name == "ERROR"]


def test_bad_unit_is_reported_once_by_the_parser():
    assert _errors("256KX") == ["ECO0014"]


def test_a_wrong_but_well_formed_value_is_still_checked():
    assert _errors("5s") == ["ECO2003"]
