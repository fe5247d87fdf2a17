"""Durable, atomic checkpoints of coordinator state (``checkpoint every T to URL``).

``open_checkpoint_store(url)`` accepts

* ``sqlite:///abs/path.db`` (or ``sqlite://rel/path.db``, relative to the
  current directory): one SQLite database, WAL journal, ``synchronous=FULL``,
  one transaction per checkpoint;
* ``file:///abs/dir`` (or ``file://rel/dir``): one file per checkpoint in
  ``<dir>/<ecosystem>/``, written to a temporary file, fsynced, renamed into
  place with ``os.replace`` and made durable by fsyncing the directory.

Every checkpoint carries a SHA-256 of its content. ``load_latest`` returns the
newest version whose checksum verifies and skips torn or corrupt ones, so a
crash in the middle of a write leaves the previous version readable. Stores
keep the last ``keep`` versions per ecosystem (default 3).

The API is blocking (file IO and fsync); a trio driver calls it through
``trio.to_thread.run_sync``. Stores are safe to use from several threads; one
process writes an ecosystem's checkpoints at a time (its active coordinator):
the file store removes temporary files other processes left behind.
Every failure the user can cause (bad URL, unwritable location, full disk,
corrupt data, bad meta) raises :class:`CheckpointError` with a clear message.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import sqlite3
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .errors import EcoRuntimeError

__all__ = ["CheckpointError", "CheckpointStore", "FileCheckpointStore", "SqliteCheckpointStore",
           "open_checkpoint_store", "DEFAULT_KEEP"]

DEFAULT_KEEP = 3

_MAGIC = b"ECOCKPT1"
_HEADER_LEN = struct.Struct(">I")
_DIGEST_SIZE = 32
_ECOSYSTEM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_write = os.write  # indirection so tests can simulate a full disk


class CheckpointError(EcoRuntimeError):
    """A checkpoint could not be opened, written or read; the message says why and where."""


Loaded = tuple[int, bytes, dict[str, Any]]


class CheckpointStore(ABC):
    """Versioned checkpoints per ecosystem. Versions start at 1 and only grow."""

    url: str
    keep: int

    @abstractmethod
    def save(self, ecosystem: str, state: bytes, meta: Mapping[str, Any] | None = None) -> int:
        """Durably store one checkpoint; returns its version. Older versions beyond ``keep`` are removed."""

    @abstractmethod
    def load_latest(self, ecosystem: str) -> Loaded | None:
        """``(version, state, meta)`` of the newest intact checkpoint, or None if there is none."""

    @abstractmethod
    def versions(self, ecosystem: str) -> list[int]:
        """Stored versions (intact or not), oldest first."""

    def close(self) -> None:
        """Release the store's resources (idempotent)."""

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_checkpoint_store(url: str, *, keep: int = DEFAULT_KEEP) -> CheckpointStore:
    """Open (creating if needed) the store a ``checkpoint ... to URL`` clause names."""
    if not isinstance(keep, int) or keep < 1:
        raise CheckpointError(f"checkpoint stores must keep at least 1 version (got {keep!r})")
    scheme, sep, rest = url.partition("://") if isinstance(url, str) else ("", "", "")
    path = unquote(rest)
    if not sep or scheme not in ("sqlite", "file"):
        raise CheckpointError(
            f"unsupported checkpoint URL {url!r}: expected sqlite:///path/to/db or file:///path/to/dir")
    if not path or (scheme == "sqlite" and path.endswith("/")) or "\0" in path:
        raise CheckpointError(f"checkpoint URL {url!r} names no {'database file' if scheme == 'sqlite' else 'directory'}")
    if scheme == "sqlite":
        return SqliteCheckpointStore(url, path, keep)
    return FileCheckpointStore(url, path, keep)


# ------------------------------------------------------------------ helpers


def _check_args(ecosystem: str, state: bytes, meta: Mapping[str, Any] | None) -> bytes:
    _check_name(ecosystem)
    if not isinstance(state, (bytes, bytearray, memoryview)):
        raise CheckpointError(f"checkpoint state must be bytes, not {type(state).__name__}")
    try:
        return json.dumps(dict(meta or {}), sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint meta must be JSON-serialisable: {exc}") from None


def _check_name(ecosystem: str) -> None:
    if not isinstance(ecosystem, str) or not _ECOSYSTEM_NAME.match(ecosystem):
        raise CheckpointError(f"invalid ecosystem name for a checkpoint: {ecosystem!r}")


def _os_problem(action: str, where: str, exc: OSError) -> CheckpointError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        why = "a path component is not a directory"
    else:
        why = exc.strerror or str(exc)
    return CheckpointError(f"cannot {action} {where}: {why}")


# --------------------------------------------------------------------- file


class FileCheckpointStore(CheckpointStore):
    """``file://`` store: ``<dir>/<ecosystem>/<version>.ckpt``, one atomic rename per checkpoint.

    File layout: ``ECOCKPT1`` | header length (u32 BE) | header JSON
    ``{"version", "ecosystem", "meta"}`` | state | SHA-256 of all preceding bytes.
    """

    def __init__(self, url: str, directory: str, keep: int) -> None:
        self.url = url
        self.keep = keep
        self.directory = os.path.abspath(directory)
        self._lock = threading.Lock()
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise _os_problem("create checkpoint directory", self.directory, exc) from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise CheckpointError(f"cannot write checkpoints to {self.directory}: permission denied")

    def _dir(self, ecosystem: str) -> str:
        return os.path.join(self.directory, ecosystem)

    def versions(self, ecosystem: str) -> list[int]:
        _check_name(ecosystem)
        try:
            names = os.listdir(self._dir(ecosystem))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _os_problem("list checkpoints in", self._dir(ecosystem), exc) from None
        return sorted(int(n[:-5]) for n in names if n.endswith(".ckpt") and n[:-5].isdigit())

    def save(self, ecosystem: str, state: bytes, meta: Mapping[str, Any] | None = None) -> int:
        meta_json = _check_args(ecosystem, state, meta)
        with self._lock:
            folder = self._dir(ecosystem)
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise _os_problem("create checkpoint directory", folder, exc) from None
            existing = self.versions(ecosystem)
            version = (existing[-1] if existing else 0) + 1
            header = b'{"ecosystem":%s,"meta":%s,"version":%d}' % (json.dumps(ecosystem).encode(), meta_json, version)
            body = _MAGIC + _HEADER_LEN.pack(len(header)) + header + bytes(state)
            data = body + hashlib.sha256(body).digest()
            final = os.path.join(folder, f"{version:012d}.ckpt")
            self._write_atomically(folder, final, data)
            self._prune(folder, [*existing, version])
            return version

    def _write_atomically(self, folder: str, final: str, data: bytes) -> None:
        tmp = f"{final}.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise _os_problem("write checkpoint", tmp, exc) from None
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[_write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)  # atomic: readers see the old set of files or the new one
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise _os_problem("write checkpoint", final, exc) from None
        _fsync_dir(folder)  # make the rename itself durable

    def _prune(self, folder: str, versions: list[int]) -> None:
        # Temporary files of other processes are leftovers of a crash (one writer per ecosystem).
        mine = f".tmp-{os.getpid()}-"
        doomed = [f"{old:012d}.ckpt" for old in versions[: -self.keep]]
        doomed += [n for n in os.listdir(folder) if ".ckpt.tmp-" in n and mine not in n]
        for name in doomed:
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _os_problem("remove old checkpoint in", folder, exc) from None
        _fsync_dir(folder)

    def load_latest(self, ecosystem: str) -> Loaded | None:
        for version in reversed(self.versions(ecosystem)):
            loaded = self._read(ecosystem, version)
            if loaded is not None:
                return loaded
        return None

    def _read(self, ecosystem: str, version: int) -> Loaded | None:
        """The checkpoint if intact; None if torn, corrupt or gone (a newer write or a prune raced us)."""
        path = os.path.join(self._dir(ecosystem), f"{version:012d}.ckpt")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _os_problem("read checkpoint", path, exc) from None
        return _decode(data, ecosystem, version)


def _decode(data: bytes, ecosystem: str, version: int) -> Loaded | None:
    if len(data) < len(_MAGIC) + _HEADER_LEN.size + _DIGEST_SIZE or not data.startswith(_MAGIC):
        return None
    body, digest = data[:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if hashlib.sha256(body).digest() != digest:
        return None
    start = len(_MAGIC) + _HEADER_LEN.size
    (size,) = _HEADER_LEN.unpack_from(body, len(_MAGIC))
    try:
        header = json.loads(body[start : start + size])
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("version") != version or header.get("ecosystem") != ecosystem:
        return None  # a file renamed or copied into the wrong place
    return version, bytes(body[start + size :]), header.get("meta") or {}


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise _os_problem("sync checkpoint directory", folder, exc) from None
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # some filesystems cannot fsync directories
            raise _os_problem("sync checkpoint directory", folder, exc) from None
    finally:
        os.close(fd)


# ------------------------------------------------------------------- sqlite


_SCHEMA = """
CREATE TABLE IF NOT EXISTS eco_checkpoints (
    ecosystem TEXT NOT NULL,
    version   INTEGER NOT NULL,
    meta      TEXT NOT NULL,
    state     BLOB NOT NULL,
    sha256    BLOB NOT NULL,
    PRIMARY KEY (ecosystem, version)
)
"""


class SqliteCheckpointStore(CheckpointStore):
    """``sqlite://`` store: table ``eco_checkpoints``, WAL, ``synchronous=FULL``, one transaction per save."""

    def __init__(self, url: str, path: str, keep: int) -> None:
        self.url = url
        self.keep = keep
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        parent = os.path.dirname(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise _os_problem("create directory", parent, exc) from None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per checkpoint.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise self._problem("open checkpoint database", exc) from None

    def _problem(self, action: str, exc: sqlite3.Error) -> CheckpointError:
        text = str(exc)
        if "full" in text.lower():
            text = "the disk is full"
        elif "not a database" in text or "malformed" in text:
            text = "the file is not an intact SQLite database"
        return CheckpointError(f"cannot {action} {self.path}: {text}")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CheckpointError(f"checkpoint store {self.url} is closed")
        return self._conn

    def save(self, ecosystem: str, state: bytes, meta: Mapping[str, Any] | None = None) -> int:
        meta_json = _check_args(ecosystem, state, meta)
        state = bytes(state)
        with self._lock:
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    (latest,) = db.execute(
                        "SELECT COALESCE(MAX(version), 0) FROM eco_checkpoints WHERE ecosystem = ?", (ecosystem,)
                    ).fetchone()
                    version = latest + 1
                    db.execute(
                        "INSERT INTO eco_checkpoints (ecosystem, version, meta, state, sha256) VALUES (?, ?, ?, ?, ?)",
                        (ecosystem, version, meta_json.decode(), state, _digest(ecosystem, version, meta_json, state)),
                    )
                    db.execute("DELETE FROM eco_checkpoints WHERE ecosystem = ? AND version <= ?",
                               (ecosystem, version - self.keep))
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._problem("write checkpoint to", exc) from None
            return version

    def load_latest(self, ecosystem: str) -> Loaded | None:
        _check_name(ecosystem)
        with self._lock:
            try:
                rows = self._db().execute(
                    "SELECT version, meta, state, sha256 FROM eco_checkpoints WHERE ecosystem = ? ORDER BY version DESC",
                    (ecosystem,),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._problem("read checkpoints from", exc) from None
        for version, meta, state, digest in rows:
            meta_json = meta.encode() if isinstance(meta, str) else b""
            if isinstance(state, bytes) and digest == _digest(ecosystem, version, meta_json, state):
                return version, state, json.loads(meta_json)
        return None

    def versions(self, ecosystem: str) -> list[int]:
        _check_name(ecosystem)
        with self._lock:
            try:
                rows = self._db().execute(
                    "SELECT version FROM eco_checkpoints WHERE ecosystem = ? ORDER BY version", (ecosystem,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._problem("read checkpoints from", exc) from None
        return [v for (v,) in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _digest(ecosystem: str, version: int, meta_json: bytes, state: bytes) -> bytes:
    h = hashlib.sha256()
    for part in (ecosystem.encode(), str(version).encode(), meta_json, state):
        h.update(_HEADER_LEN.pack(len(part)))
        h.update(part)
    return h.digest()
