"""The two processes of one program run: the program's, and the test's that judges it.

Both are forked by the worker's pristine fork server (forkserver.py) and read their own request
from a fresh pipe, so neither holds anything of an earlier program. Each confines itself in order:
1. new session (so the worker can kill the whole process group), stdin from /dev/null,
   stdout/stderr into pipes the worker drains and caps, every other fd closed;
2. resource limits (address space, CPU, file size, no core dumps; processes by RLIMIT_NPROC only
   where the worker has no pids cgroup);
3. the environment from an allowlist (environment.py; never the parent's), then drop to an
   unprivileged user when running as root: the program to the worker's uid P, the test to its own
   uid T (call_proxy.py says why the test is out of the program's reach), clear every capability
   and set no_new_privs;
4. the accident guard (guard.py).

The program's process runs ``code`` and tells the test its names (call_proxy.Endpoint), then
answers the test's calls until the test closes the channel. It never sees the test.

The test's process runs ``test`` with a proxy for each of the program's names, then
``check(entry_point)``, and writes the verdict on a pipe only it holds. It stays non-dumpable (no
ptrace, no /proc/PID/mem or fd of it for anyone but root) and, as root, runs as another uid than the
program (no signal from it). If the program's process goes away first (``os._exit``, a signal, the
CPU limit) the verdict is ``program-gone`` and the worker decides from the program's exit status.
"""

from __future__ import annotations

import builtins
import importlib
import json
import linecache
import os
import random
import resource
import sys
import traceback
import types
from typing import Any

from textbooklm.sandbox.call_proxy import ChannelClosed, Endpoint, ProtocolError, describe, exception_data
from textbooklm.sandbox.environment import program_environment
from textbooklm.sandbox.namespaces import PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, drop_capabilities, prctl

MB = 1024 * 1024


def _set_limit(kind: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    try:
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):  # cannot raise above an existing hard limit: lower to it
        _, cur_hard = resource.getrlimit(kind)
        if cur_hard != resource.RLIM_INFINITY:
            resource.setrlimit(kind, (min(soft, cur_hard), cur_hard))


def _read_request(fd: int) -> dict[str, Any]:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return json.loads(b"".join(chunks))


def _confine(request: dict[str, Any], out_w: int, err_w: int, keep: list[int], uid: int | None,
             dumpable: bool) -> None:
    """Steps 1-4 of the module docstring, for either process."""
    limits = request["limits"]
    workdir = request["workdir"]
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    fds = sorted({0, 1, 2, *keep})
    for lo, hi in zip(fds, fds[1:] + [65536], strict=True):
        os.closerange(lo + 1, hi)
    os.chdir(workdir)
    env = program_environment(os.environ, workdir, limits.get("env") or {})
    os.environ.clear()  # the worker's own (already an allowlist) is replaced, not extended
    os.environ.update(env)
    import tempfile

    tempfile.tempdir = None
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    random.seed()  # as a fresh interpreter would be, not a copy of the worker's state

    _set_limit(resource.RLIMIT_AS, limits["memory_mb"] * MB)
    _set_limit(resource.RLIMIT_CPU, request["cpu_s"], request["cpu_s"] + 1)
    _set_limit(resource.RLIMIT_FSIZE, limits["max_file_mb"] * MB)
    _set_limit(resource.RLIMIT_CORE, 0)
    if request.get("rlimit_nproc", True):
        _set_limit(resource.RLIMIT_NPROC, limits["max_processes"])
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    # A uid change makes a process non-dumpable. The program is made dumpable again: its own
    # /proc/self/fd then stays its own (the guard and shutil.rmtree resolve their fds there). The test
    # stays (or becomes) non-dumpable: nothing but root may ptrace it or open its /proc/PID/mem or fds.
    prctl(PR_SET_DUMPABLE, 1 if dumpable else 0)
    drop_capabilities()  # a no-op after the uid change; root or a user-namespace owner loses them all
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # and no setuid binary gives them back
    if limits["guard"]:
        from textbooklm.sandbox import guard

        guard.install(workdir)


def _setup_failed(write_fd: int, exc: BaseException) -> None:
    message = {"status": "crashed", "error": f"sandbox setup failed: {exc!r}"}
    os.write(write_fd, ("\n" + json.dumps(message) + "\n").encode())
    os._exit(70)


def program_main(fds: list[int]) -> None:
    """The program's process (fds: request, stdout, stderr, channel in, channel out). Never returns."""
    req_r, out_w, err_w, chan_r, chan_w = fds
    exit_now = os._exit
    endpoint = Endpoint(chan_r, chan_w, full_access=True)
    try:
        request = _read_request(req_r)
        endpoint.capture_cap = request["limits"]["max_output_bytes"]
        _confine(request, out_w, err_w, [chan_r, chan_w], request.get("uid"), dumpable=True)
    except BaseException as exc:  # the harness failed: tell the test, never run the program
        try:
            endpoint.send({"x": exception_data(RuntimeError(f"sandbox setup failed: {exc!r}"))})
        finally:
            exit_now(70)
    program_globals: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    source = request["code"]
    try:
        if source:
            linecache.cache["<program>"] = (len(source), None, source.splitlines(True), "<program>")
            exec(compile(source, "<program>", "exec"), program_globals)  # noqa: S102 - we are the sandbox
        ready: dict[str, Any] = {"r": _names_of(program_globals, endpoint)}
    except BaseException as exc:
        ready = {"x": exception_data(exc)}
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    try:
        endpoint.send(ready)
        while True:
            message = endpoint.recv()
            if "op" not in message:
                break
            endpoint.serve_one(message)
    except (ChannelClosed, ProtocolError):
        pass
    exit_now(0)


def _names_of(program_globals: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    """The program's global names as the test will see them: data by value, a module by its name,
    anything else by handle."""
    names: dict[str, Any] = {}
    modules: dict[str, Any] = {}
    for name, value in list(program_globals.items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if isinstance(value, types.ModuleType):
            modules[name] = [getattr(value, "__name__", ""), endpoint.export(value)["h"]]
        else:
            names[name] = endpoint.encode(value)
    return {"d": [["names", {"d": [[k, v] for k, v in names.items()]}],
                  ["modules", {"d": [[k, {"t": v}] for k, v in modules.items()]}]]}


def _test_globals(ready: dict[str, Any], endpoint: Endpoint, entry_point: str) -> dict[str, Any]:
    """The test's namespace: the program's names (data or proxies), and the modules it imported
    (the test imports a standard or already-loaded module itself; any other stays a proxy).

    A program's name never hides one the test relies on: a name of a builtin (``abs``, ``float``,
    ``len``) stays the interpreter's (but for the entry point itself), and a standard module's name
    (``math``) is the real module, whatever the program bound to it: else ``abs = lambda x: 0`` would
    pass every ``assert abs(candidate() - ans) < 1e-4``."""
    test_globals: dict[str, Any] = {}
    for name, value in (ready.get("names") or {}).items():
        if name == entry_point or not (hasattr(builtins, name) or name in sys.stdlib_module_names):
            test_globals[name] = value
    for name, (module_name, handle) in (ready.get("modules") or {}).items():
        module_name = str(module_name)
        top = module_name.split(".")[0]
        if module_name in sys.modules or top in sys.stdlib_module_names:
            try:
                test_globals[name] = importlib.import_module(module_name)
                continue
            except Exception:
                pass
        if not (hasattr(builtins, name) or name in sys.stdlib_module_names):
            test_globals[name] = endpoint.resolve("h", int(handle))
    for name in list(test_globals):
        if name in sys.stdlib_module_names and not isinstance(test_globals[name], types.ModuleType):
            del test_globals[name]
    for name in (ready.get("names") or {}):
        if name in sys.stdlib_module_names and name not in test_globals:
            try:
                test_globals[name] = importlib.import_module(name)
            except Exception:
                pass
    test_globals.update({"__name__": "__main__", "__builtins__": builtins})
    return test_globals


def test_main(fds: list[int]) -> None:
    """The test's process (fds: request, stdout, stderr, channel in, channel out, verdict). Never returns."""
    req_r, out_w, err_w, chan_r, chan_w, res_w = fds
    write, exit_now = os.write, os._exit
    try:
        request = _read_request(req_r)
        _confine(request, out_w, err_w, [chan_r, chan_w, res_w], request.get("uid"), dumpable=False)
    except BaseException as exc:
        _setup_failed(res_w, exc)
    endpoint = Endpoint(chan_r, chan_w, full_access=False)
    status, error, tb_text = "passed", "", ""
    try:
        try:
            ready = endpoint._until_reply()  # the program ran its code: its names, or its exception
        except ChannelClosed as exc:
            raise _ProgramGone(str(exc)) from None
        if "x" in ready:
            from textbooklm.sandbox.call_proxy import rebuild_exception

            raise rebuild_exception(ready["x"])
        test_globals = _test_globals(ready.get("_decoded") or {}, endpoint, request["entry_point"])
        source = request["test"]
        if source:
            linecache.cache["<test>"] = (len(source), None, source.splitlines(True), "<test>")
            exec(compile(source, "<test>", "exec"), test_globals)  # noqa: S102 - we are the sandbox
        entry = request["entry_point"]
        if entry:
            if "check" not in test_globals:
                raise NameError("the test defines no check() to call with the entry point")
            if entry not in test_globals:
                raise NameError(f"entry point {entry!r} is not defined by the program")
            test_globals["check"](test_globals[entry])
        if endpoint.garbled:  # a test that swallowed the error (``except BaseException``) still does not pass
            raise ProtocolError(endpoint.broken)
        if endpoint.broken:
            raise _ProgramGone(endpoint.broken)
    except _ProgramGone as exc:
        status, error = "program-gone", str(exc)
    except ChannelClosed as exc:
        status, error = "program-gone", f"{type(exc).__name__}: {exc}"
    except ProtocolError as exc:  # the program wrote into the channel itself: no answer, so no pass
        status, error = "failed", f"ProtocolError: the program's process sent no valid answer ({exc})"
    except MemoryError:
        status, error = "memory", "MemoryError: the program hit the memory limit"
    except SystemExit as exc:
        status = "failed"
        error = f"SystemExit({exc.code!r}) raised before the tests finished"
    except BaseException as exc:
        status = "failed"
        try:
            error = getattr(exc, "remote_where", "") or describe(exc, exc.__traceback__)
            tb_text = (getattr(exc, "remote_traceback", "")
                       or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:])
        except BaseException:  # a hostile __str__ must not cost the verdict
            tb_text = ""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    try:
        payload = json.dumps({"status": status, "error": error, "traceback": tb_text})
    except BaseException:
        payload = json.dumps({"status": status, "error": "(unprintable error)"})
    try:
        write(res_w, ("\n" + payload + "\n").encode("utf-8", "replace"))
    finally:
        exit_now(0)


class _ProgramGone(Exception):
    pass
