"""Fixtures for the `.eco` front-end tests."""

import pytest

from eco.language import SourceFile, parse


def parse_text(text: str, path: str = "t.eco"):
    return parse(SourceFile(path, text))


@pytest.fixture
def parsed():
    """``parsed(text)`` -> ParseResult."""
    return parse_text
