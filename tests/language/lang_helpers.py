"""Helpers shared by the `.eco` front-end tests."""

from eco.language import SourceFile, parse


def parse_text(text: str, path: str = "t.eco"):
    """Parse ``text`` as if it were the file ``path``."""
    return parse(SourceFile(path, text))
