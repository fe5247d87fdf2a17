"""Loading imported files and resolving names to declarations.

Naming rules (also in docs/language.md):

* Project files (the root file and every file it imports, directly or not)
  share one flat namespace per kind (clusters, messages, channels,
  ecosystems); declaring a name twice is an error even across files.  Plan
  names of project declarations are unqualified (``jobs``).
* In a file, an unqualified name refers to a declaration of that file or of a
  project file it imports *directly*.  ``alias.name`` refers to a declaration
  of the file imported ``as alias``.
* Standard modules live in their own namespace: whatever ``std.channels``
  declares is written ``std.<name>`` (``std.control``) and is named that way in
  the plan.  Only standard declarations that are referenced enter the plan.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eco.language import ast
from eco.language.diagnostics import Diagnostic, DiagnosticBag, Edit, Fix, Label, error, suggest, warning
from eco.language.spans import SourceFile

from . import codes

KINDS = ("cluster", "message", "channel", "ecosystem")
_UNKNOWN_CODE = {
    "message": codes.UNKNOWN_MESSAGE,
    "channel": codes.UNKNOWN_CHANNEL,
    "cluster": codes.UNKNOWN_CLUSTER,
}  # ecosystems are never referenced by name, so `lookup` is never asked for one
_DECL_KIND = {
    ast.ClusterDecl: "cluster",
    ast.MessageDecl: "message",
    ast.ChannelDecl: "channel",
    ast.EcosystemDecl: "ecosystem",
}


@dataclass(eq=False)
class Symbol:
    kind: str
    name: str  # as declared
    qualified: str  # the plan name: "jobs" or "std.control"
    decl: ast.Node
    module: LoadedModule
    used: bool = False

    @property
    def name_span(self):
        return self.decl.name.span


@dataclass(eq=False)
class Import:
    decl: ast.ImportDecl
    module: LoadedModule | None
    alias: str | None
    used: bool = False


@dataclass(eq=False)
class LoadedModule:
    key: str  # identity: "std:channels" or the real path
    name: str  # display name: "std.channels" or the path as the user sees it
    source: SourceFile
    tree: ast.Module
    std_name: str | None = None
    imports: list[Import] = field(default_factory=list)
    own: dict[str, dict[str, Symbol]] = field(default_factory=lambda: {k: {} for k in KINDS})

    @property
    def is_std(self) -> bool:
        return self.std_name is not None

    @property
    def directory(self) -> Path:
        path = self.source.path
        if path.startswith("<"):
            return Path.cwd()
        return Path(path).parent


Parse = Callable[[SourceFile], tuple[ast.Module | None, list[Diagnostic]]]
Read = Callable[[str], tuple[SourceFile | None, list[Diagnostic]]]


class Program:
    """Every module of one compilation, and the symbol tables over them."""

    def __init__(self, bag: DiagnosticBag, parse: Parse, read: Read, search_paths: Sequence[Path] = ()) -> None:
        self.bag = bag
        self._parse = parse
        self._read = read
        self.search_paths = [Path(p) for p in search_paths]
        self.modules: list[LoadedModule] = []  # root first, then in import order
        self.sources: dict[str, SourceFile] = {}
        self._by_key: dict[str, LoadedModule] = {}
        self.project: dict[str, dict[str, Symbol]] = {k: {} for k in KINDS}
        self.std: dict[str, dict[str, Symbol]] = {k: {} for k in KINDS}
        # Per (module, kind, extra): the names visible there and the "did you mean" guess
        # already computed for each unknown name.  Without them every unknown reference
        # rebuilt and searched the whole candidate list, quadratic in a large file with
        # many bad references.
        self._visible_cache: dict[tuple, tuple[list[str], dict[str, str | None]]] = {}
        self._suggest_budget = _SUGGEST_BUDGET

    @property
    def root(self) -> LoadedModule | None:
        return self.modules[0] if self.modules else None

    # ------------------------------------------------------------------ loading

    def load(self, source: SourceFile, key: str) -> LoadedModule | None:
        """Parse the root file and, transitively, everything it imports."""
        root = self._add(source, key, None)
        if root is None:
            return None
        # Iterative depth-first walk so a long import chain cannot overflow the stack.
        state: dict[str, int] = {root.key: 1}  # 1 = on the current path, 2 = done
        stack: list[tuple[LoadedModule, int]] = [(root, 0)]
        while stack:
            module, index = stack[-1]
            decls = [d for d in module.tree.decls if isinstance(d, ast.ImportDecl)]
            if index >= len(decls):
                state[module.key] = 2
                stack.pop()
                continue
            stack[-1] = (module, index + 1)
            target = self._import(module, decls[index])
            if target is None:
                continue
            seen = state.get(target.key)
            if seen == 1:
                self._report_cycle(stack, target, decls[index])
            elif seen is None:
                state[target.key] = 1
                stack.append((target, 0))
        self._index()
        return root

    def _add(self, source: SourceFile, key: str, std_name: str | None) -> LoadedModule | None:
        self.sources[source.path] = source
        tree, diags = self._parse(source)
        self.bag.extend(diags)
        if tree is None:
            return None
        module = LoadedModule(key, f"std.{std_name}" if std_name else source.path, source, tree, std_name)
        self.modules.append(module)
        self._by_key[key] = module
        return module

    def _import(self, importer: LoadedModule, decl: ast.ImportDecl) -> LoadedModule | None:
        target = self._locate(importer, decl)
        alias = decl.alias.name if decl.alias is not None else None
        for other in importer.imports:
            if target is not None and other.module is target:
                self.bag.add(warning(
                    codes.DUPLICATE_IMPORT, f"`{_target_text(decl)}` is imported more than once", decl.span,
                    label="imported again here", labels=[Label(other.decl.span, "first imported here")],
                    fix=Fix("remove the repeated import", (Edit(decl.span, ""),)),
                ))
                return None
            if alias is not None and other.alias == alias:
                self.bag.add(error(
                    codes.DUPLICATE_ALIAS, f"the alias `{alias}` is used by two imports", decl.alias.span,
                    label="used again here", labels=[Label(other.decl.alias.span, "first used here")],
                    help="give each import its own alias",
                ))
                alias = None
        importer.imports.append(Import(decl, target, alias))
        return target

    def _locate(self, importer: LoadedModule, decl: ast.ImportDecl) -> LoadedModule | None:
        target = decl.target
        if isinstance(target, ast.Name) and target.parts[0] == "std":
            return self._load_std(target)
        if importer.is_std:
            self.bag.add(error(codes.MODULE_NOT_FOUND, "standard modules can only import standard modules",
                               decl.span))
            return None
        if isinstance(target, ast.Name):
            relative = os.path.join(*target.parts) + ".eco"
        else:
            relative = target.value
        if not relative:
            self.bag.add(error(codes.MODULE_NOT_FOUND, "empty import path", target.span, label="no file named"))
            return None
        bases = [importer.directory, *self.search_paths]
        tried: list[Path] = []
        for base in bases:
            candidate = base / relative
            tried.append(candidate)
            if candidate.is_file():
                return self._load_file(candidate, decl)
            if candidate.exists():
                self.bag.add(error(codes.IMPORT_UNREADABLE, f"cannot import `{relative}`: it is a directory",
                                   target.span, label="not a file"))
                return None
        diag = error(
            codes.MODULE_NOT_FOUND, f"cannot find module `{_target_text(decl)}`", target.span,
            label="no such file", notes=["looked for: " + ", ".join(str(p) for p in tried)],
        )
        siblings = _eco_files(importer.directory)
        guess = suggest(relative, siblings)
        if guess:
            diag.help = f"did you mean `\"{guess}\"`?"
        elif isinstance(target, ast.Name) and len(target.parts) == 1 and target.parts[0] in _std_names():
            diag.help = f"standard modules are imported as `std.{target.parts[0]}`"
            diag.fix = Fix(f"import `std.{target.parts[0]}`", (Edit(target.span, f"std.{target.parts[0]}"),))
        self.bag.add(diag)
        return None

    def _load_std(self, target: ast.Name) -> LoadedModule | None:
        from eco.stdlib import std_module_file

        name = ".".join(target.parts[1:])
        key = f"std:{name}"
        if key in self._by_key:
            return self._by_key[key]
        file = std_module_file(name)
        if file is None:
            names = _std_names()
            guess = suggest(name, names) if name else None
            self.bag.add(error(
                codes.MODULE_NOT_FOUND, f"there is no standard module `{target.dotted}`", target.span,
                label="unknown standard module",
                help=f"did you mean `std.{guess}`?" if guess else None,
                fix=Fix(f"import `std.{guess}`", (Edit(target.span, f"std.{guess}"),)) if guess else None,
                notes=["standard modules: " + ", ".join(f"std.{n}" for n in names)],
            ))
            return None
        text = file.read_text(encoding="utf-8")
        return self._add(SourceFile(str(file), text), key, name)

    def _load_file(self, path: Path, decl: ast.ImportDecl) -> LoadedModule | None:
        key = os.path.realpath(path)
        if key in self._by_key:
            return self._by_key[key]
        shown = os.path.normpath(str(path))
        try:
            source, diags = self._read(shown)
        except Exception as exc:  # SourceIOError and friends: a diagnostic at the import
            self.bag.add(error(codes.IMPORT_UNREADABLE, f"cannot read `{shown}`: {_reason(exc)}", decl.target.span,
                               label="imported here"))
            return None
        self.bag.extend(diags)
        if source is None:  # binary, invalid UTF-8 or too large: the diagnostics say where
            for d in diags:
                if d.span is not None:
                    self.sources.setdefault(d.span.source.path, d.span.source)
            return None
        return self._add(source, key, None)

    def _report_cycle(self, stack, target: LoadedModule, closing: ast.ImportDecl) -> None:
        start = next(i for i, (m, _) in enumerate(stack) if m is target)
        chain = [m for m, _ in stack[start:]]
        names = " → ".join(m.name for m in chain + [target])
        labels = []
        for imp in chain[-1].imports:
            if imp.decl is closing:
                imp.used = True  # already reported as a cycle; "unused" would be noise
        for a, b in zip(chain, chain[1:]):
            for imp in a.imports:
                if imp.module is b:
                    labels.append(Label(imp.decl.span, f"`{a.name}` imports `{b.name}`"))
                    break
        self.bag.add(error(
            codes.IMPORT_CYCLE, f"import cycle: {names}", closing.span,
            label="this import closes the cycle", labels=labels,
            help="move the shared declarations into a separate file that both import",
        ))

    # ----------------------------------------------------------------- indexing

    def _index(self) -> None:
        for module in self.modules:
            table = self.std if module.is_std else self.project
            for decl in module.tree.decls:
                kind = _DECL_KIND.get(type(decl))
                if kind is None:
                    continue
                name = decl.name.name
                qualified = f"std.{name}" if module.is_std else name
                symbol = Symbol(kind, name, qualified, decl, module)
                first = table[kind].get(name)
                if first is not None:
                    self.bag.add(error(
                        codes.DUPLICATE_DECL, f"the {kind} `{name}` is declared more than once", decl.name.span,
                        label="declared again here", labels=[Label(first.name_span, "first declared here")],
                        help=f"rename one of them; {kind} names must be unique across all imported files",
                    ))
                    continue
                table[kind][name] = symbol
                module.own[kind][name] = symbol

    def symbols(self, kind: str) -> list[Symbol]:
        """Project declarations of ``kind`` in file order."""
        return list(self.project[kind].values())

    def release(self) -> None:
        """Drop the modules' symbol tables once all checks are done (no lookups after this).

        Each symbol points back to its module, a reference cycle that would otherwise keep
        every module's syntax tree alive as garbage until a full collection walks it.
        """
        for module in self.modules:
            module.own = {}

    # ---------------------------------------------------------------- resolving

    def lookup(self, module: LoadedModule, kind: str, ref: ast.Name | ast.Ident,
               extra: Sequence[str] = ()) -> Symbol | None:
        """Resolve a reference written in ``module``; reports and returns None when it does not resolve."""
        parts = ref.parts if isinstance(ref, ast.Name) else (ref.name,)
        if len(parts) == 1:
            return self._unqualified(module, kind, ref, parts[0], extra)
        if len(parts) == 2:
            return self._qualified(module, kind, ref, parts[0], parts[1], extra)
        self._unknown(module, kind, ref, ".".join(parts), extra,
                      hint="names from other modules are written `std.<name>` or `<alias>.<name>`")
        return None

    def _unqualified(self, module, kind, ref, name, extra):
        symbol = module.own[kind].get(name)
        if symbol is None:
            for imp in module.imports:
                if imp.module is not None and not imp.module.is_std:
                    symbol = imp.module.own[kind].get(name)
                    if symbol is not None:
                        imp.used = True
                        break
        if symbol is not None:
            symbol.used = True
            return symbol
        elsewhere = self.project[kind].get(name)
        if elsewhere is not None and module.is_std is False:
            rel = _relative_import(module, elsewhere.module)
            self.bag.add(error(
                codes.NOT_IMPORTED_HERE, f"the {kind} `{name}` is declared in `{elsewhere.module.name}`, "
                "which this file does not import", ref.span, label="not visible here",
                labels=[Label(elsewhere.name_span, "declared here")],
                help=f"add `import \"{rel}\"` at the top of this file",
                fix=Fix(f"import `{rel}`", (Edit(module.source.span(0, 0), f'import "{rel}"\n'),)),
            ))
            elsewhere.used = True
            return elsewhere
        std_symbol = self.std[kind].get(name)
        hint = f"did you mean `std.{name}`?" if std_symbol is not None else None
        self._unknown(module, kind, ref, name, extra, hint=hint,
                      replacement=f"std.{name}" if std_symbol is not None else None)
        return None

    def _qualified(self, module, kind, ref, qualifier, name, extra):
        for imp in module.imports:
            if imp.alias == qualifier and imp.module is not None:
                symbol = imp.module.own[kind].get(name)
                if symbol is None:
                    self._unknown(module, kind, ref, f"{qualifier}.{name}", extra,
                                  candidates=[f"{qualifier}.{n}" for n in imp.module.own[kind]])
                    return None
                imp.used = symbol.used = True
                return symbol
        if qualifier != "std":
            aliases = [i.alias for i in module.imports if i.alias] + ["std"]
            guess = suggest(qualifier, aliases)
            self.bag.add(error(
                codes.UNKNOWN_QUALIFIER, f"`{qualifier}` is not an import alias of this file", ref.span,
                label=f"unknown qualifier `{qualifier}`",
                help=f"did you mean `{guess}.{name}`?" if guess else
                "write `std.<name>` for standard declarations, or import a file `as " + qualifier + "`",
                fix=Fix(f"use `{guess}.{name}`", (Edit(ref.span, f"{guess}.{name}"),)) if guess else None,
            ))
            return None
        for imp in module.imports:
            if imp.module is not None and imp.module.is_std:
                symbol = imp.module.own[kind].get(name)
                if symbol is not None:
                    imp.used = symbol.used = True
                    return symbol
        symbol = self.std[kind].get(name)
        if symbol is None:
            symbol = self._load_std_symbol(kind, name)
        if symbol is not None:
            std_module = symbol.module.name
            self.bag.add(error(
                codes.STD_NOT_IMPORTED, f"`std.{name}` is declared in `{std_module}`, which this file does not import",
                ref.span, label="not imported", help=f"add `import {std_module}` at the top of this file",
                fix=Fix(f"import `{std_module}`", (Edit(module.source.span(0, 0), f"import {std_module}\n"),)),
            ))
            symbol.used = True
            return symbol
        self._unknown(module, kind, ref, f"std.{name}", extra, candidates=[f"std.{n}" for n in self.std[kind]])
        return None

    def _load_std_symbol(self, kind: str, name: str) -> Symbol | None:
        """Find ``std.<name>`` in a standard module nobody imported, to name it in the error."""
        for std_name in _std_names():
            if f"std:{std_name}" in self._by_key:
                continue
            target = ast.Name(self.modules[0].tree.span, ("std", *std_name.split(".")))
            module = self._load_std(target)
            if module is None:
                continue
            for decl in module.tree.decls:
                if _DECL_KIND.get(type(decl)) is not None and decl.name.name not in self.std[_DECL_KIND[type(decl)]]:
                    k = _DECL_KIND[type(decl)]
                    sym = Symbol(k, decl.name.name, f"std.{decl.name.name}", decl, module)
                    self.std[k][decl.name.name] = sym
                    module.own[k][decl.name.name] = sym
        return self.std[kind].get(name)

    def _unknown(self, module, kind, ref, shown, extra, *, hint=None, candidates=None, replacement=None):
        if candidates is None:
            candidates, guesses = self._visible(module, kind, extra)
        else:
            candidates, guesses = list(candidates) + list(extra), {}
        if replacement:
            guess = replacement
        elif shown in guesses:
            guess = guesses[shown]
        else:
            guess = guesses[shown] = self._suggest(shown, candidates)
        if guess:
            self._mark_guess_used(module, kind, guess)
        diag = error(
            _UNKNOWN_CODE[kind], f"unknown {kind} `{shown}`", ref.span, label=f"no {kind} named `{shown}`",
            help=hint or (f"did you mean `{guess}`?" if guess else None),
            fix=Fix(f"use `{guess}`", (Edit(ref.span, guess),)) if guess else None,
        )
        if not guess and not hint:
            known = guesses.get(_KNOWN_NOTE)
            if known is None:
                visible = sorted(set(candidates))
                if visible:
                    shown_names = ", ".join(f"`{n}`" for n in visible[:8]) + (", ..." if len(visible) > 8 else "")
                    known = f"known {kind}s here: {shown_names}"
                else:
                    known = f"no {kind} is declared or imported in this file"
                guesses[_KNOWN_NOTE] = known
            diag.notes.append(known)
        self.bag.add(diag)


    def _suggest(self, shown: str, candidates: list[str]) -> str | None:
        """``suggest`` within a per-compile budget of compared names.

        A fuzzy match costs time per candidate, so a huge file with thousands of
        distinct bad references would take quadratic time.  Once the budget is
        spent, only case-insensitive exact matches are suggested; files of a
        normal size never get near it.
        """
        self._suggest_budget -= len(candidates)
        if self._suggest_budget >= 0:
            return suggest(shown, candidates)
        lowered = shown.lower()
        return next((c for c in candidates if c != shown and c.lower() == lowered), None)

    def _visible(self, module, kind, extra) -> tuple[list[str], dict[str, str | None]]:
        """The names of ``kind`` visible in ``module`` (plus ``extra``), computed once."""
        key = (id(module), kind, tuple(extra))
        cached = self._visible_cache.get(key)
        if cached is None:
            candidates = list(module.own[kind])
            for imp in module.imports:
                if imp.module is not None:
                    prefix = "std." if imp.module.is_std else (f"{imp.alias}." if imp.alias else "")
                    candidates.extend(prefix + n for n in imp.module.own[kind])
                    if imp.alias and not imp.module.is_std:
                        candidates.extend(imp.module.own[kind])
            candidates.extend(extra)
            cached = self._visible_cache[key] = (candidates, {})
        return cached

    def _mark_guess_used(self, module: LoadedModule, kind: str, guess: str) -> None:
        """A misspelt reference most likely meant ``guess``: do not also call that declaration unused."""
        name = guess.rsplit(".", 1)[-1]
        for imp in module.imports:
            if imp.module is not None and name in imp.module.own[kind]:
                imp.used = True
        symbol = self.std[kind].get(name) if guess.startswith("std.") else self.project[kind].get(name)
        if symbol is not None:
            symbol.used = True


_KNOWN_NOTE = "\0known"  # key of the cached "known names" note among the cached guesses (not a name)

_SUGGEST_BUDGET = 50_000
"""How many candidate names "did you mean" may compare in one compile (see ``Program._suggest``)."""


def _target_text(decl: ast.ImportDecl) -> str:
    t = decl.target
    return t.dotted if isinstance(t, ast.Name) else t.value


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _eco_files(directory: Path) -> list[str]:
    try:
        return sorted(p.name for p in directory.iterdir() if p.suffix == ".eco")[:200]
    except OSError:
        return []


_STD_NAMES: list[str] | None = None


def _std_names() -> list[str]:
    global _STD_NAMES
    if _STD_NAMES is None:
        from eco.stdlib import std_module_names

        _STD_NAMES = std_module_names()
    return _STD_NAMES


def _relative_import(importer: LoadedModule, target: LoadedModule) -> str:
    try:
        return os.path.relpath(target.source.path, importer.directory).replace(os.sep, "/")
    except ValueError:
        return target.source.path
