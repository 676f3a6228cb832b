"""A pool of warm workers (zygote.py), one per core by default, fed from one queue.

One thread per worker sends a request and waits for its line; a worker that dies (a program
that somehow killed it) or stops answering is replaced, and the program in flight is reported
``crashed``. Results come back in input order.

The pool owns each worker's pids cgroup (cgroups.py): it makes it before starting the worker and
removes it when the worker ends, so none outlives the pool, even when a worker had to be killed.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from textbooklm.sandbox import cgroups, private_root
from textbooklm.sandbox.config import Limits
from textbooklm.sandbox.environment import worker_environment
from textbooklm.sandbox.program import Program, Result
from textbooklm.sandbox.uids import UidLease

_RESULT_FIELDS = {f.name for f in fields(Result)}
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
WORKER_GRACE_S = 15.0  # beyond a program's wall limit before its worker is presumed hung
# The worker's own share of its memory cgroup, on top of a program's memory_mb: its resident pages
# (~45 MiB measured with the sandbox package imported) and the page cache it reads modules through.
WORKER_MEMORY_MB = 128
_POOL_IDS = itertools.count()


class WorkerDied(RuntimeError):
    pass


class _WorkerProcess:
    def __init__(self, tmp_root: str, uid: int, isolate_network: bool, max_processes: int,
                 cgroup_name: str, memory_mb: int = 4096, tmp_mb: int = 64) -> None:
        # Never the parent's environment (it holds API keys): an allowlist, also for the worker itself,
        # whose /proc/PID/environ a program could otherwise read.
        env = worker_environment(os.environ, tmp_root, os.pathsep.join(
            p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p))
        # pids.max: the program's processes plus the worker, its fork server and the test's process
        # (zygote.py, child.py), which live in the cgroup too.
        self.memory_cgroup = None
        self.cgroup, note = cgroups.create(cgroup_name, max_processes + 3)
        cg_args = (["--cgroup", self.cgroup.path, "--cgroup-kind", self.cgroup.kind] if self.cgroup
                   else ["--cgroup-note", note])
        # memory: the program's limit plus the worker's own pages (it is in the cgroup too).
        self.memory_cgroup, mem_note = cgroups.create_memory(cgroup_name, memory_mb + WORKER_MEMORY_MB)
        cg_args += (["--memory-cgroup", self.memory_cgroup.path, "--memory-cgroup-kind", self.memory_cgroup.kind,
                     "--memory-limit-mb", str(self.memory_cgroup.limit_mb)] if self.memory_cgroup
                    else ["--memory-note", mem_note])
        cg_args += ["--tmp-mb", str(tmp_mb)]
        self._buf = b""
        try:
            # -P and cwd "/": nothing a program can write is ever on the worker's sys.path (with
            # ``-m`` and no -P, sys.path[0] is the cwd; a program that planted bisect.py there had it
            # imported by the next worker, as root, outside every namespace). -s: no user site.
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-s", "-m", "textbooklm.sandbox.zygote", "--tmp-root", tmp_root,
                 "--uid", str(uid), "--isolate-network", str(int(isolate_network)),
                 "--max-processes", str(max_processes), "--owner-pid", str(os.getpid()), *cg_args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, env=env, cwd="/",
            )
        except BaseException:
            self._remove_cgroup()
            raise
        try:
            self.hello = json.loads(self._read_line(60.0))
        except BaseException:
            self.close(kill=True)
            raise

    def _remove_cgroup(self) -> None:
        for group in (self.cgroup, getattr(self, "memory_cgroup", None)):
            if group is not None and not cgroups.remove(group.path):
                warnings.warn(f"sandbox: could not remove the cgroup {group.path}", RuntimeWarning, stacklevel=3)

    def _read_line(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerDied(f"no answer from the sandbox worker within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 1 << 20)
                if not data:
                    raise WorkerDied(f"sandbox worker exited (code {self.proc.poll()})")
                self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerDied(f"sandbox worker is gone ({exc})") from None
        return json.loads(self._read_line(timeout))

    def close(self, kill: bool = False) -> None:
        try:
            self._stop(kill)
        finally:
            self._remove_cgroup()

    def _stop(self, kill: bool) -> None:
        if not kill:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
                return
            except (OSError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


class SandboxPool:
    """``with SandboxPool(limits, workers) as pool: results = pool.run(programs)``.

    Keep one pool open across many batches to pay the worker start-up (~0.1 s each) once.
    """

    def __init__(self, limits: Limits | None = None, workers: int | None = None,
                 tmp_root: str | None = None, uid_base: int | None = None) -> None:
        self.limits = limits or Limits()
        if workers is not None and workers < 0:
            raise ValueError(f"sandbox: workers must be 0 (one per core) or a positive count, not {workers}")
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.base_tmp = tmp_root or tempfile.gettempdir()
        if not os.path.isdir(self.base_tmp):
            raise ValueError(f"sandbox tmp_root {self.base_tmp!r} is not a directory")
        self.tmp_root = ""  # the pool's private folder inside base_tmp, made by start() (private_root.py)
        self.uid_base = uid_base  # None: uids leased so no two live pools share one (uids.py)
        self._lease: UidLease | None = None
        self._uids: list[int] = []
        self._procs: list[_WorkerProcess | None] = [None] * self.workers
        self.isolation: dict[str, Any] = {}
        # Unique per pool and host process: two pools (or pytest-xdist workers) never share a cgroup.
        self.cgroup_prefix = f"{cgroups.PREFIX}{os.getpid()}-{next(_POOL_IDS)}-"
        self._generation = itertools.count()

    def __enter__(self) -> SandboxPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, index: int) -> _WorkerProcess:
        proc = _WorkerProcess(self.tmp_root, self._uids[index], self.limits.isolate_network,
                              self.limits.max_processes, f"{self.cgroup_prefix}w{index}-{next(self._generation)}",
                              self.limits.memory_mb, self.limits.private_tmp_mb())
        self._procs[index] = proc
        self.isolation = {k: v for k, v in proc.hello.items() if k != "ready"}
        return proc

    def cgroup_paths(self) -> list[str]:
        """The pids cgroups of the running workers (empty where none could be made)."""
        return [p.cgroup.path for p in self._procs if p is not None and p.cgroup is not None]

    def start(self) -> None:
        cgroups.sweep_stale()
        if not self.tmp_root:
            private_root.sweep_stale(self.base_tmp)
            self.tmp_root = private_root.create(self.base_tmp)
        if self.uid_base is not None:
            self._uids = [self.uid_base + i for i in range(self.workers)]
        elif self._lease is None:
            self._lease = UidLease(self.workers)
            self._uids = list(self._lease.uids)
        threads = [threading.Thread(target=self._spawn, args=(i,)) for i in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if any(p is None for p in self._procs):
            self.close()
            raise RuntimeError("could not start the sandbox workers (see stderr)")

    def close(self) -> None:
        for i, proc in enumerate(self._procs):
            if proc is not None:
                proc.close()
                self._procs[i] = None
        if self._lease is not None:  # only once no worker runs as these uids
            self._lease.release()
            self._lease = None
        if self.tmp_root:  # every worker is gone: nothing writes in it any more
            private_root.remove(self.tmp_root)
            self.tmp_root = ""

    def _request(self, index: int, program: Program) -> Result:
        wall = self.limits.wall_limit(program.reference_s)
        message = {
            "id": program.id, "code": program.code, "test": program.test, "entry_point": program.entry_point,
            "wall_s": wall, "cpu_s": self.limits.cpu_limit(wall), "limits": self.limits.model_dump(),
        }
        proc = self._procs[index] or self._spawn(index)
        try:
            raw = proc.request(message, wall + WORKER_GRACE_S)
        except WorkerDied as exc:
            proc.close(kill=True)
            self._procs[index] = None
            self._spawn(index)
            iso = self.isolation
            return Result(id=program.id, status="crashed", duration_s=0.0, wall_limit_s=wall,
                          error=f"the sandbox worker died running this program: {exc}",
                          network_isolated=bool(iso.get("network_isolated")),
                          process_limit=str(iso.get("process_limit", "")),
                          proc_private=bool(iso.get("proc_private")), env_scrubbed=bool(iso.get("env_scrubbed")),
                          isolation_notes=list(iso.get("notes", [])))
        extra = {k: v for k, v in raw.items() if k not in _RESULT_FIELDS}
        result = Result(**{k: v for k, v in raw.items() if k in _RESULT_FIELDS})
        result.id = program.id
        result.extra.update(extra)
        return result

    def run(self, programs: Iterable[Program], on_result: Callable[[Result], None] | None = None) -> list[Result]:
        """Run every program, ``workers`` at a time; results in input order."""
        items = list(programs)
        results: list[Result | None] = [None] * len(items)
        todo: queue.Queue[int] = queue.Queue()
        for i in range(len(items)):
            todo.put(i)
        lock = threading.Lock()
        errors: list[BaseException] = []

        def serve(index: int) -> None:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[i] = self._request(index, items[i])
                except BaseException as exc:  # e.g. a worker that cannot be restarted
                    errors.append(exc)
                    return
                if on_result is not None:
                    with lock:
                        on_result(results[i])

        threads = [threading.Thread(target=serve, args=(w,), daemon=True)
                   for w in range(min(self.workers, max(1, len(items))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results  # type: ignore[return-value]


def run_programs(programs: Iterable[Program], limits: Limits | None = None, workers: int | None = None,
                 on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Run programs in a fresh pool (one warm worker per core unless ``workers`` says otherwise)."""
    items = list(programs)
    with SandboxPool(limits, workers=min(workers or os.cpu_count() or 1, max(1, len(items)))) as pool:
        return pool.run(items, on_result)


def run_program(program: Program, limits: Limits | None = None) -> Result:
    """Run one program (starts a one-worker pool; use SandboxPool for many)."""
    return run_programs([program], limits, workers=1)[0]
