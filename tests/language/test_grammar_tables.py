"""The generated parser tables match grammar.lark, which compiles conflict-free in strict mode."""

from eco.language import tables


def test_generated_tables_are_fresh():
    from eco.language import _grammar_tables

    fresh = tables.compile_tables()  # lark strict=True: raises on any conflict or terminal collision
    cached = _grammar_tables.TABLES
    assert cached["grammar_sha256"] == fresh.grammar_sha256, "run: python -m eco.language.tables"
    # State numbers depend on lark's set ordering; the shape must not.
    assert len(cached["states"]) == len(fresh.states)
    assert cached["rules"] == fresh.rules and cached["terminals"] == fresh.terminals


def test_parsing_does_not_import_lark():
    """Startup stays fast: the cached tables are used, lark is only needed to regenerate them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from eco.language import SourceFile, parse\n"
        "r = parse(SourceFile('t.eco', 'cluster a { x: 1 }'))\n"
        "assert r.ok and r.diagnostics == []\n"
        "assert 'lark' not in sys.modules, 'lark imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
