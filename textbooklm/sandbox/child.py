"""The forked child: confine this process, run one program, report one verdict, exit.

Runs in a fresh fork of the warm worker (see zygote.py). Order matters:
1. new session (so the worker can kill the whole process group), stdin from /dev/null,
   stdout/stderr into pipes the worker drains and caps;
2. resource limits (address space, CPU, file size, no core dumps; processes by RLIMIT_NPROC only
   where the worker has no pids cgroup);
3. the environment from an allowlist (environment.py; never the parent's), then drop to an
   unprivileged per-worker user when running as root (then RLIMIT_NPROC applies and files outside
   the work dir are not writable), clear every capability (for a program that stays uid 0 or owns
   the worker's user namespace) and set no_new_privs;
4. the accident guard (guard.py);
5. exec the program, then the test, then ``check(entry_point)``.

The verdict travels on a private pipe, tagged with a random nonce the worker chose, and is written
with references captured before the program ran, so a program that monkeypatches ``os.write``,
``json`` or ``sys.exit``, or writes a forged message to every fd, cannot turn a failure into a pass.
Anything that ends the process without that message (``os._exit(0)``, a signal, a segfault)
is ``crashed``.
"""

from __future__ import annotations

import json
import linecache
import os
import random
import resource
import sys
import traceback
from typing import Any

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


def _describe(exc: BaseException, tb) -> str:
    """One line: exception type and message, and the failing source line (the assertion)."""
    frames = traceback.extract_tb(tb)
    where = ""
    for frame in reversed(frames):
        if frame.filename in ("<program>", "<test>"):
            line = (frame.line or "").strip()
            where = f" at {frame.filename[1:-1]} line {frame.lineno}: {line}" if line else ""
            break
    message = str(exc)
    head = type(exc).__name__ + (f": {message}" if message else "")
    return (head + where)[:2000]


def run_child(request: dict[str, Any], workdir: str, out_w: int, err_w: int, res_w: int,
              uid: int | None) -> None:
    """Never returns: ends the process with os._exit after writing the verdict."""
    write, exit_now, dumps = os.write, os._exit, json.dumps  # captured before the program runs
    nonce = request["nonce"]
    limits = request["limits"]
    try:
        os.setsid()
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        keep = sorted({0, 1, 2, res_w})
        for lo, hi in zip(keep, keep[1:] + [65536], strict=True):
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
            # A uid change makes the process non-dumpable, and then its own /proc/self/fd belongs to
            # root: the guard (and shutil.rmtree's dir_fd walk) could not resolve its own fds.
            prctl(PR_SET_DUMPABLE, 1)
        drop_capabilities()  # a no-op after the uid change; root or a user-namespace owner loses them all
        prctl(PR_SET_NO_NEW_PRIVS, 1)  # and no setuid binary gives them back
        if limits["guard"]:
            from textbooklm.sandbox import guard

            guard.install(workdir)
    except BaseException as exc:  # the harness itself failed: report, never run the program
        message = {"nonce": nonce, "status": "crashed", "error": f"sandbox setup failed: {exc!r}"}
        write(res_w, ("\n" + dumps(message) + "\n").encode())
        exit_now(70)

    status, error, tb_text = "passed", "", ""
    program_globals: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        for name, source in (("<program>", request["code"]), ("<test>", request["test"])):
            if source:
                linecache.cache[name] = (len(source), None, source.splitlines(True), name)
                exec(compile(source, name, "exec"), program_globals)  # noqa: S102 - we are the sandbox
        entry = request["entry_point"]
        if entry:
            if "check" not in program_globals:
                raise NameError("the test defines no check() to call with the entry point")
            if entry not in program_globals:
                raise NameError(f"entry point {entry!r} is not defined by the program")
            program_globals["check"](program_globals[entry])
    except MemoryError:
        status, error = "memory", "MemoryError: the program hit the memory limit"
    except SystemExit as exc:
        status = "failed"
        error = f"SystemExit({exc.code!r}) raised before the tests finished"
    except BaseException as exc:
        status = "failed"
        try:
            error = _describe(exc, exc.__traceback__)
            tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
        except BaseException:  # a hostile __str__ must not cost the verdict
            tb_text = ""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    try:
        payload = dumps({"nonce": nonce, "status": status, "error": error, "traceback": tb_text})
    except BaseException:
        payload = dumps({"nonce": nonce, "status": status, "error": "(unprintable error)"})
    try:
        write(res_w, ("\n" + payload + "\n").encode("utf-8", "replace"))
    finally:
        exit_now(0)
