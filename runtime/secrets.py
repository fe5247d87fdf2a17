"""The cluster cookie: loaded at run time from the environment or a file.

A :class:`Cookie` never shows its value: ``repr``/``str`` are redacted, it is
not picklable, and the only way to use it is :meth:`Cookie.mac`.  Load one from
an :class:`eco.plan.Secret` with :func:`load_cookie`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as _stdlib_secrets
from collections.abc import Mapping
from pathlib import Path

from eco.plan import Secret

MIN_COOKIE_BYTES = 16
"""Shorter cookies are refused: they are guessable."""


class SecretError(Exception):
    """A secret could not be loaded; the message says where it was looked for (never its value)."""


class Cookie:
    """A shared cluster secret.  Compare peers' knowledge of it with :meth:`mac`."""

    __slots__ = ("_key",)

    def __init__(self, value: bytes | str):
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, bytes):
            raise TypeError("a cookie is bytes or str")
        if len(value) < MIN_COOKIE_BYTES:
            raise SecretError(f"the cookie is too short ({len(value)} bytes); use at least {MIN_COOKIE_BYTES}")
        self._key = value

    @classmethod
    def generate(cls) -> Cookie:
        """A fresh random cookie (32 bytes, hex-encoded so it can be put in an env variable)."""
        return cls(_stdlib_secrets.token_hex(32))

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` keyed with the cookie."""
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def reveal(self) -> str:
        """The cookie as text, for handing to a child process's environment only."""
        return self._key.decode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return "Cookie(<redacted>)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("cookies are not picklable (they must never be written out by accident)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cookie) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.mac(b"eco-cookie-hash"))


def load_cookie(secret: Secret, *, environ: Mapping[str, str] | None = None) -> Cookie:
    """Load the cookie described by ``secret`` (``env`` variable or ``file`` path).

    Raises :class:`SecretError` with a message that names the variable or file
    but never includes the value.
    """
    environ = os.environ if environ is None else environ
    if secret.source == "env":
        value = environ.get(secret.name)
        if value is None:
            raise SecretError(f"the cookie environment variable {secret.name} is not set")
        value = value.strip()
        if not value:
            raise SecretError(f"the cookie environment variable {secret.name} is empty")
        try:
            return Cookie(value)
        except SecretError as exc:
            raise SecretError(f"the cookie in environment variable {secret.name}: {exc}") from None
    if secret.source == "file":
        path = Path(secret.name).expanduser()
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise SecretError(f"the cookie file {path} does not exist") from None
        except IsADirectoryError:
            raise SecretError(f"the cookie file {path} is a directory") from None
        except PermissionError:
            raise SecretError(f"the cookie file {path} is not readable (permission denied)") from None
        except OSError as exc:
            raise SecretError(f"the cookie file {path} cannot be read: {exc.strerror}") from None
        raw = raw.strip()
        if not raw:
            raise SecretError(f"the cookie file {path} is empty")
        try:
            return Cookie(raw)
        except SecretError as exc:
            raise SecretError(f"the cookie in file {path}: {exc}") from None
    raise SecretError(f"unknown secret source {secret.source!r}")
