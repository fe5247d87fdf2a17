"""``ecoc node`` / ``python -m eco.runtime.node_main``: run one node of a plan's cluster.

::

    ecoc node --plan build/plan.json --name n1 --listen 0.0.0.0:7101 --join 10.0.0.2:7101

The cookie comes from ``--cookie-file``, else the ``ECO_COOKIE`` environment
variable, else the cluster's ``security { cookie: ... }`` secret; it is never
accepted on the command line (other users could read it from the process
list).  The directories of the plan's source files are put on ``sys.path``
so ``module:Class`` components next to the ``.eco`` file import; set
``PYTHONPATH`` for anything else.

The node connects to every ``--join`` address (and keeps reconnecting), and
once every node of the cluster is connected the first node declared in the
cluster starts the ecosystems.  Under ``topology hyparview`` the ``--join``
addresses are the overlay's contacts instead: the membership driver opens and
closes every link (see :mod:`eco.runtime.cluster`).  SIGTERM or SIGINT stop it gracefully (a second
one stops it at once).  Exit status: 0 after a clean stop, 1 on a runtime
failure (e.g. the listen address is taken), 2 for bad arguments, plan or cookie.

Options used by ``ecoc run``: ``--report`` writes machine-readable events to
stdout (see :mod:`eco.runtime.node_report`), ``--exit-on-stdin-eof`` stops the
node when its stdin closes, which is how nodes die with a launcher that was
killed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

import trio

from eco.plan import Cluster, Plan, PlanError, Secret, load_plan

from .gctune import tune_gc
from .cluster import CONTACT_WAIT, ClusterMembership
from .kernel import Kernel
from .node import Node, node_transport_config
from .node_ecosystem import EcosystemService
from .node_report import Reporter
from .node_status import StatusService, ecosystem_view
from .secrets import Cookie, SecretError, load_cookie
from .tcp import TcpAddress, open_tcp_transport
from .transport import ConnectError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COOKIE_ENV = "ECO_COOKIE"


class NodeSetupError(Exception):
    """Bad arguments, plan or cookie: printed as one clear line, exit 2."""


def configure_parser(p: argparse.ArgumentParser) -> None:
    """The options of ``ecoc node`` (shared with ``python -m eco.runtime.node_main``)."""
    p.add_argument("--plan", required=True, metavar="PLAN.json", help="the compiled plan (from `ecoc build`)")
    p.add_argument("--name", required=True, help="this node's name, as declared in the plan's cluster")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default: the node's address in the plan)")
    p.add_argument("--join", action="append", default=[], metavar="HOST:PORT", help="a peer to connect to (repeatable)")
    p.add_argument("--cookie-file", metavar="FILE", help="read the cluster cookie from FILE (default: $ECO_COOKIE, then the plan)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"), help="log level on stderr")
    p.add_argument("--report", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)


def _cluster_of(plan: Plan, name: str) -> Cluster:
    for cluster in plan.clusters:
        if any(n.name == name for n in cluster.nodes):
            return cluster
    if not plan.clusters:
        raise NodeSetupError("the plan declares no cluster, so it has no nodes to run")
    known = ", ".join(n.name for c in plan.clusters for n in c.nodes) or "none"
    raise NodeSetupError(f"node {name!r} is not declared in the plan (declared nodes: {known})")


def _cookie(args: argparse.Namespace, cluster: Cluster) -> Cookie:
    try:
        if args.cookie_file:
            return load_cookie(Secret(source="file", name=args.cookie_file))
        if os.environ.get(COOKIE_ENV):
            return load_cookie(Secret(source="env", name=COOKIE_ENV))
        if cluster.security.cookie is not None:
            return load_cookie(cluster.security.cookie)
    except SecretError as exc:
        raise NodeSetupError(str(exc)) from None
    raise NodeSetupError(
        f"no cluster cookie: set {COOKIE_ENV}, pass --cookie-file, or declare security {{ cookie: env(\"...\") }} in the cluster"
    )


def _add_source_dirs(plan: Plan, plan_path: str) -> None:
    base = Path(plan_path).resolve().parent
    for source in reversed(plan.sources):
        path = Path(source)
        directory = (path if path.is_absolute() else base / path).parent
        if directory.is_dir() and str(directory) not in sys.path:
            sys.path.insert(0, str(directory))


def prepare(args: argparse.Namespace) -> tuple[Plan, Cluster, Cookie, str]:
    """Validate everything before any socket opens; NodeSetupError on bad input."""
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        raise NodeSetupError(str(exc)) from None
    cluster = _cluster_of(plan, args.name)
    listen = args.listen or cluster.node(args.name).address
    try:
        TcpAddress.parse(listen)
        for j in args.join:
            TcpAddress.parse(j)
    except ValueError as exc:
        raise NodeSetupError(str(exc)) from None
    cookie = _cookie(args, cluster)
    _add_source_dirs(plan, args.plan)
    return plan, cluster, cookie, listen


async def serve_node(args: argparse.Namespace, plan: Plan, cluster: Cluster, cookie: Cookie, listen: str, report: Reporter) -> int:
    """Run the node until a signal, stdin EOF (if asked) or a fatal error."""
    incarnation = time.time_ns() // 1_000_000  # a restarted node gets a new incarnation
    kernel = Kernel(args.name, incarnation=incarnation)
    config = node_transport_config(cluster.name, args.name, incarnation, cookie)
    status = EXIT_OK
    async with kernel, open_tcp_transport(config) as transport:
        node = Node(kernel, transport, on_event=report)
        # Membership first: the ecosystem service follows the node's member events from the start.
        # (hyparview: nodes started together must not join through a contact that is not listening yet)
        membership = ClusterMembership(node, cluster, join=args.join, contact_wait=CONTACT_WAIT)
        service = EcosystemService(node, plan, cluster, report=report)
        status_service = StatusService(node, membership, cluster=cluster.name, ecosystems=lambda: ecosystem_view(service))
        async with trio.open_nursery() as nursery:
            stop = _Stopper(nursery.cancel_scope, membership)
            nursery.start_soon(_watch_signals, stop)
            if args.exit_on_stdin_eof:
                nursery.start_soon(_watch_stdin, stop)
            try:
                # (hyparview: the membership driver owns the links; the --join addresses are its contacts)
                address = await nursery.start(node.serve, listen, [] if membership.manages_links else args.join)
            except (ConnectError, ExceptionGroup) as raised:
                exc = _connect_error(raised)  # (node.serve's nursery wraps it in a group)
                if exc is None:
                    raise
                report("fatal", message=str(exc))
                print(f"ecoc node: error: {exc}", file=sys.stderr)
                status = EXIT_FAILED
                nursery.cancel_scope.cancel()
                return status
            await nursery.start(membership.run)
            await nursery.start(status_service.run)
            report("up", node=args.name, address=str(address), pid=os.getpid())
            logging.getLogger("eco.runtime.node").info("node %s#%d up at %s", args.name, incarnation, address)
            await nursery.start(service.run)
    return status


def _connect_error(exc: BaseException) -> ConnectError | None:
    """The ConnectError in ``exc`` (possibly inside exception groups) when it is the only error."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, ConnectError) else None


class _Stopper:
    """Stops the node gracefully: announce the leave to peers first, then cancel everything."""

    def __init__(self, scope: trio.CancelScope, membership: ClusterMembership) -> None:
        self.scope = scope
        self.membership = membership

    @property
    def cancel_called(self) -> bool:
        return self.scope.cancel_called

    def cancel(self) -> None:
        # Queued on the connections before they close, so peers see "left", not a crash.
        self.membership.leave_now()
        self.scope.cancel()


async def _watch_signals(scope: _Stopper) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            if scope.cancel_called:
                os._exit(EXIT_FAILED)  # a second signal: stop now
            scope.cancel()


async def _watch_stdin(scope: _Stopper) -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    try:
        while await stream.receive_some(4096):
            pass
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


def run(args: argparse.Namespace) -> int:
    """Entry point shared by ``ecoc node`` and ``python -m eco.runtime.node_main``."""
    try:
        plan, cluster, cookie, listen = prepare(args)
    except NodeSetupError as exc:
        print(f"ecoc node: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level.upper()),
        format=f"%(asctime)s {args.name} %(levelname)s %(name)s: %(message)s",
    )
    report = Reporter(enabled=args.report)
    tune_gc()  # many long-lived processes: see eco.runtime.gctune
    try:
        return trio.run(serve_node, args, plan, cluster, cookie, listen, report)
    except KeyboardInterrupt:
        return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecoc node", description="Run one node of a compiled plan's cluster.")
    configure_parser(parser)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
