"""Shared helpers for the `ecoc` command-line tests (imported by name: tests have no packages)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CLEAN = """\
cluster local {
  nodes {
    n1 at "127.0.0.1:7101"
  }
}

message Job { path: str }

channel jobs {
  carries Job
}

ecosystem app {
  coordinator: app.main:Coordinator
  workers: app.main:Worker x 2
  channels { data: jobs }
}
"""

# One error (unknown message, with a did-you-mean) on line 2, column 11.
BROKEN = CLEAN.replace("  carries Job\n", "  carries Jbo\n")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


def ecoc_script() -> str:
    """The installed console script (next to the interpreter running the tests)."""
    candidate = Path(sys.executable).parent / "ecoc"
    return str(candidate) if candidate.exists() else (shutil.which("ecoc") or "ecoc")


def run_subprocess(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> Run:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("ECO_DEBUG", None)
    proc = subprocess.run(
        [ecoc_script(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env,
        encoding="utf-8", errors="replace",
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)
