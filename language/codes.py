"""Diagnostic codes for source and syntax problems (ECO0001-ECO0099).

A number keeps its meaning forever: retire a code by no longer emitting it,
never by renumbering.  ``TITLES`` gives the short title of each code (the same
as the first line of its ``compiler/explain/ECO00xx.md``).
"""

from __future__ import annotations

# ------------------------------------------------------------ reading the file
BINARY_FILE = "ECO0001"
INVALID_UTF8 = "ECO0002"
FILE_TOO_LARGE = "ECO0003"

# --------------------------------------------------------------------- tokens
UNEXPECTED_CHARACTER = "ECO0010"
UNTERMINATED_STRING = "ECO0011"
INVALID_ESCAPE = "ECO0012"
UNTERMINATED_COMMENT = "ECO0013"
UNKNOWN_UNIT = "ECO0014"
INVALID_NUMBER = "ECO0015"

# --------------------------------------------------------------------- syntax
UNEXPECTED_TOKEN = "ECO0020"
EXPECTED_DECLARATION = "ECO0021"
UNCLOSED_DELIMITER = "ECO0022"
UNMATCHED_CLOSER = "ECO0023"
NESTING_TOO_DEEP = "ECO0024"

INTERNAL_PARSER_ERROR = "ECO0099"

TITLES: dict[str, str] = {
    BINARY_FILE: "file contains binary data",
    INVALID_UTF8: "file is not valid UTF-8",
    FILE_TOO_LARGE: "file is too large",
    UNEXPECTED_CHARACTER: "unexpected character",
    UNTERMINATED_STRING: "unterminated string",
    INVALID_ESCAPE: "invalid escape sequence",
    UNTERMINATED_COMMENT: "unterminated block comment",
    UNKNOWN_UNIT: "unknown unit",
    INVALID_NUMBER: "invalid number",
    UNEXPECTED_TOKEN: "syntax error",
    EXPECTED_DECLARATION: "expected a declaration",
    UNCLOSED_DELIMITER: "unclosed delimiter",
    UNMATCHED_CLOSER: "unmatched closing delimiter",
    NESTING_TOO_DEEP: "nesting too deep",
    INTERNAL_PARSER_ERROR: "internal parser error",
}
