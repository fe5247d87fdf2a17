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
