"""``python -m eco.runtime.raft_server``: one Raft node serving the replicated key-value store over TCP.

::

    ECO_COOKIE=... python -m eco.runtime.raft_server --id n1 --listen 127.0.0.1:7001 \\
        --peer n2=127.0.0.1:7002 --peer n3=127.0.0.1:7003 --data /var/lib/eco/n1

Peers and clients connect with the eco transport and handshake (cluster ``--cluster``, cookie
from ``ECO_COOKIE``). Raft traffic uses ``Kind.RAFT`` envelopes; clients use the protocol of
:mod:`eco.runtime.raft_client`. The Raft log lives in ``DATA/raft.db`` (SQLite, fsync on
commit). Once listening, the server prints one line ``raft_server <id> listening on
<host:port>`` to stdout. SIGTERM/SIGINT stop it. Exit status: 0 after a clean stop, 1 on a
runtime failure (e.g. the address is taken), 2 for bad arguments or cookie.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import trio

from .handshake import Identity
from .raft import RaftConfig
from .raft_client import CLIENT_CHANNEL, WRITE_OPS
from .raft_driver import NotLeaderError, ProposalDropped, RaftDriver, RaftError, RaftTimeout, RequestRejected
from .raft_kv import KVStateMachine, encode_command
from .raft_net import RaftMesh
from .raft_storage import SqliteStorage
from .secrets import Cookie, SecretError
from .tcp import TcpAddress, open_tcp_transport
from .transport import Connection, ConnectError, TransportConfig
from .wire import Envelope, Kind

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COOKIE_ENV = "ECO_COOKIE"
PROFILE_ENV = "ECO_RAFT_PROFILE"  # a path: cProfile the server, dump pstats there on a clean stop


class SetupError(Exception):
    """Bad arguments or cookie: one clear line, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eco.runtime.raft_server", description="Run one Raft key-value node.")
    p.add_argument("--id", required=True, help="this node's id (unique in the group)")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="address for peers and clients")
    p.add_argument("--peer", action="append", default=[], metavar="ID=HOST:PORT", help="another member (repeatable)")
    p.add_argument("--data", required=True, metavar="DIR", help="directory for the Raft log (created if missing)")
    p.add_argument("--cluster", default="eco-raft", help="cluster name used in the handshake (default: eco-raft)")
    p.add_argument("--tick-ms", type=float, default=10.0, help="tick interval in ms (default 10)")
    p.add_argument("--election-ticks", type=int, default=10, help="election timeout in ticks, randomised up to 2x (default 10)")
    p.add_argument("--propose-timeout", type=float, default=2.0, help="seconds a write may wait for commit (default 2)")
    p.add_argument("--no-fsync", action="store_true",
                   help="do not fsync the log (benchmarks only: unsafe on power loss)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    return p


def _parse_peers(specs: list[str], me: str) -> dict[str, str]:
    peers: dict[str, str] = {}
    for spec in specs:
        name, sep, address = spec.partition("=")
        if not sep or not name:
            raise SetupError(f"--peer {spec!r}: expected ID=HOST:PORT")
        try:
            TcpAddress.parse(address)
        except ValueError as exc:
            raise SetupError(f"--peer {spec!r}: {exc}") from None
        if name == me:
            raise SetupError(f"--peer {spec!r} names this node itself ({me})")
        if name in peers:
            raise SetupError(f"--peer {name} is given twice")
        peers[name] = address
    return peers


def _cookie() -> Cookie:
    value = os.environ.get(COOKIE_ENV, "").strip()
    if not value:
        raise SetupError(f"set the cluster cookie in the {COOKIE_ENV} environment variable")
    try:
        return Cookie(value)
    except SecretError as exc:
        raise SetupError(f"the cookie in {COOKIE_ENV}: {exc}") from None


class RaftServer:
    """The driver, the peer mesh and the client protocol of one node."""

    def __init__(self, node_id: str, peers: dict[str, str], data_dir: Path, *, tick_interval: float = 0.01,
                 election_ticks: int = 10, propose_timeout: float = 2.0, fsync: bool = True) -> None:
        self.id = node_id
        self.peer_addresses = dict(peers)
        self.propose_timeout = propose_timeout
        self.storage = SqliteStorage(data_dir / "raft.db", fsync=fsync)
        self.config = RaftConfig(election_ticks=election_ticks, heartbeat_ticks=1, max_entries_per_append=1024,
                                 max_inflight_appends=64)
        self.tick_interval = tick_interval
        self.mesh: RaftMesh | None = None
        self.driver: RaftDriver | None = None
        self._nursery: trio.Nursery | None = None

    async def serve(self, transport_config: TransportConfig, listen: str,
                    *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_tcp_transport(transport_config) as transport:
            self.mesh = RaftMesh(transport, self.peer_addresses)
            self.driver = RaftDriver(self.id, [self.id, *self.peer_addresses], self.storage, self.mesh.send,
                                     state_machine=KVStateMachine(), config=self.config,
                                     tick_interval=self.tick_interval, persist_in_thread=True)
            self.mesh.deliver = self.driver.deliver
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self.driver.run)
                    address = await transport.listen(self._handle_connection, listen)
                    await nursery.start(self.mesh.run)
                    task_status.started(address)
            finally:
                self.storage.close()

    async def _handle_connection(self, conn: Connection) -> None:
        assert self.mesh is not None and self._nursery is not None
        raft = self.mesh.on_frame_from(conn)
        nursery = self._nursery
        raft_kind, call_kind = int(Kind.RAFT), int(Kind.CALL)

        def on_frame(frame: list) -> None:  # raw frames: no Envelope per message (hot path)
            kind = frame[1]
            if kind == raft_kind:
                raft(frame)
            elif kind == call_kind and frame[2] == CLIENT_CHANNEL:
                nursery.start_soon(self._serve_call, conn, frame[5], frame[6])

        conn.set_receiver(on_frame, raw=True)
        await conn.wait_closed()

    async def _serve_call(self, conn: Connection, sequence: int, payload: Any) -> None:
        reply = await self.execute(payload)
        try:
            try:
                conn.send_raw_nowait(Kind.REPLY, CLIENT_CHANNEL, None, None, sequence, reply)
            except trio.WouldBlock:
                await conn.send(Envelope(Kind.REPLY, CLIENT_CHANNEL, None, None, sequence, reply))
        except Exception:  # the client went away; nothing to tell
            pass

    async def execute(self, payload: Any) -> dict:
        """Run one client request; returns the reply payload."""
        driver = self.driver
        assert driver is not None
        try:
            op, key, value, client_id, request_id = payload
        except (TypeError, ValueError):
            return {"error": "bad_request", "message": "expected [op, key, value, client_id, request_id]"}
        try:
            if op == "status":
                node = driver.node
                return {"ok": {"id": self.id, "term": driver.term, "leader": driver.leader_id,
                               "is_leader": driver.is_leader, "applied": node.applied, "commit": node.commit}}
            if op == "get":
                return {"ok": await driver.read(key, timeout=self.propose_timeout)}
            if op == "bench":
                count, concurrency, *mode = value
                if mode == ["window"]:
                    return {"ok": await self._bench_window(int(count), int(concurrency))}
                return {"ok": await self._bench(count, concurrency)}
            if op in WRITE_OPS:
                if not isinstance(client_id, str) or not isinstance(request_id, int):
                    return {"error": "bad_request", "message": "writes need a str client_id and an int request_id"}
                applied = await driver.propose(encode_command(client_id, request_id, op, key, value),
                                               timeout=self.propose_timeout)
                return {"ok": applied.result if applied is not None else None}
            return {"error": "bad_request", "message": f"unknown operation {op!r}"}
        except NotLeaderError as exc:
            hint = exc.leader_hint
            return {"error": "not_leader", "message": str(exc), "leader": hint,
                    "leader_address": self.peer_addresses.get(hint)}
        except RaftTimeout as exc:
            return {"error": "timeout", "message": str(exc)}
        except ProposalDropped as exc:
            return {"error": "dropped", "message": str(exc)}
        except RequestRejected as exc:
            return {"error": "rejected", "message": str(exc)}
        except RaftError as exc:
            return {"error": "stopped", "message": str(exc)}
        except (TypeError, ValueError) as exc:
            return {"error": "bad_request", "message": str(exc)}

    async def _bench(self, count: int, concurrency: int) -> dict:
        """``count`` increments by ``concurrency`` concurrent sessions, in this process (leader only)."""
        driver = self.driver
        assert driver is not None
        if not driver.is_leader:
            raise NotLeaderError(driver.leader_id)
        per = max(1, int(count) // max(1, int(concurrency)))
        base = f"bench-{time.time_ns()}"

        latencies: list[float] = []
        errors: list[str] = []

        async def worker(k: int) -> None:
            for r in range(1, per + 1):
                t0 = trio.current_time()
                try:
                    # Generous timeout: a loaded machine must not turn a slow run into a failure.
                    await driver.propose(encode_command(f"{base}/{k}", r, "incr", "bench"),
                                         timeout=max(10.0, self.propose_timeout))
                except RaftError as exc:  # report, do not crash the server (an ExceptionGroup would)
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
                latencies.append(trio.current_time() - t0)

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for k in range(int(concurrency)):
                nursery.start_soon(worker, k)
        elapsed = trio.current_time() - start
        if errors:
            raise RequestRejected(f"bench: {len(errors)} of {concurrency} sessions failed, first: {errors[0]}")
        latencies.sort()
        return {"ops": per * int(concurrency), "seconds": elapsed, "p50_ms": latencies[len(latencies) // 2] * 1000,
                "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000}


    async def _bench_window(self, count: int, window: int) -> dict:
        """``count`` increments with ``window`` in flight through callbacks (:meth:`RaftDriver.propose_nowait`).

        The same shape as pysyncobj's callback API: no task per request. Each of the ``window``
        slots is a client session issuing its next request when the previous one completed.
        """
        driver = self.driver
        assert driver is not None
        if not driver.is_leader:
            raise NotLeaderError(driver.leader_id)
        base = f"bench-{time.time_ns()}"
        timeout = max(10.0, self.propose_timeout)
        now = trio.current_time
        done = trio.Event()
        latencies: list[float] = []
        errors: list[str] = []
        counters = {"submitted": 0, "completed": 0}
        request_ids = [0] * max(1, window)

        def submit(slot: int) -> None:
            request_ids[slot] += 1
            counters["submitted"] += 1
            t0 = now()

            def on_done(result: Any, error: BaseException | None) -> None:
                counters["completed"] += 1
                if error is not None:
                    errors.append(f"{type(error).__name__}: {error}")
                else:
                    latencies.append(now() - t0)
                    if counters["submitted"] < count and not errors:
                        try:
                            submit(slot)
                        except RaftError as exc:
                            counters["submitted"] -= 1
                            errors.append(f"{type(exc).__name__}: {exc}")
                if counters["completed"] == counters["submitted"]:
                    done.set()

            driver.propose_nowait(encode_command(f"{base}/{slot}", request_ids[slot], "incr", "bench"), on_done,
                                  timeout)

        start = now()
        for slot in range(min(max(1, window), count)):
            submit(slot)
        await done.wait()
        elapsed = now() - start
        if errors:
            raise RequestRejected(f"bench: {len(errors)} requests failed, first: {errors[0]}")
        latencies.sort()
        return {"ops": len(latencies), "seconds": elapsed, "p50_ms": latencies[len(latencies) // 2] * 1000,
                "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000}


async def _watch_signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _main(args: argparse.Namespace, peers: dict[str, str], cookie: Cookie, data: Path) -> int:
    server = RaftServer(args.id, peers, data, tick_interval=args.tick_ms / 1000.0,
                        election_ticks=args.election_ticks, propose_timeout=args.propose_timeout,
                        fsync=not args.no_fsync)
    identity = Identity(args.cluster, args.id, time.time_ns() // 1_000_000, cookie)
    config = TransportConfig(identity, keepalive_interval=0.25, keepalive_misses=4, connect_timeout=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, nursery.cancel_scope)
        address = await nursery.start(server.serve, config, args.listen)
        print(f"raft_server {args.id} listening on {address}", flush=True)
    return EXIT_OK


def _run_profiled(args: argparse.Namespace, peers: dict[str, str], cookie: Cookie, data: Path, out: str) -> int:
    """Performance work: run under cProfile and write pstats to ``out`` when stopped by SIGTERM."""
    import cProfile

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(trio.run, _main, args, peers, cookie, data)
    finally:
        profiler.dump_stats(out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        peers = _parse_peers(args.peer, args.id)
        TcpAddress.parse(args.listen)
        cookie = _cookie()
        if args.tick_ms <= 0 or args.election_ticks < 2:
            raise SetupError("--tick-ms must be > 0 and --election-ticks >= 2")
        data = Path(args.data)
        try:
            data.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SetupError(f"cannot create the data directory {data}: {exc.strerror or exc}") from None
    except (SetupError, ValueError) as exc:
        print(f"raft_server: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        profile_path = os.environ.get(PROFILE_ENV)
        if profile_path:
            return _run_profiled(args, peers, cookie, data, f"{profile_path}.{args.id}")
        return trio.run(_main, args, peers, cookie, data)
    except ConnectError as exc:
        print(f"raft_server {args.id}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as exc:
        print(f"raft_server {args.id}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
