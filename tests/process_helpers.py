"""Child processes in tests: each in its own process group, never outliving the test.

``ecoc run`` and ``ecoc node`` start node processes of their own; killing the whole
group (``start_new_session=True``) is what takes those down with them.  Importable
from any test (``tests/`` is on ``sys.path`` through the top-level conftest).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL, *, reap: float = 10.0) -> None:
    """Send ``sig`` to ``proc``'s process group (if it still runs) and wait up to ``reap`` seconds for it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    proc.wait(timeout=reap)


def run_bounded(cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a new process group and capture its output (text).

    Whatever happens (it finishes, ``timeout`` seconds pass, the test is interrupted) its
    whole group is killed before this returns or raises; on timeout ``TimeoutExpired``
    carries the output so far.
    """
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(proc.args, timeout, output=out, stderr=err) from None
    finally:
        kill_group(proc)  # (a no-op once it has exited; on an error above, the whole group goes)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
