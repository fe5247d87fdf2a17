"""Live progress for ``ecoc run``: a rich display on a terminal, plain lines otherwise.

On a tty every ecosystem gets a rich progress bar.  Without a tty (CI, pipes,
log files) progress is printed as plain, greppable lines such as
``[12.3s] tokens: 812/1803 files``, at most one per ``interval`` seconds per
ecosystem plus a final line, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressView:
    """Shows ecosystem progress and short status lines; ``close()`` when done."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, interval: float = 1.0) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._interval = interval
        self._start = time.monotonic()
        self._last_line: dict[str, float] = {}
        self._last_state: dict[str, tuple[int, int | None, str]] = {}
        self._rich = None
        self._tasks: dict[str, object] = {}
        if self._tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(file=self._stream)
            self._rich = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self._rich.start()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def status(self, text: str) -> None:
        """A one-off status line (node started, node lost, ...)."""
        if self._rich is not None:
            self._rich.console.print(f"[dim]{self.elapsed:6.1f}s[/dim] {text}", highlight=False, markup=True)
        else:
            self._write(f"[{self.elapsed:.1f}s] {text}")

    def update(self, name: str, done: int, total: int | None, unit: str = "items") -> None:
        """Progress of one ecosystem: ``done`` out of ``total`` (``None`` when unknown)."""
        self._last_state[name] = (done, total, unit)
        if self._rich is not None:
            task = self._tasks.get(name)
            if task is None:
                self._tasks[name] = self._rich.add_task(name, total=total, completed=done, unit=unit)
            else:
                self._rich.update(task, completed=done, total=total, unit=unit)
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last_line.get(name, float("-inf")) < self._interval:
            return
        self._last_line[name] = now
        self._write(self._plain(name, done, total, unit))

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def _plain(self, name: str, done: int, total: int | None, unit: str) -> str:
        count = f"{done}/{total}" if total is not None else f"{done}"
        return f"[{self.elapsed:.1f}s] {name}: {count} {unit}"

    def _write(self, line: str) -> None:
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not turn a finished job into a crash
