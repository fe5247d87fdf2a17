"""The report channel from a node process to the ``ecoc run`` launcher.

A node started by the launcher writes one JSON object per line to its stdout,
each prefixed with ``@eco `` so that anything else user code prints there is
told apart (the launcher forwards such lines as they are).  Events:

========== ==========================================================
``up``         listening: ``node``, ``address``, ``pid``
``peer_up``    connected to ``peer``; ``peer_down`` with ``reason`` when lost
``ready``      connected to every node of the plan's cluster
``started``    an ecosystem's coordinator and workers run: ``ecosystem``, ``workers``
``progress``   ``ecosystem``, ``done``, ``total`` (or null), ``unit``
``complete``   ``ecosystem``, ``result`` (JSON), ``elapsed`` seconds
``failed``     ``ecosystem``, ``reason``
``fatal``      the node cannot go on: ``message`` (it exits non-zero)
========== ==========================================================
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, TextIO

PREFIX = b"@eco "


def encode_event(event: str, **fields: Any) -> bytes:
    fields["ev"] = event
    return PREFIX + json.dumps(fields, separators=(",", ":"), default=repr).encode() + b"\n"


class Reporter:
    """Writes events to a stream (stdout by default); a no-op when disabled."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self.enabled = enabled

    def __call__(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        try:
            buf = getattr(self._stream, "buffer", None)
            line = encode_event(event, **fields)
            if buf is not None:
                self._stream.flush()
                buf.write(line)
                buf.flush()
            else:
                self._stream.write(line.decode())
                self._stream.flush()
        except (OSError, ValueError):
            pass  # the launcher is gone; the node notices through stdin EOF


class LineSplitter:
    """Feeds raw bytes, calls ``on_event(dict)`` per event line and ``on_text(str)`` for other lines.

    Partial lines are kept until their newline arrives; ``close()`` flushes a
    last unterminated line.
    """

    def __init__(self, on_event: Callable[[dict], None], on_text: Callable[[str], None], *, max_line: int = 64 << 20):
        self._buf = bytearray()
        self._on_event = on_event
        self._on_text = on_text
        self._max_line = max_line

    def feed(self, data: bytes) -> None:
        self._buf += data
        start = 0
        while True:
            nl = self._buf.find(b"\n", start)
            if nl < 0:
                break
            self._line(bytes(self._buf[start:nl]))
            start = nl + 1
        del self._buf[:start]
        if len(self._buf) > self._max_line:  # a runaway line: hand it over as text rather than grow forever
            self._line(bytes(self._buf))
            self._buf.clear()

    def close(self) -> None:
        if self._buf:
            self._line(bytes(self._buf))
            self._buf.clear()

    def _line(self, raw: bytes) -> None:
        if raw.startswith(PREFIX):
            try:
                event = json.loads(raw[len(PREFIX):])
            except ValueError:
                event = None
            if isinstance(event, dict) and isinstance(event.get("ev"), str):
                self._on_event(event)
                return
        self._on_text(raw.decode("utf-8", "replace").rstrip("\r"))
