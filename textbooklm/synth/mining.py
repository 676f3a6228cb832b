"""Exercise candidates mined from real code: self-contained top-level functions with a docstring.

Why: phi-1's exercises are "signature + docstring -> body"; a real, documented function from the
filtered corpus already has that shape and a body that is right by construction (it is the code).
What it lacks is tests; corpus_exercises.py gets those by executing it. This module only reads
source (nothing runs here) and decides which functions can stand alone as an exercise.

A candidate (:class:`MinedFunction`) is a top-level ``def`` with a docstring. It is rejected, with a reason, when
it is

* ``too-short`` / ``too-long``: outside ``min_lines..max_lines`` source lines (signature to end);
* ``async``, ``decorated`` (except functools.lru_cache/cache), ``generator`` (its result is no value
  to assert on), ``no-parameters`` (one call, one test), ``no-body`` (docstring only, or the body
  starts on the docstring's line);
* ``io``: it uses open/print/input/eval/exec/..., or a module that touches the world (os, sys,
  time, socket, subprocess, pathlib, threading, logging, ...); of os, only the string functions of
  ``os.path`` that read no file system (join, split, splitext, basename, dirname, normpath, ...)
  and the separator constants are allowed, of sys only constants (maxsize, byteorder, ...);
* ``randomness``: random, secrets, uuid, hash() or id() (values change between processes);
* ``non-stdlib-import``: it needs a module outside the standard library;
* ``uses-globals``: it reads a module-level name that cannot be carried along, or declares
  ``global``/``nonlocal``.

What can be carried along into the exercise's prompt (HumanEval's prompts carry imports and helpers
too): the file's imports of standard-library modules the function uses, module constants assigned
once to a literal (``_MAX = 10``), and up to ``MAX_HELPERS`` other top-level functions of the file
that are themselves self-contained by these rules.
"""

from __future__ import annotations

import ast
import builtins
import sys
from dataclasses import dataclass, field
from typing import Any

BUILTINS = frozenset(dir(builtins))
IO_BUILTINS = frozenset({"open", "print", "input", "exec", "eval", "compile", "__import__", "breakpoint", "exit",
                         "quit", "globals", "locals", "vars", "help", "delattr", "setattr"})
RANDOM_BUILTINS = frozenset({"hash", "id"})
IO_MODULES = frozenset({
    "os", "sys", "io", "time", "socket", "subprocess", "shutil", "pathlib", "tempfile", "glob", "urllib", "http",
    "ftplib", "smtplib", "ssl", "select", "selectors", "signal", "threading", "_thread", "multiprocessing",
    "concurrent", "asyncio", "logging", "sqlite3", "webbrowser", "getpass", "platform", "ctypes", "mmap", "fcntl",
    "pty", "tty", "termios", "curses", "tkinter", "turtle", "importlib", "pkgutil", "site", "atexit", "gc",
    "resource", "pwd", "grp", "zipfile", "tarfile", "gzip", "bz2", "lzma", "shelve", "dbm", "pickle", "marshal",
    "wave", "pdb", "trace", "locale", "xmlrpc", "socketserver", "imaplib", "poplib", "queue", "sched",
    "faulthandler", "tracemalloc", "inspect", "linecache", "tokenize", "runpy", "code", "codeop", "filecmp",
    "fileinput", "netrc", "mailbox", "zipimport", "ensurepip", "venv", "idlelib", "msvcrt", "winreg", "_winapi",
    "nt", "posix", "builtins", "unittest", "doctest", "test", "distutils", "sysconfig", "readline", "rlcompleter",
    "syslog", "cProfile", "profile", "timeit", "zoneinfo", "mimetypes", "smtpd", "asyncore", "asynchat",
    "telnetlib", "nntplib", "crypt", "spwd", "nis", "ossaudiodev", "audioop", "sndhdr", "imghdr", "contextvars",
})
RANDOM_MODULES = frozenset({"random", "secrets", "uuid"})
STDLIB = frozenset(sys.stdlib_module_names)
MAX_HELPERS = 6
# Decorators that leave a function's results alone (memoising): kept with the function.
PURE_DECORATORS = frozenset({"functools.lru_cache", "functools.cache", "lru_cache", "cache"})

# Rejection reasons of a candidate (the `reason` column of the exercises' rejected dataset).
TOO_SHORT, TOO_LONG, ASYNC, DECORATED, GENERATOR = "too-short", "too-long", "async", "decorated", "generator"
NO_PARAMETERS, NO_BODY, IO, RANDOMNESS = "no-parameters", "no-body", "io", "randomness"
NON_STDLIB, USES_GLOBALS = "non-stdlib-import", "uses-globals"


@dataclass
class MinedFunction:
    """A function that can stand alone: the exercise's prompt and completion, and what was carried."""

    path: str
    file_id: str
    name: str
    lineno: int
    prompt: str  # carried imports, constants and helpers, then the signature and docstring
    completion: str  # the body after the docstring
    carried: list[str] = field(default_factory=list)
    func: ast.FunctionDef | None = None

    @property
    def code(self) -> str:
        return self.prompt + self.completion

    def provenance(self) -> dict[str, Any]:
        return {"source_path": self.path, "source_id": self.file_id, "function": self.name, "lineno": self.lineno,
                "carried": self.carried}


@dataclass
class Rejection:
    """A documented top-level function that cannot be an exercise, and why."""

    path: str
    file_id: str
    name: str
    lineno: int
    source: str
    reason: str
    detail: str


@dataclass
class _Module:
    imports: dict[str, ast.stmt]  # bound name -> the import statement binding it
    import_module: dict[str, str]  # bound name -> top-level module name
    values: dict[str, ast.stmt]  # name -> its one module-level assignment (short)
    classes: dict[str, ast.ClassDef]  # trivial classes (docstring/pass/literal attributes only)
    functions: dict[str, ast.FunctionDef]
    other: set[str]  # every other module-level binding (rebound names, complex classes, loop targets)


def _trivial_class(node: ast.ClassDef) -> bool:
    """An exception-like class: plain bases, no decorators, a body of docstring/pass/literal attributes."""
    return not node.decorator_list and not node.keywords and all(isinstance(b, ast.Name) for b in node.bases) and all(
        isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        or (isinstance(s, ast.Assign) and is_literal(s.value)) for s in node.body)


def _module_names(tree: ast.Module) -> _Module:
    m = _Module({}, {}, {}, {}, {}, set())
    bound: dict[str, int] = {}

    def bind(name: str) -> None:
        bound[name] = bound.get(name, 0) + 1

    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                name = a.asname or a.name.split(".")[0]
                m.imports[name] = ast.Import(names=[a])
                m.import_module[name] = a.name.split(".")[0]
                bind(name)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                name = a.asname or a.name
                m.imports[name] = ast.ImportFrom(module=node.module, names=[a], level=node.level)
                m.import_module[name] = "." if node.level else (node.module or "").split(".")[0]
                bind(name)
        elif isinstance(node, ast.FunctionDef):
            m.functions[node.name] = node
            bind(node.name)
        elif isinstance(node, ast.ClassDef):
            if _trivial_class(node):
                m.classes[node.name] = node
            bind(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        bind(n.id)
            if (len(targets) == 1 and isinstance(targets[0], ast.Name) and node.value is not None
                    and (node.end_lineno or 0) - node.lineno < 8):
                m.values[targets[0].id] = node
        else:
            for n in ast.walk(node):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    bind(n.id)
                    bind(n.id)  # bound under a condition or in a loop: never carried
                elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    bind(n.name)
                    bind(n.name)
    for name, count in bound.items():
        if count > 1:
            for table in (m.values, m.classes, m.functions, m.imports):
                table.pop(name, None)  # type: ignore[attr-defined]
            m.other.add(name)
    return m


def is_literal(node: ast.expr) -> bool:
    """Whether an expression is a Python literal (ast.literal_eval accepts it)."""
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def free_names(func: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names a function reads that it does not bind itself (parameters, assignments, imports, defs)."""
    bound: set[str] = {func.name}
    loads: set[str] = set()
    for n in ast.walk(func):
        if isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, ast.Name):
            (loads if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not func:
            bound.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bound |= {a.asname or a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            bound.add(n.name)
    # Decorators, defaults and annotations are evaluated at module level: they count as reads too.
    return loads - bound


def _local_imports(func: ast.AST) -> list[str]:
    mods = []
    for n in ast.walk(func):
        if isinstance(n, ast.Import):
            mods += [a.name.split(".")[0] for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            mods.append("." if n.level else (n.module or "").split(".")[0])
    return mods


def _module_problem(mod: str) -> tuple[str, str] | None:
    if mod == ".":
        return USES_GLOBALS, "a relative import (the rest of its package)"
    if mod in RANDOM_MODULES:
        return RANDOMNESS, f"uses {mod}"
    if mod in IO_MODULES:
        return IO, f"uses {mod}"
    if mod not in STDLIB:
        return NON_STDLIB, f"needs {mod}"
    return None


def _own_problem(func: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, str] | None:
    """What rules a function out by itself (before looking at the names it reads from its module)."""
    if isinstance(func, ast.AsyncFunctionDef):
        return ASYNC, "an async function"
    odd = [d for d in func.decorator_list if ast.unparse(d).split("(")[0] not in PURE_DECORATORS]
    if odd:
        return DECORATED, "decorated: " + ", ".join(ast.unparse(d) for d in odd)[:100]
    for n in ast.walk(func):
        if isinstance(n, (ast.Yield, ast.YieldFrom)):
            return GENERATOR, "a generator (yields)"
        if isinstance(n, (ast.Global, ast.Nonlocal)):
            return USES_GLOBALS, f"declares {type(n).__name__.lower()} {', '.join(n.names)}"
        if isinstance(n, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return ASYNC, "awaits"
    for mod in _local_imports(func):
        problem = _module_problem(mod)
        if problem:
            return problem
    return None


def _resolve(node: ast.AST, m: _Module, carried: list[str] | None = None,
             helpers: int = 0) -> tuple[tuple[str, str] | None, list[str]]:
    """(problem or None, the module-level names to carry along for ``node``, dependencies included)."""
    carried = carried if carried is not None else []
    names = free_names(node) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else _reads(node)
    for name in sorted(names & (IO_BUILTINS | RANDOM_BUILTINS)):
        if name not in m.imports and name not in m.functions and name not in m.values:
            return (IO if name in IO_BUILTINS else RANDOMNESS, f"calls {name}()"), carried
    for name in sorted(names):
        if name in carried:
            continue
        if name in m.imports:
            problem = _module_problem(m.import_module[name])
            if problem and not (problem[0] == IO and _pure_os_use(name, m.imports[name], node)):
                return problem, carried
            carried.append(name)
            continue
        dep: ast.AST | None = None
        if name in m.values:
            dep = m.values[name]
        elif name in m.classes:
            dep = m.classes[name]
        elif name in m.functions:
            helper = m.functions[name]
            if helpers >= MAX_HELPERS:
                return (USES_GLOBALS, f"uses {name}(), one helper too many to carry"), carried
            own = _own_problem(helper)
            if own:
                return (own[0], f"helper {name}(): {own[1]}"), carried
            helpers += 1
            dep = helper
        elif name in BUILTINS:
            continue
        else:
            return (USES_GLOBALS, f"reads the module-level name {name!r}"), carried
        carried.append(name)
        problem, carried = _resolve(dep, m, carried, helpers)
        if problem:
            return (problem[0], f"{name}: {problem[1]}"), carried
    return None, carried


PURE_OS_PATH = frozenset({"join", "split", "splitext", "basename", "dirname", "normpath", "normcase",
                          "commonprefix", "isabs", "splitdrive", "commonpath"})
PURE_SYS = frozenset({"maxsize", "maxunicode", "byteorder", "float_info", "int_info", "version_info", "hexversion"})
PURE_OS = frozenset({"sep", "altsep", "extsep", "pathsep", "curdir", "pardir", "linesep", "fspath", "path"})


def _pure_os_use(name: str, imp: ast.stmt, node: ast.AST) -> bool:
    """Whether ``node`` uses the os binding ``name`` only for string functions of ``os.path`` that touch
    no file system (join, splitext, basename, ...) or os's separator constants."""
    if isinstance(imp, ast.ImportFrom):
        mod, attr = imp.module or "", imp.names[0].name
        return (mod in ("os.path", "posixpath") and attr in PURE_OS_PATH) or (mod == "os" and attr in PURE_OS - {
            "path"})
    if isinstance(imp, ast.Import) and imp.names[0].name == "sys":
        return _only_attributes(name, node, PURE_SYS)
    if not isinstance(imp, ast.Import) or imp.names[0].name not in ("os", "os.path", "posixpath"):
        return False
    parents: dict[int, ast.AST] = {}
    for parent in ast.walk(node):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
    uses = [n for n in ast.walk(node) if isinstance(n, ast.Name) and n.id == name]
    for use in uses:
        first = parents.get(id(use))
        if not isinstance(first, ast.Attribute):
            return False
        if imp.names[0].name == "posixpath" or (imp.names[0].name == "os" and first.attr == "path"):
            second = first if imp.names[0].name == "posixpath" else parents.get(id(first))
            if not (isinstance(second, ast.Attribute) and second.attr in PURE_OS_PATH):
                return False
        elif first.attr not in PURE_OS - {"path"}:
            return False
    return bool(uses)


def _only_attributes(name: str, node: ast.AST, allowed: frozenset[str]) -> bool:
    """Every use of ``name`` in ``node`` reads one of ``allowed`` attributes of it."""
    attrs = {id(n.value): n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    uses = [n for n in ast.walk(node) if isinstance(n, ast.Name) and n.id == name]
    return bool(uses) and all(attrs.get(id(u)) in allowed for u in uses)


def _reads(node: ast.AST) -> set[str]:
    """Names a module-level assignment or class reads (its own targets excluded)."""
    if isinstance(node, ast.ClassDef):
        return {n.id for b in node.bases for n in ast.walk(b) if isinstance(n, ast.Name)}
    value = getattr(node, "value", None)
    ann = getattr(node, "annotation", None)
    loads = {n.id for part in (value, ann) if part is not None for n in ast.walk(part)
             if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    inner = {n.id for part in (value,) if part is not None for n in ast.walk(part)
             if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    inner |= {a.arg for part in (value,) if part is not None for a in ast.walk(part) if isinstance(a, ast.arg)}
    return loads - inner


def _segment(lines: list[str], node: ast.stmt) -> str:
    return "\n".join(lines[node.lineno - 1: node.end_lineno])


def mine_functions(text: str, path: str = "", file_id: str = "", *, min_lines: int = 3,
                   max_lines: int = 60) -> tuple[list[MinedFunction], list[Rejection], dict[str, int]]:
    """Candidates and rejections among a file's top-level documented functions, and counts.

    A file that does not parse gives nothing (counted as ``unparsable-files``); functions without a
    docstring and methods are not candidates at all (counted, not rejected).
    """
    counts = {"files": 1, "unparsable-files": 0, "functions": 0, "documented": 0}
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        counts["unparsable-files"] = 1
        return [], [], counts
    lines = text.splitlines()
    m = _module_names(tree)
    kept: list[MinedFunction] = []
    rejected: list[Rejection] = []
    for func in tree.body:
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        counts["functions"] += 1
        if ast.get_docstring(func) is None:
            continue
        counts["documented"] += 1
        start = func.decorator_list[0].lineno if func.decorator_list else func.lineno
        source = "\n".join(lines[start - 1: func.end_lineno]) + "\n"

        def reject(reason: str, detail: str, func: Any = func, source: str = source) -> None:
            rejected.append(Rejection(path, file_id, func.name, func.lineno, source, reason, detail))

        n_lines = (func.end_lineno or func.lineno) - start + 1
        if n_lines < min_lines:
            reject(TOO_SHORT, f"{n_lines} lines, at least {min_lines}")
            continue
        if n_lines > max_lines:
            reject(TOO_LONG, f"{n_lines} lines, at most {max_lines}")
            continue
        problem = _own_problem(func)
        if problem:
            reject(*problem)
            continue
        assert isinstance(func, ast.FunctionDef)
        a = func.args
        if not (a.posonlyargs or a.args or a.kwonlyargs):
            reject(NO_PARAMETERS, "takes no parameters (one call, one test)")
            continue
        body = func.body
        rest = body[1:]
        if not rest or all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                           for s in rest):
            reject(NO_BODY, "a docstring and no body")
            continue
        if body[0].end_lineno == rest[0].lineno:
            reject(NO_BODY, "the body starts on the docstring's last line")
            continue
        problem, carried = _resolve(func, m)
        if problem:
            reject(*problem)
            continue
        head: list[str] = []
        imports = [ast.unparse(m.imports[n]) for n in carried if n in m.imports]
        if imports:
            head.append("\n".join(sorted(set(imports))))
        # Carried definitions in source order: the order the module itself ran them in.
        defs = sorted((d for n in carried if n not in m.imports for d in [m.values.get(n) or m.classes.get(n)
                       or m.functions[n]]), key=lambda d: d.lineno)
        values = [_segment(lines, d) for d in defs if isinstance(d, (ast.Assign, ast.AnnAssign))]
        if values and all(isinstance(d, (ast.Assign, ast.AnnAssign)) for d in defs):
            head.append("\n".join(values))
        else:
            head += [_segment(lines, d) for d in defs]
        doc_end = body[0].end_lineno or func.lineno
        signature_and_doc = "\n".join(lines[start - 1: doc_end]) + "\n"
        completion = "\n".join(lines[doc_end: func.end_lineno]).rstrip() + "\n"
        prompt = ("\n\n\n".join(head) + "\n\n\n" if head else "") + signature_and_doc
        kept.append(MinedFunction(path, file_id, func.name, func.lineno, prompt, completion,
                              carried=list(carried), func=func))
    return kept, rejected, counts
