"""``ecoc``: the command-line front end of the eco compiler.

Each subcommand is one ``_configure_x(parser)`` plus one ``_run_x(args) -> int``,
registered in the :data:`COMMANDS` table.  Run functions import what they need
*inside* the function, so ``ecoc check small.eco`` only pays for the compiler
(no rich, jinja2 or trio on that path); keep it that way when adding commands.

Exit codes: 0 success, 1 diagnostics with errors (or warnings under
``--werror``, or files that ``fmt --check`` would change), 2 usage or I/O
error, 3 internal error (a bug: set ``ECO_DEBUG=1`` for the traceback), 130
interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable

from .render import FORMATS, FileReport, RunReport, ToolError, display_path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "venv"})


class UsageError(Exception):
    """Bad command line: reported in one line plus a hint, exit 2."""

    def __init__(self, message: str, hint: str | None = None, prog: str = "ecoc") -> None:
        super().__init__(message)
        self.hint = hint
        self.prog = prog


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register ``run`` as subcommand ``name``: ``@command("check", "...", _configure_check)``."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = Command(name, help, configure, run)
        return run

    return register


# ------------------------------------------------------------------ argument parsing


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the whole usage and exit
        raise UsageError(message, hint=f"run `{self.prog} --help` for usage", prog=self.prog)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ecoc",
        description="Check, build, format and inspect .eco ecosystem specifications.",
        epilog="Run `ecoc COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
    return parser


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", choices=FORMATS, default="human", help="diagnostic output format (default: human)"
    )
    p.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto",
        help="colour human output: auto (only on a terminal; honours NO_COLOR), always, never",
    )
    p.add_argument("--werror", action="store_true", help="treat warnings as errors (exit 1)")


def _add_compile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resolve-imports", action="store_true",
        help="import the Python modules named by coordinator/worker references and check their classes",
    )
    p.add_argument(
        "-I", "--search-path", action="append", default=[], metavar="DIR",
        help="extra directory to look for imported .eco modules in (repeatable)",
    )


# ------------------------------------------------------------------ shared helpers


def _use_color(choice: str, stream) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _print_tool_errors(report: RunReport) -> None:
    for e in report.tool_errors:
        print(f"ecoc: error: {e.message}", file=sys.stderr)


def _emit(report: RunReport, args: argparse.Namespace, stream=None) -> int:
    """Render the report (tool errors also go to stderr, for logs) and return the exit code."""
    stream = stream or sys.stdout
    _print_tool_errors(report)
    from .render import render

    stream.write(render(report, args.format, color=_use_color(args.color, stream)))
    stream.flush()
    return report.exit_code


def collect_sources(paths: list[str], report: RunReport) -> list[str]:
    """Expand files and directories (recursively, *.eco) into a de-duplicated file list.

    Hidden directories, virtualenvs and caches are skipped.  A missing path or a
    directory without any .eco file is a tool error (exit 2): in CI a typo in a
    path must not silently check nothing.
    """
    found: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            found.append(path)

    for raw in paths:
        if os.path.isdir(raw):
            before = len(found)
            for path in _walk_eco_files(raw, report):
                add(path)
            if len(found) == before and not any(e.path == raw for e in report.tool_errors):
                report.tool_errors.append(ToolError(raw, f"no .eco files found in `{raw}`"))
        elif os.path.exists(raw) or os.path.islink(raw):
            add(raw)  # an explicit file is checked whatever its extension
        else:
            report.tool_errors.append(ToolError(raw, f"cannot read `{raw}`: no such file or directory"))
    return found


def _walk_eco_files(root: str, report: RunReport) -> list[str]:
    def on_error(exc: OSError) -> None:
        where = exc.filename or root
        report.tool_errors.append(ToolError(where, f"cannot read directory `{where}`: {exc.strerror or exc}"))

    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".")
            and d not in _SKIP_DIRS
            and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
        )
        out.extend(
            os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".eco") and not f.startswith(".")
        )
    return out


def _compile_into(report: RunReport, path: str, args: argparse.Namespace):
    """Compile one root file, adding its diagnostics (or its I/O error) to the report."""
    from eco.compiler.driver import compile_file
    from eco.language import source as _source

    try:
        result = compile_file(
            path,
            resolve_imports=getattr(args, "resolve_imports", False),
            search_paths=tuple(getattr(args, "search_path", ()) or ()),
        )
    except _source.SourceIOError as exc:
        report.tool_errors.append(ToolError(path, str(exc)))
        return None
    except _source.SourceDecodeError as exc:
        # Content that is not .eco text (binary, bad UTF-8, too large) is a diagnostic, not an I/O error.
        report.files.append(FileReport(path, list(exc.diagnostics)))
        return None
    except Exception as exc:  # noqa: BLE001 - one crashing file must not hide the others' results
        if os.environ.get("ECO_DEBUG"):
            raise
        report.tool_errors.append(ToolError(path, _internal_message(exc, path), internal=True))
        return None
    report.files.append(FileReport(path, list(result.diagnostics)))
    return result


def _internal_message(exc: BaseException, path: str | None = None) -> str:
    where = f" while compiling `{path}`" if path else ""
    return (
        f"internal error{where}: {type(exc).__name__}: {exc}\n"
        "this is a bug in ecoc; please report it (run with ECO_DEBUG=1 to see the traceback)"
    )


def _write_atomic(path: str, text: str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` so that readers never see a half-written file."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ecoc-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, mode if mode is not None else _default_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _default_mode() -> int:
    """The permissions a plainly created file gets (mkstemp would leave it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# ------------------------------------------------------------------ check


def _configure_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".eco files or directories (searched recursively)")
    _add_compile_options(p)
    _add_output_options(p)


@command("check", "check .eco files and report diagnostics", _configure_check)
def _run_check(args: argparse.Namespace) -> int:
    report = RunReport(command="check", werror=args.werror)
    for path in collect_sources(args.paths, report):
        _compile_into(report, path, args)
    return _emit(report, args)


# ------------------------------------------------------------------ build


def _configure_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the root .eco file")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write plan.json and messages.py to")
    _add_compile_options(p)
    _add_output_options(p)


@command("build", "compile a .eco file into DIR/plan.json and DIR/messages.py", _configure_build)
def _run_build(args: argparse.Namespace) -> int:
    report = RunReport(command="build", werror=args.werror)
    files = collect_sources([args.file], report)
    if len(files) > 1:
        raise UsageError(f"build takes one .eco file, and {args.file} is a directory", hint="pass the root file of the app")
    plan = _plan_of(report, files[0], args) if files else None
    if plan is not None:
        _write_build_outputs(report, plan, files[0], args.output)
    return _emit(report, args)


def _plan_of(report: RunReport, path: str, args: argparse.Namespace):
    """Compile ``path`` into the report; the plan, or None when the run failed."""
    result = _compile_into(report, path, args)
    if result is None or report.failed:
        return None
    plan = result.plan
    report.files[-1].diagnostics = list(result.diagnostics)  # lowering may have added some
    if plan is None and not report.failed:
        report.tool_errors.append(
            ToolError(path, f"internal error: no plan for `{path}` although it has no errors", internal=True)
        )
    return None if report.failed else plan


def _write_build_outputs(report: RunReport, plan, path: str, out_dir: str) -> None:
    from eco.compiler.codegen import CodegenError, generate_messages
    from eco.plan import save_plan

    try:
        messages = generate_messages(plan, display_path(path) or path)
    except CodegenError as exc:
        report.tool_errors.append(ToolError(path, f"cannot generate messages.py for `{path}`: {exc}"))
        return
    plan_path = os.path.join(out_dir, "plan.json")
    messages_path = os.path.join(out_dir, "messages.py")
    try:
        os.makedirs(out_dir, exist_ok=True)
        save_plan(plan, plan_path)
        report.outputs.append(plan_path)
        _write_atomic(messages_path, messages)
        report.outputs.append(messages_path)
    except OSError as exc:
        target = exc.filename or out_dir
        report.tool_errors.append(ToolError(str(target), f"cannot write `{target}`: {exc.strerror or exc}"))


# ------------------------------------------------------------------ schema


def _configure_schema(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE instead of standard output")


@command("schema", "print the JSON Schema of the compiled plan (plan.json)", _configure_schema)
def _run_schema(args: argparse.Namespace) -> int:
    import json

    from eco.plan import plan_json_schema

    text = json.dumps(plan_json_schema(), indent=2, sort_keys=False) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        _write_atomic(args.output, text)
    except OSError as exc:
        print(f"ecoc: error: {args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# ------------------------------------------------------------------ explain


def _configure_explain(p: argparse.ArgumentParser) -> None:
    p.add_argument("code", nargs="?", metavar="CODE", help="a diagnostic code such as ECO1001")
    p.add_argument("--list", action="store_true", help="list every documented code with its title")


@command("explain", "print the long explanation of a diagnostic code", _configure_explain)
def _run_explain(args: argparse.Namespace) -> int:
    from . import explain

    if args.list:
        if args.code:
            raise UsageError("give either a CODE or --list, not both")
        for code in explain.codes():
            doc = explain.load(code)
            print(f"{code}  {doc.title if doc else ''}".rstrip())
        return EXIT_OK
    if not args.code:
        raise UsageError("missing CODE", hint="try `ecoc explain ECO1001`, or `ecoc explain --list`")
    code = explain.normalize_code(args.code)
    doc = explain.load(code) if code else None
    if doc is None:
        near = explain.closest_codes(args.code)
        msg = f"ecoc: error: no explanation for `{args.code}`"
        if code is None:
            msg += " (codes look like ECO1001)"
        print(msg, file=sys.stderr)
        if near:
            print(f"help: did you mean {', '.join(f'`{c}`' for c in near)}?", file=sys.stderr)
        print("help: `ecoc explain --list` shows every documented code", file=sys.stderr)
        return EXIT_USAGE
    _print_markdown(doc.text)
    return EXIT_OK


def _print_markdown(text: str) -> None:
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb":
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(text))
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


# ------------------------------------------------------------------ fmt


def _configure_fmt(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".eco files or directories (searched recursively)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any file would be reformatted")
    p.add_argument("--diff", action="store_true", help="change nothing; print a unified diff of what would change")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour diagnostics")


@command("fmt", "format .eco files in the canonical style", _configure_fmt)
def _run_fmt(args: argparse.Namespace) -> int:
    from .fmt_cli import format_paths

    return format_paths(args)


# ------------------------------------------------------------------ graph


def _configure_graph(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the root .eco file")
    p.add_argument("--format", choices=("dot", "mermaid"), default="dot", help="graph syntax (default: dot)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the graph to FILE instead of standard output")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour diagnostics")
    _add_compile_options(p)


@command("graph", "draw ecosystems, channels and nodes as Graphviz DOT or Mermaid", _configure_graph)
def _run_graph(args: argparse.Namespace) -> int:
    report = RunReport(command="graph")
    files = collect_sources([args.file], report)
    if len(files) > 1:
        raise UsageError(f"graph takes one .eco file, and {args.file} is a directory")
    plan = _plan_of(report, files[0], args) if files else None
    if plan is None or report.tool_errors:
        # Standard output carries the graph; diagnostics go to standard error.
        _print_tool_errors(report)
        from .render_human import render_report

        sys.stderr.write(render_report(report, color=_use_color(args.color, sys.stderr)))
        return report.exit_code or EXIT_FAILED
    from eco.compiler.graph import render_graph

    text = render_graph(plan, args.format)
    if not text.endswith("\n"):
        text += "\n"
    if args.output:
        try:
            _write_atomic(args.output, text)
        except OSError as exc:
            print(f"ecoc: error: {args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        sys.stdout.write(text)
    return EXIT_OK


# ------------------------------------------------------------------ run, node


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the root .eco file")
    p.add_argument("--nodes", type=int, metavar="N", help="node processes to start (default: the cluster's node count)")
    p.add_argument("--state-dir", metavar="DIR", help="where the plan and node logs go (default: a temporary directory)")
    p.add_argument("--timeout", type=float, metavar="S", help="stop everything and fail after S seconds")
    p.add_argument("--format", choices=("human", "json"), default="human", help="summary format (default: human)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour diagnostics")
    p.add_argument("--chaos", metavar="ACTION",
                   help="inject a fault AFTER (e.g. 2s) the job starts: kill-node[:AFTER[:restart]] SIGKILLs one "
                        "non-coordinator node (optionally restarting it); kill-coordinator[:AFTER] SIGKILLs the "
                        "elected coordinator's node (`leader: consensus`)")
    _add_compile_options(p)


@command("run", "compile a .eco file and run it on local node processes", _configure_run)
def _run_run(args: argparse.Namespace) -> int:
    if args.nodes is not None and args.nodes < 1:
        raise UsageError(f"--nodes must be at least 1, got {args.nodes}")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    report = RunReport(command="run")
    files = collect_sources([args.file], report)
    if len(files) > 1:
        raise UsageError(f"run takes one .eco file, and {args.file} is a directory")
    plan = _plan_of(report, files[0], args) if files else None
    if plan is None or report.tool_errors:
        _print_tool_errors(report)
        from .render_human import render_report

        sys.stderr.write(render_report(report, color=_use_color(args.color, sys.stderr)))
        return report.exit_code or EXIT_FAILED
    from pathlib import Path

    from eco.runtime.launcher import RunOptions, run_plan

    options = RunOptions(
        nodes=args.nodes,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        timeout=args.timeout,
        format=args.format,
        python_path=[os.path.dirname(os.path.abspath(files[0]))],
        chaos=args.chaos,
    )
    return run_plan(plan, options)


def _configure_node(p: argparse.ArgumentParser) -> None:
    # Same options as eco.runtime.node_main.configure_parser (kept here so building
    # the parser does not import the runtime); tests check the two agree.
    p.add_argument("--plan", required=True, metavar="PLAN.json", help="the compiled plan (from `ecoc build`)")
    p.add_argument("--name", required=True, help="this node's name, as declared in the plan's cluster")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default: the node's address in the plan)")
    p.add_argument("--join", action="append", default=[], metavar="HOST:PORT", help="a peer to connect to (repeatable)")
    p.add_argument("--cookie-file", metavar="FILE", help="read the cluster cookie from FILE (default: $ECO_COOKIE, then the plan)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"), help="log level on stderr")
    p.add_argument("--report", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)


@command("node", "run one node of a compiled plan's cluster (for real hosts)", _configure_node)
def _run_node(args: argparse.Namespace) -> int:
    from eco.runtime.node_main import run

    return run(args)


def _configure_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", required=True, metavar="HOST:PORT", help="the node to ask (any node of the cluster)")
    p.add_argument("--format", choices=("human", "json"), default="human", help="output format (default: human)")
    p.add_argument("--cookie-file", metavar="FILE", help="read the cluster cookie from FILE (default: $ECO_COOKIE)")
    p.add_argument("--cluster", metavar="NAME", help="the cluster's name (default: learnt from the node's greeting)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="give up after S seconds (default: 5)")


EXIT_STATUS_REFUSED = 4


@command("status", "show a running cluster's members, ecosystems and recent events", _configure_status)
def _run_status(args: argparse.Namespace) -> int:
    import json

    import trio

    from eco.plan import Secret
    from eco.runtime.node_status import StatusError, fetch_status, render_status
    from eco.runtime.secrets import SecretError, load_cookie
    from eco.runtime.tcp import TcpAddress

    try:
        TcpAddress.parse(args.node)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    try:
        if args.cookie_file:
            cookie = load_cookie(Secret(source="file", name=args.cookie_file))
        elif os.environ.get("ECO_COOKIE"):
            cookie = load_cookie(Secret(source="env", name="ECO_COOKIE"))
        else:
            raise UsageError("no cluster cookie: set ECO_COOKIE or pass --cookie-file")
    except SecretError as exc:
        raise UsageError(str(exc)) from None
    import logging

    logging.getLogger("eco.transport").setLevel(logging.CRITICAL)  # failures are reported below, in one line
    try:
        status = trio.run(lambda: fetch_status(args.node, cookie, cluster=args.cluster, timeout=args.timeout))
    except StatusError as exc:
        sys.stderr.write(f"ecoc status: error: {exc}\n")
        return EXIT_STATUS_REFUSED if exc.kind == "refused" else EXIT_FAILED
    if args.format == "json":
        sys.stdout.write(json.dumps(status, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_status(status))
    return EXIT_OK


# ------------------------------------------------------------------ entry point


def _version() -> str:
    from .render import tool_version

    return tool_version()


def _dispatch(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"ecoc {_version()}")
        return EXIT_OK
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command].run(args)
    except UsageError as exc:
        exc.prog = f"ecoc {args.command}"
        exc.hint = exc.hint or f"run `ecoc {args.command} --help` for usage"
        raise


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; never lets a Python traceback reach the user (unless ECO_DEBUG=1)."""
    for stream in (sys.stdout, sys.stderr):
        try:  # a source with odd characters must not crash printing on a narrow terminal encoding
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    try:
        return _dispatch(argv)
    except UsageError as exc:
        print(f"{exc.prog}: error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print("ecoc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`ecoc explain --list | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("ECO_DEBUG"):
            raise
        print(f"ecoc: {_internal_message(exc)}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # python -m eco.compiler.cli
    sys.exit(main())
