"""Reading files: I/O failures raise SourceIOError; bad content becomes diagnostics."""

import os
import sys

import pytest

from eco.language import parse
from eco.language.source import (
    MAX_SOURCE_BYTES,
    SourceDecodeError,
    SourceIOError,
    decode_source,
    load_source,
    read_source,
)


def write(tmp_path, data: bytes, name="f.eco"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_reads_plain_file(tmp_path):
    source = read_source(write(tmp_path, b"cluster c {}\n"))
    assert source.text == "cluster c {}\n"


def test_missing_file(tmp_path):
    with pytest.raises(SourceIOError, match="no such file"):
        load_source(tmp_path / "nope.eco")


def test_directory(tmp_path):
    with pytest.raises(SourceIOError, match="is a directory"):
        load_source(tmp_path)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root can read anything")
def test_permission_denied(tmp_path):
    path = write(tmp_path, b"cluster c {}")
    os.chmod(path, 0)
    try:
        with pytest.raises(SourceIOError, match="permission denied"):
            load_source(path)
    finally:
        os.chmod(path, 0o644)


def test_binary_data_is_a_diagnostic_with_location(tmp_path):
    source, diags = load_source(write(tmp_path, b"cluster c {}\nab\x00\x01\x02"))
    assert source is None
    (d,) = diags
    assert d.code == "ECO0001" and "byte offset 15" in d.message and "line 2" in d.message
    assert d.span.source.path.endswith("f.eco") and d.span.start_pos.line == 2 and d.span.start_pos.column == 3
    assert "\x00" not in d.span.source.text


def test_invalid_utf8_is_a_diagnostic_with_location(tmp_path):
    source, diags = load_source(write(tmp_path, "cluster c {\n  a: \"é".encode() + b"\xff\xfe\"\n}"))
    assert source is None
    (d,) = diags
    assert d.code == "ECO0002" and "0xff" in d.message and "line 2" in d.message
    assert d.span.start_pos == type(d.span.start_pos)(2, 8)
    with pytest.raises(SourceDecodeError):
        read_source(d.span.source.path)


def test_bom_is_stripped_and_offsets_reported_from_file_start(tmp_path):
    source, diags = load_source(write(tmp_path, b"\xef\xbb\xbfcluster c {}"))
    assert diags == [] and source.text == "cluster c {}"
    _, diags = decode_source("x.eco", b"\xef\xbb\xbfa\x00")
    assert "byte offset 4" in diags[0].message


def test_empty_file_is_a_valid_empty_module(tmp_path):
    source, diags = load_source(write(tmp_path, b""))
    assert diags == [] and source.text == ""
    result = parse(source)
    assert result.diagnostics == [] and result.module.decls == []


def test_crlf_and_lone_cr_files(tmp_path):
    for nl in (b"\r\n", b"\r"):
        source, _ = load_source(write(tmp_path, b"cluster c {" + nl + b"  a: 1" + nl + b"}"))
        result = parse(source)
        assert result.diagnostics == []
        (item,) = result.module.decls[0].body.items
        assert (item.span.start_pos.line, item.span.start_pos.column) == (2, 3)


def test_too_large_file_is_rejected_without_reading_it_all(tmp_path):
    path = tmp_path / "big.eco"
    with open(path, "wb") as f:
        f.truncate(MAX_SOURCE_BYTES + 1)  # sparse: cheap to create
    source, diags = load_source(path)
    assert source is None
    (d,) = diags
    assert d.code == "ECO0003" and "limited to" in d.message
    assert d.span.source.path == str(path)


def test_fifo_larger_than_limit_is_rejected(tmp_path):
    _, diags = decode_source("pipe.eco", b"a" * (MAX_SOURCE_BYTES + 1))
    assert diags[0].code == "ECO0003"
