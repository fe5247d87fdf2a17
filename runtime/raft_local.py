"""Start a group of ``raft_server`` OS processes on loopback (tests, benchmarks, local trials).

::

    with LocalRaftGroup(3, tmp_dir, cookie) as group:
        group.start_all()                       # waits until each prints its listening line
        ... RaftClient(transport, group.addresses(), ...) ...
        group.kill("n1")                        # SIGKILL
        group.start("n1")                       # restart from its data directory

Every process is started in its own session and killed (SIGKILL, then reaped) on exit, so a
failing test never leaves servers behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .launcher import free_ports
from .secrets import Cookie


class LocalRaftGroup:
    """``n`` raft_server processes ``n1..nN`` with data under ``base_dir``."""

    def __init__(self, n: int, base_dir: Path, cookie: Cookie, *, tick_ms: float = 10.0, election_ticks: int = 10,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        self.base_dir = Path(base_dir)
        self.ports = dict(zip(self.ids, free_ports(n)))
        self._cookie = cookie
        self.args = ["--tick-ms", str(tick_ms), "--election-ticks", str(election_ticks), *extra_args]
        self.procs: dict[str, subprocess.Popen] = {}

    def address(self, node: str) -> str:
        return f"127.0.0.1:{self.ports[node]}"

    def addresses(self) -> list[str]:
        return [self.address(i) for i in self.ids]

    def node_of(self, address: str) -> str:
        return next(i for i in self.ids if self.address(i) == address)

    def start(self, node: str, *, within: float = 20.0) -> None:
        """Start ``node`` and wait for its listening line."""
        peers = [f"--peer={p}={self.address(p)}" for p in self.ids if p != node]
        env = dict(os.environ, ECO_COOKIE=self._cookie.reveal())
        cmd = [sys.executable, "-m", "eco.runtime.raft_server", "--id", node, "--listen", self.address(node),
               *peers, "--data", str(self.base_dir / node), *self.args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        self.procs[node] = proc
        deadline = time.monotonic() + within
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        buf = b""
        while b"listening on" not in buf:
            if proc.poll() is not None:
                raise RuntimeError(f"raft_server {node} exited with status {proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise RuntimeError(f"raft_server {node} did not start within {within:g}s")
            try:
                chunk = os.read(proc.stdout.fileno(), 4096)
            except BlockingIOError:
                chunk = b""
            if chunk:
                buf += chunk
            else:
                time.sleep(0.01)  # polling a child's pipe; there is no event to await across processes here

    def start_all(self) -> None:
        for node in self.ids:
            self.start(node)

    def kill(self, node: str) -> None:
        """SIGKILL ``node`` and reap it."""
        proc = self.procs.pop(node, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def close(self) -> None:
        for node in list(self.procs):
            try:
                self.kill(node)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass

    def __enter__(self) -> LocalRaftGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
