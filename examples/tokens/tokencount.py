"""Token counting for the ``tokens`` example: the pure, single-process part.

What is counted, precisely:

* the files: every ``*.py`` file under the Python standard library of the
  running interpreter (``sysconfig.get_paths()["stdlib"]``), walked
  recursively, skipping ``site-packages``, ``dist-packages`` and
  ``__pycache__`` directories, in sorted order of their path relative to the
  root (POSIX separators).  ``ECO_TOKENS_ROOT`` scans another directory instead,
  ``ECO_TOKENS_LIMIT=N`` keeps only the first N files of that order;
* the tokens: each file is read as bytes and run through ``tokenize.tokenize``
  (which honours PEP 263 encoding declarations); only ``NAME`` and ``OP``
  tokens are counted, keyed by ``"<TYPE> <text>"``, e.g. ``"NAME self"`` or
  ``"OP ("``;
* skipped files: a file that cannot be read, decoded or tokenized (the
  standard library ships a few deliberately broken test files) is skipped as a
  whole and counted in ``skipped``; this depends only on its content, so it is
  deterministic.

``python examples/tokens/tokencount.py [--limit N]`` computes the reference
result in one process; ``ecoc run examples/tokens/tokens.eco`` must produce
exactly the same ``digest``.
"""

from __future__ import annotations

import hashlib
import io
import os
import sysconfig
import tokenize
from collections import Counter
from pathlib import Path

_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})
_COUNTED = frozenset({tokenize.NAME, tokenize.OP})
TOP = 10


def default_root() -> Path:
    """The directory to scan: ``ECO_TOKENS_ROOT`` or the interpreter's standard library."""
    return Path(os.environ.get("ECO_TOKENS_ROOT") or sysconfig.get_paths()["stdlib"])


def default_limit() -> int | None:
    """``ECO_TOKENS_LIMIT`` as a positive int, or None (all files)."""
    raw = os.environ.get("ECO_TOKENS_LIMIT", "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ECO_TOKENS_LIMIT must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"ECO_TOKENS_LIMIT must be a positive integer, got {raw!r}")
    return value


def list_files(root: Path | None = None, limit: int | None = None) -> list[str]:
    """Absolute paths of the files to count, in their deterministic order."""
    root = Path(root) if root is not None else default_root()
    found: list[tuple[str, str]] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in files:
            if name.endswith(".py"):
                full = os.path.join(directory, name)
                found.append((Path(os.path.relpath(full, root)).as_posix(), full))
    found.sort()
    paths = [full for _, full in found]
    return paths[:limit] if limit is not None else paths


def count_file(path: str) -> Counter[str] | None:
    """Token counts of one file, or None when it cannot be read or tokenized."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        counts: Counter[str] = Counter()
        for tok in tokenize.tokenize(io.BytesIO(data).readline):
            if tok.type in _COUNTED:
                counts[f"{tokenize.tok_name[tok.type]} {tok.string}"] += 1
        return counts
    except (OSError, SyntaxError, tokenize.TokenError, UnicodeDecodeError, ValueError):
        return None


def count_files(paths: list[str]) -> tuple[Counter[str], int, int]:
    """(merged counts, files counted, files skipped) for a batch of files."""
    total: Counter[str] = Counter()
    ok = skipped = 0
    for path in paths:
        counts = count_file(path)
        if counts is None:
            skipped += 1
        else:
            ok += 1
            total.update(counts)
    return total, ok, skipped


def digest(counts: Counter[str] | dict[str, int]) -> str:
    """A SHA-256 over every (token, count) pair: equal digests mean equal counts."""
    h = hashlib.sha256()
    for key in sorted(counts):
        h.update(f"{key}\t{counts[key]}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def top(counts: Counter[str] | dict[str, int], n: int = TOP) -> list[list]:
    """The n most frequent tokens, ties broken by the token text."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [[k, v] for k, v in ranked[:n]]


def summarize(counts: Counter[str], files: int, skipped: int) -> dict:
    """The job's result (a JSON-able dict) from the merged counts."""
    return {
        "files": files,
        "skipped": skipped,
        "tokens": sum(counts.values()),
        "distinct": len(counts),
        "top": top(counts),
        "digest": digest(counts),
    }


def reference(root: Path | None = None, limit: int | None = None) -> dict:
    """The whole computation in this process: what the distributed run must match."""
    counts, ok, skipped = count_files(list_files(root, limit))
    return summarize(counts, ok, skipped)


def _main() -> None:
    import argparse
    import json
    import time

    parser = argparse.ArgumentParser(description="single-process reference token count")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    result = reference(Path(args.root) if args.root else None, args.limit if args.limit else default_limit())
    result["elapsed"] = round(time.perf_counter() - started, 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    _main()
