"""Durable checkpoints (eco.runtime.checkpoint): both stores, retention, errors, corruption, crash atomicity."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from eco.runtime import checkpoint
from eco.runtime.checkpoint import CheckpointError, open_checkpoint_store


@pytest.fixture(params=["sqlite", "file"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/ckpt/state.db"
    return f"file://{tmp_path}/ckpt"


def test_save_and_load_latest(url):
    with open_checkpoint_store(url) as store:
        assert store.load_latest("jobs") is None
        assert store.save("jobs", b"one", {"step": 1}) == 1
        assert store.save("jobs", b"two", {"step": 2}) == 2
        assert store.save("other", b"x") == 1
        assert store.load_latest("jobs") == (2, b"two", {"step": 2})
        assert store.load_latest("other") == (1, b"x", {})
    with open_checkpoint_store(url) as reopened:  # durable across instances
        assert reopened.load_latest("jobs") == (2, b"two", {"step": 2})
        assert reopened.save("jobs", b"three") == 3


def test_keeps_only_the_last_k_versions(url):
    with open_checkpoint_store(url, keep=2) as store:
        for i in range(5):
            store.save("jobs", bytes([i]) * 10)
        assert store.versions("jobs") == [4, 5]
        assert store.load_latest("jobs") == (5, b"\x04" * 10, {})


def test_empty_and_large_states(url):
    big = os.urandom(3 * 1024 * 1024)
    with open_checkpoint_store(url) as store:
        store.save("e", b"")
        assert store.load_latest("e") == (1, b"", {})
        store.save("e", big)
        assert store.load_latest("e")[1] == big


def test_concurrent_saves_get_distinct_versions(url):
    with open_checkpoint_store(url, keep=100) as store:
        threads = [threading.Thread(target=lambda i=i: [store.save("e", b"%d" % i) for _ in range(5)]) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.versions("e") == list(range(1, 21))


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("bad", [
    "postgres://db/x", "sqlite:/tmp/x.db", "/tmp/x", "", "file://", "sqlite://", "sqlite:///tmp/dir/",
])
def test_bad_urls(bad):
    with pytest.raises(CheckpointError, match="checkpoint URL"):
        open_checkpoint_store(bad)


def test_bad_arguments(url):
    with pytest.raises(CheckpointError, match="keep at least 1"):
        open_checkpoint_store(url, keep=0)
    with open_checkpoint_store(url) as store:
        with pytest.raises(CheckpointError, match="invalid ecosystem name"):
            store.save("../escape", b"")
        with pytest.raises(CheckpointError, match="must be bytes"):
            store.save("e", "text")  # type: ignore[arg-type]
        with pytest.raises(CheckpointError, match="JSON-serialisable"):
            store.save("e", b"", {"when": object()})
        assert store.versions("e") == []


@pytest.mark.parametrize("scheme,suffix", [("sqlite", "/db.sqlite"), ("file", "/dir")])
def test_unwritable_location(tmp_path, scheme, suffix):
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match="not a directory"):
        open_checkpoint_store(f"{scheme}://{blocker}{suffix}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="permission denied"):
            open_checkpoint_store(f"file://{ro}")
    finally:
        ro.chmod(0o700)


def test_full_disk_on_file_store_keeps_the_previous_version(tmp_path, monkeypatch):
    store = open_checkpoint_store(f"file://{tmp_path}")
    store.save("e", b"good", {"n": 1})
    calls = []

    def full(fd, data):
        calls.append(len(data))
        if len(calls) > 1:  # fail part-way, after a first partial write
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, bytes(data[: len(data) // 2]))

    monkeypatch.setattr(checkpoint, "_write", full)
    with pytest.raises(CheckpointError, match="disk is full"):
        store.save("e", b"x" * 100_000)
    assert len(calls) == 2
    monkeypatch.undo()
    assert store.load_latest("e") == (1, b"good", {"n": 1})
    assert sorted(os.listdir(tmp_path / "e")) == ["000000000001.ckpt"]  # no temporary left behind


def test_full_disk_on_sqlite_store(tmp_path):
    store = open_checkpoint_store(f"sqlite://{tmp_path}/c.db")
    store.save("e", b"good")
    store._conn.execute("PRAGMA max_page_count = 8")  # a tiny "disk"
    with pytest.raises(CheckpointError, match="disk is full"):
        store.save("e", os.urandom(200_000))
    assert store.load_latest("e") == (1, b"good", {})
    assert store.save("e", b"small") == 2  # the failed transaction left nothing behind
    store.close()
    store.close()
    with pytest.raises(CheckpointError, match="closed"):
        store.save("e", b"")


def test_sqlite_url_pointing_at_a_non_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CheckpointError, match="not an intact SQLite database"):
        open_checkpoint_store(f"sqlite://{junk}")


# -------------------------------------------------------------- corruption


def test_corrupt_or_torn_file_falls_back_to_the_previous_good_version(tmp_path):
    store = open_checkpoint_store(f"file://{tmp_path}", keep=5)
    for i in range(1, 5):
        store.save("e", b"state-%d" % i, {"i": i})
    folder = tmp_path / "e"
    # version 4: torn (truncated); version 3: one flipped bit; version 2: garbage.
    data4 = (folder / "000000000004.ckpt").read_bytes()
    (folder / "000000000004.ckpt").write_bytes(data4[: len(data4) - 7])
    data3 = bytearray((folder / "000000000003.ckpt").read_bytes())
    data3[20] ^= 0x01
    (folder / "000000000003.ckpt").write_bytes(bytes(data3))
    assert store.load_latest("e") == (2, b"state-2", {"i": 2})
    (folder / "000000000002.ckpt").write_bytes(b"")
    assert store.load_latest("e") == (1, b"state-1", {"i": 1})
    # A valid checkpoint copied under another version's name is not trusted either.
    (folder / "000000000001.ckpt").rename(folder / "000000000009.ckpt")
    assert store.load_latest("e") is None
    assert store.save("e", b"fresh") == 10


def test_corrupt_sqlite_row_falls_back(tmp_path):
    path = tmp_path / "c.db"
    store = open_checkpoint_store(f"sqlite://{path}")
    store.save("e", b"one")
    store.save("e", b"two")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE eco_checkpoints SET state = ? WHERE version = 2", (b"tw0",))
    assert store.load_latest("e") == (1, b"one", {})


# -------------------------------------------------------- crash atomicity

_WRITER = textwrap.dedent("""
    import hashlib, sys
    from eco.runtime.checkpoint import open_checkpoint_store
    store = open_checkpoint_store(sys.argv[1], keep=3)
    while True:
        v = len(store.versions("e")) and store.versions("e")[-1]
        body = hashlib.sha256(b"%d" % (v + 1)).digest() * 8192  # 256 KiB, unique per version
        got = store.save("e", body, {"v": v + 1})
        print(got, flush=True)
""")


def _expected(version: int) -> bytes:
    return hashlib.sha256(b"%d" % version).digest() * 8192


@pytest.mark.timeout(90)
@pytest.mark.parametrize("scheme", ["sqlite", "file"])
def test_sigkill_while_writing_leaves_a_complete_checkpoint(tmp_path, scheme):
    url = f"sqlite://{tmp_path}/c.db" if scheme == "sqlite" else f"file://{tmp_path}/ckpt"
    acknowledged = 0
    for round_, wait_for in enumerate([1, 7, 3, 12, 5]):
        child = subprocess.Popen([sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(wait_for):
                line = child.stdout.readline()
                assert line, f"writer exited early with {child.wait()}"
                acknowledged = int(line)
            os.kill(child.pid, signal.SIGKILL)  # most likely in the middle of the next save
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        with open_checkpoint_store(url, keep=3) as store:
            version, state, meta = store.load_latest("e")
        assert version >= acknowledged, f"round {round_}: acknowledged checkpoint {acknowledged} was lost"
        assert state == _expected(version)
        assert meta == {"v": version}


def test_relative_paths_and_percent_escapes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_checkpoint_store("file://rel/my%20dir") as store:
        store.save("e", b"x")
    assert (tmp_path / "rel" / "my dir" / "e" / "000000000001.ckpt").is_file()
    with open_checkpoint_store("sqlite://data/c.db") as store:
        store.save("e", b"y")
    assert (tmp_path / "data" / "c.db").is_file()


def test_crash_leftovers_are_cleaned_up(tmp_path):
    store = open_checkpoint_store(f"file://{tmp_path}")
    store.save("e", b"one")
    leftover = tmp_path / "e" / "000000000002.ckpt.tmp-999999-1"
    leftover.write_bytes(b"half a checkpoint")
    assert store.load_latest("e") == (1, b"one", {})
    assert store.save("e", b"two") == 2
    assert not leftover.exists()
