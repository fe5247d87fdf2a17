"""Any input gets a clear message and the right exit code, never a traceback.

Each case runs twice: in process (``cli.main``) and through the installed
``ecoc`` console script, so the packaging and the top-level guard are covered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ecoc_helpers import BROKEN, CLEAN, Run, run_subprocess

MB = 1024 * 1024


def _missing(tmp: Path) -> list[str]:
    return ["check", "nope.eco"]


def _empty_dir(tmp: Path) -> list[str]:
    (tmp / "d" / "sub").mkdir(parents=True)
    (tmp / "d" / "notes.txt").write_text("hi")
    return ["check", "d"]


def _binary(tmp: Path) -> list[str]:
    (tmp / "bin.eco").write_bytes(bytes(range(256)) * 4)
    return ["check", "bin.eco"]


def _bad_utf8(tmp: Path) -> list[str]:
    (tmp / "latin1.eco").write_bytes("message Café { x: str }\n".encode("latin-1"))
    return ["check", "latin1.eco"]


def _empty_file(tmp: Path) -> list[str]:
    (tmp / "empty.eco").write_bytes(b"")
    return ["check", "empty.eco"]


def _huge(tmp: Path) -> list[str]:
    line = b"// a comment line to make this file large enough\n"
    with open(tmp / "huge.eco", "wb") as f:
        f.write(line * (50 * MB // len(line) + 1))
    return ["check", "huge.eco"]


def _deep(tmp: Path) -> list[str]:
    (tmp / "deep.eco").write_text("cluster c " + "{" * 10_000 + "}" * 10_000 + "\n")
    return ["check", "deep.eco"]


def _crlf(tmp: Path) -> list[str]:
    (tmp / "crlf.eco").write_bytes(BROKEN.replace("\n", "\r\n").encode())
    return ["check", "crlf.eco"]


def _bom(tmp: Path) -> list[str]:
    # The error is on line 1, so a miscounted BOM would shift its column.
    (tmp / "bom.eco").write_bytes(b"\xef\xbb\xbf" + b"channel jobs { carries Jbo }\n")
    return ["check", "bom.eco"]


def _clean_bom_crlf(tmp: Path) -> list[str]:
    (tmp / "ok.eco").write_bytes(b"\xef\xbb\xbf" + CLEAN.replace("\n", "\r\n").encode())
    return ["check", "ok.eco"]


def _is_a_directory_for_build(tmp: Path) -> list[str]:
    (tmp / "d").mkdir()
    return ["build", "d", "-o", "out"]


# name -> (setup, expected exit code, text that must appear in the output)
CASES: dict[str, tuple[Callable[[Path], list[str]], int, list[str]]] = {
    "missing file": (_missing, 2, ["cannot read `nope.eco`: no such file"]),
    "directory without .eco files": (_empty_dir, 2, ["no .eco files found in `d`"]),
    "binary data": (_binary, 1, ["error[ECO0001]", "binary"]),
    "invalid UTF-8": (_bad_utf8, 1, ["error[ECO0002]", "--> latin1.eco:1:12"]),
    "empty file": (_empty_file, 0, ["ok: 1 file checked"]),
    "50 MB file": (_huge, 1, ["error[ECO0003]", "50.0 MB"]),
    "10,000 nested braces": (_deep, 1, ["error[", " --> deep.eco:1:"]),
    "CRLF": (_crlf, 1, ["error[ECO1002]", "  --> crlf.eco:10:11", "10 |   carries Jbo\n"]),
    "BOM": (_bom, 1, ["error[ECO1002]", " --> bom.eco:1:24", "1 | channel jobs { carries Jbo }\n  |                        ^^^"]),
    "clean file with BOM and CRLF": (_clean_bom_crlf, 0, ["ok: 1 file checked"]),
    "build on a directory without .eco files": (_is_a_directory_for_build, 2, ["no .eco files found in `d`"]),
}


def _assert_clear(run: Run, code: int, expected: list[str]) -> None:
    assert "Traceback" not in run.output
    assert "internal error" not in run.output
    assert "\r" not in run.output and "\ufeff" not in run.output
    for text in expected:
        assert text in run.output, f"{text!r} not in output:\n{run.output}"
    assert run.code == code, run.output


@pytest.mark.parametrize("name", list(CASES))
def test_in_process(name, ecoc, tmp_path):
    setup, code, expected = CASES[name]
    _assert_clear(ecoc(*setup(tmp_path)), code, expected)


@pytest.mark.parametrize("name", list(CASES))
def test_console_script(name, tmp_path):
    setup, code, expected = CASES[name]
    _assert_clear(run_subprocess(*setup(tmp_path), cwd=tmp_path), code, expected)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read mode-000 files")
@pytest.mark.parametrize("how", ["in process", "console script"])
def test_permission_denied(how, ecoc, tmp_path):
    target = tmp_path / "secret.eco"
    target.write_text(CLEAN)
    target.chmod(0)
    try:
        run = ecoc("check", "secret.eco") if how == "in process" else run_subprocess("check", "secret.eco", cwd=tmp_path)
    finally:
        target.chmod(0o644)
    _assert_clear(run, 2, ["permission denied"])


def test_permission_denied_simulated(ecoc, tmp_path, monkeypatch):
    """Runs even as root: the OS refusing the open is reported like any I/O error."""
    import builtins

    (tmp_path / "secret.eco").write_text(CLEAN)
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file).endswith("secret.eco"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    run = ecoc("check", "secret.eco")
    _assert_clear(run, 2, ["cannot read `secret.eco`: permission denied"])


def test_unreadable_subdirectory_is_reported_not_skipped(ecoc, tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.eco").write_text(CLEAN)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("d"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    run = ecoc("check", "d")
    _assert_clear(run, 2, ["cannot read directory `d`: Permission denied"])


def test_other_files_are_still_checked_after_an_io_error(ecoc, tmp_path):
    (tmp_path / "good.eco").write_text(BROKEN)
    run = ecoc("check", "missing.eco", "good.eco")
    _assert_clear(run, 2, ["cannot read `missing.eco`", "error[ECO1002]", "1 path could not be checked"])
