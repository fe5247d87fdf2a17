"""Reading `.eco` files from disk.

Two kinds of failure are kept apart:

* the file cannot be read at all (missing, a directory, permission denied, any
  other OS error): ``SourceIOError``; the CLI reports it and exits 2;
* the bytes are not a usable `.eco` text (binary data, invalid UTF-8, far too
  large): diagnostics with a precise location, like any other error in a file.

A UTF-8 byte order mark is dropped; CRLF and lone CR line ends are kept as they
are (spans and columns account for them).
"""

from __future__ import annotations

import os
import stat

from . import codes
from .diagnostics import Diagnostic, error
from .spans import SourceFile

MAX_SOURCE_BYTES = 8 * 1024 * 1024
"""Files larger than this are rejected with a diagnostic instead of being parsed.

An 8 MB file checks in roughly ten seconds and 0.5 GB of memory (docs/benchmarks.md);
larger files are almost always the wrong file and would cost far more."""

_BOM = b"\xef\xbb\xbf"


class SourceIOError(OSError):
    """A source file could not be read; ``str(exc)`` is a complete, human message."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return self.message


class SourceDecodeError(ValueError):
    """The file was read but its content is not usable text (see ``diagnostics``)."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(diagnostics[0].message if diagnostics else "unreadable source")
        self.diagnostics = diagnostics


def load_source(path: str | os.PathLike) -> tuple[SourceFile | None, list[Diagnostic]]:
    """Read and decode ``path``.

    Returns the source and no diagnostics, or ``None`` and the diagnostics that
    explain why the content cannot be used.  Raises ``SourceIOError`` when the
    file cannot be read at all.
    """
    name = os.fspath(path)
    data = _read_bytes(name)
    if data is None:
        size = _size_hint(name)
        return None, [_too_large(name, size)]
    return decode_source(name, data)


def read_source(path: str | os.PathLike) -> SourceFile:
    """Like ``load_source`` but raising ``SourceDecodeError`` for unusable content."""
    source, diags = load_source(path)
    if source is None:
        raise SourceDecodeError(diags)
    return source


def decode_source(path: str, data: bytes) -> tuple[SourceFile | None, list[Diagnostic]]:
    """Decode raw bytes as a `.eco` source (see ``load_source``)."""
    if len(data) > MAX_SOURCE_BYTES:
        return None, [_too_large(path, len(data))]
    skipped = 0
    if data.startswith(_BOM):
        data = data[len(_BOM):]
        skipped = len(_BOM)
    nul = data.find(b"\0")
    if nul != -1:
        return None, [_binary(path, data, nul, skipped)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [_invalid_utf8(path, data, exc, skipped)]
    return SourceFile(path, text), []


def source_from_string(text: str, path: str = "<string>") -> SourceFile:
    """A source from an in-memory string (tests, editors); a leading BOM is dropped."""
    return SourceFile(path, text[1:] if text.startswith("\ufeff") else text)


# ----------------------------------------------------------------- helpers


def _read_bytes(path: str) -> bytes | None:
    """The file's bytes, or ``None`` when it is larger than the limit."""
    shown = path
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise SourceIOError(f"`{shown}` is a directory, not a `.eco` file", path)
        if stat.S_ISREG(st.st_mode) and st.st_size > MAX_SOURCE_BYTES:
            return None
        with open(path, "rb") as f:
            # Pipes and devices have no reliable size: read one byte past the limit.
            data = f.read(MAX_SOURCE_BYTES + 1)
    except SourceIOError:
        raise
    except FileNotFoundError:
        raise SourceIOError(f"cannot read `{shown}`: no such file", path) from None
    except IsADirectoryError:
        raise SourceIOError(f"`{shown}` is a directory, not a `.eco` file", path) from None
    except PermissionError:
        raise SourceIOError(f"cannot read `{shown}`: permission denied", path) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise SourceIOError(f"cannot read `{shown}`: {reason[:1].lower() + reason[1:]}", path) from None
    if len(data) > MAX_SOURCE_BYTES:
        return None
    return data


def _size_hint(path: str) -> int | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _too_large(path: str, size: int | None) -> Diagnostic:
    what = f"is {_mb(size)}" if size else "is too large"
    return error(
        codes.FILE_TOO_LARGE,
        f"file {what}; `.eco` files are limited to {_mb(MAX_SOURCE_BYTES)}",
        SourceFile(path, "").span(0, 0),
        label="not parsed",
        help="split the specification into several files joined with `import`",
    )


def _lossy(data: bytes) -> str:
    """A same-length-per-character rendering of undecodable data, safe to print."""
    text = data.decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() or ch in "\t\r\n" else "\ufffd" for ch in text)


def _located(path: str, data: bytes, byte_offset: int) -> tuple[SourceFile, int]:
    """A printable stand-in source and the character offset of ``byte_offset`` in it."""
    # Only the text up to the end of the offending line is needed for a snippet.
    line_end = data.find(b"\n", byte_offset)
    head = data[: line_end if line_end != -1 else min(len(data), byte_offset + 200)]
    char_offset = len(data[:byte_offset].decode("utf-8", errors="replace"))
    return SourceFile(path, _lossy(head)), char_offset


def _binary(path: str, data: bytes, nul: int, skipped: int) -> Diagnostic:
    source, offset = _located(path, data, nul)
    line = source.position(offset).line
    return error(
        codes.BINARY_FILE,
        f"this looks like a binary file, not `.eco` text (NUL byte at byte offset {nul + skipped}, line {line})",
        source.span(offset, offset + 1),
        label="NUL byte",
        help="check the path: `.eco` files are UTF-8 text",
    )


def _invalid_utf8(path: str, data: bytes, exc: UnicodeDecodeError, skipped: int) -> Diagnostic:
    bad = data[exc.start : exc.end]
    source, offset = _located(path, data, exc.start)
    line = source.position(offset).line
    shown = " ".join(f"0x{b:02x}" for b in bad[:4])
    return error(
        codes.INVALID_UTF8,
        f"file is not valid UTF-8: invalid byte {shown} at byte offset {exc.start + skipped} (line {line})",
        source.span(offset, offset + 1),
        label="invalid UTF-8",
        help="save the file as UTF-8",
    )
